//! Extraction of one tar entry into the tree: whiteouts, directories,
//! files, symlinks, hard links, device nodes and fifos, with their owner,
//! mode, extended attributes and mtime.
//!
//! Not for: the walk to the entry's parent or removals (see [`super::tree`]).
//! Invariants: every node is created relative to a parent descriptor and
//! never through a symlink; files are created anew (`O_EXCL`), so replacing
//! one never writes through a hard link into another.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::FileType;
use tar::EntryType;

use super::error::{io_kind, ErrorKind};
use super::sys::{
    chmod_at, chmod_fd, chown_at, chown_fd, create_file_at, cstring, fsetxattr, is_dir, link_at, lsetxattr,
    lstat_at, mknod_at, open_dir_at, set_mtime_at, set_mtime_fd, symlink_at, unlink_at,
};
use super::tree::{components, join, show, DirMeta, Tree};
use super::{ApplySummary, DeviceNode, DevicePolicy};

/// Metadata common to every entry.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: u64,
    pub(super) xattrs: Vec<(CString, Vec<u8>)>,
}

impl<'o> Tree<'o> {
    /// Apply one entry at `path`: a whiteout, the image root's metadata, a
    /// directory created or updated in place, or a node created anew.
    pub(super) fn apply_entry<R: Read>(
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
        if let Some(done) = self.whiteout_entry(path, &comps, summary) {
            return done;
        }
        let meta = self.entry_meta(entry)?;
        if comps.is_empty() {
            return self.root_entry(etype, &meta, summary);
        }
        let rel = join(&comps);
        self.mark_touched(&comps, &rel);
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
        self.admit(path, etype, entry.size(), summary)?;
        if let Some(target) = link_target {
            return self.hard_link(&rel, parent, &name, &target, summary);
        }

        let pfd = self.parent(parent, true)?;
        let pfd = pfd.as_fd();
        let existing = lstat_at(pfd, &name).map_err(io_kind("inspecting the existing entry"))?;
        if etype.is_dir() {
            return self.directory(pfd, &name, rel, existing.map(|st| is_dir(&st)), &meta, summary);
        }
        // Everything else is created anew.
        if let Some(st) = existing {
            self.remove(pfd, &name, &rel, is_dir(&st))?;
        }
        let pfd = self.parent(parent, true)?;
        self.create_node(pfd.as_fd(), &name, rel, etype, entry, &meta, summary)
    }

    /// A whiteout entry (`.wh.NAME`, `.wh..wh..opq`, AUFS bookkeeping):
    /// `Some` with its outcome, `None` when the entry is not a whiteout.
    fn whiteout_entry(
        &mut self,
        path: &[u8],
        comps: &[&[u8]],
        summary: &mut ApplySummary,
    ) -> Option<std::result::Result<(), ErrorKind>> {
        let (last, dir) = comps.split_last()?;
        let name = last.strip_prefix(b".wh.")?;
        summary.whiteouts += 1;
        if name == b".wh..opq" {
            return Some(self.opaque(dir));
        }
        if name.starts_with(b".wh.") {
            // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
            Self::note(summary, format!("skipped AUFS metadata entry {}", show(path)));
            return Some(Ok(()));
        }
        if name.is_empty() || name == b"." || name == b".." {
            return Some(Err(ErrorKind::BadWhiteout(show(name))));
        }
        let mut target = dir.to_vec();
        target.push(name);
        Some(self.whiteout(&target))
    }

    /// The owner, mode, mtime and (when wanted) xattrs the header gives.
    fn entry_meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> std::result::Result<Meta, ErrorKind> {
        let hdr = entry.header();
        Ok(Meta {
            mode: hdr.mode().map_err(|e| ErrorKind::Malformed(format!("mode field: {e}")))? & 0o7777,
            uid: id32(hdr.uid(), "uid")?,
            gid: id32(hdr.gid(), "gid")?,
            mtime: hdr.mtime().unwrap_or(0),
            xattrs: if self.opts.xattrs { xattrs(entry)? } else { Vec::new() },
        })
    }

    /// An entry for the image root itself: only a directory, whose metadata
    /// is applied at the end.
    fn root_entry(
        &mut self,
        etype: EntryType,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        if !etype.is_dir() {
            return Err(ErrorKind::UnsupportedType(format!(
                "{etype:?} for the image root (expected a directory)"
            )));
        }
        self.dirs
            .insert(Vec::new(), DirMeta { mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: meta.mtime });
        summary.dirs += 1;
        Ok(())
    }

    /// Record `rel` and its ancestors as provided by this layer.
    fn mark_touched(&mut self, comps: &[&[u8]], rel: &[u8]) {
        let mut end = 0;
        for (i, c) in comps.iter().enumerate() {
            end += c.len() + usize::from(i > 0);
            if !self.touched.contains(&rel[..end]) {
                self.touched.insert(rel[..end].to_vec());
            }
        }
    }

