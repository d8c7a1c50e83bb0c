//! The fd-relative system calls layer extraction makes, each relative to a
//! directory descriptor and never following a final symlink.
//!
//! Not for: walking paths (the tree walks one component at a time with
//! [`open_dir_at`]) or deciding what to create.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::error::ErrorKind;

pub(super) fn cstring(b: &[u8]) -> std::result::Result<CString, ErrorKind> {
    CString::new(b).map_err(|_| ErrorKind::Malformed("path contains a NUL byte".into()))
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) fn open_dir_at(dirfd: RawFd, name: &CString) -> io::Result<OwnedFd> {
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
pub(super) fn lstat_at(dirfd: RawFd, name: &CString) -> io::Result<Option<libc::stat>> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    match cvt(unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub(super) fn timespec(secs: u64) -> [libc::timespec; 2] {
    let t = libc::timespec { tv_sec: secs.min(i64::MAX as u64) as libc::time_t, tv_nsec: 0 };
    [t, t]
}
