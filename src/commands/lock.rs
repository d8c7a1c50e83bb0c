//! `eifbake lock RECIPE [--update]`: pin every image of a recipe by digest.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::args::{Global, LockArgs};
use crate::lock::{relock, Lock};
use crate::oci::registry::Registry;
use crate::recipe::Recipe;

pub fn run(args: LockArgs, global: &Global) -> Result<ExitCode> {
    let (recipe, _) = Recipe::load(&args.recipe)?;
    let lock_path = args.lockfile.clone().unwrap_or_else(|| Lock::default_path(&args.recipe, &recipe.name));
    let existing = if lock_path.exists() {
        Some(Lock::load(&lock_path).with_context(|| {
            format!("cannot update {}: fix or delete it, then run `eifbake lock` again", lock_path.display())
        })?)
    } else {
        None
    };
    let registry = Registry::new(&args.insecure_registry);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let arch = recipe.arch.oci();
    let (lock, changes) = relock(&args.recipe, &lock_path, existing.as_ref(), args.update, |name, r| {
        if global.offline {
            bail!("image {name:?} ({r}) must be resolved, but --offline forbids network access");
        }
        rt.block_on(registry.resolve(r, arch))
    })?;
    lock.save(&lock_path)?;
    if args.json {
        let v = serde_json::json!({ "lockfile": lock_path, "images": changes });
        super::output::json(&v)?;
    } else {
        for c in &changes {
            outln!("{:<9} {:<16} {} {}", c.action, c.name, c.manifest, c.reference);
        }
        outln!("wrote {}", lock_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
