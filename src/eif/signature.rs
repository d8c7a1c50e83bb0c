//! The signature section (type 4): its bytes, exactly as AWS's
//! `aws-nitro-enclaves-image-format` writes them, and the check of a
//! signature against an image's PCR0.
//!
//! The section is the CBOR (ciborium, serde) of a one-element array:
//!
//! ```text
//! [ { "signing_certificate": [PEM bytes as small ints…],
//!     "signature":           [COSE_Sign1 bytes as small ints…] } ]
//! ```
//!
//! Byte fields are serde sequences (CBOR arrays of integers), not CBOR byte
//! strings, because AWS's structs hold `Vec<u8>`. The COSE_Sign1 is untagged:
//! `[h'A10138 22' ({1: -35}, ES384), {}, payload, r ‖ s]`, where the payload is
//! the CBOR of `{"register_index": 0, "register_value": [PCR0 bytes…]}` and the
//! signature is ES384 over the Sig_structure `["Signature1", protected, h'',
//! payload]`. PCR8 measures the DER of the certificate; AWS stores the PEM
//! file verbatim, eifbake a canonical PEM (see [`crate::signing`]).
//!
//! Not for: loading keys or certificates (see [`crate::signing`]) or placing
//! the section in a file (the writer appends it after the ramdisks; the
//! reader finds it).

use anyhow::{bail, Context, Result};
use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use crate::pcr::Pcr;
use crate::signing::{first_certificate_der, verify_es384, Certificate, CertificateInfo, Signer};

/// The largest signature section eifbake writes or reads. AWS's are about
/// 2 KiB (the certificate's PEM dominates); a larger one is refused.
pub const SIGNATURE_SECTION_LIMIT: u64 = 64 * 1024;

/// COSE protected header `{1: -35}`: alg = ES384.
pub const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// COSE algorithm identifiers (RFC 8152 §8.1) that may appear in the protected header.
const COSE_ES384: i128 = -35;

/// One entry of the section, as AWS's `PcrSignature`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PcrSignature {
    /// The PEM certificate, as text bytes.
    signing_certificate: Vec<u8>,
    /// An untagged COSE_Sign1.
    signature: Vec<u8>,
}

/// The signed payload, as AWS's `PcrInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PcrInfo {
    register_index: i32,
    register_value: Vec<u8>,
}

fn to_cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR into a Vec cannot fail");
    out
}

