//! A minimal root filesystem for sandbox and boot tests: Debian's static
//! busybox (package `busybox-static`) at `/bin/busybox` with one symlink per
//! applet, plus the empty directories a step or an init expects; for another
//! architecture, that architecture's busybox ([`busybox_for`]).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static installs the binary.
pub use eifbake_testkit::oci::BUSYBOX;

/// Debian's static busybox for `arch` (a Debian architecture): the host's
/// [`BUSYBOX`] for `amd64`, else `busybox-static:ARCH` downloaded once by
/// `scripts/fetch-busybox.sh` into `$EIFBAKE_BUSYBOX_DIR/ARCH` (default
/// `$TMPDIR/eifbake-busybox/ARCH`).
pub fn busybox_for(arch: &str) -> PathBuf {
    if arch == "amd64" {
        return PathBuf::from(BUSYBOX);
    }
    let base = std::env::var_os("EIFBAKE_BUSYBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("eifbake-busybox"));
    let dir = base.join(arch);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-busybox.sh");
    let status =
        Command::new("bash").arg(&script).arg(&dir).arg(arch).status().expect("run fetch-busybox.sh");
    assert!(status.success(), "{} {} {arch} failed", script.display(), dir.display());
    dir.join("busybox")
}

/// Fill `root` with the host's busybox and its applet links (`bin/sh`, `bin/nc`, …).
pub fn busybox_rootfs(root: &Path) {
    busybox_rootfs_for(root, "amd64")
}

/// [`busybox_rootfs`] with `arch`'s busybox ([`busybox_for`]). The applet
/// list comes from the host's busybox, which can run: Debian builds
/// busybox-static with one configuration for every architecture.
pub fn busybox_rootfs_for(root: &Path, arch: &str) {
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "dev", "sys"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(busybox_for(arch), root.join("bin/busybox"))
        .expect("busybox-static is installed (scripts/deps.sh)");
    let list = Command::new(BUSYBOX).arg("--list").output().expect("run busybox --list");
    assert!(list.status.success());
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", &link).unwrap();
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
}
