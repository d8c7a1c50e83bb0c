//! Helpers shared by the EIF integration tests: deterministic synthetic
//! inputs (kernel bytes, a hand-made newc archive) and running the binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Deterministic pseudo-random bytes (xorshift64).
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A newc archive written by hand: (name, mode, data) entries, mtime 1,
/// uid/gid 0, inodes 1.., then `TRAILER!!!`.
pub fn newc(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn pad(v: &mut Vec<u8>) {
        while v.len() % 4 != 0 {
            v.push(0);
        }
    }
    let mut out = Vec::new();
    let push = |out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]| {
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [ino, mode, 0, 0, nlink, 1, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(out);
        out.extend_from_slice(data);
        pad(out);
    };
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        push(&mut out, i as u32 + 1, name, *mode, data);
    }
    push(&mut out, 0, "TRAILER!!!", 0, b"");
    out
}

pub fn eifbake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eifbake"));
    c.env_remove("SOURCE_DATE_EPOCH").env("EIFBAKE_NO_PROGRESS", "1");
    c
}

pub fn run(c: &mut Command) -> Output {
    c.output().expect("run eifbake")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The two standard ramdisks: a boot one (init) and a user one.
pub fn write_inputs(dir: &Path, user_file_content: &[u8], cmd_mode: u32) {
    std::fs::write(dir.join("bzImage"), bytes(7, 200_000)).unwrap();
    std::fs::write(
        dir.join("linux.config"),
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.12.20 Kernel Configuration\n#\n",
    )
    .unwrap();
    let boot = newc(&[("dev", 0o040755, b""), ("init", 0o100755, &bytes(9, 5_000))]);
    std::fs::write(dir.join("boot.cpio"), boot).unwrap();
    let user = newc(&[
        ("cmd", cmd_mode, b"/usr/bin/hello\n"),
        ("env", 0o100644, b"RUST_LOG=info\n"),
        ("rootfs", 0o040755, b""),
        ("rootfs/etc", 0o040755, b""),
        ("rootfs/etc/motd", 0o100644, user_file_content),
        ("rootfs/usr/bin/hello", 0o100755, &bytes(11, 30_000)),
        ("rootfs/usr/bin/sh", 0o120777, b"busybox"),
    ]);
    std::fs::write(dir.join("user.cpio"), user).unwrap();
}

/// `eifbake eif` over the inputs in `dir`, writing `out`.
pub fn build_args(dir: &Path, out: &str) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    vec![
        "eif".into(),
        "--kernel".into(),
        p("bzImage"),
        "--kernel-config".into(),
        p("linux.config"),
        "--cmdline".into(),
        "console=ttyS0 reboot=k panic=30 pci=off nomodules".into(),
        "--ramdisk".into(),
        p("boot.cpio"),
        "--ramdisk".into(),
        p("user.cpio"),
        "--name".into(),
        "hello".into(),
        "--version".into(),
        "0.1.0".into(),
        "--metadata".into(),
        r#"{"tool":"eifbake","inputs":{"recipe":"hello"}}"#.into(),
        "--output".into(),
        p(out),
        "--pcrs".into(),
        p(&format!("{out}.pcrs")),
        "--json".into(),
    ]
}
