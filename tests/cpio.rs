//! `eifbake ramdisk` end to end: GNU cpio extracts what we write, the bytes
//! do not depend on the host (umask, creation order, file times, time zone),
//! `--gzip` output is valid gzip of the same archive, and a golden digest.
//!
//! Regenerate the golden values with `make golden` (or
//! `EIFBAKE_REGEN_GOLDEN=1 cargo test --test cpio golden`), then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eifbake::cpio::{self, Kind};
use eifbake::digest::Digest;

mod common;

/// Deterministic pseudo-random bytes (xorshift), compressible but not trivially.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789abcdef  \n"[(x % 19) as usize]
        })
        .collect()
}

fn ramdisk(dir: &Path, out: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = common::bin::eifbake_cmd();
    cmd.arg("ramdisk").arg(dir).arg("--output").arg(out).args(extra);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run eifbake")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "eifbake failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The tree the extraction test packs: nested dirs, files of many sizes,
/// executables, symlinks, hard links, a fifo, a device node when root.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/deep/er/still")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    for (i, size) in [0usize, 1, 3, 4, 5, 4095, 4096, 65537].iter().enumerate() {
        fs::write(root.join(format!("etc/f{i}")), bytes(*size, i as u64)).unwrap();
    }
    fs::write(root.join("etc/deep/er/still/big"), bytes((1 << 20) + 7, 99)).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(root.join("usr/bin/group-exec"), b"x").unwrap();
    fs::set_permissions(root.join("usr/bin/group-exec"), fs::Permissions::from_mode(0o610)).unwrap();
    fs::write(root.join("etc/secret"), b"s").unwrap();
    fs::set_permissions(root.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", root.join("dangling")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("etc/tool-third")).unwrap();
    fs::write(root.join("etc/big-link-a"), bytes(200_000, 5)).unwrap();
    fs::hard_link(root.join("etc/big-link-a"), root.join("etc/big-link-b")).unwrap();
    mkfifo(&root.join("etc/fifo"));
    if common::root_or_skip("a character device in the ramdisk tree") {
        mknod_char(&root.join("etc/null"), 1, 3);
    }
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

fn mknod_char(p: &Path, major: u32, minor: u32) {
    let st = Command::new("mknod").arg(p).arg("c").arg(major.to_string()).arg(minor.to_string()).status();
    assert!(st.unwrap().success());
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Dir,
    File { sha: Digest, exec: bool },
    Symlink(PathBuf),
    Fifo,
    Char(u64),
}

/// What matters of a host tree, by relative path; also the inode of each file.
fn snapshot(root: &Path) -> (BTreeMap<String, Seen>, BTreeMap<String, (u64, u64)>) {
    let mut seen = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let s = if ft.is_dir() {
            Seen::Dir
        } else if ft.is_file() {
            inodes.insert(rel.clone(), (md.dev(), md.ino()));
            Seen::File { sha: Digest::of(&fs::read(e.path()).unwrap()), exec: md.mode() & 0o111 != 0 }
        } else if ft.is_symlink() {
            Seen::Symlink(fs::read_link(e.path()).unwrap())
        } else if ft.is_fifo() {
            Seen::Fifo
        } else if ft.is_char_device() {
            Seen::Char(md.rdev())
        } else {
            panic!("unexpected file type at {rel}");
        };
        seen.insert(rel, s);
    }
    (seen, inodes)
}

