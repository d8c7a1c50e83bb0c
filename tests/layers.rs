//! Layer application: a hostile-layer corpus (built here, byte by byte, so no
//! tar library's own checks stand between the layer and eifbake), whiteout
//! semantics, and a comparison with `umoci unpack` on the same image.
//!
//! Every hostile case asserts the error (kind, layer label, entry), that no
//! file appeared outside the target (the work directory holds exactly what the
//! test put there), that a sentinel outside stays untouched, and that neither
//! the target nor its temporary directory is left behind.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use eifbake::oci::layer::{
    apply_layers, ApplyOptions, ApplySummary, DevicePolicy, ErrorKind, LayerError, LayerSource,
};
use eifbake::oci::layout::Layout;
use eifbake::oci::model::media;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------- tar bytes

/// A tar stream written header by header, with no validation at all.
#[derive(Default)]
struct Tar {
    buf: Vec<u8>,
}

#[derive(Clone)]
struct H<'a> {
    name: &'a str,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    link: &'a str,
    major: u32,
    minor: u32,
}

fn h(name: &str, kind: u8) -> H<'_> {
    H {
        name,
        kind,
        mode: if kind == b'5' { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        link: "",
        major: 0,
        minor: 0,
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    assert!(s.len() < field.len(), "{v} does not fit a {}-byte field", field.len());
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

fn raw_header(e: &H<'_>, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    assert!(e.name.len() <= 100 && e.link.len() <= 100);
    b[..e.name.len()].copy_from_slice(e.name.as_bytes());
    octal(&mut b[100..108], e.mode as u64);
    octal(&mut b[108..116], e.uid as u64);
    octal(&mut b[116..124], e.gid as u64);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], e.mtime);
    b[156] = e.kind;
    b[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], e.major as u64);
    octal(&mut b[337..345], e.minor as u64);
    checksum(&mut b);
    b
}

fn checksum(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

impl Tar {
    fn add(&mut self, e: H<'_>, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&raw_header(&e, data.len() as u64));
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }
    fn pad(&mut self) {
        let rem = self.buf.len() % 512;
        if rem != 0 {
            self.buf.resize(self.buf.len() + 512 - rem, 0);
        }
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(h(name, b'0'), data)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.add(h(name, b'5'), b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(H { link: target, mode: 0o777, ..h(name, b'2') }, b"")
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(H { link: target, ..h(name, b'1') }, b"")
    }
    /// A pax extended header applying `records` to the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while format!("{len}").len() + rest != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.add(h("PaxHeaders/x", b'x'), &body)
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

// ---------------------------------------------------------------- harness

/// A work directory: `blobs/` for layers, `outside/sentinel`, and `out/`
/// which receives the target `out/rootfs`.
struct Work {
    dir: tempfile::TempDir,
    n: usize,
}

const SENTINEL: &[u8] = b"do not touch\n";

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("blobs")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        fs::write(dir.path().join("outside/sentinel"), SENTINEL).unwrap();
        Work { dir, n: 0 }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn outside(&self) -> String {
        self.path().join("outside").to_str().unwrap().to_string()
    }
    fn target(&self) -> PathBuf {
        self.path().join("out/rootfs")
    }
    fn layer(&mut self, bytes: &[u8], mt: &str) -> LayerSource {
        self.n += 1;
        let p = self.path().join(format!("blobs/layer{}", self.n));
        fs::write(&p, bytes).unwrap();
        LayerSource::new(p, mt, format!("layer-{}", self.n))
    }
    fn tar(&mut self, bytes: Vec<u8>) -> LayerSource {
        self.layer(&bytes, media::OCI_TAR)
    }
    fn apply(&self, layers: &[LayerSource]) -> anyhow::Result<ApplySummary> {
        apply_layers(layers, &self.target(), &ApplyOptions::default())
    }

    /// Everything under the work directory except the blobs.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(self.path()).min_depth(1).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(self.path()).unwrap().to_str().unwrap().to_string();
            if !rel.starts_with("blobs/") {
                out.push(rel);
            }
        }
        out
    }

    /// After a refused layer: nothing outside, nothing left behind.
    fn assert_clean(&self) {
        assert_eq!(self.listing(), vec!["blobs", "out", "outside", "outside/sentinel"], "stray files");
        let s = self.path().join("outside/sentinel");
        assert_eq!(fs::read(&s).unwrap(), SENTINEL);
        assert_eq!(fs::metadata(&s).unwrap().nlink(), 1, "sentinel gained a hard link");
    }
}

