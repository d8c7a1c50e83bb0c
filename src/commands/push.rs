//! `eifbake push out/NAME REF`: publish a release as one OCI artifact
//! (see [`crate::release`]) and print its digest.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{Global, PushArgs};
use crate::oci::registry::Registry;
use crate::oci::Reference;
use crate::release::{push, ReleaseFiles};

pub fn run(args: PushArgs, _global: &Global) -> Result<ExitCode> {
    let reference: Reference = args.reference.parse().context("push: the destination")?;
    let files = ReleaseFiles::of(&args.release);
    let registry = Registry::new(&args.insecure_registry);
    let p = push(&registry, &files, &reference)?;
    let pinned = format!("{}/{}@{}", reference.registry(), reference.repository(), p.digest);
    if args.json {
        super::output::json(&serde_json::json!({
            "reference": reference.to_string(), "digest": p.digest.to_string(), "pinned": pinned,
            "size": p.bytes.len(),
        }))?;
    } else {
        outln!("pushed {} {}", files.name, reference);
        outln!("{}", p.digest);
        outln!("pull with: eifbake pull {pinned}");
    }
    Ok(ExitCode::SUCCESS)
}
