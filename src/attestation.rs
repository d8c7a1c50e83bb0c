//! Nitro Enclaves attestation documents: reading one, checking that AWS's
//! Nitro hardware signed it, and comparing its PCRs with a build's.
//!
//! An attestation document is what a running enclave gets from its Nitro
//! Security Module (NSM): a COSE_Sign1 (tagged or untagged), ES384, whose
//! payload is the CBOR map
//!
//! ```text
//! { "module_id": text, "digest": "SHA384", "timestamp": uint (ms),
//!   "pcrs": { index: 48 bytes, … }, "certificate": DER, "cabundle": [DER, …],
//!   "public_key": bytes / null, "user_data": bytes / null, "nonce": bytes / null }
//! ```
//!
//! `cabundle` is the chain from the root down (`[ROOT, INTERM_1, …]`) and
//! `certificate` the enclave's own, which signs the COSE_Sign1. [`verify`]
//! says GOOD only when all of these hold:
//! - the chain: `cabundle[0]` is the trust anchor byte for byte (for the
//!   command line, the AWS Nitro Enclaves Root G1, pinned below by its
//!   SHA-256), each certificate is issued by the one before it (issuer name
//!   and an ECDSA P-384 / SHA-384 signature by the issuer's P-384 key; no
//!   other algorithm anywhere), every issuer is a CA (basicConstraints
//!   CA:true, keyCertSign when keyUsage is present, pathLenConstraint
//!   respected), the enclave's certificate is not a CA and may sign
//!   (digitalSignature), no certificate has a critical extension other
//!   than those two, and every certificate is valid at the time given
//!   (`--at`, default now);
//! - the signature: the protected header says ES384 and the enclave
//!   certificate's key verifies the Sig_structure `["Signature1",
//!   protected, h'', payload]`;
//! - the nonce equals the one given, when one is given;
//! - PCR0, PCR1, PCR2 (and PCR8 when the expected values have it) equal the
//!   expected ones. All-zero PCR0/1/2 are named for what they mean: a debug
//!   enclave, whose measurements AWS does not report.
//!
//! A document whose signature is empty or all zero bytes is unsigned: the
//! shape QEMU's `nitro-enclave` machine writes (no chain, PCRs QEMU
//! computed itself). It is BAD unless the caller allows unsigned documents;
//! then its nonce and PCRs are compared and the verdict is
//! [`Verdict::Unauthenticated`], never GOOD: anyone can write such a document.
//!
//! Invariants: a document that is not a COSE_Sign1 over a payload of
//! exactly the nine fields above, with their types, no duplicate or unknown
//! keys, digest SHA384 and 48-byte PCRs, is an error (unreadable), never a
//! verdict. Every check runs and is reported, so a BAD names every reason.
//!
//! Not for: talking to an NSM or an enclave (a document is a file here),
//! revocation (AWS publishes no CRL for the root; the intermediates' CRL
//! distribution points are not fetched), or documents of other TEEs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use ciborium::value::Value;
use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::{Signature, VerifyingKey};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _, Header, Reader as _, SliceReader};

use crate::eif::signature::{sig_structure, CoseSign1};
use crate::epoch::Epoch;
use crate::pcr::{Measurements, Pcr};
use crate::signing::verify_es384;

/// SHA-256 of the DER of the AWS Nitro Enclaves Root G1 certificate, as AWS
/// documents it ("Verifying the root of trust", Nitro Enclaves User Guide).
pub const AWS_NITRO_ROOT_G1_SHA256: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The AWS Nitro Enclaves Root G1 certificate (`CN=aws.nitro-enclaves`,
/// valid 2019-10-28 to 2049-10-28). AWS publishes it as `root.pem` inside
/// https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip
/// (the zip's SHA-256 is 8cf60e2b2efca96c6a9e71e851d00c1b6991cc09eadbe64a6a1d1b1eb9faff7c);
/// its DER hashes to [`AWS_NITRO_ROOT_G1_SHA256`], which a unit test checks.
const AWS_NITRO_ROOT_G1_PEM: &str = "\
MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD
VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4
MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL
DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG
BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb
48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE
h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF
R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC
MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW
rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N
IwLz3/Y=";

/// The largest document file read. An NSM's documents are 4 to 16 KiB
/// (three 1 KiB user fields at most); base64 or hex text is larger.
pub const DOCUMENT_FILE_LIMIT: u64 = 256 * 1024;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// COSE algorithm ES384 (RFC 8152 §8.1).
const COSE_ES384: i128 = -35;

/// The payload fields, in the order the NSM writes them.
const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

/// The payload of an attestation document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub module_id: String,
    /// Always `SHA384` (others are refused when parsed).
    pub digest: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp: u64,
    /// Register index to value.
    pub pcrs: BTreeMap<u8, Pcr>,
    /// The enclave's certificate (DER), which signs the document.
    pub certificate: Vec<u8>,
    /// DER certificates from the root down to the enclave certificate's issuer.
    pub cabundle: Vec<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

/// A parsed document: the COSE_Sign1 as stored and its payload.
#[derive(Clone, Debug)]
pub struct SignedDocument {
    pub cose: CoseSign1,
    pub document: Document,
}

impl SignedDocument {
    /// An empty or all-zero signature: QEMU's `nitro-enclave` shape, never an ECDSA signature.
    pub fn is_unsigned(&self) -> bool {
        self.cose.signature.iter().all(|b| *b == 0)
    }
}

/// Read a document file: the COSE_Sign1 bytes, or their base64 or hex
/// (whitespace ignored), as APIs and logs usually carry them.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let p = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| std::io::Read::take(f, DOCUMENT_FILE_LIMIT + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read attestation document {p}"))?;
    if bytes.len() as u64 > DOCUMENT_FILE_LIMIT {
        bail!(
            "attestation document {p}: larger than {DOCUMENT_FILE_LIMIT} bytes (DOCUMENT_FILE_LIMIT); an NSM's \
             documents are a few KiB, so this is not one"
        );
    }
    decode_text(&bytes).with_context(|| format!("attestation document {p}"))
}