/// CBOR of one value filling all of `bytes` (trailing bytes are an error, as in AWS's reader).
fn from_cbor<T: serde::de::DeserializeOwned>(mut bytes: &[u8]) -> Result<T> {
    let v = ciborium::from_reader(&mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !bytes.is_empty() {
        bail!("{} unexpected byte(s) after the CBOR value", bytes.len());
    }
    Ok(v)
}

/// The payload a PCR0 signature signs: CBOR of `PcrInfo {0, PCR0}`.
pub fn pcr0_payload(pcr0: &Pcr) -> Vec<u8> {
    to_cbor(&PcrInfo { register_index: 0, register_value: pcr0.0.to_vec() })
}

/// The bytes a COSE_Sign1 signature covers: `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    to_cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// The bytes an ES384 signer signs for an image whose PCR0 is `pcr0`: the
/// Sig_structure over the ES384 protected header and `PcrInfo {0, PCR0}`.
/// `eifbake sign-payload` prints them for detached signing.
pub fn to_be_signed(pcr0: &Pcr) -> Vec<u8> {
    sig_structure(&PROTECTED_ES384, &pcr0_payload(pcr0))
}

/// An untagged COSE_Sign1 with an empty unprotected header map.
pub fn cose_sign1(protected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    to_cbor(&Value::Array(vec![
        Value::Bytes(protected.to_vec()),
        Value::Map(Vec::new()),
        Value::Bytes(payload.to_vec()),
        Value::Bytes(signature.to_vec()),
    ]))
}

/// The section bytes for one certificate (PEM text) and one COSE_Sign1.
fn encode_entry(pem: &[u8], cose: &[u8]) -> Vec<u8> {
    to_cbor(&vec![PcrSignature { signing_certificate: pem.to_vec(), signature: cose.to_vec() }])
}

/// Sign `pcr0` with `signer` and return the whole section. The signature is
/// checked against the certificate before it is used, and the section must
/// fit in [`SIGNATURE_SECTION_LIMIT`].
pub fn encode(signer: &dyn Signer, pcr0: &Pcr) -> Result<Vec<u8>> {
    let cert = signer.certificate();
    let payload = pcr0_payload(pcr0);
    let tbs = to_be_signed(pcr0);
    let sig = signer.sign_es384(&tbs).with_context(|| format!("signing with {}", signer.key_location()))?;
    let key = cert.p384_key().context("the signing certificate")?;
    verify_es384(&key, &tbs, &sig).with_context(|| {
        format!("{} returned a signature that its certificate does not verify", signer.key_location())
    })?;
    let section =
        encode_entry(cert.canonical_pem().as_bytes(), &cose_sign1(&PROTECTED_ES384, &payload, &sig));
    check_size(section.len() as u64)?;
    Ok(section)
}

/// A section larger than [`SIGNATURE_SECTION_LIMIT`] is an error naming the limit.
pub fn check_size(size: u64) -> Result<()> {
    if size > SIGNATURE_SECTION_LIMIT {
        bail!(
            "the signature section is {size} bytes, over eifbake's limit of {SIGNATURE_SECTION_LIMIT} bytes \
             (SIGNATURE_SECTION_LIMIT; AWS's are about 2 KiB, so is the certificate very large?)"
        );
    }
    Ok(())
}

/// A COSE_Sign1, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseSign1 {
    /// The protected header bytes, as stored (they are what was signed).
    pub protected: Vec<u8>,
    /// The `alg` (label 1) of the protected header, when it is an integer.
    pub algorithm: Option<i128>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl CoseSign1 {
    /// Parse a COSE_Sign1, untagged or with tag 18 (as AWS accepts).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let v: Value = from_cbor(bytes).context("the COSE_Sign1 is not valid CBOR")?;
        let v = match v {
            Value::Tag(18, inner) => *inner,
            Value::Tag(t, _) => bail!("the COSE_Sign1 has CBOR tag {t}, expected none or 18"),
            v => v,
        };
        let Value::Array(items) = v else { bail!("the COSE_Sign1 is not a CBOR array") };
        let [protected, unprotected, payload, signature] = <[Value; 4]>::try_from(items)
            .map_err(|items| anyhow::anyhow!("the COSE_Sign1 has {} elements, expected 4", items.len()))?;
        let bytes = |v: Value, what: &str| match v {
            Value::Bytes(b) => Ok(b),
            _ => bail!("the COSE_Sign1's {what} is not a byte string"),
        };
        let protected = bytes(protected, "protected header")?;
        if !matches!(unprotected, Value::Map(_)) {
            bail!("the COSE_Sign1's unprotected header is not a map");
        }
        let payload = bytes(payload, "payload")?;
        let signature = bytes(signature, "signature")?;
        let algorithm = if protected.is_empty() {
            None
        } else {
            let Value::Map(m) = from_cbor::<Value>(&protected).context("the COSE protected header")? else {
                bail!("the COSE protected header is not a CBOR map");
            };
            m.into_iter()
                .find(|(k, _)| k.as_integer() == Some(1.into()))
                .and_then(|(_, v)| v.as_integer())
                .map(i128::from)
        };
        Ok(CoseSign1 { protected, algorithm, payload, signature })
    }
}

fn algorithm_name(alg: i128) -> String {
    match alg {
        -7 => "ES256".into(),
        -35 => "ES384".into(),
        -36 => "ES512".into(),
        -8 => "EdDSA".into(),
        other => format!("COSE algorithm {other}"),
    }
}

