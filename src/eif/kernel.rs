//! Kernel image formats, told apart by their headers, so that an EIF is never
//! written with a kernel Nitro cannot boot for the image's architecture.
//!
//! What the Nitro hypervisor boots:
//!
//! - x86_64: a **bzImage** (Linux x86 boot protocol): the boot sector
//!   signature `0xAA55` at `0x1FE` and `HdrS` at `0x202`, the protocol
//!   version at `0x206` (`arch/x86/boot/bzImage`, StageX's `/bzImage`,
//!   Debian's amd64 `/boot/vmlinuz-*`);
//! - aarch64: the uncompressed arm64 **`Image`**: a 64-byte little-endian
//!   header with `text_offset` at 8, `image_size` at 16, `flags` at 24 and
//!   the magic `ARM\x64` at `0x38` (`arch/arm64/boot/Image`, Debian 12's
//!   arm64 `/boot/vmlinuz-*`, which despite its name is not compressed).
//!
//! Recognised and refused for both: a compressed kernel, which Nitro has no
//! decompressor for: a gzip, xz or zstd stream (`Image.gz`, a `vmlinuz`
//! that really is compressed) and an **EFI zboot** image (`MZ`, then `zimg`
//! at 4: `vmlinuz.efi` of kernels built with `CONFIG_EFI_ZBOOT`, a PE file
//! whose payload is the compressed `Image`).
//!
//! A kernel whose header matches none of these is let through as
//! [`KernelKind::Unknown`]: this is a check against the wrong file, not a
//! validator (tests use synthetic kernels, and an ELF `vmlinux` is the
//! hypervisor's business), so no escape hatch is needed for the cases it
//! does not know. A kernel that *is* recognisably for the other architecture
//! can never boot, and is always refused.
//!
//! Not for: checking anything past the header (a truncated `Image` with a
//! good header passes), decompressing kernels, or reading kernel configs
//! (that is the metadata's `kernel_info_from_config`).

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::platform::Arch;

/// How many bytes of a kernel [`KernelKind::identify`] looks at: the x86
/// setup header ends before `0x240`, the arm64 one at `0x40`.
pub const HEADER_LEN: usize = 0x240;

/// The arm64 `Image` magic at offset `0x38`: `ARM\x64` (0x644d5241 little-endian).
pub const ARM64_MAGIC: [u8; 4] = *b"ARM\x64";
/// The x86 boot protocol magic at offset `0x202`.
pub const BZIMAGE_MAGIC: [u8; 4] = *b"HdrS";

