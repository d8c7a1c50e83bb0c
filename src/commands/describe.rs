//! `eifbake describe EIF [--json]`: header, sections, CRC check, PCRs,
//! metadata, the measured inputs (CustomMetadata) and, for a signed image,
//! the signing certificate and whether the signature holds.
//!
//! Notes on what the measurements mean come with them: an EIF with a single
//! ramdisk (eifbake's `single` layout, QuorumOS, nit) has the same PCR2 as
//! every other such EIF, the measurement of no data, so pinning PCR2 pins
//! nothing ([`pcr_notes`]).
//!
//! A structurally invalid file is an error (exit 2). A CRC mismatch,
//! unreadable metadata, or a signature that does not check (garbled, not by
//! the certificate's key, or not over this image's PCR0) is shown with
//! everything else, then exits 2.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{DescribeArgs, Global};
use crate::eif::kernel::KernelKind;
use crate::eif::{Eif, SectionKind};
use crate::progress::Progress;

pub fn run(args: DescribeArgs, _global: &Global) -> Result<ExitCode> {
    let eif = Eif::open(&args.eif)?;
    let progress = Progress::bytes("measuring", 0);
    let v = eif.verify(&progress)?;
    progress.finish();
    let h = &eif.header;
    let kernel =
        eif.section(SectionKind::Kernel).map(|s| KernelKind::read(eif.section_reader(s))).transpose()?;
    let kernel = kernel.map(|k| k.summary(h.arch()));
    let mut problems = Vec::new();
    if !v.crc_ok() {
        problems.push(format!(
            "{}: CRC-32 mismatch: the header says {:08x}, the contents give {:08x} (the file is corrupt)",
            args.eif.display(),
            v.stored_crc,
            v.computed_crc
        ));
    }
    if let Some(r) = v.signature.as_ref().filter(|r| !r.valid) {
        let index = eif.section(SectionKind::Signature).map(|s| s.index).unwrap_or_default();
        problems.push(format!(
            "{}: section {index} (signature): the signature does not check: {}",
            args.eif.display(),
            r.problem.as_deref().unwrap_or("unknown reason")
        ));
    }
    let metadata = match eif.metadata_json() {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let cmdline = match eif.section(SectionKind::Cmdline).map(|s| eif.read_small(s)).transpose() {
        Ok(c) => c.map(|c| String::from_utf8_lossy(&c).into_owned()),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let custom = metadata.as_ref().and_then(|m| m.get("CustomMetadata")).filter(|c| !c.is_null()).cloned();
    let notes = pcr_notes(eif.sections.iter().filter(|s| s.kind == SectionKind::Ramdisk).count());

    if args.json {
        let sections: Vec<_> = eif
            .sections
            .iter()
            .map(|s| {
                serde_json::json!({
                    "index": s.index, "type": s.kind.name(), "flags": s.flags,
                    "offset": s.offset, "data_offset": s.data_offset(), "size": s.size,
                })
            })
            .collect();
        let out = serde_json::json!({
            "path": args.eif.display().to_string(),
            "version": h.version,
            "arch": h.arch().to_string(),
            "flags": h.flags,
            "default_mem": h.default_mem,
            "default_cpus": h.default_cpus,
            "size": eif.len,
            "sections": sections,
            "kernel": kernel,
            "cmdline": cmdline,
            "crc32": {
                "stored": format!("{:08x}", v.stored_crc),
                "computed": format!("{:08x}", v.computed_crc),
                "ok": v.crc_ok(),
            },
            "Measurements": v.measurements.nitro_cli_json(),
            "notes": notes,
            "signature": v.signature,
            "Metadata": metadata,
            "problems": problems,
        });
        super::output::json(&out)?;
    } else {
        outln!("EIF {}", args.eif.display());
        outln!("  version       {}", h.version);
        outln!("  arch          {} (flags {:#06x})", h.arch(), h.flags);
        outln!("  default mem   {} bytes ({} MiB)", h.default_mem, h.default_mem >> 20);
        outln!("  default cpus  {}", h.default_cpus);
        outln!("  size          {} bytes", eif.len);
        outln!("  sections      {}", eif.sections.len());
        outln!("    {:>2}  {:<10} {:>12} {:>12}", "#", "type", "offset", "size");
        for s in &eif.sections {
            outln!("    {:>2}  {:<10} {:>12} {:>12}", s.index, s.kind.name(), s.offset, s.size);
        }
        if let Some(k) = &kernel {
            outln!("  kernel        {k}");
        }
        if let Some(c) = &cmdline {
            outln!("  cmdline       {c:?}");
        }
        if v.crc_ok() {
            outln!("  CRC-32        {:08x} OK", v.stored_crc);
        } else {
            outln!("  CRC-32        MISMATCH: header {:08x}, computed {:08x}", v.stored_crc, v.computed_crc);
        }
        outln!("Measurements (SHA-384)");
        for (n, p) in v.measurements.registers() {
            outln!("  PCR{n}  {p}");
        }
        for n in &notes {
            outln!("  note: {n}");
        }
        if let Some(r) = &v.signature {
            print_signature(r)?;
        }
        if let Some(m) = &metadata {
            let mut shown = m.clone();
            if let Some(o) = shown.as_object_mut() {
                o.remove("CustomMetadata");
            }
            outln!("Metadata");
            for line in serde_json::to_string_pretty(&shown)?.lines() {
                outln!("  {line}");
            }
        }
        if let Some(c) = &custom {
            outln!("Embedded manifest: the measured inputs (CustomMetadata)");
            for line in serde_json::to_string_pretty(c)?.lines() {
                outln!("  {line}");
            }
        }
    }
    if let Some(dir) = &args.extract {
        if problems.is_empty() {
            extract(&eif, dir)?;
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

/// What the measurements of an EIF with `ramdisks` ramdisks do not say.
///
/// PCR2 measures every ramdisk after the first; with one ramdisk it is the
/// measurement of nothing, `SHA384(0^48 ‖ SHA384(""))`, for every such EIF.
pub fn pcr_notes(ramdisks: usize) -> Vec<String> {
    if ramdisks == 1 {
        vec!["PCR2 is a constant: this EIF has one ramdisk, PCR2 measures the ramdisks after the first, \
              so it is the same for every single-ramdisk EIF and pinning it pins nothing; pin PCR0 \
              (everything) or PCR1 (kernel, cmdline and this ramdisk)"
            .to_string()]
    } else {
        Vec::new()
    }
}

fn print_signature(r: &crate::eif::SignatureReport) -> Result<()> {
    outln!("Signature");
    if let Some(c) = &r.certificate {
        outln!("  subject       {}", c.subject);
        outln!("  issuer        {}", c.issuer);
        outln!("  serial        {}", c.serial);
        outln!("  not before    {}", c.not_before);
        outln!("  not after     {}", c.not_after);
        outln!("  sha256        {}", c.sha256_fingerprint);
        outln!("  key           {}", c.key_algorithm);
    }
    if let Some(p) = &r.pcr8 {
        outln!("  PCR8          {p}");
    }
    if let Some(a) = &r.algorithm {
        outln!("  algorithm     {a}");
    }
    if r.valid {
        outln!("  signature     OK (by the certificate's key, over this image's PCR0)");
    } else {
        outln!("  signature     INVALID: {}", r.problem.as_deref().unwrap_or("unknown reason"));
    }
    Ok(())
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
