//! sign: the plain ramdisk of the pack section packed into a signed EIF by
//! eifbake and by AWS `eif_build`, each twice (are the outputs the same
//! bytes?), plus eifbake unsigned for context.

use std::fs;

use anyhow::{bail, Context, Result};

use super::*;
use crate::results::{Pack, Sign, Signed};
use crate::run::{file_size, Ctx};

pub fn run(ctx: &Ctx, pack: Option<&Pack>) -> Result<Sign> {
    if pack.is_none() {
        bail!("the pack section did not run, so there is no ramdisk to sign.");
    }
    let p = ctx.var("P");
    let failed = |e: anyhow::Error| e.context("a sign command failed");
    let eb = ctx.timed("sign_eb", ctx.runs, SIGN_EB, &[]).map_err(failed)?;
    fs::copy(p.join("eb-signed.eif"), p.join("eb-signed-1.eif"))?;
    let unsigned = ctx.timed("sign_eb_unsigned", ctx.runs, SIGN_EB_UNSIGNED, &[]).map_err(failed)?;
    let aws = ctx.timed("sign_aws", ctx.runs, SIGN_AWS, &[]).map_err(failed)?;
    fs::copy(p.join("aws-signed.eif"), p.join("aws-signed-1.eif"))?;
    ctx.timed("sign_eb_again", 1, SIGN_EB, &[]).map_err(failed)?;
    ctx.timed("sign_aws_again", 1, SIGN_AWS, &[]).map_err(failed)?;
    Ok(Sign {
        eifbake: Signed {
            timing: eb,
            eif_bytes: file_size(&p.join("eb-signed.eif"))?,
            identical: same_bytes(&p.join("eb-signed.eif"), &p.join("eb-signed-1.eif"))?,
        },
        eifbake_unsigned: unsigned,
        unsigned_bytes: file_size(&p.join("eb-unsigned.eif"))?,
        aws: Signed {
            timing: aws,
            eif_bytes: file_size(&p.join("aws-signed.eif"))?,
            identical: same_bytes(&p.join("aws-signed.eif"), &p.join("aws-signed-1.eif"))?,
        },
        eifbake_pcrs: pcr0_pcr8(ctx, "eb-signed.eif")?,
        aws_pcrs: pcr0_pcr8(ctx, "aws-signed.eif")?,
    })
}

/// `{"PCR0":…,"PCR8":…}` of `$P/NAME` by `eifbake describe --json`.
fn pcr0_pcr8(ctx: &Ctx, name: &str) -> Result<String> {
    let out = ctx.sh(&format!("\"$EB\" describe --json \"$P/{name}\""))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("eifbake describe --json output")?;
    let m = &v["Measurements"];
    Ok(serde_json::json!({"PCR0": m["PCR0"], "PCR8": m["PCR8"]}).to_string())
}
