//! Signing keys for PCR8: turning a certificate and a private key into a
//! checked [`Signer`], and the facts about a certificate that `describe`
//! and `verify` show.
//!
//! eifbake signs an EIF as nitro-cli does (PCR8 measures the signing
//! certificate; the signature section holds a COSE_Sign1 over PCR0), but
//! deterministically: ECDSA P-384 with RFC 6979 nonces, so the same inputs and
//! key give the same file. Only ES384 is produced: the certificate and key
//! must be P-384.
//!
//! What [`load_signer`] checks, each failure an error naming the file:
//! - the certificate file holds exactly one PEM certificate (not a chain);
//! - the certificate's key is ECDSA P-384 (any other curve or algorithm is
//!   named in the error), and so is the private key (PKCS#8 `BEGIN PRIVATE
//!   KEY` or SEC1 `BEGIN EC PRIVATE KEY`, unencrypted);
//! - the private key belongs to the certificate (same public key);
//! - the certificate's key usage, when present, allows digitalSignature;
//! - the certificate is valid now (notBefore ≤ now ≤ notAfter). This is an
//!   error by default; `--ignore-certificate-validity` signs anyway (the
//!   enclave does not check dates, but whoever checks PCR8 against a
//!   certificate may).
//!
//! The signer keeps a canonical PEM of the certificate (re-encoded from its
//! DER: one block, 64-column base64, LF line ends), which is what goes into
//! the EIF, so the formatting of the input file never changes the output.
//!
//! Key holders ([`Signer`]): a PEM key file ([`PemKeySigner`]), a key on a
//! PKCS#11 token ([`pkcs11::TokenSigner`], `--private-key pkcs11:…`), and a
//! signature made elsewhere over `eifbake sign-payload`'s bytes
//! ([`DetachedSigner`]). A `pkcs11:` key and a detached signature go through
//! the same certificate checks as a key file; whoever signs, the signature
//! is checked under the certificate's key before any EIF is written.
//!
//! Not for: the signature section's bytes, COSE, or checking a signature
//! (see `eif::signature`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use p384::ecdsa::signature::{Signer as _, Verifier as _};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::pkcs8::DecodePrivateKey as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode as _;

use crate::pcr::Pcr;

pub mod pkcs11;

/// Length of an ES384 signature: r ‖ s, 48 bytes each.
pub const ES384_SIGNATURE_LEN: usize = 96;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const ID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// What eifbake needs, for the error messages.
const NEED_P384: &str = "eifbake signs with ES384 and needs an ECDSA P-384 (secp384r1) key; make one with \
                         `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`";

/// A key holder that can sign an EIF: it has a certificate, and signs bytes
/// with ES384 (ECDSA P-384 over the SHA-384 of the bytes).
///
/// Implementations: a PEM key file ([`PemKeySigner`]), a PKCS#11 token
/// ([`pkcs11::TokenSigner`]), a detached signature ([`DetachedSigner`]). An
/// implementation must return a signature that verifies under the
/// certificate's key; the EIF writer checks it anyway.
pub trait Signer: Send + Sync {
    /// The signing certificate: its DER is measured into PCR8 and its
    /// canonical PEM is stored in the signature section.
    fn certificate(&self) -> &Certificate;

    /// Sign `message` with ES384 and return the raw signature r ‖ s (COSE's form).
    fn sign_es384(&self, message: &[u8]) -> Result<[u8; ES384_SIGNATURE_LEN]>;

    /// Where the key lives, for messages (a file path, a token URI).
    fn key_location(&self) -> String;
}

impl fmt::Debug for dyn Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}, certificate {})", self.key_location(), self.certificate().subject())
    }
}

/// Whether a certificate outside its validity period may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Validity {
    /// Refuse a certificate that is expired or not yet valid (the default).
    #[default]
    Enforce,
    /// Sign anyway (`--ignore-certificate-validity`).
    Ignore,
}

