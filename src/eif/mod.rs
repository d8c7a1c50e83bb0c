//! The AWS Enclave Image Format (EIF), version 4: byte layout, a streaming
//! writer and a streaming, validating reader.
//!
//! Layout (all integers big-endian), as AWS's `aws-nitro-enclaves-image-format`
//! crate writes it:
//!
//! ```text
//! header (548 bytes): magic ".eif", version u16, flags u16 (bit 0 = aarch64),
//!   default_mem u64, default_cpus u64, reserved u16, num_sections u16,
//!   section_offsets [u64; 32], section_sizes [u64; 32], unused u32, crc32 u32
//! then, contiguous, per section: type u16, flags u16, size u64, then `size` data bytes
//!   in the order kernel, cmdline, metadata, ramdisk…, (signature)
//! ```
//!
//! The CRC-32 (ISO-HDLC, as zlib) covers header bytes `[0, 544)` and then every
//! section header and its data in file order. The measurements (PCRs) are in
//! [`crate::pcr`]; this module feeds them while it streams.
//!
//! The writer refuses a kernel Nitro cannot boot for the header's
//! architecture (a bzImage in an aarch64 EIF, an arm64 `Image` in an x86_64
//! one, a compressed kernel): see [`kernel`]. A signed image ends with a
//! signature section whose format is in [`signature`]; the writer appends it
//! once PCR0 is known, the reader checks it against the PCR0 it measures.
//!
//! Not for: building ramdisks (see the cpio module), loading signing keys
//! (see [`crate::signing`]), or deciding what goes into an image (the build
//! command does that).

pub mod describe;
pub mod diff;
pub mod kernel;
mod metadata;
mod reader;
pub mod signature;
mod writer;

pub use metadata::{build_time, kernel_info_from_config, parse_custom, BuildInfo, Metadata};
pub use reader::{Eif, Section, SectionReader, Verification};
pub use signature::{SignatureReport, SIGNATURE_SECTION_LIMIT};
pub use writer::{sign_existing, write_eif, EifInputs, Signing, Written};

use std::fmt;

use crate::platform::Arch;

/// `.eif`
pub const MAGIC: [u8; 4] = *b".eif";
/// The format version this module writes.
pub const VERSION: u16 = 4;
/// Size of the file header.
pub const HEADER_SIZE: u64 = 548;
/// Size of each section header.
pub const SECTION_HEADER_SIZE: u64 = 12;
/// Slots in the header's offset and size tables.
pub const MAX_SECTIONS: usize = 32;
/// Header flag bit: the image is for aarch64 (cleared for x86_64).
pub const FLAG_AARCH64: u16 = 0x1;
/// Bytes of the header covered by the CRC (all but the CRC field itself).
pub const HEADER_CRC_SPAN: usize = 544;
/// AWS's defaults for the boot-time memory (bytes) and vCPU count fields.
pub const DEFAULT_MEM: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_CPUS: u64 = 2;

/// Streaming buffer size for reading and writing sections.
pub const CHUNK: usize = 2 << 20;

/// Section types (the `type` field of a section header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    Kernel = 1,
    Cmdline = 2,
    Ramdisk = 3,
    Signature = 4,
    Metadata = 5,
}

