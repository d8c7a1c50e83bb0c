//! Nitro Enclave measurements: PCR0, PCR1, PCR2 (and PCR8) as types, the
//! one-pass engine that computes them, and the two published file shapes.
//!
//! A PCR here is a SHA-384 register extended once from zero:
//! `PCR = SHA384(48 zero bytes ‖ SHA384(data))`, where the data is
//! - PCR0: kernel ‖ cmdline ‖ every ramdisk,
//! - PCR1: kernel ‖ cmdline ‖ the first ramdisk,
//! - PCR2: every ramdisk after the first,
//! - PCR8: the DER signing certificate (signed images only).
//!
//! [`Measurer`] hashes every byte once per core: PCR1 is a snapshot of the
//! PCR0 state taken when the first ramdisk ends, and PCR2 is hashed by a
//! second thread fed the same buffers, so two cores share the work and the
//! wall time stays close to one SHA-384 pass.
//!
//! Not for: reading or writing EIFs (see [`crate::eif`]), SHA-256 content
//! digests (see [`crate::digest`]), or signing.

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha384};

/// What nitro-cli prints as the `HashAlgorithm` of its measurements
/// (the `Debug` form of the `sha2` hasher it uses).
pub const HASH_ALGORITHM: &str = "Sha384 { ... }";

/// One 48-byte SHA-384 PCR value, displayed as 96 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr(pub [u8; 48]);

impl Pcr {
    /// The register after extending zero with the SHA-384 digest of `data`.
    pub fn of(data: &[u8]) -> Pcr {
        Pcr::extend(Sha384::digest(data).into())
    }

    /// `SHA384(48 zero bytes ‖ digest)`: one TPM-style extend of a zero register.
    pub fn extend(digest: [u8; 48]) -> Pcr {
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(digest);
        Pcr(h.finalize().into())
    }

    /// Finish a running hash of the measured data into a PCR.
    pub fn from_hasher(h: Sha384) -> Pcr {
        Pcr::extend(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Why a string is not a PCR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("PCR value {0:?} must be exactly 96 hex characters (a SHA-384 digest)")]
pub struct PcrError(pub String);

impl FromStr for Pcr {
    type Err = PcrError;
    fn from_str(s: &str) -> Result<Self, PcrError> {
        let mut out = [0u8; 48];
        if s.len() != 96 {
            return Err(PcrError(s.to_string()));
        }
        hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).map_err(|_| PcrError(s.to_string()))?;
        Ok(Pcr(out))
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({})", self.hex())
    }
}

impl Serialize for Pcr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pcr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The measurements of one EIF (also a build manifest's `outputs.pcrs`:
/// serde as lowercase hex under `PCR0`…`PCR8`, no other keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurements {
    #[serde(rename = "PCR0")]
    pub pcr0: Pcr,
    #[serde(rename = "PCR1")]
    pub pcr1: Pcr,
    #[serde(rename = "PCR2")]
    pub pcr2: Pcr,
    /// Present only for signed images.
    #[serde(rename = "PCR8", skip_serializing_if = "Option::is_none", default)]
    pub pcr8: Option<Pcr>,
}

impl Measurements {
    /// The `.pcrs` file: one line `<hex> PCRn` per register, PCR0 first.
    pub fn to_pcrs_file(&self) -> String {
        let mut s = String::new();
        for (n, p) in self.registers() {
            s.push_str(&format!("{p} PCR{n}\n"));
        }
        s
    }

    /// Parse a `.pcrs` file (`<hex> PCRn` lines; blank lines ignored).
    /// PCR0, PCR1 and PCR2 are required; PCR8 is optional; others are errors.
    pub fn parse_pcrs_file(text: &str) -> Result<Measurements> {
        let mut regs: [Option<Pcr>; 4] = [None; 4];
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let lineno = i + 1;
            let mut parts = line.split_whitespace();
            let (Some(value), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
                bail!("line {lineno}: expected `<96 hex> PCRn`, found {line:?}");
            };
            let slot = match name {
                "PCR0" => 0,
                "PCR1" => 1,
                "PCR2" => 2,
                "PCR8" => 3,
                other => {
                    bail!("line {lineno}: unknown register {other:?} (expected PCR0, PCR1, PCR2 or PCR8)")
                }
            };
            if regs[slot].is_some() {
                bail!("line {lineno}: {name} given twice");
            }
            regs[slot] = Some(value.parse().with_context(|| format!("line {lineno}: {name}"))?);
        }
        let need = |i: usize, name: &str| regs[i].with_context(|| format!("{name} is missing"));
        Ok(Measurements {
            pcr0: need(0, "PCR0")?,
            pcr1: need(1, "PCR1")?,
            pcr2: need(2, "PCR2")?,
            pcr8: regs[3],
        })
    }

