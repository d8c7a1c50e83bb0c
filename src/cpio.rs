//! Normalised newc cpio ramdisks: an in-memory [`Tree`] of enclave paths, a
//! streaming writer that turns it into the same bytes on any host, a
//! streaming walk that packs a host directory without holding its tree
//! ([`write_host_dir`]), and a streaming [`Reader`] for `diff`, `describe`
//! and tests.
//!
//! For: building the ramdisks that go into an EIF, and reading them back.
//! Not for: compression (see [`crate::gzip`]; the [`Reader`] does detect and
//! undo gzip), deciding what goes into an enclave (the build assembles a
//! `Tree`), or extracting archives onto disk.
//!
//! # Public API
//!
//! - [`Tree`]: a bytewise-sorted map of enclave paths to [`Node`]s.
//!   Build it with [`Tree::from_dir`], [`Tree::add_host_dir`] (a host
//!   directory under a prefix such as `rootfs`), [`Tree::add_dir`],
//!   [`Tree::add_file_bytes`], [`Tree::add_file_host`], [`Tree::add_symlink`],
//!   [`Tree::add_char_device`], [`Tree::add_block_device`], [`Tree::add_fifo`],
//!   [`Tree::add_hard_link`], [`Tree::merge`] (one tree on top of another);
//!   change it with [`Tree::remove`] and [`Tree::set_mode`]; write it with [`Tree::write`] (or
//!   [`Tree::write_with_progress`]), which returns a [`WriteSummary`].
//! - [`write_host_dir`]: the bytes of [`Tree::add_host_dir`] on an empty
//!   tree followed by [`Tree::write`], streamed: memory is bounded by the
//!   directory listings being walked (and the multiply-linked files), not by
//!   the number of entries. Invariant: the two give the same bytes.
//!   [`write_host_dir_into`] is the same into an [`ArchiveOut`], an output
//!   that lends room to read host files' content into (the EIF writer lends
//!   its measurer's buffers, so content is copied once, by `read`); any
//!   other writer is wrapped in [`Copying`], one buffer reused throughout.
//! - [`Reader`]: iterate a newc archive (plain or gzip) entry by entry
//!   ([`Reader::next_entry`] gives an [`Entry`]), reading each entry's content
//!   as a stream ([`Reader::data`], [`Reader::data_sha256`],
//!   [`Reader::data_to_vec`]). [`list`] reads a whole archive into entries
//!   with content digests.
//! - [`CpioError`]: every error, naming the path or offset and what was expected.
//!
//! # Paths
//!
//! Paths are byte strings relative to the ramdisk root (`usr/bin/hello`); one
//! leading `/` is accepted and dropped. Empty paths, empty components (`a//b`,
//! a trailing `/`), `.`, `..`, NUL bytes and the name `TRAILER!!!` are
//! rejected. Adding a path creates its missing parents as directories. Later
//! additions replace earlier ones; replacing a directory with anything else
//! removes what was under it; adding below a path that is not a directory (a
//! symlink such as a merged-usr `bin -> usr/bin`, a file) is an error rather
//! than a silent replacement.
//!
//! # What the writer normalises (the determinism rules)
//!
//! - Order: entries sorted bytewise by full path, which puts parents before
//!   their children (a prefix sorts first). No entry for the root itself.
//!   Names have no leading `/` or `./`.
//! - Owners: uid = gid = 0. mtime: exactly `SOURCE_DATE_EPOCH` for every
//!   entry (not `min(mtime, epoch)`: the host's file times never matter).
//! - Modes: 0755 for directories and for regular files with any execute bit
//!   on the host (or added as executable), 0644 for other files, device
//!   nodes and fifos, 0777 for symlinks; [`Tree::set_mode`] overrides the
//!   permission bits (setuid, setgid and sticky included) and wins.
//! - Inodes: numbered 1, 2, 3, ... in output order. nlink: 2 + number of
//!   subdirectories for directories, 1 otherwise, except hard links.
//! - Hard links (regular files sharing a host device and inode, or made with
//!   [`Tree::add_hard_link`]) share one inode number, carry nlink = the number
//!   of names in the tree, and the data is written once, on the first name in
//!   output order; the others have size 0. This is what the Linux initramfs
//!   unpacker expects, and GNU `cpio -i` extracts it too.
//! - devmajor/devminor are 0; rdevmajor/rdevminor are set only for device
//!   nodes. Symlink targets are the entry data, without a NUL.
//! - Sockets are skipped by [`Tree::add_host_dir`]: they are runtime
//!   artefacts that cannot carry anything into an enclave. Every other file
//!   type is packed.
//! - Header + name and data are each padded with NULs to a multiple of 4.
//!   The archive ends with the `TRAILER!!!` entry padded to 4 bytes, and
//!   nothing after it (the `gen_init_cpio` convention, not GNU cpio's
//!   512-byte blocks).
//!
//! Content of host files is streamed from disk when writing, so memory stays
//! flat however large the files are; a file that changes size while being
//! packed is an error. A newc entry holds at most 4 GiB - 1 bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, HashingWriter};
use crate::epoch::Epoch;
use crate::progress::Progress;

