//! The `eifbake` binary: parse arguments, run the command, map the result to
//! an exit code (0 ok/same, 1 differs, 2 error), print errors with their causes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = eifbake::args::Cli::parse();
    match eifbake::commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("eifbake: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