/// Binary CBOR as is; otherwise base64 or hex text. Of the text decodings
/// that succeed, the first that looks like a COSE_Sign1 wins (else the first,
/// so that the parser names what is wrong with it).
fn decode_text(bytes: &[u8]) -> Result<Vec<u8>> {
    // A COSE_Sign1 starts with an array of 4 (0x84) or tag 18 (0xd2).
    let cose = |b: &[u8]| matches!(b.first(), Some(0x84 | 0xd2));
    if cose(bytes) {
        return Ok(bytes.to_vec());
    }
    let text: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if text.is_empty() {
        bail!("the file is empty; expected a COSE_Sign1 (binary CBOR, base64 or hex)");
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let unpadded = text.strip_suffix(b"==").or(text.strip_suffix(b"=")).unwrap_or(&text);
    let decoded: Vec<Vec<u8>> = [
        hex::decode(&text).ok(),
        STANDARD.decode(&text).ok(),
        URL_SAFE.decode(&text).ok(),
        STANDARD_NO_PAD.decode(unpadded).ok(),
        URL_SAFE_NO_PAD.decode(unpadded).ok(),
    ]
    .into_iter()
    .flatten()
    .collect();
    match decoded.iter().position(|d| cose(d)).or(if decoded.is_empty() { None } else { Some(0) }) {
        Some(i) => Ok(decoded.into_iter().nth(i).expect("index in range")),
        None => bail!("not a COSE_Sign1: neither binary CBOR (0x84 or 0xd2 first) nor base64 nor hex text"),
    }
}

/// Parse a COSE_Sign1 attestation document (see the module docs for what is refused).
pub fn parse(bytes: &[u8]) -> Result<SignedDocument> {
    let cose = CoseSign1::parse(bytes).context("not an attestation document")?;
    let document = Document::from_cbor(&cose.payload).context("the attestation document's payload")?;
    Ok(SignedDocument { cose, document })
}

impl Document {
    /// Parse the payload map (see the module docs).
    pub fn from_cbor(mut payload: &[u8]) -> Result<Document> {
        let v: Value = ciborium::from_reader(&mut payload).map_err(|e| anyhow::anyhow!("not CBOR ({e})"))?;
        if !payload.is_empty() {
            bail!("{} unexpected byte(s) after the CBOR map", payload.len());
        }
        let Value::Map(entries) = v else { bail!("not a CBOR map") };
        let mut fields: BTreeMap<&'static str, Value> = BTreeMap::new();
        for (k, v) in entries {
            let Value::Text(k) = k else { bail!("a key is not a text string ({k:?})") };
            let Some(name) = FIELDS.iter().find(|f| **f == k) else {
                bail!("unknown field {k:?}; an NSM document has exactly {}", FIELDS.join(", "))
            };
            if fields.insert(name, v).is_some() {
                bail!("field {k:?} appears twice");
            }
        }
        let mut take =
            |name: &'static str| fields.remove(name).with_context(|| format!("field {name:?} is missing"));
        let module_id = text(take("module_id")?, "module_id")?;
        let digest = text(take("digest")?, "digest")?;
        let timestamp = take("timestamp")?;
        let pcrs = pcrs(take("pcrs")?)?;
        let certificate = bytes(take("certificate")?, "certificate")?;
        let cabundle = cabundle(take("cabundle")?)?;
        let public_key = optional_bytes(take("public_key")?, "public_key")?;
        let user_data = optional_bytes(take("user_data")?, "user_data")?;
        let nonce = optional_bytes(take("nonce")?, "nonce")?;
        if module_id.is_empty() {
            bail!("field \"module_id\" is empty");
        }
        if digest != "SHA384" {
            bail!(
                "field \"digest\" is {digest:?}; eifbake reads SHA384 documents (what Nitro Enclaves write)"
            );
        }
        let timestamp = timestamp
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|t| *t > 0)
            .context("field \"timestamp\" is not a positive integer (milliseconds since 1970)")?;
        Ok(Document {
            module_id,
            digest,
            timestamp,
            pcrs,
            certificate,
            cabundle,
            public_key,
            user_data,
            nonce,
        })
    }

    /// The payload's CBOR, fields in the NSM's order (absent optional fields as null).
    pub fn to_cbor(&self) -> Vec<u8> {
        let b = |v: &[u8]| Value::Bytes(v.to_vec());
        let opt = |v: &Option<Vec<u8>>| v.as_deref().map(b).unwrap_or(Value::Null);
        let pcrs = self.pcrs.iter().map(|(n, p)| (Value::Integer((*n).into()), b(&p.0))).collect();
        let values = [
            Value::Text(self.module_id.clone()),
            Value::Text(self.digest.clone()),
            Value::Integer(self.timestamp.into()),
            Value::Map(pcrs),
            b(&self.certificate),
            Value::Array(self.cabundle.iter().map(|c| b(c)).collect()),
            opt(&self.public_key),
            opt(&self.user_data),
            opt(&self.nonce),
        ];
        let map = FIELDS.iter().zip(values).map(|(k, v)| (Value::Text(k.to_string()), v)).collect();
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Map(map), &mut out).expect("CBOR into a Vec cannot fail");
        out
    }

    /// RFC 3339 UTC with milliseconds.
    pub fn time(&self) -> String {
        let s = Epoch(self.timestamp / 1000).rfc3339();
        format!("{}.{:03}Z", s.trim_end_matches('Z'), self.timestamp % 1000)
    }
}

fn text(v: Value, name: &str) -> Result<String> {
    match v {
        Value::Text(s) => Ok(s),
        _ => bail!("field {name:?} is not a text string"),
    }
}

fn bytes(v: Value, name: &str) -> Result<Vec<u8>> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => bail!("field {name:?} is not a byte string"),
    }
}

fn optional_bytes(v: Value, name: &str) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        v => bytes(v, name).map(Some).with_context(|| format!("field {name:?} is neither bytes nor null")),
    }
}

