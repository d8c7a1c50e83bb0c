//! The validating EIF reader: [`Eif::open`] checks the header and every
//! section header (never loading section data), [`Eif::verify`] streams all
//! sections once to check the CRC, compute the PCRs and check the signature,
//! and [`Eif::section_reader`] streams one section.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::signature::{self, SignatureReport, SIGNATURE_SECTION_LIMIT};
use super::{
    Header, SectionHeader, SectionKind, CHUNK, HEADER_CRC_SPAN, HEADER_SIZE, MAGIC, MAX_SECTIONS,
    SECTION_HEADER_SIZE,
};
use crate::pcr::{Measurements, Measurer};
use crate::progress::Progress;

/// The largest metadata or signature section read into memory.
const SMALL_SECTION_LIMIT: u64 = 16 << 20;

/// One section: where its 12-byte header starts and how much data follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub index: usize,
    pub kind: SectionKind,
    pub flags: u16,
    /// Absolute offset of the section header.
    pub offset: u64,
    /// Data size (without the section header).
    pub size: u64,
}

impl Section {
    pub fn data_offset(&self) -> u64 {
        self.offset + SECTION_HEADER_SIZE
    }
}

/// An opened, structurally valid EIF.
pub struct Eif {
    path: PathBuf,
    file: File,
    pub header: Header,
    pub sections: Vec<Section>,
    /// File length in bytes.
    pub len: u64,
}

/// The result of one streaming pass over every section.
#[derive(Clone, Debug)]
pub struct Verification {
    pub stored_crc: u32,
    pub computed_crc: u32,
    /// PCR0/1/2, and PCR8 when the signature section yields a certificate.
    pub measurements: Measurements,
    /// For a signed image: the certificate and whether the signature holds
    /// for this image's PCR0. A garbled section is reported here, not as an error.
    pub signature: Option<SignatureReport>,
}

impl Verification {
    pub fn crc_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }

    /// Unsigned, or signed with a signature that checks.
    pub fn signature_ok(&self) -> bool {
        self.signature.as_ref().is_none_or(|s| s.valid)
    }
}

