//! `eifbake ramdisk DIR --output R [--gzip] [--prefix P] [--json]`: pack a
//! host directory into a normalised newc ramdisk (see [`crate::cpio`]),
//! optionally compressed with deterministic gzip (see [`crate::gzip`]).
//! The directory is streamed ([`crate::cpio::write_host_dir`]): memory does
//! not grow with the number of entries.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{Global, RamdiskArgs};
use crate::cpio::write_host_dir;
use crate::digest::HashingWriter;
use crate::epoch::Epoch;
use crate::fsutil::AtomicFile;
use crate::gzip::GzipWriter;
use crate::progress::Progress;

pub fn run(args: RamdiskArgs, _global: &Global) -> Result<ExitCode> {
    let epoch = Epoch::from_env()?.unwrap_or(Epoch(0));
    let prefix = args.prefix.as_deref().unwrap_or("");
    let reading = || format!("reading {}", args.dir.display());
    // The total is unknown: the tree is streamed, never held (see cpio::write_host_dir).
    let progress = Progress::bytes("packing", 0);
    let file = AtomicFile::create(&args.output)?;
    let mut out = HashingWriter::new(file);
    let cpio = if args.gzip {
        let mut gz = GzipWriter::new(&mut out);
        let s = write_host_dir(prefix, &args.dir, &mut gz, epoch, &progress).with_context(reading)?;
        gz.finish().with_context(|| format!("compressing into {}", args.output.display()))?;
        s
    } else {
        write_host_dir(prefix, &args.dir, &mut out, epoch, &progress).with_context(reading)?
    };
    out.flush().with_context(|| format!("writing {}", args.output.display()))?;
    let (file, digest, size) = out.finish();
    file.commit()?;
    progress.finish();

    if args.json {
        let v = serde_json::json!({
            "output": args.output.display().to_string(),
            "sha256": digest.hex(),
            "size": size,
            "gzip": args.gzip,
            "entries": cpio.entries,
            "cpio_bytes": cpio.bytes,
            "data_bytes": cpio.data_bytes,
            "source_date_epoch": epoch.0,
        });
        super::output::json(&v)?;
    } else {
        outln!(
            "{}: {} entries, {} bytes{} ({} bytes of cpio), {}",
            args.output.display(),
            cpio.entries,
            size,
            if args.gzip { " gzip" } else { "" },
            cpio.bytes,
            digest
        );
    }
    Ok(ExitCode::SUCCESS)
}
