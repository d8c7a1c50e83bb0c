//! `eifbake attestation verify` end to end, on a real AWS Nitro attestation
//! document (tests/data/attestation, published in blocky/nitrite) and on
//! documents the tests build: GOOD at the document's time, and each attack
//! tried for real: PCRs that differ from the build, a PCR or the signature
//! changed in the document, an intermediate cut from the chain, a chain under
//! another root, a wrong nonce, an expired chain, truncated and garbage
//! files (exit 2), a debug enclave, and QEMU's unsigned documents (refused
//! unless --insecure-unsigned, and then never GOOD).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use eifbake::attestation::{self, Document};
use eifbake::eif::signature::{cose_sign1, sig_structure, PROTECTED_ES384};
use eifbake::pcr::Pcr;
use p384::ecdsa::signature::Signer as _;
use p384::pkcs8::DecodePrivateKey as _;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/attestation").join(name)
}

const REAL: &str = "nitro-2024-09-07.b64";
/// The real document's timestamp (14:37:39.545Z), to the second.
const REAL_AT: &str = "2024-09-07T14:37:39Z";

fn nonce_hex() -> String {
    "01".repeat(1024)
}

fn real_bytes() -> Vec<u8> {
    attestation::read_file(&data(REAL)).unwrap()
}

/// `eifbake attestation verify DOC ARGS…`.
fn verify(doc: &Path, args: &[&str]) -> Output {
    let out =
        common::bin::eifbake_cmd().args(["attestation", "verify"]).arg(doc).args(args).output().unwrap();
    eprintln!(
        "--- verify {}: {:?}\n{}{}",
        doc.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The line of check `what` in the text output.
fn line<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(what))
        .unwrap_or_else(|| panic!("no {what} in {text}"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The real document's payload changed by `edit`, with its original
/// protected header and signature.
fn tampered(edit: impl FnOnce(&mut Document)) -> Vec<u8> {
    let d = attestation::parse(&real_bytes()).unwrap();
    let mut doc = d.document.clone();
    edit(&mut doc);
    cose_sign1(&d.cose.protected, &doc.to_cbor(), &d.cose.signature)
}

fn real_pcrs() -> String {
    data("nitro-2024-09-07.pcrs").to_str().unwrap().to_string()
}

#[test]
fn the_real_document_is_good_at_its_time() {
    let pcrs = real_pcrs();
    let n = nonce_hex();
    let out = verify(&data(REAL), &["--pcrs", &pcrs, "--at", REAL_AT, "--nonce", &n]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("GOOD "), "{text}");
    for what in ["chain", "signature", "nonce", "PCR0", "PCR1", "PCR2"] {
        assert!(line(&text, what).contains(" ok "), "{what}: {text}");
    }
    assert!(line(&text, "chain").contains("641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"));

    // The same from binary CBOR and from hex, against a manifest, as JSON.
    let dir = tempfile::tempdir().unwrap();
    let bin = write(dir.path(), "doc.cbor", &real_bytes());
    let hex_doc = write(dir.path(), "doc.hex", hex::encode(real_bytes()).as_bytes());
    let mut m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest.json")).unwrap(),
    )
    .unwrap();
    let want = eifbake::pcr::Measurements::parse_pcrs_file(&std::fs::read_to_string(&pcrs).unwrap()).unwrap();
    m["outputs"]["pcrs"] = serde_json::to_value(&want).unwrap();
    let manifest = write(dir.path(), "app.manifest.json", &serde_json::to_vec(&m).unwrap());
    for doc in [&bin, &hex_doc] {
        let out = verify(doc, &["--manifest", manifest.to_str().unwrap(), "--at", REAL_AT, "--json"]);
        assert_eq!(out.status.code(), Some(0));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["verdict"], "GOOD");
        assert_eq!(j["module_id"], "i-0a22e5c5f24d22174-enc0191cceb4289903f");
        assert_eq!(j["time"], "2024-09-07T14:37:39.545Z");
        assert_eq!(j["signed"], true);
        assert_eq!(j["pcrs"]["PCR0"], want.pcr0.hex());
        assert_eq!(j["nonce"], nonce_hex());
        assert_eq!(j["checks"][2]["status"], "skipped", "no --nonce: {j}");
    }
}

#[test]
fn the_real_document_has_expired_now() {
    let out = verify(&data(REAL), &["--pcrs", &real_pcrs()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("BAD "), "{text}");
    assert!(
        line(&text, "chain").contains("FAILED") && line(&text, "chain").contains("expired before"),
        "{text}"
    );
    assert!(text.contains(&format!("pass --at {REAL_AT}")), "{text}");
}

#[test]
fn pcrs_that_differ_from_the_build_are_bad() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(real_pcrs()).unwrap();
    let other = Pcr::of(b"another build");
    let changed = text.replace(
        "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c",
        &other.hex(),
    );
    assert_ne!(changed, text);
    let pcrs = write(dir.path(), "other.pcrs", changed.as_bytes());
    let out = verify(&data(REAL), &["--pcrs", pcrs.to_str().unwrap(), "--at", REAL_AT]);
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    assert!(line(&t, "chain").contains(" ok ") && line(&t, "signature").contains(" ok "), "{t}");
    assert!(
        line(&t, "PCR2").contains("FAILED") && line(&t, "PCR2").contains(&format!("expected {other}")),
        "{t}"
    );
    // Expecting PCR8 from an unsigned enclave image.
    let with8 = write(dir.path(), "with8.pcrs", format!("{text}{} PCR8\n", Pcr::of(b"cert")).as_bytes());
    let out = verify(&data(REAL), &["--pcrs", with8.to_str().unwrap(), "--at", REAL_AT]);
    assert_eq!(out.status.code(), Some(1));
    assert!(line(&stdout(&out), "PCR8").contains("FAILED"));
}

#[test]
fn a_changed_pcr_or_signature_in_the_document_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let pcrs = real_pcrs();
    // The attacker's PCR0 in the document, and a .pcrs file that agrees with it.
    let evil = Pcr::of(b"evil image");
    let doc = write(
        dir.path(),
        "pcr.cbor",
        &tampered(|d| {
            d.pcrs.insert(0, evil);
        }),
    );
    let text = std::fs::read_to_string(&pcrs)
        .unwrap()
        .replace(&attestation::parse(&real_bytes()).unwrap().document.pcrs[&0].hex(), &evil.hex());
    let agreeing = write(dir.path(), "evil.pcrs", text.as_bytes());
    let out = verify(&doc, &["--pcrs", agreeing.to_str().unwrap(), "--at", REAL_AT]);
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    assert!(line(&t, "signature").contains("FAILED") && line(&t, "PCR0").contains(" ok "), "{t}");

    // One bit of the signature flipped.
    let mut bytes = real_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let doc = write(dir.path(), "sig.cbor", &bytes);
    let out = verify(&doc, &["--pcrs", &pcrs, "--at", REAL_AT]);
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    assert!(line(&t, "signature").contains("does not verify") && line(&t, "chain").contains(" ok "), "{t}");
}

