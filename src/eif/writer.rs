//! The streaming EIF writer: section sizes come from the input files' sizes,
//! so the header is written first, every section is streamed once (CRC-32
//! and PCRs computed on the way), and the header is patched last.
//!
//! A signed image's signature section depends on PCR0, which is known only
//! after the last ramdisk, and its size on the signature bytes. So it is
//! appended after the ramdisks (where AWS puts it), then the header is
//! rewritten with its size and the CRC: the CRC of header bytes `[0, 544)`
//! combined with the CRC of everything after the header, which was computed
//! while streaming. The data is still read once.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{
    signature, Header, Metadata, SectionHeader, SectionKind, CHUNK, HEADER_CRC_SPAN, HEADER_SIZE, MAGIC,
    MAX_SECTIONS, SECTION_HEADER_SIZE, VERSION,
};
use crate::fsutil::AtomicFile;
use crate::pcr::{Measurements, Measurer, Pcr};
use crate::platform::Arch;
use crate::progress::Progress;
use crate::signing::Signer;

/// How an image is signed (PCR8 and a signature section after the ramdisks).
#[derive(Clone)]
pub enum Signing {
    /// Sign this image's PCR0 with a key holder (see [`crate::signing::load_signer`]).
    Key(Arc<dyn Signer>),
    /// Append a ready-made signature section, e.g. taken from a published EIF
    /// to rebuild it without the key. It must be a valid signature of this
    /// image's PCR0, or the write fails.
    Section(Vec<u8>),
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signing::Key(s) => write!(f, "Signing::Key({s:?})"),
            Signing::Section(b) => write!(f, "Signing::Section({} bytes)", b.len()),
        }
    }
}

/// Everything an EIF is made of.
#[derive(Clone, Debug)]
pub struct EifInputs {
    pub kernel: PathBuf,
    /// Written as given, without a trailing NUL.
    pub cmdline: String,
    /// In order; the first is measured into PCR1, the rest into PCR2.
    pub ramdisks: Vec<PathBuf>,
    pub arch: Arch,
    /// Header default memory, in bytes (AWS writes 1 GiB).
    pub default_mem: u64,
    /// Header default vCPU count (AWS writes 2).
    pub default_cpus: u64,
    pub metadata: Metadata,
    /// Sign the image (adds PCR8), or not.
    pub signing: Option<Signing>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Written {
    pub header: Header,
    /// PCR0/1/2, and PCR8 for a signed image.
    pub measurements: Measurements,
    pub size: u64,
    /// The signature section written, if signed.
    pub signature: Option<Vec<u8>>,
}

/// Write `inputs` as an EIF at `output`, atomically: on any error the target is untouched.
pub fn write_eif(inputs: &EifInputs, output: &Path, progress: &Progress) -> Result<Written> {
    let mut out = AtomicFile::create(output)?;
    let written =
        write_to(inputs, &mut out, progress).with_context(|| format!("writing {}", output.display()))?;
    out.commit()?;
    Ok(written)
}

/// One section to stream: from a file, or from bytes in memory.
enum Source<'a> {
    File { path: &'a Path, file: File, size: u64 },
    Bytes(&'a [u8]),
}

impl Source<'_> {
    fn size(&self) -> u64 {
        match self {
            Source::File { size, .. } => *size,
            Source::Bytes(b) => b.len() as u64,
        }
    }
}

fn open_input<'a>(what: &str, path: &'a Path) -> Result<Source<'a>> {
    let file = File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("cannot stat {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a regular file", path.display());
    }
    Ok(Source::File { path, file, size: meta.len() })
}

/// Write the EIF to any seekable writer positioned at its start.
///
/// Phases: check the inputs, open the sections, lay out the header (its
/// offsets and sizes), stream the sections (CRC and PCRs in the same pass),
/// append the signature section, then rewrite the header with its CRC.
pub fn write_to<W: Write + Seek>(inputs: &EifInputs, w: &mut W, progress: &Progress) -> Result<Written> {
    check_inputs(inputs)?;
    let metadata = inputs.metadata.to_bytes();
    let sections = open_sections(inputs, &metadata)?;
    let (mut header, mut total) = lay_out(inputs, &sections);
    progress.inc_length(total);

    // The header is rewritten at the end; its CRC is combined with this one
    // over everything that follows it.
    let mut body_crc = crc32fast::Hasher::new();
    w.write_all(&header.to_bytes())?;
    progress.inc(HEADER_SIZE);
    let mut measurements = stream_sections(w, sections, &mut body_crc, progress)?;

    let mut written_signature = None;
    if let Some(signing) = &inputs.signing {
        let (section, pcr8) = signature_section(signing, &measurements.pcr0)?;
        let i = header.num_sections as usize;
        header.num_sections += 1;
        header.section_offsets[i] = total;
        header.section_sizes[i] = section.len() as u64;
        let added = write_signature_section(w, &mut body_crc, &section)?;
        progress.inc_length(added);
        progress.inc(added);
        total += added;
        measurements.pcr8 = Some(pcr8);
        written_signature = Some(section);
    }

    finish_header(w, &mut header, &body_crc)?;
    w.seek(SeekFrom::Start(total))?;
    w.flush()?;
    Ok(Written { header, measurements, size: total, signature: written_signature })
}

