//! Blobs are verified when a build reads them, and layers cannot expand
//! without bound.
//!
//! The layer tests call `apply_layers` directly on blobs written here (gzip
//! bombs are streamed through flate2, never held or written uncompressed);
//! the build test tampers with a real store filled from a loopback registry
//! (needs docker-registry and skopeo, as tests/registry.rs) and runs
//! `eifbake build --offline --no-cache`.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{eifbake, eifbake_ok, push_fixtures, write_recipe, TestRegistry};
use eifbake::digest::Digest;
use eifbake::oci::layer::{apply_layers, ApplyOptions, ErrorKind, LayerError, LayerSource};
use eifbake::oci::model::{self, media, DescriptorExt};
use eifbake::oci::store::BlobError;
use eifbake::oci::Store;

/// A scratch directory with the blobs in `blobs/` and the target `out/rootfs`.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("blobs")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Work { dir }
    }
    fn blob(&self, name: &str) -> PathBuf {
        self.dir.path().join("blobs").join(name)
    }
    fn target(&self) -> PathBuf {
        self.dir.path().join("out/rootfs")
    }
    fn apply(&self, layers: &[LayerSource], opts: &ApplyOptions) -> Result<(), Box<LayerError>> {
        match apply_layers(layers, &self.target(), opts) {
            Ok(_) => Ok(()),
            Err(e) => Err(Box::new(
                e.downcast::<LayerError>().unwrap_or_else(|e| panic!("not a LayerError: {e:#}")),
            )),
        }
    }
    /// Nothing extracted, nothing staged: `out/` is empty.
    fn assert_clean(&self) {
        let left: Vec<_> =
            fs::read_dir(self.dir.path().join("out")).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// A plain tar of `(name, contents)`, followed by `trailing` bytes.
fn small_tar(files: &[(&str, &[u8])], trailing: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        b.append(&header(name, data.len() as u64), *data).unwrap();
    }
    let mut v = b.into_inner().unwrap();
    v.extend_from_slice(trailing);
    v
}

