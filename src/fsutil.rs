//! Small filesystem helpers shared by every module that writes outputs.
//!
//! The one rule here: a file that a user expects to find finished is never
//! seen half-written. [`AtomicFile`] writes to a hidden temporary name in the
//! same directory and renames over the target on [`AtomicFile::commit`];
//! dropped without commit (an error, a panic, an interrupted build), the
//! temporary file is removed and the target is untouched. A directory is
//! published the same way: built complete under a temporary name, then
//! [`rename_noreplace`]d to its final name, which never replaces what is
//! already there.
//!
//! [`copy_tree`] is the one tree copy (source trees into the source cache,
//! step outputs into the step cache): it never follows a symbolic link,
//! copies links as links, and either keeps permission bits and hard links
//! exactly ([`CopyModes::Exact`]) or canonicalises them ([`CopyModes::Canonical`]).
//!
//! Also here, for the build's untrusted step outputs and its scratch space:
//!
//! - [`lstat_beneath`] finds a path below a directory without following any
//!   symlink on the way (each component opened `O_PATH | O_NOFOLLOW`
//!   relative to its parent), so nothing a step planted can point a read
//!   outside its output directory;
//! - [`LiveTempDir`]: a temporary directory that holds an exclusive `flock`
//!   on itself while its owner lives. Creating one first removes the stale
//!   ones of the same prefix (left by a killed process: no lock held, same
//!   owner uid), never one whose owner still runs.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};

/// Read until `buf` is full or the reader ends (retrying interrupted
/// reads); returns how many bytes were read. Short only at the end.
pub fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
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

/// A file being written under a temporary name, renamed into place on commit.
///
/// Large files are sent to the disk while they are written (writeback is
/// started every 32 MiB written), so the sync on commit finds
/// little left to do instead of the whole file.
pub struct AtomicFile {
    target: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    writer: Option<BufWriter<File>>,
    /// Bytes written since writeback was last started.
    unsynced: u64,
}

/// See [`AtomicFile`].
const WRITEBACK_EVERY: u64 = 32 << 20;

impl AtomicFile {
    /// Start writing `target`; its directory must exist.
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .with_context(|| format!("{}: not a file path", target.display()))?
            .to_string_lossy()
            .into_owned();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let file = tmp.reopen().with_context(|| format!("cannot open {}", tmp.path().display()))?;
        Ok(AtomicFile {
            target,
            tmp: Some(tmp),
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            unsynced: 0,
        })
    }

    /// Flush, sync, give the file mode 0644 and rename it over the target.
    pub fn commit(mut self) -> Result<()> {
        let w = self.writer.take().expect("writer present until commit");
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.target.display()))?;
        file.sync_all().with_context(|| format!("syncing {}", self.target.display()))?;
        drop(file);
        let tmp = self.tmp.take().expect("temp present until commit");
        set_mode(tmp.path(), 0o644)?;
        tmp.persist(&self.target).with_context(|| format!("cannot rename into {}", self.target.display()))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let w = self.writer.as_mut().expect("writer present");
        let n = w.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
            start_writeback(w.get_ref());
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("writer present").flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer.as_mut().expect("writer present").seek(pos)
    }
}

/// Start writing `file`'s dirty pages to the disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a head start for a later
/// fsync, which still makes the data durable: a failure here is ignored.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // open (borrowed from `file` for the call's duration).
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Write a whole file atomically.
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target.as_ref())?;
    f.write_all(bytes).with_context(|| format!("writing {}", target.as_ref().display()))?;
    f.commit()
}

/// Make renames into `dir` durable (fsync the directory).
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Set a path's permission bits with a plain chmod (a symbolic link is followed).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Rename `from` to `to` unless `to` exists (`renameat2(RENAME_NOREPLACE)`):
/// publishes a complete directory without ever replacing one another
/// process may be reading. Returns `Ok(false)` when `to` already exists.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<bool> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(e) => Err(io::Error::from(e))
            .with_context(|| format!("cannot rename {} to {}", from.display(), to.display())),
    }
}

