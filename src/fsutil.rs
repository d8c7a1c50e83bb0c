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

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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
}