/// Load and check a certificate and a private key (see the module docs for
/// every check). `key` is a path to a PEM file or a `pkcs11:` URI (a key on
/// a PKCS#11 token, see [`crate::signing::pkcs11`]; the module and PIN come
/// from the environment here, see [`load_signer_with`]).
pub fn load_signer(certificate: &Path, key: &str, validity: Validity) -> Result<Arc<dyn Signer>> {
    load_signer_with(certificate, key, validity, &TokenOptions::default())
}

/// [`load_signer`], with the PKCS#11 module and PIN file of the command line.
pub fn load_signer_with(
    certificate: &Path,
    key: &str,
    validity: Validity,
    token: &TokenOptions,
) -> Result<Arc<dyn Signer>> {
    if key.starts_with("pkcs11:") {
        let (cert, cert_key) = load_certificate(certificate, validity, SystemTime::now())?;
        return Ok(Arc::new(pkcs11::TokenSigner::open(key, cert, &cert_key, token)?));
    }
    Ok(Arc::new(PemKeySigner::load(certificate, Path::new(key), validity, SystemTime::now())?))
}

/// Where a `pkcs11:` key's module and PIN come from, besides the URI itself.
#[derive(Clone, Debug, Default)]
pub struct TokenOptions {
    /// `--pkcs11-module`; else `$EIFBAKE_PKCS11_MODULE`, else [`pkcs11::DEFAULT_MODULE`].
    pub module: Option<PathBuf>,
    /// `--pin-file`: a file whose first line is the user PIN (used when the URI has none).
    pub pin_file: Option<PathBuf>,
}

/// Read a signing certificate and check it as the module docs say (one PEM
/// certificate, P-384 key, key usage, validity at `now` unless ignored);
/// returns it with its public key. Errors name the file.
pub fn load_certificate(
    path: &Path,
    validity: Validity,
    now: SystemTime,
) -> Result<(Certificate, VerifyingKey)> {
    let cert = Certificate::from_pem_file(path)?;
    let cp = path.display();
    let named = |e: anyhow::Error| anyhow::anyhow!("signing certificate {cp}: {e:#}");
    let cert_key = cert.p384_key().map_err(named)?;
    cert.check_key_usage().map_err(named)?;
    if validity == Validity::Enforce {
        cert.check_validity(now).map_err(named)?;
    }
    Ok((cert, cert_key))
}

/// A signer whose private key is a PEM file; signs with RFC 6979 deterministic nonces.
pub struct PemKeySigner {
    certificate: Certificate,
    key: SigningKey,
    key_path: String,
}

impl PemKeySigner {
    /// Load `certificate` and `key_path`, checked as the module docs say, at time `now`.
    pub fn load(certificate: &Path, key_path: &Path, validity: Validity, now: SystemTime) -> Result<Self> {
        let (cert, cert_key) = load_certificate(certificate, validity, now)?;
        let key = load_p384_key(key_path)?;
        if key.verifying_key() != &cert_key {
            bail!(
                "private key {}: does not belong to the signing certificate {} (their public keys differ); \
                 give the key the certificate was issued for",
                key_path.display(),
                certificate.display()
            );
        }
        Ok(PemKeySigner { certificate: cert, key, key_path: key_path.display().to_string() })
    }
}

impl Signer for PemKeySigner {
    fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn sign_es384(&self, message: &[u8]) -> Result<[u8; ES384_SIGNATURE_LEN]> {
        // `Signer::sign` hashes with SHA-384 and takes k from RFC 6979: deterministic.
        let sig: Signature = self.key.sign(message);
        let mut out = [0u8; ES384_SIGNATURE_LEN];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }

    fn key_location(&self) -> String {
        self.key_path.clone()
    }
}

