//! Safe application of OCI image layers onto a root filesystem directory.
//!
//! [`apply_layers`] turns an ordered list of layer blobs (plain, gzip or zstd
//! tar, as named by their OCI or Docker media types, or sniffed from the magic
//! bytes when the type is generic) into one directory tree, honouring the OCI
//! whiteout rules (`.wh.NAME` removes `NAME` from lower layers,
//! `.wh..wh..opq` hides everything below a directory that the same layer did
//! not provide).
//!
//! It is for untrusted layers: a layer can never make extraction read or write
//! outside the target. The rules, each enforced with a [`LayerError`] that
//! names the layer and the entry:
//!
//! - absolute paths and paths with a `..` component are rejected, never
//!   rewritten (a layer that needs them is broken or hostile);
//! - parent directories are walked one component at a time with
//!   `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the tree root, so
//!   no symlink is ever followed while extracting, whoever planted it (an
//!   earlier entry, an earlier layer). An entry whose parent is a symlink is
//!   rejected, even when the symlink would resolve inside the tree; symlink
//!   targets themselves are stored verbatim, absolute or not;
//! - a hard link must name an existing entry of the tree by the same rules;
//!   linking to a symlink links the symlink itself (`linkat` without
//!   `AT_SYMLINK_FOLLOW`), never what it points to;
//! - whiteouts naming `.`, `..` or nothing are rejected;
//! - device nodes follow [`DevicePolicy`]; fifos are always created;
//! - the decompressed tar stream and the bytes written to files (larger for
//!   sparse entries) are each bounded per layer by
//!   `max(blob size * max_layer_expansion, layer_floor)` (defaults 100 times,
//!   at least 256 MiB) and over all layers by
//!   [`ApplyOptions::max_total_bytes`] (default 16 GiB); a file whose header
//!   declares more than what is left is refused before anything is written,
//!   and the stream is cut at the limit, so a bomb costs at most the limit,
//!   never its full expansion. Entries are bounded by
//!   [`ApplyOptions::max_entries`] over all layers (default one million), and
//!   an entry's path and link target by [`ApplyOptions::max_path_length`]
//!   (default 4096 bytes). A recipe's `[limits]` table sets them
//!   ([`crate::recipe::Limits`]); each refusal names the layer, the limit,
//!   the value reached and the recipe key that raises it;
//! - a later entry replaces an earlier one at the same path (last wins; a
//!   directory over a directory keeps the contents and takes the new
//!   metadata). Files are always created anew, so replacing a file never
//!   writes through a hard link into another one.
//!
//! A layer with [`LayerSource::expected`] (the build always sets it from the
//! manifest's descriptor) is verified in the same pass that extracts it: its
//! size is compared with the descriptor's before anything is read, and the
//! decompression thread hashes the raw blob as it reads it, then reads
//! whatever the decompressor left (bytes after the compressed stream or the
//! tar's end) so the digest covers every byte of the file, each read once.
//! A mismatch is reported (as [`ErrorKind::Blob`], naming the digest, the
//! file and `eifbake fetch`) in preference to any error the corrupt content
//! caused.
//!
//! Extraction happens in a fresh directory `TARGET.tmp-XXXX` beside the target,
//! renamed to the target only once every layer applied and verified; on any
//! error the temporary tree is removed and the target is untouched.
//!
//! Owners (numeric uid/gid from the header), set-id bits and device nodes are
//! kept when [`ApplyOptions::same_owner`] is set (the default when running as
//! real root, not as root of a user namespace). Without it every entry
//! belongs to the caller, and files stay readable and directories
//! accessible to it whatever their modes say (a rootless step sees them as
//! root's, whose access does not depend on those bits). Extended attributes come from pax `SCHILY.xattr.*` records; those the
//! filesystem or the caller's privileges refuse are skipped and counted.
//! File and symlink mtimes come from the header; directory metadata is applied
//! after the last layer so that later writes do not disturb it.
//!
//! Known limits: pax and GNU long-name records are held in memory by the
//! `tar` crate while it parses them, bounded only by the byte limits (the
//! path length is checked once they are parsed); a plain
//! (uncompressed) tar cut exactly at an entry boundary reads as complete, as it
//! does for GNU tar (compressed layers are read to their trailer, so their
//! truncation is always caught).
//!
//! Not for: fetching blobs or verifying manifests and configs (the store
//! does: [`crate::oci::store`]), normalising the tree for reproducible ramdisks (the cpio
//! writer does that), or running anything inside the tree.
//!
//! Layout: `error` (the error types), `limits` (the byte bounds and the
//! reader that enforces them), `reader` (compression and the decompression
//! thread), `sys` (the fd-relative system calls), `tree` (the tree, the
//! per-layer pass, whiteouts and removals) and `entry` (one entry).

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::digest::Digest;

