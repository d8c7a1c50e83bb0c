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
//!
//! A ramdisk may also be given as a host directory: it is packed into a
//! plain newc archive ([`crate::cpio::write_host_dir`], the same bytes as
//! `eifbake ramdisk DIR`) straight into the EIF, with no intermediate file;
//! host files are read straight into the measurer's buffers
//! ([`crate::cpio::write_host_dir_into`]), which are then written, CRC'd
//! and hashed from there.
//! Its size is known only once it is written, so its section header is
//! written as a placeholder and patched afterwards, its bytes' CRC kept
//! apart and combined in after the real section header's; every section's
//! offset and size go into the header when it is rewritten at the end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{
    signature, Header, Metadata, SectionHeader, SectionKind, CHUNK, HEADER_CRC_SPAN, HEADER_SIZE, MAGIC,
    MAX_SECTIONS, SECTION_HEADER_SIZE, VERSION,
};
use crate::epoch::Epoch;
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
    /// In order; the first is measured into PCR1, the rest into PCR2. A
    /// ramdisk file is copied as it is; a directory is packed on the way.
    pub ramdisks: Vec<PathBuf>,
    /// The mtime of every entry of a ramdisk given as a directory
    /// (SOURCE_DATE_EPOCH); unused for ramdisk files.
    pub epoch: Epoch,
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
    refuse_output_inside_ramdisk(inputs, output)?;
    let mut out = AtomicFile::create(output)?;
    let written =
        write_to(inputs, &mut out, progress).with_context(|| format!("writing {}", output.display()))?;
    out.commit()?;
    Ok(written)
}

/// Refuse an output inside a ramdisk given as a directory: the EIF (being
/// written there under a temporary name) would pack itself.
fn refuse_output_inside_ramdisk(inputs: &EifInputs, output: &Path) -> Result<()> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(parent) = parent.canonicalize() else { return Ok(()) };
    for r in inputs.ramdisks.iter().filter(|r| r.is_dir()) {
        if r.canonicalize().is_ok_and(|dir| parent.starts_with(dir)) {
            bail!(
                "the output {} lies inside the ramdisk directory {}: the EIF would pack itself; write it elsewhere",
                output.display(),
                r.display()
            );
        }
    }
    Ok(())
}

/// One section to stream: from a file, from bytes in memory, or a host
/// directory packed into a ramdisk on the way.
enum Source<'a> {
    File { path: &'a Path, file: File, size: u64 },
    Bytes(&'a [u8]),
    Dir(&'a Path),
}

impl Source<'_> {
    /// The section's size, where it is known before it is written.
    fn size(&self) -> Option<u64> {
        match self {
            Source::File { size, .. } => Some(*size),
            Source::Bytes(b) => Some(b.len() as u64),
            Source::Dir(_) => None,
        }
    }
}

/// A section's file; for a ramdisk, a directory too (`dirs_ok`).
fn open_input<'a>(what: &str, path: &'a Path, dirs_ok: bool) -> Result<Source<'a>> {
    let file = File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("cannot stat {what} {}", path.display()))?;
    if meta.is_dir() && dirs_ok {
        return Ok(Source::Dir(path));
    }
    if !meta.is_file() {
        let also = if dirs_ok { " or a directory" } else { "" };
        bail!("{what} {} is not a regular file{also}", path.display());
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
    progress.inc_length(HEADER_SIZE + sections.iter().filter_map(|(_, s)| s.size()).sum::<u64>());

    // The header is rewritten at the end, with every section's offset and
    // size; its CRC is combined with this one over everything that follows it.
    let mut body_crc = crc32fast::Hasher::new();
    w.write_all(&[0; HEADER_SIZE as usize])?;
    progress.inc(HEADER_SIZE);
    let (mut measurements, sizes) = stream_sections(w, sections, &mut body_crc, inputs.epoch, progress)?;
    let (mut header, mut total) = lay_out(inputs, &sizes);

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
        (SectionKind::Kernel, open_input("kernel", &inputs.kernel, false)?),
        (SectionKind::Cmdline, Source::Bytes(inputs.cmdline.as_bytes())),
        (SectionKind::Metadata, Source::Bytes(metadata)),
    ];
    for r in &inputs.ramdisks {
        sections.push((SectionKind::Ramdisk, open_input("ramdisk", r, true)?));
    }
    Ok(sections)
}

