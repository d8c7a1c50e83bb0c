//! rust-server: the demo application of recipes/rust-server. A tiny HTTP/1.1
//! server on 0.0.0.0:8080 (or the address in `$LISTEN`) that serves one page,
//! `static/index.html` (compiled in), for `GET /` and 404 for anything else.
//!
//! Not for: production traffic (one connection at a time, no keep-alive).
//! It exists to show eifbake building a Rust program with crates.io
//! dependencies (`httparse` parses the requests, `itoa` formats the
//! Content-Length) reproducibly and statically linked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const PAGE: &[u8] = include_bytes!("../static/index.html");

/// The status line and body answering the request in `buf`, or None while
/// the request head is incomplete.
fn respond(buf: &[u8]) -> Option<(&'static str, &'static [u8])> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some("GET"), Some("/")) | (Some("GET"), Some("/index.html")) => Some(("200 OK", PAGE)),
            _ => Some(("404 Not Found", b"not found\n")),
        },
        Err(_) => Some(("400 Bad Request", b"bad request\n")),
    }
}

fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let (status, body) = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = respond(&buf) {
            break r;
        }
        if buf.len() > 64 * 1024 {
            break ("431 Request Header Fields Too Large", &b"too large\n"[..]);
        }
    };
    let mut len = itoa::Buffer::new();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        len.format(body.len())
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

fn main() {
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".to_string());
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("rust-server: cannot listen on {addr}: {e}");
        std::process::exit(2)
    });
    println!("rust-server: listening on {addr}");
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = serve(c) {
                    eprintln!("rust-server: {e}");
                }
            }
            Err(e) => eprintln!("rust-server: accept: {e}"),
        }
    }
}
