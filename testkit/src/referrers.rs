//! A referrers-API front for the loopback registry: Debian's
//! docker-registry 2.8 has no `GET /v2/<name>/referrers/<digest>`, so this
//! loopback HTTP proxy answers that endpoint itself (from the manifests with
//! a `subject` that were pushed through it) and forwards every other request
//! to the registry unchanged, as a registry implementing OCI distribution
//! 1.1 would behave. Tests use it to exercise the referrers-API path.
//!
//! Not for: anything but tests on loopback. One request per connection
//! (`Connection: close`); request bodies must carry a Content-Length
//! (chunked uploads are refused with 501).
//!
//! Invariant: the listener thread is stopped and joined when the
//! [`ReferrersProxy`] is dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use eifbake::digest::Digest;

/// Referrer descriptors by (repository, subject digest).
type Referrers = Arc<Mutex<HashMap<(String, String), Vec<serde_json::Value>>>>;

/// A loopback proxy that adds the referrers API to `upstream`.
pub struct ReferrersProxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    referrers: Referrers,
    api_hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReferrersProxy {
    /// Listen on a free loopback port, forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> ReferrersProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address").to_string();
        let referrers: Referrers = Arc::default();
        let api_hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s, up) = (referrers.clone(), api_hits.clone(), stop.clone(), upstream.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, h, up) = (r.clone(), h.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &r, &h);
                });
            }
        });
        ReferrersProxy { addr, referrers, api_hits, stop, thread: Some(thread) }
    }

    /// `127.0.0.1:PORT/<repo_tag>`
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// How many referrers-API requests were answered.
    pub fn api_hits(&self) -> usize {
        self.api_hits.load(Ordering::SeqCst)
    }

    /// How many referrers the proxy has recorded, over all subjects.
    pub fn recorded(&self) -> usize {
        self.referrers.lock().expect("not poisoned").values().map(Vec::len).sum()
    }
}

impl Drop for ReferrersProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: its head (request line and headers, as received) and body.
struct Request {
    method: String,
    path: String,
    head: String,
    body: Vec<u8>,
}

fn read_request(conn: &mut TcpStream) -> Result<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            bail!("connection closed in the request head");
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).context("request head is not UTF-8")?;
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some() {
        bail!("chunked request bodies are not supported");
    }
    let len: usize = header("content-length").map(|v| v.parse()).transpose()?.unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok(Request { method, path, head, body })
}

fn serve(mut conn: TcpStream, upstream: &str, referrers: &Referrers, hits: &AtomicUsize) -> Result<()> {
    let req = match read_request(&mut conn) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("{e:#}");
            let head = format!(
                "HTTP/1.1 501 Not Implemented\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                msg.len()
            );
            conn.write_all(head.as_bytes())?;
            return Ok(conn.write_all(msg.as_bytes())?);
        }
    };
    if let (Some((name, subject)), "GET") = (split_v2(&req.path, "/referrers/"), req.method.as_str()) {
        hits.fetch_add(1, Ordering::SeqCst);
        let subject = subject.split('?').next().unwrap_or("").to_string();
        let list = referrers.lock().expect("not poisoned").get(&(name, subject)).cloned().unwrap_or_default();
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list,
        }))?;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        return Ok(conn.write_all(&body)?);
    }
    let response = forward(&req, upstream)?;
    if req.method == "PUT" && response.starts_with(b"HTTP/1.1 201") {
        if let Some((name, _)) = split_v2(&req.path, "/manifests/") {
            record(referrers, &name, &req.body);
        }
    }
    Ok(conn.write_all(&response)?)
}

/// `/v2/<name><sep><rest>` as (name, rest).
fn split_v2(path: &str, sep: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v2/")?;
    let at = rest.find(sep)?;
    Some((rest[..at].to_string(), rest[at + sep.len()..].to_string()))
}

/// Send `req` to `upstream` with `Connection: close`; the whole response.
fn forward(req: &Request, upstream: &str) -> Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).with_context(|| format!("connect {upstream}"))?;
    let mut head: String = req
        .head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    Ok(response)
}

/// Remember a pushed manifest that has a `subject`, as the index lists it.
fn record(referrers: &Referrers, name: &str, body: &[u8]) {
    let Ok(m) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let Some(subject) = m["subject"]["digest"].as_str() else { return };
    let mut d = serde_json::json!({
        "mediaType": m["mediaType"], "digest": Digest::of(body).to_string(), "size": body.len(),
    });
    for k in ["artifactType", "annotations"] {
        if !m[k].is_null() {
            d[k] = m[k].clone();
        }
    }
    let mut all = referrers.lock().expect("not poisoned");
    let list = all.entry((name.to_string(), subject.to_string())).or_default();
    if !list.iter().any(|x| x["digest"] == d["digest"]) {
        list.push(d);
    }
}
