//! The QEMU boot harness: tiny busybox initramfs images boot Debian's cloud
//! kernel (amd64, and arm64 on QEMU's virt machine) under TCG and their
//! `/init` prints a marker on the serial console.
//!
//! The ramdisks here are made with GNU cpio, an independent writer, so these
//! tests check the harness and the kernels alone; tests/build.rs and
//! tests/aarch64.rs boot the EIFs eifbake writes.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Pack `root` as a newc cpio archive at `out` with GNU cpio.
fn gnu_cpio(root: &Path, out: &Path) -> PathBuf {
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet")
        .current_dir(root)
        .stdout(fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success());
    out.to_path_buf()
}

fn write_init(root: &Path, script: &str) {
    let init = root.join("init");
    fs::write(&init, script).unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn busybox_initramfs_boots_and_prints_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    common::rootfs::busybox_rootfs(&root);
    write_init(&root, "#!/bin/sh\necho \"EIFBAKE-BOOT-$((6 * 7))\"\npoweroff -f\n");
    let cpio = gnu_cpio(&root, &dir.path().join("initramfs.cpio"));

    let kernel = common::qemu::kernel();
    let boot = common::qemu::boot(&kernel, &[&cpio], "quiet", Duration::from_secs(120));
    // The marker is computed by the shell, so an echo of the script cannot match.
    assert!(boot.console.contains("EIFBAKE-BOOT-42"), "marker missing; console:\n{}", boot.console);
    assert!(boot.finished, "QEMU did not power off within the timeout");
    eprintln!("booted in {:.1} s", boot.elapsed.as_secs_f64());
}

#[test]
fn arm64_busybox_initramfs_boots_under_qemu_aarch64() {
    // The harness the aarch64 end-to-end test relies on: Debian's arm64 Image
    // and busybox-static:arm64, on QEMU's virt machine.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    common::rootfs::busybox_rootfs_for(&root, "arm64");
    write_init(&root, "#!/bin/sh\necho \"EIFBAKE-BOOT-$((6 * 7)) on $(uname -m)\"\npoweroff -f\n");
    let cpio = gnu_cpio(&root, &dir.path().join("initramfs.cpio"));

    let kernel = common::qemu::kernel_for("arm64");
    let boot = common::qemu::boot_arch("arm64", &kernel, &[&cpio], "quiet", Duration::from_secs(120));
    assert!(
        boot.console.contains("EIFBAKE-BOOT-42 on aarch64"),
        "marker missing; console:\n{}",
        boot.console
    );
    assert!(boot.finished, "QEMU did not power off within the timeout");
    eprintln!("booted in {:.1} s", boot.elapsed.as_secs_f64());

    // The demo's shell harness boots it the same way.
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/boot-qemu.sh"))
        .args(["--arch", "arm64"])
        .arg(&kernel)
        .arg("quiet")
        .arg(&cpio)
        .output()
        .unwrap();
    assert!(out.status.success(), "boot-qemu.sh: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EIFBAKE-BOOT-42 on aarch64"));
}

#[test]
fn concatenated_ramdisks_are_merged_like_nitro_cli_layout() {
    // Ramdisk 0 holds the init and busybox, ramdisk 1 a rootfs/ tree and a
    // cmd file, as nitro-cli's boot and user ramdisks do.
    let dir = tempfile::tempdir().unwrap();
    let boot_root = dir.path().join("boot");
    common::rootfs::busybox_rootfs(&boot_root);
    write_init(
        &boot_root,
        "#!/bin/sh\nread line < /rootfs/etc/greeting\necho \"$line from $(cat /cmd)\"\npoweroff -f\n",
    );
    let user_root = dir.path().join("user");
    fs::create_dir_all(user_root.join("rootfs/etc")).unwrap();
    fs::write(user_root.join("rootfs/etc/greeting"), "EIFBAKE-USER-RAMDISK\n").unwrap();
    fs::write(user_root.join("cmd"), "/usr/bin/hello\n").unwrap();
    let r0 = gnu_cpio(&boot_root, &dir.path().join("boot.cpio"));
    let r1 = gnu_cpio(&user_root, &dir.path().join("user.cpio"));

    let kernel = common::qemu::kernel();
    let boot = common::qemu::boot(&kernel, &[&r0, &r1], "quiet", Duration::from_secs(120));
    assert!(
        boot.console.contains("EIFBAKE-USER-RAMDISK from /usr/bin/hello"),
        "line missing; console:\n{}",
        boot.console
    );
    assert!(boot.finished);

    // The demo's shell harness boots the same ramdisks the same way.
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/boot-qemu.sh"))
        .arg(&kernel)
        .arg("quiet")
        .arg(&r0)
        .arg(&r1)
        .output()
        .unwrap();
    assert!(out.status.success(), "boot-qemu.sh: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EIFBAKE-USER-RAMDISK from /usr/bin/hello"));
}