#[test]
fn gnu_cpio_extracts_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let out = tmp.path().join("r.cpio");
    ok(ramdisk(&src, &out, &[], &[("SOURCE_DATE_EPOCH", "1700000000")]));

    let dest = tmp.path().join("x");
    fs::create_dir(&dest).unwrap();
    let o = Command::new("cpio")
        .args(["-idmv", "--no-absolute-filenames"])
        .current_dir(&dest)
        .stdin(fs::File::open(&out).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio -i failed: {}", String::from_utf8_lossy(&o.stderr));

    let (want, src_inodes) = snapshot(&src);
    let (got, got_inodes) = snapshot(&dest);
    assert_eq!(got, want, "extracted tree differs from the source");

    // Hard links share an inode after extraction, and only they do.
    let groups = |inodes: &BTreeMap<String, (u64, u64)>| {
        let mut by_ino: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for (p, i) in inodes {
            by_ino.entry(*i).or_default().push(p.clone());
        }
        let mut g: Vec<Vec<String>> = by_ino.into_values().filter(|v| v.len() > 1).collect();
        g.sort();
        g
    };
    assert_eq!(groups(&got_inodes), groups(&src_inodes));
    assert_eq!(groups(&got_inodes).len(), 2);

    // Canonical modes on disk: 0755 dirs and executables, 0644 the rest, 0777 symlinks.
    for (rel, s) in &got {
        let md = fs::symlink_metadata(dest.join(rel)).unwrap();
        let perm = md.mode() & 0o7777;
        let expect = match s {
            Seen::Dir => 0o755,
            Seen::File { exec: true, .. } => 0o755,
            Seen::Symlink(_) => 0o777,
            _ => 0o644,
        };
        assert_eq!(perm, expect, "{rel}: mode {perm:o}");
    }
    // mtimes are restored from the archive (-m): every non-directory has the epoch.
    for rel in ["etc/f0", "usr/bin/tool", "etc/deep/er/still/big"] {
        assert_eq!(fs::metadata(dest.join(rel)).unwrap().mtime(), 1_700_000_000, "{rel}");
    }

    // And our own reader agrees on the header fields.
    let entries = cpio::list(fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(entries.len(), want.len());
    let mut last: Option<Vec<u8>> = None;
    for (e, _) in &entries {
        assert_eq!((e.uid, e.gid, e.mtime, e.devmajor, e.devminor), (0, 0, 1_700_000_000, 0, 0));
        if e.kind() != Kind::CharDevice {
            assert_eq!((e.rdevmajor, e.rdevminor), (0, 0), "{}", e.name_lossy());
        }
        if let Some(prev) = &last {
            assert!(
                prev < &e.name,
                "not sorted: {:?} then {:?}",
                e.name_lossy(),
                String::from_utf8_lossy(prev)
            );
        }
        last = Some(e.name.clone());
    }
    let tool: Vec<_> = entries
        .iter()
        .filter(|(e, _)| e.name.ends_with(b"tool-third") || e.name.starts_with(b"usr/bin/tool"))
        .collect();
    assert_eq!(tool.len(), 3);
    assert!(tool.iter().all(|(e, _)| e.nlink == 3 && e.ino == tool[0].0.ino));
    assert_eq!(tool.iter().filter(|(e, _)| e.size > 0).count(), 1, "data must be written once");
    assert!(tool[0].0.size > 0, "the first name in output order carries the data");
}

/// One way of creating the same logical tree: the shell runs the steps with
/// `umask`, in the given order, stamping files with `touch_time`.
fn build_with_shell(root: &Path, blobs: &Path, umask: &str, reverse: bool, touch_time: &str) {
    let mut steps = vec![
        "mkdir -p a/b/c && cp \"$B/one\" a/b/c/file".to_string(),
        "mkdir -p a/z && cp \"$B/two\" a/z/exe && chmod +x a/z/exe".to_string(),
        "mkdir -p a-b && cp \"$B/big\" a-b/big".to_string(),
        "mkdir -p lnk && cp \"$B/one\" lnk/x && ln lnk/x lnk/y".to_string(),
        "mkdir -p s && ln -s ../a/z/exe s/exe".to_string(),
        "mkdir -p p && mkfifo p/fifo".to_string(),
        "mkdir -p e && : > e/empty".to_string(),
    ];
    for i in 0..20 {
        steps.push(format!("mkdir -p many && printf 'n{i}' > many/n{i}"));
    }
    if reverse {
        steps.reverse();
    }
    let script = format!(
        "set -e; umask {umask}; cd \"$R\"; {}; find . -exec touch -h -d @{touch_time} {{}} +",
        steps.join("; ")
    );
    fs::create_dir_all(root).unwrap();
    let st = Command::new("sh").arg("-c").arg(script).env("R", root).env("B", blobs).status().unwrap();
    assert!(st.success());
}

#[test]
fn same_bytes_whatever_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let blobs = tmp.path().join("blobs");
    fs::create_dir(&blobs).unwrap();
    fs::write(blobs.join("one"), b"one\n").unwrap();
    fs::write(blobs.join("two"), b"#!/bin/sh\n").unwrap();
    fs::write(blobs.join("big"), bytes(3 << 20, 1)).unwrap();

    let a = tmp.path().join("first/tree");
    let b = tmp.path().join("elsewhere/deeper/tree");
    build_with_shell(&a, &blobs, "022", false, "1000000000");
    build_with_shell(&b, &blobs, "077", true, "1600000000");
    assert_ne!(
        fs::metadata(a.join("a")).unwrap().mode(),
        fs::metadata(b.join("a")).unwrap().mode(),
        "the umasks should have made the host trees differ"
    );

    for extra in [&[][..], &["--gzip"][..], &["--prefix", "rootfs"][..]] {
        let (ra, rb) = (tmp.path().join("ra"), tmp.path().join("rb"));
        ok(ramdisk(&a, &ra, extra, &[("SOURCE_DATE_EPOCH", "1"), ("TZ", "UTC")]));
        ok(ramdisk(&b, &rb, extra, &[("SOURCE_DATE_EPOCH", "1"), ("TZ", "Asia/Kolkata"), ("LC_ALL", "C")]));
        let (ba, bb) = (fs::read(&ra).unwrap(), fs::read(&rb).unwrap());
        assert!(ba == bb, "ramdisks differ with {extra:?}");
        // A different epoch must change the bytes (the epoch is really used).
        ok(ramdisk(&b, &rb, extra, &[("SOURCE_DATE_EPOCH", "2")]));
        assert!(ba != fs::read(&rb).unwrap(), "SOURCE_DATE_EPOCH ignored with {extra:?}");
    }
}