/// How [`copy_tree`] treats permission bits, owners, hard links and special files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyModes {
    /// Step outputs, as `cp -a` would: permission bits (0o7777), owners and
    /// modification times kept, hard links within the tree kept as links,
    /// device nodes and FIFOs recreated, sockets skipped (the ramdisk
    /// writer skips them too).
    Exact,
    /// Source trees: files 0755 when owner-executable else 0644,
    /// directories 0755 (the host's umask does not reach the copy), owned
    /// by the caller, hard links copied as independent files; anything but
    /// directories, regular files and symbolic links is an error.
    Canonical,
}

/// Copy the tree `src` into `dest` (created; must not exist), never
/// following a symbolic link (links are copied as links, their targets
/// untouched) and skipping every entry named as one of `ignore`, with
/// everything below it. Extended attributes are not copied.
pub fn copy_tree(src: &Path, dest: &Path, ignore: &[String], modes: CopyModes) -> Result<()> {
    let meta = fs::symlink_metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    if !meta.is_dir() {
        bail!("{}: expected a directory", src.display());
    }
    fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !ignore.iter().any(|i| e.file_name() == std::ffi::OsStr::new(i)));
    let mut links = std::collections::HashMap::new();
    // Directories are finished (mode, owner, times) last, deepest first, so
    // a read-only directory does not stop its own children from being copied
    // and adding children does not change its time again.
    let mut dirs = vec![(dest.to_path_buf(), meta)];
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", src.display()))?;
        let from = entry.path();
        let to = dest.join(from.strip_prefix(src).expect("walkdir yields paths under its root"));
        let md = entry.metadata().with_context(|| format!("cannot stat {}", from.display()))?;
        if md.is_dir() {
            fs::create_dir(&to).with_context(|| format!("cannot create {}", to.display()))?;
            dirs.push((to, md));
        } else {
            copy_entry(from, &to, &md, modes, &mut links)?;
        }
    }
    for (dir, md) in dirs.iter().rev() {
        match modes {
            CopyModes::Exact => finish_exact(dir, md, true)?,
            CopyModes::Canonical => set_mode(dir, 0o755)?,
        }
    }
    Ok(())
}

/// Copy one entry that is not a directory. `links` maps the (device, inode)
/// of a multiply-linked source file to its first copy ([`CopyModes::Exact`]).
fn copy_entry(
    from: &Path,
    to: &Path,
    md: &fs::Metadata,
    modes: CopyModes,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let exact = modes == CopyModes::Exact;
    let id = (md.dev(), md.ino());
    if exact && md.nlink() > 1 && !md.file_type().is_symlink() {
        if let Some(first) = links.get(&id) {
            return fs::hard_link(first, to).with_context(|| format!("cannot link {}", to.display()));
        }
    }
    if md.file_type().is_symlink() {
        let target = fs::read_link(from).with_context(|| format!("cannot read link {}", from.display()))?;
        std::os::unix::fs::symlink(&target, to)
            .with_context(|| format!("cannot create symlink {}", to.display()))?;
    } else if md.is_file() {
        fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
        if !exact {
            return set_mode(to, if md.mode() & 0o100 != 0 { 0o755 } else { 0o644 });
        }
    } else if !exact {
        bail!(
            "{}: only directories, regular files and symbolic links can be part of a source",
            from.display()
        );
    } else if !make_special(md, to)? {
        return Ok(());
    }
    if exact {
        finish_exact(to, md, !md.file_type().is_symlink())?;
        if md.nlink() > 1 && !md.file_type().is_symlink() {
            links.insert(id, to.to_path_buf());
        }
    }
    Ok(())
}

