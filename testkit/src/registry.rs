//! A loopback OCI registry for tests and benchmarks: Debian's
//! `docker-registry serve` (CNCF distribution) on 127.0.0.1:<free port>, with
//! filesystem storage in a temporary directory.
//!
//! Not for: anything reachable from outside the machine (no TLS, loopback
//! only), nor registries the caller did not start.
//!
//! Invariant: the process is killed and reaped, and its storage removed, when
//! the [`LoopbackRegistry`] is dropped, whether the caller returns normally,
//! returns an error or panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use eifbake::digest::Digest;

/// A `docker-registry serve` on 127.0.0.1:<free port> with a temporary
/// storage root; killed when dropped. Its access log counts requests.
pub struct LoopbackRegistry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The filesystem storage root (`docker/registry/v2/...` lives below it).
    pub data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?.local_addr()?.port())
}

/// Poll `GET /v2/` until it answers 200, the child exits, or `timeout` passes.
fn wait_ready(child: &mut Child, addr: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                // 401 is a live registry too (one that wants credentials).
                let status = buf.lines().next().unwrap_or("");
                if status.starts_with("HTTP/1.") && (status.contains(" 200 ") || status.contains(" 401 ")) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl LoopbackRegistry {
    /// [`LoopbackRegistry::try_start`], panicking on failure (for tests).
    pub fn start() -> LoopbackRegistry {
        LoopbackRegistry::try_start(None).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A registry requiring HTTP basic auth, `htpasswd` being one bcrypt
    /// `user:hash` line (distribution accepts only bcrypt); panics on failure.
    pub fn start_with_htpasswd(htpasswd: &str) -> LoopbackRegistry {
        LoopbackRegistry::try_start(Some(htpasswd)).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Start a registry (with basic auth when `htpasswd` is given) and wait
    /// until it answers `/v2/`; up to 5 ports are tried.
    pub fn try_start(htpasswd: Option<&str>) -> Result<LoopbackRegistry> {
        let dir = tempfile::tempdir().context("create the registry's temporary directory")?;
        let auth = match htpasswd {
            Some(line) => {
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, format!("{line}\n"))?;
                format!("auth:\n  htpasswd:\n    realm: eifbake-test\n    path: {}\n", p.display())
            }
            None => String::new(),
        };
        let data = dir.path().join("data");
        let log = dir.path().join("registry.log");
        let config = dir.path().join("config.yml");
        for _attempt in 0..5 {
            // The port is free now; another process could take it before the
            // registry binds it, hence the retries.
            let addr = format!("127.0.0.1:{}", free_port()?);
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n{auth}http:\n  addr: {addr}\n",
                    data.display()
                ),
            )?;
            let logf = std::fs::File::create(&log)?;
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::from(logf.try_clone()?))
                .stderr(Stdio::from(logf))
                .spawn()
                .context(
                    "cannot run docker-registry (Debian package docker-registry; see scripts/deps.sh)",
                )?;
            if wait_ready(&mut child, &addr, Duration::from_secs(15)) {
                return Ok(LoopbackRegistry { child, addr, data, log, _dir: dir });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!(
            "docker-registry did not answer /v2/ after 5 attempts; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many `GET` requests whose path contains `needle` the registry has answered.
    pub fn gets(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains("\"GET /v2/") && l.contains(needle)).count()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.data.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// `127.0.0.1:PORT/<repo>`
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The process id of the registry (to check that it stops).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