#[test]
fn gzip_output_is_valid_gzip_of_the_plain_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    fs::write(src.join("more"), bytes(5 << 20, 3)).unwrap();
    let (plain, gz) = (tmp.path().join("r.cpio"), tmp.path().join("r.cpio.gz"));
    ok(ramdisk(&src, &plain, &[], &[]));
    let o = ok(ramdisk(&src, &gz, &["--gzip", "--json"], &[]));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gz_bytes = fs::read(&gz).unwrap();
    assert_eq!(summary["sha256"], Digest::of(&gz_bytes).hex());
    assert_eq!(summary["size"], gz_bytes.len() as u64);
    assert_eq!(summary["cpio_bytes"], fs::metadata(&plain).unwrap().len());
    assert_eq!(&gz_bytes[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);

    let t = Command::new("gzip").arg("-t").arg(&gz).output().unwrap();
    assert!(t.status.success(), "gzip -t: {}", String::from_utf8_lossy(&t.stderr));
    let d = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert!(d.status.success());
    assert!(d.stdout == fs::read(&plain).unwrap(), "gzip -dc does not give the plain archive back");
    assert_eq!(
        cpio::list(fs::File::open(&gz).unwrap()).unwrap(),
        cpio::list(fs::File::open(&plain).unwrap()).unwrap()
    );
}

