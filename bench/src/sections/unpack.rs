//! unpack: the three gzip layers applied in order into an empty directory,
//! by eifbake's layer application and by GNU tar; the two trees' listings
//! must agree.

use anyhow::Result;

use super::*;
use crate::data::LayerFile;
use crate::results::Unpack;
use crate::run::{log, remove, Ctx};

pub fn run(ctx: &Ctx, layers: &[LayerFile]) -> Result<Unpack> {
    let u = ctx.var("U").to_path_buf();
    for l in layers {
        // Warm the page cache.
        std::fs::read(&l.path)?;
    }
    std::fs::create_dir_all(&u)?;
    log(&format!("unpack: {} runs each", ctx.runs));
    let failed = |e: anyhow::Error| e.context("an unpack command failed");
    let tar = ctx.timed("unpack_tar", ctx.runs, UNPACK_TAR, &[&u.join("tar")]).map_err(failed)?;
    let eifbake = ctx.timed("unpack_eb", ctx.runs, UNPACK_EB, &[&u.join("eb")]).map_err(failed)?;
    let result = Unpack {
        layer_bytes: layers.iter().map(|l| l.size).collect(),
        tar_bytes: layers.iter().map(|l| l.tar_size).sum(),
        listing_tar: listing(ctx, "$U/tar")?,
        listing_eifbake: listing(ctx, "$U/eb")?,
        tar,
        eifbake,
    };
    remove(&u)?;
    Ok(result)
}

/// Same tree? A hash over type, mode, owner, size, link target and path of
/// every entry (contents are compared by the layer tests, not here).
fn listing(ctx: &Ctx, dir: &str) -> Result<String> {
    let out = ctx.sh(&format!(
        "cd \"{dir}\" && find . -mindepth 1 -printf '%y %m %U:%G %s %l %p\\n' | LC_ALL=C sort | sha256sum | cut -c1-16"
    ))?;
    Ok(out.trim().to_string())
}
