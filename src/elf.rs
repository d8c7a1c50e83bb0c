//! Just enough ELF to name a program's interpreter: the `PT_INTERP` program
//! header (`/lib64/ld-linux-x86-64.so.2` for a glibc program, none for a
//! static one).
//!
//! For: the build's check that the enclave command can start in the root
//! filesystem it is given (a glibc program on a busybox root otherwise fails
//! at boot, inside the enclave, where nobody sees why).
//! Not for: anything else about ELF files (sections, symbols, libraries the
//! interpreter would load; [`crate::sandbox`] and [`crate::eif::kernel`]
//! read the few header bytes they need themselves).
//!
//! Invariants: reads only the ELF header, the program header table and the
//! interpreter string, each bounded; a file that is not ELF, or is cut
//! short, has no interpreter (`Ok(None)`) rather than an error, since a
//! script or a truncated file is not this check's business.

use std::io::{self, Read, Seek, SeekFrom};

/// `p_type` of the program header naming the interpreter.
const PT_INTERP: u32 = 3;
/// The longest interpreter path read (Linux allows `PATH_MAX`).
const INTERP_MAX: u64 = 4096;

/// The interpreter path of the ELF program read from `r`, or `None` when it
/// has none (a static program) or is not an ELF file.
pub fn interpreter<R: Read + Seek>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut ehdr = [0u8; 64];
    if crate::fsutil::read_full(r, &mut ehdr)? < 52 || &ehdr[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let (is64, le) = match (ehdr[4], ehdr[5]) {
        (c @ (1 | 2), d @ (1 | 2)) => (c == 2, d == 1),
        _ => return Ok(None),
    };
    let num = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for i in 0..b.len() {
            let byte = if le { b[b.len() - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        v
    };
    let (phoff, phentsize, phnum) = if is64 {
        (num(&ehdr[0x20..0x28]), num(&ehdr[0x36..0x38]), num(&ehdr[0x38..0x3a]))
    } else {
        (num(&ehdr[0x1c..0x20]), num(&ehdr[0x2a..0x2c]), num(&ehdr[0x2c..0x2e]))
    };
    let min_entry = if is64 { 56 } else { 32 };
    if phentsize < min_entry {
        return Ok(None);
    }
    let mut ph = vec![0u8; phentsize as usize];
    for i in 0..phnum {
        r.seek(SeekFrom::Start(phoff + i * phentsize))?;
        if crate::fsutil::read_full(r, &mut ph)? < ph.len() {
            return Ok(None);
        }
        if num(&ph[0..4]) != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) =
            if is64 { (num(&ph[8..16]), num(&ph[32..40])) } else { (num(&ph[4..8]), num(&ph[16..20])) };
        let mut path = vec![0u8; size.min(INTERP_MAX) as usize];
        r.seek(SeekFrom::Start(offset))?;
        let n = crate::fsutil::read_full(r, &mut path)?;
        path.truncate(n);
        if let Some(nul) = path.iter().position(|&b| b == 0) {
            path.truncate(nul);
        }
        return Ok(Some(path));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal 64-bit little-endian ELF with one PT_LOAD and, when given, a PT_INTERP.
    fn elf64(interp: Option<&[u8]>) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        let phnum: u16 = if interp.is_some() { 2 } else { 1 };
        f[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        let mut load = vec![0u8; 56];
        load[0..4].copy_from_slice(&1u32.to_le_bytes());
        f.extend(load);
        if let Some(i) = interp {
            let off = 64 + 2 * 56;
            let mut ph = vec![0u8; 56];
            ph[0..4].copy_from_slice(&PT_INTERP.to_le_bytes());
            ph[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&(i.len() as u64 + 1).to_le_bytes());
            f.extend(ph);
            f.extend(i);
            f.push(0);
        }
        f
    }

    #[test]
    fn reads_pt_interp() {
        let glibc = elf64(Some(b"/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(interpreter(&mut Cursor::new(glibc)).unwrap().unwrap(), b"/lib64/ld-linux-x86-64.so.2");
        assert_eq!(interpreter(&mut Cursor::new(elf64(None))).unwrap(), None);
        assert_eq!(interpreter(&mut Cursor::new(b"#!/bin/sh\necho hi\n".to_vec())).unwrap(), None);
        assert_eq!(interpreter(&mut Cursor::new(b"\x7fELF".to_vec())).unwrap(), None);
    }

    /// The host's own programs: a static busybox has no interpreter, a
    /// dynamically linked one names the one that exists on this host.
    #[test]
    fn host_programs() {
        let busybox = std::path::Path::new("/bin/busybox");
        if busybox.exists() {
            let mut f = std::fs::File::open(busybox).unwrap();
            assert_eq!(interpreter(&mut f).unwrap(), None, "Debian's busybox-static is static");
        }
        let mut f = std::fs::File::open("/bin/ls").unwrap();
        let interp = interpreter(&mut f).unwrap().expect("/bin/ls is dynamically linked");
        let interp = String::from_utf8(interp).unwrap();
        assert!(interp.starts_with('/') && std::path::Path::new(&interp).exists(), "{interp}");
    }
}