/// Refuse inputs that cannot make a bootable, well-formed EIF before any byte is written.
fn check_inputs(inputs: &EifInputs) -> Result<()> {
    if inputs.cmdline.as_bytes().contains(&0) {
        bail!("the kernel command line contains a NUL byte");
    }
    super::kernel::check(&inputs.kernel, inputs.arch)?;
    if inputs.ramdisks.is_empty() {
        bail!("an EIF needs at least one ramdisk");
    }
    let fixed = 3 + usize::from(inputs.signing.is_some());
    if inputs.ramdisks.len() > MAX_SECTIONS - fixed {
        bail!(
            "{} ramdisks given; an EIF holds at most {} (32 sections minus kernel, cmdline, metadata{})",
            inputs.ramdisks.len(),
            MAX_SECTIONS - fixed,
            if inputs.signing.is_some() { " and signature" } else { "" }
        );
    }
    // A ready-made section is decoded before the (long) streaming, so a bad one fails fast.
    if let Some(Signing::Section(bytes)) = &inputs.signing {
        signature::decode(bytes).context("the signature section given")?;
    }
    Ok(())
}

/// The unsigned sections in file order: kernel, cmdline, metadata, ramdisks.
fn open_sections<'a>(inputs: &'a EifInputs, metadata: &'a [u8]) -> Result<Vec<(SectionKind, Source<'a>)>> {
    let mut sections: Vec<(SectionKind, Source)> = vec![
        (SectionKind::Kernel, open_input("kernel", &inputs.kernel)?),
        (SectionKind::Cmdline, Source::Bytes(inputs.cmdline.as_bytes())),
        (SectionKind::Metadata, Source::Bytes(metadata)),
    ];
    for r in &inputs.ramdisks {
        sections.push((SectionKind::Ramdisk, open_input("ramdisk", r)?));
    }
    Ok(sections)
}

/// The header (CRC still zero) with every section's offset and size, and
/// the file size those sections make.
fn lay_out(inputs: &EifInputs, sections: &[(SectionKind, Source)]) -> (Header, u64) {
    let mut header = Header {
        magic: MAGIC,
        version: VERSION,
        flags: inputs.arch.flags(),
        default_mem: inputs.default_mem,
        default_cpus: inputs.default_cpus,
        reserved: 0,
        num_sections: sections.len() as u16,
        section_offsets: [0; MAX_SECTIONS],
        section_sizes: [0; MAX_SECTIONS],
        unused: 0,
        crc32: 0,
    };
    let mut offset = HEADER_SIZE;
    for (i, (_, src)) in sections.iter().enumerate() {
        header.section_offsets[i] = offset;
        header.section_sizes[i] = src.size();
        offset += SECTION_HEADER_SIZE + src.size();
    }
    (header, offset)
}

/// Write each section (its header, then its bytes) after the EIF header,
/// feeding the CRC and the PCR measurer in the same pass.
fn stream_sections<W: Write>(
    w: &mut W,
    sections: Vec<(SectionKind, Source)>,
    body_crc: &mut crc32fast::Hasher,
    progress: &Progress,
) -> Result<Measurements> {
    let mut measurer = Measurer::new(CHUNK);
    for (kind, src) in sections {
        let sh = SectionHeader::new(kind, src.size()).to_bytes();
        body_crc.update(&sh);
        w.write_all(&sh)?;
        if kind == SectionKind::Ramdisk {
            measurer.start_ramdisk();
        }
        match src {
            Source::Bytes(b) => {
                body_crc.update(b);
                w.write_all(b)?;
                if kind != SectionKind::Metadata {
                    measurer.boot(b)?;
                }
                progress.inc(b.len() as u64);
            }
            Source::File { path, file, size } => {
                let out = Sink { w: &mut *w, crc: &mut *body_crc, progress };
                stream_file(out, path, file, size, kind, &mut measurer)?;
            }
        }
    }
    measurer.finish()
}

/// Where a section's bytes go: the file, its CRC and the progress count.
struct Sink<'a, W> {
    w: &'a mut W,
    crc: &'a mut crc32fast::Hasher,
    progress: &'a Progress,
}

