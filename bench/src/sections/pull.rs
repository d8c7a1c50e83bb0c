//! pull: registry → local OCI layout. A loopback registry
//! ([`eifbake_testkit::registry::LoopbackRegistry`], stopped when this
//! section returns, also on error) holds the three-layer image, written
//! into an OCI layout by the testkit's image writer and pushed with skopeo;
//! `eifbake fetch` and `skopeo copy` pull it into empty directories.

use std::fs::{self, File};

use anyhow::{bail, Context, Result};
use eifbake::oci::model::media;
use eifbake::oci::store::Store;
use eifbake_testkit::oci::{try_push, try_write_image_blobs, LayerBlob};
use eifbake_testkit::registry::LoopbackRegistry;

use super::*;
use crate::data::LayerFile;
use crate::results::Pull;
use crate::run::{log, remove, Ctx};

pub fn run(ctx: &mut Ctx, layers: &[LayerFile]) -> Result<Pull> {
    for tool in ["docker-registry", "skopeo"] {
        if ctx.sh(&format!("command -v {tool}")).is_err() {
            bail!("docker-registry or skopeo is not installed (scripts/deps.sh installs them).");
        }
    }
    let reg = LoopbackRegistry::try_start(None)?;
    let pl = ctx.var("PL").to_path_buf();
    remove(&pl)?;
    fs::create_dir_all(pl.join("recipes"))?;
    let image = reg.image("bench/synthetic:1");
    push_image(&pl.join("layout"), layers, &image)
        .context("could not push the image to the loopback registry")?;
    let recipe = write_recipe(ctx, &pl, &image)?;
    ctx.set("IMAGE", &image);
    ctx.set("RECIPE", &recipe);
    ctx.sh(r#""$EB" lock "$RECIPE""#).context("`eifbake lock` failed")?;
    log(&format!("pull: {} runs each", ctx.runs));
    let failed = |e: anyhow::Error| e.context("a pull command failed");
    let skopeo = ctx.timed("pull_skopeo", ctx.runs, PULL_SKOPEO, &[&pl.join("skopeo")]).map_err(failed)?;
    let eifbake = ctx.timed("pull_eb", ctx.runs, PULL_EB, &[&pl.join("store")]).map_err(failed)?;
    // Both must hold every layer the image has.
    let mut missing = None;
    for (i, l) in layers.iter().enumerate() {
        let blob = format!("blobs/sha256/{}", l.digest.hex());
        if !pl.join("store").join(&blob).is_file() {
            missing = Some(format!("eifbake store lacks layer {}", i + 1));
        }
        if !pl.join("skopeo").join(&blob).is_file() {
            missing = Some(format!("skopeo layout lacks layer {}", i + 1));
        }
    }
    remove(&pl.join("store"))?;
    remove(&pl.join("skopeo"))?;
    Ok(Pull {
        layers: layers.len(),
        compressed_bytes: layers.iter().map(|l| l.size).sum(),
        missing,
        skopeo,
        eifbake,
    })
}

/// An OCI layout of the layers in `dir`, tagged `bench`, pushed to `image`.
fn push_image(dir: &std::path::Path, layers: &[LayerFile], image: &str) -> Result<()> {
    remove(dir)?;
    let store = Store::open(dir)?;
    let mut blobs = Vec::new();
    for l in layers {
        store.put_blob_verified(File::open(&l.path)?, &l.digest, l.size)?;
        blobs.push(LayerBlob {
            media_type: media::OCI_TAR_GZIP.into(),
            digest: l.digest,
            size: l.size,
            diff_id: l.diff_id,
        });
    }
    let desc = try_write_image_blobs(&store, "amd64", &blobs)?;
    try_push(&store, "bench", desc, image, None)
}

/// The smallest recipe lock accepts: one image, used for rootfs, kernel and init.
fn write_recipe(ctx: &Ctx, pl: &std::path::Path, image: &str) -> Result<std::path::PathBuf> {
    // The first small file of the tree (f000000.o in the 512 MiB tree).
    let init = ctx.sh(r#"cd "$TREE" && ls bin/pkg-0000/sub-00 | LC_ALL=C sort | grep '^f' | head -n 1"#)?;
    let text = format!(
        "name = \"bench\"\narch = \"x86_64\"\n\n[images]\nsynthetic = \"{image}\"\n\n[enclave]\nrootfs = \"synthetic\"\nkernel = {{ image = \"synthetic\", path = \"/data/libbig.so\" }}\ninit = {{ image = \"synthetic\", path = \"/bin/pkg-0000/sub-00/{}\" }}\ncmdline = \"console=ttyS0\"\ncommand = [\"/bin/sh\"]\n",
        init.trim()
    );
    let p = pl.join("recipes/bench.toml");
    fs::write(&p, text)?;
    Ok(p)
}
