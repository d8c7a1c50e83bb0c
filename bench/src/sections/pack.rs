//! pack: directory → ramdisk → EIF, eifbake against `find | sort | cpio
//! [| gzip -n | pigz -n]` + AWS `eif_build`, on the main tree.

use std::path::Path;

use anyhow::{bail, Result};

use super::*;
use crate::results::{Pack, PackRow};
use crate::run::{file_size, log, Ctx};

pub fn run(ctx: &Ctx) -> Result<Pack> {
    if !ctx.vars.contains_key("EIF_BUILD") {
        bail!("AWS eif_build is not available and could not be installed (see the log above).");
    }
    let p = ctx.var("P");
    log(&format!("pack: {} runs each", ctx.runs));
    let row = |name: &str, cmd: &str, ramdisk: &str, eif: &str| -> Result<PackRow> {
        let timing = ctx.timed(name, ctx.runs, cmd, &[])?;
        Ok(PackRow {
            timing,
            ramdisk_bytes: file_size(&p.join(ramdisk))?,
            eif_bytes: file_size(&p.join(eif))?,
        })
    };
    let failed = |e: anyhow::Error| e.context("a pack command failed");
    Ok(Pack {
        eb_plain: row("pack_eb_plain", EB_PACK_PLAIN, "eb.cpio", "eb.eif").map_err(failed)?,
        sh_plain: row("pack_sh_plain", SH_PACK_PLAIN, "sh.cpio", "sh.eif").map_err(failed)?,
        eb_gz: row("pack_eb_gz", EB_PACK_GZ, "eb.cpio.gz", "eb-gz.eif").map_err(failed)?,
        sh_gz: row("pack_sh_gz", SH_PACK_GZ, "sh.cpio.gz", "sh-gz.eif").map_err(failed)?,
        sh_pigz: row("pack_sh_pigz", SH_PACK_PIGZ, "pigz.cpio.gz", "pigz.eif").map_err(failed)?,
    })
}

/// The plain EIF AWS's tools wrote ($P/sh.eif), made here when the pack
/// section did not run.
pub fn aws_eif(ctx: &Ctx) -> Result<std::path::PathBuf> {
    let eif = ctx.var("P").join("sh.eif");
    if !Path::new(&eif).is_file() && ctx.vars.contains_key("EIF_BUILD") {
        log("measure: making an EIF with cpio + eif_build");
        ctx.sh(SH_PACK_PLAIN)?;
    }
    if !eif.is_file() {
        bail!("no EIF to measure (AWS eif_build unavailable: see the pack section).");
    }
    Ok(eif)
}