fn pcrs(v: Value) -> Result<BTreeMap<u8, Pcr>> {
    let Value::Map(entries) = v else { bail!("field \"pcrs\" is not a map") };
    if entries.is_empty() || entries.len() > 32 {
        bail!("field \"pcrs\" has {} entries; an NSM has 1 to 32 PCRs", entries.len());
    }
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let n = k
            .as_integer()
            .and_then(|i| u8::try_from(i).ok())
            .filter(|n| *n < 32)
            .with_context(|| format!("field \"pcrs\": key {k:?} is not a PCR index 0..31"))?;
        let b = bytes(v, &format!("pcrs.{n}"))?;
        let value = <[u8; 48]>::try_from(b.as_slice()).map_err(|_| {
            anyhow::anyhow!("field \"pcrs\": PCR{n} is {} bytes; a SHA384 PCR is 48", b.len())
        })?;
        if out.insert(n, Pcr(value)).is_some() {
            bail!("field \"pcrs\": PCR{n} appears twice");
        }
    }
    Ok(out)
}

fn cabundle(v: Value) -> Result<Vec<Vec<u8>>> {
    let Value::Array(items) = v else { bail!("field \"cabundle\" is not an array") };
    items.into_iter().enumerate().map(|(i, c)| bytes(c, &format!("cabundle[{i}]"))).collect()
}

/// The certificate a chain must start with.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    der: Vec<u8>,
    /// For messages: what this root is.
    pub name: String,
}

impl TrustAnchor {
    /// The AWS Nitro Enclaves Root G1 (see [`AWS_NITRO_ROOT_G1_PEM`]).
    pub fn aws_nitro() -> TrustAnchor {
        let der = base64::engine::general_purpose::STANDARD
            .decode(AWS_NITRO_ROOT_G1_PEM.replace('\n', ""))
            .expect("the embedded root is base64");
        TrustAnchor { der, name: "the AWS Nitro Enclaves Root G1".into() }
    }

    /// Another root (the tests' made-up one).
    pub fn from_der(der: Vec<u8>, name: &str) -> TrustAnchor {
        TrustAnchor { der, name: name.into() }
    }

    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }
}

/// What to check a document against.
#[derive(Clone, Debug)]
pub struct Policy {
    pub anchor: TrustAnchor,
    /// The time the certificates must be valid at (seconds since 1970).
    pub at: Epoch,
    /// The nonce the document must carry, when given.
    pub nonce: Option<Vec<u8>>,
    /// PCR0/1/2 (and PCR8) the enclave must have.
    pub expected: Measurements,
    /// Compare an unsigned (QEMU) document's PCRs instead of refusing it.
    pub allow_unsigned: bool,
}

/// The outcome of [`verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Signed by AWS's chain, and every comparison holds.
    Good,
    /// Some check failed.
    Bad,
    /// Unsigned, allowed by the caller, and its nonce and PCRs match: nothing authenticated.
    Unauthenticated,
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Good => "GOOD",
            Verdict::Bad => "BAD",
            Verdict::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `chain`, `signature`, `nonce`, `PCR0`, …
    pub what: String,
    /// `ok`, `FAILED` or `skipped`.
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

/// Everything [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub module_id: String,
    /// The document's own timestamp, RFC 3339 with milliseconds.
    pub time: String,
    /// When the certificates were checked (RFC 3339).
    pub checked_at: String,
    /// False for an empty or all-zero signature (QEMU's shape).
    pub signed: bool,
    pub checks: Vec<Check>,
    /// Every PCR the document carries.
    pub pcrs: BTreeMap<String, Pcr>,
    /// The optional fields, lowercase hex (null when absent).
    pub public_key: Option<String>,
    pub user_data: Option<String>,
    pub nonce: Option<String>,
    pub notes: Vec<String>,
}

/// Check `doc` against `policy`: every check runs (see the module docs).
pub fn verify(doc: &SignedDocument, policy: &Policy) -> Report {
    let d = &doc.document;
    let signed = !doc.is_unsigned();
    let mut notes = Vec::new();
    let mut checks =
        if signed { authenticity(doc, policy, &mut notes) } else { unsigned(doc, policy.allow_unsigned) };
    checks.push(check_nonce(d, policy.nonce.as_deref(), &mut notes));
    checks.extend(check_pcrs(d, &policy.expected, &mut notes));
    let failed = checks.iter().any(|c| c.status == Status::Failed);
    let verdict = match (failed, signed) {
        (true, _) => Verdict::Bad,
        (false, true) => Verdict::Good,
        (false, false) => Verdict::Unauthenticated,
    };
    let hex_opt = |v: &Option<Vec<u8>>| v.as_ref().map(hex::encode);
    Report {
        verdict,
        module_id: d.module_id.clone(),
        time: d.time(),
        checked_at: policy.at.rfc3339(),
        signed,
        checks,
        pcrs: d.pcrs.iter().map(|(n, p)| (format!("PCR{n}"), *p)).collect(),
        public_key: hex_opt(&d.public_key),
        user_data: hex_opt(&d.user_data),
        nonce: hex_opt(&d.nonce),
        notes,
    }
}

/// The `chain` and `signature` checks of a signed document. The signature
/// is checked even when the chain fails, with the enclave certificate's key
/// when it has one, so a BAD names both.
fn authenticity(doc: &SignedDocument, policy: &Policy, notes: &mut Vec<String>) -> Vec<Check> {
    let d = &doc.document;
    let mut checks = Vec::new();
    let leaf = match check_chain(d, &policy.anchor, policy.at) {
        Ok((key, detail)) => {
            checks.push(check("chain", Status::Ok, detail));
            Some(key)
        }
        Err(e) => {
            let detail = format!("{e:#}");
            if detail.contains(" expired before ") {
                notes.push(format!(
                    "the document says it was made at {}; to check it as of then, pass --at {}",
                    d.time(),
                    Epoch(d.timestamp / 1000).rfc3339()
                ));
            }
            checks.push(check("chain", Status::Failed, detail));
            p384_key_of(&d.certificate).ok()
        }
    };
    checks.push(match check_signature(doc, leaf.as_ref()) {
        Ok(detail) => check("signature", Status::Ok, detail),
        Err(e) => check("signature", Status::Failed, format!("{e:#}")),
    });
    checks
}

