//! Helpers shared by the EIF integration tests: deterministic synthetic
//! inputs (kernel bytes, a hand-made newc archive) and running the binary
//! (in the clean environment of `common::bin`: a test binary using this
//! module declares `mod common;` too).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use crate::common::bin;

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

/// The 64-byte header of an arm64 `Image` (magic `ARM\x64` at 0x38, 4K
/// pages, little-endian) for a kernel of `size` bytes.
pub fn arm64_image_header(size: u64) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..4].copy_from_slice(&[0x4d, 0x5a, 0x40, 0xfa]); // code0: the EFI stub's "MZ"
    h[16..24].copy_from_slice(&size.to_le_bytes()); // image_size
    h[24..32].copy_from_slice(&0xau64.to_le_bytes()); // flags: LE, 4K pages, anywhere
    h[0x38..0x3c].copy_from_slice(b"ARM\x64");
    h
}

/// A synthetic arm64 `Image`: the header, then deterministic bytes (`n` in all).
pub fn arm64_image(seed: u64, n: usize) -> Vec<u8> {
    let mut k = arm64_image_header(n as u64).to_vec();
    k.extend(bytes(seed, n - k.len()));
    k
}

/// A synthetic x86 bzImage: a boot sector and setup header speaking boot
/// protocol 2.15 (0xAA55 at 0x1FE, `HdrS` at 0x202), then deterministic bytes.
pub fn bzimage(seed: u64, n: usize) -> Vec<u8> {
    let mut k = bytes(seed, n);
    k[0..2].copy_from_slice(b"MZ");
    k[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k
}

/// `eifbake` in a clean environment (no `SOURCE_DATE_EPOCH`, no signing key, ...).
pub fn eifbake() -> Command {
    bin::eifbake_cmd()
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

/// The aarch64 twin of [`write_inputs`]: the same ramdisks, and an arm64
/// `Image` (a real header over the same pseudo-random bytes) with an arm64
/// kernel config instead of the bzImage.
pub fn write_inputs_aarch64(dir: &Path, user_file_content: &[u8], cmd_mode: u32) {
    write_inputs(dir, user_file_content, cmd_mode);
    std::fs::write(dir.join("Image"), arm64_image(7, 200_000)).unwrap();
    std::fs::write(
        dir.join("linux.config"),
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/arm64 6.12.20 Kernel Configuration\n#\n",
    )
    .unwrap();
}

/// `eifbake eif` over the inputs in `dir`, writing `out`.
pub fn build_args(dir: &Path, out: &str) -> Vec<String> {
    build_args_for(dir, out, "x86_64")
}

/// [`build_args`] for `arch` (`x86_64`: the `bzImage`; `aarch64`: the `Image`
/// and `--arch aarch64`).
pub fn build_args_for(dir: &Path, out: &str, arch: &str) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    let mut args: Vec<String> = vec!["eif".into()];
    if arch != "x86_64" {
        args.extend(["--arch".into(), arch.into()]);
    }
    let kernel = if arch == "x86_64" { "bzImage" } else { "Image" };
    let rest: Vec<String> = vec![
        "--kernel".into(),
        p(kernel),
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
    ];
    args.extend(rest);
    args
}

/// Build the golden EIF for `arch` (`x86_64` or `aarch64`) in `dir` from the
/// standard inputs, as `eifbake eif` run by a shell with the clean
/// environment of [`bin::clean_env`], `SOURCE_DATE_EPOCH`, `envs` and `umask`; returns its `--json` output, bytes and `.pcrs`.
pub fn golden_build(
    dir: &Path,
    arch: &str,
    envs: &[(&str, &str)],
    umask: &str,
    extra: &[String],
) -> (serde_json::Value, Vec<u8>, String) {
    if arch == "x86_64" {
        write_inputs(dir, b"hello\n", 0o100644);
    } else {
        write_inputs_aarch64(dir, b"hello\n", 0o100644);
    }
    let mut args = build_args_for(dir, "hello.eif", arch);
    args.extend_from_slice(extra);
    let args = args.join("' '");
    // A shell with the clean environment sets the umask, then execs eifbake.
    let o = bin::clean_env(
        Command::new("sh").arg("-c").arg(format!("umask {umask} && exec '{}' '{args}'", bin::EIFBAKE)),
    )
    .env("SOURCE_DATE_EPOCH", "1774569600")
    .envs(envs.iter().copied())
    .current_dir(dir)
    .output()
    .unwrap();
    assert!(o.status.success(), "eifbake eif failed: {}", text(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let eif = std::fs::read(dir.join("hello.eif")).unwrap();
    let pcrs = std::fs::read_to_string(dir.join("hello.eif.pcrs")).unwrap();
    (json, eif, pcrs)
}

/// The checked-in golden values for `arch`: `tests/golden/eif.json` for
/// x86_64, `tests/golden/eif-aarch64.json` for aarch64.
pub fn golden_path(arch: &str) -> std::path::PathBuf {
    let name = if arch == "x86_64" { "eif.json".to_string() } else { format!("eif-{arch}.json") };
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Run a command and return (exit code, peak RSS in KiB) of that child alone.
pub fn peak_rss(c: &mut Command) -> (i32, i64) {
    let (code, rss, _, _) = run_measured(c);
    (code, rss)
}

/// Run a command; return its exit code, its peak RSS in KiB (that child
/// alone), its standard output and its standard error.
pub fn run_measured(c: &mut Command) -> (i32, i64, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let files = (std::fs::File::create(&out).unwrap(), std::fs::File::create(&err).unwrap());
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
    let child = c.stdout(files.0).stderr(files.1).spawn().unwrap();
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers; `child` is our own, not yet waited for.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as libc::pid_t);
    (libc::WEXITSTATUS(status), ru.ru_maxrss, std::fs::read(out).unwrap(), std::fs::read(err).unwrap())
}
