//! Boot a kernel and a ramdisk under QEMU (TCG: KVM stalls on the CI
//! machines) and return what the serial console printed: an x86 bzImage
//! with `qemu-system-x86_64`, an arm64 `Image` with `qemu-system-aarch64 -M
//! virt -cpu cortex-a72` ([`boot_arch`]).
//!
//! The kernels come from `scripts/fetch-kernel.sh` (Debian's cloud kernel for
//! amd64 or arm64, cached in a directory shared by all tests); several
//! ramdisks are booted by concatenating them, as the Linux initramfs format
//! allows.

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

/// Debian's amd64 cloud kernel (a bzImage), downloaded once with `scripts/fetch-kernel.sh`.
pub fn kernel() -> PathBuf {
    kernel_for("amd64")
}

/// Debian's cloud kernel for `arch` (`amd64`: a bzImage in [`kernel_dir`];
/// `arm64`: an uncompressed arm64 `Image` in its `arm64/` subdirectory, as
/// `scripts/make-kernel-image.sh` keeps them), downloaded once.
pub fn kernel_for(arch: &str) -> PathBuf {
    let dir = if arch == "amd64" { kernel_dir() } else { kernel_dir().join(arch) };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-kernel.sh");
    let status = Command::new("bash").arg(&script).arg(&dir).arg(arch).status().expect("run fetch-kernel.sh");
    assert!(status.success(), "{} {} {arch} failed", script.display(), dir.display());
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
    boot_arch("amd64", kernel, ramdisks, cmdline, timeout)
}

/// Boot an EIF's sections as `eifbake describe --extract` wrote them into
/// `sections`: its `kernel` with its `ramdisk0` and `cmdline`, on `arch`
/// ([`boot_arch`]).
pub fn boot_sections(arch: &str, sections: &Path, timeout: Duration) -> Boot {
    let cmdline = std::fs::read_to_string(sections.join("cmdline")).unwrap();
    boot_arch(arch, &sections.join("kernel"), &[&sections.join("ramdisk0")], &cmdline, timeout)
}

/// [`boot`] on an `amd64` or `arm64` machine; the console (`ttyS0` or
/// `ttyAMA0`) and `panic=-1` are appended to `cmdline`, so a kernel command
/// line written for Nitro (`console=ttyS0`) boots as it is.
pub fn boot_arch(arch: &str, kernel: &Path, ramdisks: &[&Path], cmdline: &str, timeout: Duration) -> Boot {
    let (qemu, machine, console): (&str, &[&str], &str) = match arch {
        "amd64" => ("qemu-system-x86_64", &[], "ttyS0"),
        "arm64" => ("qemu-system-aarch64", &["-M", "virt", "-cpu", "cortex-a72"], "ttyAMA0"),
        _ => panic!("boot_arch: no QEMU machine for {arch}"),
    };
    let work = tempfile::tempdir().unwrap();
    let initrd = work.path().join("initrd");
    let mut out = std::fs::File::create(&initrd).unwrap();
    for r in ramdisks {
        std::io::copy(&mut std::fs::File::open(r).unwrap(), &mut out).unwrap();
    }
    drop(out);
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(machine)
        .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("{cmdline} console={console} panic=-1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {qemu} (scripts/deps.sh installs it): {e}"));
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
