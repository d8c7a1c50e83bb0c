//! Small filesystem helpers shared by every module that writes outputs.
//!
//! The one rule here: a file that a user expects to find finished is never
//! seen half-written. [`AtomicFile`] writes to a hidden temporary name in the
//! same directory and renames over the target on [`AtomicFile::commit`];
//! dropped without commit (an error, a panic, an interrupted build), the
//! temporary file is removed and the target is untouched.
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

use anyhow::{Context, Result};
use rustix::fs::{FileType, FlockOperation, Mode, OFlags};

/// A file being written under a temporary name, renamed into place on commit.
pub struct AtomicFile {
    target: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    writer: Option<BufWriter<File>>,
}

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
        Ok(AtomicFile { target, tmp: Some(tmp), writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    pub fn target(&self) -> &Path {
        &self.target
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
        self.writer.as_mut().expect("writer present").write(buf)
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

/// Set a path's permission bits (not following nothing special: a plain chmod).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
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
