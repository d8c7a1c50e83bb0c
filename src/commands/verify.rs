//! `eifbake verify MANIFEST|EIF`: rebuild and compare, see [`crate::verify`].
//! Exit 0 GOOD (or measured content identical), 1 BAD, 2 could not rebuild.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::args::{Global, VerifyArgs};
use crate::epoch::Epoch;
use crate::fsutil::write_atomic;
use crate::verify::{attestation, load_subject, verify, Verdict, VerifyOptions};

pub fn run(args: VerifyArgs, global: &Global) -> Result<ExitCode> {
    let mut sources = BTreeMap::new();
    for s in &args.sources {
        let Some((name, dir)) = s.split_once('=') else {
            bail!("--source {s:?}: expected NAME=DIR");
        };
        if sources.insert(name.to_string(), PathBuf::from(dir)).is_some() {
            bail!("--source {name}: given twice");
        }
    }
    let subject = load_subject(&args.subject)?;
    let opts = VerifyOptions {
        store: global.store.clone(),
        sources,
        pcrs: args.pcrs,
        published_eif: args.eif,
        allow_tool_mismatch: args.allow_tool_mismatch,
        runtime: args.runtime,
        insecure: args.insecure_registry,
        mirrors: global.mirrors()?,
        offline: global.offline,
        step_timeout: Duration::from_secs(args.step_timeout),
        keep: args.keep,
        allow_network: args.allow_network,
    };
    let report = verify(&subject, &opts)?;
    if let Some(path) = &args.attest {
        let now = match Epoch::from_env()? {
            Some(e) => e,
            None => Epoch(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            ),
        };
        let st = attestation(&subject, &report, now);
        let mut bytes = serde_json::to_vec_pretty(&st)?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)?;
    }
    if args.json {
        super::output::json(&report)?;
    } else {
        outln!("{} {}", report.verdict.word(), report.name);
        outln!("{:<8} {:<14} {:<8} {:<8}", "figure", "from", "match", "expected / rebuilt");
        for f in &report.figures {
            outln!("{:<8} {:<14} {:<8} {}", f.what, f.from, if f.ok { "yes" } else { "NO" }, f.expected);
            outln!("{:<8} {:<14} {:<8} {}", "", "", "", f.rebuilt);
        }
        for n in &report.notes {
            outln!("note: {n}");
        }
        if let Some(d) = &report.diff {
            outln!("difference between the rebuild (---) and the published EIF (+++):");
            crate::commands::diff::print_text(d)?;
        }
        if let Some(k) = &report.kept {
            outln!("kept the rebuild in {}", k.display());
        }
        if let Some(a) = &args.attest {
            outln!("wrote {}", a.display());
        }
    }
    Ok(match report.verdict {
        Verdict::Good | Verdict::GoodMeasured => ExitCode::SUCCESS,
        Verdict::Bad => ExitCode::from(1),
    })
}
