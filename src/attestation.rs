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

/// Binary CBOR as is; otherwise base64 or hex text.
fn decode_text(bytes: &[u8]) -> Result<Vec<u8>> {
    // A COSE_Sign1 starts with an array of 4 (0x84) or tag 18 (0xd2).
    if matches!(bytes.first(), Some(0x84 | 0xd2)) {
        return Ok(bytes.to_vec());
    }
    let text: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if text.is_empty() {
        bail!("the file is empty; expected a COSE_Sign1 (binary CBOR, base64 or hex)");
    }
    if text.iter().all(u8::is_ascii_hexdigit) && text.len() % 2 == 0 {
        if let Ok(b) = hex::decode(&text) {
            return Ok(b);
        }
    }
    let engines = [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE];
    for e in engines {
        if let Ok(b) = e.decode(&text) {
            return Ok(b);
        }
    }
    let nopad = text.strip_suffix(b"==").or(text.strip_suffix(b"=")).unwrap_or(&text);
    for e in
        [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        if let Ok(b) = e.decode(nopad) {
            return Ok(b);
        }
    }
    bail!("not a COSE_Sign1: neither binary CBOR (0x84 or 0xd2 first) nor base64 nor hex text")
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
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    if signed {
        let leaf = match check_chain(d, &policy.anchor, policy.at) {
            Ok((key, detail)) => {
                checks.push(check("chain", Status::Ok, detail));
                Some(key)
            }
            Err(e) => {
                checks.push(check("chain", Status::Failed, format!("{e:#}")));
                leaf_key(&d.certificate).ok()
            }
        };
        checks.push(match check_signature(doc, leaf.as_ref()) {
            Ok(detail) => check("signature", Status::Ok, detail),
            Err(e) => check("signature", Status::Failed, format!("{e:#}")),
        });
        if checks[0].status == Status::Failed && checks[0].detail.contains(" expired ") {
            notes.push(format!(
                "the document says it was made at {}; to check it as of then, pass --at {}",
                d.time(),
                Epoch(d.timestamp / 1000).rfc3339()
            ));
        }
    } else {
        let why = format!(
            "the document is not signed (its signature is {} zero byte(s), the shape QEMU's nitro-enclave machine \
             writes)",
            doc.cose.signature.len()
        );
        let status = if policy.allow_unsigned { Status::Skipped } else { Status::Failed };
        let detail = if policy.allow_unsigned {
            format!("{why}; NOT AUTHENTICATED (--insecure-unsigned)")
        } else {
            format!("{why}; pass --insecure-unsigned to compare its PCRs anyway, knowing nothing is authenticated")
        };
        checks.push(check("chain", status, detail.clone()));
        checks.push(check("signature", status, detail));
    }
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
    let key = issuer_key(issuer.der).with_context(|| format!("its issuer {}", issuer.name))?;
    let sig = l.cert.signature.as_bytes().context("its signature is not a whole number of bytes")?;
    let sig = Signature::from_der(sig)
        .map_err(|_| anyhow::anyhow!("its signature is not a valid ECDSA P-384 value"))?;
    key.verify(tbs_bytes(l.der)?, &sig)
        .map_err(|_| anyhow::anyhow!("its signature does not verify with the key of {}", issuer.name))?;
    critical_extensions_known(l)
}

fn issuer_key(der: &[u8]) -> Result<VerifyingKey> {
    crate::signing::Certificate::from_der(der.to_vec())?.p384_key()
}

fn leaf_key(der: &[u8]) -> Result<VerifyingKey> {
    issuer_key(der)
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
    leaf_key(l.der)
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