/// The decoded section: the certificate as stored, and the COSE_Sign1 bytes.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The stored PEM text (AWS: the input file verbatim; eifbake: canonical).
    pub certificate_pem: Vec<u8>,
    /// The DER of the first CERTIFICATE block, as PCR8 measures it.
    pub certificate_der: Vec<u8>,
    /// The COSE_Sign1 bytes of the first (PCR0) entry.
    pub cose: Vec<u8>,
    /// How many entries the array holds (AWS writes and reads one).
    pub entries: usize,
}

/// Decode the section's CBOR and find the certificate's DER.
pub fn decode(section: &[u8]) -> Result<Decoded> {
    check_size(section.len() as u64)?;
    let entries: Vec<PcrSignature> = from_cbor(section).context(
        "the signature section is not AWS's CBOR (an array of {signing_certificate, signature}); \
         truncated or garbled",
    )?;
    let n = entries.len();
    let first = entries.into_iter().next().context("the signature section's array of signatures is empty")?;
    let der = first_certificate_der(&first.signing_certificate)?;
    Ok(Decoded {
        certificate_pem: first.signing_certificate,
        certificate_der: der,
        cose: first.signature,
        entries: n,
    })
}

/// What a signature section says, and whether it signs a given PCR0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// Facts about the signing certificate, when it parses as X.509.
    pub certificate: Option<CertificateInfo>,
    /// SHA-384-extended DER of the certificate, when the section yields one.
    #[serde(rename = "PCR8")]
    pub pcr8: Option<Pcr>,
    /// The COSE algorithm of the signature (`ES384`), when readable.
    pub algorithm: Option<String>,
    /// The PCR0 the signature's payload names, when it is a PCR0 payload.
    pub signed_pcr0: Option<Pcr>,
    /// A valid ES384 signature by the certificate's key over `{0, PCR0}` of this image.
    pub valid: bool,
    /// Why not, when not valid.
    pub problem: Option<String>,
}

/// Check `section` against `pcr0`: valid when it decodes, its certificate is
/// P-384, the ES384 signature verifies with the certificate's key, and the
/// payload is exactly `PcrInfo {0, pcr0}` (the bytes AWS's reader compares).
/// Never fails: a garbled section is a report with `valid: false` and the reason.
pub fn check(section: &[u8], pcr0: &Pcr) -> SignatureReport {
    let mut r = SignatureReport {
        certificate: None,
        pcr8: None,
        algorithm: None,
        signed_pcr0: None,
        valid: false,
        problem: None,
    };
    if let Err(e) = check_into(section, pcr0, &mut r) {
        r.problem = Some(format!("{e:#}"));
    } else {
        r.valid = true;
    }
    r
}

