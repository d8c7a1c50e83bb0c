//! `eifbake fetch RECIPE`: pull every pinned image of a recipe into the store.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{FetchArgs, Global};
use crate::lock::Lock;
use crate::oci::registry::{PullRequest, PullStats, Registry};
use crate::oci::store::{self, Descriptor, Platform, Store};
use crate::oci::Reference;
use crate::progress::Progress;

pub fn run(args: FetchArgs, global: &Global) -> Result<ExitCode> {
    let (_recipe, lock) = Lock::load_checked_at(&args.recipe, args.lockfile.as_deref())?;
    let store = Store::open(Store::default_path(global.store.as_deref())?)?;
    let registry = Registry::new(&args.insecure_registry);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Keeps `store gc` from deleting blobs before the images are named in index.json.
    let _writing = store.writing()?;
    let progress = Progress::bytes("fetch", 0);
    let mut requests = Vec::new();
    for (name, img) in &lock.images {
        let reference: Reference =
            img.reference.parse().with_context(|| format!("lock image {name:?}: reference"))?;
        requests.push(PullRequest { reference, index: img.index, manifest: img.manifest });
    }
    let stats: Vec<PullStats> = rt
        .block_on(registry.pull_images(&store, &requests, global.offline, &progress))
        .context("fetching the recipe's images")?;
    let mut report = BTreeMap::new();
    for (((name, img), req), stats) in lock.images.iter().zip(&requests).zip(stats) {
        let reference = &req.reference;
        let m = store.manifest_any(&img.manifest)?;
        let (os, arch) = img.platform.split_once('/').unwrap_or(("linux", img.platform.as_str()));
        let mut desc = Descriptor {
            media_type: m.media_type.clone().unwrap_or_else(|| store::MEDIA_OCI_MANIFEST.to_string()),
            digest: img.manifest,
            size: std::fs::metadata(store.blob_path(&img.manifest))?.len(),
            annotations: BTreeMap::new(),
            platform: Some(Platform { architecture: arch.to_string(), os: os.to_string(), variant: None }),
        };
        desc.annotations.insert(store::ANN_REFERENCE.to_string(), reference.to_string());
        if let Some(i) = img.index {
            desc.annotations.insert(store::ANN_INDEX.to_string(), i.to_string());
        }
        let ref_name = store::ref_name_for(&reference.to_string());
        store.add_image(&ref_name, desc)?;
        report.insert(name.clone(), serde_json::json!({
            "reference": img.reference, "manifest": img.manifest, "ref_name": ref_name, "downloaded": stats,
        }));
    }
    progress.finish();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "store": store.root(), "images": report }))?
        );
    } else {
        for (name, r) in &report {
            println!(
                "{:<16} {} downloaded {} blobs, {} bytes  (oci:{}:{})",
                name,
                r["manifest"].as_str().unwrap_or_default(),
                r["downloaded"]["blobs"].as_u64().unwrap_or(0)
                    + r["downloaded"]["manifests"].as_u64().unwrap_or(0),
                r["downloaded"]["bytes"],
                store.root().display(),
                r["ref_name"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
