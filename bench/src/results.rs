//! What one benchmark run found, as typed data: the settings, the machine,
//! and each section's figures or the reason it was skipped. The harness
//! fills it; [`crate::render`] turns it into bench/RESULTS.md and serde into
//! JSON.
//!
//! Not for: derived figures (ratios, targets met or missed): the renderer
//! computes those from the raw samples here, so the markdown and the JSON
//! cannot disagree.
//!
//! Invariants: every [`Timing`] holds the samples of runs that exited 0;
//! sizes are bytes, times nanoseconds, memory KiB.

use serde::{Deserialize, Serialize};

use crate::gentree::TreeStats;
use crate::timing::Timing;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub settings: Settings,
    pub machine: Machine,
    /// The main tree.
    pub tree: TreeStats,
    pub pack: Outcome<Pack>,
    pub sign: Outcome<Sign>,
    pub measure: Outcome<Measure>,
    pub memory: Outcome<Memory>,
    pub unpack: Outcome<Unpack>,
    pub pull: Outcome<Pull>,
    /// Absent from the JSON of runs before the section existed.
    #[serde(default)]
    pub apps: Outcome<Apps>,
    #[serde(default)]
    pub onepass: Outcome<OnePass>,
}

/// A section's figures, or why it has none.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Done(T),
    Skipped(String),
}

impl<T> Default for Outcome<T> {
    fn default() -> Self {
        Outcome::Skipped("not measured in this run".into())
    }
}

impl<T> Outcome<T> {
    pub fn done(&self) -> Option<&T> {
        match self {
            Outcome::Done(t) => Some(t),
            Outcome::Skipped(_) => None,
        }
    }
}

impl<T> From<anyhow::Result<T>> for Outcome<T> {
    fn from(r: anyhow::Result<T>) -> Self {
        match r {
            Ok(t) => Outcome::Done(t),
            Err(e) => Outcome::Skipped(format!("{e:#}")),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub size_mib: u64,
    pub runs: u32,
    /// Runs of the measure section (at least 5 unless quick).
    pub measure_runs: u32,
    /// Extra tree sizes of the memory section.
    pub scale_mib: Vec<u64>,
    pub quick: bool,
    /// The sections `--only` selected (empty: all).
    #[serde(default)]
    pub only: Vec<String>,
    /// Runs of each command of the apps section (each cold build compiles).
    #[serde(default)]
    pub app_runs: u32,
    /// The command line that reproduces this run.
    pub command: String,
    /// The kernel command line packed into every EIF.
    pub cmdline: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// `YYYY-MM-DD HH:MM UTC` at the start.
    pub date: String,
    pub duration_s: u64,
    pub git_branch: String,
    pub git_rev: String,
    pub eifbake_version: String,
    pub rustc: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub load_start: String,
    pub load_end: String,
    /// The peers' versions, one string each.
    pub peers: Vec<String>,
    /// The user the commands ran as.
    pub user: String,
    /// What else was using the CPU when the run started (`ps`, the busiest
    /// processes other than this run's).
    #[serde(default)]
    pub others: Vec<String>,
}

/// A command's timing and the sizes of what it wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PackRow {
    pub timing: Timing,
    pub ramdisk_bytes: u64,
    pub eif_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pack {
    pub eb_plain: PackRow,
    pub sh_plain: PackRow,
    pub eb_gz: PackRow,
    pub sh_gz: PackRow,
    pub sh_pigz: PackRow,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Signed {
    pub timing: Timing,
    pub eif_bytes: u64,
    /// Whether a second run wrote the same bytes.
    pub identical: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sign {
    pub eifbake: Signed,
    pub eifbake_unsigned: Timing,
    pub unsigned_bytes: u64,
    pub aws: Signed,
    /// PCR0 and PCR8 of eifbake's signed EIF, as compact JSON.
    pub eifbake_pcrs: String,
    pub aws_pcrs: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measure {
    pub file_bytes: u64,
    /// `None` when PCR0/1/2 agree, else what differs.
    pub disagreement: Option<String>,
    pub sha384_pass: Timing,
    pub sha384sum: Timing,
    pub describe: Timing,
    pub describe_json: Timing,
    pub aws: Timing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Memory {
    /// Tree sizes, ascending, MiB.
    pub sizes: Vec<u64>,
    /// Entries (files + directories + symlinks) of each tree.
    pub entries: Vec<u64>,
    pub steps: Vec<MemoryStep>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryStep {
    pub label: String,
    /// Whether it is one of eifbake's steps (those have a target).
    pub eifbake: bool,
    /// One per size of [`Memory::sizes`]; `None` when the tool is missing or failed.
    pub timings: Vec<Option<Timing>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unpack {
    pub layer_bytes: Vec<u64>,
    pub tar_bytes: u64,
    /// Listing hashes of the two trees.
    pub listing_tar: String,
    pub listing_eifbake: String,
    pub tar: Timing,
    pub eifbake: Timing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pull {
    pub layers: usize,
    pub compressed_bytes: u64,
    /// `None` when both copies hold every layer blob, else which lacks one.
    pub missing: Option<String>,
    pub skopeo: Timing,
    pub eifbake: Timing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Apps {
    pub runs: u32,
    pub eb_cold: Timing,
    pub eb_noop: Timing,
    pub eb_change: Timing,
    pub eb_verify: Timing,
    pub buildah_cold: Timing,
    pub buildah_noop: Timing,
    pub buildah_change: Timing,
    /// Sandbox seconds of the compile step in the last cold build.
    pub cold_step_s: f64,
    /// Sandbox seconds of the compile step in each change run, in run order.
    pub change_step_s: Vec<f64>,
    pub eif_bytes: u64,
    /// buildah's size of the image it built, as `buildah images` prints it.
    pub buildah_image_size: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OnePass {
    /// The directory packed.
    pub dir: String,
    /// Entries below it (`find -mindepth 1`) and its bytes (`du -sb`).
    pub entries: u64,
    pub dir_bytes: u64,
    pub ramdisk_bytes: u64,
    pub eif_bytes: u64,
    /// `eifbake eif --ramdisk DIR`: the one pass.
    pub eifbake: Timing,
    /// `eifbake ramdisk DIR -o R` + `eifbake eif --ramdisk R`: the same EIF in two steps.
    pub two_steps: Timing,
    pub sha384sum: Timing,
    pub sha384_pass: Timing,
}