    /// The registers present, as (index, value), in index order.
    pub fn registers(&self) -> Vec<(u8, Pcr)> {
        let mut v = vec![(0, self.pcr0), (1, self.pcr1), (2, self.pcr2)];
        if let Some(p) = self.pcr8 {
            v.push((8, p));
        }
        v
    }

    /// nitro-cli's shape: `{"HashAlgorithm": "Sha384 { ... }", "PCR0": …, …}`
    /// (wrap it in `{"Measurements": …}` as `describe-eif` does).
    pub fn nitro_cli_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("HashAlgorithm".into(), HASH_ALGORITHM.into());
        for (n, p) in self.registers() {
            m.insert(format!("PCR{n}"), p.hex().into());
        }
        serde_json::Value::Object(m)
    }
}

/// Where the bytes fed to a [`Measurer`] belong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Boot,
    FirstRamdisk,
    LaterRamdisk,
}

/// Computes PCR0/1/2 in one pass over kernel, cmdline and ramdisks, in file order.
///
/// Feed kernel and cmdline bytes with [`Measurer::boot`], then call
/// [`Measurer::start_ramdisk`] before each ramdisk and hand its bytes over
/// with [`Measurer::ramdisk`], which takes ownership of the buffer (it may go
/// to the PCR2 thread) and gives back a buffer to fill next.
pub struct Measurer {
    image: Sha384,
    boot: Option<Sha384>,
    phase: Phase,
    ramdisks: usize,
    app: Option<AppThread>,
    spare: Vec<Vec<u8>>,
    chunk: usize,
}

/// The PCR2 hasher on its own thread, fed owned buffers that it returns.
struct AppThread {
    to_worker: Option<SyncSender<Vec<u8>>>,
    from_worker: Receiver<Vec<u8>>,
    in_flight: usize,
    handle: JoinHandle<[u8; 48]>,
}

/// Buffers that may be with the PCR2 thread at once; bounds memory to
/// `(IN_FLIGHT + 2) × chunk`.
const IN_FLIGHT: usize = 2;

impl Measurer {
    /// A measurer whose buffers hold `chunk` bytes.
    pub fn new(chunk: usize) -> Self {
        Measurer {
            image: Sha384::new(),
            boot: None,
            phase: Phase::Boot,
            ramdisks: 0,
            app: None,
            spare: Vec::new(),
            chunk,
        }
    }

    /// A buffer of the `chunk` bytes given to [`Measurer::new`], to read into.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.resize(self.chunk, 0);
        b
    }

    /// Kernel or cmdline bytes (before any ramdisk).
    pub fn boot(&mut self, data: &[u8]) -> Result<()> {
        if self.phase != Phase::Boot {
            bail!("kernel and cmdline must come before the ramdisks to be measured");
        }
        self.image.update(data);
        Ok(())
    }

    /// Mark the start of the next ramdisk.
    pub fn start_ramdisk(&mut self) {
        self.ramdisks += 1;
        if self.ramdisks == 1 {
            self.phase = Phase::FirstRamdisk;
        } else {
            if self.phase == Phase::FirstRamdisk {
                self.boot = Some(self.image.clone());
            }
            self.phase = Phase::LaterRamdisk;
        }
    }

    /// Ramdisk bytes: `buf[..len]` is measured. Returns a buffer to fill next.
    pub fn ramdisk(&mut self, mut buf: Vec<u8>, len: usize) -> Result<Vec<u8>> {
        if self.phase == Phase::Boot {
            bail!("ramdisk data given before start_ramdisk");
        }
        self.image.update(&buf[..len]);
        if self.phase == Phase::FirstRamdisk || len == 0 {
            return Ok(buf);
        }
        buf.truncate(len);
        let app = match &mut self.app {
            Some(a) => a,
            None => self.app.insert(AppThread::spawn()?),
        };
        // Take back a finished buffer first when too many are out, so memory stays bounded.
        let mut next = None;
        if app.in_flight >= IN_FLIGHT {
            let b = app.from_worker.recv().context("the PCR2 hashing thread stopped")?;
            app.in_flight -= 1;
            next = Some(b);
        }
        app.to_worker
            .as_ref()
            .expect("sender present until finish")
            .send(buf)
            .map_err(|_| anyhow::anyhow!("the PCR2 hashing thread stopped"))?;
        app.in_flight += 1;
        while let Ok(b) = app.from_worker.try_recv() {
            app.in_flight -= 1;
            self.spare.push(b);
        }
        let mut b = next.or_else(|| self.spare.pop()).unwrap_or_default();
        b.resize(self.chunk, 0);
        Ok(b)
    }

    /// Finish PCR0/1/2. PCR8 (`None` here) is the signature's business: the
    /// EIF writer and reader set it from the signing certificate.
    pub fn finish(self) -> Result<Measurements> {
        let image = self.image;
        let pcr1 = match self.boot {
            Some(b) => Pcr::from_hasher(b),
            None => Pcr::from_hasher(image.clone()),
        };
        let pcr2 = match self.app {
            Some(mut a) => {
                drop(a.to_worker.take());
                let d = a.handle.join().map_err(|_| anyhow::anyhow!("the PCR2 hashing thread panicked"))?;
                Pcr::extend(d)
            }
            None => Pcr::from_hasher(Sha384::new()),
        };
        Ok(Measurements { pcr0: Pcr::from_hasher(image), pcr1, pcr2, pcr8: None })
    }
}