fn check_into(section: &[u8], pcr0: &Pcr, r: &mut SignatureReport) -> Result<()> {
    let d = decode(section)?;
    r.pcr8 = Some(Pcr::of(&d.certificate_der));
    let cert = Certificate::from_der(d.certificate_der.clone()).context("the signing certificate")?;
    r.certificate = Some(cert.info());
    let cose = CoseSign1::parse(&d.cose)?;
    r.algorithm = cose.algorithm.map(algorithm_name);
    if let Ok(info) = from_cbor::<PcrInfo>(&cose.payload) {
        if info.register_index == 0 {
            r.signed_pcr0 = <[u8; 48]>::try_from(info.register_value.as_slice()).ok().map(Pcr);
        }
    }
    match cose.algorithm {
        Some(COSE_ES384) => {}
        Some(other) => bail!(
            "the signature uses {}; eifbake checks ES384 (ECDSA P-384) signatures only",
            algorithm_name(other)
        ),
        None => bail!("the COSE protected header names no integer algorithm (label 1)"),
    }
    let key = cert.p384_key().context("the signing certificate")?;
    verify_es384(&key, &sig_structure(&cose.protected, &cose.payload), &cose.signature)?;
    if cose.payload != pcr0_payload(pcr0) {
        match r.signed_pcr0 {
            Some(p) => bail!("the signature is for PCR0 {p}, but this image's PCR0 is {pcr0}"),
            None => bail!("the signed payload is not PcrInfo {{register_index: 0, register_value: PCR0}}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{PemKeySigner, Validity};
    use std::path::Path;

    /// From AWS's `utils/cbor.rs` tests (bytes serde_cbor 0.11 wrote, which
    /// ciborium reproduces): the section for certificate
    /// "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" and
    /// signature bytes d2 84 44 a1 01 38 22 a0 40 40.
    const AWS_SECTION: &str = "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e182018431845185218541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d21884184418a1011838182218a018401840";
    /// Same source: PcrInfo { register_index: 0, register_value: 0x00..=0x2f }.
    const AWS_PCR_INFO: &str = "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830000102030405060708090a0b0c0d0e0f101112131415161718181819181a181b181c181d181e181f1820182118221823182418251826182718281829182a182b182c182d182e182f";

    fn signer(name: &str) -> PemKeySigner {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
        PemKeySigner::load(
            &d.join(format!("{name}.pem")),
            &d.join(format!("{name}.key")),
            Validity::Ignore,
            std::time::SystemTime::now(),
        )
        .unwrap()
    }

    fn counting_pcr() -> Pcr {
        let mut v = [0u8; 48];
        for (i, b) in v.iter_mut().enumerate() {
            *b = i as u8;
        }
        Pcr(v)
    }

    #[test]
    fn encodes_like_aws() {
        assert_eq!(hex::encode(pcr0_payload(&counting_pcr())), AWS_PCR_INFO);
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let sig = [0xd2, 0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x40, 0x40];
        assert_eq!(hex::encode(encode_entry(pem, &sig)), AWS_SECTION);
        let d = decode(&hex::decode(AWS_SECTION).unwrap()).unwrap();
        assert_eq!(d.certificate_pem, pem);
        assert_eq!(d.certificate_der, vec![0x30, 0x82, 0x01]); // base64 "MIIB"
        assert_eq!(d.cose, sig);
        assert_eq!(d.entries, 1);
    }

    #[test]
    fn cose_structures_have_the_rfc8152_bytes() {
        let payload = [0xaa, 0xbb];
        let sig = [0x11; 96];
        // ["Signature1", h'a1013822', h'', h'aabb']
        assert_eq!(
            hex::encode(sig_structure(&PROTECTED_ES384, &payload)),
            "846a5369676e61747572653144a10138224042aabb"
        );
        let cose = cose_sign1(&PROTECTED_ES384, &payload, &sig);
        // [h'a1013822', {}, h'aabb', h'11…' (96 bytes)]
        assert_eq!(hex::encode(&cose[..12]), "8444a1013822a042aabb5860");
        assert_eq!(&cose[12..], &sig[..]);
        assert_eq!(cose.len(), 12 + 96);
        let parsed = CoseSign1::parse(&cose).unwrap();
        assert_eq!(parsed.algorithm, Some(-35));
        assert_eq!(parsed.payload, payload);
        assert_eq!(parsed.signature, sig);
        // Tag 18 is accepted, as AWS does; another tag is not.
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&cose);
        assert_eq!(CoseSign1::parse(&tagged).unwrap(), parsed);
        let mut other = vec![0xd1];
        other.extend_from_slice(&cose);
        assert!(CoseSign1::parse(&other).unwrap_err().to_string().contains("tag 17"));
    }

    #[test]
    fn signs_deterministically_and_checks() {
        let s = signer("signer1");
        let pcr0 = counting_pcr();
        let a = encode(&s, &pcr0).unwrap();
        assert_eq!(a, encode(&s, &pcr0).unwrap(), "same key and PCR0: same section");
        let r = check(&a, &pcr0);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.problem, None);
        assert_eq!(r.pcr8, Some(s.certificate().pcr8()));
        assert_eq!(r.signed_pcr0, Some(pcr0));
        assert_eq!(r.algorithm.as_deref(), Some("ES384"));
        assert_eq!(r.certificate.as_ref().unwrap().key_algorithm, "ECDSA P-384");
        let d = decode(&a).unwrap();
        assert_eq!(d.certificate_pem, s.certificate().canonical_pem().as_bytes());
        assert_eq!(d.certificate_der, s.certificate().der());

        // Another PCR0: the signature is valid but for another image.
        let other = Pcr::of(b"other");
        let r = check(&a, &other);
        assert!(!r.valid);
        let p = r.problem.unwrap();
        assert!(p.contains(&format!("is for PCR0 {pcr0}")) && p.contains(&other.to_string()), "{p}");
        assert_eq!(r.pcr8, Some(s.certificate().pcr8()));

        // Another key: a different signature and certificate.
        let b = encode(&signer("signer2"), &pcr0).unwrap();
        assert_ne!(a, b);
        assert!(check(&b, &pcr0).valid);
    }

    #[test]
    fn forged_or_garbled_sections_are_reported() {
        let s = signer("signer1");
        let pcr0 = counting_pcr();
        let d = decode(&encode(&s, &pcr0).unwrap()).unwrap();
        let cose = CoseSign1::parse(&d.cose).unwrap();
        let pem = d.certificate_pem.clone();
        let rebuild = |protected: &[u8], payload: &[u8], sig: &[u8]| {
            encode_entry(&pem, &cose_sign1(protected, payload, sig))
        };
        let problem = |section: &[u8]| check(section, &pcr0).problem.expect("a problem");

        let mut flipped = cose.signature.clone();
        flipped[10] ^= 1;
        let p = problem(&rebuild(&cose.protected, &cose.payload, &flipped));
        assert!(p.contains("does not verify"), "{p}");
        // A payload for another PCR0 under the original signature.
        let p = problem(&rebuild(&cose.protected, &pcr0_payload(&Pcr::of(b"x")), &cose.signature));
        assert!(p.contains("does not verify"), "{p}");
        let p = problem(&rebuild(&[0xa1, 0x01, 0x26], &cose.payload, &cose.signature));
        assert!(p.contains("uses ES256"), "{p}");
        let p = problem(&rebuild(&[], &cose.payload, &cose.signature));
        assert!(p.contains("names no integer algorithm"), "{p}");
        // Signed by signer2's key but carrying signer1's certificate.
        let s2 = signer("signer2");
        let tbs = sig_structure(&PROTECTED_ES384, &cose.payload);
        let p = problem(&rebuild(&PROTECTED_ES384, &cose.payload, &s2.sign_es384(&tbs).unwrap()));
        assert!(p.contains("does not verify with the certificate's public key"), "{p}");

        let good = encode(&s, &pcr0).unwrap();
        for cut in [1, 10, good.len() / 2, good.len() - 1] {
            let r = check(&good[..cut], &pcr0);
            assert!(
                !r.valid && r.problem.as_deref().unwrap().contains("truncated or garbled"),
                "cut {cut}: {r:?}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(problem(&trailing).contains("unexpected byte(s)"));
        assert!(problem(&[0x80]).contains("array of signatures is empty"));
        // AWS's test vector: a certificate that is no certificate. PCR8 is still measured.
        let r = check(&hex::decode(AWS_SECTION).unwrap(), &pcr0);
        assert_eq!(r.pcr8, Some(Pcr::of(&[0x30, 0x82, 0x01])));
        assert!(r.problem.unwrap().contains("not a valid X.509 certificate"));
        // Over the limit, whatever it holds.
        let big = vec![0u8; SIGNATURE_SECTION_LIMIT as usize + 1];
        assert!(problem(&big).contains("limit of 65536 bytes"));
    }
}