#[test]
fn errors_exit_2_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.cpio");
    let o = ramdisk(&tmp.path().join("missing"), &out, &[], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing") && err.contains("No such file"), "{err}");

    let o = ramdisk(tmp.path(), &out, &[], &[("SOURCE_DATE_EPOCH", "yesterday")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SOURCE_DATE_EPOCH"));

    let o = ramdisk(tmp.path(), &out, &["--prefix", "../up"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'..'"));

    let o = ramdisk(tmp.path(), &out, &[], &[("SOURCE_DATE_EPOCH", "4294967296")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("32-bit"));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "a partial output was left behind");
}

/// A fixed synthetic tree, made the same way on every machine.
fn golden_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::write(root.join("usr/bin/app"), bytes(3 * (1 << 20) + 12_345, 7)).unwrap();
    fs::set_permissions(root.join("usr/bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/hostname"), b"enclave\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.bak")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    mkfifo(&root.join("var/fifo"));
}

#[test]
fn golden_ramdisk_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    golden_tree(&src);
    let mut got = serde_json::Map::new();
    got.insert(
        "about".into(),
        "sha256 of `eifbake ramdisk` on the tree golden_tree() in tests/cpio.rs makes, SOURCE_DATE_EPOCH=1700000000; \
         recompute with `make golden` (EIFBAKE_REGEN_GOLDEN=1 cargo test --test cpio golden)"
            .into(),
    );
    for (key, extra) in
        [("plain", &[][..]), ("gzip", &["--gzip"][..]), ("rootfs_prefix", &["--prefix", "rootfs"][..])]
    {
        let out = tmp.path().join(key);
        ok(ramdisk(&src, &out, extra, &[("SOURCE_DATE_EPOCH", "1700000000")]));
        got.insert(key.into(), Digest::of(&fs::read(&out).unwrap()).hex().into());
    }
    let got = serde_json::Value::Object(got);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ramdisk.json");
    if std::env::var_os("EIFBAKE_REGEN_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: serde_json::Value = serde_json::from_slice(
        &fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make golden`", path.display())),
    )
    .unwrap();
    assert_eq!(got, want, "ramdisk bytes changed; if intended, run `make golden` and review the diff");
}

/// Peak RSS (KiB, GNU time's %M: wait4's ru_maxrss) of `eifbake ramdisk DIR --output OUT EXTRA...`.
fn ramdisk_peak_kib(dir: &Path, out: &Path, extra: &[&str]) -> u64 {
    let o = common::bin::clean_env(&mut Command::new("/usr/bin/time"))
        .args(["-f", "maxrss_kb=%M", common::bin::EIFBAKE, "ramdisk"])
        .arg(dir)
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .expect("run /usr/bin/time (Debian package `time`)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"))
}

#[test]
fn memory_stays_flat_for_a_huge_file() {
    // A 512 MiB sparse file: no disk used, but every byte is read, archived and compressed.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let size: u64 = 1 << 29;
    fs::File::create(src.join("huge")).unwrap().set_len(size).unwrap();
    let out = tmp.path().join("r.gz");
    let kb = ramdisk_peak_kib(&src, &out, &["--gzip"]);
    // The gzip writer holds at most max(4, 2 x threads) 1 MiB blocks plus their output.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let limit_kb = (64 + 4 * threads.max(2)) * 1024;
    assert!(kb < limit_kb, "peak RSS {kb} KiB (limit {limit_kb}) packing a 512 MiB file: memory is not flat");

    let mut r = cpio::Reader::open(&out).unwrap();
    let e = r.next_entry().unwrap().unwrap();
    assert_eq!((e.name.as_slice(), e.size as u64), (&b"huge"[..], size));
    let (zeros, _) = Digest::of_reader(std::io::Read::take(std::io::repeat(0), size)).unwrap();
    assert_eq!(r.data_sha256().unwrap(), zeros);
    assert!(r.next_entry().unwrap().is_none());
}

/// `n` empty files in directories of 100, plus one 8 MiB file of random bytes.
fn many_entries(root: &Path, n: usize) {
    fs::create_dir(root).unwrap();
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            fs::create_dir(&dir).unwrap();
        }
        fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let pad: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    fs::write(root.join("pad"), pad).unwrap();
}

/// Nothing is kept per entry, plain or `--gzip`: the directory is streamed
/// (one listing at a time) and the gzip writer reuses its block buffers.
/// Peak RSS at 20,000 and 80,000 entries must differ by less than 16 bytes
/// per extra entry (holding the sorted tree cost about 230). Measured in a
/// debug build, least of three runs: plain about 0, `--gzip` about 1.6. It
/// was 19 for `--gzip` while glibc let its mmap threshold float: each 1 MiB
/// block's fresh deflate state then came from per-thread arenas whose
/// footprint crept with the number of blocks (more entries, more cpio
/// headers, more blocks); the binary now fixes the threshold at startup.
/// Both trees end with 8 MiB of incompressible bytes, more blocks than the
/// gzip writer keeps in flight, so both runs fill every buffer it has (a
/// bounded set) and the difference is the entries' alone.
#[test]
fn memory_stays_flat_in_the_number_of_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, large) = (20_000, 80_000);
    many_entries(&tmp.path().join("small"), small);
    many_entries(&tmp.path().join("large"), large);
    let out = tmp.path().join("r");
    for extra in [&[][..], &["--gzip"][..]] {
        let peak = |tree: &str| ramdisk_peak_kib(&tmp.path().join(tree), &out, extra);
        // The least of two runs each: a peak only ever gains from noise.
        let a = peak("small").min(peak("small"));
        let b = peak("large").min(peak("large"));
        let per_entry = (b as f64 - a as f64) * 1024.0 / (large - small) as f64;
        assert!(
            per_entry < 16.0,
            "ramdisk {extra:?}: peak RSS {a} KiB at {small} entries, {b} KiB at {large}: {per_entry:.1} bytes \
             more per entry"
        );
        let mut r = cpio::Reader::open(&out).unwrap();
        let mut entries = 0;
        while r.next_entry().unwrap().is_some() {
            entries += 1;
        }
        assert_eq!(entries, large + large / 100 + 1, "files, directories and the pad");
    }
}
