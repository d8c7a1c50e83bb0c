//! `eifbake check RECIPE`: build under varied conditions and compare, see
//! [`crate::check`]. Exit 0 when all runs agree, 1 when not, 2 on error.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{CheckArgs, Global};
use crate::check::{check, names, CheckOptions, Variation};
use crate::oci::store::Store;

pub fn run(args: CheckArgs, global: &Global) -> Result<ExitCode> {
    let opts = CheckOptions {
        lockfile: args.lockfile,
        runs: args.runs,
        vary: Variation::parse_list(&args.vary)?,
        keep: args.keep,
        store: Store::default_path(global.store.as_deref())?,
        runtime: args.runtime,
        insecure: args.insecure_registry,
        offline: global.offline,
        exe: std::env::current_exe().context("cannot find the eifbake executable")?,
        diffoscope: args.diffoscope,
        signing: crate::commands::build::sign_with(&args.signing),
    };
    let r = check(&args.recipe, &opts)?;
    if args.json {
        super::output::json(&r)?;
    } else {
        for run in &r.runs {
            outln!("{:<10} vary={:<50} {} ({:.1} s)", run.label, names(&run.vary), run.sha256, run.seconds);
        }
        for (v, why) in &r.skipped {
            outln!("skipped {}: {why}", v.name());
        }
        if r.reproducible {
            outln!("reproducible: all {} runs agree", r.runs.len());
        } else {
            outln!("NOT reproducible");
            if r.differs_without_variation {
                outln!("cause: none needed (two controls differ)");
            } else if !r.causes.is_empty() {
                outln!("caused by: {}", names(&r.causes));
            }
            for n in &r.notes {
                outln!("note: {n}");
            }
            if let Some(d) = &r.diff {
                crate::commands::diff::print_text(d)?;
            }
            if let Some(o) = &r.diffoscope {
                outln!("diffoscope:\n{o}");
            }
            if let Some(k) = &r.kept {
                outln!("kept the runs in {}", k.display());
            }
        }
    }
    Ok(if r.reproducible { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
