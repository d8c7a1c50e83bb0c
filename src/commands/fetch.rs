//! `eifbake fetch RECIPE`: pull every pinned image of a recipe into the
//! store, and run the fetch steps whose pinned output it lacks, so
//! `build --offline` works afterwards.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{FetchArgs, Global};
use crate::fetch::fetch_lock;
use crate::lock::Lock;
use crate::oci::registry::Registry;
use crate::oci::store::Store;
use crate::progress::Progress;

pub fn run(args: FetchArgs, global: &Global) -> Result<ExitCode> {
    let (_recipe, lock) = Lock::load_checked_at(&args.recipe, args.lockfile.as_deref())?;
    let store = Store::open(Store::default_path(global.store.as_deref())?)?;
    let progress = Progress::bytes("fetch", 0);
    let registry = Registry::new(&args.insecure_registry).with_mirrors(global.mirrors()?);
    let fetched = fetch_lock(&store, &lock, &registry, global.offline, &progress)?;
    progress.finish();
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
        super::output::json(
            &serde_json::json!({ "store": store.root(), "images": images, "fetch_steps_run": steps_run }),
        )?;
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
        for (name, pin) in &lock.steps {
            let how = if steps_run.contains(name) { "ran" } else { "in store" };
            outln!("step {name:<11} {} {how}", pin.output);
        }
    }
    Ok(ExitCode::SUCCESS)
}
