//! The streaming EIF writer: section sizes come from the input files' sizes,
//! so the header is written first with a zero CRC, every section is streamed
//! once (CRC-32 and PCRs computed on the way), and the CRC is patched last.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{
    Arch, Header, Metadata, SectionHeader, SectionKind, CHUNK, HEADER_CRC_SPAN, HEADER_SIZE, MAGIC,
    MAX_SECTIONS, SECTION_HEADER_SIZE, VERSION,
};
use crate::fsutil::AtomicFile;
use crate::pcr::{Measurements, Measurer};
use crate::progress::Progress;

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
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Written {
    pub header: Header,
    pub measurements: Measurements,
    pub size: u64,
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
pub fn write_to<W: Write + Seek>(inputs: &EifInputs, w: &mut W, progress: &Progress) -> Result<Written> {
    if inputs.cmdline.as_bytes().contains(&0) {
        bail!("the kernel command line contains a NUL byte");
    }
    super::kernel::check(&inputs.kernel, inputs.arch)?;
    if inputs.ramdisks.is_empty() {
        bail!("an EIF needs at least one ramdisk");
    }
    if inputs.ramdisks.len() > MAX_SECTIONS - 3 {
        bail!(
            "{} ramdisks given; an EIF holds at most {} (32 sections minus kernel, cmdline and metadata)",
            inputs.ramdisks.len(),
            MAX_SECTIONS - 3
        );
    }
    let metadata = inputs.metadata.to_bytes();
    let mut sections: Vec<(SectionKind, Source)> = vec![
        (SectionKind::Kernel, open_input("kernel", &inputs.kernel)?),
        (SectionKind::Cmdline, Source::Bytes(inputs.cmdline.as_bytes())),
        (SectionKind::Metadata, Source::Bytes(&metadata)),
    ];
    for r in &inputs.ramdisks {
        sections.push((SectionKind::Ramdisk, open_input("ramdisk", r)?));
    }

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
    let total = offset;
    progress.inc_length(total);

    let mut crc = crc32fast::Hasher::new();
    let head = header.to_bytes();
    crc.update(&head[..HEADER_CRC_SPAN]);
    w.write_all(&head)?;
    progress.inc(HEADER_SIZE);

    let mut measurer = Measurer::new(CHUNK);
    for (kind, src) in sections {
        let sh = SectionHeader::new(kind, src.size()).to_bytes();
        crc.update(&sh);
        w.write_all(&sh)?;
        if kind == SectionKind::Ramdisk {
            measurer.start_ramdisk();
        }
        match src {
            Source::Bytes(b) => {
                crc.update(b);
                w.write_all(b)?;
                if kind != SectionKind::Metadata {
                    measurer.boot(b)?;
                }
                progress.inc(b.len() as u64);
            }
            Source::File { path, mut file, size } => {
                let mut left = size;
                let mut buf = measurer.buffer();
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n =
                        file.read(&mut buf[..want]).with_context(|| format!("reading {}", path.display()))?;
                    if n == 0 {
                        bail!(
                            "{} shrank while being written into the EIF (expected {size} bytes)",
                            path.display()
                        );
                    }
                    crc.update(&buf[..n]);
                    w.write_all(&buf[..n])?;
                    left -= n as u64;
                    progress.inc(n as u64);
                    if kind == SectionKind::Ramdisk {
                        buf = measurer.ramdisk(buf, n)?;
                    } else {
                        measurer.boot(&buf[..n])?;
                    }
                }
                if file.read(&mut buf[..1]).with_context(|| format!("reading {}", path.display()))? != 0 {
                    bail!("{} grew while being written into the EIF (expected {size} bytes)", path.display());
                }
            }
        }
    }
    header.crc32 = crc.finalize();
    w.seek(SeekFrom::Start(HEADER_CRC_SPAN as u64))?;
    w.write_all(&header.crc32.to_be_bytes())?;
    w.seek(SeekFrom::Start(total))?;
    w.flush()?;
    let measurements = measurer.finish()?;
    Ok(Written { header, measurements, size: total })
}
