//! Downloads (`eifbake::download`, used by url sources and crates) against
//! loopback servers that misbehave: bodies over the size limit, bodies cut
//! short, redirects, errors. Nothing leaves the machine.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::http::{HttpServer, RawServer};
use eifbake::digest::Digest;
use eifbake::download::{download, Options};
use eifbake::recipe::Source;
use eifbake::sources::resolve;

/// Small limits and no pause between retries, so the tests are quick.
fn opts(max_bytes: u64) -> Options {
    Options { max_bytes, retry_pause: Duration::from_millis(1), ..Options::default() }
}

fn source(toml_text: &str) -> Source {
    toml::from_str(toml_text).unwrap()
}

/// Nothing at `to`, and nothing else left in its directory (no temporary file).
fn assert_no_file(to: &Path) {
    assert!(!to.exists(), "{} exists after a failed download", to.display());
    let left: Vec<_> = fs::read_dir(to.parent().unwrap()).unwrap().collect();
    assert!(left.is_empty(), "a failed download left {left:?}");
}

#[test]
fn a_body_larger_than_the_limit_is_refused_without_content_length() {
    let tmp = tempfile::tempdir().unwrap();
    // HTTP/1.0 with no Content-Length: the body ends when the server closes.
    let server = RawServer::start(|_| {
        let mut r = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        r.extend(vec![b'x'; 100_000]);
        r
    });
    let url = server.url("/big");
    let to = tmp.path().join("big");
    let err = download("tool", &url, &to, &opts(10_000)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("sources.tool: download of {url} failed: the body is larger than the limit of 10000 bytes")
    );
    assert_no_file(&to);
    // Not retried: a server sending too much will do so again.
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // The same body within a larger limit is accepted, and hashed.
    let got = download("tool", &url, &to, &opts(100_000)).unwrap();
    assert_eq!(got.size, 100_000);
    assert_eq!(got.sha256, Digest::of(&vec![b'x'; 100_000]));
    assert_eq!(fs::read(&to).unwrap(), vec![b'x'; 100_000]);
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let server = RawServer::start(|_| b"HTTP/1.0 200 OK\r\nContent-Length: 5000000000\r\n\r\nabc".to_vec());
    let url = server.url("/huge");
    let to = tmp.path().join("huge");
    let err = download("tool", &url, &to, &opts(1 << 20)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.tool: download of {url} failed: the server announces 5000000000 bytes, \
             more than the limit of 1048576"
        )
    );
    assert_no_file(&to);
}

#[test]
fn a_body_cut_short_is_refused_as_truncated_after_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let server = RawServer::start(|_| {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n".to_vec();
        r.extend(vec![b'y'; 100]);
        r
    });
    let url = server.url("/short");
    let to = tmp.path().join("short");
    let err = download("tool", &url, &to, &opts(1 << 20)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("sources.tool: download of {url} failed: ")), "{err}");
    assert!(
        err.contains("reading the body after 100 bytes") || err.contains("truncated: 100 of 1000 bytes"),
        "{err}"
    );
    assert!(err.ends_with("(after 3 attempts)"), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 3, "a cut-off body is retried twice");
    assert_no_file(&to);
}

