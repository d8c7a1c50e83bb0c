//! One function per subcommand: turn parsed arguments into library calls and
//! print the result. No format or policy logic lives here.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Cli;

pub mod fetch;
pub mod lock;
pub mod store;

/// Run a parsed command line; `Ok` carries the exit code (0 same/ok, 1 differs).
pub fn run(cli: Cli) -> Result<ExitCode> {
    #[allow(clippy::match_single_binding)] // until the first commands land
    match cli.command {
        crate::args::Command::Lock(a) => lock::run(a, &cli.global),
        crate::args::Command::Fetch(a) => fetch::run(a, &cli.global),
        crate::args::Command::Store(c) => store::run(c, &cli.global),
        _ => anyhow::bail!("this command is not available yet"),
    }
}