#[test]
fn a_cut_chain_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in [(1, "cut1.cbor"), (2, "cut2.cbor"), (3, "cut3.cbor")] {
        let doc = write(dir.path(), name, &tampered(|d| drop(d.cabundle.remove(i))));
        let out = verify(&doc, &["--pcrs", &real_pcrs(), "--at", REAL_AT]);
        assert_eq!(out.status.code(), Some(1), "cabundle[{i}] removed");
        let t = stdout(&out);
        assert!(line(&t, "chain").contains("FAILED") && line(&t, "chain").contains("names issuer"), "{t}");
    }
    // The root removed: the chain starts with an intermediate.
    let doc = write(dir.path(), "noroot.cbor", &tampered(|d| drop(d.cabundle.remove(0))));
    let t = stdout(&verify(&doc, &["--pcrs", &real_pcrs(), "--at", REAL_AT]));
    assert!(line(&t, "chain").contains("is not the AWS Nitro Enclaves Root G1"), "{t}");
}

/// A document the tests sign under their made-up root (tests/data/attestation/chain).
fn made_up_document(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = |n: &str| {
        eifbake::signing::Certificate::from_pem_file(&data(&format!("chain/{n}.pem"))).unwrap().der().to_vec()
    };
    let mut doc = attestation::parse(&real_bytes()).unwrap().document;
    doc.certificate = cert("leaf");
    doc.cabundle = vec![cert("root"), cert("inter")];
    doc.timestamp = 1_767_225_600_000;
    let key =
        p384::ecdsa::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(data("chain/leaf.key")).unwrap())
            .unwrap();
    let payload = doc.to_cbor();
    let sig: p384::ecdsa::Signature = key.sign(&sig_structure(&PROTECTED_ES384, &payload));
    let bytes = cose_sign1(&PROTECTED_ES384, &payload, &sig.to_bytes());
    // Sanity: it parses back to what was built.
    assert_eq!(attestation::parse(&bytes).unwrap().document, doc);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    (write(dir, "made-up.b64", b64.as_bytes()), data("nitro-2024-09-07.pcrs"))
}