/// Write a gzip layer to `path` holding `files` entries of `size` zero bytes
/// each, streamed (nothing of that size is held or written uncompressed).
fn gzip_bomb(path: &Path, files: usize, size: u64) -> u64 {
    let f = fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for i in 0..files {
        gz.write_all(header(&format!("zeros{i}"), size).as_bytes()).unwrap();
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            gz.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        let pad = (512 - size % 512) % 512;
        gz.write_all(&zeros[..pad as usize]).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap().into_inner().unwrap().sync_all().unwrap();
    fs::metadata(path).unwrap().len()
}

fn blob_error(le: &LayerError) -> &BlobError {
    match &le.kind {
        ErrorKind::Blob(b) => b,
        other => panic!("expected a blob error, got {other}"),
    }
}

// ---------------------------------------------------------------- digests and sizes

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_extracted() {
    let w = Work::new();
    let good = small_tar(&[("etc/motd", b"hello\n")], &[]);
    let digest = Digest::of(&good);
    // Same size, other content: the injected file must never appear.
    let evil = small_tar(&[("etc/evil", b"pwned!")], &[]);
    assert_eq!(good.len(), evil.len());
    fs::write(w.blob("l"), &evil).unwrap();
    let l = LayerSource::new(w.blob("l"), media::OCI_TAR, "img layer").verified(digest, good.len() as u64);
    let le = w.apply(std::slice::from_ref(&l), &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(blob_error(&le), BlobError::Corrupt { digest: d, found, .. }
        if *d == digest && *found == Digest::of(&evil)),
        "{le}"
    );
    let msg = le.to_string();
    assert!(msg.contains(&digest.to_string()) && msg.contains(&w.blob("l").display().to_string()), "{msg}");
    assert!(msg.contains("eifbake fetch"), "{msg}");
    w.assert_clean();

    // The same blob gzip-compressed: hashed while decompressed.
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let (good_gz, mut evil_gz) = (gz(&good), gz(&evil));
    evil_gz.resize(good_gz.len(), 0);
    fs::write(w.blob("g"), &evil_gz).unwrap();
    let g = LayerSource::new(w.blob("g"), media::OCI_TAR_GZIP, "img layer")
        .verified(Digest::of(&good_gz), good_gz.len() as u64);
    let le = w.apply(&[g], &ApplyOptions::default()).unwrap_err();
    assert!(matches!(blob_error(&le), BlobError::Corrupt { .. }), "{le}");
    w.assert_clean();

    // The genuine blob applies.
    fs::write(w.blob("l"), &good).unwrap();
    w.apply(&[l], &ApplyOptions::default()).unwrap();
    assert_eq!(fs::read(w.target().join("etc/motd")).unwrap(), b"hello\n");
}

#[test]
fn bytes_after_the_end_of_the_tar_are_hashed_too() {
    let w = Work::new();
    // A layer padded after its end-of-archive blocks; an attacker changes
    // only the padding: the extracted tree is the same, the blob is not.
    let good = small_tar(&[("f", b"f\n")], &[0u8; 8192]);
    let mut evil = good.clone();
    let n = evil.len();
    evil[n - 100..].fill(0xee);
    fs::write(w.blob("l"), &evil).unwrap();
    let l = LayerSource::new(w.blob("l"), media::OCI_TAR, "l").verified(Digest::of(&good), good.len() as u64);
    let le = w.apply(&[l], &ApplyOptions::default()).unwrap_err();
    assert!(matches!(blob_error(&le), BlobError::Corrupt { .. }), "{le}");
    w.assert_clean();

    // Extra bytes appended: the size no longer matches the descriptor.
    let mut longer = good.clone();
    longer.extend_from_slice(b"extra");
    fs::write(w.blob("l2"), &longer).unwrap();
    let l =
        LayerSource::new(w.blob("l2"), media::OCI_TAR, "l").verified(Digest::of(&good), good.len() as u64);
    let le = w.apply(&[l], &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(blob_error(&le), BlobError::Size { declared, found, .. }
            if *declared == good.len() as u64 && *found == longer.len() as u64),
        "{le}"
    );
    w.assert_clean();
}

// ---------------------------------------------------------------- expansion limits

#[test]
fn a_one_gib_gzip_bomb_is_refused_quickly_and_leaves_nothing() {
    let w = Work::new();
    // One entry declaring 1 GiB: refused from its header, before any write.
    let one = gzip_bomb(&w.blob("one"), 1, 1 << 30);
    assert!(one < 4 << 20, "the bomb should be small: {one}");
    // Sixteen entries of 64 MiB: each fits, their sum does not; the stream
    // budget stops extraction at the layer's allowance.
    let many = gzip_bomb(&w.blob("many"), 16, 64 << 20);
    for (name, compressed) in [("one", one), ("many", many)] {
        let l = LayerSource::new(w.blob(name), media::OCI_TAR_GZIP, format!("bomb {name}"));
        let start = Instant::now();
        let le = w.apply(&[l], &ApplyOptions::default()).unwrap_err();
        let took = start.elapsed();
        let ErrorKind::LayerTooLarge { limit, reached, compressed: c, ratio } = le.kind else {
            panic!("{name}: expected the layer limit, got {le}");
        };
        assert_eq!((c, ratio), (compressed, 100));
        assert_eq!(limit, (compressed * 100).max(256 << 20), "{le}");
        if name == "one" {
            assert_eq!(reached, 1 << 30, "the declared size is what it would reach: {le}");
        } else {
            assert!(reached > limit && reached < limit + (2 << 20), "stopped at {reached}: {le}");
        }
        let msg = le.to_string();
        assert!(msg.contains(&format!("bomb {name}")) && msg.contains("max_layer_expansion"), "{msg}");
        assert!(took < Duration::from_secs(30), "{name}: took {took:?}: the limit did not stop it promptly");
        w.assert_clean();
    }
}

#[test]
fn a_raised_limit_lets_a_legitimate_layer_through() {
    let w = Work::new();
    // 32 MiB of zeros compress about a thousandfold.
    let compressed = gzip_bomb(&w.blob("zeros"), 1, 32 << 20);
    let l = LayerSource::new(w.blob("zeros"), media::OCI_TAR_GZIP, "zeros");
    let tight = ApplyOptions { layer_floor: 1 << 20, ..ApplyOptions::default() };
    let le = w.apply(std::slice::from_ref(&l), &tight).unwrap_err();
    assert!(
        matches!(le.kind, ErrorKind::LayerTooLarge { limit, .. } if limit == (compressed * 100).max(1 << 20)),
        "{le}"
    );
    w.assert_clean();
    let raised = ApplyOptions { max_layer_expansion: 10_000, ..tight };
    w.apply(&[l], &raised).unwrap();
    assert_eq!(fs::metadata(w.target().join("zeros0")).unwrap().len(), 32 << 20);
}

#[test]
fn too_many_entries_and_too_long_paths() {
    let w = Work::new();
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    fs::write(w.blob("many"), small_tar(&files, &[])).unwrap();
    let l = LayerSource::new(w.blob("many"), media::OCI_TAR, "many");
    let le = w.apply(&[l], &ApplyOptions { max_entries: 20, ..ApplyOptions::default() }).unwrap_err();
    assert!(matches!(le.kind, ErrorKind::TooManyEntries { limit: 20 }), "{le}");
    assert!(le.to_string().contains("max_entries"), "{le}");
    w.assert_clean();

    // A GNU long name of 5000 bytes (the default limit is 4096), and a
    // symlink whose target is as long.
    let long = format!("{}/x", "d".repeat(4998));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("placeholder", 1);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    fs::write(w.blob("long"), b.into_inner().unwrap()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header("placeholder", 0);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, "link", &long).unwrap();
    fs::write(w.blob("longlink"), b.into_inner().unwrap()).unwrap();
    for name in ["long", "longlink"] {
        let l = LayerSource::new(w.blob(name), media::OCI_TAR, name);
        let le = w.apply(std::slice::from_ref(&l), &ApplyOptions::default()).unwrap_err();
        assert!(matches!(le.kind, ErrorKind::PathTooLong { limit: 4096, len: 5000 }), "{name}: {le}");
        assert!(le.to_string().contains("max_path_length"), "{le}");
        w.assert_clean();
        w.apply(&[l], &ApplyOptions { max_path_length: 8192, ..ApplyOptions::default() })
            .expect_err("5000 bytes is past Linux's PATH_MAX anyway");
        w.assert_clean();
    }
}

// ---------------------------------------------------------------- a build over a tampered store

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn build_refuses_tampered_manifest_config_and_layer() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    // The init must be a regular file, not busybox's /bin/sh symlink.
    let text = fs::read_to_string(&recipe).unwrap().replace("\"/bin/sh\" }", "\"/bin/busybox\" }");
    fs::write(&recipe, text).unwrap();
    eifbake_ok(&["lock", s(&recipe)]);
    let store_dir = proj.path().join("store");
    let out = proj.path().join("out");
    let build = |extra: &[&str]| {
        let mut args =
            vec!["--offline", "--store", s(&store_dir), "build", s(&recipe), "--out", s(&out), "--no-cache"];
        args.extend_from_slice(extra);
        eifbake(&args)
    };
    eifbake_ok(&["--store", s(&store_dir), "fetch", s(&recipe)]);
    let (code, o, e) = build(&[]);
    assert_eq!(code, 0, "the untampered build: {o}{e}");

    let store = Store::open(&store_dir).unwrap();
    let manifest = fx.busybox.sha256().unwrap();
    let m = store.manifest(&manifest).unwrap();
    let config = m.children()[0].sha256().unwrap();
    let layer = m.children()[1].sha256().unwrap();
    for (what, d) in [("layer", layer), ("config", config), ("manifest", manifest)] {
        let p = store.blob_path(&d);
        let genuine = fs::read(&p).unwrap();
        // Same length, one byte changed: only hashing catches it.
        let mut bytes = genuine.clone();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        fs::write(&p, &bytes).unwrap();
        let (code, _, err) = build(&[]);
        assert_eq!(code, 2, "{what}: tampered blob accepted: {err}");
        assert!(err.contains(&d.to_string()) && err.contains(&p.display().to_string()), "{what}: {err}");
        assert!(err.contains("eifbake fetch"), "{what}: {err}");
        // And one byte longer: refused as well.
        let mut longer = genuine.clone();
        longer.push(b'\n');
        fs::write(&p, &longer).unwrap();
        let (code, _, err) = build(&[]);
        assert_eq!(code, 2, "{what}: lengthened blob accepted: {err}");
        assert!(err.contains(&d.to_string()), "{what}: {err}");
        fs::write(&p, &genuine).unwrap();
    }
    let (code, o, e) = build(&[]);
    assert_eq!(code, 0, "the restored store builds again: {o}{e}");
}

