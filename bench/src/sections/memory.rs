//! memory as the tree grows: one run of each step per tree size (the main
//! one and the `--scale-mib` ones), peak RSS with wall time for context.
//! eifbake's steps should stay flat; AWS `eif_build` and `EifReader` hold
//! whole sections in memory.

use anyhow::{bail, Result};

use crate::data;
use crate::results::{Memory, MemoryStep};
use crate::run::{log, remove, Ctx};

/// (label, eifbake's?, command): `$MT` is the tree, `$MP` the output directory.
const STEPS: [(&str, bool, &str); 5] = [
    ("eifbake ramdisk --gzip", true, r#""$EB" ramdisk --gzip "$MT" -o "$MP/r.cpio.gz""#),
    (
        "eifbake eif",
        true,
        r#""$EB" eif --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$MP/r.cpio.gz" -o "$MP/e.eif""#,
    ),
    ("eifbake describe", true, r#""$EB" describe "$MP/e.eif""#),
    (
        "AWS eif_build",
        false,
        r#""$EIF_BUILD" --kernel "$KERNEL" --cmdline "$CMDLINE" --ramdisk "$MP/r.cpio.gz" --output "$MP/aws.eif" >/dev/null"#,
    ),
    ("AWS EifReader", false, r#""$BENCH" tool aws-measure "$MP/e.eif""#),
];

pub fn run(ctx: &mut Ctx, main_size: u64, scale: &[u64]) -> Result<Memory> {
    let mut sizes: Vec<u64> = scale.iter().copied().chain([main_size]).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 {
        bail!("only one tree size (give --scale-mib to add sizes).");
    }
    let mut steps: Vec<MemoryStep> = STEPS
        .iter()
        .map(|(label, eifbake, _)| MemoryStep {
            label: label.to_string(),
            eifbake: *eifbake,
            timings: vec![],
        })
        .collect();
    let mut entries = Vec::new();
    for &size in &sizes {
        let (tree, stats) = data::tree(&ctx.work, size)?;
        entries.push(stats.entries());
        let mp = ctx.work.join(format!("mem-{size}"));
        remove(&mp)?;
        std::fs::create_dir_all(&mp)?;
        ctx.set("MT", tree);
        ctx.set("MP", &mp);
        log(&format!("memory: {size} MiB tree"));
        for (i, (_, eifbake, cmd)) in STEPS.iter().enumerate() {
            let t = ctx.timed(&format!("mem_{i}_{size}"), 1, cmd, &[]);
            match t {
                Ok(t) => steps[i].timings.push(Some(t)),
                // eifbake's steps must work; the peers' failures show as n/a.
                Err(e) if *eifbake => return Err(e.context("a step failed")),
                Err(_) => steps[i].timings.push(None),
            }
        }
        remove(&mp)?;
    }
    Ok(Memory { sizes, entries, steps })
}
