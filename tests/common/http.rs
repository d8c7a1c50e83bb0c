//! A loopback HTTP/1.0 server for tests that download (url sources,
//! crates): started on a free port by the test, serving the bytes the test
//! registers for each path, 404 for anything else. Nothing leaves the machine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A loopback HTTP/1.0 server answering GET with the bytes registered for a path.
pub struct HttpServer {
    pub port: u16,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, r, s) = (files.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                r.fetch_add(1, Ordering::SeqCst);
                let path = request_path(&mut conn);
                let body = f.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) => conn
                        .write_all(
                            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                        )
                        .and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        HttpServer { port, files, requests, stop, thread: Some(thread) }
    }

    pub fn serve(&self, path: &str, body: &[u8]) -> String {
        self.files.lock().unwrap().insert(path.to_string(), body.to_vec());
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        stop_server(&self.stop, self.port, &mut self.thread);
    }
}

/// A loopback server that answers every connection with the raw bytes
/// `respond` returns for the request path (status line, headers and body,
/// possibly malformed or cut short), then closes: for tests of what a
/// misbehaving server does to a download. Stops when dropped.
pub struct RawServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    pub fn start(respond: impl Fn(&str) -> Vec<u8> + Send + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                r.fetch_add(1, Ordering::SeqCst);
                let path = request_path(&mut conn);
                let _ = conn.write_all(&respond(&path));
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        });
        RawServer { port, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        stop_server(&self.stop, self.port, &mut self.thread);
    }
}

/// Read one request's head from `conn` and return the path of its request line.
fn request_path(conn: &mut impl Read) -> String {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string();
    line.split(' ').nth(1).unwrap_or("").to_string()
}

/// Stop a server thread: raise `stop`, wake its `accept` with one connection, join it.
fn stop_server(stop: &AtomicBool, port: u16, thread: &mut Option<std::thread::JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(("127.0.0.1", port));
    if let Some(t) = thread.take() {
        let _ = t.join();
    }
}
