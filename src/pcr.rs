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
//! [`Measurer`] hashes every byte once per register it belongs to, off the
//! caller's thread: PCR0's hasher runs on a thread of its own from the first
//! ramdisk on (PCR1 is a snapshot of its state taken when the first ramdisk
//! ends), and PCR2's on another, fed the same buffers. The caller, reading
//! or packing the bytes, overlaps with them, so the wall time stays close
//! to one SHA-384 pass.
//!
//! Not for: reading or writing EIFs (see [`crate::eif`]), SHA-256 content
//! digests (see [`crate::digest`]), or signing.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
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
/// with [`Measurer::ramdisk`], which takes ownership of the buffer (it goes
/// to the hashing threads) and gives back a buffer to fill next.
///
/// Ramdisk bytes are hashed off the caller's thread: the PCR0 hasher moves
/// to a thread of its own when the first ramdisk starts (PCR1 is a snapshot
/// it takes when the second one starts), and PCR2's hasher has another. The
/// caller, which reads or packs the bytes, overlaps with both. A buffer is
/// shared by the threads it was sent to and comes back for reuse once each
/// has acknowledged it, in order; at most [`IN_FLIGHT`] are out at once.
pub struct Measurer {
    /// The PCR0 hasher while the kernel and cmdline are fed, on this thread.
    boot: Option<Sha384>,
    /// The PCR0 (and PCR1) hasher, from the first ramdisk on.
    image: Option<Worker>,
    /// The PCR2 hasher, from the second ramdisk on.
    app: Option<Worker>,
    phase: Phase,
    ramdisks: usize,
    /// Buffers with the workers, oldest first, and whether PCR2's has it too.
    in_flight: VecDeque<(Arc<Vec<u8>>, bool)>,
    spare: Vec<Vec<u8>>,
    chunk: usize,
}

/// What a hashing thread is sent: bytes, or "remember the state now".
enum Msg {
    Data(Arc<Vec<u8>>),
    Snapshot,
}

/// A SHA-384 hasher on its own thread, fed shared buffers in order; it
/// drops its share of each buffer, then acknowledges it on `done`.
struct Worker {
    what: &'static str,
    to: Option<SyncSender<Msg>>,
    done: Receiver<()>,
    /// The final digest, and the digest at the snapshot if one was asked for.
    handle: JoinHandle<([u8; 48], Option<[u8; 48]>)>,
}

/// Buffers that may be with the hashing threads at once; bounds memory to
/// `(IN_FLIGHT + 1) × chunk`.
const IN_FLIGHT: usize = 3;

impl Measurer {
    /// A measurer whose buffers hold `chunk` bytes.
    pub fn new(chunk: usize) -> Self {
        Measurer {
            boot: Some(Sha384::new()),
            image: None,
            app: None,
            phase: Phase::Boot,
            ramdisks: 0,
            in_flight: VecDeque::new(),
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
        match (&mut self.boot, self.phase) {
            (Some(h), Phase::Boot) => h.update(data),
            _ => bail!("kernel and cmdline must come before the ramdisks to be measured"),
        }
        Ok(())
    }

    /// Mark the start of the next ramdisk.
    pub fn start_ramdisk(&mut self) -> Result<()> {
        self.ramdisks += 1;
        match self.phase {
            Phase::Boot => {
                let state = self.boot.take().expect("the boot hasher until the first ramdisk");
                self.image = Some(Worker::spawn("PCR0", state)?);
                self.phase = Phase::FirstRamdisk;
            }
            Phase::FirstRamdisk => {
                self.image.as_ref().expect("started with the first ramdisk").send(Msg::Snapshot)?;
                self.app = Some(Worker::spawn("PCR2", Sha384::new())?);
                self.phase = Phase::LaterRamdisk;
            }
            Phase::LaterRamdisk => {}
        }
        Ok(())
    }

    /// Ramdisk bytes: `buf[..len]` is measured. Returns a buffer to fill next.
    pub fn ramdisk(&mut self, mut buf: Vec<u8>, len: usize) -> Result<Vec<u8>> {
        let Some(image) = &self.image else { bail!("ramdisk data given before start_ramdisk") };
        if len == 0 {
            return Ok(buf);
        }
        buf.truncate(len);
        let shared = Arc::new(buf);
        image.send(Msg::Data(shared.clone()))?;
        if let Some(app) = &self.app {
            app.send(Msg::Data(shared.clone()))?;
        }
        self.in_flight.push_back((shared, self.app.is_some()));
        let mut next = if self.in_flight.len() > IN_FLIGHT { self.reclaim_oldest()? } else { self.buffer() };
        next.resize(self.chunk, 0);
        Ok(next)
    }

    /// Wait until every thread given the oldest buffer out has hashed it; return it.
    fn reclaim_oldest(&mut self) -> Result<Vec<u8>> {
        let (shared, to_app) = self.in_flight.pop_front().expect("a buffer in flight");
        self.image.as_ref().expect("a buffer in flight went to it").wait()?;
        if to_app {
            self.app.as_ref().expect("a buffer in flight went to it").wait()?;
        }
        Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("a hashing thread kept a buffer"))
    }