#[test]
fn a_chain_under_another_root_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (doc, pcrs) = made_up_document(dir.path());
    let out = verify(&doc, &["--pcrs", pcrs.to_str().unwrap(), "--at", "2026-06-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    let chain = line(&t, "chain");
    assert!(chain.contains("is not the AWS Nitro Enclaves Root G1"), "{t}");
    // Its signature is valid (by its own leaf), its PCRs are the real ones: only the root is wrong.
    assert!(line(&t, "signature").contains(" ok ") && line(&t, "PCR0").contains(" ok "), "{t}");
}

#[test]
fn a_wrong_nonce_is_bad() {
    let out = verify(&data(REAL), &["--pcrs", &real_pcrs(), "--at", REAL_AT, "--nonce", &"01".repeat(1023)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(line(&stdout(&out), "nonce").contains("FAILED"));
    let out = verify(&data(REAL), &["--pcrs", &real_pcrs(), "--at", REAL_AT, "--nonce", "not hex"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nonce \"not hex\": not hex"));
}

#[test]
fn a_debug_enclave_is_bad() {
    let out = verify(
        &data("nitro-debug-2024-09-07.b64"),
        &["--pcrs", &real_pcrs(), "--at", "2024-09-07T14:38:06Z"],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    assert!(line(&t, "signature").contains(" ok "), "{t}");
    assert!(line(&t, "PCR0").contains("debug mode"), "{t}");
}

#[test]
fn unreadable_documents_and_inputs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = real_bytes();
    let b64 = std::fs::read(data(REAL)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.cbor", bytes[..bytes.len() / 2].to_vec(), "not an attestation document"),
        ("truncated.b64", b64[..b64.len() - 40].to_vec(), "not an attestation document"),
        ("garbage.bin", (0..2000u32).map(|i| (i * 7 + 3) as u8).collect(), "neither binary CBOR"),
        ("empty", Vec::new(), "the file is empty"),
        ("text.txt", b"hello, enclave\n".to_vec(), "neither binary CBOR"),
        (
            "eif-signature.cbor",
            cose_sign1(&PROTECTED_ES384, b"\xa0", &[1; 96]),
            "field \"module_id\" is missing",
        ),
    ];
    for (name, content, want) in cases {
        let doc = write(dir.path(), name, &content);
        let out = verify(&doc, &["--pcrs", &real_pcrs(), "--at", REAL_AT]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name) && err.contains(want), "{name}: expected {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{name}: no verdict for an unreadable document");
    }
    let missing = dir.path().join("missing.cbor");
    assert_eq!(verify(&missing, &["--pcrs", &real_pcrs()]).status.code(), Some(2));
    // Neither --manifest nor --pcrs; a bad --at; an unreadable .pcrs file.
    assert_eq!(verify(&data(REAL), &[]).status.code(), Some(2));
    let out = verify(&data(REAL), &["--pcrs", &real_pcrs(), "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    let bad = write(dir.path(), "bad.pcrs", b"abc PCR0\n");
    let out = verify(&data(REAL), &["--pcrs", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.pcrs"));
}

/// QEMU's virtio-nsm shape (hw/virtio/virtio-nsm.c): protected header
/// {1: -1}, payload with 64 zero bytes as certificate and as the one cabundle
/// entry, null for absent fields, and 64 zero bytes as the signature.
fn qemu_document(pcr0: Pcr) -> Vec<u8> {
    let mut doc = attestation::parse(&real_bytes()).unwrap().document;
    doc.pcrs.insert(0, pcr0);
    doc.certificate = vec![0; 64];
    doc.cabundle = vec![vec![0; 64]];
    doc.public_key = None;
    doc.user_data = None;
    cose_sign1(&[0xa1, 0x01, 0x20], &doc.to_cbor(), &[0; 64])
}

#[test]
fn unsigned_documents_need_the_insecure_flag_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let real = attestation::parse(&real_bytes()).unwrap().document;
    let doc = write(dir.path(), "qemu.cbor", &qemu_document(real.pcrs[&0]));
    let n = nonce_hex();
    let out = verify(&doc, &["--pcrs", &real_pcrs(), "--nonce", &n]);
    assert_eq!(out.status.code(), Some(1));
    let t = stdout(&out);
    assert!(t.starts_with("BAD ") && line(&t, "chain").contains("not signed"), "{t}");
    assert!(line(&t, "signature").contains("pass --insecure-unsigned"), "{t}");

    let out = verify(&doc, &["--pcrs", &real_pcrs(), "--nonce", &n, "--insecure-unsigned"]);
    assert_eq!(out.status.code(), Some(0));
    let t = stdout(&out);
    assert!(t.starts_with("UNAUTHENTICATED (unsigned document: NOTHING WAS AUTHENTICATED)"), "{t}");
    assert!(!t.contains("GOOD"), "{t}");
    assert!(line(&t, "chain").contains("skipped") && line(&t, "nonce").contains(" ok "), "{t}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARNING") && err.contains("NOT SIGNED: nothing in it was authenticated"), "{err}");
    let out = verify(&doc, &["--pcrs", &real_pcrs(), "--insecure-unsigned", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((j["verdict"].as_str(), j["signed"].as_bool()), (Some("UNAUTHENTICATED"), Some(false)));
    assert_eq!(j["user_data"], serde_json::Value::Null);

    // The flag never turns different PCRs into a pass.
    let other = write(dir.path(), "other.cbor", &qemu_document(Pcr::of(b"other")));
    let out = verify(&other, &["--pcrs", &real_pcrs(), "--insecure-unsigned"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(line(&stdout(&out), "PCR0").contains("FAILED"));
    // Nor does it weaken a signed document's checks.
    let out = verify(&data(REAL), &["--pcrs", &real_pcrs(), "--insecure-unsigned"]);
    assert_eq!(out.status.code(), Some(1), "expired chain, flag or not");
}
