//! What `eifbake describe` says about an EIF, as a typed [`Description`]:
//! header, sections, kernel, cmdline, CRC check, PCRs with notes on what
//! they mean, signature, metadata and the measured inputs (CustomMetadata),
//! plus the problems found. [`Description::to_json`] and
//! [`Description::to_text`] render it; `commands::describe` prints one.
//!
//! Invariants: describing never fails on a problem the description can
//! report (CRC mismatch, unreadable metadata or cmdline, a signature that
//! does not check): those go into [`Description::problems`]; only a file
//! that cannot be read as an EIF at all is an error.
//!
//! Not for: extracting sections or choosing an exit code (the command does
//! that), or comparing EIFs ([`super::diff`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::kernel::KernelKind;
use super::{Eif, SectionKind, SignatureReport, Verification};
use crate::progress::Progress;

/// An EIF, read and checked.
pub struct Description {
    /// The path it was read from, as given.
    pub path: PathBuf,
    pub eif: Eif,
    /// CRC and measurements, and the signature's check.
    pub verification: Verification,
    /// The kernel's kind, and why Nitro cannot boot it if so.
    pub kernel: Option<String>,
    pub cmdline: Option<String>,
    /// The metadata section's JSON.
    pub metadata: Option<serde_json::Value>,
    /// What the measurements do not say ([`pcr_notes`]).
    pub notes: Vec<String>,
    /// What is wrong with the file, each a full error message.
    pub problems: Vec<String>,
}

