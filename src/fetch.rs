//! `fetch`: make every image a lock pins present, verified, in the store.
//!
//! Used by `eifbake fetch` and by `build` (which refuses to start before the
//! pinned blobs are all there). Blobs already in the store are not
//! downloaded again; with `offline` nothing is downloaded and the first
//! missing blob is an error naming it.
//!
//! Each image's config must parse as an OCI image configuration and name the
//! architecture its lock entry's `platform` says (a hand-edited lock, a
//! mislabelled image or an unreadable config is refused, naming the image
//! and the config's digest). Manifests and configs are re-hashed, and configs
//! checked against their descriptor's size, each time they are read
//! ([`Store::read_descriptor_bytes`]); layers are verified as they are
//! unpacked ([`crate::oci::layer`]).
//!
//! Not for: resolving tags (that is `lock`) or unpacking layers.
//!
//! Mirrors: images come from their registry or its mirrors (the
//! [`Registry`] the caller configured); either way each blob is checked
//! against its digest. The image is recorded in `index.json` under the
//! reference the lock names (not a mirror's), so `lock --offline` can
//! resolve it later.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use oci_spec::image::ImageConfiguration;

use crate::digest::Digest;
use crate::lock::Lock;
use crate::oci::registry::{PullRequest, PullStats, Registry};
use crate::oci::store::{self, Descriptor, Platform, Store};
use crate::oci::Reference;
use crate::platform::Arch;
use crate::progress::Progress;

/// One image made present in the store.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub name: String,
    pub reference: String,
    pub manifest: Digest,
    /// The name under which `index.json` lists it (`oci:STORE:REF_NAME`).
    pub ref_name: String,
    pub downloaded: PullStats,
}

/// What the image says it is for must be what the lock says: a hand-edited
/// lock or a mislabelled image would otherwise put another architecture's
/// programs into the enclave. A config that is not an OCI image
/// configuration is refused rather than let through unchecked.
fn check_config(
    store: &Store,
    name: &str,
    reference: &str,
    img: &crate::lock::LockedImage,
    c: &Descriptor,
) -> Result<()> {
    let bytes = store.read_descriptor_bytes(c).with_context(|| format!("image {name:?} ({reference})"))?;
    let config = ImageConfiguration::from_reader(&bytes[..]).with_context(|| {
        format!(
            "image {name:?} ({reference}): its config {} (manifest {}) is not an OCI image configuration; \
             the image is broken: pin another with `eifbake lock --update`",
            c.digest, img.manifest
        )
    })?;
    let have = config.architecture().to_string();
    if Arch::from_oci(&have) != Some(img.platform.arch) {
        bail!(
            "image {name:?} ({reference}): the lock pins manifest {} as {}, but its config {} says \
             architecture {have:?}; re-lock with `eifbake lock --update`, or fix the image's platform",
            img.manifest,
            img.platform,
            c.digest
        );
    }
    Ok(())
}

/// Pull every image of `lock` into `store` (in parallel, verifying each
/// digest and size) and list it in the store's `index.json`.
pub fn fetch_lock(
    store: &Store,
    lock: &Lock,
    registry: &Registry,
    offline: bool,
    progress: &Progress,
) -> Result<Vec<Fetched>> {
    let mut requests = Vec::new();
    for (name, img) in &lock.images {
        let reference: Reference =
            img.reference.parse().with_context(|| format!("lock image {name:?}: reference"))?;
        requests.push(PullRequest { reference, index: img.index, manifest: img.manifest });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stats: Vec<PullStats> = rt
        .block_on(registry.pull_images(store, &requests, offline, progress))
        .context("fetching the recipe's images")?;
    let mut out = Vec::new();
    for (((name, img), req), stats) in lock.images.iter().zip(&requests).zip(stats) {
        let reference = &req.reference;
        let m = store.manifest_any(&img.manifest)?;
        if let Some(c) = &m.config {
            check_config(store, name, &img.reference, img, c)?;
        }
        let mut desc = Descriptor {
            media_type: m.media_type.clone().unwrap_or_else(|| store::MEDIA_OCI_MANIFEST.to_string()),
            digest: img.manifest,
            size: std::fs::metadata(store.blob_path(&img.manifest))?.len(),
            annotations: BTreeMap::new(),
            platform: Some(Platform {
                architecture: img.platform.arch.oci().to_string(),
                os: img.platform.os.clone(),
                variant: img.platform.variant.clone(),
            }),
        };
        desc.annotations.insert(store::ANN_REFERENCE.to_string(), reference.to_string());
        if let Some(i) = img.index {
            desc.annotations.insert(store::ANN_INDEX.to_string(), i.to_string());
        }
        let ref_name = store::ref_name_for(&reference.to_string());
        store.add_image(&ref_name, desc)?;
        out.push(Fetched {
            name: name.clone(),
            reference: img.reference.clone(),
            manifest: img.manifest,
            ref_name,
            downloaded: stats,
        });
    }
    Ok(out)
}
