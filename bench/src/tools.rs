//! The helper programs the benchmark times beside eifbake, run as
//! `eifbake-bench tool NAME ARGS` so each is a process of its own whose time
//! and memory are measured like any other command's:
//!
//! - `sha384-pass FILE`: one SHA-384 pass over a file on one core, reading
//!   with 4 MiB buffers. The floor for measuring an EIF: PCR0 alone needs a
//!   SHA-384 over almost every byte, so no reader can be faster on one core.
//!   It uses the same `sha2` crate as eifbake, so the comparison measures the
//!   reader's overhead, not a different hash implementation. Prints
//!   `<hex>  FILE` like `sha384sum`.
//! - `aws-measure EIF`: AWS's own reader, `EifReader::from_eif` +
//!   `check_crc` + `get_measurements` from aws-nitro-enclaves-image-format,
//!   as nitro-cli's `describe-eif` does. Prints `<hex> PCRn` lines (the shape
//!   of eifbake's `.pcrs` files) so the harness can check both readers agree.
//! - `apply-layers TARGET LAYER.tar.gz...`: eifbake's own layer application
//!   ([`eifbake::oci::layer::apply_layers`]), which no CLI command exposes
//!   on its own; the OCI gzip media type and default options (owners kept
//!   when run as root, as GNU tar does). Prints the summary as JSON.
//!
//! - `spawn --report FILE -- ARGV`: the trampoline that runs each timed
//!   command (see [`crate::timing`]).
//!
//! Not for: anything but benchmarks and cross-checks.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use eifbake::oci::layer::{apply_layers, ApplyOptions, LayerSource};
use eifbake::oci::model::media;
use sha2::{Digest, Sha384};

/// One of the helpers, with its arguments.
#[derive(clap::Subcommand, Debug)]
pub enum Tool {
    /// One SHA-384 pass over FILE (the floor for any EIF reader).
    Sha384Pass { file: PathBuf },
    /// PCRs of EIF with AWS's EifReader.
    AwsMeasure { eif: PathBuf },
    /// Apply gzip layers, in order, to the new directory TARGET.
    ApplyLayers {
        target: PathBuf,
        #[arg(required = true)]
        layers: Vec<String>,
    },
    /// Run ARGV, reap it and write its figures to REPORT (crate::timing).
    Spawn {
        #[arg(long)]
        report: PathBuf,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

pub fn run(tool: &Tool) -> Result<()> {
    match tool {
        Tool::Spawn { report, argv } => std::process::exit(crate::timing::trampoline(argv, report)?.into()),
        Tool::Sha384Pass { file } => sha384_pass(file),
        Tool::AwsMeasure { eif } => aws_measure(eif),
        Tool::ApplyLayers { target, layers } => {
            let sources: Vec<LayerSource> =
                layers.iter().map(|p| LayerSource::new(p, media::OCI_TAR_GZIP, p.as_str())).collect();
            let summary = apply_layers(&sources, target, &ApplyOptions::default())?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
    }
}

fn sha384_pass(path: &Path) -> Result<()> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut h = Sha384::new();
    loop {
        let n = f.read(&mut buf).with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    println!("{}  {}", hex::encode(h.finalize()), path.display());
    Ok(())
}

fn aws_measure(path: &Path) -> Result<()> {
    let name = path.display().to_string();
    let mut reader = match EifReader::from_eif(name.clone()) {
        Ok(r) => r,
        Err(e) => bail!("{name}: AWS EifReader failed: {e}"),
    };
    if !reader.check_crc() {
        bail!("{name}: AWS EifReader: CRC-32 mismatch");
    }
    let pcrs = match reader.get_measurements() {
        Ok(m) => m,
        Err(e) => bail!("{name}: AWS EifReader: measurements failed: {e}"),
    };
    for n in ["PCR0", "PCR1", "PCR2", "PCR8"] {
        if let Some(hex) = pcrs.get(n) {
            println!("{hex} {n}");
        }
    }
    Ok(())
}