/// Check an ES384 signature (raw r ‖ s) over `message` by `key`.
pub fn verify_es384(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> Result<()> {
    if signature.len() != ES384_SIGNATURE_LEN {
        bail!("the signature is {} bytes, an ES384 signature is {ES384_SIGNATURE_LEN}", signature.len());
    }
    let sig = Signature::from_slice(signature)
        .map_err(|_| anyhow::anyhow!("the signature is not a valid ES384 value (r or s out of range)"))?;
    key.verify(message, &sig)
        .map_err(|_| anyhow::anyhow!("the ES384 signature does not verify with the certificate's public key"))
}

/// A signature made elsewhere (detached signing: a KMS, an offline
/// machine), over the bytes `eifbake sign-payload` printed. It "signs" by
/// returning that signature; [`crate::eif::signature::encode`] then checks
/// it over this image's payload with the certificate's key, as for any signer.
pub struct DetachedSigner {
    certificate: Certificate,
    signature: [u8; ES384_SIGNATURE_LEN],
    source: String,
}

impl DetachedSigner {
    /// A signature read from `source` (a file name, for messages) that
    /// verifies over `message` with the certificate's `key`: `bytes` is either
    /// a DER `ECDSA-Sig-Value` (what `openssl dgst -sign` and AWS KMS
    /// return) or the raw 96-byte r ‖ s (COSE's form). DER is tried first; a
    /// 96-byte value is also tried as r ‖ s, and the form that verifies wins,
    /// so the rare raw value that also parses as DER is still read right.
    pub fn new(
        certificate: Certificate,
        key: &VerifyingKey,
        bytes: &[u8],
        message: &[u8],
        source: &str,
    ) -> Result<Self> {
        let mut forms: Vec<(&str, [u8; ES384_SIGNATURE_LEN])> = Vec::new();
        if let Ok(sig) = Signature::from_der(bytes) {
            let mut raw = [0u8; ES384_SIGNATURE_LEN];
            raw.copy_from_slice(&sig.to_bytes());
            forms.push(("DER", raw));
        }
        if let Ok(raw) = <[u8; ES384_SIGNATURE_LEN]>::try_from(bytes) {
            forms.push(("raw r‖s", raw));
        }
        if forms.is_empty() {
            bail!(
                "signature {source}: {} bytes that are neither a DER ECDSA signature (SEQUENCE of two \
                 INTEGERs, as `openssl dgst -sha384 -sign` writes) nor a raw 96-byte r‖s; give the \
                 signature file itself (binary, not base64 or hex)",
                bytes.len()
            );
        }
        for (_, sig) in &forms {
            if verify_es384(key, message, sig).is_ok() {
                return Ok(DetachedSigner { certificate, signature: *sig, source: source.to_string() });
            }
        }
        let read_as: Vec<&str> = forms.iter().map(|(f, _)| *f).collect();
        bail!(
            "signature {source} (read as {}) does not verify over this EIF's PCR0 with the key of the \
             signing certificate {}: sign exactly the bytes `eifbake sign-payload` prints for this EIF, \
             with ES384 (SHA-384, ECDSA P-384), using the certificate's key",
            read_as.join(", then as "),
            certificate.subject()
        )
    }
}

impl Signer for DetachedSigner {
    fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn sign_es384(&self, _message: &[u8]) -> Result<[u8; ES384_SIGNATURE_LEN]> {
        Ok(self.signature)
    }

    fn key_location(&self) -> String {
        format!("the detached signature {}", self.source)
    }
}

/// An X.509 certificate: the DER bytes as given (what PCR8 measures) and their parse.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({})", self.subject())
    }
}

/// The facts about a certificate that people check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateInfo {
    /// RFC 4514 form: the RDNs in reverse of their DER order (`O=…,CN=…` for a
    /// certificate that `openssl x509 -noout -subject` prints as `CN = …, O = …`).
    pub subject: String,
    pub issuer: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the DER, lowercase hex (`openssl x509 -fingerprint -sha256` without colons).
    pub sha256_fingerprint: String,
    /// The subject public key's algorithm (`ECDSA P-384`, `ECDSA P-256`, `RSA`, …).
    pub key_algorithm: String,
    /// The PCR8 this certificate gives.
    #[serde(rename = "PCR8")]
    pub pcr8: Pcr,
}

