//! The `eifbake` binary: parse arguments, run the command, map the result to
//! an exit code (0 ok/same, 1 differs, 2 error), print errors with their causes.
//!
//! Standard output that cannot be written (see [`eifbake::commands::output`])
//! is an error like any other, exit 2, except that a closed pipe (the reader
//! of `eifbake ... | head` went away) exits 2 without a message. Nothing here
//! panics on a closed or full standard output or standard error.

use std::process::ExitCode;

use clap::Parser;
use eifbake::commands::output::{self, StdoutError};

fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = match eifbake::args::Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version (exit 0) and usage errors (exit 2); clap's own
        // `exit` would ignore a failed write and claim success.
        Err(e) => match e.print() {
            Ok(()) => return ExitCode::from(e.exit_code().clamp(0, 255) as u8),
            Err(io) => return fail(StdoutError(io).into()),
        },
    };
    let result = eifbake::commands::run(cli).and_then(|code| {
        output::flush()?;
        Ok(code)
    });
    result.unwrap_or_else(fail)
}

/// Have glibc serve every allocation of 64 KiB or more with its own mmap,
/// returned to the kernel when freed. By default glibc raises that threshold
/// after the first such free, and from then on the gzip writer's per-block
/// buffers and deflate state (a fresh compressor per 1 MiB block, several
/// allocations of 64 to 128 KiB each) come from per-thread arenas whose
/// footprint creeps with the number of blocks written. Measured with
/// `/usr/bin/time -f %M eifbake ramdisk --gzip T -o r.gz` (release build),
/// T holding 20,000 or 200,000 empty files in directories of 100 and 8 MiB
/// of random bytes (the shape of tests/cpio.rs's memory test): the
/// peak went from 20.4 to 21.7 MiB before, and from 18.3 to 19.0 MiB with
/// the fixed threshold, at the same speed; output bytes are unaffected.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; it is called before any
    // other thread exists, and a refused value (return 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Report `err` on standard error (nothing for a closed output pipe); exit 2.
fn fail(err: anyhow::Error) -> ExitCode {
    if !output::is_closed_pipe(&err) {
        output::eline(format_args!("eifbake: error: {err}"));
        for cause in err.chain().skip(1) {
            output::eline(format_args!("  caused by: {cause}"));
        }
    }
    ExitCode::from(2)
}