/// The refusal of `layers`: its kind, and the error names the layer and entry.
fn refused(w: &Work, layers: &[LayerSource], layer: &str, entry: &str) -> ErrorKind {
    let err = w.apply(layers).expect_err("hostile layer must be refused");
    let msg = format!("{err:#}");
    let le = err.downcast::<LayerError>().unwrap_or_else(|e| panic!("not a LayerError: {e:#}"));
    assert_eq!(le.layer, layer, "{msg}");
    assert_eq!(le.entry.as_deref(), Some(entry), "{msg}");
    assert!(msg.contains(layer) && msg.contains(entry), "{msg}");
    w.assert_clean();
    le.kind
}

// ---------------------------------------------------------------- path traversal

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    for (name, want_abs) in
        [("../x", false), ("a/../../x", false), ("../../x", false), ("/etc/x", true), ("./a/..", false)]
    {
        let mut w = Work::new();
        let l = w.tar(Tar::default().file("ok", b"fine").file(name, b"pwned").finish());
        let kind = refused(&w, &[l], "layer-1", name);
        match kind {
            ErrorKind::AbsolutePath => assert!(want_abs, "{name}"),
            ErrorKind::DotDot => assert!(!want_abs, "{name}"),
            other => panic!("{name}: unexpected {other}"),
        }
    }
    assert!(!Path::new("/etc/x").exists());
}

// ---------------------------------------------------------------- symlink escapes

#[test]
fn symlink_to_root_is_not_followed() {
    let mut w = Work::new();
    // link -> / ; then write the sentinel through it by its absolute path.
    let through = format!("link{}/sentinel", w.outside());
    let l = w.tar(Tar::default().symlink("link", "/").file(&through, b"pwned").finish());
    let kind = refused(&w, &[l], "layer-1", &through);
    assert!(matches!(kind, ErrorKind::SymlinkParent(ref p) if p == "link"), "{kind}");

    let mut w = Work::new();
    let l = w
        .tar(Tar::default().symlink("link", "/").file("link/etc/passwd", b"root::0:0::/:/bin/sh\n").finish());
    let before = fs::read("/etc/passwd").unwrap();
    let kind = refused(&w, &[l], "layer-1", "link/etc/passwd");
    assert!(matches!(kind, ErrorKind::SymlinkParent(_)), "{kind}");
    assert_eq!(fs::read("/etc/passwd").unwrap(), before);
}

#[test]
fn relative_symlink_up_is_not_followed() {
    let mut w = Work::new();
    // From out/rootfs.tmp-X, up -> ../.. is the work dir.
    let l = w.tar(Tar::default().symlink("up", "../..").file("up/outside/sentinel", b"pwned").finish());
    let kind = refused(&w, &[l], "layer-1", "up/outside/sentinel");
    assert!(matches!(kind, ErrorKind::SymlinkParent(ref p) if p == "up"), "{kind}");

    let mut w = Work::new();
    let l = w.tar(Tar::default().dir("a").symlink("a/up", "../../..").dir("a/up/outside/new").finish());
    let kind = refused(&w, &[l], "layer-1", "a/up/outside/new");
    assert!(matches!(kind, ErrorKind::SymlinkParent(ref p) if p == "a/up"), "{kind}");
}

#[test]
fn symlink_planted_in_one_layer_is_not_followed_by_the_next() {
    let mut w = Work::new();
    let out = w.outside();
    let l1 = w.layer(&gzip(&Tar::default().symlink("d", &out).finish()), media::OCI_TAR_GZIP);
    let l2 = w.tar(Tar::default().file("d/sentinel", b"pwned").finish());
    let kind = refused(&w, &[l1, l2], "layer-2", "d/sentinel");
    assert!(matches!(kind, ErrorKind::SymlinkParent(_)), "{kind}");
}

#[test]
fn symlink_replacing_a_directory_is_not_followed() {
    // Same layer: d/ then d -> outside, then d/new.
    let mut w = Work::new();
    let out = w.outside();
    let l =
        w.tar(Tar::default().dir("d").file("d/a", b"a").symlink("d", &out).file("d/new", b"pwned").finish());
    let kind = refused(&w, &[l], "layer-1", "d/new");
    assert!(matches!(kind, ErrorKind::SymlinkParent(_)), "{kind}");

    // Across layers: d/ in layer 1, d -> outside in 2, d/new in 3.
    let mut w = Work::new();
    let out = w.outside();
    let l1 = w.tar(Tar::default().dir("d").file("d/a", b"a").finish());
    let l2 = w.tar(Tar::default().symlink("d", &out).finish());
    let l3 = w.tar(Tar::default().file("d/new", b"pwned").finish());
    let kind = refused(&w, &[l1, l2, l3], "layer-3", "d/new");
    assert!(matches!(kind, ErrorKind::SymlinkParent(_)), "{kind}");
}