mod entry;
mod error;
mod limits;
mod reader;
mod sys;
mod tree;

pub use error::{ErrorKind, LayerError};
pub use limits::{
    DEFAULT_LAYER_FLOOR, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_LAYER_EXPANSION,
    DEFAULT_MAX_PATH_LENGTH,
};
use tree::Tree;
/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// What a media type says: `Ok(Some(..))` for a specific layer type,
    /// `Ok(None)` for a generic one whose magic bytes decide, `Err` for a type
    /// that is not a layer at all.
    pub fn from_media_type(media_type: &str) -> Result<Option<Compression>, String> {
        use crate::oci::model::media::*;
        Ok(Some(match media_type {
            OCI_TAR | OCI_NONDIST_TAR => Compression::None,
            OCI_TAR_GZIP | OCI_NONDIST_TAR_GZIP | DOCKER_TAR_GZIP | DOCKER_FOREIGN_TAR_GZIP => {
                Compression::Gzip
            }
            OCI_TAR_ZSTD | OCI_NONDIST_TAR_ZSTD => Compression::Zstd,
            // Docker's uncompressed type is used for compressed blobs in the wild.
            DOCKER_TAR | OCTET_STREAM | "" => return Ok(None),
            other => {
                return Err(format!(
                    "media type {other:?} is not a layer type (expected {OCI_TAR}[+gzip|+zstd], \
                     {DOCKER_TAR_GZIP} or a generic type)"
                ))
            }
        }))
    }

    /// What the first bytes of a blob say.
    pub fn sniff(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// One layer blob to apply.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// The blob on disk (usually in the store).
    pub path: PathBuf,
    /// Its media type from the manifest.
    pub media_type: String,
    /// How errors name it, e.g. the layer digest.
    pub label: String,
    /// The digest and size the blob must have (from the manifest's
    /// descriptor), checked in the same pass that extracts it; `None` for a
    /// blob with nothing to check it against.
    pub expected: Option<(Digest, u64)>,
}

impl LayerSource {
    pub fn new(path: impl Into<PathBuf>, media_type: impl Into<String>, label: impl Into<String>) -> Self {
        LayerSource { path: path.into(), media_type: media_type.into(), label: label.into(), expected: None }
    }

    /// Require the blob to be `size` bytes hashing to `digest`.
    pub fn verified(mut self, digest: Digest, size: u64) -> Self {
        self.expected = Some((digest, size));
        self
    }
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePolicy {
    /// Create them (needs root, or `CAP_MKNOD`).
    Create,
    /// Leave them out, counting and noting each one in the summary. Each
    /// still replaces what lower layers had at its path, and those that no
    /// later layer removes are listed in [`ApplySummary::skipped_device_nodes`],
    /// so a caller can still pack them (the build adds them to the enclave).
    Skip,
    /// Fail on the first one.
    Reject,
}

/// Limits and privileges for [`apply_layers`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Bound on the decompressed tar bytes of all layers together, and
    /// separately on the bytes written to files (a recipe's
    /// `limits.max_image_bytes`).
    pub max_total_bytes: u64,
    /// Bound on what one layer may expand to, as a multiple of its blob's
    /// size (`limits.max_layer_expansion`): its decompressed tar bytes, and
    /// separately the bytes it writes to files, may each be at most
    /// `max(blob size * max_layer_expansion, layer_floor)`.
    pub max_layer_expansion: u64,
    /// The least any layer may expand to, however small its blob.
    pub layer_floor: u64,
    /// Bound on the number of tar entries of all layers together.
    pub max_entries: u64,
    /// Bound on the bytes of an entry's path and of a link's target
    /// (`limits.max_path_length`).
    pub max_path_length: usize,
    /// Keep numeric owners and set-id bits from the headers.
    pub same_owner: bool,
    pub devices: DevicePolicy,
    /// Apply `SCHILY.xattr.*` pax records.
    pub xattrs: bool,
}

