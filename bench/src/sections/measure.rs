//! measure: PCRs of one EIF (the plain EIF AWS `eif_build` wrote, so eifbake
//! also reads a foreign EIF) by `eifbake describe`, AWS's `EifReader`, and
//! two single-core SHA-384 passes that give the floor.

use anyhow::{Context, Result};

use super::*;
use crate::results::Measure;
use crate::run::{file_size, log, Ctx};

pub fn run(ctx: &Ctx) -> Result<Measure> {
    let eif = ctx.var("MEIF");
    let file_bytes = file_size(eif)?;
    // Warm the page cache.
    std::fs::read(eif)?;
    let runs = ctx.measure_runs;
    log(&format!("measure: {runs} runs each on {:.1} MiB", file_bytes as f64 / 1048576.0));
    let failed = |e: anyhow::Error| e.context("a measure command failed");
    let sha384_pass = ctx.timed("m_sha", runs, M_SHA, &[]).map_err(failed)?;
    let sha384sum = ctx.timed("m_sha384sum", runs, M_SHA384SUM, &[]).map_err(failed)?;
    let describe = ctx.timed("m_describe", runs, M_DESCRIBE, &[]).map_err(failed)?;
    let describe_json = ctx.timed("m_describe_json", runs, M_DESCRIBE_JSON, &[]).map_err(failed)?;
    let aws = ctx.timed("m_aws", runs, M_AWS, &[]).map_err(failed)?;
    Ok(Measure {
        file_bytes,
        disagreement: disagreement(&ctx.stdout_of("m_aws")?, &ctx.stdout_of("m_describe_json")?)?,
        sha384_pass,
        sha384sum,
        describe,
        describe_json,
        aws,
    })
}

/// The readers must agree before their speed means anything: `None` when
/// PCR0/1/2 of AWS's `<hex> PCRn` lines equal eifbake's JSON, else the last
/// difference.
fn disagreement(aws: &str, describe_json: &str) -> Result<Option<String>> {
    let v: serde_json::Value =
        serde_json::from_str(describe_json).context("eifbake describe --json output")?;
    let mut diff = None;
    for n in ["PCR0", "PCR1", "PCR2"] {
        let a = aws.lines().find_map(|l| l.strip_suffix(&format!(" {n}"))).unwrap_or("");
        let b = v["Measurements"][n].as_str().unwrap_or("");
        if a.is_empty() || a != b {
            diff = Some(format!("{n}: AWS '{a}', eifbake '{b}'"));
        }
    }
    Ok(diff)
}