#[test]
fn a_file_over_a_symlink_replaces_the_symlink_not_its_target() {
    let mut w = Work::new();
    let sentinel = format!("{}/sentinel", w.outside());
    let l1 = w.tar(Tar::default().symlink("s", &sentinel).finish());
    let l2 = w.tar(Tar::default().file("s", b"new contents").finish());
    w.apply(&[l1, l2]).unwrap();
    let t = w.target();
    assert!(fs::symlink_metadata(t.join("s")).unwrap().is_file());
    assert_eq!(fs::read(t.join("s")).unwrap(), b"new contents");
    fs::remove_dir_all(&t).unwrap();
    w.assert_clean();
}

// ---------------------------------------------------------------- hard links

#[test]
fn hard_links_out_of_the_tree_are_refused() {
    let cases: Vec<(String, Tar)> = {
        let w = Work::new();
        let abs = format!("{}/sentinel", w.outside());
        let mut v = Vec::new();
        let mut t = Tar::default();
        t.hardlink("h", "/etc/passwd");
        v.push(("h".to_string(), t));
        let mut t = Tar::default();
        t.hardlink("h", &abs);
        v.push(("h".to_string(), t));
        let mut t = Tar::default();
        t.hardlink("h", "../x");
        v.push(("h".to_string(), t));
        let mut t = Tar::default();
        t.hardlink("h", "../../outside/sentinel");
        v.push(("h".to_string(), t));
        v
    };
    for (entry, mut t) in cases {
        let mut w = Work::new();
        let l = w.tar(t.finish());
        let kind = refused(&w, &[l], "layer-1", &entry);
        assert!(matches!(kind, ErrorKind::HardLinkTarget { .. }), "{kind}");
    }
    // Through a symlink planted earlier.
    let mut w = Work::new();
    let out = w.outside();
    let l1 = w.tar(Tar::default().symlink("s", &out).finish());
    let l2 = w.tar(Tar::default().hardlink("h", "s/sentinel").finish());
    let kind = refused(&w, &[l1, l2], "layer-2", "h");
    match kind {
        ErrorKind::HardLinkTarget { target, reason } => {
            assert_eq!(target, "s/sentinel");
            assert!(reason.contains("symlink"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    // To an entry that does not exist.
    let mut w = Work::new();
    let l = w.tar(Tar::default().hardlink("h", "nothing").finish());
    assert!(matches!(refused(&w, &[l], "layer-1", "h"), ErrorKind::HardLinkTarget { .. }));
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    let mut w = Work::new();
    let sentinel = format!("{}/sentinel", w.outside());
    let l = w.tar(Tar::default().symlink("s", &sentinel).hardlink("h", "s").finish());
    w.apply(&[l]).unwrap();
    let t = w.target();
    let m = fs::symlink_metadata(t.join("h")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(fs::read_link(t.join("h")).unwrap(), Path::new(&sentinel));
    assert_eq!(m.ino(), fs::symlink_metadata(t.join("s")).unwrap().ino());
    fs::remove_dir_all(&t).unwrap();
    w.assert_clean();
}

#[test]
fn replacing_a_hard_linked_file_does_not_write_through_the_link() {
    let mut w = Work::new();
    let l1 = w.tar(Tar::default().file("f", b"old").hardlink("h", "f").finish());
    let l2 = w.tar(Tar::default().file("f", b"new").finish());
    w.apply(&[l1, l2]).unwrap();
    let t = w.target();
    assert_eq!(fs::read(t.join("f")).unwrap(), b"new");
    assert_eq!(fs::read(t.join("h")).unwrap(), b"old");
}

// ---------------------------------------------------------------- whiteouts

#[test]
fn whiteouts_of_dot_dotdot_and_outside_are_refused() {
    for name in [".wh..", ".wh...", "a/.wh...", ".wh."] {
        let mut w = Work::new();
        let l = w.tar(Tar::default().dir("a").file("a/f", b"x").file(name, b"").finish());
        let kind = refused(&w, &[l], "layer-1", name);
        assert!(matches!(kind, ErrorKind::BadWhiteout(_)), "{name}: {kind}");
    }
    for name in ["../.wh.x", "a/../../.wh.outside", "/.wh.etc"] {
        let mut w = Work::new();
        let l = w.tar(Tar::default().file(name, b"").finish());
        let kind = refused(&w, &[l], "layer-1", name);
        assert!(matches!(kind, ErrorKind::DotDot | ErrorKind::AbsolutePath), "{name}: {kind}");
    }
    // A whiteout reached through a symlink.
    let mut w = Work::new();
    let out = w.outside();
    let l = w.tar(Tar::default().symlink("s", &out).file("s/.wh.sentinel", b"").finish());
    assert!(matches!(refused(&w, &[l], "layer-1", "s/.wh.sentinel"), ErrorKind::SymlinkParent(_)));
}

/// The tree under `root` as `path -> description`, without following links.
fn snapshot(root: &Path, with_mtime: bool) -> BTreeMap<String, String> {
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap().to_string();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(e.path()).unwrap().display())
        } else if ft.is_file() {
            let data = fs::read(e.path()).unwrap();
            let mut s = format!("file sha256 {}", hex::encode(Sha256::digest(&data)));
            if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                s.push_str(&format!(" links {} (first {first})", m.nlink()));
            }
            s
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else if ft.is_char_device() || ft.is_block_device() {
            format!(
                "dev {} {}:{}",
                if ft.is_char_device() { 'c' } else { 'b' },
                libc_major(m.rdev()),
                libc_minor(m.rdev())
            )
        } else {
            "other".to_string()
        };
        let mode = if ft.is_symlink() { 0 } else { m.permissions().mode() & 0o7777 };
        let mut line = format!("{what} mode {mode:o} owner {}:{}", m.uid(), m.gid());
        if with_mtime && !ft.is_dir() {
            line.push_str(&format!(" mtime {}", m.mtime()));
        }
        out.insert(rel, line);
    }
    out
}

fn libc_major(d: u64) -> u64 {
    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)
}

fn libc_minor(d: u64) -> u64 {
    ((d >> 12) & 0xffff_ff00) | (d & 0xff)
}

fn names(root: &Path) -> Vec<String> {
    snapshot(root, false).into_keys().collect()
}

#[test]
fn whiteout_semantics() {
    let mut w = Work::new();
    let l1 = w.tar(
        Tar::default()
            .dir("a")
            .file("a/file1", b"1")
            .file("a/file2", b"2")
            .dir("d")
            .dir("d/sub")
            .file("d/sub/x", b"x")
            .dir("o")
            .file("o/lower", b"l")
            .dir("o/sub")
            .file("o/sub/lower", b"l")
            .dir("k")
            .file("k/lower", b"l")
            .finish(),
    );
    let l2 = w.layer(
        &gzip(
            &Tar::default()
                // Whiteout of a file and of a whole directory.
                .file("a/.wh.file1", b"")
                .file(".wh.d", b"")
                // Opaque directory, with the marker after the layer's own entries:
                // they stay, lower ones go, including below kept subdirectories.
                .file("o/new", b"n")
                .file("o/sub/upper", b"u")
                .file("o/.wh..wh..opq", b"")
                // A whiteout does not hide what its own layer provides.
                .file("k/mine", b"m")
                .file("k/.wh.mine", b"")
                .file("k/.wh.lower", b"")
                // Whiteout of something that never existed.
                .file(".wh.nothing", b"")
                .file("nothing-dir/.wh.x", b"")
                .finish(),
        ),
        media::OCI_TAR_GZIP,
    );
    let s = w.apply(&[l1, l2]).unwrap();
    assert_eq!(s.whiteouts, 7);
    assert_eq!(names(&w.target()), vec!["a", "a/file2", "k", "k/mine", "o", "o/new", "o/sub", "o/sub/upper"]);

    // A later layer can hide what an opaque layer kept; and a directory can
    // come back after a whiteout.
    let mut w = Work::new();
    let l1 = w.tar(Tar::default().dir("d").file("d/old", b"o").finish());
    let l2 = w.tar(Tar::default().file(".wh.d", b"").finish());
    let l3 = w.tar(Tar::default().dir("d").file("d/new", b"n").finish());
    w.apply(&[l1, l2, l3]).unwrap();
    assert_eq!(names(&w.target()), vec!["d", "d/new"]);
}

#[test]
fn duplicate_entries_last_wins() {
    let mut w = Work::new();
    let l = w.tar(
        Tar::default()
            .file("f", b"one")
            .file("f", b"two")
            .dir("x")
            .file("x/inner", b"i")
            .file("x", b"file over dir")
            .file("y", b"dir over file")
            .dir("y")
            .file("y/z", b"z")
            .symlink("s", "f")
            .symlink("s", "y")
            .dir("m")
            .add(H { mode: 0o700, uid: 7, ..h("m", b'5') }, b"")
            .file("m/keep", b"k")
            .finish(),
    );
    w.apply(&[l]).unwrap();
    let t = w.target();
    assert_eq!(fs::read(t.join("f")).unwrap(), b"two");
    assert_eq!(fs::read(t.join("x")).unwrap(), b"file over dir");
    assert_eq!(fs::read(t.join("y/z")).unwrap(), b"z");
    assert_eq!(fs::read_link(t.join("s")).unwrap(), Path::new("y"));
    let m = fs::metadata(t.join("m")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    assert_eq!(m.uid(), 7);
    assert_eq!(names(&t), vec!["f", "m", "m/keep", "s", "x", "y", "y/z"]);
}

// ---------------------------------------------------------------- bombs and limits

#[test]
fn gzip_and_zstd_bombs_stop_at_the_limit() {
    let zeros = vec![0u8; 8 << 20];
    let tar = Tar::default().file("zeros", &zeros).finish();
    for (blob, mt) in [(gzip(&tar), media::OCI_TAR_GZIP), (zstd(&tar), media::OCI_TAR_ZSTD)] {
        assert!(blob.len() < 64 << 10, "the bomb should be small: {}", blob.len());
        let mut w = Work::new();
        let l = w.layer(&blob, mt);
        let opts = ApplyOptions { max_total_bytes: 1 << 20, ..ApplyOptions::default() };
        let err = apply_layers(std::slice::from_ref(&l), &w.target(), &opts).unwrap_err();
        let le = err.downcast::<LayerError>().unwrap();
        assert!(matches!(le.kind, ErrorKind::TooLarge { limit } if limit == 1 << 20), "{le}");
        assert_eq!(le.entry.as_deref(), Some("zeros"));
        w.assert_clean();
        // The same layer under the default limit applies.
        apply_layers(&[l], &w.target(), &ApplyOptions::default()).unwrap();
        assert_eq!(fs::metadata(w.target().join("zeros")).unwrap().len(), 8 << 20);
    }
}

#[test]
fn the_byte_limit_spans_layers() {
    let mut w = Work::new();
    let l1 = w.tar(Tar::default().file("a", &vec![1u8; 600 << 10]).finish());
    let l2 = w.tar(Tar::default().file("b", &vec![2u8; 600 << 10]).finish());
    let opts = ApplyOptions { max_total_bytes: 1 << 20, ..ApplyOptions::default() };
    let err = apply_layers(&[l1, l2], &w.target(), &opts).unwrap_err();
    let le = err.downcast::<LayerError>().unwrap();
    assert_eq!(le.layer, "layer-2");
    assert!(matches!(le.kind, ErrorKind::TooLarge { .. }), "{le}");
    w.assert_clean();
}

#[test]
fn huge_sparse_and_huge_declared_entries_are_refused_before_writing() {
    // A GNU sparse entry claiming 1 TiB of logical size with 512 bytes of data.
    let mut hdr = tar::Header::new_gnu();
    hdr.set_path("sparse").unwrap();
    hdr.set_entry_type(tar::EntryType::GNUSparse);
    hdr.set_mode(0o644);
    hdr.set_size(512);
    hdr.set_uid(0);
    hdr.set_gid(0);
    hdr.set_mtime(0);
    {
        let gnu = hdr.as_gnu_mut().unwrap();
        gnu.set_real_size(1 << 40);
        // One 512-byte block at the very end: a 1 TiB hole before it.
        gnu.sparse[0].set_offset((1 << 40) - 512);
        gnu.sparse[0].set_length(512);
    }
    hdr.set_cksum();
    let mut bytes = hdr.as_bytes().to_vec();
    bytes.extend_from_slice(&[7u8; 512]);
    bytes.extend_from_slice(&[0u8; 1024]);
    let mut w = Work::new();
    let l = w.layer(&gzip(&bytes), media::OCI_TAR_GZIP);
    let kind = refused(&w, &[l], "layer-1", "sparse");
    assert!(matches!(kind, ErrorKind::TooLarge { .. }), "{kind}");

    // A plain header declaring 1 TiB (and carrying far less).
    let mut t = Tar::default();
    let mut b = raw_header(&h("huge", b'0'), 0);
    // GNU base-256 size: octal cannot say 1 TiB in 12 bytes.
    b[124..136].fill(0);
    b[124] = 0x80;
    b[128..136].copy_from_slice(&(1u64 << 40).to_be_bytes());
    checksum(&mut b);
    t.buf.extend_from_slice(&b);
    t.buf.extend_from_slice(&[0u8; 4096]);
    let mut w = Work::new();
    let l = w.tar(t.buf);
    assert!(matches!(refused(&w, &[l], "layer-1", "huge"), ErrorKind::TooLarge { .. }));
}

#[test]
fn entry_count_limit() {
    let mut w = Work::new();
    let mut t = Tar::default();
    for i in 0..20 {
        t.file(&format!("f{i}"), b"x");
    }
    let l = w.tar(t.finish());
    let opts = ApplyOptions { max_entries: 10, ..ApplyOptions::default() };
    let le = apply_layers(&[l], &w.target(), &opts).unwrap_err().downcast::<LayerError>().unwrap();
    assert!(matches!(le.kind, ErrorKind::TooManyEntries { limit: 10 }), "{le}");
    assert_eq!(le.entry.as_deref(), Some("f10"));
    w.assert_clean();
}

#[test]
fn truncated_and_corrupt_layers_are_refused() {
    let tar = Tar::default().file("a", &vec![3u8; 200 << 10]).file("b", b"b").finish();
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    let cases = [
        (gz[..gz.len() / 2].to_vec(), media::OCI_TAR_GZIP),
        (gz[..gz.len() - 4].to_vec(), media::DOCKER_TAR_GZIP),
        (zs[..zs.len() / 2].to_vec(), media::OCI_TAR_ZSTD),
        (tar[..700].to_vec(), media::OCI_TAR),
    ];
    for (blob, mt) in cases {
        let mut w = Work::new();
        let l = w.layer(&blob, mt);
        let le = w.apply(&[l]).unwrap_err().downcast::<LayerError>().unwrap();
        assert!(matches!(le.kind, ErrorKind::Malformed(_)), "{mt}: {le}");
        assert_eq!(le.layer, "layer-1");
        w.assert_clean();
    }
    // A media type that contradicts the bytes.
    let mut w = Work::new();
    let l = w.layer(&zs, media::OCI_TAR_GZIP);
    let le = w.apply(&[l]).unwrap_err().downcast::<LayerError>().unwrap();
    assert!(matches!(le.kind, ErrorKind::MediaType(_)), "{le}");
    w.assert_clean();
}

// ---------------------------------------------------------------- devices, target

#[test]
fn devices_follow_the_policy() {
    let mk = |w: &mut Work| {
        w.tar(
            Tar::default()
                .add(H { major: 1, minor: 3, mode: 0o666, ..h("null", b'3') }, b"")
                .add(H { mode: 0o600, ..h("pipe", b'6') }, b"")
                .finish(),
        )
    };
    let mut w = Work::new();
    let l = mk(&mut w);
    let opts = ApplyOptions { devices: DevicePolicy::Reject, ..ApplyOptions::default() };
    let le = apply_layers(&[l], &w.target(), &opts).unwrap_err().downcast::<LayerError>().unwrap();
    assert!(matches!(le.kind, ErrorKind::DeviceNotPermitted), "{le}");
    w.assert_clean();

    let mut w = Work::new();
    let l = mk(&mut w);
    let opts = ApplyOptions { devices: DevicePolicy::Skip, ..ApplyOptions::default() };
    let s = apply_layers(&[l], &w.target(), &opts).unwrap();
    assert_eq!((s.skipped_devices, s.fifos, s.devices), (1, 1, 0));
    assert_eq!(names(&w.target()), vec!["pipe"]);

    if common::root_or_skip("device nodes and owners of an applied layer") {
        let mut w = Work::new();
        let l = mk(&mut w);
        let s = w.apply(&[l]).unwrap();
        assert_eq!((s.devices, s.fifos), (1, 1));
        let snap = snapshot(&w.target(), false);
        assert_eq!(snap["null"], "dev c 1:3 mode 666 owner 0:0");
        assert_eq!(snap["pipe"], "fifo mode 600 owner 0:0");
    }
}

/// Skipped device nodes behave like the nodes for later layers (a whiteout
/// removes one, a file replaces one, one replaces a lower file), and those
/// left at the end are listed, so a build without root can still pack them.
/// Without `same_owner`, unreadable files and closed directories stay open
/// to their owner, the caller, so the tree can be packed and removed.
#[test]
fn skipped_devices_are_listed_as_the_final_tree_has_them() {
    let mut w = Work::new();
    let dev = |name, minor| H { major: 1, minor, mode: 0o666, ..h(name, b'3') };
    let l1 = w.tar(
        Tar::default()
            .file("was-file", b"lower")
            .add(dev("gone", 1), b"")
            .add(dev("replaced", 2), b"")
            .dir("d")
            .add(dev("d/kept", 3), b"")
            .finish(),
    );
    let l2 = w.tar(
        Tar::default()
            .add(dev("was-file", 4), b"")
            .file(".wh.gone", b"")
            .file("replaced", b"file now")
            .add(H { major: 8, minor: 0, ..h("d/disk", b'4') }, b"")
            .add(H { mode: 0o000, ..h("secret", b'0') }, b"s")
            .add(H { mode: 0o500, ..h("closed", b'5') }, b"")
            .finish(),
    );
    let opts = ApplyOptions { devices: DevicePolicy::Skip, same_owner: false, ..ApplyOptions::default() };
    let s = apply_layers(&[l1, l2], &w.target(), &opts).unwrap();
    let listed: Vec<(String, bool, u32, u32)> = s
        .skipped_device_nodes
        .iter()
        .map(|d| (String::from_utf8(d.path.clone()).unwrap(), d.char, d.major, d.minor))
        .collect();
    assert_eq!(
        listed,
        [
            ("d/disk".to_string(), false, 8, 0),
            ("d/kept".to_string(), true, 1, 3),
            ("was-file".to_string(), true, 1, 4)
        ]
    );
    assert_eq!(names(&w.target()), ["closed", "d", "replaced", "secret"]);
    assert_eq!(fs::read(w.target().join("replaced")).unwrap(), b"file now");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| fs::symlink_metadata(w.target().join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("secret"), mode("closed")), (0o400, 0o700));
}

#[test]
fn target_must_be_new_or_empty() {
    let mut w = Work::new();
    let l = w.tar(Tar::default().file("a", b"a").finish());
    fs::create_dir(w.target()).unwrap();
    w.apply(std::slice::from_ref(&l)).unwrap();
    assert_eq!(names(&w.target()), vec!["a"]);
    let err = w.apply(&[l]).unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
}

// ---------------------------------------------------------------- versus umoci

/// Three layers exercising files, dirs, symlinks, hard links, whiteouts,
/// modes, owners, a fifo and a device.
fn image_layers() -> [Vec<u8>; 3] {
    let l1 = Tar::default()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .add(H { mode: 0o600, ..h("etc/shadow", b'0') }, b"root:*:1::::::\n")
        .dir("usr")
        .dir("usr/bin")
        .add(H { mode: 0o755, ..h("usr/bin/tool", b'0') }, b"#!/bin/sh\necho tool\n")
        .add(H { mode: 0o4755, ..h("usr/bin/su", b'0') }, b"setuid")
        .hardlink("usr/bin/tool2", "usr/bin/tool")
        .symlink("usr/bin/link", "tool")
        .symlink("lib", "/usr/lib")
        .add(H { mode: 0o1777, ..h("tmp", b'5') }, b"")
        .dir("home")
        .add(H { mode: 0o700, uid: 1000, gid: 1000, ..h("home/user", b'5') }, b"")
        .add(H { mode: 0o600, uid: 1000, gid: 1000, ..h("home/user/.profile", b'0') }, b"PS1=$\n")
        .dir("var")
        .dir("var/old")
        .file("var/old/a", b"a")
        .dir("opq")
        .file("opq/lower1", b"1")
        .dir("opq/sub")
        .file("opq/sub/lower2", b"2")
        .file("gone.txt", b"bye")
        .dir("gonedir")
        .file("gonedir/x", b"x")
        .finish();
    let l2 = Tar::default()
        .file(".wh.gone.txt", b"")
        .file(".wh.gonedir", b"")
        .dir("opq")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"new")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        .file("var/.wh.old", b"")
        .file("var/old", b"now a file")
        .add(H { uid: 1234, gid: 5678, mode: 0o640, ..h("etc/owned", b'0') }, b"owned")
        .finish();
    let l3 = Tar::default()
        .file("usr/bin/link", b"file replacing a symlink")
        .hardlink("etc/passwd-link", "etc/passwd")
        .dir("dev")
        .add(H { major: 1, minor: 3, mode: 0o666, ..h("dev/null", b'3') }, b"")
        .add(H { mode: 0o644, ..h("dev/fifo", b'6') }, b"")
        .file("home/user/.wh..profile", b"")
        .symlink("home/user/dangling", "../../nowhere")
        .finish();
    [l1, l2, l3]
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = sha256_hex(bytes);
    fs::write(Layout::new(layout).blobs().join(&d), bytes).unwrap();
    (format!("sha256:{d}"), bytes.len())
}

