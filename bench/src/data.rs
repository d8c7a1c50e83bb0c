//! The data sets, kept in the work directory between runs: synthetic trees
//! ([`tree`]) and the three gzip layers made from the main tree
//! ([`layers`]), regenerated only when the generator (bench/src/gentree.rs)
//! changes.
//!
//! Not for: fixtures of the tests (those are in testkit/).
//!
//! Invariants: a tree or layer set is written under a temporary name and
//! renamed when complete, with a stamp naming the generator's version, so a
//! half-written one is never used.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use eifbake::digest::Digest;
use serde::{Deserialize, Serialize};

use crate::gentree::{self, TreeStats};
use crate::run::{log, remove, Ctx};

/// The generator's version: a hash of its source.
pub fn gen_hash() -> String {
    Digest::of(include_bytes!("gentree.rs")).hex()[..16].to_string()
}

/// The 8 MiB kernel stand-in (written with the first tree).
pub fn kernel_path(work: &Path) -> PathBuf {
    work.join(format!("kernel-{}.bin", gen_hash()))
}

/// `WORK/tree-SIZE` and its stats, generated unless already there.
pub fn tree(work: &Path, size: u64) -> Result<(PathBuf, TreeStats)> {
    let dir = work.join(format!("tree-{size}"));
    let stamp = work.join(format!("tree-{size}.stamp"));
    let kernel = kernel_path(work);
    if let Ok(text) = fs::read_to_string(&stamp) {
        if let Some((hash, stats)) = text.split_once('\n') {
            if hash == gen_hash() && dir.is_dir() && kernel.is_file() {
                return Ok((dir, serde_json::from_str(stats)?));
            }
        }
    }
    let tmp = work.join(format!("tree-{size}.tmp"));
    let ktmp = work.join("kernel.tmp");
    for p in [&dir, &tmp, &stamp, &ktmp] {
        remove(p)?;
    }
    log(&format!("generating the {size} MiB synthetic tree in {}", dir.display()));
    let stats = gentree::generate(&tmp, size, Some(&ktmp)).context("generating the synthetic tree")?;
    fs::rename(&ktmp, &kernel)?;
    fs::rename(&tmp, &dir)?;
    fs::write(&stamp, format!("{}\n{}", gen_hash(), serde_json::to_string(&stats)?))?;
    Ok((dir, stats))
}

/// One layer file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerFile {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub tar_size: u64,
}

/// What each layer takes from the tree.
const LAYER_PARTS: [&str; 3] = [
    "--no-recursion data --recursion data/assets.pak bin etc lib",
    "data/journal.log data/libbig.so opt share",
    "data/model.bin srv usr var",
];

/// Three gzip layers of the tree `$TREE`, each a share of the top directories
/// and one or two of the large files, made with GNU tar (sorted, owners 0,
/// fixed mtimes) and `gzip -n`, in `WORK/layers-SIZE`.
pub fn layers(ctx: &Ctx, size: u64) -> Result<Vec<LayerFile>> {
    let dir = ctx.work.join(format!("layers-{size}"));
    let stamp = dir.join("stamp.json");
    if let Ok(text) = fs::read_to_string(&stamp) {
        if let Ok((hash, files)) = serde_json::from_str::<(String, Vec<LayerFile>)>(&text) {
            if hash == gen_hash() {
                return Ok(files);
            }
        }
    }
    let tmp = dir.with_extension("tmp");
    remove(&dir)?;
    remove(&tmp)?;
    fs::create_dir_all(&tmp)?;
    log("making 3 gzip layers of the tree (tar + gzip -n)");
    let flags = "--sort=name --format=gnu --mtime=@1 --owner=0 --group=0 --numeric-owner";
    let mut files = Vec::new();
    for (i, parts) in LAYER_PARTS.iter().enumerate() {
        let name = format!("layer{}.tar.gz", i + 1);
        let out = tmp.join(&name);
        ctx.sh(&format!("cd \"$TREE\" && tar {flags} -cf - {parts} | gzip -n >'{}'", out.display()))
            .context("making the layers with tar + gzip -n failed")?;
        let (digest, size) = Digest::of_reader(File::open(&out)?)?;
        let (diff_id, tar_size) = Digest::of_reader(flate2::read::GzDecoder::new(File::open(&out)?))?;
        files.push(LayerFile { path: dir.join(&name), digest, size, diff_id, tar_size });
    }
    fs::write(tmp.join("stamp.json"), serde_json::to_string(&(gen_hash(), &files))?)?;
    fs::rename(&tmp, &dir)?;
    Ok(files)
}