impl Eif {
    /// Open and validate `path`: magic, version ≥ 4, 1..=32 sections, contiguous
    /// sections inside the file agreeing with the header table, known types,
    /// one kernel and one cmdline before the ramdisks, at least one ramdisk.
    pub fn open(path: &Path) -> Result<Eif> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
        let p = path.display();
        if len < HEADER_SIZE {
            bail!("{p}: truncated: {len} bytes, shorter than the {HEADER_SIZE}-byte EIF header");
        }
        let mut hb = [0u8; HEADER_SIZE as usize];
        file.read_exact_at(&mut hb, 0).with_context(|| format!("reading the header of {p}"))?;
        let header = Header::from_bytes(&hb);
        if header.magic != MAGIC {
            bail!("{p}: not an EIF: magic is {:02x?}, expected \".eif\" (2e 65 69 66)", header.magic);
        }
        if header.version < 4 {
            bail!(
                "{p}: header field version is {}, expected 4 (EIF versions before 4 have no metadata section \
                 and are not supported)",
                header.version
            );
        }
        let n = header.num_sections as usize;
        if n == 0 || n > MAX_SECTIONS {
            bail!("{p}: header field num_sections is {n}, expected 1 to {MAX_SECTIONS}");
        }
        let mut sections = Vec::with_capacity(n);
        let mut expected = HEADER_SIZE;
        for i in 0..n {
            let off = header.section_offsets[i];
            let table_size = header.section_sizes[i];
            if off != expected {
                bail!(
                    "{p}: header field section_offsets[{i}] is {off}, expected {expected} \
                     (sections must follow each other with no gap or overlap)"
                );
            }
            if off + SECTION_HEADER_SIZE > len {
                bail!(
                    "{p}: truncated: section {i}'s header at offset {off} runs past the end of the file \
                     ({len} bytes)"
                );
            }
            let mut sb = [0u8; SECTION_HEADER_SIZE as usize];
            file.read_exact_at(&mut sb, off).with_context(|| format!("reading section header {i} of {p}"))?;
            let sh = SectionHeader::from_bytes(&sb);
            let kind = SectionKind::from_u16(sh.kind).with_context(|| {
                format!(
                    "{p}: section {i} at offset {off}: unknown section type {} (expected 1 kernel, 2 cmdline, \
                     3 ramdisk, 4 signature or 5 metadata)",
                    sh.kind
                )
            })?;
            if sh.size != table_size {
                bail!(
                    "{p}: section {i} ({kind}) at offset {off}: its header says {} bytes but header field \
                     section_sizes[{i}] says {table_size}",
                    sh.size
                );
            }
            let end = off
                .checked_add(SECTION_HEADER_SIZE)
                .and_then(|v| v.checked_add(sh.size))
                .filter(|&e| e <= len)
                .with_context(|| {
                    format!(
                        "{p}: truncated or corrupt: section {i} ({kind}) of {} bytes at offset {off} runs past \
                         the end of the file ({len} bytes)",
                        sh.size
                    )
                })?;
            if kind == SectionKind::Signature && sh.size > SIGNATURE_SECTION_LIMIT {
                bail!(
                    "{p}: section {i} (signature) is {} bytes, over eifbake's limit of \
                     {SIGNATURE_SECTION_LIMIT} bytes for a signature section (SIGNATURE_SECTION_LIMIT); \
                     the file is corrupt or not a Nitro EIF",
                    sh.size
                );
            }
            sections.push(Section { index: i, kind, flags: sh.flags, offset: off, size: sh.size });
            expected = end;
        }
        if expected != len {
            bail!(
                "{p}: {} unexpected bytes after the last section (ends at {expected}, file is {len})",
                len - expected
            );
        }
        check_structure(&p.to_string(), &sections)?;
        Ok(Eif { path: path.to_path_buf(), file, header, sections, len })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ramdisk sections, in order.
    pub fn ramdisks(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.kind == SectionKind::Ramdisk)
    }

    /// The first section of a kind.
    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// Stream one section's data.
    pub fn section_reader(&self, s: &Section) -> SectionReader<'_> {
        SectionReader { file: &self.file, pos: s.data_offset(), end: s.data_offset() + s.size }
    }

    /// Read a small section (metadata, cmdline, signature) into memory.
    pub fn read_small(&self, s: &Section) -> Result<Vec<u8>> {
        if s.size > SMALL_SECTION_LIMIT {
            bail!(
                "{}: section {} ({}) is {} bytes, more than the {SMALL_SECTION_LIMIT} eifbake reads into memory",
                self.path.display(),
                s.index,
                s.kind,
                s.size
            );
        }
        let mut v = vec![0u8; s.size as usize];
        self.file
            .read_exact_at(&mut v, s.data_offset())
            .with_context(|| format!("reading section {} of {}", s.index, self.path.display()))?;
        Ok(v)
    }

    /// The metadata section as JSON (keys in file order), if there is one.
    pub fn metadata_json(&self) -> Result<Option<serde_json::Value>> {
        let Some(s) = self.section(SectionKind::Metadata) else { return Ok(None) };
        let bytes = self.read_small(s)?;
        let v = serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: section {} (metadata) is not valid JSON", self.path.display(), s.index)
        })?;
        Ok(Some(v))
    }

    /// The signature section's bytes, if the image is signed (e.g. to rebuild
    /// it with [`crate::eif::Signing::Section`]).
    pub fn signature_section(&self) -> Result<Option<Vec<u8>>> {
        self.section(SectionKind::Signature).map(|s| self.read_small(s)).transpose()
    }

    /// Stream every section once: check the CRC, compute the PCRs, and check
    /// the signature section (if any) against the PCR0 measured.
    pub fn verify(&self, progress: &Progress) -> Result<Verification> {
        let p = self.path.display();
        let mut crc = crc32fast::Hasher::new();
        let hb = self.header.to_bytes();
        crc.update(&hb[..HEADER_CRC_SPAN]);
        progress.inc_length(self.len);
        progress.inc(HEADER_SIZE);
        // Buffers no larger than the largest section: a small image (a test's,
        // a fuzzer's) should not zero and fault in megabytes it never reads.
        let largest = self.sections.iter().map(|s| s.size).max().unwrap_or(0);
        let mut m = Measurer::new(largest.clamp(1, CHUNK as u64) as usize);
        let mut buf = m.buffer();
        let mut signature_data = None;
        for s in &self.sections {
            let sh = SectionHeader { kind: s.kind as u16, flags: s.flags, size: s.size }.to_bytes();
            crc.update(&sh);
            progress.inc(SECTION_HEADER_SIZE);
            match s.kind {
                SectionKind::Signature => {
                    let data = self.read_small(s)?;
                    crc.update(&data);
                    progress.inc(s.size);
                    signature_data = Some(data);
                    continue;
                }
                SectionKind::Ramdisk => m.start_ramdisk()?,
                _ => {}
            }
            let mut pos = s.data_offset();
            let end = pos + s.size;
            while pos < end {
                let want = buf.len().min((end - pos) as usize);
                self.file
                    .read_exact_at(&mut buf[..want], pos)
                    .with_context(|| format!("{p}: reading section {} ({})", s.index, s.kind))?;
                crc.update(&buf[..want]);
                pos += want as u64;
                progress.inc(want as u64);
                match s.kind {
                    SectionKind::Kernel | SectionKind::Cmdline => m.boot(&buf[..want])?,
                    SectionKind::Ramdisk => buf = m.ramdisk(buf, want)?,
                    _ => {}
                }
            }
        }
        let mut measurements = m.finish()?;
        let signature = signature_data.map(|data| signature::check(&data, &measurements.pcr0));
        measurements.pcr8 = signature.as_ref().and_then(|r| r.pcr8);
        Ok(Verification {
            stored_crc: self.header.crc32,
            computed_crc: crc.finalize(),
            measurements,
            signature,
        })
    }
}

/// One kernel and one cmdline, both before the first ramdisk; at least one
/// ramdisk; at most one metadata and one signature section.
fn check_structure(p: &str, sections: &[Section]) -> Result<()> {
    let count = |k: SectionKind| sections.iter().filter(|s| s.kind == k).count();
    for (kind, min, max) in [
        (SectionKind::Kernel, 1, 1),
        (SectionKind::Cmdline, 1, 1),
        (SectionKind::Ramdisk, 1, usize::MAX),
        (SectionKind::Metadata, 0, 1),
        (SectionKind::Signature, 0, 1),
    ] {
        let c = count(kind);
        if c < min || c > max {
            let want = match (min, max) {
                (1, 1) => "exactly one".to_string(),
                (0, 1) => "at most one".to_string(),
                _ => "at least one".to_string(),
            };
            bail!("{p}: {c} {kind} sections, expected {want}");
        }
    }
    if let Some(first_ramdisk) = sections.iter().position(|s| s.kind == SectionKind::Ramdisk) {
        if let Some(late) = sections[first_ramdisk..]
            .iter()
            .find(|s| matches!(s.kind, SectionKind::Kernel | SectionKind::Cmdline))
        {
            bail!(
                "{p}: section {} ({}) comes after a ramdisk; the kernel and cmdline must precede the ramdisks",
                late.index,
                late.kind
            );
        }
    }
    Ok(())
}

/// Streams one section's bytes with positional reads (no shared cursor).
pub struct SectionReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SectionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the EIF shrank while being read"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
