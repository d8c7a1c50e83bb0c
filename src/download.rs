//! Downloads: one function ([`download`]) that fetches a URL into a file,
//! hashing the bytes as they arrive, for url sources
//! ([`crate::sources`]) and crates ([`crate::cargo_vendor`]).
//!
//! What it is for: `https://` and `http://` URLs through the HTTP client
//! the binary already links for registries (reqwest with rustls, on a
//! tokio runtime of its own), and `file://` URLs, read directly from the
//! local file system. Redirects are followed (at most [`MAX_REDIRECTS`],
//! to http and https only); a connection that cannot be made within
//! [`Options::connect_timeout`], or that sends nothing for
//! [`Options::read_timeout`], fails; transient failures (connection
//! errors, timeouts, a cut-off body, HTTP 408, 429 and 5xx) are retried
//! [`RETRIES`] times.
//!
//! What it is not for: deciding whether the bytes are the right ones.
//! The caller compares the returned [`Digest`] with its pin (the recipe's
//! sha256, the Cargo.lock's checksum) and refuses a mismatch; nothing a
//! server says (headers, names) is trusted. Registries (OCI) have their own
//! client in [`crate::oci`].
//!
//! Invariants:
//!
//! - the destination file exists only after a complete download: bytes go
//!   to a temporary file next to it, renamed into place at the end, so a
//!   failure (HTTP error, truncated body, size limit) leaves no file;
//! - the digest is of exactly the bytes written to the file;
//! - at most [`Options::max_bytes`] are accepted: a larger declared
//!   `Content-Length` is refused before reading, and a body that grows past
//!   the limit is cut off and refused;
//! - a body shorter than its declared `Content-Length` is refused as
//!   truncated;
//! - every error names the source (`sources.NAME`) and the URL.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::digest::{Digest, HashingWriter};

/// The most bytes a download may have unless the caller says otherwise (16 GiB).
pub const MAX_DOWNLOAD_BYTES: u64 = 16 << 30;
/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
/// How often a transient failure is retried (so up to `RETRIES + 1` attempts).
pub const RETRIES: u32 = 2;

/// Limits of one download.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most bytes accepted.
    pub max_bytes: u64,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long the server may send nothing, once connected.
    pub read_timeout: Duration,
    /// The pause before the first retry (doubled for each next one).
    pub retry_pause: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: MAX_DOWNLOAD_BYTES,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retry_pause: Duration::from_secs(1),
        }
    }
}

/// What a finished download produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// The sha256 of the bytes written.
    pub sha256: Digest,
    /// How many bytes were written.
    pub size: u64,
}

/// Download `url` (https, http or file) to the file `to` (replacing it),
/// within `opts`; errors name source `name` and the URL. The caller checks
/// the returned digest against its pin.
pub fn download(name: &str, url: &str, to: &Path, opts: &Options) -> Result<Downloaded> {
    download_as(&format!("sources.{name}"), url, to, opts)
}

/// A server answered 404 Not Found: the download's error when it is
/// nothing else, so a caller probing for files (a signature lookaside)
/// can tell "absent" from "failed".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// [`download`], its errors naming `what` (e.g. `sources.app`).
pub fn download_as(what: &str, url: &str, to: &Path, opts: &Options) -> Result<Downloaded> {
    let fail = |why: &dyn std::fmt::Display| {
        let msg = format!("{what}: download of {url} failed: {why}");
        if why.to_string().starts_with("HTTP 404 ") {
            anyhow::Error::new(NotFound(msg))
        } else {
            anyhow!(msg)
        }
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| fail(&format!("not a valid URL ({e})")))?;
    let dir = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("{what}: cannot create a temporary file in {}", dir.display()))?;
    let got = match parsed.scheme() {
        "file" => copy_file(&parsed, tmp.as_file_mut(), opts.max_bytes).map_err(|e| fail(&e))?,
        "http" | "https" => {
            let file = tmp.as_file_mut();
            off_runtime(|| fetch_http(parsed, file, opts)).map_err(|e| fail(&e))?
        }
        _ => bail!("{what}: {url:?}: expected an https://, http:// or file:// URL"),
    };
    tmp.persist(to).with_context(|| format!("{what}: cannot write {}", to.display()))?;
    Ok(got)
}

