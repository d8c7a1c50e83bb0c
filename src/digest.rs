//! Content digests (`sha256:<64 hex>`) as a type.
//!
//! Every blob, layer, source tree and output that eifbake pins or produces is
//! named by a [`Digest`]. Parsing validates once, at the edge; the rest of the
//! code never handles digest strings. Only SHA-256 is accepted: it is what
//! OCI registries, StageX release files and the lockfile use.
//!
//! Not for: SHA-384 measurements (see [`crate::pcr`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A SHA-256 content digest, displayed as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} does not start with \"sha256:\" (only sha256 digests are supported)")]
    Algorithm(String),
    #[error("digest {0:?} must have exactly 64 lowercase hex characters after \"sha256:\"")]
    Hex(String),
}

impl Digest {
    /// The digest of a byte string.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything a reader yields, streaming; returns it and the byte count.
    pub fn of_reader<R: Read>(mut r: R) -> io::Result<(Self, u64)> {
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut r, &mut w)?;
        let (_, d, n) = w.finish();
        Ok((d, n))
    }

    pub fn from_bytes(b: [u8; 32]) -> Self {
        Digest(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex characters, without the algorithm prefix (the blob file name in a store).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse bare hex (as in StageX `digests/*.txt`) without the `sha256:` prefix.
    pub fn from_hex(s: &str) -> Result<Self, DigestError> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Hex(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::Hex(s.to_string()))?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| DigestError::Algorithm(s.to_string()))?;
        Digest::from_hex(hex).map_err(|_| DigestError::Hex(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes (SHA-256) and counts everything passing through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest(self.hasher.finalize().into()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (SHA-256) and counts everything read through it:
/// the read-side twin of [`HashingWriter`], for verifying a blob while it is
/// consumed (a layer is hashed in the same pass that decompresses it).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and count of what was read (not of what was left unread).
    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.hasher.finalize().into()), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let s = "sha256:d608daa946e4799cf28b105aba461db00187657bd55ea7c2935ff11dac237e27";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::from_hex(&d.hex()).unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!("sha512:00".parse::<Digest>(), Err(DigestError::Algorithm(_))));
        assert!(matches!("sha256:00".parse::<Digest>(), Err(DigestError::Hex(_))));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn hashes_empty_input() {
        assert_eq!(Digest::of(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let (d, n) = Digest::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(d, Digest::of(b"abc"));
        let mut r = HashingReader::new(&b"abcdef"[..]);
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.finish(), (Digest::of(b"abc"), 3), "only what was read is hashed");
    }
}
