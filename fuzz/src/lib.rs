//! Shared pieces of the fuzz harnesses: a scratch directory per process and
//! a way to hand the fuzzer's bytes to readers that take a path.
//!
//! For: the binaries in `src/bin`, one per fuzz target. Not for: anything the
//! main crate uses. Invariant: every harness runs its input through eifbake's
//! public API only, and treats every `Err` as a correct answer; only a panic,
//! an abort (overflow, out of memory) or a hang is a finding.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory that lives as long as the fuzzing process.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new().prefix("eifbake-fuzz-").tempdir().expect("a scratch directory")
    })
    .path()
}

/// Write `data` to `name` in the scratch directory and return its path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("writing the fuzz input to the scratch directory");
    p
}