#[test]
fn a_redirect_to_another_loopback_server_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let target = HttpServer::start();
    let body = b"the real bytes\n";
    let final_url = target.serve("/real/file.txt", body);
    let location = final_url.clone();
    let redirector = RawServer::start(move |_| {
        format!("HTTP/1.0 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let url = redirector.url("/moved/file.txt");

    let got = download("tool", &url, &tmp.path().join("file.txt"), &opts(1 << 20)).unwrap();
    assert_eq!(got.sha256, Digest::of(body));
    assert_eq!(fs::read(tmp.path().join("file.txt")).unwrap(), body);

    // Through a url source: pinned by the bytes, named after the URL the recipe gives.
    let src = source(&format!("url = {url:?}\nsha256 = \"{}\"", Digest::of(body)));
    let pin = resolve("tool", &src, tmp.path()).unwrap();
    assert_eq!(pin.sha256, Some(Digest::of(body)));
    assert_eq!(target.requests.load(Ordering::SeqCst), 2);

    // An error after a redirect names both URLs.
    let missing = HttpServer::start();
    let gone = format!("http://127.0.0.1:{}/gone", missing.port);
    let g = gone.clone();
    let redirector =
        RawServer::start(move |_| format!("HTTP/1.0 301 Moved\r\nLocation: {g}\r\n\r\n").into_bytes());
    let url = redirector.url("/old");
    let err = download("tool", &url, &tmp.path().join("x"), &opts(1 << 20)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("sources.tool: download of {url} failed: HTTP 404 Not Found (redirected to {gone})")
    );
}

#[test]
fn a_redirect_to_a_file_url_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    fs::write(&secret, "local bytes").unwrap();
    let location = format!("file://{}", secret.display());
    let redirector = RawServer::start(move |_| {
        format!("HTTP/1.0 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let url = redirector.url("/x");
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let to = out.join("x");
    let err = download("tool", &url, &to, &opts(1 << 20)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("sources.tool: download of {url} failed: ")), "{err}");
    assert!(err.contains("only http and https redirects are followed"), "{err}");
    assert_no_file(&to);
}

#[test]
fn a_404_names_the_source_and_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HttpServer::start();
    let url = format!("http://127.0.0.1:{}/files/missing.tar.gz", server.port);
    let src = source(&format!("url = {url:?}\nsha256 = \"{}\"", Digest::of(b"")));
    let err = resolve("tool", &src, tmp.path()).unwrap_err().to_string();
    assert_eq!(err, format!("sources.tool: download of {url} failed: HTTP 404 Not Found"));
    // A client error is not retried.
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn file_urls_are_read_directly_within_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("in put.bin");
    fs::write(&file, vec![7u8; 4096]).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let url = format!("file://{}", file.display()).replace(' ', "%20");
    let got = download("pkg", &url, &out.join("a"), &opts(4096)).unwrap();
    assert_eq!((got.sha256, got.size), (Digest::of(&[7u8; 4096]), 4096));
    let err = download("pkg", &url, &out.join("b"), &opts(4095)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "sources.pkg: download of {url} failed: {} is larger than the limit of 4095 bytes",
            file.display()
        )
    );
    assert!(!out.join("b").exists());
    let missing = format!("file://{}/nope", tmp.path().display());
    let err = download("pkg", &missing, &out.join("c"), &opts(4096)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("sources.pkg: download of {missing} failed: cannot open ")), "{err}");
}

#[test]
fn a_server_that_sends_nothing_times_out_after_retries() {
    let tmp = tempfile::tempdir().unwrap();
    // Accepts, reads the request, then says nothing for a second.
    let server = RawServer::start(|_| {
        std::thread::sleep(Duration::from_secs(1));
        Vec::new()
    });
    let url = server.url("/slow");
    let to = tmp.path().join("slow");
    let o = Options { read_timeout: Duration::from_millis(200), ..opts(1 << 20) };
    let started = std::time::Instant::now();
    let err = download("tool", &url, &to, &o).unwrap_err().to_string();
    assert!(err.starts_with(&format!("sources.tool: download of {url} failed: ")), "{err}");
    assert!(err.contains("timed out") && err.ends_with("(after 3 attempts)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "the read timeout did not apply");
    assert_no_file(&to);
}

/// Called from inside a tokio runtime (where starting another would
/// panic), a download still works.
#[test]
fn a_download_from_inside_an_async_runtime_works() {
    let tmp = tempfile::tempdir().unwrap();
    let server = HttpServer::start();
    let url = server.serve("/a", b"async caller");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let to = tmp.path().join("a");
    let got = rt.block_on(async { download("tool", &url, &to, &opts(1 << 20)) }).unwrap();
    assert_eq!(got.sha256, Digest::of(b"async caller"));
}

/// eifbake downloads with its own HTTP client: a url source resolves with
/// no curl (nor anything else) on PATH. (This test binary runs no other
/// program, so changing PATH here affects no other test.)
#[test]
fn url_sources_download_with_nothing_on_path() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-bin");
    fs::create_dir(&empty).unwrap();
    let server = HttpServer::start();
    let body = b"fetched without curl\n";
    let url = server.serve("/f.txt", body);
    let src = source(&format!("url = {url:?}\nsha256 = \"{}\"", Digest::of(body)));
    let old = std::env::var_os("PATH");
    std::env::set_var("PATH", &empty);
    let pin = resolve("tool", &src, tmp.path());
    match old {
        Some(p) => std::env::set_var("PATH", p),
        None => std::env::remove_var("PATH"),
    }
    assert_eq!(pin.unwrap().sha256, Some(Digest::of(body)));
}
