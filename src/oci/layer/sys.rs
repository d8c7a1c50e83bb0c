//! The fd-relative system calls layer extraction makes, through `rustix`:
//! each is relative to a directory descriptor and never follows a final
//! symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`).
//!
//! Not for: walking paths (the tree walks one component at a time with
//! [`open_dir_at`]) or deciding what to create.
//! Invariant: no `unsafe` here; descriptors are borrowed, never raw.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dev, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, XattrFlags};

use super::error::ErrorKind;

pub(super) fn cstring(b: &[u8]) -> std::result::Result<CString, ErrorKind> {
    CString::new(b).map_err(|_| ErrorKind::Malformed("path contains a NUL byte".into()))
}

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Open the directory at `path`, not following a final symlink.
pub(super) fn open_dir(path: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
}

/// Open the directory `name` in `dirfd`, not following a symlink.
pub(super) fn open_dir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dirfd, name, DIR_FLAGS, Mode::empty())?)
}

/// Create the file `name` in `dirfd` (mode 0600), failing if anything,
/// a symlink included, is already there.
pub(super) fn create_file_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(dirfd, name, flags, Mode::from_raw_mode(0o600))?))
}

/// `fstatat` without following a final symlink; `None` when nothing is there.
pub(super) fn lstat_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

pub(super) fn is_dir(st: &Stat) -> bool {
    file_type(st) == FileType::Directory
}

/// The inode number, as `std` reports it.
#[allow(clippy::useless_conversion)]
pub(super) fn ino(st: &Stat) -> u64 {
    u64::from(st.st_ino)
}

pub(super) fn mkdir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dirfd, name, Mode::from_raw_mode(0o755))?)
}

/// Remove the non-directory `name` in `dirfd`.
pub(super) fn unlink_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dirfd, name, AtFlags::empty())?)
}

/// Create a symlink `name` in `dirfd` whose target is `target`, verbatim.
pub(super) fn symlink_at(target: &CStr, dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dirfd, name)?)
}

/// Create a device node or fifo (mode 0600; the real mode is set later).
pub(super) fn mknod_at(dirfd: BorrowedFd<'_>, name: &CStr, kind: FileType, dev: Dev) -> io::Result<()> {
    Ok(rustix::fs::mknodat(dirfd, name, kind, Mode::from_raw_mode(0o600), dev)?)
}

/// Hard-link `tname` in `tdir` as `name` in `dirfd`; a symlink is linked
/// itself, never what it points to.
pub(super) fn link_at(
    tdir: BorrowedFd<'_>,
    tname: &CStr,
    dirfd: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<()> {
    Ok(rustix::fs::linkat(tdir, tname, dirfd, name, AtFlags::empty())?)
}

/// An id from a header; `u32::MAX` (-1) means "leave unchanged", as for
/// `chown(2)`.
fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    ((uid != u32::MAX).then(|| Uid::from_raw(uid)), (gid != u32::MAX).then(|| Gid::from_raw(gid)))
}

pub(super) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = ids(uid, gid);
    Ok(rustix::fs::fchown(fd, u, g)?)
}

/// Set the owner of `name` in `dirfd`, not following a symlink.
pub(super) fn chown_at(dirfd: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = ids(uid, gid);
    Ok(rustix::fs::chownat(dirfd, name, u, g, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub(super) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Set the mode of `name` in `dirfd` (never a symlink: callers chmod only
/// nodes they just created as something else).
pub(super) fn chmod_at(dirfd: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::chmodat(dirfd, name, Mode::from_raw_mode(mode), AtFlags::empty())?)
}

/// Access and modification times both `secs`.
fn timestamps(secs: u64) -> Timestamps {
    let t = Timespec { tv_sec: secs.min(i64::MAX as u64) as i64, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

pub(super) fn set_mtime_fd(fd: BorrowedFd<'_>, secs: u64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &timestamps(secs))?)
}

/// Set the times of `name` in `dirfd`, not following a symlink.
pub(super) fn set_mtime_at(dirfd: BorrowedFd<'_>, name: &CStr, secs: u64) -> io::Result<()> {
    Ok(rustix::fs::utimensat(dirfd, name, &timestamps(secs), AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Set an extended attribute on `path`, not following a final symlink.
pub(super) fn lsetxattr(path: &CStr, key: &CStr, value: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::lsetxattr(path, key, value, XattrFlags::empty())?)
}

pub(super) fn fsetxattr(fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::fsetxattr(fd, key, value, XattrFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id of -1 in a header leaves that id unchanged, as `fchown(2)` does
    /// with the raw value (rustix expresses it as `None`).
    #[test]
    fn minus_one_leaves_the_id_unchanged() {
        assert_eq!(ids(u32::MAX, 7), (None, Some(Gid::from_raw(7))));
        assert_eq!(ids(0, u32::MAX), (Some(Uid::from_raw(0)), None));
    }
}