/// What a kernel file is, from its first [`HEADER_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// An x86 bzImage; `protocol` is the boot protocol version (`0x020f` = 2.15).
    BzImage { protocol: u16 },
    /// An uncompressed arm64 `Image`, with its header fields.
    Arm64Image { text_offset: u64, image_size: u64, flags: u64 },
    /// A compressed stream: `gzip`, `xz` or `zstd`.
    Compressed { format: &'static str },
    /// An EFI zboot PE image; `compression` is its payload's (`gzip`, `zstd`, …).
    EfiZboot { compression: String, payload_offset: u32, payload_size: u32 },
    /// None of the above.
    Unknown,
}

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl KernelKind {
    /// Identify a kernel from its first bytes (give at least [`HEADER_LEN`]
    /// when the file has them; fewer only match the formats they cover).
    pub fn identify(head: &[u8]) -> KernelKind {
        if head.len() >= 0x40 && head[0x38..0x3c] == ARM64_MAGIC {
            return KernelKind::Arm64Image {
                text_offset: u64_le(head, 8),
                image_size: u64_le(head, 16),
                flags: u64_le(head, 24),
            };
        }
        if head.len() >= 0x208 && head[0x1fe..0x200] == [0x55, 0xaa] && head[0x202..0x206] == BZIMAGE_MAGIC {
            return KernelKind::BzImage { protocol: u16_le(head, 0x206) };
        }
        if head.len() >= 0x18 && head.starts_with(b"MZ") && &head[4..8] == b"zimg" {
            let name = &head[0x18..head.len().min(0x38)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            return KernelKind::EfiZboot {
                compression: String::from_utf8_lossy(name).into_owned(),
                payload_offset: u32_le(head, 8),
                payload_size: u32_le(head, 12),
            };
        }
        let format = if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            "gzip"
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            "xz"
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            "zstd"
        } else {
            return KernelKind::Unknown;
        };
        KernelKind::Compressed { format }
    }

    /// Identify the kernel `r` starts with (reads at most [`HEADER_LEN`] bytes).
    pub fn read(r: impl Read) -> std::io::Result<KernelKind> {
        let mut head = Vec::with_capacity(HEADER_LEN);
        r.take(HEADER_LEN as u64).read_to_end(&mut head)?;
        Ok(KernelKind::identify(&head))
    }

    /// Identify the kernel file at `path`.
    pub fn of_file(path: &Path) -> Result<KernelKind> {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open kernel {}", path.display()))?;
        KernelKind::read(f).with_context(|| format!("reading kernel {}", path.display()))
    }

    /// The architecture this kernel is for, when its header says.
    pub fn arch(&self) -> Option<Arch> {
        match self {
            KernelKind::BzImage { .. } => Some(Arch::X86_64),
            KernelKind::Arm64Image { .. } => Some(Arch::Aarch64),
            // zboot exists for arm64, riscv and loongarch alike; refused as compressed anyway.
            KernelKind::EfiZboot { .. } | KernelKind::Compressed { .. } | KernelKind::Unknown => None,
        }
    }

    /// Why Nitro cannot boot this kernel in an EIF for `arch`, with what to
    /// give instead; `None` when it can (or when its header says nothing).
    /// `what` names the kernel in the message ("kernel out/Image").
    pub fn refusal(&self, what: &str, arch: Arch) -> Option<String> {
        let want = match arch {
            Arch::X86_64 => "the x86 bzImage (arch/x86/boot/bzImage, StageX's /bzImage)",
            Arch::Aarch64 => {
                "the uncompressed arm64 `Image` (arch/arm64/boot/Image, Debian's arm64 /boot/vmlinuz-*)"
            }
        };
        let other = arch.other();
        match self {
            KernelKind::Compressed { format } => Some(format!(
                "{what} is {format}-compressed, and Nitro boots only an uncompressed kernel; \
                 decompress it and give {want}"
            )),
            KernelKind::EfiZboot { compression, .. } => Some(format!(
                "{what} is {self}, and Nitro boots only an uncompressed kernel; give {want} \
                 (from the kernel build, or build with CONFIG_EFI_ZBOOT=n; the zboot file wraps a {compression} copy of it)"
            )),
            k if k.arch() == Some(other) => Some(format!(
                "{what} is {self}, but the EIF is for {arch} (`--arch {arch}`, or `arch = \"{arch}\"` in the recipe); \
                 give {want}, or build for {other}"
            )),
            _ => None,
        }
    }

    /// One line for `describe`: the kind, and why it cannot boot as `arch` when it cannot.
    pub fn summary(&self, arch: Arch) -> String {
        match self.refusal("it", arch) {
            Some(why) => format!("{self} (NOT BOOTABLE: {why})"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelKind::BzImage { protocol } => {
                write!(f, "an x86 bzImage (boot protocol {}.{:02})", protocol >> 8, protocol & 0xff)
            }
            KernelKind::Arm64Image { text_offset, image_size, flags } => {
                let page = match (flags >> 1) & 3 {
                    1 => "4K pages",
                    2 => "16K pages",
                    3 => "64K pages",
                    _ => "page size unspecified",
                };
                let endian = if flags & 1 == 1 { "big-endian" } else { "little-endian" };
                write!(
                    f,
                    "an arm64 Image (text_offset {text_offset:#x}, image_size {image_size}, {endian}, {page})"
                )
            }
            KernelKind::Compressed { format } => write!(f, "a {format}-compressed file"),
            KernelKind::EfiZboot { compression, payload_offset, payload_size } => write!(
                f,
                "an EFI zboot image ({compression} payload of {payload_size} bytes at offset {payload_offset})"
            ),
            KernelKind::Unknown => f.write_str("not a bzImage or arm64 Image (unrecognised header)"),
        }
    }
}

/// Refuse the kernel file at `path` when Nitro cannot boot it as `arch`
/// (see the module documentation); returns what it is otherwise.
pub fn check(path: &Path, arch: Arch) -> Result<KernelKind> {
    let kind = KernelKind::of_file(path)?;
    if let Some(why) = kind.refusal(&format!("kernel {}", path.display()), arch) {
        bail!(why);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-byte header of an arm64 `Image` (4K pages, little-endian).
    fn arm64_image_header(image_size: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&[0x4d, 0x5a, 0x40, 0xfa]);
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&0xau64.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&ARM64_MAGIC);
        h
    }

    /// The first bytes of an x86 bzImage speaking boot protocol 2.15.
    fn bzimage_header() -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..2].copy_from_slice(b"MZ");
        h[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        h[0x202..0x206].copy_from_slice(&BZIMAGE_MAGIC);
        h[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        h
    }

    fn zboot() -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..4].copy_from_slice(b"MZ\0\0");
        h[4..8].copy_from_slice(b"zimg");
        h[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
        h[12..16].copy_from_slice(&0x80_0000u32.to_le_bytes());
        h[0x18..0x1c].copy_from_slice(b"gzip");
        h[0x38..0x3c].copy_from_slice(&0x8182_23cdu32.to_le_bytes()); // LINUX_PE_MAGIC
        h
    }

    #[test]
    fn identifies_each_format() {
        let arm = arm64_image_header(0x1ab_0000);
        assert_eq!(
            KernelKind::identify(&arm),
            KernelKind::Arm64Image { text_offset: 0, image_size: 0x1ab_0000, flags: 0xa }
        );
        assert_eq!(
            KernelKind::identify(&arm).to_string(),
            "an arm64 Image (text_offset 0x0, image_size 27983872, little-endian, 4K pages)"
        );
        let bz = bzimage_header();
        assert_eq!(KernelKind::identify(&bz), KernelKind::BzImage { protocol: 0x020f });
        assert_eq!(KernelKind::identify(&bz).to_string(), "an x86 bzImage (boot protocol 2.15)");
        assert_eq!(
            KernelKind::identify(&zboot()),
            KernelKind::EfiZboot {
                compression: "gzip".into(),
                payload_offset: 0x1000,
                payload_size: 0x80_0000
            }
        );
        assert_eq!(
            KernelKind::identify(&[0x1f, 0x8b, 8, 0, 0, 0]),
            KernelKind::Compressed { format: "gzip" }
        );
        assert_eq!(KernelKind::identify(b"\xfd7zXZ\0\0"), KernelKind::Compressed { format: "xz" });
        assert_eq!(
            KernelKind::identify(&[0x28, 0xb5, 0x2f, 0xfd, 1]),
            KernelKind::Compressed { format: "zstd" }
        );
        assert_eq!(KernelKind::identify(b"\x7fELF\x02\x01\x01"), KernelKind::Unknown);
        assert_eq!(KernelKind::identify(&[]), KernelKind::Unknown);
        // Too short for the magic's offset: not guessed at.
        assert_eq!(KernelKind::identify(&arm[..0x3b]), KernelKind::Unknown);
        assert_eq!(KernelKind::identify(&bz[..0x205]), KernelKind::Unknown);
    }

    #[test]
    fn reads_only_the_header() {
        let mut f = bzimage_header();
        f.extend(std::iter::repeat_n(7u8, 1 << 20));
        let mut r = &f[..];
        assert_eq!(KernelKind::read(&mut r).unwrap(), KernelKind::BzImage { protocol: 0x020f });
        assert_eq!(r.len(), f.len() - HEADER_LEN);
    }

    #[test]
    fn refuses_the_other_arch_and_compressed_kernels() {
        let arm = KernelKind::identify(&arm64_image_header(4096));
        let bz = KernelKind::identify(&bzimage_header());
        assert_eq!(arm.refusal("k", Arch::Aarch64), None);
        assert_eq!(bz.refusal("k", Arch::X86_64), None);
        assert_eq!(KernelKind::Unknown.refusal("k", Arch::Aarch64), None);

        let e = bz.refusal("kernel out/bzImage", Arch::Aarch64).unwrap();
        assert!(
            e.starts_with("kernel out/bzImage is an x86 bzImage (boot protocol 2.15), but the EIF is for aarch64 (`--arch aarch64`"),
            "{e}"
        );
        assert!(
            e.contains("give the uncompressed arm64 `Image`") && e.contains("or build for x86_64"),
            "{e}"
        );
        let e = arm.refusal("kernel Image", Arch::X86_64).unwrap();
        assert!(e.contains("is an arm64 Image") && e.contains("give the x86 bzImage"), "{e}");

        for arch in [Arch::X86_64, Arch::Aarch64] {
            let e = KernelKind::Compressed { format: "gzip" }.refusal("kernel Image.gz", arch).unwrap();
            assert!(e.contains("Image.gz is gzip-compressed") && e.contains("decompress it"), "{e}");
            let e = KernelKind::identify(&zboot()).refusal("kernel vmlinuz.efi", arch).unwrap();
            assert!(e.contains("EFI zboot") && e.contains("CONFIG_EFI_ZBOOT=n"), "{e}");
        }
        assert!(bz.summary(Arch::Aarch64).contains("NOT BOOTABLE"));
        assert_eq!(bz.summary(Arch::X86_64), "an x86 bzImage (boot protocol 2.15)");
    }

    #[test]
    fn check_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bzImage");
        std::fs::write(&p, bzimage_header()).unwrap();
        assert_eq!(check(&p, Arch::X86_64).unwrap(), KernelKind::BzImage { protocol: 0x020f });
        let e = check(&p, Arch::Aarch64).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("arm64"), "{e}");
        let e = format!("{:#}", check(&dir.path().join("missing"), Arch::X86_64).unwrap_err());
        assert!(e.contains("cannot open kernel") && e.contains("missing"), "{e}");
    }
}