/// Give `to` the owner, modification time and (`with_mode`: symbolic links
/// have none) permission bits of `md`, never following a symbolic link.
fn finish_exact(to: &Path, md: &fs::Metadata, with_mode: bool) -> Result<()> {
    use rustix::fs::{chownat, utimensat, AtFlags, Gid, Timestamps, Uid, CWD};
    use std::os::unix::fs::MetadataExt;
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    // Only root may give files away; others keep their own (as `cp -a` does).
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = (Uid::from_raw(md.uid()), Gid::from_raw(md.gid()));
        chownat(CWD, to, Some(uid), Some(gid), nofollow)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot chown {}", to.display()))?;
    }
    if with_mode {
        set_mode(to, md.mode() & 0o7777)?;
    }
    let t = rustix::fs::Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() as _ };
    utimensat(CWD, to, &Timestamps { last_access: t, last_modification: t }, nofollow)
        .map_err(io::Error::from)
        .with_context(|| format!("cannot set the times of {}", to.display()))
}

/// Recreate a device node or FIFO described by `md` at `to`; `Ok(false)`
/// for a socket, which is skipped.
fn make_special(md: &fs::Metadata, to: &Path) -> Result<bool> {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        FileType::CharacterDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else if ft.is_fifo() {
        FileType::Fifo
    } else {
        return Ok(false);
    };
    mknodat(CWD, to, kind, Mode::from_raw_mode(md.mode() & 0o7777), md.rdev())
        .map_err(io::Error::from)
        .with_context(|| format!("cannot create {} (mknod)", to.display()))?;
    Ok(true)
}

/// What [`lstat_beneath`] found (the last component itself, never followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Dir,
    File,
    /// A symlink, with its target (not followed).
    Symlink(Vec<u8>),
    /// A device node, fifo or socket.
    Other,
}

/// Find `rel` below `root` without following any symlink: `root` itself is
/// trusted (opened as given), every component of `rel` must be a normal name
/// and is opened `O_PATH | O_NOFOLLOW` relative to its parent's descriptor,
/// so a symlink, wherever it sits and whatever it points at, is never
/// resolved. A symlink before the last component is an error; the last one
/// is reported as [`Found::Symlink`]. An empty `rel` is `root` itself.
/// A missing component is an error of kind [`io::ErrorKind::NotFound`].
pub fn lstat_beneath(root: &Path, rel: &Path) -> io::Result<Found> {
    let mut fd: OwnedFd =
        rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: only plain names are allowed below {}", rel.display(), root.display()),
            ));
        };
        fd =
            rustix::fs::openat(&fd, *name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        let last = i + 1 == comps.len();
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if !last && kind != FileType::Directory {
            let up_to: PathBuf = comps[..=i].iter().collect();
            let what = if kind == FileType::Symlink {
                "a symlink, which is not followed"
            } else {
                "not a directory"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {what}", up_to.display()),
            ));
        }
    }
    Ok(match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
        FileType::Directory => Found::Dir,
        FileType::RegularFile => Found::File,
        FileType::Symlink => Found::Symlink(rustix::fs::readlinkat(&fd, "", Vec::new())?.into_bytes()),
        _ => Found::Other,
    })
}

/// A temporary directory marked as in use by an exclusive `flock` on itself,
/// held until the value is dropped (or the process dies: the kernel drops
/// the lock, even on `kill -9`). Removed on drop unless [`LiveTempDir::keep`].
pub struct LiveTempDir {
    dir: Option<tempfile::TempDir>,
    _lock: OwnedFd,
}

