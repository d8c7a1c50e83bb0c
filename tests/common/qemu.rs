//! Boot a kernel and a ramdisk under QEMU (TCG: KVM stalls on the CI
//! machines) and return what the serial console printed.
//!
//! The kernel comes from `scripts/fetch-kernel.sh` (Debian's cloud kernel,
//! cached in a directory shared by all tests); several ramdisks are booted
//! by concatenating them, as the Linux initramfs format allows.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where tests keep the kernel between runs (`EIFBAKE_KERNEL_DIR` overrides).
pub fn kernel_dir() -> PathBuf {
    std::env::var_os("EIFBAKE_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eifbake-kernel"))
}

/// Debian's cloud kernel, downloaded once with `scripts/fetch-kernel.sh`.
pub fn kernel() -> PathBuf {
    let dir = kernel_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-kernel.sh");
    let status = Command::new("bash").arg(&script).arg(&dir).status().expect("run fetch-kernel.sh");
    assert!(status.success(), "{} {} failed", script.display(), dir.display());
    dir.join("vmlinuz")
}

/// What a boot printed, and whether it ended by itself.
pub struct Boot {
    pub console: String,
    pub finished: bool,
    pub elapsed: Duration,
}

/// Boot `kernel` with the concatenation of `ramdisks` and `cmdline` (to which
/// `console=ttyS0 panic=-1` is appended), until QEMU exits or `timeout`.
pub fn boot(kernel: &Path, ramdisks: &[&Path], cmdline: &str, timeout: Duration) -> Boot {
    let work = tempfile::tempdir().unwrap();
    let initrd = work.path().join("initrd");
    let mut out = std::fs::File::create(&initrd).unwrap();
    for r in ramdisks {
        std::io::copy(&mut std::fs::File::open(r).unwrap(), &mut out).unwrap();
    }
    drop(out);
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("{cmdline} console=ttyS0 panic=-1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 is installed (scripts/deps.sh)");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut console = Vec::new();
    let deadline = started + timeout;
    let finished = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(chunk) => console.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => break false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    if !finished {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let mut console = String::from_utf8_lossy(&console).into_owned();
    if !err.is_empty() {
        console.push_str("\n[qemu stderr]\n");
        console.push_str(&err);
    }
    Boot { console, finished, elapsed: started.elapsed() }
}