/// Magic of a newc header.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of a newc header with a data checksum (read, never written).
pub const MAGIC_NEWC_CRC: &[u8; 6] = b"070702";
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Size of a newc header, before the name.
pub const HEADER_LEN: usize = 110;

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Longest name the reader accepts, NUL included (the kernel's PATH_MAX is 4096).
pub const MAX_NAME: u32 = 64 * 1024;

/// Everything that can go wrong building, writing or reading a ramdisk.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("invalid ramdisk path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("cannot add {path:?}: {parent:?} is a {kind} in the tree, not a directory")]
    ParentNotDir { path: String, parent: String, kind: &'static str },
    #[error("cannot add hard link {path:?} to {target:?}: the target is not a regular file in the tree")]
    LinkTarget { path: String, target: String },
    #[error("invalid mode {mode:#o} for {path:?}: only permission bits (at most 0o7777) can be set")]
    BadMode { path: String, mode: u32 },
    #[error("mode override for {path:?} names no entry in the tree")]
    UnknownOverride { path: String },
    #[error("hard links {first:?} and {other:?} share an inode but would get modes {first_mode:#o} and {other_mode:#o}; give both the same mode")]
    LinkModes { first: String, other: String, first_mode: u32, other_mode: u32 },
    #[error("{}: {what}: {source}", path.display())]
    Host { path: PathBuf, what: &'static str, source: io::Error },
    #[error("{}: {reason}", path.display())]
    HostType { path: PathBuf, reason: String },
    #[error("{}: {size} bytes is too large for a newc cpio entry (at most 4294967295)", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: the file changed size while it was being packed (expected {expected} bytes); pack a stable tree", path.display())]
    Changed { path: PathBuf, expected: u64 },
    #[error("SOURCE_DATE_EPOCH={0} does not fit newc's 32-bit mtime field (at most 4294967295)")]
    EpochRange(u64),
    #[error("writing the ramdisk: {0}")]
    Write(#[source] io::Error),

    #[error("cpio: bad magic {found:?} at offset {offset}: expected \"070701\" (newc) or \"070702\" (newc with checksums)")]
    BadMagic { offset: u64, found: String },
    #[error("cpio: truncated at offset {offset} while reading {what}")]
    Truncated { offset: u64, what: String },
    #[error("cpio: header at offset {offset}: field {field} is not 8 hex digits: {value:?}")]
    BadField { offset: u64, field: &'static str, value: String },
    #[error("cpio: entry at offset {offset}: {reason}")]
    BadEntry { offset: u64, reason: String },
    #[error("cpio: checksum mismatch for {name:?}: the header says {expected:#010x}, the data sums to {actual:#010x}")]
    Checksum { name: String, expected: u32, actual: u32 },
    #[error("reading the ramdisk: {0}")]
    Read(#[source] io::Error),
}

type Result<T, E = CpioError> = std::result::Result<T, E>;

/// Where a regular file's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Bytes held in memory (small generated files: `cmd`, `env`, a manifest).
    Bytes(Arc<[u8]>),
    /// A file on the host, opened and streamed when the tree is written.
    Host(PathBuf),
}

/// Identifies the names of one hard-linked file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKey {
    /// Host files with the same device and inode number.
    Host { dev: u64, ino: u64 },
    /// Links made with [`Tree::add_hard_link`].
    Added(u64),
}

/// One entry of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { content: Content, executable: bool, link: Option<LinkKey> },
    Symlink { target: Vec<u8> },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

impl Node {
    fn kind_name(&self) -> &'static str {
        match self {
            Node::Dir => "directory",
            Node::File { .. } => "regular file",
            Node::Symlink { .. } => "symlink",
            Node::CharDevice { .. } => "character device",
            Node::BlockDevice { .. } => "block device",
            Node::Fifo => "fifo",
        }
    }

    /// Type bits | canonical permission bits.
    fn canonical_mode(&self) -> u32 {
        match self {
            Node::Dir => S_IFDIR | 0o755,
            Node::File { executable: true, .. } => S_IFREG | 0o755,
            Node::File { executable: false, .. } => S_IFREG | 0o644,
            Node::Symlink { .. } => S_IFLNK | 0o777,
            Node::CharDevice { .. } => S_IFCHR | 0o644,
            Node::BlockDevice { .. } => S_IFBLK | 0o644,
            Node::Fifo => S_IFIFO | 0o644,
        }
    }
}

/// What [`Tree::write`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WriteSummary {
    /// Entries written, the trailer not included.
    pub entries: u64,
    /// Bytes of cpio written (before any compression), trailer included.
    pub bytes: u64,
    /// Bytes of file and symlink content among them.
    pub data_bytes: u64,
}

/// An enclave file tree, kept sorted bytewise by path; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<Vec<u8>, Node>,
    modes: BTreeMap<Vec<u8>, u32>,
    next_link: u64,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Validate a ramdisk path and return its canonical form (no leading `/`).
fn normalize(path: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason| Err(CpioError::InvalidPath { path: lossy(path), reason });
    let p = path.strip_prefix(b"/").unwrap_or(path);
    if p.is_empty() {
        return bad("empty path (the root itself is not an entry)");
    }
    if p.contains(&0) {
        return bad("contains a NUL byte");
    }
    for comp in p.split(|&b| b == b'/') {
        match comp {
            b"" => return bad("empty component (a doubled or trailing '/')"),
            b"." | b".." => return bad("'.' and '..' components are not allowed"),
            _ => {}
        }
    }
    if p == TRAILER.as_bytes() {
        return bad("TRAILER!!! is the end-of-archive marker");
    }
    Ok(p.to_vec())
}

/// Split a glibc `dev_t` into major and minor numbers.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Tree::default()
    }

    /// The tree of a host directory, its contents at the ramdisk root.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let mut t = Tree::new();
        t.add_host_dir("", dir)?;
        Ok(t)
    }

    /// Number of entries (parents created implicitly included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Node> {
        let key = normalize(path.as_ref()).ok()?;
        self.nodes.get(&key)
    }

    /// Every entry in output order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// Insert `node` at `path`: parents are created, an existing entry replaced.
    fn insert(&mut self, path: &[u8], node: Node) -> Result<()> {
        let key = normalize(path)?;
        for (i, _) in key.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let parent = &key[..i];
            match self.nodes.get(parent) {
                None => {
                    self.nodes.insert(parent.to_vec(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(other) => {
                    return Err(CpioError::ParentNotDir {
                        path: lossy(&key),
                        parent: lossy(parent),
                        kind: other.kind_name(),
                    })
                }
            }
        }
        match (self.nodes.get(&key), &node) {
            (Some(Node::Dir), Node::Dir) => return Ok(()),
            (Some(Node::Dir), _) => self.remove_below(&key),
            _ => {}
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    fn remove_below(&mut self, key: &[u8]) {
        let mut lo = key.to_vec();
        lo.push(b'/');
        let mut hi = key.to_vec();
        hi.push(b'/' + 1);
        let doomed: Vec<Vec<u8>> = self.nodes.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Add a directory (a no-op if one is there already).
    pub fn add_dir(&mut self, path: impl AsRef<[u8]>) -> Result<()> {
        self.insert(path.as_ref(), Node::Dir)
    }

    /// Add a regular file with in-memory content.
    pub fn add_file_bytes(
        &mut self,
        path: impl AsRef<[u8]>,
        content: impl Into<Vec<u8>>,
        executable: bool,
    ) -> Result<()> {
        let content = Content::Bytes(Arc::from(content.into()));
        self.insert(path.as_ref(), Node::File { content, executable, link: None })
    }

    /// Add a regular file whose content is streamed from `host` when writing.
    /// Symlinks on the host are followed; the file is executable in the
    /// ramdisk if any execute bit is set on the host.
    pub fn add_file_host(&mut self, path: impl AsRef<[u8]>, host: impl AsRef<Path>) -> Result<()> {
        let host = host.as_ref();
        let md = std::fs::metadata(host).map_err(|source| CpioError::Host {
            path: host.to_path_buf(),
            what: "cannot stat",
            source,
        })?;
        if !md.is_file() {
            return Err(CpioError::HostType {
                path: host.to_path_buf(),
                reason: "not a regular file".into(),
            });
        }
        self.insert(path.as_ref(), host_file_node(host, &md))
    }

    /// Add a symlink pointing at `target` (stored as is; it may dangle).
    pub fn add_symlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Result<()> {
        let target = target.as_ref();
        if target.is_empty() || target.contains(&0) {
            return Err(CpioError::InvalidPath {
                path: lossy(path.as_ref()),
                reason: "a symlink target must be non-empty and free of NUL bytes",
            });
        }
        self.insert(path.as_ref(), Node::Symlink { target: target.to_vec() })
    }

    /// Add a character device node (e.g. `dev/console`, 5:1).
    pub fn add_char_device(&mut self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Result<()> {
        self.insert(path.as_ref(), Node::CharDevice { major, minor })
    }

    /// Add a block device node.
    pub fn add_block_device(&mut self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Result<()> {
        self.insert(path.as_ref(), Node::BlockDevice { major, minor })
    }

    /// Add a named pipe.
    pub fn add_fifo(&mut self, path: impl AsRef<[u8]>) -> Result<()> {
        self.insert(path.as_ref(), Node::Fifo)
    }

    /// Make `path` another name of the regular file at `existing`.
    pub fn add_hard_link(&mut self, path: impl AsRef<[u8]>, existing: impl AsRef<[u8]>) -> Result<()> {
        let err = || CpioError::LinkTarget { path: lossy(path.as_ref()), target: lossy(existing.as_ref()) };
        let key = normalize(existing.as_ref())?;
        let node = match self.nodes.get_mut(&key) {
            Some(Node::File { link, .. }) => {
                if link.is_none() {
                    *link = Some(LinkKey::Added(self.next_link));
                    self.next_link += 1;
                }
                self.nodes[&key].clone()
            }
            _ => return Err(err()),
        };
        if normalize(path.as_ref())? == key {
            return Ok(());
        }
        self.insert(path.as_ref(), node)
    }

    /// Add everything under the host directory `dir` below `prefix` (`""` for
    /// the root; the prefix directory itself is created). Symlinks are kept
    /// as symlinks, hard links detected, sockets skipped. Host owners, times
    /// and permission bits other than "executable" are ignored.
    pub fn add_host_dir(&mut self, prefix: impl AsRef<[u8]>, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        // A trailing '/' on the prefix is harmless here (`--prefix rootfs/`).
        let prefix = prefix.as_ref();
        let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
        let prefix: Vec<u8> = if prefix.is_empty() {
            Vec::new()
        } else {
            let p = normalize(prefix)?;
            self.add_dir(&p)?;
            p
        };
        require_host_dir(dir)?;
        for item in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                CpioError::Host { path, what: "cannot walk", source: e.into() }
            })?;
            let host = item.path();
            let rel = host.strip_prefix(dir).expect("walkdir yields paths below its root");
            let mut key = prefix.clone();
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(rel.as_os_str().as_bytes());
            let md = item.metadata().map_err(|e| CpioError::Host {
                path: host.to_path_buf(),
                what: "cannot stat",
                source: e.into(),
            })?;
            let Some(node) = host_node(host, &md)? else { continue };
            self.insert(&key, node)?;
        }
        Ok(())
    }

    /// Add every entry of `other` (and its mode overrides) on top of this
    /// tree, in `other`'s order, with the same replacement rules as the
    /// `add_*` methods. Hard links within `other` stay links.
    pub fn merge(&mut self, other: Tree) -> Result<()> {
        let base = self.next_link;
        for (key, mut node) in other.nodes {
            if let Node::File { link: Some(LinkKey::Added(n)), .. } = &mut node {
                *n += base;
            }
            self.insert(&key, node)?;
        }
        self.next_link += other.next_link;
        self.modes.extend(other.modes);
        Ok(())
    }

    /// Remove `path` and everything below it; returns whether anything was there.
    pub fn remove(&mut self, path: impl AsRef<[u8]>) -> Result<bool> {
        let key = normalize(path.as_ref())?;
        self.remove_below(&key);
        Ok(self.nodes.remove(&key).is_some())
    }

    /// Override the permission bits of `path` (e.g. `0o4755`). The entry must
    /// exist by the time the tree is written.
    pub fn set_mode(&mut self, path: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let key = normalize(path.as_ref())?;
        if mode & !0o7777 != 0 {
            return Err(CpioError::BadMode { path: lossy(&key), mode });
        }
        self.modes.insert(key, mode);
        Ok(())
    }

    fn mode_of(&self, key: &[u8], node: &Node) -> u32 {
        let canonical = node.canonical_mode();
        match self.modes.get(key) {
            Some(perm) => (canonical & S_IFMT) | perm,
            None => canonical,
        }
    }

    /// Sum of the sizes of the content to be written (host files are
    /// stat'ed now); a hint for progress bars.
    pub fn data_size_hint(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::File { content: Content::Bytes(b), .. } => b.len() as u64,
                Node::File { content: Content::Host(p), .. } => {
                    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
                }
                Node::Symlink { target } => target.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Write the tree as a normalised newc archive; see the module docs.
    pub fn write<W: Write>(&self, out: W, epoch: Epoch) -> Result<WriteSummary> {
        self.write_with_progress(out, epoch, &Progress::hidden())
    }

    /// [`Tree::write`], advancing `progress` by the content bytes written.
    pub fn write_with_progress<W: Write>(
        &self,
        out: W,
        epoch: Epoch,
        progress: &Progress,
    ) -> Result<WriteSummary> {
        let mtime = u32::try_from(epoch.0).map_err(|_| CpioError::EpochRange(epoch.0))?;
        if let Some(path) = self.modes.keys().find(|k| !self.nodes.contains_key(*k)) {
            return Err(CpioError::UnknownOverride { path: lossy(path) });
        }
        let counts = self.link_counts();
        let mut entries = Entries::new(Copying::new(out), counts.group_size, progress);
        for (key, node) in &self.nodes {
            let mut h = Header { mode: self.mode_of(key, node), mtime, nlink: 1, ..Header::default() };
            if let Node::Dir = node {
                h.nlink = 2 + counts.subdirs.get(key.as_slice()).copied().unwrap_or(0);
            }
            entries.entry(key, node, h)?;
        }
        entries.finish()
    }

    /// Subdirectory counts (for directory nlink) and hard-link group sizes.
    fn link_counts(&self) -> LinkCounts<'_> {
        let mut counts = LinkCounts { subdirs: HashMap::new(), group_size: HashMap::new() };
        for (k, n) in &self.nodes {
            match n {
                Node::Dir => {
                    if let Some(i) = k.iter().rposition(|&b| b == b'/') {
                        *counts.subdirs.entry(&k[..i]).or_default() += 1;
                    }
                }
                Node::File { link: Some(l), .. } => *counts.group_size.entry(*l).or_default() += 1,
                _ => {}
            }
        }
        counts
    }
}

/// What nlink values are made of: each directory's number of
/// subdirectories, each hard-link group's number of names.
struct LinkCounts<'a> {
    subdirs: HashMap<&'a [u8], u32>,
    group_size: HashMap<LinkKey, u32>,
}

/// The entries of one archive being written, in order: the inode numbers
/// handed out (1, 2, 3, ...) and the hard-link groups already written.
struct Entries<'p, W> {
    w: CountingWriter<W>,
    /// Number of names of each hard-link group in the whole archive.
    group_size: HashMap<LinkKey, u32>,
    /// Hard-link groups already written: inode, mode, first name.
    written_links: HashMap<LinkKey, (u32, u32, Vec<u8>)>,
    next_ino: u32,
    summary: WriteSummary,
    progress: &'p Progress,
}

impl<'p, W: ArchiveOut> Entries<'p, W> {
    fn new(out: W, group_size: HashMap<LinkKey, u32>, progress: &'p Progress) -> Self {
        Entries {
            w: CountingWriter { inner: out, count: 0 },
            group_size,
            written_links: HashMap::new(),
            next_ino: 1,
            summary: WriteSummary { entries: 0, bytes: 0, data_bytes: 0 },
            progress,
        }
    }

    fn new_ino(&mut self) -> u32 {
        let i = self.next_ino;
        self.next_ino += 1;
        i
    }

    /// Write one entry: `h` holds its mode, mtime and nlink (1, or a
    /// directory's 2 + subdirectories).
    fn entry(&mut self, key: &[u8], node: &Node, h: Header) -> Result<()> {
        self.summary.entries += 1;
        self.summary.data_bytes += self.entry_body(key, node, h)?;
        Ok(())
    }

    /// The trailer; what was written.
    fn finish(self) -> Result<WriteSummary> {
        let mut w = self.w;
        let trailer = Header { nlink: 1, ..Header::default() };
        trailer.write(&mut w, TRAILER.as_bytes())?;
        w.flush().map_err(CpioError::Write)?;
        Ok(WriteSummary { bytes: w.count, ..self.summary })
    }

    /// [`Entries::entry`]'s header and data; returns its data bytes.
    fn entry_body(&mut self, key: &[u8], node: &Node, mut h: Header) -> Result<u64> {
        match node {
            Node::Dir => {
                h.ino = self.new_ino();
                h.write(&mut self.w, key)?;
                Ok(0)
            }
            Node::Symlink { target } => {
                h.ino = self.new_ino();
                h.filesize = target.len() as u32;
                h.write(&mut self.w, key)?;
                write_data(&mut self.w, target)?;
                Ok(target.len() as u64)
            }
            Node::CharDevice { major, minor } | Node::BlockDevice { major, minor } => {
                h.ino = self.new_ino();
                h.rdevmajor = *major;
                h.rdevminor = *minor;
                h.write(&mut self.w, key)?;
                Ok(0)
            }
            Node::Fifo => {
                h.ino = self.new_ino();
                h.write(&mut self.w, key)?;
                Ok(0)
            }
            Node::File { content, link, .. } => self.file(key, content, *link, h),
        }
    }

    /// A regular file: a later name of a hard-link group is a header only
    /// (the group's inode, no data); the first carries the content.
    fn file(&mut self, key: &[u8], content: &Content, link: Option<LinkKey>, mut h: Header) -> Result<u64> {
        let mode = h.mode;
        let size = |l: &LinkKey| self.group_size.get(l).copied().unwrap_or(1);
        let group = link.filter(|l| size(l) > 1);
        if let Some(l) = group {
            h.nlink = size(&l);
            if let Some((ino, first_mode, first)) = self.written_links.get(&l) {
                let (ino, first_mode) = (*ino, *first_mode);
                if first_mode != mode {
                    return Err(CpioError::LinkModes {
                        first: lossy(first),
                        other: lossy(key),
                        first_mode: first_mode & 0o7777,
                        other_mode: mode & 0o7777,
                    });
                }
                h.ino = ino;
                h.write(&mut self.w, key)?;
                return Ok(0);
            }
        }
        h.ino = self.new_ino();
        if let Some(l) = group {
            self.written_links.insert(l, (h.ino, mode, key.to_vec()));
        }
        match content {
            Content::Bytes(b) => {
                h.filesize = b.len().try_into().map_err(|_| CpioError::TooLarge {
                    path: PathBuf::from(lossy(key)),
                    size: b.len() as u64,
                })?;
                h.write(&mut self.w, key)?;
                write_data(&mut self.w, b)?;
                Ok(b.len() as u64)
            }
            Content::Host(path) => write_host_file(&mut self.w, &mut h, key, path, self.progress),
        }
    }
}

fn host_file_node(host: &Path, md: &std::fs::Metadata) -> Node {
    let link = (md.nlink() > 1).then(|| LinkKey::Host { dev: md.dev(), ino: md.ino() });
    Node::File { content: Content::Host(host.to_path_buf()), executable: md.mode() & 0o111 != 0, link }
}

/// Pack the host directory `dir` below `prefix` (`""` for the root) straight
/// into `out`: the same bytes as [`Tree::add_host_dir`] on an empty tree and
/// [`Tree::write_with_progress`], without holding the tree in memory.
///
/// The walk reads and sorts one directory listing at a time (see
/// `HostWalk`), so memory is bounded by the listings of the directories
/// being walked, not by the number of entries. Hard links need the size of
/// each group in the first name's header: a first walk counts the names of
/// host files with more than one link (memory proportional to those files
/// only), the second writes; a tree whose links change between the two
/// walks is an error.
pub fn write_host_dir<W: Write>(
    prefix: impl AsRef<[u8]>,
    dir: impl AsRef<Path>,
    out: W,
    epoch: Epoch,
    progress: &Progress,
) -> Result<WriteSummary> {
    write_host_dir_into(prefix, dir, Copying::new(out), epoch, progress)
}

/// [`write_host_dir`] into an [`ArchiveOut`], which has host files' content
/// read straight into its own buffer: the same bytes, one copy fewer.
pub fn write_host_dir_into<W: ArchiveOut>(
    prefix: impl AsRef<[u8]>,
    dir: impl AsRef<Path>,
    out: W,
    epoch: Epoch,
    progress: &Progress,
) -> Result<WriteSummary> {
    let (prefix, dir) = (prefix.as_ref(), dir.as_ref());
    let mtime = u32::try_from(epoch.0).map_err(|_| CpioError::EpochRange(epoch.0))?;
    let walk = HostWalk::new(prefix, dir)?;
    let mut group_size: HashMap<LinkKey, u32> = HashMap::new();
    count_links(dir, &mut group_size)?;
    let mut entries = Entries::new(out, group_size.clone(), progress);
    let mut seen: HashMap<LinkKey, u32> = HashMap::new();
    walk.run(&mut |key, node, nlink| {
        if let Node::File { link: Some(l), .. } = node {
            *seen.entry(*l).or_default() += 1;
        }
        let h = Header { mode: node.canonical_mode(), mtime, nlink, ..Header::default() };
        entries.entry(key, node, h)
    })?;
    if seen != group_size {
        return Err(CpioError::HostType {
            path: dir.to_path_buf(),
            reason: "hard links changed while the tree was being packed; pack a stable tree".into(),
        });
    }
    entries.finish()
}

/// Count the names of each multiply-linked regular file below host
/// directory `dir` into `counts`: the first of [`write_host_dir`]'s two
/// walks. Order does not matter here, so it is a plain depth-first walk,
/// stat'ing (relative to the directory, not following symlinks) only what
/// `readdir` says is a regular file, the only kind a link group holds.
fn count_links(dir: &Path, counts: &mut HashMap<LinkKey, u32>) -> Result<()> {
    let err = |source| CpioError::Host { path: dir.to_path_buf(), what: "cannot read directory", source };
    for item in std::fs::read_dir(dir).map_err(err)? {
        let item = item.map_err(err)?;
        let stat_err = |source| CpioError::Host { path: item.path(), what: "cannot stat", source };
        let ft = item.file_type().map_err(stat_err)?;
        if ft.is_dir() {
            count_links(&item.path(), counts)?;
        } else if ft.is_file() {
            let md = item.metadata().map_err(stat_err)?;
            if md.is_file() && md.nlink() > 1 {
                *counts.entry(LinkKey::Host { dev: md.dev(), ino: md.ino() }).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// One name in a host directory listing.
struct Listed {
    name: Vec<u8>,
    is_dir: bool,
}

/// What a visitor of [`HostWalk::run`] is given: the entry's path in the
/// ramdisk, its node, and its nlink (2 + subdirectories for a directory, 1
/// otherwise).
type Visit<'v> = dyn FnMut(&[u8], &Node, u32) -> Result<()> + 'v;

/// A walk of a host directory in the writer's order (bytewise by full
/// path), one directory listing at a time.
///
/// Bytewise order is not plain depth-first order: `a-b` (a sibling) sorts
/// between the directory `a` and its child `a/c`, because `-` < `/`. So each
/// directory's listing is sorted as events: a name for the entry itself and,
/// for a subdirectory, the name followed by `/` for "walk its contents here".
/// No other sibling name falls inside `name/...`, since names hold no `/`.
/// A subdirectory's listing is read when its own entry is visited (its
/// nlink needs the count of its subdirectories) and kept until its contents
/// are walked.
struct HostWalk {
    dir: PathBuf,
    /// Ramdisk paths of the prefix and its missing parents, outermost first.
    prefix_dirs: Vec<Vec<u8>>,
    root: Vec<Listed>,
}

impl HostWalk {
    fn new(prefix: &[u8], dir: &Path) -> Result<Self> {
        // A trailing '/' on the prefix is harmless here (`--prefix rootfs/`).
        let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
        let mut prefix_dirs = Vec::new();
        if !prefix.is_empty() {
            let p = normalize(prefix)?;
            for (i, _) in p.iter().enumerate().filter(|(_, &b)| b == b'/') {
                prefix_dirs.push(p[..i].to_vec());
            }
            prefix_dirs.push(p);
        }
        require_host_dir(dir)?;
        let root = read_listing(dir)?;
        Ok(HostWalk { dir: dir.to_path_buf(), prefix_dirs, root })
    }

    /// Visit every entry, the prefix directories first.
    fn run(self, visit: &mut Visit<'_>) -> Result<()> {
        let root_subdirs = subdirs(&self.root);
        let n = self.prefix_dirs.len();
        for (i, p) in self.prefix_dirs.iter().enumerate() {
            let nlink = if i + 1 == n { 2 + root_subdirs } else { 3 };
            visit(p, &Node::Dir, nlink)?;
        }
        let key = self.prefix_dirs.last().cloned().unwrap_or_default();
        walk_listing(&self.dir, &key, self.root, visit)
    }
}

fn subdirs(listing: &[Listed]) -> u32 {
    listing.iter().filter(|l| l.is_dir).count() as u32
}

/// `dir` must be a directory on the host (symlinks followed: it is the
/// caller's root, not an entry).
fn require_host_dir(dir: &Path) -> Result<()> {
    let md = std::fs::metadata(dir).map_err(|source| CpioError::Host {
        path: dir.to_path_buf(),
        what: "cannot read directory",
        source,
    })?;
    if !md.is_dir() {
        return Err(CpioError::HostType { path: dir.to_path_buf(), reason: "not a directory".into() });
    }
    Ok(())
}

/// The names in host directory `dir`, unsorted; file types from `readdir`
/// (an `lstat` where the filesystem does not say).
fn read_listing(dir: &Path) -> Result<Vec<Listed>> {
    let err = |source| CpioError::Host { path: dir.to_path_buf(), what: "cannot read directory", source };
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(err)? {
        let item = item.map_err(err)?;
        let ft = item.file_type().map_err(|source| CpioError::Host {
            path: item.path(),
            what: "cannot stat",
            source,
        })?;
        out.push(Listed { name: item.file_name().as_bytes().to_vec(), is_dir: ft.is_dir() });
    }
    Ok(out)
}

/// Visit the entries below host directory `dir` (ramdisk path `key`, `""`
/// for the root) whose listing is `listing`, in bytewise order.
fn walk_listing(dir: &Path, key: &[u8], listing: Vec<Listed>, visit: &mut Visit<'_>) -> Result<()> {
    // (sort key, what to do there); names are unique, so keys are too.
    let mut events: Vec<(Vec<u8>, Event)> = Vec::with_capacity(listing.len() + subdirs(&listing) as usize);
    for l in listing {
        if l.is_dir {
            let mut inside = l.name.clone();
            inside.push(b'/');
            events.push((inside, Event::Contents));
        }
        events.push((l.name, Event::Entry { is_dir: l.is_dir }));
    }
    events.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut pending: HashMap<Vec<u8>, Vec<Listed>> = HashMap::new();
    for (name, event) in events {
        let Event::Entry { is_dir } = event else {
            let name = &name[..name.len() - 1];
            if let Some(sub) = pending.remove(name) {
                walk_listing(&dir.join(OsStr::from_bytes(name)), &child_key(key, name), sub, visit)?;
            }
            continue;
        };
        let host = dir.join(OsStr::from_bytes(&name));
        if let Some((node, nlink, sub)) = visit_node(&host, is_dir)? {
            visit(&child_key(key, &name), &node, nlink)?;
            if let Some(sub) = sub {
                pending.insert(name, sub);
            }
        }
    }
    Ok(())
}

/// A visited name: its node, nlink, and a directory's own listing.
type Visited = (Node, u32, Option<Vec<Listed>>);

/// What [`walk_listing`] does at a sort key.
#[derive(Clone, Copy)]
enum Event {
    /// Visit the entry of this name.
    Entry { is_dir: bool },
    /// Walk the contents of this subdirectory (the key is its name + `/`).
    Contents,
}

/// `lstat` one listed name (`listed_dir`: the listing said it is a
/// directory): its node, nlink and, for a directory, its listing; `None`
/// for a socket.
fn visit_node(host: &Path, listed_dir: bool) -> Result<Option<Visited>> {
    let md = std::fs::symlink_metadata(host).map_err(|source| CpioError::Host {
        path: host.to_path_buf(),
        what: "cannot stat",
        source,
    })?;
    if md.is_dir() != listed_dir {
        return Err(CpioError::HostType {
            path: host.to_path_buf(),
            reason: "changed type while the tree was being packed; pack a stable tree".into(),
        });
    }
    let Some(node) = host_node(host, &md)? else { return Ok(None) };
    if node != Node::Dir {
        return Ok(Some((node, 1, None)));
    }
    let sub = read_listing(host)?;
    Ok(Some((node, 2 + subdirs(&sub), Some(sub))))
}

fn child_key(key: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1 + name.len());
    if !key.is_empty() {
        k.extend_from_slice(key);
        k.push(b'/');
    }
    k.extend_from_slice(name);
    k
}

/// The node for a host path given its `lstat`; `None` for a socket (skipped).
fn host_node(host: &Path, md: &std::fs::Metadata) -> Result<Option<Node>> {
    let ft = md.file_type();
    let node = if ft.is_dir() {
        Node::Dir
    } else if ft.is_file() {
        host_file_node(host, md)
    } else if ft.is_symlink() {
        let target = std::fs::read_link(host).map_err(|source| CpioError::Host {
            path: host.to_path_buf(),
            what: "cannot read symlink",
            source,
        })?;
        Node::Symlink { target: target.as_os_str().as_bytes().to_vec() }
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = split_dev(md.rdev());
        if ft.is_char_device() {
            Node::CharDevice { major, minor }
        } else {
            Node::BlockDevice { major, minor }
        }
    } else if ft.is_fifo() {
        Node::Fifo
    } else if ft.is_socket() {
        return Ok(None);
    } else {
        return Err(CpioError::HostType {
            path: host.to_path_buf(),
            reason: format!("unsupported file type (mode {:#o})", md.mode()),
        });
    };
    Ok(Some(node))
}

/// Write a host file's header and content, checking that its size holds still.
fn write_host_file<W: ArchiveOut>(
    w: &mut CountingWriter<W>,
    h: &mut Header,
    key: &[u8],
    path: &Path,
    progress: &Progress,
) -> Result<u64> {
    let host_err = |what, source| CpioError::Host { path: path.to_path_buf(), what, source };
    let mut f = File::open(path).map_err(|e| host_err("cannot open", e))?;
    let md = f.metadata().map_err(|e| host_err("cannot stat", e))?;
    if !md.is_file() {
        return Err(CpioError::HostType {
            path: path.to_path_buf(),
            reason: "no longer a regular file".into(),
        });
    }
    let size = md.len();
    h.filesize = u32::try_from(size).map_err(|_| CpioError::TooLarge { path: path.to_path_buf(), size })?;
    h.write(w, key)?;
    copy_host_file(w, &mut f, path, size, progress)?;
    pad(w, size)?;
    Ok(size)
}

/// Copy exactly `size` bytes of `f` into `w`, reading straight into the
/// room `w` lends; a file that ends early or goes on past `size` is an error.
///
/// Each read asks for one byte more than is left where the room allows: a
/// short answer then says the file ends at `size` (a regular file's read
/// is short only at its end), so no extra read is needed to check that it
/// did not grow; otherwise one more read must find nothing.
fn copy_host_file<W: ArchiveOut>(
    w: &mut CountingWriter<W>,
    f: &mut File,
    path: &Path,
    size: u64,
    progress: &Progress,
) -> Result<()> {
    let host_err = |what, source| CpioError::Host { path: path.to_path_buf(), what, source };
    let changed = || CpioError::Changed { path: path.to_path_buf(), expected: size };
    let mut left = size;
    loop {
        let room = w.spare().map_err(CpioError::Write)?;
        let want = room.len().min(usize::try_from(left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = match f.read(&mut room[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(host_err("cannot read", e)),
        };
        if n as u64 > left {
            return Err(changed());
        }
        w.commit(n).map_err(CpioError::Write)?;
        progress.inc(n as u64);
        left -= n as u64;
        match (n < want, left) {
            // Short: the file's end. Right where expected, or too early.
            (true, 0) => return Ok(()),
            (true, _) if n == 0 => return Err(changed()),
            // All `size` bytes read, with no room to look past them: look now.
            (false, 0) => break,
            _ => {}
        }
    }
    let mut probe = [0u8; 1];
    if f.read(&mut probe).map_err(|e| host_err("cannot read", e))? != 0 {
        return Err(changed());
    }
    Ok(())
}

fn write_data<W: Write>(w: &mut CountingWriter<W>, data: &[u8]) -> Result<()> {
    w.write_all(data).map_err(CpioError::Write)?;
    pad(w, data.len() as u64)
}

fn pad<W: Write>(w: &mut CountingWriter<W>, len: u64) -> Result<()> {
    let n = (4 - (len % 4)) % 4;
    w.write_all(&[0u8; 3][..n as usize]).map_err(CpioError::Write)
}

/// Where an archive is written: a byte stream that also lends room to read
/// host files' content into, so that it is not copied once more on its way.
pub trait ArchiveOut: Write {
    /// Room (never empty) at the end of what was written so far, to fill
    /// and then hand over with [`ArchiveOut::commit`]; what is not
    /// committed is not part of the output.
    fn spare(&mut self) -> io::Result<&mut [u8]>;
    /// The first `n` bytes of the last [`ArchiveOut::spare`] are output.
    fn commit(&mut self, n: usize) -> io::Result<()>;
}

impl<T: ArchiveOut + ?Sized> ArchiveOut for &mut T {
    fn spare(&mut self) -> io::Result<&mut [u8]> {
        (**self).spare()
    }
    fn commit(&mut self, n: usize) -> io::Result<()> {
        (**self).commit(n)
    }
}

/// An [`ArchiveOut`] for any writer: host files are read into one buffer,
/// reused from file to file, and written from there.
pub struct Copying<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Copying<W> {
    pub fn new(inner: W) -> Self {
        Copying { inner, buf: Vec::new() }
    }
}

impl<W: Write> Write for Copying<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write(data)
    }
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> ArchiveOut for Copying<W> {
    fn spare(&mut self) -> io::Result<&mut [u8]> {
        if self.buf.is_empty() {
            self.buf = vec![0; 256 * 1024];
        }
        Ok(&mut self.buf)
    }
    fn commit(&mut self, n: usize) -> io::Result<()> {
        self.inner.write_all(&self.buf[..n])
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: ArchiveOut> CountingWriter<W> {
    fn spare(&mut self) -> io::Result<&mut [u8]> {
        self.inner.spare()
    }
    fn commit(&mut self, n: usize) -> io::Result<()> {
        self.inner.commit(n)?;
        self.count += n as u64;
        Ok(())
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The numeric fields of a newc header that the writer sets.
#[derive(Default)]
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
}

impl Header {
    /// Header, name, NUL and padding to a multiple of 4.
    fn write<W: Write>(&self, w: &mut CountingWriter<W>, name: &[u8]) -> Result<()> {
        let namesize = name.len() as u32 + 1;
        let (uid, gid, devmajor, devminor, check) = (0u32, 0u32, 0u32, 0u32, 0u32);
        let mut buf = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        buf.extend_from_slice(MAGIC_NEWC);
        for v in [
            self.ino,
            self.mode,
            uid,
            gid,
            self.nlink,
            self.mtime,
            self.filesize,
            devmajor,
            devminor,
            self.rdevmajor,
            self.rdevminor,
            namesize,
            check,
        ] {
            buf.extend_from_slice(&hex8(v));
        }
        buf.extend_from_slice(name);
        buf.push(0);
        while buf.len() % 4 != 0 {
            buf.push(0);
        }
        w.write_all(&buf).map_err(CpioError::Write)
    }
}

/// `v` as 8 uppercase hex digits, as newc headers spell their fields.
fn hex8(v: u32) -> [u8; 8] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    std::array::from_fn(|i| DIGITS[((v >> (28 - 4 * i)) & 0xf) as usize])
}

/// What a newc entry's mode says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

/// One header of an archive being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name as stored, without its NUL.
    pub name: Vec<u8>,
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub size: u32,
    pub devmajor: u32,
    pub devminor: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
    /// The checksum field (0 in plain newc).
    pub check: u32,
    /// Offset of the header in the (uncompressed) archive.
    pub offset: u64,
}

impl Entry {
    pub fn name_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    pub fn kind(&self) -> Kind {
        match self.mode & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File,
            S_IFLNK => Kind::Symlink,
            S_IFCHR => Kind::CharDevice,
            S_IFBLK => Kind::BlockDevice,
            S_IFIFO => Kind::Fifo,
            S_IFSOCK => Kind::Socket,
            _ => Kind::Unknown,
        }
    }

    /// Permission bits (setuid, setgid, sticky included).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

struct Current {
    name: Vec<u8>,
    remaining: u64,
    pad: u64,
    /// `Some(expected)` for 070702 entries.
    check: Option<u32>,
    sum: u32,
}

/// The read buffer of a [`Reader`] (and of its gzip decoder's output).
pub const READ_BUFFER: usize = 256 * 1024;

/// A streaming newc reader over plain or gzip input; see the module docs.
///
/// Reading stops at the first `TRAILER!!!`; anything after it is not read.
pub struct Reader<'a> {
    inner: Box<dyn Read + 'a>,
    offset: u64,
    current: Option<Current>,
    done: bool,
}

impl<'a> Reader<'a> {
    /// Read from `r`, undoing gzip if the input starts with `1f 8b`.
    pub fn new<R: Read + 'a>(r: R) -> Result<Self> {
        Self::with_buffer(r, READ_BUFFER)
    }

    /// [`Reader::new`] with `capacity`-byte read buffers (at least 4 KiB, at
    /// most [`READ_BUFFER`]): for input known to be small, such as a short
    /// ramdisk section, so that opening it does not allocate and zero
    /// buffers sized for gigabytes.
    pub fn with_buffer<R: Read + 'a>(r: R, capacity: usize) -> Result<Self> {
        let capacity = capacity.clamp(4096, READ_BUFFER);
        let mut buf = BufReader::with_capacity(capacity, r);
        let head = loop {
            match buf.fill_buf() {
                Ok(h) => break h,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CpioError::Read(e)),
            }
        };
        let inner: Box<dyn Read + 'a> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(BufReader::with_capacity(capacity, flate2::bufread::MultiGzDecoder::new(buf)))
        } else {
            Box::new(buf)
        };
        Ok(Reader { inner, offset: 0, current: None, done: false })
    }

    /// Open a ramdisk file.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader<'static>> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|source| CpioError::Host {
            path: path.to_path_buf(),
            what: "cannot open",
            source,
        })?;
        Reader::new(f)
    }

    fn read_exact(&mut self, buf: &mut [u8], what: impl FnOnce() -> String) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => return Err(CpioError::Truncated { offset: self.offset + got as u64, what: what() }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(CpioError::Truncated { offset: self.offset + got as u64, what: what() })
                }
                Err(e) => return Err(CpioError::Read(e)),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Skip what is left of the current entry's data and padding, checking its checksum.
    fn finish_entry(&mut self) -> Result<()> {
        if self.current.is_none() {
            return Ok(());
        }
        io::copy(&mut self.data(), &mut io::sink()).map_err(unwrap_cpio_error)?;
        let cur = self.current.take().expect("checked above");
        if let Some(expected) = cur.check {
            if expected != cur.sum {
                return Err(CpioError::Checksum { name: lossy(&cur.name), expected, actual: cur.sum });
            }
        }
        let mut pad = [0u8; 3];
        let name = cur.name;
        self.read_exact(&mut pad[..cur.pad as usize], || format!("the padding after {:?}", lossy(&name)))
    }

    /// The next entry, or `None` after the trailer. Unread data of the
    /// previous entry is skipped (and its checksum checked).
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        self.finish_entry()?;
        let offset = self.offset;
        let mut hdr = [0u8; HEADER_LEN];
        self.read_exact(&mut hdr, || "an entry header (the archive ends without TRAILER!!!)".into())?;
        let magic = &hdr[..6];
        let crc = if magic == MAGIC_NEWC {
            false
        } else if magic == MAGIC_NEWC_CRC {
            true
        } else {
            return Err(CpioError::BadMagic { offset, found: String::from_utf8_lossy(magic).into_owned() });
        };
        const FIELDS: [&str; 13] = [
            "ino",
            "mode",
            "uid",
            "gid",
            "nlink",
            "mtime",
            "filesize",
            "devmajor",
            "devminor",
            "rdevmajor",
            "rdevminor",
            "namesize",
            "check",
        ];
        let mut v = [0u32; 13];
        for (i, field) in FIELDS.iter().enumerate() {
            let raw = &hdr[6 + 8 * i..14 + 8 * i];
            v[i] = std::str::from_utf8(raw)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| CpioError::BadField {
                    offset,
                    field,
                    value: String::from_utf8_lossy(raw).into_owned(),
                })?;
        }
        let namesize = v[11];
        if namesize == 0 || namesize > MAX_NAME {
            return Err(CpioError::BadEntry {
                offset,
                reason: format!("name size {namesize} is out of range"),
            });
        }
        let mut name = vec![0u8; namesize as usize];
        self.read_exact(&mut name, || "an entry name".into())?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(CpioError::BadEntry {
                offset,
                reason: "the name is not NUL-terminated or contains a NUL".into(),
            });
        }
        let name_pad = (4 - (HEADER_LEN as u64 + namesize as u64) % 4) % 4;
        let mut pad = [0u8; 3];
        self.read_exact(&mut pad[..name_pad as usize], || {
            format!("the padding after the name {:?}", lossy(&name))
        })?;
        if name == TRAILER.as_bytes() {
            self.done = true;
            return Ok(None);
        }
        let size = v[6];
        let entry = Entry {
            name: name.clone(),
            ino: v[0],
            mode: v[1],
            uid: v[2],
            gid: v[3],
            nlink: v[4],
            mtime: v[5],
            size,
            devmajor: v[7],
            devminor: v[8],
            rdevmajor: v[9],
            rdevminor: v[10],
            check: v[12],
            offset,
        };
        self.current = Some(Current {
            name,
            remaining: size as u64,
            pad: (4 - size as u64 % 4) % 4,
            check: crc.then_some(v[12]),
            sum: 0,
        });
        Ok(Some(entry))
    }

    /// The current entry's unread data, as a stream.
    pub fn data(&mut self) -> DataReader<'_, 'a> {
        DataReader { reader: self }
    }

    /// SHA-256 of the current entry's unread data (all of it, if none was read).
    pub fn data_sha256(&mut self) -> Result<Digest> {
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut self.data(), &mut w).map_err(unwrap_cpio_error)?;
        self.finish_entry()?;
        Ok(w.finish().1)
    }

    /// The current entry's unread data in memory; an error past `limit` bytes
    /// (this is for small files such as `cmd` and `env`).
    pub fn data_to_vec(&mut self, limit: u64) -> Result<Vec<u8>> {
        let remaining = self.current.as_ref().map_or(0, |c| c.remaining);
        if remaining > limit {
            let name = self.current.as_ref().map(|c| lossy(&c.name)).unwrap_or_default();
            return Err(CpioError::BadEntry {
                offset: self.offset,
                reason: format!("{name:?} has {remaining} bytes, more than the {limit} asked for"),
            });
        }
        let mut out = Vec::with_capacity(remaining as usize);
        self.data().read_to_end(&mut out).map_err(unwrap_cpio_error)?;
        self.finish_entry()?;
        Ok(out)
    }
}

