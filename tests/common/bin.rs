//! Running the `eifbake` binary under test in a clean environment.
//!
//! What it is for: every integration test that runs `eifbake` (or a shell that
//! execs it) builds its `Command` here, so the environment of the developer or
//! CI machine cannot change what a test sees. The child gets only the
//! variables of [`INHERITED`] from the test process, plus
//! `EIFBAKE_NO_PROGRESS=1` and an `XDG_CONFIG_HOME` that holds no eifbake
//! config file; anything else (`EIFBAKE_SIGNING_KEY`, `EIFBAKE_STORE`,
//! `EIFBAKE_CONFIG`, `SOURCE_DATE_EPOCH`, `REGISTRY_AUTH_FILE`, locale, ...)
//! is set by the test itself or absent.
//!
//! What it is not for: running other programs (`git` has [`super::git`]),
//! or dropping privileges (tests/rootless.rs wraps these commands itself).
//!
//! Invariant: a test that needs a variable sets it on the returned `Command`
//! explicitly; nothing outside [`INHERITED`] leaks from the caller.

use std::process::Command;

/// The binary under test.
pub const EIFBAKE: &str = env!("CARGO_BIN_EXE_eifbake");

/// Variables the child inherits from the test process: `PATH` (the container
/// runtimes, `newuidmap`, `cpio`), `HOME` (the default store lives in its
/// cache directory), `TMPDIR` (scratch space), and the diagnostics knobs
/// `RUST_BACKTRACE`/`RUST_LIB_BACKTRACE` and `LLVM_PROFILE_FILE` (coverage runs).
pub const INHERITED: &[&str] =
    &["PATH", "HOME", "TMPDIR", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "LLVM_PROFILE_FILE"];

/// A config directory without `eifbake/config.toml`, so a user's
/// `~/.config/eifbake/config.toml` (registry mirrors) is not read. eifbake
/// only reads it, so it need not exist.
const NO_CONFIG_HOME: &str = "/nonexistent/eifbake-tests/config";

/// Clear `cmd`'s environment down to [`INHERITED`] and the fixed test settings.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for k in INHERITED {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("EIFBAKE_NO_PROGRESS", "1").env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
}

/// `eifbake` with a clean environment (see [`clean_env`]).
pub fn eifbake_cmd() -> Command {
    let mut c = Command::new(EIFBAKE);
    clean_env(&mut c);
    c
}