impl Certificate {
    /// Parse DER bytes; they must be exactly one DER certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self> {
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| anyhow::anyhow!("not a valid X.509 certificate ({e})"))?;
        Ok(Certificate { der, cert })
    }

    /// Read a PEM file that holds exactly one certificate.
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let p = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read signing certificate {p}"))?;
        let blocks =
            pem_blocks(&bytes).map_err(|e| anyhow::anyhow!("signing certificate {p}: garbled PEM: {e:#}"))?;
        let certs: Vec<&PemBlock> = blocks.iter().filter(|b| b.label == "CERTIFICATE").collect();
        match certs.len() {
            1 => {}
            0 if blocks.is_empty() => bail!(
                "signing certificate {p}: no PEM block found; expected `-----BEGIN CERTIFICATE-----` \
                 (for a DER file: `openssl x509 -inform DER -in {p} -out cert.pem`)"
            ),
            0 => bail!(
                "signing certificate {p}: no CERTIFICATE PEM block, found {}; give the certificate file",
                labels(&blocks.iter().collect::<Vec<_>>())
            ),
            n => bail!(
                "signing certificate {p}: holds {n} certificates; give only the signing certificate \
                 (one `BEGIN CERTIFICATE` block), not a chain"
            ),
        }
        Certificate::from_der(certs[0].der.clone())
            .map_err(|e| anyhow::anyhow!("signing certificate {p}: garbled certificate: {e:#}"))
    }

    /// The DER bytes, as measured into PCR8.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The canonical PEM: one block, 64-column base64, LF line ends.
    pub fn canonical_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            s.push('\n');
        }
        s.push_str("-----END CERTIFICATE-----\n");
        s
    }

    /// PCR8 of an image signed with this certificate.
    pub fn pcr8(&self) -> Pcr {
        Pcr::of(&self.der)
    }

    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The public key's algorithm, named for people.
    pub fn key_algorithm(&self) -> String {
        let alg = &self.cert.tbs_certificate.subject_public_key_info.algorithm;
        algorithm_name(alg.oid, alg.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok()))
    }

    /// The certificate's key as a P-384 verifying key; an error names any other algorithm.
    pub fn p384_key(&self) -> Result<VerifyingKey> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
            bail!("its public key is {}; {NEED_P384}", self.key_algorithm());
        }
        let point =
            spki.subject_public_key.as_bytes().context("its EC public key is not a whole number of bytes")?;
        VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| anyhow::anyhow!("its P-384 public key is not a valid curve point"))
    }

    /// notBefore ≤ `now` ≤ notAfter, or an error saying which bound fails.
    pub fn check_validity(&self, now: SystemTime) -> Result<()> {
        let v = &self.cert.tbs_certificate.validity;
        let (from, to) = (v.not_before.to_unix_duration(), v.not_after.to_unix_duration());
        let now_d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let now_s = crate::epoch::Epoch(now_d.as_secs()).rfc3339();
        let (nb, na) = (v.not_before.to_date_time(), v.not_after.to_date_time());
        let fix = "renew the certificate, or pass --ignore-certificate-validity to sign anyway";
        if now_d < from {
            bail!("it is not valid yet: valid from {nb} to {na}, and it is now {now_s}; {fix}");
        }
        if now_d > to {
            bail!("it expired on {na} (valid from {nb}; it is now {now_s}); {fix}");
        }
        Ok(())
    }

    /// The key usage extension, when present, must allow digitalSignature.
    pub fn check_key_usage(&self) -> Result<()> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else { return Ok(()) };
        let Some(ext) = exts.iter().find(|e| e.extn_id == ID_CE_KEY_USAGE) else { return Ok(()) };
        let ku = x509_cert::ext::pkix::KeyUsage::from_der(ext.extn_value.as_bytes())
            .map_err(|e| anyhow::anyhow!("its keyUsage extension is garbled ({e})"))?;
        if !ku.digital_signature() {
            let names = [
                (ku.non_repudiation(), "nonRepudiation"),
                (ku.key_encipherment(), "keyEncipherment"),
                (ku.data_encipherment(), "dataEncipherment"),
                (ku.key_agreement(), "keyAgreement"),
                (ku.key_cert_sign(), "keyCertSign"),
                (ku.crl_sign(), "cRLSign"),
                (ku.encipher_only(), "encipherOnly"),
                (ku.decipher_only(), "decipherOnly"),
            ];
            let allowed: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
            bail!(
                "its keyUsage ({}) does not include digitalSignature; issue a certificate with \
                 keyUsage digitalSignature",
                if allowed.is_empty() { "empty".to_string() } else { allowed.join(", ") }
            );
        }
        Ok(())
    }

    /// Subject, issuer, serial, validity, fingerprint, key algorithm and PCR8.
    pub fn info(&self) -> CertificateInfo {
        let tbs = &self.cert.tbs_certificate;
        CertificateInfo {
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            serial: hex::encode(tbs.serial_number.as_bytes()),
            not_before: tbs.validity.not_before.to_date_time().to_string(),
            not_after: tbs.validity.not_after.to_date_time().to_string(),
            sha256_fingerprint: hex::encode(Sha256::digest(&self.der)),
            key_algorithm: self.key_algorithm(),
            pcr8: self.pcr8(),
        }
    }

    /// Re-encode the parse (a check that the DER was canonical).
    #[cfg(test)]
    fn reencoded_der(&self) -> Result<Vec<u8>> {
        use x509_cert::der::Encode as _;
        self.cert.to_der().map_err(|e| anyhow::anyhow!("cannot encode the certificate: {e}"))
    }
}

