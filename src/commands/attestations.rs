//! `eifbake attestations REF --key PUB…`: who rebuilt a release, with what
//! verdict, tool version and date, each signature checked against the keys
//! named (see [`crate::release::rebuilds`]). Exit 1 when an attestation is
//! bad (damaged, tampered with, about another release); unknown keys are
//! marked, not believed, and do not change the exit code.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{AttestationsArgs, Global};
use crate::oci::registry::Registry;
use crate::oci::Reference;
use crate::release::rebuilds::{list, NamedKey, Status};

pub fn run(args: AttestationsArgs, _global: &Global) -> Result<ExitCode> {
    let reference: Reference = args.reference.parse().context("attestations: the release")?;
    let keys = args.keys.iter().map(|p| NamedKey::load(p)).collect::<Result<Vec<_>>>()?;
    let registry = Registry::new(&args.insecure_registry);
    let release = crate::release::resolve(&registry, &reference)?;
    let (listed, mechanism) = list(&registry, &reference, &release, &keys)?;
    if args.json {
        super::output::json(&serde_json::json!({
            "reference": reference.to_string(), "digest": release.digest.to_string(),
            "mechanism": mechanism, "attestations": listed,
        }))?;
    } else {
        outln!("{} {} ({} attestations, {:?})", reference, release.digest, listed.len(), mechanism);
        for l in &listed {
            let status = match l.status {
                Status::Good => "good",
                Status::UnknownKey => "UNKNOWN KEY",
                Status::Bad => "BAD",
            };
            let o = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
            outln!(
                "{status:<12} {:<8} {:<10} {:<22} {}",
                o(&l.verdict),
                o(&l.tool_version),
                o(&l.time_verified),
                l.who
            );
            if let Some(p) = &l.problem {
                outln!("             {}: {p}", l.digest);
            }
        }
    }
    Ok(if listed.iter().any(|l| l.status == Status::Bad) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
