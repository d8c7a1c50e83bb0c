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

use std::collections::{BTreeMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::oci::store::BlobError;

/// How many bytes of compressed input are read at once, and the size of the
/// decompressed chunks handed from the decompression thread to the extractor.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the decompression thread and the extractor.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Buffer used to copy one file's contents.
const COPY_BUF: usize = 256 << 10;
/// Notes kept in the summary; further ones are only counted.
const MAX_NOTES: usize = 64;

/// The media types of layers, and what they say about compression.
pub mod media_type {
    pub const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_NONDIST_TAR_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_NONDIST_TAR_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const OCTET_STREAM: &str = "application/octet-stream";
}

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
        use media_type::*;
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

/// Default bound on the bytes of all layers of an image (16 GiB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 16 << 30;
/// Default bound on a layer's expansion: 100 times its blob's size...
pub const DEFAULT_MAX_LAYER_EXPANSION: u64 = 100;
/// ...but at least 256 MiB, however small the blob.
pub const DEFAULT_LAYER_FLOOR: u64 = 256 << 20;
/// Default bound on the entries of all layers of an image.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default bound on an entry's path and a link's target, in bytes (Linux's `PATH_MAX`).
pub const DEFAULT_MAX_PATH_LENGTH: usize = 4096;

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

/// Why a layer could not be applied.
#[derive(Debug)]
pub enum ErrorKind {
    AbsolutePath,
    DotDot,
    /// A parent directory of the entry is a symlink (the path given).
    SymlinkParent(String),
    /// A parent directory of the entry exists and is not a directory.
    NotADirectory(String),
    HardLinkTarget {
        target: String,
        reason: String,
    },
    BadWhiteout(String),
    DeviceNotPermitted,
    UnsupportedType(String),
    TooManyEntries {
        limit: u64,
    },
    TooLarge {
        limit: u64,
    },
    /// One layer expanded past `max(compressed * ratio, floor)` bytes.
    LayerTooLarge {
        limit: u64,
        reached: u64,
        compressed: u64,
        ratio: u64,
    },
    /// An entry's path or link target is longer than the limit.
    PathTooLong {
        limit: usize,
        len: usize,
    },
    /// The blob is not what its descriptor says (digest or size).
    Blob(BlobError),
    /// Decompression or tar framing failed (truncated, corrupt).
    Malformed(String),
    MediaType(String),
    Io {
        op: &'static str,
        err: io::Error,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::AbsolutePath => {
                f.write_str("absolute path; entries must be relative to the image root")
            }
            ErrorKind::DotDot => {
                f.write_str("path has a `..` component; entries must stay inside the image root")
            }
            ErrorKind::SymlinkParent(p) => {
                write!(f, "parent {p:?} is a symlink; extraction never follows symlinks")
            }
            ErrorKind::NotADirectory(p) => write!(f, "parent {p:?} exists and is not a directory"),
            ErrorKind::HardLinkTarget { target, reason } => {
                write!(f, "hard link target {target:?}: {reason}")
            }
            ErrorKind::BadWhiteout(n) => {
                write!(f, "whiteout names {n:?}; expected the name of an entry in its directory")
            }
            ErrorKind::DeviceNotPermitted => f.write_str("device node not permitted by the device policy"),
            ErrorKind::UnsupportedType(t) => write!(f, "unsupported tar entry type {t}"),
            ErrorKind::TooManyEntries { limit } => write!(
                f,
                "more than {limit} entries in all layers (raise `max_entries` in the recipe's [limits] table)"
            ),
            ErrorKind::TooLarge { limit } => write!(
                f,
                "uncompressed size exceeds the limit of {limit} bytes for all layers (raise \
                 `max_image_bytes` in the recipe's [limits] table)"
            ),
            ErrorKind::LayerTooLarge { limit, reached, compressed, ratio } => write!(
                f,
                "expanded to {reached} bytes, past this layer's limit of {limit} ({ratio} times its \
                 {compressed} compressed bytes, or a fixed minimum): a decompression bomb, or a layer that \
                 really compresses this well (raise `max_layer_expansion` in the recipe's [limits] table)"
            ),
            ErrorKind::PathTooLong { limit, len } => write!(
                f,
                "path or link target of {len} bytes is longer than the limit of {limit} (raise \
                 `max_path_length` in the recipe's [limits] table)"
            ),
            ErrorKind::Blob(e) => write!(f, "{e}"),
            ErrorKind::Malformed(m) => write!(f, "malformed layer: {m}"),
            ErrorKind::MediaType(m) => f.write_str(m),
            ErrorKind::Io { op, err } => write!(f, "{op}: {err}"),
        }
    }
}

/// An error naming the layer and, when one is at fault, the entry.
#[derive(Debug)]
pub struct LayerError {
    pub layer: String,
    pub entry: Option<String>,
    pub kind: ErrorKind,
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(e) => write!(f, "layer {}: entry {e:?}: {}", self.layer, self.kind),
            None => write!(f, "layer {}: {}", self.layer, self.kind),
        }
    }
}

impl std::error::Error for LayerError {}