/// Read and check the EIF at `path` (a progress bar follows the measuring).
pub fn describe(path: &Path) -> Result<Description> {
    let eif = Eif::open(path)?;
    let progress = Progress::bytes("measuring", 0);
    let v = eif.verify(&progress)?;
    progress.finish();
    let kernel =
        eif.section(SectionKind::Kernel).map(|s| KernelKind::read(eif.section_reader(s))).transpose()?;
    let kernel = kernel.map(|k| k.summary(eif.header.arch()));
    let mut problems = Vec::new();
    if !v.crc_ok() {
        problems.push(format!(
            "{}: CRC-32 mismatch: the header says {:08x}, the contents give {:08x} (the file is corrupt)",
            path.display(),
            v.stored_crc,
            v.computed_crc
        ));
    }
    if let Some(r) = v.signature.as_ref().filter(|r| !r.valid) {
        let index = eif.section(SectionKind::Signature).map(|s| s.index).unwrap_or_default();
        problems.push(format!(
            "{}: section {index} (signature): the signature does not check: {}",
            path.display(),
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
    let notes = pcr_notes(eif.sections.iter().filter(|s| s.kind == SectionKind::Ramdisk).count());
    Ok(Description {
        path: path.to_path_buf(),
        eif,
        verification: v,
        kernel,
        cmdline,
        metadata,
        notes,
        problems,
    })
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

impl Description {
    /// The measured inputs embedded as CustomMetadata, when there are any.
    pub fn custom_metadata(&self) -> Option<&serde_json::Value> {
        self.metadata.as_ref().and_then(|m| m.get("CustomMetadata")).filter(|c| !c.is_null())
    }

    /// The `--json` document.
    pub fn to_json(&self) -> serde_json::Value {
        let (eif, v, h) = (&self.eif, &self.verification, &self.eif.header);
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
        serde_json::json!({
            "path": self.path.display().to_string(),
            "version": h.version,
            "arch": h.arch().to_string(),
            "flags": h.flags,
            "default_mem": h.default_mem,
            "default_cpus": h.default_cpus,
            "size": eif.len,
            "sections": sections,
            "kernel": self.kernel,
            "cmdline": self.cmdline,
            "crc32": {
                "stored": format!("{:08x}", v.stored_crc),
                "computed": format!("{:08x}", v.computed_crc),
                "ok": v.crc_ok(),
            },
            "Measurements": v.measurements.nitro_cli_json(),
            "notes": self.notes,
            "signature": v.signature,
            "Metadata": self.metadata,
            "problems": self.problems,
        })
    }

    /// The text report, every line ending in a newline.
    pub fn to_text(&self) -> Result<String> {
        let mut o = String::new();
        self.header_text(&mut o)?;
        let v = &self.verification;
        writeln!(o, "Measurements (SHA-384)")?;
        for (n, p) in v.measurements.registers() {
            writeln!(o, "  PCR{n}  {p}")?;
        }
        for n in &self.notes {
            writeln!(o, "  note: {n}")?;
        }
        if let Some(r) = &v.signature {
            signature_text(&mut o, r)?;
        }
        if let Some(m) = &self.metadata {
            let mut shown = m.clone();
            if let Some(obj) = shown.as_object_mut() {
                obj.remove("CustomMetadata");
            }
            writeln!(o, "Metadata")?;
            for line in serde_json::to_string_pretty(&shown)?.lines() {
                writeln!(o, "  {line}")?;
            }
        }
        if let Some(c) = self.custom_metadata() {
            writeln!(o, "Embedded manifest: the measured inputs (CustomMetadata)")?;
            for line in serde_json::to_string_pretty(c)?.lines() {
                writeln!(o, "  {line}")?;
            }
        }
        Ok(o)
    }

    /// The header, sections, kernel, cmdline and CRC lines.
    fn header_text(&self, o: &mut String) -> std::fmt::Result {
        let (eif, v, h) = (&self.eif, &self.verification, &self.eif.header);
        writeln!(o, "EIF {}", self.path.display())?;
        writeln!(o, "  version       {}", h.version)?;
        writeln!(o, "  arch          {} (flags {:#06x})", h.arch(), h.flags)?;
        writeln!(o, "  default mem   {} bytes ({} MiB)", h.default_mem, h.default_mem >> 20)?;
        writeln!(o, "  default cpus  {}", h.default_cpus)?;
        writeln!(o, "  size          {} bytes", eif.len)?;
        writeln!(o, "  sections      {}", eif.sections.len())?;
        writeln!(o, "    {:>2}  {:<10} {:>12} {:>12}", "#", "type", "offset", "size")?;
        for s in &eif.sections {
            writeln!(o, "    {:>2}  {:<10} {:>12} {:>12}", s.index, s.kind.name(), s.offset, s.size)?;
        }
        if let Some(k) = &self.kernel {
            writeln!(o, "  kernel        {k}")?;
        }
        if let Some(c) = &self.cmdline {
            writeln!(o, "  cmdline       {c:?}")?;
        }
        if v.crc_ok() {
            writeln!(o, "  CRC-32        {:08x} OK", v.stored_crc)
        } else {
            writeln!(
                o,
                "  CRC-32        MISMATCH: header {:08x}, computed {:08x}",
                v.stored_crc, v.computed_crc
            )
        }
    }
}

/// The signature lines: the certificate, PCR8, the algorithm and whether it holds.
fn signature_text(o: &mut String, r: &SignatureReport) -> std::fmt::Result {
    writeln!(o, "Signature")?;
    if let Some(c) = &r.certificate {
        writeln!(o, "  subject       {}", c.subject)?;
        writeln!(o, "  issuer        {}", c.issuer)?;
        writeln!(o, "  serial        {}", c.serial)?;
        writeln!(o, "  not before    {}", c.not_before)?;
        writeln!(o, "  not after     {}", c.not_after)?;
        writeln!(o, "  sha256        {}", c.sha256_fingerprint)?;
        writeln!(o, "  key           {}", c.key_algorithm)?;
    }
    if let Some(p) = &r.pcr8 {
        writeln!(o, "  PCR8          {p}")?;
    }
    if let Some(a) = &r.algorithm {
        writeln!(o, "  algorithm     {a}")?;
    }
    if r.valid {
        writeln!(o, "  signature     OK (by the certificate's key, over this image's PCR0)")
    } else {
        writeln!(o, "  signature     INVALID: {}", r.problem.as_deref().unwrap_or("unknown reason"))
    }
}
