//! A minimal root filesystem for sandbox and boot tests: Debian's static
//! busybox (package `busybox-static`) at `/bin/busybox` with one symlink per
//! applet, plus the empty directories a step or an init expects.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fill `root` with busybox and its applet links (`bin/sh`, `bin/nc`, …).
pub fn busybox_rootfs(root: &Path) {
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "dev", "sys"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).expect("busybox-static is installed (scripts/deps.sh)");
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
