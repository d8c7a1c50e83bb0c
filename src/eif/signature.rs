//! Just enough of the signature section (type 4) to compute PCR8.
//!
//! AWS writes the section as CBOR: an array of `{signing_certificate,
//! signature}` maps whose byte fields are CBOR arrays of small integers (serde
//! sequences) or byte strings. PCR8 measures the DER form of the first
//! entry's PEM certificate. Verifying the COSE signature is not done here.

use anyhow::{bail, Context, Result};
use base64::Engine as _;

/// The DER signing certificate of the first signature entry.
pub fn certificate_der(section: &[u8]) -> Result<Vec<u8>> {
    let mut p = Cbor { b: section, pos: 0 };
    let n = p.array_len().context("signature section: expected a CBOR array of signatures")?;
    if n == 0 {
        bail!("signature section: the array of signatures is empty");
    }
    let fields = p.map_len().context("signature section: expected a map in the first entry")?;
    let mut cert = None;
    for _ in 0..fields {
        let key = p.text()?;
        let value = p.bytes()?;
        if key == "signing_certificate" {
            cert = Some(value);
        }
    }
    let pem = cert.context("signature section: the first entry has no signing_certificate")?;
    pem_to_der(&pem)
}

fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(pem).context("signing certificate: not PEM text")?;
    let mut body = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            inside = true;
        } else if line.starts_with("-----END CERTIFICATE-----") {
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .context("signing certificate: the PEM body is not valid base64")?;
            return Ok(der);
        } else if inside {
            body.push_str(line);
        }
    }
    bail!("signing certificate: no `-----BEGIN/END CERTIFICATE-----` block found")
}

/// A cursor over CBOR bytes, for the few item kinds the section uses.
struct Cbor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cbor<'_> {
    fn byte(&mut self) -> Result<u8> {
        let v = *self.b.get(self.pos).context("signature section: CBOR data ends early")?;
        self.pos += 1;
        Ok(v)
    }

    /// Major type and argument of the next item (definite lengths only).
    fn head(&mut self) -> Result<(u8, u64)> {
        let ib = self.byte()?;
        let (major, info) = (ib >> 5, ib & 0x1f);
        let arg = match info {
            0..=23 => info as u64,
            24..=27 => {
                let n = 1usize << (info - 24);
                let mut v = 0u64;
                for _ in 0..n {
                    v = (v << 8) | self.byte()? as u64;
                }
                v
            }
            _ => bail!("signature section: unsupported CBOR encoding (indefinite length or reserved)"),
        };
        Ok((major, arg))
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<u64> {
        let (m, arg) = self.head()?;
        if m != major {
            bail!("signature section: expected a CBOR {what}, found major type {m}");
        }
        Ok(arg)
    }

    fn array_len(&mut self) -> Result<u64> {
        self.expect(4, "array")
    }

    fn map_len(&mut self) -> Result<u64> {
        self.expect(5, "map")
    }

    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let n = usize::try_from(n)?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.context("signature section: CBOR string runs past the end")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn text(&mut self) -> Result<String> {
        let n = self.expect(3, "text key")?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A byte field: a byte string, or an array of integers 0..=255.
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let (m, n) = self.head()?;
        match m {
            2 => Ok(self.take(n)?.to_vec()),
            4 => {
                let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    let v = self.expect(0, "byte value")?;
                    out.push(u8::try_from(v).context("signature section: byte value above 255")?);
                }
                Ok(out)
            }
            _ => bail!("signature section: expected bytes, found CBOR major type {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature section AWS's crate checks its encoder against: one entry,
    /// certificate "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".
    const AWS_VECTOR: &str = "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e182018431845185218541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d21884184418a1011838182218a018401840";

    #[test]
    fn reads_the_aws_encoding() {
        let der = certificate_der(&hex::decode(AWS_VECTOR).unwrap()).unwrap();
        assert_eq!(der, vec![0x30, 0x82, 0x01]); // base64 "MIIB"
    }

    #[test]
    fn rejects_garbage() {
        assert!(certificate_der(b"").is_err());
        assert!(certificate_der(&[0x80]).is_err());
        let mut v = hex::decode(AWS_VECTOR).unwrap();
        v.truncate(40);
        assert!(certificate_der(&v).is_err());
    }
}
