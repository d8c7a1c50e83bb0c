//! `eifbake store import|export|ls|gc`: move images (and fetch steps'
//! pinned outputs) in and out of the store.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{Global, StoreCommand};
use crate::digest::Digest;
use crate::lock::Lock;
use crate::oci::model::DescriptorExt;
use crate::oci::store::{self, Store};

pub fn run(cmd: StoreCommand, global: &Global) -> Result<ExitCode> {
    let store = Store::open(Store::default_path(global.store.as_deref())?)?;
    match cmd {
        StoreCommand::Import { path, name, image } => {
            let name: Option<crate::oci::Reference> =
                name.map(|n| n.parse().map_err(|e| anyhow::anyhow!("--name: {e}"))).transpose()?;
            let names = if path.is_dir() {
                store.import_layout(&path, image.as_deref(), name.as_ref())?
            } else {
                store.import_archive(&path, image.as_deref(), name.as_ref())?
            };
            for n in names {
                outln!("imported {n}");
            }
        }
        StoreCommand::Export { image, output, fetched } => {
            let mut pins = Vec::new();
            for path in &fetched {
                let lock = Lock::load(path)?;
                pins.extend(lock.steps.into_iter().map(|(step, pin)| (step, pin.output)));
            }
            store.export(&image, &output, &pins)?;
            outln!("exported {image} to {}", output.display());
            for (step, tree) in &pins {
                outln!("exported step {step}'s fetched tree {tree}");
            }
        }
        StoreCommand::Ls { json } => {
            let index = store.index()?;
            let mut rows = Vec::new();
            for d in index.manifests() {
                let (present, missing) = store.closure(&d.sha256()?)?;
                let bytes: u64 = present
                    .iter()
                    .map(|b| std::fs::metadata(store.blob_path(b)).map(|m| m.len()).unwrap_or(0))
                    .sum();
                rows.push(serde_json::json!({
                    "name": d.annotation(store::REF_NAME),
                    "reference": d.annotation(store::ANN_REFERENCE),
                    "digest": d.digest(),
                    "media_type": d.media_type(),
                    "platform": d.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture())),
                    "bytes": bytes,
                    "complete": missing.is_empty(),
                }));
            }
            if json {
                super::output::json(&rows)?;
            } else {
                for r in &rows {
                    outln!(
                        "{}  {}  {}  {} bytes{}",
                        r["name"].as_str().unwrap_or("-"),
                        r["digest"].as_str().unwrap_or("-"),
                        r["platform"].as_str().unwrap_or("-"),
                        r["bytes"],
                        if r["complete"] == true { "" } else { "  (incomplete)" }
                    );
                }
            }
        }
        StoreCommand::Gc { keep, caches, dry_run, json } => {
            let mut roots: Vec<Digest> = Vec::new();
            for path in &keep {
                let lock = Lock::load(path)?;
                for img in lock.images.values() {
                    roots.push(img.manifest);
                    roots.extend(img.index);
                }
            }
            let removed = store.gc(&roots, dry_run)?;
            let cached = if caches { store.gc_caches(dry_run)? } else { Vec::new() };
            let bytes: u64 = removed.iter().map(|(_, n)| n).chain(cached.iter().map(|(_, n)| n)).sum();
            if json {
                let list: Vec<_> =
                    removed.iter().map(|(d, n)| serde_json::json!({"digest": d, "bytes": n})).collect();
                let cache_list: Vec<_> =
                    cached.iter().map(|(e, n)| serde_json::json!({"entry": e, "bytes": n})).collect();
                super::output::json(&serde_json::json!({
                    "dry_run": dry_run, "removed": list, "caches": cache_list, "bytes": bytes
                }))?;
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                for (d, n) in &removed {
                    outln!("{verb} {d} ({n} bytes)");
                }
                for (e, n) in &cached {
                    outln!("{verb} cache {e} ({n} bytes)");
                }
                outln!(
                    "{} blobs, {} cache entries, {bytes} bytes{}",
                    removed.len(),
                    cached.len(),
                    if dry_run { " (dry run)" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
