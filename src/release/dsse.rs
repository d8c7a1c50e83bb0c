//! DSSE envelopes (Dead Simple Signing Envelope v1) signed with ECDSA P-384
//! over SHA-384, the curve and hash of the EIF signer's keys.
//!
//! The signature is over DSSE's pre-authentication encoding
//! ([`pae`]: `DSSEv1 <len(type)> <type> <len(body)> <body>`), never over the
//! payload alone, so a signature cannot be replayed with another payload
//! type. `sig` is the DER encoding of the ECDSA signature (as sigstore and
//! the DSSE reference implementations write ECDSA), `keyid` the sha256 hex
//! of the signer's SubjectPublicKeyInfo DER ([`key_id`]).
//!
//! Invariant: [`Envelope::verify`] returns the payload only when one
//! signature checks under the given key; a payload is never read from an
//! envelope that has not been verified.
//!
//! Not for: choosing which keys to trust (the caller names them) or the
//! statements inside (see [`super::rebuilds`]).

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::{Signature, VerifyingKey};
use p384::pkcs8::EncodePublicKey as _;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::signing::Signer;

/// The payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope as JSON carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// base64 of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// base64 of the DER ECDSA signature.
    pub sig: String,
}

/// DSSE's pre-authentication encoding of `payload` of type `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The key id of a P-384 public key: sha256 hex of its SubjectPublicKeyInfo DER.
pub fn key_id(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("a P-384 public key encodes");
    Digest::of(der.as_bytes()).hex()
}

impl Envelope {
    /// Sign `payload` with `signer` (ES384 over the PAE).
    pub fn sign(payload_type: &str, payload: &[u8], signer: &dyn Signer) -> Result<Envelope> {
        let raw = signer.sign_es384(&pae(payload_type, payload))?;
        let sig = Signature::from_slice(&raw).context("the signer returned an invalid ES384 signature")?;
        let key = signer.certificate().p384_key()?;
        Ok(Envelope {
            payload: B64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature { keyid: key_id(&key), sig: B64.encode(sig.to_der()) }],
        })
    }

    /// Parse an envelope's JSON; `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Envelope> {
        serde_json::from_slice(bytes).with_context(|| format!("{what}: not a DSSE envelope"))
    }

    /// The payload, when a signature checks under `key`; else why not.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>> {
        let payload = B64.decode(&self.payload).context("field payload is not base64")?;
        let message = pae(&self.payload_type, &payload);
        let mut why = "the envelope has no signature".to_string();
        for s in &self.signatures {
            let Ok(bytes) = B64.decode(&s.sig) else {
                why = "field signatures[].sig is not base64".into();
                continue;
            };
            let Ok(sig) = Signature::from_der(&bytes) else {
                why = "field signatures[].sig is not a DER ECDSA P-384 signature".into();
                continue;
            };
            if key.verify(&message, &sig).is_ok() {
                return Ok(payload);
            }
            why = "the signature does not verify with this key over the payload".into();
        }
        bail!("{why}")
    }

    /// The key ids the signatures claim (unverified).
    pub fn key_ids(&self) -> Vec<&str> {
        self.signatures.iter().map(|s| s.keyid.as_str()).collect()
    }
}

/// A P-384 public key from a PEM file holding a certificate or a
/// `PUBLIC KEY` (SubjectPublicKeyInfo); errors name the file.
pub fn load_public_key(path: &std::path::Path) -> Result<VerifyingKey> {
    use p384::pkcs8::DecodePublicKey as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    if text.contains("BEGIN CERTIFICATE") {
        let cert = crate::signing::Certificate::from_pem_file(path)?;
        return cert.p384_key().with_context(|| format!("certificate {}", path.display()));
    }
    VerifyingKey::from_public_key_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "key file {}: not a P-384 public key (PEM `BEGIN PUBLIC KEY`) or certificate: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn signer(n: &str) -> std::sync::Arc<dyn Signer> {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
        crate::signing::load_signer(
            &d.join(format!("{n}.pem")),
            d.join(format!("{n}.key")).to_str().unwrap(),
            crate::signing::Validity::Ignore,
        )
        .unwrap()
    }

    #[test]
    fn pae_is_the_dsse_v1_encoding() {
        // The example of the DSSE specification (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn signed_envelope_verifies_only_with_its_key_and_payload() {
        let s1 = signer("signer1");
        let s2 = signer("signer2");
        let k1 = s1.certificate().p384_key().unwrap();
        let k2 = s2.certificate().p384_key().unwrap();
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", s1.as_ref()).unwrap();
        assert_eq!(env.key_ids(), [key_id(&k1).as_str()]);
        assert_eq!(env.verify(&k1).unwrap(), b"{\"a\":1}");
        let e = format!("{:#}", env.verify(&k2).unwrap_err());
        assert!(e.contains("does not verify"), "{e}");
        // Another payload under the same signature.
        let mut forged = env.clone();
        forged.payload = B64.encode(b"{\"a\":2}");
        assert!(forged.verify(&k1).is_err());
        // Another payload type under the same signature (the PAE binds it).
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(retyped.verify(&k1).is_err());
        // A garbled signature.
        let mut garbled = env;
        garbled.signatures[0].sig = "AAAA".into();
        let e = format!("{:#}", garbled.verify(&k1).unwrap_err());
        assert!(e.contains("not a DER"), "{e}");
    }
}