/// A one-image OCI layout tagged `test`, with layers given as (blob, media type, uncompressed tar).
fn write_layout(layout: &Path, layers: &[(Vec<u8>, &str, &[u8])]) {
    let paths = Layout::new(layout);
    fs::create_dir_all(paths.blobs()).unwrap();
    fs::write(paths.oci_layout(), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let diff_ids: Vec<String> =
        layers.iter().map(|(_, _, tar)| format!("sha256:{}", sha256_hex(tar))).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = write_blob(layout, config.to_string().as_bytes());
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(blob, mt, _)| {
            let (d, s) = write_blob(layout, blob);
            serde_json::json!({"mediaType": mt, "digest": d, "size": s})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd, "size": cs},
        "layers": descs,
    });
    let (md, ms) = write_blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": md, "size": ms,
                       "annotations": {"org.opencontainers.image.ref.name": "test"}}],
    });
    fs::write(paths.index(), index.to_string()).unwrap();
}

#[test]
fn same_tree_as_umoci_unpack() {
    if !common::root_or_skip("comparing owners and devices with umoci") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let [t1, t2, t3] = image_layers();
    // umoci 0.4 reads no zstd layers: it gets the third layer gzipped, eifbake
    // gets it as zstd (the same tar either way).
    let layout = work.path().join("layout");
    write_layout(
        &layout,
        &[
            (gzip(&t1), media::OCI_TAR_GZIP, &t1),
            (t2.clone(), media::OCI_TAR, &t2),
            (gzip(&t3), media::OCI_TAR_GZIP, &t3),
        ],
    );
    let bundle = work.path().join("bundle");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci is installed by scripts/deps.sh");
    assert!(out.status.success(), "umoci unpack failed: {}", String::from_utf8_lossy(&out.stderr));

    let blobs = work.path().join("mine");
    fs::create_dir(&blobs).unwrap();
    let mut sources = Vec::new();
    for (i, (bytes, mt)) in
        [(gzip(&t1), media::OCI_TAR_GZIP), (t2.clone(), media::OCI_TAR), (zstd(&t3), media::OCI_TAR_ZSTD)]
            .into_iter()
            .enumerate()
    {
        let p = blobs.join(format!("l{i}"));
        fs::write(&p, bytes).unwrap();
        sources.push(LayerSource::new(p, mt, format!("l{i}")));
    }
    let mine = work.path().join("rootfs");
    let s = apply_layers(&sources, &mine, &ApplyOptions::default()).unwrap();
    assert_eq!(s.layers, 3);

    let theirs = snapshot(&bundle.join("rootfs"), true);
    let ours = snapshot(&mine, true);
    let all: std::collections::BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    let mut diffs = Vec::new();
    for k in all {
        if theirs.get(k) != ours.get(k) {
            diffs.push(format!("{k}:\n  umoci:   {:?}\n  eifbake: {:?}", theirs.get(k), ours.get(k)));
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    // The comparison is not vacuous.
    assert!(ours["usr/bin/su"].contains("mode 4755"), "{}", ours["usr/bin/su"]);
    assert!(ours["etc/owned"].contains("owner 1234:5678"));
    assert!(ours["etc/passwd-link"].contains("links 2"));
    assert!(!ours.contains_key("opq/lower1") && !ours.contains_key("gone.txt"));
}

#[test]
fn xattrs_from_pax_records() {
    let mut w = Work::new();
    let l = w.tar(
        Tar::default()
            .pax(&[("SCHILY.xattr.user.eifbake", b"hello"), ("path", b"long/name/from/pax")])
            .file("ignored-name", b"x")
            .finish(),
    );
    let s = w.apply(&[l]).unwrap();
    let p = w.target().join("long/name/from/pax");
    assert_eq!(fs::read(&p).unwrap(), b"x");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let n =
        unsafe { libc::lgetxattr(c.as_ptr(), c"user.eifbake".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        // The filesystem refuses user xattrs: then it must have been counted.
        assert_eq!(s.skipped_xattrs, 1, "{:?}", std::io::Error::last_os_error());
    } else {
        assert_eq!(&buf[..n as usize], b"hello");
        assert_eq!(s.skipped_xattrs, 0);
    }
}

#[test]
fn compression_from_media_type_or_magic() {
    let tar = Tar::default().dir("d").file("d/f", b"contents").symlink("d/s", "f").finish();
    let cases = [
        (gzip(&tar), media::OCI_TAR_GZIP),
        (gzip(&tar), media::DOCKER_TAR_GZIP),
        (gzip(&tar), media::OCTET_STREAM),
        (zstd(&tar), media::OCI_TAR_ZSTD),
        (zstd(&tar), media::DOCKER_TAR),
        (tar.clone(), media::OCI_TAR),
        (tar.clone(), media::OCTET_STREAM),
    ];
    let mut trees = Vec::new();
    for (blob, mt) in cases {
        let mut w = Work::new();
        let l = w.layer(&blob, mt);
        w.apply(&[l]).unwrap_or_else(|e| panic!("{mt}: {e:#}"));
        trees.push(snapshot(&w.target(), true));
    }
    assert_eq!(trees[0].len(), 3);
    assert!(trees.iter().all(|t| t == &trees[0]));
    // Not a layer type at all.
    let mut w = Work::new();
    let l = w.layer(&tar, media::OCI_CONFIG);
    let le = w.apply(&[l]).unwrap_err().downcast::<LayerError>().unwrap();
    assert!(matches!(le.kind, ErrorKind::MediaType(_)), "{le}");
    w.assert_clean();
}

#[test]
fn directory_metadata_survives_later_writes() {
    let mut w = Work::new();
    let l1 = w.tar(
        Tar::default().add(H { mtime: 1000, mode: 0o750, uid: 5, gid: 6, ..h("d", b'5') }, b"").finish(),
    );
    let l2 = w
        .tar(Tar::default().add(H { mtime: 2000, ..h("d/x", b'0') }, b"x").file("e/implicit", b"y").finish());
    w.apply(&[l1, l2]).unwrap();
    let t = w.target();
    let d = fs::metadata(t.join("d")).unwrap();
    assert_eq!((d.mtime(), d.permissions().mode() & 0o7777), (1000, 0o750));
    if common::root_or_skip("owners of implicit parent directories") {
        assert_eq!((d.uid(), d.gid()), (5, 6));
    }
    assert_eq!(fs::metadata(t.join("d/x")).unwrap().mtime(), 2000);
    // Parents no entry names are created 0755, and so is the root.
    assert_eq!(fs::metadata(t.join("e")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(&t).unwrap().permissions().mode() & 0o7777, 0o755);
}