/// The `chain` and `signature` lines of an unsigned document: failed, or
/// skipped when the caller allows unsigned documents.
fn unsigned(doc: &SignedDocument, allowed: bool) -> Vec<Check> {
    let why = format!(
        "the document is not signed (its signature is {} zero byte(s), the shape QEMU's nitro-enclave machine \
         writes)",
        doc.cose.signature.len()
    );
    let (status, detail) = if allowed {
        (Status::Skipped, format!("{why}; NOT AUTHENTICATED (--insecure-unsigned)"))
    } else {
        (
            Status::Failed,
            format!("{why}; pass --insecure-unsigned to compare its PCRs anyway, knowing nothing is authenticated"),
        )
    };
    vec![check("chain", status, detail.clone()), check("signature", status, detail)]
}

fn check(what: &str, status: Status, detail: String) -> Check {
    Check { what: what.into(), status, detail }
}

fn check_signature(doc: &SignedDocument, leaf: Option<&VerifyingKey>) -> Result<String> {
    match doc.cose.algorithm {
        Some(COSE_ES384) => {}
        Some(other) => {
            bail!("the COSE protected header names algorithm {other}; NSM documents are ES384 (-35)")
        }
        None => bail!("the COSE protected header names no algorithm; NSM documents are ES384 (-35)"),
    }
    let key =
        leaf.context("the enclave certificate has no usable P-384 key, so the signature cannot be checked")?;
    verify_es384(key, &sig_structure(&doc.cose.protected, &doc.cose.payload), &doc.cose.signature)
        .context("the COSE_Sign1 signature (the payload was changed, or signed by another key)")?;
    Ok("ES384 by the enclave certificate's key".into())
}

fn check_nonce(d: &Document, want: Option<&[u8]>, notes: &mut Vec<String>) -> Check {
    let Some(want) = want else {
        notes.push(match &d.nonce {
            Some(n) => format!(
                "the document carries a {}-byte nonce that was not checked; give --nonce to refuse a replayed document",
                n.len()
            ),
            None => "the document carries no nonce: it proves what ran, not that it runs now".into(),
        });
        return check("nonce", Status::Skipped, "no --nonce given".into());
    };
    match &d.nonce {
        Some(n) if n.as_slice() == want => check("nonce", Status::Ok, format!("{} bytes, as given", n.len())),
        Some(n) => check(
            "nonce",
            Status::Failed,
            format!("the document's nonce is {} (expected {})", short_hex(n), short_hex(want)),
        ),
        None => check(
            "nonce",
            Status::Failed,
            format!("the document has no nonce (expected {})", short_hex(want)),
        ),
    }
}

fn short_hex(b: &[u8]) -> String {
    if b.len() <= 32 {
        hex::encode(b)
    } else {
        format!("{}… ({} bytes)", hex::encode(&b[..32]), b.len())
    }
}

fn check_pcrs(d: &Document, expected: &Measurements, notes: &mut Vec<String>) -> Vec<Check> {
    let zero = Pcr([0; 48]);
    let debug = (0..3).all(|n| d.pcrs.get(&n) == Some(&zero));
    let mut out = Vec::new();
    for (n, want) in expected.registers() {
        let what = format!("PCR{n}");
        out.push(match d.pcrs.get(&n) {
            Some(got) if *got == want => check(&what, Status::Ok, got.hex()),
            Some(_) if debug && n < 3 => check(
                &what,
                Status::Failed,
                format!(
                    "all zeros: the enclave runs in debug mode, where AWS reports no measurements (expected {want})"
                ),
            ),
            Some(got) => check(&what, Status::Failed, format!("attested {got}, expected {want}")),
            None => check(&what, Status::Failed, format!("the document has no {what} (expected {want})")),
        });
    }
    if expected.pcr8.is_none() {
        if let Some(p) = d.pcrs.get(&8).filter(|p| **p != zero) {
            notes.push(format!(
                "the enclave's image is signed (PCR8 {p}) but the expected values have no PCR8; PCR0/1/2 say what \
                 runs, PCR8 who signed it"
            ));
        }
    }
    out
}

/// One certificate of the chain: its bytes and its parse.
struct Link<'a> {
    name: String,
    der: &'a [u8],
    cert: x509_cert::Certificate,
}

/// Check the chain `cabundle ‖ certificate` (see the module docs) at `at`;
/// returns the enclave certificate's key and a line saying what was checked.
fn check_chain(d: &Document, anchor: &TrustAnchor, at: Epoch) -> Result<(VerifyingKey, String)> {
    let root = d.cabundle.first().context("the cabundle is empty: there is no chain to a root")?;
    if root.as_slice() != anchor.der {
        bail!(
            "the chain's root (cabundle[0], SHA-256 {}) is not {} (SHA-256 {}): the document was not signed under \
             that root",
            hex::encode(Sha256::digest(root)),
            anchor.name,
            anchor.sha256()
        );
    }
    let mut links = Vec::new();
    for (i, der) in d.cabundle.iter().chain(std::iter::once(&d.certificate)).enumerate() {
        let name =
            if i < d.cabundle.len() { format!("cabundle[{i}]") } else { "the enclave certificate".into() };
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| anyhow::anyhow!("{name} is not a valid X.509 certificate ({e})"))?;
        links.push(Link { name, der, cert });
    }
    let n = links.len();
    for i in 0..n {
        let issuer = &links[i.saturating_sub(1)];
        check_link(&links[i], issuer, at)
            .with_context(|| format!("{} ({})", links[i].name, subject(&links[i])))?;
        if i + 1 < n {
            check_ca(&links[i], n - 2 - i)
                .with_context(|| format!("{} ({})", links[i].name, subject(&links[i])))?;
        }
    }
    let leaf = &links[n - 1];
    let key = check_leaf(leaf).with_context(|| format!("the enclave certificate ({})", subject(leaf)))?;
    let detail = format!(
        "{n} certificates from {} (SHA-256 {}) to {}, each valid at {}",
        anchor.name,
        anchor.sha256(),
        subject(leaf),
        at.rfc3339()
    );
    Ok((key, detail))
}

fn subject(l: &Link<'_>) -> String {
    l.cert.tbs_certificate.subject.to_string()
}