/// Reads one entry's data; errors are `io::Error`s wrapping a [`CpioError`].
pub struct DataReader<'r, 'a> {
    reader: &'r mut Reader<'a>,
}

impl Read for DataReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        let Some(cur) = r.current.as_mut() else { return Ok(0) };
        if cur.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(cur.remaining.min(usize::MAX as u64) as usize);
        let n = match r.inner.read(&mut buf[..want]) {
            Ok(0) => 0,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            let what = format!("the data of {:?} ({} bytes missing)", lossy(&cur.name), cur.remaining);
            return Err(io::Error::other(CpioError::Truncated { offset: r.offset, what }));
        }
        if cur.check.is_some() {
            cur.sum = buf[..n].iter().fold(cur.sum, |s, &b| s.wrapping_add(b as u32));
        }
        cur.remaining -= n as u64;
        r.offset += n as u64;
        Ok(n)
    }
}

fn unwrap_cpio_error(e: io::Error) -> CpioError {
    if e.get_ref().is_some_and(|inner| inner.is::<CpioError>()) {
        *e.into_inner().expect("checked").downcast::<CpioError>().expect("checked")
    } else {
        CpioError::Read(e)
    }
}

/// Read a whole archive: every entry with the SHA-256 of its data.
pub fn list<R: Read>(r: R) -> Result<Vec<(Entry, Digest)>> {
    let mut reader = Reader::new(r)?;
    let mut out = Vec::new();
    while let Some(e) = reader.next_entry()? {
        let d = reader.data_sha256()?;
        out.push((e, d));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(t: &Tree, epoch: u64) -> Vec<u8> {
        let mut out = Vec::new();
        t.write(&mut out, Epoch(epoch)).unwrap();
        out
    }

    #[test]
    fn rejects_bad_paths() {
        let mut t = Tree::new();
        for bad in ["", "/", "a//b", "a/", "./a", "a/../b", "..", "a\0b", "TRAILER!!!"] {
            assert!(matches!(t.add_dir(bad), Err(CpioError::InvalidPath { .. })), "{bad:?} accepted");
        }
        t.add_dir("/ok").unwrap();
        assert!(t.get("ok").is_some());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        for prefix in ["rootfs/", "/rootfs", "rootfs"] {
            let mut t = Tree::new();
            t.add_host_dir(prefix, dir.path()).unwrap();
            assert!(t.get("rootfs/f").is_some(), "{prefix}");
        }
        for root in ["", "/"] {
            let mut t = Tree::new();
            t.add_host_dir(root, dir.path()).unwrap();
            assert_eq!(t.len(), 1);
        }
        assert!(Tree::new().add_host_dir("a//b", dir.path()).is_err());
    }

    #[test]
    fn sorts_bytewise_and_creates_parents() {
        let mut t = Tree::new();
        t.add_file_bytes("a/b/c", "x", false).unwrap();
        t.add_file_bytes("a-c", "y", false).unwrap();
        t.add_dir("a/b").unwrap();
        let names: Vec<&[u8]> = t.iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec![&b"a"[..], b"a-c", b"a/b", b"a/b/c"]);
        assert_eq!(t.get("a"), Some(&Node::Dir));
    }

    #[test]
    fn replace_and_remove() {
        let mut t = Tree::new();
        t.add_file_bytes("d/f", "1", false).unwrap();
        t.add_file_bytes("d/f", "2", true).unwrap();
        assert!(matches!(t.get("d/f"), Some(Node::File { executable: true, .. })));
        t.add_symlink("d", "elsewhere").unwrap();
        assert!(t.get("d/f").is_none(), "children of a replaced directory survive");
        let err = t.add_file_bytes("d/g", "3", false).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        t.add_dir("e/f/g").unwrap();
        assert!(t.remove("e/f").unwrap());
        assert!(t.get("e/f/g").is_none() && t.get("e").is_some());
        assert!(!t.remove("nothing").unwrap());
    }

    #[test]
    fn writes_exact_header_bytes() {
        let mut t = Tree::new();
        t.add_file_bytes("hi", "hello", false).unwrap();
        let out = pack(&t, 1);
        let expected_header = "070701\
            00000001\
            000081A4\
            00000000\
            00000000\
            00000001\
            00000001\
            00000005\
            00000000\
            00000000\
            00000000\
            00000000\
            00000003\
            00000000";
        assert_eq!(&out[..110], expected_header.as_bytes());
        assert_eq!(&out[110..116], b"hi\0\0\0\0"); // 110 + 3 = 113 -> padded to 116
        assert_eq!(&out[116..124], b"hello\0\0\0");
        let trailer = format!("070701{}00000001{}0000000B00000000", "0".repeat(32), "0".repeat(48));
        assert_eq!(&out[124..234], trailer.as_bytes());
        assert_eq!(out.len(), 124 + 124, "trailer is 121 bytes padded to 124, nothing after");
        assert!(out.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn normalises_modes_links_and_nlink() {
        let mut t = Tree::new();
        t.add_dir("d/sub1").unwrap();
        t.add_dir("d/sub2/x").unwrap();
        t.add_file_bytes("d/run", "#!/bin/sh\n", true).unwrap();
        t.add_file_bytes("d/data", "abc", false).unwrap();
        t.add_hard_link("d/link", "d/data").unwrap();
        t.add_symlink("d/sym", "data").unwrap();
        t.add_char_device("dev/console", 5, 1).unwrap();
        t.add_fifo("d/pipe").unwrap();
        t.set_mode("d/run", 0o4750).unwrap();
        let out = pack(&t, 1_700_000_000);
        let entries = list(&out[..]).unwrap();
        let get = |n: &str| entries.iter().find(|(e, _)| e.name == n.as_bytes()).unwrap().0.clone();
        assert_eq!(get("d").nlink, 4);
        assert_eq!(get("d").mode, 0o40755);
        assert_eq!(get("d/sub2").nlink, 3);
        assert_eq!(get("d/run").mode, 0o104750);
        assert_eq!(get("d/data").mode, 0o100644);
        assert_eq!(get("d/sym").mode, 0o120777);
        assert_eq!(get("d/pipe").mode, 0o10644);
        let console = get("dev/console");
        assert_eq!((console.mode, console.rdevmajor, console.rdevminor), (0o20644, 5, 1));
        let (data, link) = (get("d/data"), get("d/link"));
        assert_eq!((data.ino, data.nlink, data.size), (link.ino, 2, 3));
        assert_eq!(link.size, 0, "data must be carried by the first name only");
        assert!(entries.iter().all(|(e, _)| e.mtime == 1_700_000_000 && e.uid == 0 && e.gid == 0));
        let mut inos: Vec<u32> = entries.iter().map(|(e, _)| e.ino).collect();
        inos.dedup();
        assert_eq!(inos, (1..=inos.len() as u32).collect::<Vec<_>>(), "inodes not sequential");
    }

    #[test]
    fn rejects_hard_links_with_different_modes_and_unknown_overrides() {
        let mut t = Tree::new();
        t.add_file_bytes("a", "x", false).unwrap();
        t.add_hard_link("b", "a").unwrap();
        t.set_mode("b", 0o600).unwrap();
        assert!(matches!(t.write(io::sink(), Epoch(0)), Err(CpioError::LinkModes { .. })));
        t.set_mode("a", 0o600).unwrap();
        t.write(io::sink(), Epoch(0)).unwrap();
        t.set_mode("zzz", 0o600).unwrap();
        assert!(matches!(t.write(io::sink(), Epoch(0)), Err(CpioError::UnknownOverride { .. })));
        assert!(matches!(t.set_mode("a", 0o10644), Err(CpioError::BadMode { .. })));
        assert!(matches!(t.add_hard_link("c", "nothing"), Err(CpioError::LinkTarget { .. })));
        assert!(matches!(Tree::new().write(io::sink(), Epoch(1 << 32)), Err(CpioError::EpochRange(_))));
    }

    #[test]
    fn reader_round_trips_plain_and_gzip() {
        let mut t = Tree::new();
        t.add_file_bytes("cmd", "/bin/hello\n", false).unwrap();
        t.add_file_bytes("big", vec![7u8; 100_003], false).unwrap();
        let plain = pack(&t, 0);
        let (gz, _) = crate::gzip::compress(&plain[..], Vec::new()).unwrap();
        for input in [&plain, &gz] {
            let mut r = Reader::new(&input[..]).unwrap();
            let big = r.next_entry().unwrap().unwrap();
            assert_eq!((big.name_lossy().as_ref(), big.size, big.kind()), ("big", 100_003, Kind::File));
            // Not reading its data: next_entry skips it.
            let cmd = r.next_entry().unwrap().unwrap();
            assert_eq!(cmd.name, b"cmd");
            assert!(r.data_to_vec(4).is_err());
            assert_eq!(r.data_to_vec(1024).unwrap(), b"/bin/hello\n");
            assert!(r.next_entry().unwrap().is_none());
            assert!(r.next_entry().unwrap().is_none());
        }
        let l = list(&gz[..]).unwrap();
        assert_eq!(l[0].1, Digest::of(&[7u8; 100_003]));
    }

    #[test]
    fn reader_errors_are_clear() {
        let mut t = Tree::new();
        t.add_file_bytes("f", vec![1u8; 1000], false).unwrap();
        let out = pack(&t, 0);
        // Truncated in the data, in a header, and before the trailer.
        for cut in [500, 50, out.len() - 124] {
            let err = list(&out[..cut]).unwrap_err();
            assert!(matches!(err, CpioError::Truncated { .. }), "cut {cut}: {err}");
        }
        let (gz, _) = crate::gzip::compress(&out[..], Vec::new()).unwrap();
        let err = list(&gz[..gz.len() - 20]).unwrap_err();
        assert!(matches!(err, CpioError::Truncated { .. } | CpioError::Read(_)), "{err}");
        let mut bad = out.clone();
        bad[5] = b'7';
        let err = list(&bad[..]).unwrap_err();
        assert!(err.to_string().contains("bad magic \"070707\" at offset 0"), "{err}");
        let mut bad = out.clone();
        bad[20] = b'Z';
        assert!(matches!(list(&bad[..]).unwrap_err(), CpioError::BadField { field: "mode", .. }));
    }

    #[test]
    fn reader_checks_070702_checksums() {
        let mut t = Tree::new();
        t.add_file_bytes("f", vec![200u8; 10], false).unwrap();
        let mut out = pack(&t, 0);
        out[5] = b'2';
        let sum = format!("{:08X}", 2000);
        out[102..110].copy_from_slice(sum.as_bytes());
        let l = list(&out[..]).unwrap();
        assert_eq!(l[0].0.check, 2000);
        out[102..110].copy_from_slice(b"00000001");
        assert!(matches!(list(&out[..]).unwrap_err(), CpioError::Checksum { expected: 1, actual: 2000, .. }));
    }

    #[test]
    fn merge_overlays_and_keeps_links_apart() {
        let mut base = Tree::new();
        base.add_file_bytes("etc/a", "base", false).unwrap();
        base.add_hard_link("etc/a2", "etc/a").unwrap();
        let mut top = Tree::new();
        top.add_file_bytes("etc/b", "top", true).unwrap();
        top.add_hard_link("etc/b2", "etc/b").unwrap();
        top.add_file_bytes("etc/a", "replaced", false).unwrap();
        top.set_mode("etc/b", 0o700).unwrap();
        top.set_mode("etc/b2", 0o700).unwrap();
        base.merge(top).unwrap();
        let entries = list(&pack(&base, 0)[..]).unwrap();
        let get = |n: &str| entries.iter().find(|(e, _)| e.name == n.as_bytes()).unwrap().clone();
        assert_eq!(get("etc/a").1, Digest::of(b"replaced"));
        assert_eq!(get("etc/a").0.nlink, 1, "etc/a was replaced: it is no longer linked to etc/a2");
        assert_eq!(get("etc/a2").0.size, 4);
        let (b, b2) = (get("etc/b").0, get("etc/b2").0);
        assert_eq!((b.ino, b.nlink, b.mode), (b2.ino, 2, 0o100700));
    }

    #[test]
    fn host_files_over_4_gib_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("sparse");
        File::create(&big).unwrap().set_len(1 << 32).unwrap();
        let t = Tree::from_dir(dir.path()).unwrap();
        let err = t.write(io::sink(), Epoch(0)).unwrap_err();
        assert!(matches!(err, CpioError::TooLarge { size: 4294967296, .. }), "{err}");
        assert!(err.to_string().contains("sparse"), "{err}");
    }

    /// An output lending `room` bytes at a time, so a file's content takes
    /// several reads, or exactly fills the room, or leaves room to spare.
    struct Narrow {
        out: Vec<u8>,
        room: Vec<u8>,
    }

    impl Write for Narrow {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.out.write(data)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ArchiveOut for Narrow {
        fn spare(&mut self) -> io::Result<&mut [u8]> {
            Ok(&mut self.room)
        }
        fn commit(&mut self, n: usize) -> io::Result<()> {
            self.out.extend_from_slice(&self.room[..n]);
            Ok(())
        }
    }

    fn copy_with_room(path: &Path, room: usize) -> Result<Vec<u8>> {
        let mut f = File::open(path).unwrap();
        let size = f.metadata().unwrap().len();
        let mut w = CountingWriter { inner: Narrow { out: Vec::new(), room: vec![0; room] }, count: 0 };
        copy_host_file(&mut w, &mut f, path, size, &Progress::hidden())?;
        assert_eq!(w.count, w.inner.out.len() as u64);
        Ok(w.inner.out)
    }

    /// Content read straight into the output's room: whole, whatever the
    /// room; a file whose reads disagree with its size is refused, whether
    /// it has more (procfs: size 0) or less (sysfs: size 4096) to read.
    #[test]
    fn host_files_that_change_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let (file, empty) = (dir.path().join("f"), dir.path().join("empty"));
        std::fs::write(&file, &content).unwrap();
        std::fs::write(&empty, b"").unwrap();
        let grows = Path::new("/proc/self/status");
        let shrinks = Path::new("/sys/kernel/uevent_seqnum");
        assert_eq!(std::fs::metadata(grows).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(shrinks).unwrap().len(), 4096);
        for room in [1, 3, 4096, 9_999, 10_000, 10_001, 256 * 1024] {
            assert_eq!(copy_with_room(&file, room).unwrap(), content, "room {room}");
            assert_eq!(copy_with_room(&empty, room).unwrap(), b"", "room {room}");
            for path in [grows, shrinks] {
                let err = copy_with_room(path, room).unwrap_err();
                assert!(matches!(err, CpioError::Changed { .. }), "{}, room {room}: {err}", path.display());
                assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
            }
        }
    }

    #[test]
    fn non_utf8_names_are_kept_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
        std::fs::write(dir.path().join(name), "x").unwrap();
        let t = Tree::from_dir(dir.path()).unwrap();
        let entries = list(&pack(&t, 0)[..]).unwrap();
        assert_eq!(entries[0].0.name, b"caf\xe9");
    }

    /// A host tree where bytewise order is not depth-first order, with hard
    /// links (within the tree, across directories, and to a name outside
    /// it), symlinks, empty directories, a fifo, a socket, non-UTF-8 names
    /// and deep nesting.
    fn awkward_host_tree(root: &Path) {
        use std::os::unix::fs::symlink;
        let d = root.join("tree");
        for sub in ["a/c", "a-b/x", "a.b", "a0/empty", "z/y/empty", " lead"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut deep = d.join("deep");
        for i in 0..40 {
            deep.push(format!("{}", i % 3));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("leaf"), "bottom").unwrap();
        std::fs::write(d.join("a/c/f"), "linked").unwrap();
        std::fs::hard_link(d.join("a/c/f"), d.join("a-b/x/f2")).unwrap();
        std::fs::hard_link(d.join("a/c/f"), d.join("z/f3")).unwrap();
        std::fs::write(root.join("outside"), "half").unwrap();
        std::fs::hard_link(root.join("outside"), d.join("a.b/inside")).unwrap();
        std::fs::write(d.join("a-b/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.join("a-b/run"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        symlink("a/c/f", d.join("a/link")).unwrap();
        symlink("../nowhere", d.join("dangling")).unwrap();
        for name in [&b"caf\xe9"[..], b"\xff", b"a!", b"A", b"a/c/\x01"] {
            std::fs::write(d.join(OsStr::from_bytes(name)), name).unwrap();
        }
        let fifo = std::ffi::CString::new(d.join("a/pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let _socket = std::os::unix::net::UnixListener::bind(d.join("a/sock")).unwrap();
    }

    #[test]
    fn streaming_walk_writes_the_tree_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        awkward_host_tree(tmp.path());
        let dir = tmp.path().join("tree");
        for prefix in ["", "rootfs", "x/y/"] {
            let mut t = Tree::new();
            t.add_host_dir(prefix, &dir).unwrap();
            let mut want = Vec::new();
            let want_summary = t.write(&mut want, Epoch(1_700_000_000)).unwrap();
            let mut got = Vec::new();
            let got_summary =
                write_host_dir(prefix, &dir, &mut got, Epoch(1_700_000_000), &Progress::hidden()).unwrap();
            assert_eq!(got_summary, want_summary, "prefix {prefix:?}");
            if got != want {
                let names = |b: &[u8]| list(b).unwrap().into_iter().map(|(e, _)| e).collect::<Vec<_>>();
                assert_eq!(names(&got), names(&want), "prefix {prefix:?}");
                panic!("prefix {prefix:?}: same entries, different bytes");
            }
        }
        // The tree really is awkward: order is not depth-first, links are shared.
        let entries = list(&write_tree(&dir)[..]).unwrap();
        let names: Vec<&[u8]> = entries.iter().map(|(e, _)| e.name.as_slice()).collect();
        let pos = |n: &[u8]| names.iter().position(|x| *x == n).unwrap();
        assert!(pos(b"a") < pos(b"a!") && pos(b"a!") < pos(b"a-b/x") && pos(b"a-b/x/f2") < pos(b"a/c"));
        let f = &entries[pos(b"a-b/x/f2")].0;
        assert_eq!((f.nlink, f.size), (3, 6), "first name of a 3-name group carries the data");
        assert_eq!(entries[pos(b"a.b/inside")].0.nlink, 1, "its other name is outside the tree");
        assert!(!names.contains(&&b"a/sock"[..]));
    }

    fn write_tree(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_host_dir("", dir, &mut out, Epoch(0), &Progress::hidden()).unwrap();
        out
    }

    #[test]
    fn streaming_walk_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let err = write_host_dir("", tmp.path().join("missing"), io::sink(), Epoch(0), &Progress::hidden())
            .unwrap_err();
        assert!(
            err.to_string().contains("missing") && err.to_string().contains("cannot read directory"),
            "{err}"
        );
        let err = write_host_dir("../up", tmp.path(), io::sink(), Epoch(0), &Progress::hidden()).unwrap_err();
        assert!(matches!(err, CpioError::InvalidPath { .. }), "{err}");
        let err =
            write_host_dir("", tmp.path(), io::sink(), Epoch(1 << 32), &Progress::hidden()).unwrap_err();
        assert!(matches!(err, CpioError::EpochRange(_)), "{err}");
    }

    #[test]
    fn splits_glibc_dev_numbers() {
        assert_eq!(split_dev(0x0501), (5, 1));
        assert_eq!(split_dev(libc::makedev(259, 70000)), (259, 70000));
    }
}
