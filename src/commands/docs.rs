//! `eifbake completions` and `eifbake man`: shell completion scripts and
//! manual pages, generated from the clap definitions in [`crate::args`], so
//! they always list the subcommands and options the binary has.
//!
//! Not for: any documentation written by hand (that is the README and the
//! `--help` texts in [`crate::args`], which these render).
//!
//! Invariants: the output depends only on the clap definitions (no date,
//! no host): the pages `make install` writes are the same on every machine.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::{Cli, CompletionShell};
use crate::commands::output;

/// Print the completion script for `shell`.
pub fn completions(shell: CompletionShell) -> Result<ExitCode> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "eifbake", &mut buf);
    output::text(&String::from_utf8(buf).context("the completion script is not UTF-8")?)?;
    Ok(ExitCode::SUCCESS)
}

/// Print the top manual page, or write every page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<ExitCode> {
    // Without the `help` subcommand, as clap_mangen::generate_to writes the pages.
    let cmd = Cli::command().disable_help_subcommand(true);
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).context("rendering the manual page")?;
        output::text(&String::from_utf8(buf).context("the manual page is not UTF-8")?)?;
        return Ok(ExitCode::SUCCESS);
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("eifbake") && n.ends_with(".1"))
        .collect();
    names.sort();
    for n in names {
        outln!("{}", dir.join(n).display());
    }
    Ok(ExitCode::SUCCESS)
}