/// Validity, algorithms, issuer name and signature of one certificate.
fn check_link(l: &Link<'_>, issuer: &Link<'_>, at: Epoch) -> Result<()> {
    let tbs = &l.cert.tbs_certificate;
    let (from, to) = (tbs.validity.not_before, tbs.validity.not_after);
    let now = Duration::from_secs(at.0);
    if now < from.to_unix_duration() {
        bail!("is not valid yet at {}: valid from {} to {}", at.rfc3339(), from, to);
    }
    if now > to.to_unix_duration() {
        bail!("expired before {}: valid from {} to {}", at.rfc3339(), from, to);
    }
    if l.cert.signature_algorithm.oid != ECDSA_WITH_SHA384 || tbs.signature.oid != ECDSA_WITH_SHA384 {
        bail!(
            "is signed with algorithm {}; Nitro chains use ecdsa-with-SHA384 ({ECDSA_WITH_SHA384}) throughout",
            l.cert.signature_algorithm.oid
        );
    }
    if tbs.issuer != issuer.cert.tbs_certificate.subject {
        bail!("names issuer {}, but the certificate before it is {}", tbs.issuer, subject(issuer));
    }
    let key = p384_key_of(issuer.der).with_context(|| format!("its issuer {}", issuer.name))?;
    let sig = l.cert.signature.as_bytes().context("its signature is not a whole number of bytes")?;
    let sig = Signature::from_der(sig)
        .map_err(|_| anyhow::anyhow!("its signature is not a valid ECDSA P-384 value"))?;
    key.verify(tbs_bytes(l.der)?, &sig)
        .map_err(|_| anyhow::anyhow!("its signature does not verify with the key of {}", issuer.name))?;
    critical_extensions_known(l)
}

/// A certificate's ECDSA P-384 public key (any other key is an error naming it).
fn p384_key_of(der: &[u8]) -> Result<VerifyingKey> {
    crate::signing::Certificate::from_der(der.to_vec())?.p384_key()
}

/// The raw DER of the TBSCertificate: the first element of the outer SEQUENCE, as signed.
fn tbs_bytes(der: &[u8]) -> Result<&[u8]> {
    let inner = || -> x509_cert::der::Result<(usize, usize)> {
        let mut r = SliceReader::new(der)?;
        Header::decode(&mut r)?;
        let start = usize::try_from(r.position())?;
        let h = Header::decode(&mut r)?;
        let len = usize::try_from((h.encoded_len()? + h.length)?)?;
        Ok((start, len))
    };
    let (start, len) = inner().map_err(|e| anyhow::anyhow!("garbled certificate DER ({e})"))?;
    der.get(start..start + len).context("garbled certificate DER (truncated TBSCertificate)")
}

/// Extensions of one certificate: basicConstraints and keyUsage, parsed.
fn extensions(
    l: &Link<'_>,
) -> Result<(Option<x509_cert::ext::pkix::BasicConstraints>, Option<x509_cert::ext::pkix::KeyUsage>)> {
    let mut bc = None;
    let mut ku = None;
    for e in l.cert.tbs_certificate.extensions.iter().flatten() {
        let v = e.extn_value.as_bytes();
        if e.extn_id == ID_CE_BASIC_CONSTRAINTS {
            bc = Some(
                x509_cert::ext::pkix::BasicConstraints::from_der(v).context("garbled basicConstraints")?,
            );
        } else if e.extn_id == ID_CE_KEY_USAGE {
            ku = Some(x509_cert::ext::pkix::KeyUsage::from_der(v).context("garbled keyUsage")?);
        }
    }
    Ok((bc, ku))
}

fn critical_extensions_known(l: &Link<'_>) -> Result<()> {
    for e in l.cert.tbs_certificate.extensions.iter().flatten() {
        if e.critical && e.extn_id != ID_CE_BASIC_CONSTRAINTS && e.extn_id != ID_CE_KEY_USAGE {
            bail!(
                "has a critical extension {} that eifbake does not know, so it cannot be accepted",
                e.extn_id
            );
        }
    }
    Ok(())
}

/// An issuer: a CA that may sign certificates, with `below` CAs under it before the leaf.
fn check_ca(l: &Link<'_>, below: usize) -> Result<()> {
    let (bc, ku) = extensions(l)?;
    let bc =
        bc.filter(|b| b.ca).context("issues a certificate but is not a CA (basicConstraints CA:true)")?;
    if let Some(max) = bc.path_len_constraint {
        if below > usize::from(max) {
            bail!("allows {max} CA(s) below it (pathLenConstraint), but the chain has {below}");
        }
    }
    if ku.is_some_and(|k| !k.key_cert_sign()) {
        bail!("issues a certificate but its keyUsage lacks keyCertSign");
    }
    Ok(())
}

/// The enclave certificate: not a CA, may sign, a P-384 key.
fn check_leaf(l: &Link<'_>) -> Result<VerifyingKey> {
    let (bc, ku) = extensions(l)?;
    if bc.is_some_and(|b| b.ca) {
        bail!("is a CA (basicConstraints CA:true); an enclave's certificate is not");
    }
    if ku.is_some_and(|k| !k.digital_signature()) {
        bail!("its keyUsage lacks digitalSignature");
    }
    p384_key_of(l.der)
}

/// The expected measurements from a build manifest or a `.pcrs` file.
pub fn expected_from_manifest(path: &Path) -> Result<Measurements> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
    let m = crate::manifest::Manifest::from_json(&bytes)
        .with_context(|| format!("manifest {}", path.display()))?;
    Ok(m.outputs.pcrs)
}