fn algorithm_name(oid: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    match oid {
        ID_EC_PUBLIC_KEY => match curve {
            Some(SECP384R1) => "ECDSA P-384".into(),
            Some(PRIME256V1) => "ECDSA P-256".into(),
            Some(SECP521R1) => "ECDSA P-521".into(),
            Some(SECP256K1) => "ECDSA secp256k1".into(),
            Some(other) => format!("ECDSA on curve {other}"),
            None => "ECDSA on an unnamed curve".into(),
        },
        RSA_ENCRYPTION | ID_RSASSA_PSS => "RSA".into(),
        ID_ED25519 => "Ed25519".into(),
        ID_ED448 => "Ed448".into(),
        ID_DSA => "DSA".into(),
        other => format!("algorithm {other}"),
    }
}

/// The DER of the first CERTIFICATE block of a PEM text, as OpenSSL's
/// `X509::from_pem` (AWS's reader) takes it, without parsing it as X.509:
/// PCR8 measures these bytes whatever they hold.
pub fn first_certificate_der(pem: &[u8]) -> Result<Vec<u8>> {
    let blocks =
        pem_blocks(pem).map_err(|e| anyhow::anyhow!("the signing certificate is garbled PEM: {e:#}"))?;
    let block = blocks
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .context("the signing certificate has no `-----BEGIN CERTIFICATE-----` PEM block")?;
    Ok(block.der)
}

