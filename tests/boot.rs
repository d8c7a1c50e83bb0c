//! The QEMU boot harness: a tiny busybox initramfs boots Debian's cloud
//! kernel under TCG and its `/init` prints a marker on the serial console.
//!
//! The initramfs is made with GNU cpio for now; once the project's own cpio
//! writer is merged, the end-to-end tests boot what eifbake writes.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn busybox_initramfs_boots_and_prints_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    common::rootfs::busybox_rootfs(&root);
    let init = root.join("init");
    fs::write(&init, "#!/bin/sh\necho \"EIFBAKE-BOOT-$((6 * 7))\"\npoweroff -f\n").unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
    let cpio = dir.path().join("initramfs.cpio");
    let list = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet")
        .current_dir(&root)
        .stdout(fs::File::create(&cpio).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(list.success());

    let kernel = common::qemu::kernel();
    let boot = common::qemu::boot(&kernel, &[&cpio], "quiet", Duration::from_secs(120));
    // The marker is computed by the shell, so an echo of the script cannot match.
    assert!(boot.console.contains("EIFBAKE-BOOT-42"), "marker missing; console:\n{}", boot.console);
    assert!(boot.finished, "QEMU did not power off within the timeout");
    eprintln!("booted in {:.1} s", boot.elapsed.as_secs_f64());
}
