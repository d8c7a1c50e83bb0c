//! One function per subcommand: turn parsed arguments into library calls and
//! print the result. No format or policy logic lives here.

pub mod describe;
pub mod diff;
pub mod eif;
pub mod ramdisk;

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Cli;

/// Run a parsed command line; `Ok` carries the exit code (0 same/ok, 1 differs).
pub fn run(cli: Cli) -> Result<ExitCode> {
    #[allow(clippy::match_single_binding)] // until the first commands land
    match cli.command {
        crate::args::Command::Ramdisk(args) => ramdisk::run(args, &cli.global),
        crate::args::Command::Eif(args) => eif::run(args, &cli.global),
        crate::args::Command::Describe(args) => describe::run(args, &cli.global),
        crate::args::Command::Diff(args) => diff::run(args, &cli.global),
        _ => anyhow::bail!("this command is not available yet"),
    }
}
