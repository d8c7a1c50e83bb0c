//! Benchmark helper (used by `bench/run.sh`): apply gzip layer blobs, in
//! order, to a new directory with eifbake's own layer application
//! ([`eifbake::oci::layer::apply_layers`]), which no CLI command exposes on
//! its own.
//!
//! ```text
//! cargo run --release --example apply_layers -- TARGET LAYER.tar.gz...
//! ```
//!
//! The layers are given the OCI gzip media type and default options (owners
//! kept when run as root, as GNU tar does). Prints the summary as JSON.
//!
//! Not for: anything but benchmarks; images are unpacked by `eifbake build`.

use std::path::Path;

use anyhow::{bail, Result};
use eifbake::oci::layer::{apply_layers, ApplyOptions, LayerSource};
use eifbake::oci::model::media;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: apply_layers TARGET LAYER.tar.gz...");
    }
    let layers: Vec<LayerSource> =
        args[1..].iter().map(|p| LayerSource::new(p, media::OCI_TAR_GZIP, p.as_str())).collect();
    let summary = apply_layers(&layers, Path::new(&args[0]), &ApplyOptions::default())?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