    /// Refuse, before anything is written, a device node the policy rejects
    /// (noting one it skips) and a file larger than what the limits leave.
    fn admit(
        &mut self,
        path: &[u8],
        etype: EntryType,
        size: u64,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
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
        if is_regular(etype) {
            if size > self.opts.max_total_bytes.saturating_sub(self.file_bytes) {
                return Err(ErrorKind::TooLarge { limit: self.opts.max_total_bytes });
            }
            if size > self.layer.allowance.saturating_sub(self.layer.file_bytes) {
                return Err(self.layer_too_large(self.layer.file_bytes.saturating_add(size)));
            }
        }
        Ok(())
    }

    /// A directory entry: keep an existing directory (its contents stay),
    /// replace anything else; metadata is applied after the last layer.
    /// `existing` says what is there: `Some(true)` a directory.
    fn directory(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        rel: Vec<u8>,
        existing: Option<bool>,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        match existing {
            Some(true) => {}
            Some(false) => {
                unlink_at(pfd, name).map_err(io_kind("removing the entry it replaces"))?;
                self.forget_stand_ins(&rel);
                self.mkdir(pfd, name)?;
            }
            None => self.mkdir(pfd, name)?,
        }
        if !meta.xattrs.is_empty() {
            let fd = open_dir_at(pfd, name).map_err(io_kind("opening the directory"))?;
            self.set_xattrs_fd(fd.as_fd(), &meta.xattrs, summary)?;
        }
        self.dirs.insert(rel, DirMeta { mode: meta.mode, uid: meta.uid, gid: meta.gid, mtime: meta.mtime });
        summary.dirs += 1;
        Ok(())
    }

