//! `eifbake lock RECIPE [--update]`: pin every image of a recipe by digest.
//!
//! Where a reference is resolved: a reference with a digest whose blobs are
//! in the store is resolved there (no registry needed, online or not); with
//! `--offline` every reference is resolved from the store, a tag by the
//! reference recorded for an image at `fetch` or `store import --name`;
//! otherwise the registry (or its mirrors) says what a tag means now.
//!
//! Sources: with `--offline` nothing is downloaded and no git remote asked
//! ([`crate::sources::pin_offline`]): a url or `cargo_lock` pin is kept
//! while it matches the recipe (with `--update`, only when the store's
//! source cache holds its tree, checked), and anything that would need a
//! download is refused, naming the source and the command that fetches it.
//!
//! Fetch steps (`network = true`) are pinned by running them
//! ([`crate::build::pin_fetch_steps`]): that needs the images in the store
//! (they are pulled), and a runtime.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::args::{Global, LockArgs};
use crate::lock::{relock, Lock};
use crate::oci::layout::Layout;
use crate::oci::registry::Registry;
use crate::oci::Store;
use crate::recipe::Recipe;

pub fn run(args: LockArgs, global: &Global) -> Result<ExitCode> {
    let (recipe, _) = Recipe::load(&args.target.recipe)?;
    let lock_path =
        args.target.lockfile.clone().unwrap_or_else(|| Lock::default_path(&args.target.recipe, &recipe.name));
    let existing = if lock_path.exists() {
        Some(Lock::load(&lock_path).with_context(|| {
            format!("cannot update {}: fix or delete it, then run `eifbake lock` again", lock_path.display())
        })?)
    } else {
        None
    };
    // The store is only read: a missing one is not created.
    let store_dir = Store::default_path(global.store.as_deref())?;
    let store =
        if Layout::new(&store_dir).oci_layout().is_file() { Some(Store::open(&store_dir)?) } else { None };
    let source_cache = crate::sources::SourceCache::new(Layout::new(&store_dir).sources());
    let registry = Registry::new(&args.target.insecure_registry).with_mirrors(global.mirrors()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (mut lock, changes) = relock(
        &args.target.recipe,
        &lock_path,
        existing.as_ref(),
        args.update,
        global.offline.then_some(&source_cache),
        |name, r| {
            // Each image for its own platform ([images.NAME] platform), else the recipe's arch.
            let arch = recipe.image_platform(name).arch;
            if r.digest().is_some() || global.offline {
                if let Some(found) = store.as_ref().map(|s| s.resolve_local(r, arch)).transpose()?.flatten() {
                    return Ok(found);
                }
            }
            if global.offline {
                bail!(
                "image {name:?} ({r}) must be resolved, --offline forbids asking a registry, and the store {} \
                 has no image recorded as {r}; import one with `eifbake store import PATH --name {r}` \
                 (or fetch it once online)",
                store_dir.display()
            );
            }
            rt.block_on(registry.resolve(r, arch))
        },
    )?;
    let signed = check_signatures(&recipe, &mut lock, &args.target.recipe, &store_dir)?;
    let fetched = if recipe.steps.iter().any(|s| s.network) {
        let opts = super::build::fetch_step_options(
            &args.target.steps,
            Some(lock_path.clone()),
            &args.target.insecure_registry,
            global,
        )?;
        crate::build::pin_fetch_steps(
            &args.target.recipe,
            &mut lock,
            &lock_path,
            existing.as_ref(),
            args.update,
            &opts,
        )?
    } else {
        Vec::new()
    };
    lock.save(&lock_path)?;
    if args.target.json {
        let v = serde_json::json!({
            "lockfile": lock_path, "images": changes, "fetch_steps_run": fetched, "signatures": signed
        });
        super::output::json(&v)?;
    } else {
        for c in &changes {
            outln!("{:<9} {:<16} {} {}", c.action, c.name, c.manifest, c.reference);
        }
        for (name, v) in &signed {
            outln!("signed    {name:<16} by {} ({})", v.signers.len(), v.signers.join(", "));
        }
        for (name, pin) in &lock.steps {
            let how = if fetched.contains(name) { "ran" } else { "kept" };
            outln!("{how:<9} step {name:<11} {} ({} entries)", pin.output, pin.files.len());
        }
        outln!("wrote {}", lock_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The images with a `[trust]` policy: their signatures fetched from the
/// lookaside, kept in the store (created if need be), checked, and the
/// keyring's sha256 and the signers recorded in `lock`.
fn check_signatures(
    recipe: &Recipe,
    lock: &mut Lock,
    recipe_path: &std::path::Path,
    store_dir: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, crate::trust::ImageVerdict>> {
    if !recipe.images.keys().any(|n| recipe.image_trust(n).is_some()) {
        return Ok(Default::default());
    }
    let store = Store::open(store_dir)?;
    let verdicts =
        crate::trust::check_images(&store, recipe, lock, recipe_path, crate::trust::Source::Lookaside)?;
    let base = Recipe::base_dir(recipe_path);
    for (name, v) in &verdicts {
        let t = recipe.image_trust(name).expect("checked images have a policy");
        let keyring = std::fs::read(base.join(&t.keyring))?;
        let li = lock.images.get_mut(name).expect("checked images are locked");
        li.keyring = Some(crate::digest::Digest::of(&keyring));
        li.signers = v.signers.clone();
    }
    Ok(verdicts)
}
