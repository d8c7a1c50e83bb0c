//! `eifbake fetch RECIPE`: pull every pinned image of a recipe into the
//! store, make its git, url and `cargo_lock` sources present in the store's
//! source cache (vendoring crates; checked against their pins like any
//! cached source), and run the fetch steps whose pinned output the store
//! lacks, so that `build --offline` and `lock --offline --update` need no
//! network.

use std::process::ExitCode;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::args::{Global, RecipeLockArgs};
use crate::fetch::fetch_lock;
use crate::lock::Lock;
use crate::oci::registry::Registry;
use crate::oci::store::Store;
use crate::progress::Progress;
use crate::recipe::{Recipe, SourceKind};
use crate::sources::SourceCache;

pub fn run(args: RecipeLockArgs, global: &Global) -> Result<ExitCode> {
    let (recipe, lock) = Lock::load_checked_at(&args.recipe, args.lockfile.as_deref())?;
    let store = Store::open(Store::default_path(global.store.as_deref())?)?;
    let progress = Progress::bytes("fetch", 0);
    let registry = Registry::new(&args.insecure_registry).with_mirrors(global.mirrors()?);
    let fetched = fetch_lock(&store, &lock, &registry, global.offline, &progress)?;
    progress.finish();
    let source = crate::trust::Source::Kept { offline: global.offline };
    let signed = crate::trust::check_images(&store, &recipe, &lock, &args.recipe, source)?;
    let vendored = cache_sources(&store, &recipe, &lock, &args.recipe, global.offline)?;
    let opts = super::build::fetch_step_options(
        &args.steps,
        args.lockfile.clone(),
        &args.insecure_registry,
        global,
    )?;
    let steps_run = crate::build::fetch_steps(&args.recipe, &opts)?;
    if args.json {
        let images: serde_json::Map<String, serde_json::Value> = fetched
            .iter()
            .map(|f| (f.name.clone(), serde_json::to_value(f).expect("serialisable")))
            .collect();
        let sources: serde_json::Map<String, serde_json::Value> = vendored
            .iter()
            .map(|(name, dir, crates)| {
                (name.clone(), serde_json::json!({ "dir": dir, "crates": crates.unwrap_or(0) }))
            })
            .collect();
        super::output::json(&serde_json::json!({
            "store": store.root(), "images": images, "sources": sources, "fetch_steps_run": steps_run,
            "signatures": signed
        }))?;
    } else {
        for f in &fetched {
            outln!(
                "{:<16} {} downloaded {} blobs, {} bytes  (oci:{}:{})",
                f.name,
                f.manifest,
                f.downloaded.blobs + f.downloaded.manifests,
                f.downloaded.bytes,
                store.root().display(),
                f.ref_name
            );
        }
        for (name, v) in &signed {
            outln!("{name:<16} signed by {} ({})", v.signers.len(), v.signers.join(", "));
        }
        for (name, pin) in &lock.steps {
            let how = if steps_run.contains(name) { "ran" } else { "in store" };
            outln!("step {name:<11} {} {how}", pin.output);
        }
    }
    for (name, dir, crates) in &vendored {
        match crates {
            Some(n) => outln!("{name:<16} {n} crates vendored  ({})", dir.display()),
            None => outln!("{name:<16} source in store  ({})", dir.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The git, url and `cargo_lock` sources of `recipe` (path sources are on
/// disk already), each made present in the source cache: (name, cached
/// directory, number of crates for a `cargo_lock` source).
fn cache_sources(
    store: &Store,
    recipe: &Recipe,
    lock: &Lock,
    recipe_path: &Path,
    offline: bool,
) -> Result<Vec<(String, PathBuf, Option<usize>)>> {
    let cache = SourceCache::new(store.layout().sources());
    let base_dir = Recipe::base_dir(recipe_path);
    let mut out = Vec::new();
    for (name, source) in &recipe.sources {
        if matches!(source.kind(), SourceKind::Path { .. }) {
            continue;
        }
        let is_crates = matches!(source.kind(), SourceKind::CargoLock { .. });
        let pin = lock
            .sources
            .get(name)
            .with_context(|| format!("sources.{name} is not pinned; run `eifbake lock`"))?;
        let dir = cache.get(name, source, &base_dir, pin, offline)?;
        out.push((name.clone(), dir, is_crates.then_some(pin.crates.len())));
    }
    Ok(out)
}
