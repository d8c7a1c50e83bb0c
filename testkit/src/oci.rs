//! OCI images written from scratch into a layout, and pushed with `skopeo`:
//! deterministic layer tars ([`layer_tar`]), busybox layers, image configs,
//! manifests and indexes ([`write_image`], [`try_write_image_blobs`],
//! [`write_index`]).
//!
//! Not for: reading images (eifbake's `oci` module does that) or building
//! images anyone runs in production: configs carry only what the tests and
//! the benchmark need.
//!
//! Invariants: the same layers give the same config, manifest and index
//! bytes (fixed key order, mtime 1, owner 0); every blob a manifest names is
//! in the layout before the manifest is.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use eifbake::digest::Digest;
use eifbake::oci::model::{self, media, Descriptor};
use eifbake::oci::store::Store;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Run skopeo, returning stdout; the error carries its stderr.
pub fn try_skopeo(args: &[&str]) -> Result<String> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .context("cannot run skopeo (Debian package skopeo; see scripts/deps.sh)")?;
    if !out.status.success() {
        bail!("skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    String::from_utf8(out.stdout).context("skopeo printed something that is not UTF-8")
}

/// [`try_skopeo`], panicking on failure (for tests).
pub fn skopeo(args: &[&str]) -> String {
    try_skopeo(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// One file, directory or symlink of a fixture layer.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    /// A block or character device node: (path, `Block` or `Char`, major, minor).
    Device(&'a str, tar::EntryType, u32, u32),
}

/// A deterministic uncompressed layer tar.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Device(p, kind, major, minor) => {
                h.set_entry_type(*kind);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A layer with Debian's static busybox at /bin/busybox and a few applet links.
pub fn busybox_layer() -> Vec<u8> {
    busybox_layer_from(Path::new(BUSYBOX), &["sh", "ls", "cat", "echo", "cp", "mkdir"])
}

/// A layer with the static busybox `busybox` (e.g. another arch's) at
/// /bin/busybox and a link in /bin for each of `applets`.
pub fn busybox_layer_from(busybox: &Path, applets: &[&str]) -> Vec<u8> {
    let bb = std::fs::read(busybox)
        .unwrap_or_else(|e| panic!("{} (Debian package busybox-static): {e}", busybox.display()));
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![Entry::Dir("bin"), Entry::File("bin/busybox", &bb, 0o755)];
    entries.extend(links.iter().map(|l| Entry::Symlink(l, "busybox")));
    layer_tar(&entries)
}

/// gzip `data` at level 6 (no name, no mtime: deterministic).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A layer blob already in a layout: what its manifest entry and the
/// config's `diff_ids` need.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// Write an image (config + layers, the first uncompressed, the rest gzip) into
/// `store` for linux/`arch`; returns the manifest descriptor (with platform).
/// Panics on failure (for tests).
pub fn write_image(store: &Store, arch: &str, layers: &[Vec<u8>]) -> Descriptor {
    let mut blobs = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        let (blob, media_type) =
            if i == 0 { (tar.clone(), media::OCI_TAR) } else { (gzip(tar), media::OCI_TAR_GZIP) };
        let digest = store.put_blob_bytes(&blob).unwrap();
        blobs.push(LayerBlob {
            media_type: media_type.into(),
            digest,
            size: blob.len() as u64,
            diff_id: Digest::of(tar),
        });
    }
    try_write_image_blobs(store, arch, &blobs).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Write the config and manifest of a linux/`arch` image whose `layers` are
/// already blobs in `store`; returns the manifest descriptor (with platform).
pub fn try_write_image_blobs(store: &Store, arch: &str, layers: &[LayerBlob]) -> Result<Descriptor> {
    for l in layers {
        if !store.has_blob(&l.digest) {
            bail!("layer blob {} is not in the layout {}", l.digest, store.root().display());
        }
    }
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let cd = store.put_blob_bytes(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": layer_descs,
    }))?;
    let md = store.put_blob_bytes(&manifest)?;
    let mut desc = model::descriptor(media::OCI_MANIFEST, &md, manifest.len() as u64);
    desc.set_platform(Some(model::platform("linux", arch)));
    Ok(desc)
}

/// Write an image index over `manifests` into `store`; returns its descriptor.
pub fn write_index(store: &Store, manifests: &[Descriptor]) -> Descriptor {
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    let d = store.put_blob_bytes(&index).unwrap();
    model::descriptor(media::OCI_INDEX, &d, index.len() as u64)
}

/// Name `desc` as `name` in the layout `store` and push it to `dest`
/// (`127.0.0.1:PORT/repo:tag`) with skopeo (`--all` keeps indexes whole,
/// `--preserve-digests` keeps the blobs as they are).
pub fn try_push(store: &Store, name: &str, desc: Descriptor, dest: &str, creds: Option<&str>) -> Result<()> {
    store.add_image(name, desc)?;
    let src = format!("oci:{}:{name}", store.root().display());
    let dst = format!("docker://{dest}");
    let mut args = vec!["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    try_skopeo(&args).map(drop)
}

/// [`try_push`], panicking on failure (for tests).
pub fn push(store: &Store, name: &str, desc: Descriptor, dest: &str, creds: Option<&str>) {
    try_push(store, name, desc, dest, creds).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Write one image per architecture of `archs` (OCI names) into `store`,
/// each from `layers(arch)`, and an index over them; push the index to
/// `dest` (`127.0.0.1:PORT/repo:tag`). Returns the index and the manifests,
/// in the order of `archs`.
pub fn push_multi_arch(
    store: &Store,
    dest: &str,
    archs: &[&str],
    layers: impl Fn(&str) -> Vec<Vec<u8>>,
) -> (Descriptor, Vec<Descriptor>) {
    let manifests: Vec<Descriptor> = archs.iter().map(|a| write_image(store, a, &layers(a))).collect();
    let index = write_index(store, &manifests);
    let name = dest.rsplit('/').next().unwrap().replace(':', "-");
    push(store, &name, index.clone(), dest, None);
    (index, manifests)
}
