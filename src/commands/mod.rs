//! One function per subcommand: turn parsed arguments into library calls and
//! print the result. No format or policy logic lives here.

#[macro_use]
pub mod output;

pub mod attestation;
pub mod attestations;
pub mod build;
pub mod check;
pub mod describe;
pub mod diff;
pub mod docs;
pub mod eif;
pub mod fetch;
pub mod import;
pub mod init;
pub mod lock;
pub mod pull;
pub mod push;
pub mod ramdisk;
pub mod sign;
pub mod store;
pub mod verify;

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{Cli, Command};

/// Run a parsed command line; `Ok` carries the exit code (0 same/ok, 1 differs).
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ramdisk(args) => ramdisk::run(args, &cli.global),
        Command::Eif(args) => eif::run(args, &cli.global),
        Command::SignPayload(a) => sign::payload(a),
        Command::AttachSignature(a) => sign::attach(a),
        Command::Describe(args) => describe::run(args, &cli.global),
        Command::Diff(args) => diff::run(args, &cli.global),
        Command::Push(a) => push::run(a, &cli.global),
        Command::Pull(a) => pull::run(a, &cli.global),
        Command::Attestations(a) => attestations::run(a, &cli.global),
        Command::Build(a) => build::run(a, &cli.global),
        Command::Lock(a) => lock::run(a, &cli.global),
        Command::Fetch(a) => fetch::run(a, &cli.global),
        Command::Store(c) => store::run(c, &cli.global),
        Command::Verify(a) => verify::run(a, &cli.global),
        Command::Check(a) => check::run(a, &cli.global),
        Command::Attestation(c) => attestation::run(c),
        Command::Init(a) => init::run(a),
        Command::Import(a) => import::run(a),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(dir.as_deref()),
    }
}
