//! `eifbake eif --kernel K --cmdline S --ramdisk R... --output O`: write an
//! EIF (see [`crate::eif`]) and print its PCRs. A ramdisk given as a
//! directory is packed into the EIF in the same pass (no ramdisk file); `--pcrs FILE` also writes
//! them as `<hex> PCRn` lines. `--signing-certificate C --private-key K`
//! signs it (PCR8; see [`crate::signing`]), the key checked before any
//! bytes are written.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::args::{EifArgs, Global};
use crate::eif::{self, EifInputs, Metadata, Signing};
use crate::epoch::Epoch;
use crate::fsutil::write_atomic;
use crate::progress::Progress;
use crate::signing::{self, Validity};

pub fn run(args: EifArgs, _global: &Global) -> Result<ExitCode> {
    let epoch = Epoch::from_env()?.unwrap_or(Epoch(0));
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args.output.file_stem().map(|s| s.to_string_lossy().into_owned()).with_context(|| {
            format!("--output {}: cannot take an image name from it; give --name", args.output.display())
        })?,
    };
    let custom = args.metadata.as_deref().map(eif::parse_custom).transpose()?;
    let metadata = Metadata::new(&name, &args.version, epoch, args.kernel_config.as_deref(), custom)?;
    let signer = match (&args.signing_certificate, &args.private_key) {
        (Some(cert), Some(key)) => {
            let validity =
                if args.ignore_certificate_validity { Validity::Ignore } else { Validity::Enforce };
            Some(signing::load_signer_with(cert, key, validity, &args.token.options())?)
        }
        _ => None,
    };
    let inputs = EifInputs {
        kernel: args.kernel.clone(),
        cmdline: args.cmdline.clone(),
        ramdisks: args.ramdisk.clone(),
        arch: args.arch,
        default_mem: eif::DEFAULT_MEM,
        default_cpus: eif::DEFAULT_CPUS,
        epoch,
        metadata,
        signing: signer.clone().map(Signing::Key),
    };
    let progress = Progress::bytes("eif", 0);
    let written = eif::write_eif(&inputs, &args.output, &progress)?;
    progress.finish();
    let m = &written.measurements;
    if let Some(p) = &args.pcrs {
        write_atomic(p, m.to_pcrs_file().as_bytes())?;
    }
    if args.json {
        let v = serde_json::json!({
            "output": args.output.display().to_string(),
            "size": written.size,
            "crc32": format!("{:08x}", written.header.crc32),
            "arch": inputs.arch.to_string(),
            "Measurements": m.nitro_cli_json(),
            "signing_certificate": signer.as_ref().map(|s| s.certificate().info()),
        });
        super::output::json(&v)?;
    } else {
        super::output::text(&m.to_pcrs_file())?;
    }
    Ok(ExitCode::SUCCESS)
}
