//! The tree being built: its root descriptor, the cached descriptors of the
//! current parent chain, the per-layer pass (decompression thread, tar
//! parsing, limits), whiteouts, removals, and the directory metadata
//! applied after the last layer.
//!
//! Not for: creating one entry (see [`super::entry`]).
//! Invariants: no path is ever resolved through a symlink (parents are
//! walked with `O_NOFOLLOW` one component at a time); the descriptor cache
//! is cleared whenever anything is removed, so it never names a replaced
//! directory.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use std::rc::Rc;
use std::sync::mpsc::sync_channel;

use anyhow::{Context, Result};

use super::error::{io_kind, EntryResult, ErrorKind};
use super::limits::{Budget, LayerBudget, LimitHit};
use super::reader::{pick_compression, pump, ChannelReader, CHUNKS_IN_FLIGHT};
use super::sys::{
    chmod_fd, chown_fd, cstring, file_type, ino, is_dir, lstat_at, mkdir_at, open_dir, open_dir_at,
    set_mtime_fd, unlink_at,
};
use super::{ApplyOptions, ApplySummary, Compression, DeviceNode, LayerSource};
use crate::digest::HashingReader;
use crate::fsutil::read_full;
use crate::oci::store::BlobError;

/// Buffer used to copy one file's contents.
pub(super) const COPY_BUF: usize = 256 << 10;
/// Notes kept in the summary; further ones are only counted.
pub(super) const MAX_NOTES: usize = 64;

/// Split a tar path into its components, rejecting absolute paths and `..`.
/// `.` components and empty ones (`a//b`, a trailing `/`) are dropped.
pub(super) fn components(path: &[u8]) -> std::result::Result<Vec<&[u8]>, ErrorKind> {
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

pub(super) fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

pub(super) fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Metadata of a directory entry, applied after the last layer.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirMeta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: u64,
}

/// The tree being built: a descriptor of its root, a cache of the
/// directories of the current entry's parent chain, and bookkeeping.
pub(super) struct Tree<'o> {
    pub(super) root_path: PathBuf,
    pub(super) root: Rc<OwnedFd>,
    /// `stack[i]` is an open descriptor of the directory named by the first
    /// `i + 1` components of the last parent walked. Cleared whenever anything
    /// is removed, so it never names a directory that has been replaced.
    pub(super) stack: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    pub(super) opts: &'o ApplyOptions,
    /// Paths (and all their ancestors) provided by the layer being applied:
    /// whiteouts never remove them.
    pub(super) touched: HashSet<Vec<u8>>,
    /// Directory metadata by path, applied at the end (children first).
    pub(super) dirs: BTreeMap<Vec<u8>, DirMeta>,
    pub(super) entries: u64,
    /// Which byte limit the stream of the layer being applied ran into.
    pub(super) tar_bytes_limit_hit: Rc<Cell<Option<LimitHit>>>,
    pub(super) file_bytes: u64,
    pub(super) tar_bytes: u64,
    /// The layer being applied: its blob size, its byte allowance
    /// (`max(compressed * max_layer_expansion, layer_floor)`), and the bytes
    /// it has written to files.
    pub(super) layer: LayerBudget,
    pub(super) buf: Vec<u8>,
    /// Skipped device nodes by path, each with the inode of the empty file
    /// standing in for it until the last layer is applied.
    pub(super) stand_ins: BTreeMap<Vec<u8>, (DeviceNode, u64)>,
}

