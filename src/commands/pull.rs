//! `eifbake pull REF [--out DIR]`: download a release, every blob checked
//! against its digest, and write its four files (see [`crate::release::pull`]).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{Global, PullArgs};
use crate::oci::registry::Registry;
use crate::oci::Reference;

pub fn run(args: PullArgs, _global: &Global) -> Result<ExitCode> {
    let reference: Reference = args.reference.parse().context("pull: the release")?;
    let registry = Registry::new(&args.insecure_registry);
    let (p, files) = crate::release::pull(&registry, &reference, &args.out)?;
    let paths: Vec<String> = files.paths().iter().map(|p| p.display().to_string()).collect();
    if args.json {
        super::output::json(&serde_json::json!({
            "reference": reference.to_string(), "digest": p.digest.to_string(), "name": files.name,
            "files": paths,
        }))?;
    } else {
        outln!("pulled {} {} ({})", files.name, reference, p.digest);
        for f in paths {
            outln!("wrote {f}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
