//! `eifbake describe EIF|REF [--json]` (a release on a registry is pulled
//! and verified first, see [`crate::release`]): header, sections, CRC check, PCRs,
//! metadata, the measured inputs (CustomMetadata) and, for a signed image,
//! the signing certificate and whether the signature holds.
//!
//! Notes on what the measurements mean come with them: an EIF with a single
//! ramdisk (eifbake's `single` layout, QuorumOS, nit) has the same PCR2 as
//! every other such EIF, the measurement of no data, so pinning PCR2 pins
//! nothing ([`pcr_notes`]).
//!
//! What is said is built and rendered by [`crate::eif::describe`]; this
//! command prints it and extracts.
//!
//! A structurally invalid file is an error (exit 2). A CRC mismatch,
//! unreadable metadata, or a signature that does not check (garbled, not by
//! the certificate's key, or not over this image's PCR0) is shown with
//! everything else, then exits 2.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{DescribeArgs, Global};
use crate::eif::describe::describe;
pub use crate::eif::describe::pcr_notes;
use crate::eif::{Eif, SectionKind};

/// Describe the EIF ([`describe`]), print it as text or JSON, extract its
/// sections when asked and it has no problem; exit 2 when it has one.
pub fn run(args: DescribeArgs, _global: &Global) -> Result<ExitCode> {
    let registry = crate::oci::registry::Registry::new(&args.insecure_registry);
    let scratch = tempfile::Builder::new().prefix("eifbake-describe-").tempdir()?;
    let d = describe(&crate::release::local_eif(&registry, &args.eif, scratch.path())?)?;
    if args.json {
        super::output::json(&d.to_json())?;
    } else {
        super::output::text(&d.to_text()?)?;
    }
    let mut problems = d.problems;
    if let Some(dir) = &args.extract {
        if problems.is_empty() {
            extract(&d.eif, dir)?;
        } else {
            problems.push(format!("not extracting into {}: the EIF failed its checks", dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            super::output::eline(format_args!("eifbake: error: {p}"));
        }
        Ok(ExitCode::from(2))
    }
}

/// Write every section of `eif` to its own file in `dir`, atomically.
fn extract(eif: &Eif, dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut ramdisks = 0;
    for s in &eif.sections {
        let name = match s.kind {
            SectionKind::Kernel => "kernel".to_string(),
            SectionKind::Cmdline => "cmdline".to_string(),
            SectionKind::Metadata => "metadata.json".to_string(),
            SectionKind::Signature => "signature".to_string(),
            SectionKind::Ramdisk => {
                ramdisks += 1;
                format!("ramdisk{}", ramdisks - 1)
            }
        };
        let path = dir.join(name);
        let mut out = crate::fsutil::AtomicFile::create(&path)?;
        std::io::copy(&mut eif.section_reader(s), &mut out)
            .with_context(|| format!("writing {}", path.display()))?;
        out.commit()?;
    }
    Ok(())
}