fn io_kind(op: &'static str) -> impl FnOnce(io::Error) -> ErrorKind {
    move |err| ErrorKind::Io { op, err }
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

/// An entry's failure: the entry path when one is at fault, and why.
type EntryResult<T> = std::result::Result<T, (Option<String>, ErrorKind)>;

/// Split a tar path into its components, rejecting absolute paths and `..`.
/// `.` components and empty ones (`a//b`, a trailing `/`) are dropped.
fn components(path: &[u8]) -> std::result::Result<Vec<&[u8]>, ErrorKind> {
    if path.first() == Some(&b'/') {
        return Err(ErrorKind::AbsolutePath);
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(ErrorKind::DotDot),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cstring(b: &[u8]) -> std::result::Result<CString, ErrorKind> {
    CString::new(b).map_err(|_| ErrorKind::Malformed("path contains a NUL byte".into()))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn open_dir_at(dirfd: RawFd, name: &CString) -> io::Result<OwnedFd> {
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat` without following a final symlink; `None` when nothing is there.
fn lstat_at(dirfd: RawFd, name: &CString) -> io::Result<Option<libc::stat>> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    match cvt(unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn timespec(secs: u64) -> [libc::timespec; 2] {
    let t = libc::timespec { tv_sec: secs.min(i64::MAX as u64) as libc::time_t, tv_nsec: 0 };
    [t, t]
}

/// Metadata of a directory entry, applied after the last layer.
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

/// Metadata common to every entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// The tree being built: a descriptor of its root, a cache of the
/// directories of the current entry's parent chain, and bookkeeping.
struct Tree<'o> {
    root_path: PathBuf,
    root: OwnedFd,
    /// `stack[i]` is an open descriptor of the directory named by the first
    /// `i + 1` components of the last parent walked. Cleared whenever anything
    /// is removed, so it never names a directory that has been replaced.
    stack: Vec<(Vec<u8>, OwnedFd)>,
    opts: &'o ApplyOptions,
    /// Paths (and all their ancestors) provided by the layer being applied:
    /// whiteouts never remove them.
    touched: HashSet<Vec<u8>>,
    /// Directory metadata by path, applied at the end (children first).
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    entries: u64,
    /// Which byte limit the stream of the layer being applied ran into.
    tar_bytes_limit_hit: std::rc::Rc<std::cell::Cell<Option<LimitHit>>>,
    file_bytes: u64,
    tar_bytes: u64,
    /// The layer being applied: its blob size, its byte allowance
    /// (`max(compressed * max_layer_expansion, layer_floor)`), and the bytes
    /// it has written to files.
    layer: LayerBudget,
    buf: Vec<u8>,
    /// Skipped device nodes by path, each with the inode of the empty file
    /// standing in for it until the last layer is applied.
    stand_ins: BTreeMap<Vec<u8>, (DeviceNode, libc::ino_t)>,
}

/// The per-layer expansion bound of the layer being applied.
#[derive(Debug, Clone, Copy, Default)]
struct LayerBudget {
    compressed: u64,
    allowance: u64,
    file_bytes: u64,
}

/// Which bound a stream read ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitHit {
    /// `max_total_bytes`, over all layers.
    Image,
    /// The layer's allowance, after `reached` decompressed bytes.
    Layer { reached: u64 },
}

impl<'o> Tree<'o> {
    fn open(root_path: &Path, opts: &'o ApplyOptions) -> Result<Self> {
        let c = CString::new(root_path.as_os_str().as_bytes())
            .with_context(|| format!("{}: path contains a NUL byte", root_path.display()))?;
        let fd = cvt(unsafe {
            libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        })
        .with_context(|| format!("opening {}", root_path.display()))?;
        Ok(Tree {
            root_path: root_path.to_path_buf(),
            root: unsafe { OwnedFd::from_raw_fd(fd) },
            stack: Vec::new(),
            opts,
            touched: HashSet::new(),
            dirs: BTreeMap::new(),
            entries: 0,
            tar_bytes_limit_hit: Default::default(),
            file_bytes: 0,
            tar_bytes: 0,
            layer: LayerBudget::default(),
            buf: vec![0; COPY_BUF],
            stand_ins: BTreeMap::new(),
        })
    }

    /// Apply one layer: check its size, then decompress (on a thread) and
    /// extract it in one pass, hashing the blob as it is read. The verdict on
    /// the digest wins over any extraction error: a tampered blob is named as
    /// such, not as whatever malformed tar it happens to contain.
    fn apply_layer(&mut self, layer: &LayerSource, summary: &mut ApplySummary) -> EntryResult<()> {
        let declared =
            Compression::from_media_type(&layer.media_type).map_err(|m| (None, ErrorKind::MediaType(m)))?;
        let file = File::open(&layer.path).map_err(|e| {
            (
                None,
                ErrorKind::Io {
                    op: "opening the blob",
                    err: io::Error::new(e.kind(), format!("{}: {e}", layer.path.display())),
                },
            )
        })?;
        let compressed = file.metadata().map_err(|e| (None, io_kind("inspecting the blob")(e)))?.len();
        if let Some((digest, size)) = layer.expected.filter(|(_, size)| *size != compressed) {
            let path = layer.path.clone();
            return Err((
                None,
                ErrorKind::Blob(BlobError::Size { digest, path, declared: size, found: compressed }),
            ));
        }
        let mut src = HashingReader::new(file);
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut src, &mut magic).map_err(|e| (None, io_kind("reading the blob")(e)))?;
        let compression =
            pick_compression(declared, &layer.media_type, &magic[..n]).map_err(|k| (None, k))?;
        let prefix = magic[..n].to_vec();
        let allowance = compressed.saturating_mul(self.opts.max_layer_expansion).max(self.opts.layer_floor);
        self.layer = LayerBudget { compressed, allowance, file_bytes: 0 };
        self.tar_bytes_limit_hit.set(None);
        self.touched.clear();
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let (res, read) = std::thread::scope(|s| {
            let pump = s.spawn(move || pump(prefix, src, compression, tx));
            let reader = ChannelReader { rx, cur: Vec::new(), pos: 0 };
            let limited = Budget {
                inner: reader,
                remaining: self.opts.max_total_bytes.saturating_sub(self.tar_bytes),
                layer_remaining: allowance,
                read: 0,
                hit: self.tar_bytes_limit_hit.clone(),
            };
            // `apply_tar` owns the channel's receiving end: when it returns,
            // early or not, the thread stops decompressing.
            let res = self.apply_tar(limited, summary);
            (res, pump.join())
        });
        self.touched.clear();
        let read = read.unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let (Some((digest, _)), Ok((found, _))) = (layer.expected, &read) {
            if *found != digest {
                let path = layer.path.clone();
                return Err((None, ErrorKind::Blob(BlobError::Corrupt { digest, path, found: *found })));
            }
        }
        res?;
        match read {
            Ok(_) => Ok(()),
            Err(e) => Err((None, io_kind("reading the blob")(e))),
        }
    }

    fn apply_tar(&mut self, reader: Budget<ChannelReader>, summary: &mut ApplySummary) -> EntryResult<()> {
        let mut archive = tar::Archive::new(reader);
        let mut last_path: Option<String> = None;
        let max_path = self.opts.max_path_length;
        {
            let entries = archive.entries().map_err(|e| (None, self.malformed(e, None)))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| {
                    let after = last_path.as_ref().map(|p| format!("after entry {p:?}: "));
                    (None, self.malformed(e, after))
                })?;
                let path = entry.path_bytes().into_owned();
                let len = path.len().max(entry.link_name_bytes().map_or(0, |l| l.len()));
                if len > max_path {
                    return Err((
                        Some(show(&path[..path.len().min(256)])),
                        ErrorKind::PathTooLong { limit: max_path, len },
                    ));
                }
                self.entries += 1;
                summary.entries += 1;
                if self.entries > self.opts.max_entries {
                    return Err((
                        Some(show(&path)),
                        ErrorKind::TooManyEntries { limit: self.opts.max_entries },
                    ));
                }
                self.apply_entry(&path, &mut entry, summary).map_err(|k| (Some(show(&path)), k))?;
                last_path = Some(show(&path));
            }
        }
        // Read to the end of the stream so that a compressed layer's trailer
        // (and its checksum) is verified, and truncation is noticed.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(|e| (None, self.malformed(e, Some("after the end of the archive: ".into()))))?;
        self.tar_bytes += rest.read;
        summary.tar_bytes = self.tar_bytes;
        summary.file_bytes = self.file_bytes;
        Ok(())
    }

    /// Classify an error from reading the stream: the byte limit, or a
    /// corrupt/truncated layer.
    fn malformed(&self, e: io::Error, context: Option<String>) -> ErrorKind {
        match self.tar_bytes_limit_hit.get() {
            Some(LimitHit::Image) => ErrorKind::TooLarge { limit: self.opts.max_total_bytes },
            Some(LimitHit::Layer { reached }) => self.layer_too_large(reached),
            None => ErrorKind::Malformed(format!("{}{e}", context.unwrap_or_default())),
        }
    }

    fn layer_too_large(&self, reached: u64) -> ErrorKind {
        ErrorKind::LayerTooLarge {
            limit: self.layer.allowance,
            reached,
            compressed: self.layer.compressed,
            ratio: self.opts.max_layer_expansion,
        }
    }

    fn note(summary: &mut ApplySummary, s: String) {
        if summary.notes.len() < MAX_NOTES {
            summary.notes.push(s);
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        path: &[u8],
        entry: &mut tar::Entry<'_, R>,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        let comps = components(path)?;
        let etype = entry.header().entry_type();
        if matches!(etype, EntryType::XGlobalHeader) {
            return Ok(());
        }
        if let Some(last) = comps.last() {
            if let Some(name) = last.strip_prefix(b".wh.") {
                summary.whiteouts += 1;
                let dir = &comps[..comps.len() - 1];
                if name == b".wh..opq" {
                    return self.opaque(dir);
                }
                if name.starts_with(b".wh.") {
                    // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
                    Self::note(summary, format!("skipped AUFS metadata entry {}", show(path)));
                    return Ok(());
                }
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(ErrorKind::BadWhiteout(show(name)));
                }
                let mut target = dir.to_vec();
                target.push(name);
                return self.whiteout(&target);
            }
        }
        let hdr = entry.header();
        let meta = Meta {
            mode: hdr.mode().map_err(|e| ErrorKind::Malformed(format!("mode field: {e}")))? & 0o7777,
            uid: id32(hdr.uid(), "uid")?,
            gid: id32(hdr.gid(), "gid")?,
            mtime: hdr.mtime().unwrap_or(0),
            xattrs: if self.opts.xattrs { xattrs(entry)? } else { Vec::new() },
        };
        if comps.is_empty() {
            if !etype.is_dir() {
                return Err(ErrorKind::UnsupportedType(format!(
                    "{etype:?} for the image root (expected a directory)"
                )));
            }
            self.dirs.insert(
                Vec::new(),
                DirMeta { mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: meta.mtime },
            );
            summary.dirs += 1;
            return Ok(());
        }
        let rel = join(&comps);
        let mut end = 0;
        for (i, c) in comps.iter().enumerate() {
            end += c.len() + usize::from(i > 0);
            if !self.touched.contains(&rel[..end]) {
                self.touched.insert(rel[..end].to_vec());
            }
        }
        let (name_bytes, parent) = comps.split_last().expect("non-empty");
        let name = cstring(name_bytes)?;

        // Resolve what the entry needs before touching the parent.
        let link_target = if etype == EntryType::Link {
            let t = entry
                .link_name_bytes()
                .ok_or_else(|| ErrorKind::Malformed("hard link without a target".into()))?
                .into_owned();
            Some(t)
        } else {
            None
        };
        if matches!(etype, EntryType::Char | EntryType::Block) {
            match self.opts.devices {
                DevicePolicy::Create => {}
                DevicePolicy::Reject => return Err(ErrorKind::DeviceNotPermitted),
                DevicePolicy::Skip => {
                    summary.skipped_devices += 1;
                    Self::note(summary, format!("skipped device node {}", show(path)));
                }
            }
        }
        if etype.is_file() || etype == EntryType::Continuous || etype.is_gnu_sparse() {
            let size = entry.size();
            if size > self.opts.max_total_bytes.saturating_sub(self.file_bytes) {
                return Err(ErrorKind::TooLarge { limit: self.opts.max_total_bytes });
            }
            if size > self.layer.allowance.saturating_sub(self.layer.file_bytes) {
                return Err(self.layer_too_large(self.layer.file_bytes.saturating_add(size)));
            }
        }

        if let Some(target) = link_target {
            return self.hard_link(&rel, parent, &name, &target, summary);
        }

        let pfd = self.parent(parent, true)?;
        let existing = lstat_at(pfd, &name).map_err(io_kind("inspecting the existing entry"))?;
        if etype.is_dir() {
            match existing {
                Some(st) if is_dir(&st) => {}
                Some(_) => {
                    cvt(unsafe { libc::unlinkat(pfd, name.as_ptr(), 0) })
                        .map_err(io_kind("removing the entry it replaces"))?;
                    self.forget_stand_ins(&rel);
                    self.mkdir(pfd, &name)?;
                }
                None => self.mkdir(pfd, &name)?,
            }
            if !meta.xattrs.is_empty() {
                let fd = open_dir_at(pfd, &name).map_err(io_kind("opening the directory"))?;
                self.set_xattrs_fd(fd.as_raw_fd(), &meta.xattrs, summary)?;
            }
            self.dirs
                .insert(rel, DirMeta { mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: meta.mtime });
            summary.dirs += 1;
            return Ok(());
        }
        // Everything else is created anew.
        if let Some(st) = existing {
            self.remove(pfd, &name, &rel, is_dir(&st))?;
        }
        let pfd = self.parent(parent, true)?;
        match etype {
            t if t.is_file() || t == EntryType::Continuous || t.is_gnu_sparse() => {
                self.write_file(pfd, &name, entry, &meta, summary)?;
                summary.files += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ErrorKind::Malformed("symlink without a target".into()))?;
                let ctarget = cstring(&target)?;
                cvt(unsafe { libc::symlinkat(ctarget.as_ptr(), pfd, name.as_ptr()) })
                    .map_err(io_kind("creating the symlink"))?;
                self.finish_node(pfd, &name, &meta, false, summary)?;
                summary.symlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (kind, dev) = if etype == EntryType::Fifo {
                    (libc::S_IFIFO, 0)
                } else {
                    let major = device(entry.header().device_major(), "devmajor")?;
                    let minor = device(entry.header().device_minor(), "devminor")?;
                    if self.opts.devices == DevicePolicy::Skip {
                        let node =
                            DeviceNode { path: rel.clone(), char: etype == EntryType::Char, major, minor };
                        return self.stand_in(pfd, &name, node);
                    }
                    let kind = if etype == EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                    (kind, libc::makedev(major, minor))
                };
                cvt(unsafe { libc::mknodat(pfd, name.as_ptr(), kind | 0o600, dev) })
                    .map_err(io_kind("creating the device node or fifo"))?;
                self.finish_node(pfd, &name, &meta, true, summary)?;
                if etype == EntryType::Fifo {
                    summary.fifos += 1;
                } else {
                    summary.devices += 1;
                }
            }
            other => return Err(ErrorKind::UnsupportedType(format!("{other:?}"))),
        }
        Ok(())
    }

    /// An empty file where a skipped device node goes, so that later layers
    /// replace or remove it exactly as they would the node.
    fn stand_in(
        &mut self,
        pfd: RawFd,
        name: &CString,
        node: DeviceNode,
    ) -> std::result::Result<(), ErrorKind> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = cvt(unsafe { libc::openat(pfd, name.as_ptr(), flags, 0o600 as libc::c_uint) })
            .map_err(io_kind("creating the stand-in of a skipped device node"))?;
        // SAFETY: `fd` was just opened and is owned here only.
        let file = unsafe { File::from_raw_fd(fd) };
        let ino =
            std::os::unix::fs::MetadataExt::ino(&file.metadata().map_err(io_kind("inspecting a stand-in"))?);
        self.stand_ins.insert(node.path.clone(), (node, ino));
        Ok(())
    }

    /// Something at `rel` was removed or replaced: the stand-ins at or below
    /// it are gone. Tracked here rather than guessed from inode numbers at
    /// the end, since a file created after an unlink may get the same inode.
    fn forget_stand_ins(&mut self, rel: &[u8]) {
        self.stand_ins.remove(rel);
        let mut lo = rel.to_vec();
        lo.push(b'/');
        let below: Vec<Vec<u8>> = self
            .stand_ins
            .range(lo.clone()..)
            .take_while(|(k, _)| k.starts_with(&lo))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.stand_ins.remove(&k);
        }
    }

    /// After the last layer: stand-ins still in place become the summary's
    /// [`ApplySummary::skipped_device_nodes`] and are removed from the tree.
    fn settle_stand_ins(&mut self, summary: &mut ApplySummary) -> EntryResult<()> {
        for (rel, (node, ino)) in std::mem::take(&mut self.stand_ins) {
            let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            let (name, parent) = comps.split_last().expect("non-empty");
            let Ok(pfd) = self.parent(parent, false) else { continue };
            let name = cstring(name).map_err(|k| (Some(show(&rel)), k))?;
            let st =
                lstat_at(pfd, &name).map_err(|e| (Some(show(&rel)), io_kind("inspecting a stand-in")(e)))?;
            if st.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_ino == ino) {
                cvt(unsafe { libc::unlinkat(pfd, name.as_ptr(), 0) })
                    .map_err(|e| (Some(show(&rel)), io_kind("removing a stand-in")(e)))?;
                summary.skipped_device_nodes.push(node);
            }
        }
        self.stack.clear();
        Ok(())
    }

    fn mkdir(&mut self, pfd: RawFd, name: &CString) -> std::result::Result<(), ErrorKind> {
        cvt(unsafe { libc::mkdirat(pfd, name.as_ptr(), 0o755) })
            .map_err(io_kind("creating the directory"))?;
        Ok(())
    }

    /// Remove what is at `rel` (a directory recursively), forgetting cached
    /// descriptors and pending directory metadata beneath it.
    fn remove(
        &mut self,
        pfd: RawFd,
        name: &CString,
        rel: &[u8],
        dir: bool,
    ) -> std::result::Result<(), ErrorKind> {
        self.forget_stand_ins(rel);
        if dir {
            self.stack.clear();
            // The parent chain was just walked without following symlinks and
            // nothing else writes to this private tree, so the path names the
            // same directory; `remove_dir_all` never follows symlinks inside.
            let p = self.root_path.join(OsStr::from_bytes(rel));
            std::fs::remove_dir_all(&p).map_err(io_kind("removing the directory it replaces"))?;
            self.forget_dirs(rel);
        } else {
            cvt(unsafe { libc::unlinkat(pfd, name.as_ptr(), 0) })
                .map_err(io_kind("removing the entry it replaces"))?;
            self.dirs.remove(rel);
        }
        Ok(())
    }

    fn forget_dirs(&mut self, rel: &[u8]) {
        self.dirs.remove(rel);
        let mut lo = rel.to_vec();
        lo.push(b'/');
        let mut hi = rel.to_vec();
        hi.push(b'/' + 1);
        let doomed: Vec<Vec<u8>> = self.dirs.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.dirs.remove(&k);
        }
    }

    /// Open the directory named by `comps`, creating missing ones (mode 0755)
    /// when `create`, and never following a symlink. Returns a descriptor
    /// owned by the cache, valid until the next call.
    fn parent(&mut self, comps: &[&[u8]], create: bool) -> std::result::Result<RawFd, ErrorKind> {
        let mut k = 0;
        while k < self.stack.len() && k < comps.len() && self.stack[k].0 == comps[k] {
            k += 1;
        }
        self.stack.truncate(k);
        for i in k..comps.len() {
            let dirfd = if i == 0 { self.root.as_raw_fd() } else { self.stack[i - 1].1.as_raw_fd() };
            let name = cstring(comps[i])?;
            let fd = match open_dir_at(dirfd, &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match cvt(unsafe { libc::mkdirat(dirfd, name.as_ptr(), 0o755) }) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(ErrorKind::Io { op: "creating a parent directory", err: e }),
                    }
                    open_dir_at(dirfd, &name).map_err(io_kind("opening a parent directory"))?
                }
                Err(e) => {
                    let shown = show(&join(&comps[..=i]));
                    return Err(match lstat_at(dirfd, &name) {
                        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                            ErrorKind::SymlinkParent(shown)
                        }
                        Ok(Some(st)) if !is_dir(&st) => ErrorKind::NotADirectory(shown),
                        Ok(None) => ErrorKind::Io {
                            op: "opening a parent directory",
                            err: io::Error::new(io::ErrorKind::NotFound, format!("{shown:?} does not exist")),
                        },
                        _ => ErrorKind::Io { op: "opening a parent directory", err: e },
                    });
                }
            };
            self.stack.push((comps[i].to_vec(), fd));
        }
        Ok(match self.stack.last() {
            Some((_, fd)) if !comps.is_empty() => fd.as_raw_fd(),
            _ => self.root.as_raw_fd(),
        })
    }

    fn write_file<R: Read>(
        &mut self,
        pfd: RawFd,
        name: &CString,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        let fd = cvt(unsafe {
            libc::openat(
                pfd,
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        })
        .map_err(io_kind("creating the file"))?;
        let mut file = unsafe { File::from_raw_fd(fd) };
        let limit = self.opts.max_total_bytes;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.malformed(e, Some("reading the file contents: ".into()))),
            };
            self.file_bytes += n as u64;
            self.layer.file_bytes += n as u64;
            if self.file_bytes > limit {
                return Err(ErrorKind::TooLarge { limit });
            }
            if self.layer.file_bytes > self.layer.allowance {
                return Err(self.layer_too_large(self.layer.file_bytes));
            }
            file.write_all(&self.buf[..n]).map_err(io_kind("writing the file"))?;
        }
        let fd = file.as_raw_fd();
        if self.opts.same_owner {
            cvt(unsafe { libc::fchown(fd, meta.uid, meta.gid) }).map_err(io_kind("setting the owner"))?;
        }
        self.set_xattrs_fd(fd, &meta.xattrs, summary)?;
        cvt(unsafe { libc::fchmod(fd, self.mode(meta.mode, false)) }).map_err(io_kind("setting the mode"))?;
        let ts = timespec(meta.mtime);
        cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map_err(io_kind("setting the mtime"))?;
        Ok(())
    }

    /// The mode to set. Without `same_owner` the set-id bits go, and the
    /// owner (the caller) keeps read access to files and full access to
    /// directories, so the tree can always be read and removed again.
    fn mode(&self, mode: u32, dir: bool) -> libc::mode_t {
        if self.opts.same_owner {
            mode
        } else {
            mode & 0o1777 | if dir { 0o700 } else { 0o400 }
        }
    }

    /// Owner, xattrs, mode (not for symlinks) and mtime of a node just created
    /// at `name` in `pfd`, never following it.
    fn finish_node(
        &mut self,
        pfd: RawFd,
        name: &CString,
        meta: &Meta,
        chmod: bool,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        if self.opts.same_owner {
            cvt(unsafe { libc::fchownat(pfd, name.as_ptr(), meta.uid, meta.gid, libc::AT_SYMLINK_NOFOLLOW) })
                .map_err(io_kind("setting the owner"))?;
        }
        if !meta.xattrs.is_empty() {
            // Through /proc so the final component is not followed.
            let mut p = format!("/proc/self/fd/{pfd}/").into_bytes();
            p.extend_from_slice(name.as_bytes());
            let p = cstring(&p)?;
            for (k, v) in &meta.xattrs {
                let r = unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
                xattr_result(r, k, summary)?;
            }
        }
        if chmod {
            cvt(unsafe { libc::fchmodat(pfd, name.as_ptr(), self.mode(meta.mode, false), 0) })
                .map_err(io_kind("setting the mode"))?;
        }
        let ts = timespec(meta.mtime);
        cvt(unsafe { libc::utimensat(pfd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(io_kind("setting the mtime"))?;
        Ok(())
    }

    fn set_xattrs_fd(
        &self,
        fd: RawFd,
        xattrs: &[(CString, Vec<u8>)],
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        for (k, v) in xattrs {
            let r = unsafe { libc::fsetxattr(fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            xattr_result(r, k, summary)?;
        }
        Ok(())
    }

    fn hard_link(
        &mut self,
        rel: &[u8],
        parent: &[&[u8]],
        name: &CString,
        target: &[u8],
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        let bad = |reason: String| ErrorKind::HardLinkTarget { target: show(target), reason };
        let tcomps = match components(target) {
            Ok(c) => c,
            Err(k) => return Err(bad(k.to_string())),
        };
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(bad("names the image root".into()));
        };
        if join(&tcomps) == rel {
            // A link to itself: nothing to do if the entry is there.
            let pfd = self.parent(parent, false).map_err(|k| bad(k.to_string()))?;
            return match lstat_at(pfd, name) {
                Ok(Some(_)) => Ok(()),
                _ => Err(bad("links to itself and does not exist".into())),
            };
        }
        let tname = cstring(tname)?;
        let tfd = {
            let fd = self.parent(tparent, false).map_err(|k| bad(k.to_string()))?;
            unsafe { libc::dup(fd) }
        };
        let tfd = unsafe { OwnedFd::from_raw_fd(cvt(tfd).map_err(io_kind("duplicating a descriptor"))?) };
        match lstat_at(tfd.as_raw_fd(), &tname).map_err(io_kind("inspecting the link target"))? {
            None => return Err(bad("does not exist in this or an earlier layer".into())),
            Some(st) if is_dir(&st) => return Err(bad("is a directory".into())),
            Some(_) => {}
        }
        let pfd = self.parent(parent, true)?;
        if let Some(st) = lstat_at(pfd, name).map_err(io_kind("inspecting the existing entry"))? {
            self.remove(pfd, name, rel, is_dir(&st))?;
        }
        let pfd = self.parent(parent, true)?;
        // Flags 0: a symlink target is linked as the symlink itself.
        cvt(unsafe { libc::linkat(tfd.as_raw_fd(), tname.as_ptr(), pfd, name.as_ptr(), 0) })
            .map_err(io_kind("creating the hard link"))?;
        summary.hardlinks += 1;
        Ok(())
    }

    /// `.wh.NAME`: remove `path` as lower layers left it. What this layer
    /// itself put there stays.
    fn whiteout(&mut self, path: &[&[u8]]) -> std::result::Result<(), ErrorKind> {
        let rel = join(path);
        let (name, parent) = path.split_last().expect("whiteout names an entry");
        let pfd = match self.parent(parent, false) {
            Ok(fd) => fd,
            // Nothing below a missing directory to hide.
            Err(ErrorKind::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(k) => return Err(k),
        };
        let cname = cstring(name)?;
        let Some(st) = lstat_at(pfd, &cname).map_err(io_kind("inspecting the whited-out entry"))? else {
            return Ok(());
        };
        if self.touched.contains(&rel) {
            if is_dir(&st) {
                self.clear_untouched(&rel)?;
            }
            return Ok(());
        }
        self.remove(pfd, &cname, &rel, is_dir(&st))
    }

    /// `DIR/.wh..wh..opq`: hide everything below `dir` from lower layers.
    fn opaque(&mut self, dir: &[&[u8]]) -> std::result::Result<(), ErrorKind> {
        match self.parent(dir, false) {
            Ok(_) => {}
            Err(ErrorKind::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(k) => return Err(k),
        }
        self.clear_untouched(&join(dir))
    }

    /// Remove every entry below the directory `rel` that this layer did not
    /// provide, descending into the directories it did.
    fn clear_untouched(&mut self, rel: &[u8]) -> std::result::Result<(), ErrorKind> {
        self.stack.clear();
        let dir = self.root_path.join(OsStr::from_bytes(rel));
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_kind("listing an opaque directory"))? {
            let e = e.map_err(io_kind("listing an opaque directory"))?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        names.sort();
        for n in names {
            let child = if rel.is_empty() { n.clone() } else { [rel, b"/", &n].concat() };
            let p = self.root_path.join(OsStr::from_bytes(&child));
            let md = std::fs::symlink_metadata(&p).map_err(io_kind("inspecting an entry to hide"))?;
            if self.touched.contains(&child) {
                if md.is_dir() {
                    self.clear_untouched(&child)?;
                }
            } else if md.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io_kind("removing a hidden directory"))?;
                self.forget_dirs(&child);
                self.forget_stand_ins(&child);
            } else {
                std::fs::remove_file(&p).map_err(io_kind("removing a hidden entry"))?;
                self.dirs.remove(&child);
                self.forget_stand_ins(&child);
            }
        }
        Ok(())
    }

    /// Apply pending directory metadata, deepest first, then the root's.
    fn finish(&mut self) -> EntryResult<()> {
        self.stack.clear();
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, m) in dirs.iter().rev() {
            let shown = || Some(show(rel));
            let fd = if rel.is_empty() {
                let fd = cvt(unsafe { libc::dup(self.root.as_raw_fd()) })
                    .map_err(|e| (shown(), io_kind("duplicating a descriptor")(e)))?;
                unsafe { OwnedFd::from_raw_fd(fd) }
            } else {
                let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
                let (name, parent) = comps.split_last().expect("non-empty");
                let pfd = match self.parent(parent, false) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                };
                let name = cstring(name).map_err(|k| (shown(), k))?;
                match open_dir_at(pfd, &name) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                }
            };
            let fd = fd.as_raw_fd();
            if self.opts.same_owner {
                cvt(unsafe { libc::fchown(fd, m.uid, m.gid) })
                    .map_err(|e| (shown(), io_kind("setting the owner")(e)))?;
            }
            cvt(unsafe { libc::fchmod(fd, self.mode(m.mode, true)) })
                .map_err(|e| (shown(), io_kind("setting the mode")(e)))?;
            let ts = timespec(m.mtime);
            cvt(unsafe { libc::futimens(fd, ts.as_ptr()) })
                .map_err(|e| (shown(), io_kind("setting the mtime")(e)))?;
        }
        if !dirs.contains_key(&Vec::new()) {
            // No entry for the root: the usual 0755 rather than the temporary
            // directory's 0700.
            cvt(unsafe { libc::fchmod(self.root.as_raw_fd(), 0o755) })
                .map_err(|e| (Some(".".into()), io_kind("setting the mode")(e)))?;
        }
        self.stack.clear();
        Ok(())
    }
}

fn id32(v: io::Result<u64>, field: &str) -> std::result::Result<u32, ErrorKind> {
    let v = v.map_err(|e| ErrorKind::Malformed(format!("{field} field: {e}")))?;
    u32::try_from(v).map_err(|_| ErrorKind::Malformed(format!("{field} {v} does not fit in 32 bits")))
}

fn device(v: io::Result<Option<u32>>, field: &str) -> std::result::Result<u32, ErrorKind> {
    match v {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(ErrorKind::Malformed(format!("device entry without a {field} field"))),
        Err(e) => Err(ErrorKind::Malformed(format!("{field} field: {e}"))),
    }
}

fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::result::Result<Vec<(CString, Vec<u8>)>, ErrorKind> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions().map_err(|e| ErrorKind::Malformed(format!("pax header: {e}")))?
    else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|e| ErrorKind::Malformed(format!("pax header: {e}")))?;
        if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            out.push((cstring(name)?, ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn xattr_result(
    r: libc::c_int,
    key: &CString,
    summary: &mut ApplySummary,
) -> std::result::Result<(), ErrorKind> {
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOENT) => {
            summary.skipped_xattrs += 1;
            Tree::note(summary, format!("skipped xattr {}: {e}", key.to_string_lossy()));
            Ok(())
        }
        _ => Err(ErrorKind::Io { op: "setting an extended attribute", err: e }),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The compression to decompress with: what the media type declares, checked
/// against the magic bytes, or the magic bytes for a generic type.
fn pick_compression(
    declared: Option<Compression>,
    media_type: &str,
    magic: &[u8],
) -> std::result::Result<Compression, ErrorKind> {
    let sniffed = Compression::sniff(magic);
    match declared {
        // A declared plain tar that carries a compression magic is still
        // decompressed: registries mislabel layers.
        Some(Compression::None) | None => Ok(sniffed),
        Some(c) if c == sniffed => Ok(c),
        Some(c) => Err(ErrorKind::MediaType(format!(
            "media type {media_type} says {c:?} but the blob starts with {magic:02x?}"
        ))),
    }
}

/// The decompression thread: decompresses the blob (`prefix` already read
/// from `src`) into the channel until done, an error, or the extractor hangs
/// up; then reads whatever the decompressor left (trailing bytes, or all the
/// rest after an early stop) so that the digest returned covers the whole
/// blob, every byte of it read exactly once.
fn pump(
    prefix: Vec<u8>,
    mut src: HashingReader<File>,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<(Digest, u64)> {
    {
        let input = io::Cursor::new(prefix).chain(BufReader::with_capacity(CHUNK, &mut src));
        decompress(input, compression, &tx);
    }
    drop(tx);
    io::copy(&mut src, &mut io::sink())?;
    Ok(src.finish())
}

/// Decompress `input` into `tx` in chunks; errors are sent, not returned.
fn decompress(input: impl Read, compression: Compression, tx: &SyncSender<io::Result<Vec<u8>>>) {
    let mut reader: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            match zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, input)) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    };
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let (n, res) = fill(&mut reader, &mut chunk);
        chunk.truncate(n);
        // What was read before an error is still sent: the extractor then
        // fails at the entry the stream broke in.
        if n > 0 && tx.send(Ok(chunk)).is_err() {
            return;
        }
        match res {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Read into `buf` until it is full (`Ok(false)`), the end (`Ok(true)`) or
/// an error; returns how many bytes were read either way.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, io::Result<bool>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return (n, Ok(true)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(false))
}

/// The extractor's end of the decompression pipeline.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader that fails once more than `remaining` (the image's bound) or
/// `layer_remaining` (this layer's) bytes have been read, and says which
/// through `hit`.
struct Budget<R> {
    inner: R,
    remaining: u64,
    layer_remaining: u64,
    read: u64,
    hit: std::rc::Rc<std::cell::Cell<Option<LimitHit>>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)? as u64;
        if n > self.remaining {
            self.hit.set(Some(LimitHit::Image));
        } else if n > self.layer_remaining {
            self.hit.set(Some(LimitHit::Layer { reached: self.read + n }));
        } else {
            self.remaining -= n;
            self.layer_remaining -= n;
            self.read += n;
            return Ok(n as usize);
        }
        Err(io::Error::other("decompressed size limit reached"))
    }
}

#[cfg(test)]
mod tests {
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
        use media_type::*;
        assert_eq!(Compression::from_media_type(OCI_TAR_GZIP), Ok(Some(Compression::Gzip)));
        assert_eq!(Compression::from_media_type(DOCKER_TAR_GZIP), Ok(Some(Compression::Gzip)));
        assert_eq!(Compression::from_media_type(OCI_TAR_ZSTD), Ok(Some(Compression::Zstd)));
        assert_eq!(Compression::from_media_type(OCI_TAR), Ok(Some(Compression::None)));
        assert_eq!(Compression::from_media_type(OCTET_STREAM), Ok(None));
        assert!(Compression::from_media_type("application/vnd.oci.image.config.v1+json").is_err());
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"ustar"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }
}