    /// Finish PCR0/1/2. PCR8 (`None` here) is the signature's business: the
    /// EIF writer and reader set it from the signing certificate.
    pub fn finish(mut self) -> Result<Measurements> {
        self.in_flight.clear();
        let (pcr0, pcr1) = match (self.image.take(), self.boot.take()) {
            (Some(w), _) => {
                let (all, snapshot) = w.join()?;
                (Pcr::extend(all), Pcr::extend(snapshot.unwrap_or(all)))
            }
            (None, Some(h)) => {
                let p = Pcr::from_hasher(h);
                (p, p)
            }
            (None, None) => unreachable!("one of the two hashers is always there"),
        };
        let pcr2 = match self.app.take() {
            Some(w) => Pcr::extend(w.join()?.0),
            None => Pcr::from_hasher(Sha384::new()),
        };
        Ok(Measurements { pcr0, pcr1, pcr2, pcr8: None })
    }
}

impl Worker {
    /// A thread hashing on from `state`.
    fn spawn(what: &'static str, mut state: Sha384) -> Result<Self> {
        let (to, rx) = mpsc::sync_channel::<Msg>(IN_FLIGHT + 1);
        let (acks, done) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("{what} hash"))
            .spawn(move || {
                let mut snapshot = None;
                for msg in rx {
                    match msg {
                        Msg::Data(b) => {
                            state.update(&b[..]);
                            drop(b);
                            // The measurer may be gone already (an error); nothing waits then.
                            let _ = acks.send(());
                        }
                        Msg::Snapshot => snapshot = Some(state.clone().finalize().into()),
                    }
                }
                (state.finalize().into(), snapshot)
            })
            .with_context(|| format!("cannot start the {what} hashing thread"))?;
        Ok(Worker { what, to: Some(to), done, handle })
    }

    fn send(&self, msg: Msg) -> Result<()> {
        let to = self.to.as_ref().expect("the sender lives until join");
        to.send(msg).map_err(|_| anyhow::anyhow!("the {} hashing thread stopped", self.what))
    }

    /// Wait for the acknowledgement of the oldest buffer not yet waited for.
    fn wait(&self) -> Result<()> {
        self.done.recv().map_err(|_| anyhow::anyhow!("the {} hashing thread stopped", self.what))
    }

    /// Close the queue and take the digests.
    fn join(mut self) -> Result<([u8; 48], Option<[u8; 48]>)> {
        drop(self.to.take());
        self.handle.join().map_err(|_| anyhow::anyhow!("the {} hashing thread panicked", self.what))
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
            m.start_ramdisk().unwrap();
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
        // An empty first ramdisk: PCR1's snapshot holds kernel and cmdline alone.
        let boot = [&kernel[..], cmd].concat();
        let empty_first = measure(&kernel, cmd, &[b"", &r2], 4096);
        assert_eq!(empty_first.pcr1, Pcr::of(&boot));
        assert_eq!(empty_first.pcr0, Pcr::of(&[&boot[..], &r2].concat()));
        // No ramdisk at all (an EIF always has one, but the engine must not hang or lie).
        let none = measure(&kernel, cmd, &[], 4096);
        assert_eq!((none.pcr0, none.pcr1, none.pcr2), (Pcr::of(&boot), Pcr::of(&boot), Pcr::of(b"")));
    }

    /// Buffers come back for reuse: a long ramdisk in small chunks never
    /// has more than IN_FLIGHT + 1 of them allocated.
    #[test]
    fn buffers_are_reused() {
        let chunk = 64;
        let mut m = Measurer::new(chunk);
        m.boot(b"k").unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut b = m.buffer();
        for r in 0..2 {
            m.start_ramdisk().unwrap();
            for i in 0..1000u32 {
                b.fill((i + r) as u8);
                seen.insert(b.as_ptr() as usize);
                b = m.ramdisk(b, chunk).unwrap();
            }
        }
        assert!(seen.len() <= IN_FLIGHT + 1, "{} buffers allocated", seen.len());
        m.finish().unwrap();
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