/// A `file://` URL: copy the file it names, hashing, up to `max` bytes.
fn copy_file(url: &reqwest::Url, out: &mut File, max: u64) -> Result<Downloaded, String> {
    if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(format!("file:// URL names the host {:?}; only local files can be read", url.host_str()));
    }
    let path = url.to_file_path().map_err(|()| "not a local file path".to_string())?;
    let mut src = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut w = HashingWriter::new(out);
    let n = io::copy(&mut io::Read::take(&mut src, max + 1), &mut w)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n > max {
        return Err(format!("{} is larger than the limit of {max} bytes", path.display()));
    }
    let (_, sha256, size) = w.finish();
    Ok(Downloaded { sha256, size })
}

/// Run `f`, which starts a tokio runtime, on this thread, or on a scoped
/// thread when this thread is already inside a runtime (where starting
/// another one would panic).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join().expect("download thread panicked"))
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    why: String,
    transient: bool,
}

/// Fetch an http(s) URL into `out` with retries; the error says why the last attempt failed.
fn fetch_http(url: reqwest::Url, out: &mut File, opts: &Options) -> Result<Downloaded, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let client = client(opts)?;
    let mut pause = opts.retry_pause;
    let mut attempt = 0;
    loop {
        out.set_len(0)
            .and_then(|()| io::Seek::rewind(out))
            .map_err(|e| format!("cannot reset the file: {e}"))?;
        match rt.block_on(attempt_once(&client, url.clone(), out, opts.max_bytes)) {
            Ok(got) => return Ok(got),
            Err(f) if f.transient && attempt < RETRIES => {
                attempt += 1;
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(f) if attempt > 0 => return Err(format!("{} (after {} attempts)", f.why, attempt + 1)),
            Err(f) => return Err(f.why),
        }
    }
}

/// The HTTP client: rustls, the timeouts of `opts`, redirects to http(s) only.
fn client(opts: &Options) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            let to = attempt.url().to_string();
            attempt.error(format!("redirect to {to}: only http and https redirects are followed"))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("eifbake/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .redirect(policy)
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {}", chain(&e)))
}

/// One GET of `url`, streamed into `out` while hashing.
async fn attempt_once(
    client: &reqwest::Client,
    url: reqwest::Url,
    out: &mut File,
    max: u64,
) -> Result<Downloaded, Failure> {
    let net = |e: reqwest::Error| Failure { why: chain(&e), transient: !e.is_redirect() && !e.is_builder() };
    let mut resp = client.get(url.clone()).send().await.map_err(net)?;
    let moved = if resp.url() != &url { format!(" (redirected to {})", resp.url()) } else { String::new() };
    let status = resp.status();
    if status.is_redirection() {
        // reqwest hands back a redirect it will not follow (another scheme) without asking the policy.
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        let to = to.unwrap_or_else(|| "nowhere (no Location)".into());
        return Err(Failure {
            why: format!(
                "HTTP {status}{moved}: redirect to {to}: only http and https redirects are followed"
            ),
            transient: false,
        });
    }
    if !status.is_success() {
        let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        return Err(Failure { why: format!("HTTP {status}{moved}"), transient });
    }
    let declared = resp.content_length();
    if let Some(len) = declared.filter(|&len| len > max) {
        return Err(Failure {
            why: format!("the server announces {len} bytes, more than the limit of {max}{moved}"),
            transient: false,
        });
    }
    let mut w = HashingWriter::new(out);
    while let Some(chunk) = resp.chunk().await.map_err(|e| Failure {
        why: format!("reading the body after {} bytes: {}{moved}", w.len(), chain(&e)),
        transient: true,
    })? {
        if w.len() + chunk.len() as u64 > max {
            return Err(Failure {
                why: format!("the body is larger than the limit of {max} bytes{moved}"),
                transient: false,
            });
        }
        w.write_all(&chunk)
            .map_err(|e| Failure { why: format!("cannot write the file: {e}"), transient: false })?;
    }
    let (_, sha256, size) = w.finish();
    if let Some(len) = declared.filter(|&len| len != size) {
        return Err(Failure {
            why: format!("truncated: {size} of {len} bytes received{moved}"),
            transient: true,
        });
    }
    Ok(Downloaded { sha256, size })
}

/// An error and its causes, `: `-separated (reqwest's own message is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
