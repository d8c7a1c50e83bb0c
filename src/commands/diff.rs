//! `eifbake diff A.eif B.eif [--json]`: what differs between two EIFs (either
//! may be a release on a registry, pulled and verified first)
//! (see [`crate::eif::diff`]). Exit 0 same, 1 different, 2 error.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{DiffArgs, Global};
use crate::eif::diff::{compare, Change, EifDiff, SectionSummary};
use crate::eif::Eif;
use crate::progress::Progress;

pub fn run(args: DiffArgs, _global: &Global) -> Result<ExitCode> {
    let registry = crate::oci::registry::Registry::new(&args.insecure_registry);
    let scratch = tempfile::Builder::new().prefix("eifbake-diff-").tempdir()?;
    let (da, db) = (scratch.path().join("a"), scratch.path().join("b"));
    let a = Eif::open(&crate::release::local_eif(&registry, &args.a, &da)?)?;
    let b = Eif::open(&crate::release::local_eif(&registry, &args.b, &db)?)?;
    let progress = Progress::bytes("comparing", 0);
    let d = compare(&a, &b, &progress)?;
    progress.finish();
    if args.json {
        super::output::json(&d)?;
    } else {
        print_text(&d)?;
    }
    Ok(if d.same { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_changes(title: &str, changes: &[Change], indent: &str) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    outln!("{indent}{title}");
    for c in changes {
        outln!("{indent}  {}: {} -> {}", c.field, c.a, c.b);
    }
    Ok(())
}

fn summary(s: &Option<SectionSummary>) -> String {
    match s {
        Some(s) => format!("{} {} bytes {}", s.kind, s.size, s.sha256),
        None => "(none)".into(),
    }
}

/// Print an [`EifDiff`] for people (also used by `verify` and `check`).
pub fn print_text(d: &EifDiff) -> Result<()> {
    outln!("--- {}", d.a);
    outln!("+++ {}", d.b);
    for (side, c) in [(&d.a, &d.crc_a), (&d.b, &d.crc_b)] {
        if !c.ok {
            outln!("CRC-32 MISMATCH in {side}: header {}, computed {}", c.stored, c.computed);
        }
    }
    if d.same {
        outln!("identical");
        return Ok(());
    }
    print_changes("header", &d.header, "")?;
    print_changes("measurements", &d.pcrs, "")?;
    for s in &d.sections {
        outln!("section {}", s.index);
        outln!("  - {}", summary(&s.a));
        outln!("  + {}", summary(&s.b));
        if let Some(e) = &s.entries_error {
            outln!("  entries not compared: {e}");
        }
        if let Some(e) = &s.entries {
            for x in &e.removed {
                outln!("  removed {} ({:?}, mode {}, {} bytes)", x.path, x.kind, x.mode, x.size);
            }
            for x in &e.added {
                outln!("  added   {} ({:?}, mode {}, {} bytes)", x.path, x.kind, x.mode, x.size);
            }
            for c in &e.changed {
                outln!("  changed {}", c.path);
                for f in &c.changes {
                    outln!("    {}: {} -> {}", f.field, f.a, f.b);
                }
                if let Some(detail) = &c.detail {
                    for line in detail.lines() {
                        outln!("    {line}");
                    }
                }
            }
            if e.unlisted > 0 {
                outln!(
                    "  ... and {} more differing entries, not listed (over the listing limit)",
                    e.unlisted
                );
            }
            if e.order_differs {
                outln!("  same entries in a different order");
            }
            if e.is_empty() {
                outln!("  same entries, fields and contents: the archive encoding differs (compression?)");
            }
        }
    }
    print_changes("metadata", &d.metadata, "")?;
    print_changes("signature", &d.signature, "")?;
    Ok(())
}