/// An image (behind an index, so `lock` never reads its config) whose config
/// is not JSON: `fetch` used to skip the architecture check for it.
#[test]
fn fetch_refuses_an_unparsable_config() {
    let reg = TestRegistry::start();
    let layout = tempfile::tempdir().unwrap();
    let st = Store::open(layout.path()).unwrap();
    let layer = small_tar(&[("f", b"f\n")], &[]);
    let ld = st.put_blob_bytes(&layer).unwrap();
    let config = b"this is not an image configuration";
    let cd = st.put_blob_bytes(config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": media::OCI_TAR, "digest": ld.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let md = st.put_blob_bytes(&manifest).unwrap();
    let mut desc = model::descriptor(media::OCI_MANIFEST, &md, manifest.len() as u64);
    desc.set_platform(Some(model::platform("linux", "amd64")));
    let index = common::write_index(&st, &[desc]);
    common::push(&st, "bad", index, &reg.image("fx/badconfig:1"), None);

    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("weird", reg.image("fx/badconfig:1"))]);
    eifbake_ok(&["lock", s(&recipe)]);
    let (code, _, err) = eifbake(&["--store", s(&proj.path().join("store")), "fetch", s(&recipe)]);
    assert_eq!(code, 2, "an unparsable config was accepted: {err}");
    assert!(err.contains("\"weird\"") && err.contains(&cd.to_string()), "{err}");
    assert!(err.contains("not an OCI image configuration"), "{err}");
}