/// Copy exactly `size` bytes of `file` (a section of kind `kind`) into `out`
/// and the measurer, refusing a file that shrinks or grows meanwhile.
fn stream_file<W: Write>(
    out: Sink<'_, W>,
    path: &Path,
    mut file: File,
    size: u64,
    kind: SectionKind,
    measurer: &mut Measurer,
) -> Result<()> {
    let mut left = size;
    let mut buf = measurer.buffer();
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            bail!("{} shrank while being written into the EIF (expected {size} bytes)", path.display());
        }
        out.crc.update(&buf[..n]);
        out.w.write_all(&buf[..n])?;
        left -= n as u64;
        out.progress.inc(n as u64);
        if kind == SectionKind::Ramdisk {
            buf = measurer.ramdisk(buf, n)?;
        } else {
            measurer.boot(&buf[..n])?;
        }
    }
    if file.read(&mut buf[..1]).with_context(|| format!("reading {}", path.display()))? != 0 {
        bail!("{} grew while being written into the EIF (expected {size} bytes)", path.display());
    }
    Ok(())
}

/// Sign an unsigned EIF: the same bytes with a signature section appended and
/// the header and CRC updated, written atomically to `output` (which may be
/// `input`). The input is read twice: once to check its CRC and measure PCR0,
/// once to copy it. `verify` uses this to put a published image's signature
/// on a rebuild made without the key.
pub fn sign_existing(input: &Path, signing: &Signing, output: &Path, progress: &Progress) -> Result<Written> {
    let p = input.display();
    let eif = super::Eif::open(input)?;
    if eif.section(SectionKind::Signature).is_some() {
        bail!("{p} is signed already; sign the unsigned image");
    }
    let v = eif.verify(progress)?;
    if !v.crc_ok() {
        bail!(
            "{p}: CRC-32 mismatch (header {:08x}, contents {:08x}); not signing a corrupt image",
            v.stored_crc,
            v.computed_crc
        );
    }
    let i = eif.header.num_sections as usize;
    if i >= MAX_SECTIONS {
        bail!("{p} has {MAX_SECTIONS} sections already; there is no slot for a signature");
    }
    let (section, pcr8) = signature_section(signing, &v.measurements.pcr0)?;
    let mut header = eif.header.clone();
    header.num_sections += 1;
    header.section_offsets[i] = eif.len;
    header.section_sizes[i] = section.len() as u64;

    let mut out = AtomicFile::create(output)?;
    let mut body_crc = crc32fast::Hasher::new();
    out.write_all(&header.to_bytes())?;
    let mut file = File::open(input).with_context(|| format!("cannot open {p}"))?;
    file.seek(SeekFrom::Start(HEADER_SIZE))?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = eif.len - HEADER_SIZE;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want]).with_context(|| format!("reading {p}"))?;
        body_crc.update(&buf[..want]);
        out.write_all(&buf[..want])?;
        left -= want as u64;
    }
    let total = eif.len + write_signature_section(&mut out, &mut body_crc, &section)?;
    finish_header(&mut out, &mut header, &body_crc)?;
    out.commit()?;
    let mut measurements = v.measurements;
    measurements.pcr8 = Some(pcr8);
    Ok(Written { header, measurements, size: total, signature: Some(section) })
}

/// Write a signature section (header and data), adding it to `body_crc`; returns the bytes written.
fn write_signature_section<W: Write>(
    w: &mut W,
    body_crc: &mut crc32fast::Hasher,
    section: &[u8],
) -> Result<u64> {
    let sh = SectionHeader::new(SectionKind::Signature, section.len() as u64).to_bytes();
    body_crc.update(&sh);
    body_crc.update(section);
    w.write_all(&sh)?;
    w.write_all(section)?;
    Ok(SECTION_HEADER_SIZE + section.len() as u64)
}

/// Set the header's CRC, crc(header[0..544]) combined with the CRC of
/// everything after the header (`body_crc`), and write the header at offset 0.
fn finish_header<W: Write + Seek>(
    w: &mut W,
    header: &mut Header,
    body_crc: &crc32fast::Hasher,
) -> Result<()> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header.to_bytes()[..HEADER_CRC_SPAN]);
    crc.combine(body_crc);
    header.crc32 = crc.finalize();
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header.to_bytes())?;
    Ok(())
}

/// The signature section for an image whose PCR0 is `pcr0`, and its PCR8.
fn signature_section(signing: &Signing, pcr0: &Pcr) -> Result<(Vec<u8>, Pcr)> {
    match signing {
        Signing::Key(signer) => {
            let section = signature::encode(signer.as_ref(), pcr0)?;
            Ok((section, signer.certificate().pcr8()))
        }
        Signing::Section(bytes) => {
            let report = signature::check(bytes, pcr0);
            match (report.valid, report.pcr8) {
                (true, Some(pcr8)) => Ok((bytes.clone(), pcr8)),
                _ => bail!(
                    "the signature section given does not sign this image: {}",
                    report.problem.as_deref().unwrap_or("no certificate")
                ),
            }
        }
    }
}