impl LiveTempDir {
    /// Remove the stale `PREFIX*` directories in `parent` ([`remove_stale`]),
    /// then make a fresh one and lock it.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<LiveTempDir> {
        remove_stale(parent, prefix);
        loop {
            let dir = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(parent)
                .with_context(|| format!("cannot create a {prefix}* directory in {}", parent.display()))?;
            let lock = lock_dir(dir.path(), FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock {}", dir.path().display()))?;
            // Between mkdir and flock another process's `remove_stale` may
            // have taken the directory for stale and removed it: then the
            // lock is on a removed directory, and another is made.
            let same = fs::symlink_metadata(dir.path()).is_ok_and(|md| {
                rustix::fs::fstat(&lock).is_ok_and(|st| st.st_ino == md.ino() && st.st_dev == md.dev())
            });
            if same {
                return Ok(LiveTempDir { dir: Some(dir), _lock: lock });
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until kept").path()
    }

    /// Keep the directory: it is renamed to `kept-NAME` (so later
    /// [`remove_stale`] calls leave it alone) and that path is returned.
    pub fn keep(mut self) -> Result<PathBuf> {
        let path = self.dir.take().expect("present until kept").keep();
        let name = path.file_name().expect("a temporary directory has a name").to_string_lossy();
        let kept = path.with_file_name(format!("kept-{name}"));
        fs::rename(&path, &kept)
            .with_context(|| format!("cannot rename {} to {}", path.display(), kept.display()))?;
        Ok(kept)
    }
}

fn lock_dir(path: &Path, op: FlockOperation) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::flock(fd.as_fd(), op)?;
    Ok(fd)
}

/// Remove the directories `parent/PREFIX*` left by processes that are gone:
/// those owned by this user whose [`LiveTempDir`] lock nobody holds. A
/// directory whose owner still runs is locked and left alone; symlinks and
/// other users' directories are never touched. Best effort: returns how many
/// were removed, errors are skipped (the next run tries again).
pub fn remove_stale(parent: &Path, prefix: &str) -> usize {
    let Ok(entries) = fs::read_dir(parent) else { return 0 };
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().as_encoded_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let path = entry.path();
        // O_NOFOLLOW: a symlink named like ours is not ours to follow.
        let Ok(lock) = lock_dir(&path, FlockOperation::NonBlockingLockExclusive) else { continue };
        if rustix::fs::fstat(&lock).map(|st| st.st_uid) != Ok(uid) {
            continue;
        }
        // Locked by us now, so no live owner: remove it while holding the lock.
        if fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.eif");
        fs::write(&target, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"half").unwrap();
            // dropped without commit
        }
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn copy_tree_keeps_links_modes_and_hard_links_and_never_follows() {
        use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let (src, outside) = (d.path().join("src"), d.path().join("outside"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        fs::write(src.join("a"), "a").unwrap();
        set_mode(&src.join("a"), 0o4710).unwrap();
        fs::hard_link(src.join("a"), src.join("sub/a2")).unwrap();
        symlink(&outside, src.join("escape")).unwrap();
        symlink("../a", src.join("sub/rel")).unwrap();
        set_mode(&src.join("sub"), 0o500).unwrap();
        fs::create_dir(src.join("ignored")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();

        let exact = d.path().join("exact");
        copy_tree(&src, &exact, &["ignored".into()], CopyModes::Exact).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&exact.join("a")), 0o4710);
        assert_eq!(mode(&exact.join("sub")), 0o500);
        assert_eq!(mode(&exact.join("fifo")), 0o640);
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &fs::symlink_metadata(exact.join("fifo")).unwrap().file_type()
        ));
        let (a, a2) = (fs::metadata(exact.join("a")).unwrap(), fs::metadata(exact.join("sub/a2")).unwrap());
        assert_eq!((a.ino(), a.nlink()), (a2.ino(), 2), "hard link not kept");
        assert_eq!(fs::read_link(exact.join("escape")).unwrap(), outside, "symlink target changed");
        assert!(fs::symlink_metadata(exact.join("escape")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_link(exact.join("sub/rel")).unwrap(), Path::new("../a"));
        assert!(!exact.join("ignored").exists());
        assert!(!outside.join("a").exists() && fs::read_dir(&outside).unwrap().count() == 1);

        let canon = d.path().join("canon");
        let err = copy_tree(&src, &canon, &[], CopyModes::Canonical).unwrap_err().to_string();
        assert!(err.contains("fifo: only directories, regular files and symbolic links"), "{err}");
        fs::remove_file(src.join("fifo")).unwrap();
        let canon = d.path().join("canon2");
        copy_tree(&src, &canon, &[], CopyModes::Canonical).unwrap();
        assert_eq!(mode(&canon.join("a")), 0o755);
        assert_eq!(mode(&canon.join("sub")), 0o755);
        assert_eq!(fs::metadata(canon.join("a")).unwrap().nlink(), 1, "a canonical copy kept a hard link");
        set_mode(&src.join("sub"), 0o755).unwrap();
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(b.join("keep"), "").unwrap();
        assert!(!rename_noreplace(&a, &b).unwrap(), "replaced an existing directory");
        assert!(b.join("keep").exists() && a.exists());
        fs::remove_file(b.join("keep")).unwrap();
        assert!(!rename_noreplace(&a, &b).unwrap(), "replaced an existing empty directory");
        assert!(rename_noreplace(&a, &c).unwrap());
        assert!(c.is_dir() && !a.exists());
    }