impl SectionKind {
    pub fn from_u16(v: u16) -> Option<SectionKind> {
        Some(match v {
            1 => SectionKind::Kernel,
            2 => SectionKind::Cmdline,
            3 => SectionKind::Ramdisk,
            4 => SectionKind::Signature,
            5 => SectionKind::Metadata,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Kernel => "kernel",
            SectionKind::Cmdline => "cmdline",
            SectionKind::Ramdisk => "ramdisk",
            SectionKind::Signature => "signature",
            SectionKind::Metadata => "metadata",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 548-byte file header, field for field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub flags: u16,
    pub default_mem: u64,
    pub default_cpus: u64,
    pub reserved: u16,
    pub num_sections: u16,
    pub section_offsets: [u64; MAX_SECTIONS],
    pub section_sizes: [u64; MAX_SECTIONS],
    pub unused: u32,
    pub crc32: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        b[0..4].copy_from_slice(&self.magic);
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        b[6..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..16].copy_from_slice(&self.default_mem.to_be_bytes());
        b[16..24].copy_from_slice(&self.default_cpus.to_be_bytes());
        b[24..26].copy_from_slice(&self.reserved.to_be_bytes());
        b[26..28].copy_from_slice(&self.num_sections.to_be_bytes());
        for i in 0..MAX_SECTIONS {
            b[28 + 8 * i..36 + 8 * i].copy_from_slice(&self.section_offsets[i].to_be_bytes());
            b[284 + 8 * i..292 + 8 * i].copy_from_slice(&self.section_sizes[i].to_be_bytes());
        }
        b[540..544].copy_from_slice(&self.unused.to_be_bytes());
        b[544..548].copy_from_slice(&self.crc32.to_be_bytes());
        b
    }

    /// Decode the fields; no validation (see [`Eif::open`] for that).
    pub fn from_bytes(b: &[u8; HEADER_SIZE as usize]) -> Header {
        let u16_at = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let mut section_offsets = [0u64; MAX_SECTIONS];
        let mut section_sizes = [0u64; MAX_SECTIONS];
        for i in 0..MAX_SECTIONS {
            section_offsets[i] = u64_at(28 + 8 * i);
            section_sizes[i] = u64_at(284 + 8 * i);
        }
        Header {
            magic: [b[0], b[1], b[2], b[3]],
            version: u16_at(4),
            flags: u16_at(6),
            default_mem: u64_at(8),
            default_cpus: u64_at(16),
            reserved: u16_at(24),
            num_sections: u16_at(26),
            section_offsets,
            section_sizes,
            unused: u32_at(540),
            crc32: u32_at(544),
        }
    }

    pub fn arch(&self) -> Arch {
        Arch::from_flags(self.flags)
    }
}

/// A 12-byte section header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    pub kind: u16,
    pub flags: u16,
    pub size: u64,
}

impl SectionHeader {
    pub fn new(kind: SectionKind, size: u64) -> Self {
        SectionHeader { kind: kind as u16, flags: 0, size }
    }

    pub fn to_bytes(&self) -> [u8; SECTION_HEADER_SIZE as usize] {
        let mut b = [0u8; SECTION_HEADER_SIZE as usize];
        b[0..2].copy_from_slice(&self.kind.to_be_bytes());
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..12].copy_from_slice(&self.size.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; SECTION_HEADER_SIZE as usize]) -> Self {
        SectionHeader {
            kind: u16::from_be_bytes([b[0], b[1]]),
            flags: u16::from_be_bytes([b[2], b[3]]),
            size: u64::from_be_bytes(b[4..12].try_into().expect("8 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_round_trips() {
        let mut h = Header {
            magic: MAGIC,
            version: VERSION,
            flags: FLAG_AARCH64,
            default_mem: 0x0102_0304_0506_0708,
            default_cpus: 2,
            reserved: 0,
            num_sections: 4,
            section_offsets: [0; MAX_SECTIONS],
            section_sizes: [0; MAX_SECTIONS],
            unused: 0,
            crc32: 0xdead_beef,
        };
        h.section_offsets[0] = 548;
        h.section_sizes[31] = 7;
        let b = h.to_bytes();
        assert_eq!(&b[0..8], b".eif\x00\x04\x00\x01");
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[28..36], &548u64.to_be_bytes());
        assert_eq!(&b[284 + 31 * 8..292 + 31 * 8], &7u64.to_be_bytes());
        assert_eq!(&b[544..], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(Header::from_bytes(&b), h);
        assert_eq!(h.arch(), Arch::Aarch64);
        let s = SectionHeader::new(SectionKind::Metadata, 0x1234);
        assert_eq!(s.to_bytes(), [0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]);
        assert_eq!(SectionHeader::from_bytes(&s.to_bytes()), s);
    }
}