impl AppThread {
    fn spawn() -> Result<Self> {
        let (to_worker, rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (tx_back, from_worker) = mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("pcr2".into())
            .spawn(move || {
                let mut h = Sha384::new();
                for buf in rx {
                    h.update(&buf);
                    // The main thread may have finished already; then the buffer is just freed.
                    let _ = tx_back.send(buf);
                }
                h.finalize().into()
            })
            .context("cannot start the PCR2 hashing thread")?;
        Ok(AppThread { to_worker: Some(to_worker), from_worker, in_flight: 0, handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(kernel: &[u8], cmdline: &[u8], ramdisks: &[&[u8]], chunk: usize) -> Measurements {
        let mut m = Measurer::new(chunk);
        m.boot(kernel).unwrap();
        m.boot(cmdline).unwrap();
        for r in ramdisks {
            m.start_ramdisk();
            for piece in r.chunks(chunk) {
                let mut b = m.buffer();
                b[..piece.len()].copy_from_slice(piece);
                let back = m.ramdisk(b, piece.len()).unwrap();
                assert_eq!(back.len(), chunk);
            }
        }
        m.finish().unwrap()
    }

    #[test]
    fn matches_the_definition() {
        let kernel: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let r1: Vec<u8> = (0..5_000u32).map(|i| (i * 13) as u8).collect();
        let r2: Vec<u8> = (0..70_001u32).map(|i| (i * 31 + 5) as u8).collect();
        let r3 = b"third".to_vec();
        let cmd = b"console=ttyS0";
        for chunk in [1, 7, 4096, 1 << 20] {
            let m = measure(&kernel, cmd, &[&r1, &r2, &r3], chunk);
            let all = [&kernel[..], cmd, &r1, &r2, &r3].concat();
            assert_eq!(m.pcr0, Pcr::of(&all), "chunk {chunk}");
            assert_eq!(m.pcr1, Pcr::of(&[&kernel[..], cmd, &r1].concat()));
            assert_eq!(m.pcr2, Pcr::of(&[&r2[..], &r3].concat()));
            assert_eq!(m.pcr8, None);
        }
        let one = measure(&kernel, cmd, &[&r1], 4096);
        assert_eq!(one.pcr0, one.pcr1);
        assert_eq!(one.pcr2, Pcr::of(b""));
    }

    #[test]
    fn extend_of_empty_is_the_known_value() {
        // SHA384(48 zero bytes ‖ SHA384("")), an empty PCR2 as nitro-cli prints it
        // for single-ramdisk images.
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(Sha384::digest(b""));
        assert_eq!(Pcr::of(b"").0, <[u8; 48]>::from(h.finalize()));
    }

    #[test]
    fn pcrs_file_round_trips() {
        let m = Measurements { pcr0: Pcr::of(b"0"), pcr1: Pcr::of(b"1"), pcr2: Pcr::of(b"2"), pcr8: None };
        let text = m.to_pcrs_file();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(&format!("{} PCR0\n", Pcr::of(b"0"))));
        assert_eq!(Measurements::parse_pcrs_file(&text).unwrap(), m);
        let signed = Measurements { pcr8: Some(Pcr::of(b"8")), ..m.clone() };
        assert_eq!(Measurements::parse_pcrs_file(&signed.to_pcrs_file()).unwrap(), signed);
        let j = signed.nitro_cli_json();
        assert_eq!(j["HashAlgorithm"], HASH_ALGORITHM);
        assert_eq!(j["PCR8"], Pcr::of(b"8").hex());
    }

    #[test]
    fn pcrs_file_rejects_bad_lines() {
        let m = Measurements { pcr0: Pcr::of(b"0"), pcr1: Pcr::of(b"1"), pcr2: Pcr::of(b"2"), pcr8: None };
        let text = m.to_pcrs_file();
        let missing: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert!(Measurements::parse_pcrs_file(&missing).unwrap_err().to_string().contains("PCR2"));
        let twice = format!("{text}{} PCR1\n", Pcr::of(b"x"));
        assert!(Measurements::parse_pcrs_file(&twice).is_err());
        assert!(Measurements::parse_pcrs_file(&text.replace("PCR2", "PCR3")).is_err());
        assert!(Measurements::parse_pcrs_file("abcd PCR0\n").is_err());
        assert!("zz".repeat(48).parse::<Pcr>().is_err());
    }
}
