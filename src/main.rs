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