/// Read a P-384 private key from a PEM file: PKCS#8 or SEC1, unencrypted.
fn load_p384_key(path: &Path) -> Result<SigningKey> {
    let p = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read private key {p}"))?;
    let blocks = pem_blocks(&bytes).map_err(|e| anyhow::anyhow!("private key {p}: garbled PEM: {e:#}"))?;
    // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
    let keys: Vec<&PemBlock> = blocks.iter().filter(|b| b.label != "EC PARAMETERS").collect();
    let block = match keys.as_slice() {
        [one] => *one,
        [] => bail!(
            "private key {p}: no PEM block found; expected `-----BEGIN PRIVATE KEY-----` (PKCS#8) or \
             `-----BEGIN EC PRIVATE KEY-----` (SEC1)"
        ),
        _ => bail!(
            "private key {p}: holds {} PEM blocks ({}); give a file with one key",
            keys.len(),
            labels(&keys)
        ),
    };
    if block.encrypted {
        bail!("private key {p}: is encrypted; eifbake reads unencrypted keys (`openssl pkey -in KEY -out PLAIN`)");
    }
    match block.label.as_str() {
        "PRIVATE KEY" => {
            let info = p384::pkcs8::PrivateKeyInfo::try_from(block.der.as_slice())
                .map_err(|e| anyhow::anyhow!("private key {p}: garbled PKCS#8 key ({e})"))?;
            let curve = info.algorithm.parameters_oid().ok();
            if info.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
                bail!("private key {p}: is {}; {NEED_P384}", algorithm_name(info.algorithm.oid, curve));
            }
            SigningKey::from_pkcs8_der(&block.der)
                .map_err(|e| anyhow::anyhow!("private key {p}: garbled P-384 PKCS#8 key ({e})"))
        }
        "EC PRIVATE KEY" => {
            let ec = sec1::EcPrivateKey::try_from(block.der.as_slice())
                .map_err(|e| anyhow::anyhow!("private key {p}: garbled SEC1 EC key ({e})"))?;
            match ec.parameters.and_then(|c| c.named_curve()) {
                Some(SECP384R1) => {}
                Some(other) => bail!("private key {p}: is {}; {NEED_P384}", algorithm_name(ID_EC_PUBLIC_KEY, Some(other))),
                None if ec.private_key.len() != 48 => bail!(
                    "private key {p}: is a {}-bit EC key with no named curve; {NEED_P384}",
                    ec.private_key.len() * 8
                ),
                None => {}
            }
            let secret = p384::SecretKey::from_slice(ec.private_key)
                .map_err(|_| anyhow::anyhow!("private key {p}: the P-384 scalar is out of range"))?;
            let key = SigningKey::from(secret);
            if let Some(public) = ec.public_key {
                if key.verifying_key().to_encoded_point(false).as_bytes() != public {
                    bail!("private key {p}: its public key does not match its private scalar (corrupt key)");
                }
            }
            Ok(key)
        }
        "RSA PRIVATE KEY" => bail!("private key {p}: is an RSA key; {NEED_P384}"),
        "ENCRYPTED PRIVATE KEY" => {
            bail!("private key {p}: is encrypted; eifbake reads unencrypted keys (`openssl pkey -in KEY -out PLAIN`)")
        }
        other => bail!(
            "private key {p}: is a `{other}` PEM block; expected `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1)"
        ),
    }
}

/// One PEM block: its label, whether it has RFC 1421 encryption headers, and its bytes.
#[derive(Debug)]
struct PemBlock {
    label: String,
    encrypted: bool,
    der: Vec<u8>,
}

fn labels(blocks: &[&PemBlock]) -> String {
    blocks.iter().map(|b| b.label.as_str()).collect::<Vec<_>>().join(", ")
}