impl<'o> Tree<'o> {
    pub(super) fn open(root_path: &Path, opts: &'o ApplyOptions) -> Result<Self> {
        let c = CString::new(root_path.as_os_str().as_bytes())
            .with_context(|| format!("{}: path contains a NUL byte", root_path.display()))?;
        let fd = open_dir(&c).with_context(|| format!("opening {}", root_path.display()))?;
        Ok(Tree {
            root_path: root_path.to_path_buf(),
            root: Rc::new(fd),
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
    pub(super) fn apply_layer(&mut self, layer: &LayerSource, summary: &mut ApplySummary) -> EntryResult<()> {
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
        let n = read_full(&mut src, &mut magic).map_err(|e| (None, io_kind("reading the blob")(e)))?;
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

    pub(super) fn apply_tar(
        &mut self,
        reader: Budget<ChannelReader>,
        summary: &mut ApplySummary,
    ) -> EntryResult<()> {
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
    pub(super) fn malformed(&self, e: io::Error, context: Option<String>) -> ErrorKind {
        match self.tar_bytes_limit_hit.get() {
            Some(LimitHit::Image) => ErrorKind::TooLarge { limit: self.opts.max_total_bytes },
            Some(LimitHit::Layer { reached }) => self.layer_too_large(reached),
            None => ErrorKind::Malformed(format!("{}{e}", context.unwrap_or_default())),
        }
    }

    pub(super) fn layer_too_large(&self, reached: u64) -> ErrorKind {
        ErrorKind::LayerTooLarge {
            limit: self.layer.allowance,
            reached,
            compressed: self.layer.compressed,
            ratio: self.opts.max_layer_expansion,
        }
    }

    pub(super) fn note(summary: &mut ApplySummary, s: String) {
        if summary.notes.len() < MAX_NOTES {
            summary.notes.push(s);
        }
    }

    /// Something at `rel` was removed or replaced: the stand-ins at or below
    /// it are gone. Tracked here rather than guessed from inode numbers at
    /// the end, since a file created after an unlink may get the same inode.
    pub(super) fn forget_stand_ins(&mut self, rel: &[u8]) {
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
    pub(super) fn settle_stand_ins(&mut self, summary: &mut ApplySummary) -> EntryResult<()> {
        for (rel, (node, inode)) in std::mem::take(&mut self.stand_ins) {
            let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            let (name, parent) = comps.split_last().expect("non-empty");
            let Ok(pfd) = self.parent(parent, false) else { continue };
            let pfd = pfd.as_fd();
            let name = cstring(name).map_err(|k| (Some(show(&rel)), k))?;
            let st =
                lstat_at(pfd, &name).map_err(|e| (Some(show(&rel)), io_kind("inspecting a stand-in")(e)))?;
            if st.is_some_and(|st| file_type(&st) == FileType::RegularFile && ino(&st) == inode) {
                unlink_at(pfd, &name).map_err(|e| (Some(show(&rel)), io_kind("removing a stand-in")(e)))?;
                summary.skipped_device_nodes.push(node);
            }
        }
        self.stack.clear();
        Ok(())
    }

    pub(super) fn mkdir(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
    ) -> std::result::Result<(), ErrorKind> {
        mkdir_at(pfd, name).map_err(io_kind("creating the directory"))
    }

    /// Remove what is at `rel` (a directory recursively), forgetting cached
    /// descriptors and pending directory metadata beneath it.
    pub(super) fn remove(
        &mut self,
        pfd: BorrowedFd<'_>,
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
            unlink_at(pfd, name).map_err(io_kind("removing the entry it replaces"))?;
            self.dirs.remove(rel);
        }
        Ok(())
    }

    pub(super) fn forget_dirs(&mut self, rel: &[u8]) {
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
    pub(super) fn parent(
        &mut self,
        comps: &[&[u8]],
        create: bool,
    ) -> std::result::Result<Rc<OwnedFd>, ErrorKind> {
        let mut k = 0;
        while k < self.stack.len() && k < comps.len() && self.stack[k].0 == comps[k] {
            k += 1;
        }
        self.stack.truncate(k);
        for i in k..comps.len() {
            let dir = if i == 0 { self.root.clone() } else { self.stack[i - 1].1.clone() };
            let dirfd = dir.as_fd();
            let name = cstring(comps[i])?;
            let fd = match open_dir_at(dirfd, &name) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    match mkdir_at(dirfd, &name) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(ErrorKind::Io { op: "creating a parent directory", err: e }),
                    }
                    open_dir_at(dirfd, &name).map_err(io_kind("opening a parent directory"))?
                }
                Err(e) => {
                    let shown = show(&join(&comps[..=i]));
                    return Err(match lstat_at(dirfd, &name) {
                        Ok(Some(st)) if file_type(&st) == FileType::Symlink => {
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
            self.stack.push((comps[i].to_vec(), Rc::new(fd)));
        }
        Ok(match self.stack.last() {
            Some((_, fd)) if !comps.is_empty() => fd.clone(),
            _ => self.root.clone(),
        })
    }

    /// `.wh.NAME`: remove `path` as lower layers left it. What this layer
    /// itself put there stays.
    pub(super) fn whiteout(&mut self, path: &[&[u8]]) -> std::result::Result<(), ErrorKind> {
        let rel = join(path);
        let (name, parent) = path.split_last().expect("whiteout names an entry");
        let pfd = match self.parent(parent, false) {
            Ok(fd) => fd,
            // Nothing below a missing directory to hide.
            Err(ErrorKind::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(k) => return Err(k),
        };
        let pfd = pfd.as_fd();
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
    pub(super) fn opaque(&mut self, dir: &[&[u8]]) -> std::result::Result<(), ErrorKind> {
        match self.parent(dir, false) {
            Ok(_) => {}
            Err(ErrorKind::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(k) => return Err(k),
        }
        self.clear_untouched(&join(dir))
    }

    /// Remove every entry below the directory `rel` that this layer did not
    /// provide, descending into the directories it did.
    pub(super) fn clear_untouched(&mut self, rel: &[u8]) -> std::result::Result<(), ErrorKind> {
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
    pub(super) fn finish(&mut self) -> EntryResult<()> {
        self.stack.clear();
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, m) in dirs.iter().rev() {
            let shown = || Some(show(rel));
            let fd = if rel.is_empty() {
                self.root.clone()
            } else {
                let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
                let (name, parent) = comps.split_last().expect("non-empty");
                let pfd = match self.parent(parent, false) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                };
                let name = cstring(name).map_err(|k| (shown(), k))?;
                match open_dir_at(pfd.as_fd(), &name) {
                    Ok(fd) => Rc::new(fd),
                    Err(_) => continue,
                }
            };
            let fd = fd.as_fd();
            if self.opts.same_owner {
                chown_fd(fd, m.uid, m.gid).map_err(|e| (shown(), io_kind("setting the owner")(e)))?;
            }
            chmod_fd(fd, self.mode(m.mode, true)).map_err(|e| (shown(), io_kind("setting the mode")(e)))?;
            set_mtime_fd(fd, m.mtime).map_err(|e| (shown(), io_kind("setting the mtime")(e)))?;
        }
        if !dirs.contains_key(&Vec::new()) {
            // No entry for the root: the usual 0755 rather than the temporary
            // directory's 0700.
            chmod_fd(self.root.as_fd(), 0o755)
                .map_err(|e| (Some(".".into()), io_kind("setting the mode")(e)))?;
        }
        self.stack.clear();
        Ok(())
    }
}