impl Default for ApplyOptions {
    /// The `DEFAULT_*` limits, and owners and devices kept when the
    /// process runs as real root (devices skipped otherwise, also for root of
    /// a user namespace, which can neither chown to unmapped ids nor mknod).
    fn default() -> Self {
        let root = crate::userns::Privilege::detect().is_root();
        ApplyOptions {
            max_total_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_layer_expansion: DEFAULT_MAX_LAYER_EXPANSION,
            layer_floor: DEFAULT_LAYER_FLOOR,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_path_length: DEFAULT_MAX_PATH_LENGTH,
            same_owner: root,
            devices: if root { DevicePolicy::Create } else { DevicePolicy::Skip },
            xattrs: true,
        }
    }
}

/// What [`apply_layers`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplySummary {
    pub layers: usize,
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    pub whiteouts: u64,
    /// Bytes written to regular files.
    pub file_bytes: u64,
    /// Decompressed tar bytes read.
    pub tar_bytes: u64,
    pub skipped_devices: u64,
    /// The skipped device nodes present in the final tree, sorted by path.
    pub skipped_device_nodes: Vec<DeviceNode>,
    pub skipped_xattrs: u64,
    /// Human-readable notes on what was skipped (the first few).
    pub notes: Vec<String>,
}

/// A character or block device node that [`DevicePolicy::Skip`] left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceNode {
    /// Relative to the tree root, e.g. `dev/console`.
    pub path: Vec<u8>,
    /// Character device (else block device).
    pub char: bool,
    pub major: u32,
    pub minor: u32,
}

/// Apply `layers` in order to a new tree at `target`.
///
/// `target` must not exist, or be an empty directory; its parent must exist.
/// On success the tree is renamed into place; on error nothing is left at
/// `target` or beside it.
pub fn apply_layers(layers: &[LayerSource], target: &Path, opts: &ApplyOptions) -> Result<ApplySummary> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let mut it =
                std::fs::read_dir(target).with_context(|| format!("reading {}", target.display()))?;
            if it.next().is_some() {
                bail!(
                    "{}: target exists and is not empty; expected a new or empty directory",
                    target.display()
                );
            }
        }
        Ok(_) => bail!("{}: target exists and is not a directory", target.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", target.display())),
    }
    let name = target
        .file_name()
        .with_context(|| format!("{}: target must name a directory", target.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.tmp-"))
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a temporary directory in {}", parent.display()))?;

    let mut summary = ApplySummary::default();
    {
        let mut tree = Tree::open(tmp.path(), opts)?;
        for layer in layers {
            tree.apply_layer(layer, &mut summary).map_err(|(entry, kind)| LayerError {
                layer: layer.label.clone(),
                entry,
                kind,
            })?;
            summary.layers += 1;
        }
        tree.settle_stand_ins(&mut summary).map_err(|(entry, kind)| LayerError {
            layer: "(all layers)".to_string(),
            entry,
            kind,
        })?;
        tree.finish().map_err(|(entry, kind)| LayerError {
            layer: "(all layers)".to_string(),
            entry,
            kind,
        })?;
    }
    std::fs::rename(tmp.path(), target)
        .with_context(|| format!("cannot rename {} to {}", tmp.path().display(), target.display()))?;
    // The directory now lives at `target`; keep the guard from removing anything.
    let _ = tmp.keep();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::tree::components;
    use super::*;

    #[test]
    fn components_reject_escapes() {
        assert!(matches!(components(b"/etc/x"), Err(ErrorKind::AbsolutePath)));
        assert!(matches!(components(b"../x"), Err(ErrorKind::DotDot)));
        assert!(matches!(components(b"a/../../x"), Err(ErrorKind::DotDot)));
        assert!(matches!(components(b"a/.."), Err(ErrorKind::DotDot)));
        assert_eq!(components(b"./a//b/./c/").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"..a/b..").unwrap(), vec![&b"..a"[..], b"b.."]);
    }

    #[test]
    fn media_types() {
        use crate::oci::model::media::*;
        assert_eq!(Compression::from_media_type(OCI_TAR_GZIP), Ok(Some(Compression::Gzip)));
        assert_eq!(Compression::from_media_type(DOCKER_TAR_GZIP), Ok(Some(Compression::Gzip)));
        assert_eq!(Compression::from_media_type(OCI_TAR_ZSTD), Ok(Some(Compression::Zstd)));
        assert_eq!(Compression::from_media_type(OCI_TAR), Ok(Some(Compression::None)));
        assert_eq!(Compression::from_media_type(OCTET_STREAM), Ok(None));
        assert!(Compression::from_media_type(OCI_CONFIG).is_err());
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"ustar"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }
}