/// Every PEM block of a text, read leniently: text between blocks is
/// ignored, lines may end in CRLF and be any width. A block that does not
/// close, or whose body is not base64, is an error.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<PemBlock>> {
    let text = std::str::from_utf8(bytes).context("not text (is it a DER file rather than PEM?)")?;
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        let line = line.trim();
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let (mut body, mut encrypted, mut closed) = (String::new(), false, false);
        for (n, l) in lines.by_ref() {
            let l = l.trim();
            if l == end {
                closed = true;
                break;
            }
            if l.starts_with("-----") {
                bail!("line {}: found {l:?} inside the {label} block; expected {end:?}", n + 1);
            }
            if l.contains(':') {
                encrypted |= l.starts_with("Proc-Type:") && l.contains("ENCRYPTED");
                continue;
            }
            body.extend(l.chars().filter(|c| !c.is_whitespace()));
        }
        if !closed {
            bail!("the {label} block has no {end:?} line (truncated?)");
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| anyhow::anyhow!("the {label} block is not valid base64 ({e})"))?;
        if der.is_empty() {
            bail!("the {label} block is empty");
        }
        out.push(PemBlock { label: label.to_string(), encrypted, der });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
    }

    /// 2026-01-01T00:00:00Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn load(cert: &str, key: &str) -> Result<PemKeySigner> {
        PemKeySigner::load(&data(cert), &data(key), Validity::Enforce, now())
    }

    fn err(r: Result<PemKeySigner>) -> String {
        format!("{:#}", r.err().expect("an error"))
    }

    #[test]
    fn signatures_are_deterministic_and_verify() {
        let s = load("signer1.pem", "signer1.key").unwrap();
        let a = s.sign_es384(b"payload").unwrap();
        let b = s.sign_es384(b"payload").unwrap();
        assert_eq!(a, b, "RFC 6979: the same message and key give the same signature");
        assert_ne!(a, s.sign_es384(b"payload2").unwrap());
        let key = s.certificate().p384_key().unwrap();
        verify_es384(&key, b"payload", &a).unwrap();
        assert!(verify_es384(&key, b"payloaX", &a).is_err());
        let mut bad = a;
        bad[95] ^= 1;
        assert!(verify_es384(&key, b"payload", &bad).is_err());
        assert!(verify_es384(&key, b"payload", &a[..95]).unwrap_err().to_string().contains("95 bytes"));
        // The SEC1 form of the same key signs identically.
        let sec1 = load("signer1.pem", "signer1.sec1.key").unwrap();
        assert_eq!(sec1.sign_es384(b"payload").unwrap(), a);
    }

    #[test]
    fn rfc6979_matches_the_published_p384_vector() {
        // RFC 6979 A.2.6, P-384 with SHA-384, message "sample".
        let x = hex::decode(
            "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5",
        )
        .unwrap();
        let key = SigningKey::from_slice(&x).unwrap();
        let sig: Signature = key.sign(b"sample");
        assert_eq!(
            hex::encode_upper(sig.to_bytes()),
            "94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46\
             99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8"
        );
    }

    #[test]
    fn canonical_pem_ignores_input_formatting() {
        let a = Certificate::from_pem_file(&data("signer1.pem")).unwrap();
        let b = Certificate::from_pem_file(&data("signer1.crlf.pem")).unwrap();
        assert_eq!(a.der(), b.der());
        assert_eq!(a.canonical_pem(), b.canonical_pem());
        // openssl writes the canonical form too.
        assert_eq!(a.canonical_pem(), std::fs::read_to_string(data("signer1.pem")).unwrap());
        assert_eq!(a.reencoded_der().unwrap(), a.der());
    }

    #[test]
    fn certificate_facts() {
        let c = Certificate::from_pem_file(&data("signer1.pem")).unwrap();
        let i = c.info();
        // RFC 4514 order: the last RDN first (openssl prints DER order: CN first here).
        assert_eq!(i.subject, "O=eifbake tests,CN=eifbake test signer 1 (test only)");
        assert_eq!(i.issuer, "O=eifbake tests,CN=eifbake test CA (test only)");
        assert_eq!(i.serial, "1001");
        assert_eq!(i.not_before, "2020-01-01T00:00:00Z");
        assert_eq!(i.not_after, "2099-12-31T23:59:59Z");
        assert_eq!(i.key_algorithm, "ECDSA P-384");
        assert_eq!(i.sha256_fingerprint, hex::encode(Sha256::digest(c.der())));
        assert_eq!(i.pcr8, Pcr::of(c.der()));
        let p = Certificate::from_pem_file(&data("p256.pem")).unwrap();
        assert_eq!(p.key_algorithm(), "ECDSA P-256");
        assert_eq!(Certificate::from_pem_file(&data("rsa.pem")).unwrap().key_algorithm(), "RSA");
    }

    #[test]
    fn bad_certificates_and_keys_are_named() {
        assert!(load("signer1.pem", "signer1.key").is_ok());
        let cases = [
            ("signer1.pem", "signer2.key", "signer2.key: does not belong to the signing certificate"),
            ("expired.pem", "expired.key", "expired.pem: it expired on 2001-01-01T00:00:00Z"),
            ("future.pem", "future.key", "future.pem: it is not valid yet: valid from 2090-01-01T00:00:00Z"),
            ("p256.pem", "p256.key", "p256.pem: its public key is ECDSA P-256"),
            ("rsa.pem", "rsa.key", "rsa.pem: its public key is RSA"),
            ("signer1.pem", "p256.key", "p256.key: is ECDSA P-256"),
            ("signer1.pem", "rsa.key", "rsa.key: is RSA"),
            (
                "no-digital-signature.pem",
                "no-digital-signature.key",
                "keyUsage (keyAgreement) does not include",
            ),
            ("chain.pem", "signer1.key", "chain.pem: holds 2 certificates"),
            ("signer1.pem", "signer1.pem", "signer1.pem: is a `CERTIFICATE` PEM block"),
            ("signer1.key", "signer1.key", "signer1.key: no CERTIFICATE PEM block, found PRIVATE KEY"),
            ("signer1.pem", "missing.key", "cannot read private key"),
        ];
        for (cert, key, want) in cases {
            let e = err(load(cert, key));
            assert!(e.contains(want), "{cert} + {key}: expected {want:?} in {e:?}");
        }
        // Validity is not checked when told so.
        assert!(
            PemKeySigner::load(&data("expired.pem"), &data("expired.key"), Validity::Ignore, now()).is_ok()
        );
        // A token URI goes to the PKCS#11 code, which names the URI and the module it cannot load.
        let token = TokenOptions { module: Some(PathBuf::from("/nonexistent/p11.so")), pin_file: None };
        let e = format!(
            "{:#}",
            load_signer_with(&data("signer1.pem"), "pkcs11:token=x;object=k", Validity::Enforce, &token)
                .err()
                .unwrap()
        );
        assert!(
            e.contains("private key pkcs11:token=x;object=k") && e.contains("/nonexistent/p11.so"),
            "{e}"
        );
    }

    #[test]
    fn garbled_pem_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read_to_string(data("signer1.pem")).unwrap();
        let key = std::fs::read_to_string(data("signer1.key")).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert_cases = [
            (
                "truncated.pem",
                good[..good.len() - 30].to_string(),
                "has no \"-----END CERTIFICATE-----\" line",
            ),
            ("badb64.pem", good.replacen("MII", "M*I", 1), "not valid base64"),
            ("notcert.pem", good.replacen("MII", "MIJ", 1), "not a valid X.509 certificate"),
            ("empty.pem", String::new(), "no PEM block found"),
        ];
        for (name, text, want) in cert_cases {
            let p = write(name, &text);
            let e = format!(
                "{:#}",
                PemKeySigner::load(&p, &data("signer1.key"), Validity::Enforce, now()).err().unwrap()
            );
            assert!(e.contains(name) && e.contains(want), "{name}: expected {want:?} in {e:?}");
        }
        let key_cases = [
            ("truncated.key", key[..key.len() - 30].to_string(), "has no \"-----END PRIVATE KEY-----\" line"),
            ("badb64.key", key.replacen("MIG", "M*G", 1), "not valid base64"),
            ("garbled.key", key.replacen("MIG2", "MIG3", 1), "garbled PKCS#8 key"),
            ("enc.key", key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"), "is encrypted"),
            ("two.key", format!("{key}{key}"), "holds 2 PEM blocks"),
        ];
        for (name, text, want) in key_cases {
            let p = write(name, &text);
            let e = format!(
                "{:#}",
                PemKeySigner::load(&data("signer1.pem"), &p, Validity::Enforce, now()).err().unwrap()
            );
            assert!(e.contains(name) && e.contains(want), "{name}: expected {want:?} in {e:?}");
        }
    }
}