    #[test]
    fn lstat_beneath_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("d", root.join("dlink")).unwrap();
        assert_eq!(lstat_beneath(root, Path::new("")).unwrap(), Found::Dir);
        assert_eq!(lstat_beneath(root, Path::new("d/e")).unwrap(), Found::Dir);
        assert_eq!(lstat_beneath(root, Path::new("d/f")).unwrap(), Found::File);
        assert_eq!(lstat_beneath(root, Path::new("hostetc")).unwrap(), Found::Symlink(b"/etc".to_vec()));
        let e = lstat_beneath(root, Path::new("hostetc/hostname")).unwrap_err();
        assert!(e.to_string().contains("hostetc is a symlink, which is not followed"), "{e}");
        let e = lstat_beneath(root, Path::new("dlink/f")).unwrap_err();
        assert!(e.to_string().contains("dlink is a symlink"), "{e}");
        assert!(lstat_beneath(root, Path::new("../etc/hostname")).is_err());
        assert!(lstat_beneath(root, Path::new("/etc/hostname")).is_err());
        let e = lstat_beneath(root, Path::new("d/missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = lstat_beneath(root, Path::new("d/f/g")).unwrap_err();
        assert!(e.to_string().contains("d/f is not a directory"), "{e}");
    }

    /// A directory whose owner died (no lock) is removed; a live one (locked
    /// here, as its owner would), a kept one, a symlink and other names stay.
    #[test]
    fn stale_temp_dirs_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("pre-stale/sub")).unwrap();
        fs::write(p.join("pre-stale/sub/big"), b"litter").unwrap();
        fs::create_dir(p.join("pre-live")).unwrap();
        let _held = lock_dir(&p.join("pre-live"), FlockOperation::LockExclusive).unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(victim.path(), p.join("pre-link")).unwrap();
        fs::write(victim.path().join("keep-me"), b"").unwrap();
        fs::create_dir(p.join("other")).unwrap();
        let live = LiveTempDir::new_in(p, "pre-").unwrap();
        assert!(!p.join("pre-stale").exists(), "the stale directory is still there");
        assert!(p.join("pre-live").is_dir() && p.join("other").is_dir());
        assert!(victim.path().join("keep-me").exists());
        // The new one is locked: another process's cleanup leaves it alone.
        assert_eq!(remove_stale(p, "pre-"), 0);
        assert!(live.path().is_dir());
        let kept = live.keep().unwrap();
        assert!(kept.file_name().unwrap().to_string_lossy().starts_with("kept-pre-"));
        assert_eq!(remove_stale(p, "pre-"), 0);
        assert!(kept.is_dir());
        drop(_held);
        assert_eq!(remove_stale(p, "pre-"), 1, "pre-live, once unlocked, is stale");
    }
}
