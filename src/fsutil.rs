//! Small filesystem helpers shared by every module that writes outputs.
//!
//! The one rule here: a file that a user expects to find finished is never
//! seen half-written. [`AtomicFile`] writes to a hidden temporary name in the
//! same directory and renames over the target on [`AtomicFile::commit`];
//! dropped without commit (an error, a panic, an interrupted build), the
//! temporary file is removed and the target is untouched.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
}