/// See [`expected_from_manifest`].
pub fn expected_from_pcrs_file(path: &Path) -> Result<Measurements> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read PCR file {}", path.display()))?;
    Measurements::parse_pcrs_file(&text).with_context(|| format!("PCR file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eif::signature::{cose_sign1, PROTECTED_ES384};
    use p384::ecdsa::signature::Signer as _;
    use p384::ecdsa::SigningKey;
    use p384::pkcs8::DecodePrivateKey as _;
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/attestation").join(name)
    }

    fn cert(name: &str) -> Vec<u8> {
        crate::signing::Certificate::from_pem_file(&data(&format!("chain/{name}.pem")))
            .unwrap()
            .der()
            .to_vec()
    }

    fn key(name: &str) -> SigningKey {
        SigningKey::from_pkcs8_pem(&std::fs::read_to_string(data(&format!("chain/{name}.key"))).unwrap())
            .unwrap()
    }

    fn real() -> SignedDocument {
        parse(&read_file(&data("nitro-2024-09-07.b64")).unwrap()).unwrap()
    }

    /// 2026-01-01T00:00:00Z: inside the made-up chain's 2020..2099.
    const NOW: Epoch = Epoch(1_767_225_600);

    fn measurements(pcrs: &BTreeMap<u8, Pcr>) -> Measurements {
        Measurements { pcr0: pcrs[&0], pcr1: pcrs[&1], pcr2: pcrs[&2], pcr8: None }
    }

    /// A document under the made-up chain, as an NSM would write it.
    fn made_up(cabundle: &[&str], leaf: &str) -> Document {
        let pcrs = (0..16u8).map(|n| (n, if n < 3 { Pcr::of(&[n]) } else { Pcr([0; 48]) })).collect();
        Document {
            module_id: "i-0123456789abcdef0-enc0123456789abcdef".into(),
            digest: "SHA384".into(),
            timestamp: NOW.0 * 1000 + 250,
            pcrs,
            certificate: cert(leaf),
            cabundle: cabundle.iter().map(|c| cert(c)).collect(),
            public_key: None,
            user_data: Some(b"hello".to_vec()),
            nonce: Some(vec![0xab; 20]),
        }
    }

    fn sign(doc: &Document, signer: &SigningKey) -> Vec<u8> {
        let payload = doc.to_cbor();
        let sig: Signature = signer.sign(&sig_structure(&PROTECTED_ES384, &payload));
        cose_sign1(&PROTECTED_ES384, &payload, &sig.to_bytes())
    }

    fn policy(doc: &Document) -> Policy {
        Policy {
            anchor: TrustAnchor::from_der(cert("root"), "the test root"),
            at: NOW,
            nonce: doc.nonce.clone(),
            expected: measurements(&doc.pcrs),
            allow_unsigned: false,
        }
    }

    fn run(bytes: &[u8], policy: &Policy) -> Report {
        verify(&parse(bytes).unwrap(), policy)
    }

    /// The detail of the failed check `what`, or a panic showing the report.
    fn failed(r: &Report, what: &str) -> String {
        let c = r.checks.iter().find(|c| c.what == what).unwrap();
        assert_eq!((r.verdict, c.status), (Verdict::Bad, Status::Failed), "{r:#?}");
        c.detail.clone()
    }

    #[test]
    fn the_pinned_root_is_the_embedded_one_and_the_real_chains_root() {
        let aws = TrustAnchor::aws_nitro();
        assert_eq!(aws.sha256(), AWS_NITRO_ROOT_G1_SHA256);
        let c = crate::signing::Certificate::from_der(aws.der.clone()).unwrap();
        assert_eq!(c.subject(), "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US");
        assert_eq!(real().document.cabundle[0], aws.der);
    }

    #[test]
    fn the_real_document_parses_and_re_encodes_to_the_same_bytes() {
        let r = real();
        let d = &r.document;
        assert_eq!(d.module_id, "i-0a22e5c5f24d22174-enc0191cceb4289903f");
        assert_eq!((d.digest.as_str(), d.timestamp), ("SHA384", 1_725_719_859_545));
        assert_eq!(d.time(), "2024-09-07T14:37:39.545Z");
        assert_eq!(d.pcrs.len(), 16);
        assert_eq!(d.cabundle.len(), 4);
        assert_eq!(d.nonce.as_deref(), Some(&[1u8; 1024][..]));
        assert_eq!(r.cose.algorithm, Some(COSE_ES384));
        assert!(!r.is_unsigned());
        assert_eq!(d.to_cbor(), r.cose.payload, "the encoder writes the NSM's bytes");
    }

    #[test]
    fn the_real_document_verifies_at_its_time_and_not_after() {
        let r = real();
        let expected =
            Measurements::parse_pcrs_file(&std::fs::read_to_string(data("nitro-2024-09-07.pcrs")).unwrap())
                .unwrap();
        let mut p = Policy {
            anchor: TrustAnchor::aws_nitro(),
            at: Epoch(1_725_719_859),
            nonce: Some(vec![1; 1024]),
            expected,
            allow_unsigned: false,
        };
        let report = verify(&r, &p);
        assert_eq!(report.verdict, Verdict::Good, "{report:#?}");
        assert!(report.checks.iter().all(|c| c.status == Status::Ok));
        assert!(report.checks[0].detail.contains("5 certificates from the AWS Nitro Enclaves Root G1"));
        p.at = Epoch(1_725_730_000); // 17:26:40, the leaf is still valid; cabundle[3] too
        assert_eq!(verify(&r, &p).verdict, Verdict::Good);
        p.at = Epoch(1_725_730_660); // 17:37:40, one second after the leaf expired
        let report = verify(&r, &p);
        let d = failed(&report, "chain");
        assert!(d.contains("the enclave certificate") && d.contains("expired before"), "{d}");
        assert!(report.notes.iter().any(|n| n.contains("pass --at 2024-09-07T14:37:39Z")), "{report:#?}");
    }

    #[test]
    fn a_made_up_chain_verifies_only_under_its_own_root() {
        let doc = made_up(&["root", "inter"], "leaf");
        let bytes = sign(&doc, &key("leaf"));
        let p = policy(&doc);
        let r = run(&bytes, &p);
        assert_eq!(r.verdict, Verdict::Good, "{r:#?}");
        assert_eq!(r.user_data.as_deref(), Some(hex::encode(b"hello").as_str()));
        // Tagged (CBOR tag 18) the same.
        let tagged = [&[0xd2][..], &bytes].concat();
        assert_eq!(run(&tagged, &p).verdict, Verdict::Good);
        // Under AWS's root: refused, naming both fingerprints.
        let aws = Policy { anchor: TrustAnchor::aws_nitro(), ..p.clone() };
        let d = failed(&run(&bytes, &aws), "chain");
        assert!(
            d.contains("is not the AWS Nitro Enclaves Root G1") && d.contains(AWS_NITRO_ROOT_G1_SHA256),
            "{d}"
        );
        // Root missing from the bundle, or the bundle out of order.
        for bundle in [&["inter"][..], &["inter", "root"]] {
            let d = failed(&run(&sign(&made_up(bundle, "leaf"), &key("leaf")), &p), "chain");
            assert!(d.contains("cabundle[0]") && d.contains("is not the test root"), "{d}");
        }
    }

    #[test]
    fn chain_rules_are_enforced() {
        let cases: [(&[&str], &str, &str); 5] = [
            (&["root", "inter-not-ca"], "leaf-under-not-ca", "is not a CA"),
            (&["root", "inter-sha256"], "leaf", "ecdsa-with-SHA384"),
            (&["root", "inter"], "leaf-expired", "expired before 2026-01-01T00:00:00Z"),
            (&["root"], "leaf", "names issuer"),
            (&["root", "inter", "inter"], "leaf", "names issuer"),
        ];
        for (bundle, leaf, want) in cases {
            let doc = made_up(bundle, leaf);
            let d = failed(&run(&sign(&doc, &key("leaf")), &policy(&doc)), "chain");
            assert!(d.contains(want), "{bundle:?} {leaf}: expected {want:?} in {d:?}");
        }
        // A CA as the enclave certificate (signing with its own key).
        let doc = made_up(&["root"], "inter");
        let d = failed(&run(&sign(&doc, &key("inter")), &policy(&doc)), "chain");
        assert!(d.contains("is a CA"), "{d}");
        // Not yet valid.
        let doc = made_up(&["root", "inter"], "leaf");
        let early = Policy { at: Epoch(1_500_000_000), ..policy(&doc) };
        let d = failed(&run(&sign(&doc, &key("leaf")), &early), "chain");
        assert!(d.contains("is not valid yet at 2017-07-14T02:40:00Z"), "{d}");
        // pathLenConstraint 1 on the intermediate: two CAs below it are too many.
        let der = cert("inter");
        let link =
            Link { name: "x".into(), der: &der, cert: x509_cert::Certificate::from_der(&der).unwrap() };
        assert!(check_ca(&link, 1).is_ok());
        assert!(format!("{:#}", check_ca(&link, 2).unwrap_err()).contains("pathLenConstraint"));
    }

    #[test]
    fn signature_payload_and_key_are_bound() {
        let doc = made_up(&["root", "inter"], "leaf");
        let p = policy(&doc);
        // Signed by another key than the enclave certificate's.
        let d = failed(&run(&sign(&doc, &key("inter")), &p), "signature");
        assert!(d.contains("does not verify"), "{d}");
        // A PCR changed after signing: the signature breaks (and the comparison names it).
        let good = parse(&sign(&doc, &key("leaf"))).unwrap();
        let mut forged = good.document.clone();
        forged.pcrs.insert(2, Pcr::of(b"evil"));
        let cose = cose_sign1(&good.cose.protected, &forged.to_cbor(), &good.cose.signature);
        let r = run(&cose, &p);
        failed(&r, "signature");
        assert!(failed(&r, "PCR2").contains("attested"));
        // Another algorithm in the protected header.
        let es256 = [0xa1, 0x01, 0x26];
        let cose = cose_sign1(&es256, &good.cose.payload, &good.cose.signature);
        assert!(failed(&run(&cose, &p), "signature").contains("algorithm -7"));
    }

    #[test]
    fn nonce_and_pcrs_are_compared() {
        let doc = made_up(&["root", "inter"], "leaf");
        let bytes = sign(&doc, &key("leaf"));
        let p = Policy { nonce: Some(vec![0xab; 19]), ..policy(&doc) };
        assert!(failed(&run(&bytes, &p), "nonce").contains("the document's nonce is abab"));
        let mut none = doc.clone();
        none.nonce = None;
        let d = failed(&run(&sign(&none, &key("leaf")), &policy(&doc)), "nonce");
        assert!(d.contains("has no nonce"), "{d}");
        // No --nonce: skipped, with a note.
        let r = run(&bytes, &Policy { nonce: None, ..policy(&doc) });
        assert_eq!(r.verdict, Verdict::Good);
        assert!(r.notes.iter().any(|n| n.contains("20-byte nonce that was not checked")), "{r:#?}");
        // PCR8 expected but the enclave is not signed; PCR8 attested but not expected.
        let mut want = measurements(&doc.pcrs);
        want.pcr8 = Some(Pcr::of(b"cert"));
        let d = failed(&run(&bytes, &Policy { expected: want.clone(), ..policy(&doc) }), "PCR8");
        assert!(d.contains("attested 000000"), "{d}");
        let mut signed_image = doc.clone();
        signed_image.pcrs.insert(8, Pcr::of(b"cert"));
        let bytes = sign(&signed_image, &key("leaf"));
        assert_eq!(run(&bytes, &Policy { expected: want, ..policy(&doc) }).verdict, Verdict::Good);
        let r = run(&bytes, &policy(&doc));
        assert_eq!(r.verdict, Verdict::Good);
        assert!(r.notes.iter().any(|n| n.contains("the enclave's image is signed (PCR8")), "{r:#?}");
        // A debug enclave: PCR0/1/2 all zeros.
        let mut debug = doc.clone();
        for n in 0..3 {
            debug.pcrs.insert(n, Pcr([0; 48]));
        }
        let d = failed(&run(&sign(&debug, &key("leaf")), &policy(&doc)), "PCR0");
        assert!(d.contains("debug mode"), "{d}");
    }

    /// The shape QEMU's virtio-nsm writes: alg -1, 64 zero bytes for the
    /// signature, the certificate and the one cabundle entry; absent fields null.
    fn qemu_shaped(doc: &Document) -> Vec<u8> {
        let mut d = doc.clone();
        d.certificate = vec![0; 64];
        d.cabundle = vec![vec![0; 64]];
        d.public_key = None;
        cose_sign1(&[0xa1, 0x01, 0x20], &d.to_cbor(), &[0; 64])
    }

    #[test]
    fn unsigned_documents_need_the_insecure_flag_and_are_never_good() {
        let doc = made_up(&["root", "inter"], "leaf");
        let bytes = qemu_shaped(&doc);
        let parsed = parse(&bytes).unwrap();
        assert!(parsed.is_unsigned());
        assert_eq!(parsed.document.public_key, None);
        let r = run(&bytes, &policy(&doc));
        assert!(failed(&r, "signature").contains("pass --insecure-unsigned"));
        assert!(!r.signed);
        let allow = Policy { allow_unsigned: true, ..policy(&doc) };
        let r = run(&bytes, &allow);
        assert_eq!(r.verdict, Verdict::Unauthenticated, "{r:#?}");
        assert!(r.checks[..2]
            .iter()
            .all(|c| c.status == Status::Skipped && c.detail.contains("NOT AUTHENTICATED")));
        // Allowed, but the PCRs differ: BAD.
        let mut other = allow.clone();
        other.expected.pcr1 = Pcr::of(b"other");
        failed(&run(&bytes, &other), "PCR1");
        // A zero signature under a real ES384 header is unsigned too.
        let d = parse(&bytes).unwrap();
        assert!(parse(&cose_sign1(&PROTECTED_ES384, &d.cose.payload, &[0; 96])).unwrap().is_unsigned());
    }

    fn parse_err(doc: &Document, edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> String {
        let Value::Map(mut m) = ciborium::from_reader::<Value, _>(&doc.to_cbor()[..]).unwrap() else {
            panic!()
        };
        edit(&mut m);
        let mut payload = Vec::new();
        ciborium::into_writer(&Value::Map(m), &mut payload).unwrap();
        format!("{:#}", parse(&cose_sign1(&PROTECTED_ES384, &payload, &[1; 96])).unwrap_err())
    }

    #[test]
    fn malformed_payloads_are_unreadable_naming_the_field() {
        let doc = made_up(&["root", "inter"], "leaf");
        fn t(s: &str) -> Value {
            Value::Text(s.into())
        }
        type Edit = Box<dyn FnOnce(&mut Vec<(Value, Value)>)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|m| m.push((t("nonce"), Value::Null))), "field \"nonce\" appears twice"),
            (Box::new(|m| m.push((t("extra"), Value::Null))), "unknown field \"extra\""),
            (Box::new(|m| drop(m.remove(3))), "field \"pcrs\" is missing"),
            (Box::new(|m| m[1].1 = t("SHA256")), "\"digest\" is \"SHA256\""),
            (Box::new(|m| m[2].1 = Value::Integer((-5).into())), "\"timestamp\" is not a positive integer"),
            (Box::new(|m| m[4].1 = t("pem")), "\"certificate\" is not a byte string"),
            (Box::new(|m| m[8].1 = Value::Integer(1.into())), "\"nonce\" is neither bytes nor null"),
            (Box::new(|m| m[3].1 = Value::Map(vec![])), "\"pcrs\" has 0 entries"),
            (
                Box::new(|m| {
                    m[3].1 = Value::Map(vec![(Value::Integer(0.into()), Value::Bytes(vec![0; 32]))])
                }),
                "PCR0 is 32 bytes",
            ),
            (
                Box::new(|m| {
                    m[3].1 = Value::Map(vec![(Value::Integer(40.into()), Value::Bytes(vec![0; 48]))])
                }),
                "not a PCR index",
            ),
            (Box::new(|m| m[0].0 = Value::Integer(1.into())), "a key is not a text string"),
        ];
        for (edit, want) in cases {
            let e = parse_err(&doc, edit);
            assert!(
                e.contains("the attestation document's payload") && e.contains(want),
                "expected {want:?} in {e:?}"
            );
        }
        let good = sign(&doc, &key("leaf"));
        for n in [1, 10, good.len() / 2, good.len() - 1] {
            assert!(parse(&good[..n]).is_err(), "truncated to {n} bytes");
        }
        let e = format!("{:#}", parse(&[good.as_slice(), &[0]].concat()).unwrap_err());
        assert!(e.contains("unexpected byte"), "{e}");
    }

    #[test]
    fn damaged_documents_never_panic_and_never_pass() {
        // Every 37th byte of a signed document changed: each result is an error
        // or BAD (the payload is signed, the header too), never a panic or GOOD.
        let doc = made_up(&["root", "inter"], "leaf");
        let good = sign(&doc, &key("leaf"));
        let p = policy(&doc);
        for i in (0..good.len()).step_by(37) {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            if let Ok(parsed) = parse(&bad) {
                let r = verify(&parsed, &p);
                assert_eq!(r.verdict, Verdict::Bad, "byte {i} changed: {r:#?}");
            }
        }
    }

    #[test]
    fn files_may_be_binary_base64_or_hex() {
        let bin = sign(&made_up(&["root", "inter"], "leaf"), &key("leaf"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bin);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bin);
        let wrapped: String =
            b64.as_bytes().chunks(76).map(|c| format!("{}\n", std::str::from_utf8(c).unwrap())).collect();
        for text in [b64.as_bytes(), url.as_bytes(), wrapped.as_bytes(), hex::encode(&bin).as_bytes()] {
            assert_eq!(decode_text(text).unwrap(), bin);
        }
        assert_eq!(decode_text(&bin).unwrap(), bin);
        // Text that is both hex and base64 ("84aabbcc" is f3 86 9a 6d b7 1c in
        // base64): the decoding that gives a COSE_Sign1 wins.
        assert_eq!(decode_text(b"84aabbcc").unwrap(), [0x84, 0xaa, 0xbb, 0xcc]);
        assert_eq!(decode_text(b"hEShATgi").unwrap(), [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22]);
        assert!(decode_text(b"  \n").unwrap_err().to_string().contains("empty"));
        assert!(decode_text(b"not a document!").unwrap_err().to_string().contains("neither binary CBOR"));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'A'; DOCUMENT_FILE_LIMIT as usize + 1]).unwrap();
        assert!(format!("{:#}", read_file(&big).unwrap_err()).contains("DOCUMENT_FILE_LIMIT"));
    }
}