    /// Create a file, symlink, device node or fifo at `name` in `pfd`, where
    /// nothing is now.
    #[allow(clippy::too_many_arguments)]
    fn create_node<R: Read>(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        rel: Vec<u8>,
        etype: EntryType,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        match etype {
            t if is_regular(t) => {
                self.write_file(pfd, name, entry, meta, summary)?;
                summary.files += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ErrorKind::Malformed("symlink without a target".into()))?;
                let ctarget = cstring(&target)?;
                symlink_at(&ctarget, pfd, name).map_err(io_kind("creating the symlink"))?;
                self.finish_node(pfd, name, meta, false, summary)?;
                summary.symlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(pfd, name, rel, etype, entry.header(), meta, summary)?
            }
            other => return Err(ErrorKind::UnsupportedType(format!("{other:?}"))),
        }
        Ok(())
    }

    /// A device node or fifo; a device node [`DevicePolicy::Skip`] leaves
    /// out gets a stand-in instead.
    #[allow(clippy::too_many_arguments)]
    fn special(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        rel: Vec<u8>,
        etype: EntryType,
        hdr: &tar::Header,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        let (kind, dev) = if etype == EntryType::Fifo {
            (FileType::Fifo, 0)
        } else {
            let major = device(hdr.device_major(), "devmajor")?;
            let minor = device(hdr.device_minor(), "devminor")?;
            if self.opts.devices == DevicePolicy::Skip {
                let node = DeviceNode { path: rel, char: etype == EntryType::Char, major, minor };
                return self.stand_in(pfd, name, node);
            }
            let kind =
                if etype == EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
            (kind, rustix::fs::makedev(major, minor))
        };
        mknod_at(pfd, name, kind, dev).map_err(io_kind("creating the device node or fifo"))?;
        self.finish_node(pfd, name, meta, true, summary)?;
        if etype == EntryType::Fifo {
            summary.fifos += 1;
        } else {
            summary.devices += 1;
        }
        Ok(())
    }

    /// An empty file where a skipped device node goes, so that later layers
    /// replace or remove it exactly as they would the node.
    pub(super) fn stand_in(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        node: DeviceNode,
    ) -> std::result::Result<(), ErrorKind> {
        let file =
            create_file_at(pfd, name).map_err(io_kind("creating the stand-in of a skipped device node"))?;
        let ino =
            std::os::unix::fs::MetadataExt::ino(&file.metadata().map_err(io_kind("inspecting a stand-in"))?);
        self.stand_ins.insert(node.path.clone(), (node, ino));
        Ok(())
    }

    pub(super) fn write_file<R: Read>(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        let mut file = create_file_at(pfd, name).map_err(io_kind("creating the file"))?;
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
        let fd = file.as_fd();
        if self.opts.same_owner {
            chown_fd(fd, meta.uid, meta.gid).map_err(io_kind("setting the owner"))?;
        }
        self.set_xattrs_fd(fd, &meta.xattrs, summary)?;
        chmod_fd(fd, self.mode(meta.mode, false)).map_err(io_kind("setting the mode"))?;
        set_mtime_fd(fd, meta.mtime).map_err(io_kind("setting the mtime"))?;
        Ok(())
    }

    /// The mode to set. Without `same_owner` the set-id bits go, and the
    /// owner (the caller) keeps read access to files and full access to
    /// directories, so the tree can always be read and removed again.
    pub(super) fn mode(&self, mode: u32, dir: bool) -> u32 {
        if self.opts.same_owner {
            mode
        } else {
            mode & 0o1777 | if dir { 0o700 } else { 0o400 }
        }
    }

    /// Owner, xattrs, mode (not for symlinks) and mtime of a node just created
    /// at `name` in `pfd`, never following it.
    pub(super) fn finish_node(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CString,
        meta: &Meta,
        chmod: bool,
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        if self.opts.same_owner {
            chown_at(pfd, name, meta.uid, meta.gid).map_err(io_kind("setting the owner"))?;
        }
        if !meta.xattrs.is_empty() {
            // Through /proc so the final component is not followed.
            let mut p = format!("/proc/self/fd/{}/", pfd.as_raw_fd()).into_bytes();
            p.extend_from_slice(name.as_bytes());
            let p = cstring(&p)?;
            for (k, v) in &meta.xattrs {
                xattr_result(lsetxattr(&p, k, v), k, summary)?;
            }
        }
        if chmod {
            chmod_at(pfd, name, self.mode(meta.mode, false)).map_err(io_kind("setting the mode"))?;
        }
        set_mtime_at(pfd, name, meta.mtime).map_err(io_kind("setting the mtime"))?;
        Ok(())
    }

    pub(super) fn set_xattrs_fd(
        &self,
        fd: BorrowedFd<'_>,
        xattrs: &[(CString, Vec<u8>)],
        summary: &mut ApplySummary,
    ) -> std::result::Result<(), ErrorKind> {
        for (k, v) in xattrs {
            xattr_result(fsetxattr(fd, k, v), k, summary)?;
        }
        Ok(())
    }

    pub(super) fn hard_link(
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
            return match lstat_at(pfd.as_fd(), name) {
                Ok(Some(_)) => Ok(()),
                _ => Err(bad("links to itself and does not exist".into())),
            };
        }
        let tname = cstring(tname)?;
        // Held across the walks below, which may drop it from the cache.
        let tfd = self.parent(tparent, false).map_err(|k| bad(k.to_string()))?;
        match lstat_at(tfd.as_fd(), &tname).map_err(io_kind("inspecting the link target"))? {
            None => return Err(bad("does not exist in this or an earlier layer".into())),
            Some(st) if is_dir(&st) => return Err(bad("is a directory".into())),
            Some(_) => {}
        }
        let pfd = self.parent(parent, true)?;
        let pfd = pfd.as_fd();
        if let Some(st) = lstat_at(pfd, name).map_err(io_kind("inspecting the existing entry"))? {
            self.remove(pfd, name, rel, is_dir(&st))?;
        }
        let pfd = self.parent(parent, true)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
        link_at(tfd.as_fd(), &tname, pfd.as_fd(), name).map_err(io_kind("creating the hard link"))?;
        summary.hardlinks += 1;
        Ok(())
    }
}

pub(super) fn id32(v: io::Result<u64>, field: &str) -> std::result::Result<u32, ErrorKind> {
    let v = v.map_err(|e| ErrorKind::Malformed(format!("{field} field: {e}")))?;
    u32::try_from(v).map_err(|_| ErrorKind::Malformed(format!("{field} {v} does not fit in 32 bits")))
}

pub(super) fn device(v: io::Result<Option<u32>>, field: &str) -> std::result::Result<u32, ErrorKind> {
    match v {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(ErrorKind::Malformed(format!("device entry without a {field} field"))),
        Err(e) => Err(ErrorKind::Malformed(format!("{field} field: {e}"))),
    }
}

pub(super) fn xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> std::result::Result<Vec<(CString, Vec<u8>)>, ErrorKind> {
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

pub(super) fn xattr_result(
    r: io::Result<()>,
    key: &CString,
    summary: &mut ApplySummary,
) -> std::result::Result<(), ErrorKind> {
    let Err(e) = r else { return Ok(()) };
    match e.raw_os_error() {
        Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOENT) => {
            summary.skipped_xattrs += 1;
            Tree::note(summary, format!("skipped xattr {}: {e}", key.to_string_lossy()));
            Ok(())
        }
        _ => Err(ErrorKind::Io { op: "setting an extended attribute", err: e }),
    }
}

/// A tar entry type whose contents are a regular file's.
fn is_regular(t: EntryType) -> bool {
    t.is_file() || t == EntryType::Continuous || t.is_gnu_sparse()
}