/// The header (CRC still zero) with every section's offset and size (as
/// written, in file order), and the file size those sections make.
fn lay_out(inputs: &EifInputs, sizes: &[u64]) -> (Header, u64) {
    let mut header = Header {
        magic: MAGIC,
        version: VERSION,
        flags: inputs.arch.flags(),
        default_mem: inputs.default_mem,
        default_cpus: inputs.default_cpus,
        reserved: 0,
        num_sections: sizes.len() as u16,
        section_offsets: [0; MAX_SECTIONS],
        section_sizes: [0; MAX_SECTIONS],
        unused: 0,
        crc32: 0,
    };
    let mut offset = HEADER_SIZE;
    for (i, &size) in sizes.iter().enumerate() {
        header.section_offsets[i] = offset;
        header.section_sizes[i] = size;
        offset += SECTION_HEADER_SIZE + size;
    }
    (header, offset)
}

/// Write each section (its header, then its bytes) after the EIF header,
/// feeding the CRC and the PCR measurer in the same pass; returns the
/// measurements and each section's size.
fn stream_sections<W: Write + Seek>(
    w: &mut W,
    sections: Vec<(SectionKind, Source)>,
    body_crc: &mut crc32fast::Hasher,
    epoch: Epoch,
    progress: &Progress,
) -> Result<(Measurements, Vec<u64>)> {
    let mut measurer = Measurer::new(CHUNK);
    let mut sizes = Vec::with_capacity(sections.len());
    for (kind, src) in sections {
        if kind == SectionKind::Ramdisk {
            measurer.start_ramdisk()?;
        }
        if let Source::Dir(dir) = src {
            sizes.push(stream_dir(w, dir, epoch, body_crc, &mut measurer, progress)?);
            continue;
        }
        let size = src.size().expect("files and bytes have a size");
        sizes.push(size);
        let sh = SectionHeader::new(kind, size).to_bytes();
        body_crc.update(&sh);
        w.write_all(&sh)?;
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
            Source::Dir(_) => unreachable!("streamed above"),
        }
    }
    Ok((measurer.finish()?, sizes))
}

/// Pack the host directory `dir` as a ramdisk section at the current
/// position: a placeholder section header, the archive (measured and CRC'd
/// on the way, its CRC kept apart), then the real header written over the
/// placeholder and its CRC and the archive's appended to `body_crc`.
/// Returns the section's size.
fn stream_dir<W: Write + Seek>(
    w: &mut W,
    dir: &Path,
    epoch: Epoch,
    body_crc: &mut crc32fast::Hasher,
    measurer: &mut Measurer,
    progress: &Progress,
) -> Result<u64> {
    let at = w.stream_position()?;
    w.write_all(&[0; SECTION_HEADER_SIZE as usize])?;
    let mut data_crc = crc32fast::Hasher::new();
    let buf = measurer.buffer();
    let mut sink = RamdiskSink { w: &mut *w, crc: &mut data_crc, measurer, buf, filled: 0, progress };
    let summary = crate::cpio::write_host_dir_into("", dir, &mut sink, epoch, &Progress::hidden())
        .with_context(|| format!("packing ramdisk {}", dir.display()))?;
    sink.flush_buffer()?;
    let sh = SectionHeader::new(SectionKind::Ramdisk, summary.bytes).to_bytes();
    body_crc.update(&sh);
    body_crc.combine(&data_crc);
    let end = w.stream_position()?;
    w.seek(SeekFrom::Start(at))?;
    w.write_all(&sh)?;
    w.seek(SeekFrom::Start(end))?;
    Ok(summary.bytes)
}

/// Where a directory ramdisk's archive goes: gathered in the measurer's
/// buffers, each full one written out, CRC'd and measured.
struct RamdiskSink<'a, W> {
    w: &'a mut W,
    crc: &'a mut crc32fast::Hasher,
    measurer: &'a mut Measurer,
    buf: Vec<u8>,
    filled: usize,
    progress: &'a Progress,
}

impl<W: Write> RamdiskSink<'_, W> {
    /// Write out, CRC and measure what the buffer holds.
    fn flush_buffer(&mut self) -> std::io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let n = self.filled;
        self.crc.update(&self.buf[..n]);
        self.w.write_all(&self.buf[..n])?;
        self.progress.inc_length(n as u64);
        self.progress.inc(n as u64);
        let buf = std::mem::take(&mut self.buf);
        self.buf = self.measurer.ramdisk(buf, n).map_err(std::io::Error::other)?;
        self.filled = 0;
        Ok(())
    }
}

impl<W: Write> Write for RamdiskSink<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.filled == self.buf.len() {
            self.flush_buffer()?;
        }
        let n = data.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Host files' content is read straight into the measurer's buffer.
impl<W: Write> crate::cpio::ArchiveOut for RamdiskSink<'_, W> {
    fn spare(&mut self) -> std::io::Result<&mut [u8]> {
        if self.filled == self.buf.len() {
            self.flush_buffer()?;
        }
        Ok(&mut self.buf[self.filled..])
    }

    fn commit(&mut self, n: usize) -> std::io::Result<()> {
        self.filled += n;
        Ok(())
    }
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
