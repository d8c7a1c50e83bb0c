//! onepass: from a directory of real files to an EIF, against one SHA-384
//! pass over the EIF that results (the floor: PCR0 alone hashes almost every
//! byte of it, so no writer can be faster on one core).
//!
//! The one pass is `eifbake eif … --ramdisk DIR`: the directory is packed
//! into the EIF as it is written, no intermediate ramdisk file. For
//! comparison the same EIF is made in two steps, `eifbake ramdisk DIR -o R`
//! then `eifbake eif … --ramdisk R`, and the two must be byte-identical.
//!
//! Not for: the synthetic tree (the pack section has it); this one reads a
//! directory of the machine's own files (`/usr/share` unless
//! `--onepass-dir`), so its figures depend on the machine.

use anyhow::{bail, Result};

use super::*;
use crate::results::OnePass;
use crate::run::{file_size, log, remove, Ctx};

pub fn run(ctx: &mut Ctx, dir: &std::path::Path) -> Result<OnePass> {
    if !dir.is_dir() {
        bail!("{} is not a directory (give --onepass-dir).", dir.display());
    }
    let op = ctx.work.join("onepass");
    remove(&op)?;
    std::fs::create_dir_all(&op)?;
    ctx.set("OP", &op);
    ctx.set("OD", dir);
    // Warm the page cache, and count what is there.
    let counts = ctx.sh(r#"find "$OD" -mindepth 1 | wc -l; du -sb "$OD" | cut -f1"#)?;
    let mut n = counts.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    let (entries, dir_bytes) = (n.next().unwrap_or(0), n.next().unwrap_or(0));
    ctx.sh(r#"find "$OD" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true"#)?;
    log(&format!("onepass: {} ({entries} entries), {} runs each", dir.display(), ctx.runs));
    let failed = |e: anyhow::Error| e.context("a onepass command failed");
    let eifbake = ctx.timed("op_eb", ctx.runs, ONEPASS_EB, &[]).map_err(failed)?;
    let eif_bytes = file_size(&op.join("e.eif"))?;
    let two_steps = ctx.timed("op_two", ctx.runs, ONEPASS_TWO_STEPS, &[]).map_err(failed)?;
    let ramdisk_bytes = file_size(&op.join("r.cpio"))?;
    if !same_bytes(&op.join("e.eif"), &op.join("e2.eif"))? {
        bail!("onepass: `eif --ramdisk DIR` and `ramdisk` + `eif` gave different EIFs");
    }
    let sha384sum = ctx.timed("op_sha384sum", ctx.runs, ONEPASS_SHA384SUM, &[]).map_err(failed)?;
    let sha384_pass = ctx.timed("op_sha", ctx.runs, ONEPASS_SHA, &[]).map_err(failed)?;
    remove(&op)?;
    Ok(OnePass {
        dir: dir.display().to_string(),
        entries,
        dir_bytes,
        ramdisk_bytes,
        eif_bytes,
        eifbake,
        two_steps,
        sha384sum,
        sha384_pass,
    })
}
