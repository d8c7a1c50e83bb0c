//! Key custody: detached signing (`sign-payload`, an external ES384 signer,
//! `attach-signature`), signing with a key on a PKCS#11 token (SoftHSM2),
//! and failing closed: every signing problem exits 2 and leaves no EIF (and
//! no temporary file) at the output path. AWS's reader is the oracle for the
//! signed files.

mod common;
mod eif_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use common::softhsm::{self, SoftHsm};
use eif_common::*;
use eifbake::eif::signature::{self, CoseSign1};
use eifbake::eif::Eif;
use eifbake::pcr::Pcr;
use eifbake::signing::Certificate;

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `eifbake eif` over the standard inputs in `dir` (written if missing), writing `out`.
fn eif_cmd(dir: &Path, out: &str, extra: &[&str], env: &[(&str, PathBuf)]) -> Output {
    if !dir.join("bzImage").exists() {
        write_inputs(dir, b"hello\n", 0o100644);
    }
    let mut c = eifbake();
    c.args(build_args(dir, out)).args(extra).env("SOURCE_DATE_EPOCH", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}{}", o.status.code(), text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// Exit 2 with `want` in the message, and nothing at `out` nor any temporary file beside it.
fn refused(o: &Output, want: &str, out: &Path) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected exit 2 ({want})\n{}{err}", text(&o.stdout));
    assert!(err.contains(want), "expected {want:?} in:\n{err}");
    assert!(!out.exists(), "a refused signing left {}", out.display());
    let leftovers: Vec<String> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    err
}

/// What AWS's reader says of a signed EIF: its PCRs and whether the signature signs its PCR0.
fn aws_accepts(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut r = EifReader::from_eif(path.display().to_string()).expect("AWS EifReader accepts the file");
    assert!(r.check_crc(), "AWS computes another CRC");
    let m = r.get_measurements().unwrap();
    r.get_certificate_info(m.clone()).expect("AWS reads the certificate and checks the COSE signature");
    assert_eq!(r.sign_check, Some(true), "AWS's reader: the signature does not sign this image's PCR0");
    m
}

fn pcr8_of(cert: &Path) -> String {
    Certificate::from_pem_file(cert).unwrap().pcr8().hex()
}

/// The raw r ‖ s of a signed EIF's COSE_Sign1.
fn raw_signature(eif: &Path) -> Vec<u8> {
    let section = Eif::open(eif).unwrap().signature_section().unwrap().unwrap();
    CoseSign1::parse(&signature::decode(&section).unwrap().cose).unwrap().signature
}

/// `openssl dgst -sha384 -sign KEY` of `payload`: a DER ECDSA signature.
fn openssl_sign(key_pem: &Path, payload: &Path, out: &Path) {
    let o = Command::new("openssl")
        .args(["dgst", "-sha384", "-sign", s(key_pem), "-out", s(out), s(payload)])
        .output()
        .expect("openssl CLI");
    assert!(o.status.success(), "{}", text(&o.stderr));
}

fn attach(eif: &Path, cert: &Path, sig: &Path, out: Option<&Path>, extra: &[&str]) -> Output {
    let mut c = eifbake();
    c.args(["attach-signature", s(eif), "--certificate", s(cert), "--signature", s(sig)]).args(extra);
    if let Some(o) = out {
        c.args(["--out", s(o)]);
    }
    run(&mut c)
}

fn sign_args(cert: &Path, key: &str) -> Vec<String> {
    vec!["--signing-certificate".into(), s(cert).into(), "--private-key".into(), key.into()]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// sign-payload prints the Sig_structure over PCR0; openssl signs it; the
/// attached EIF is accepted by AWS's reader; the signature taken from an
/// in-place signed EIF, attached to the unsigned one, gives that EIF back
/// byte for byte (raw and DER forms alike).
#[test]
fn detached_signing_round_trip_equals_in_place_signing() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    ok(&eif_cmd(d, "unsigned.eif", &[], &[]));
    let (cert, k) = (key("signer1.pem"), key("signer1.key"));
    ok(&eif_cmd(d, "signed.eif", &strs(&sign_args(&cert, s(&k))), &[]));
    let (unsigned, signed) = (d.join("unsigned.eif"), d.join("signed.eif"));

    // The payload: stdout and --out agree, and are the Sig_structure over this PCR0.
    let o = run(eifbake().args(["sign-payload", s(&unsigned)]));
    ok(&o);
    let payload = d.join("payload.bin");
    ok(&run(eifbake().args(["sign-payload", s(&unsigned), "--out", s(&payload)])));
    assert_eq!(fs::read(&payload).unwrap(), o.stdout);
    let pcr0 = Eif::open(&unsigned)
        .unwrap()
        .verify(&eifbake::progress::Progress::hidden())
        .unwrap()
        .measurements
        .pcr0;
    assert_eq!(o.stdout, signature::to_be_signed(&pcr0));
    assert_eq!(&o.stdout[..12], b"\x84\x6aSignature1", "a COSE Sig_structure");
    // The signed image has the same PCR0, so the same payload.
    assert_eq!(run(eifbake().args(["sign-payload", s(&signed)])).stdout, o.stdout);

    // openssl signs (DER, random nonce); attached, AWS's reader accepts it.
    let der = d.join("sig.der");
    openssl_sign(&k, &payload, &der);
    assert_eq!(fs::read(&der).unwrap()[0], 0x30, "openssl writes a DER SEQUENCE");
    let out = d.join("attached.eif");
    let stdout = ok(&attach(&unsigned, &cert, &der, Some(&out), &[]));
    let aws = aws_accepts(&out);
    assert_eq!(aws["PCR8"], pcr8_of(&cert));
    assert_eq!(aws["PCR0"], pcr0.hex());
    assert!(stdout.contains(&format!("{} PCR8", pcr8_of(&cert))), "{stdout}");
    let (a, b) = (fs::read(&out).unwrap(), fs::read(&signed).unwrap());
    assert_ne!(a, b, "openssl's nonce is random");

    // The in-place signature, raw r‖s: the same file, byte for byte.
    let raw = d.join("sig.raw");
    fs::write(&raw, raw_signature(&signed)).unwrap();
    let again = d.join("again.eif");
    ok(&attach(&unsigned, &cert, &raw, Some(&again), &[]));
    assert!(
        fs::read(&again).unwrap() == b,
        "attaching the in-place signature does not give the signed EIF back"
    );
    // The same signature in DER form: the same file too.
    let sig = p384::ecdsa::Signature::from_slice(&raw_signature(&signed)).unwrap();
    let der2 = d.join("sig2.der");
    fs::write(&der2, sig.to_der().as_bytes()).unwrap();
    let copy = d.join("copy.eif");
    fs::copy(&unsigned, &copy).unwrap();
    ok(&attach(&copy, &cert, &der2, None, &[])); // in place
    assert!(fs::read(&copy).unwrap() == b, "DER form, in place: not the signed EIF");
}

/// attach-signature refuses, exit 2, nothing written: a signature over
/// another EIF's PCR0, by another key, garbled or truncated, an expired
/// certificate, an image signed already, an unreadable signature file.
#[test]
fn attach_signature_fails_closed() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    ok(&eif_cmd(d, "unsigned.eif", &[], &[]));
    let unsigned = d.join("unsigned.eif");
    let before = fs::read(&unsigned).unwrap();
    let (cert, k) = (key("signer1.pem"), key("signer1.key"));
    let payload = d.join("payload.bin");
    ok(&run(eifbake().args(["sign-payload", s(&unsigned), "--out", s(&payload)])));
    let good = d.join("good.der");
    openssl_sign(&k, &payload, &good);

    // Another image (another user file): its payload's signature does not sign this one.
    let other_dir = d.join("other");
    fs::create_dir(&other_dir).unwrap();
    write_inputs(&other_dir, b"other\n", 0o100644);
    ok(&eif_cmd(&other_dir, "other.eif", &[], &[]));
    let other_payload = d.join("other-payload.bin");
    ok(&run(eifbake().args(["sign-payload", s(&other_dir.join("other.eif")), "--out", s(&other_payload)])));
    let other_sig = d.join("other.der");
    openssl_sign(&k, &other_payload, &other_sig);

    let wrong_key = d.join("signer2.der");
    openssl_sign(&key("signer2.key"), &payload, &wrong_key);
    let mut flipped = raw_from_der(&good);
    flipped[50] ^= 1;
    let flipped_path = d.join("flipped.raw");
    fs::write(&flipped_path, flipped).unwrap();
    let truncated = d.join("truncated.der");
    fs::write(&truncated, &fs::read(&good).unwrap()[..40]).unwrap();
    let b64 = d.join("sig.b64");
    fs::write(&b64, base64_of(&fs::read(&good).unwrap())).unwrap();

    let out = d.join("out.eif");
    let (signer2, rsa) = (key("signer2.pem"), key("rsa.pem"));
    let cases: Vec<(&Path, &Path, &str)> = vec![
        (&cert, &other_sig, "does not verify over this EIF's PCR0"),
        (&cert, &wrong_key, "does not verify over this EIF's PCR0"),
        (&cert, &flipped_path, "(read as raw r‖s) does not verify"),
        (&cert, &truncated, "neither a DER ECDSA signature"),
        (&cert, &b64, "neither a DER ECDSA signature"),
        (&cert, Path::new("/nonexistent/sig.der"), "cannot read signature /nonexistent/sig.der"),
        (Path::new("/nonexistent/cert.pem"), &good, "cannot read signing certificate /nonexistent/cert.pem"),
        (&signer2, &good, "does not verify over this EIF's PCR0"),
        (&rsa, &good, "its public key is RSA"),
    ];
    for (c, sig, want) in &cases {
        refused(&attach(&unsigned, c, sig, Some(&out), &[]), want, &out);
        // In place: refused the same, the input left as it was.
        let o = attach(&unsigned, c, sig, None, &[]);
        assert_eq!(o.status.code(), Some(2), "{want}: {}", text(&o.stderr));
        assert!(
            fs::read(&unsigned).unwrap() == before,
            "{want}: a refused in-place attach changed the input"
        );
    }

    // An expired certificate is refused as in in-place signing, unless told to ignore validity.
    let exp_sig = d.join("expired.der");
    openssl_sign(&key("expired.key"), &payload, &exp_sig);
    refused(&attach(&unsigned, &key("expired.pem"), &exp_sig, Some(&out), &[]), "it expired on", &out);
    ok(&attach(&unsigned, &key("expired.pem"), &exp_sig, Some(&out), &["--ignore-certificate-validity"]));
    aws_accepts(&out);

    // A signed image is not signed again.
    let out2 = d.join("out2.eif");
    refused(&attach(&out, &cert, &good, Some(&out2), &[]), "is signed already", &out2);
    // A corrupt image is not signed.
    let mut bad = before.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let corrupt = d.join("corrupt.eif");
    fs::write(&corrupt, bad).unwrap();
    refused(&attach(&corrupt, &cert, &good, Some(&out2), &[]), "CRC-32 mismatch", &out2);
}

fn raw_from_der(p: &Path) -> Vec<u8> {
    p384::ecdsa::Signature::from_der(&fs::read(p).unwrap()).unwrap().to_bytes().to_vec()
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `eif --private-key`: an unreadable key, a key that is not the
/// certificate's, an expired certificate, an unreachable token (no module,
/// no such token, wrong PIN, no such key, the token's key under another
/// certificate): exit 2 and no EIF, nor a temporary file.
#[test]
fn eif_signing_fails_closed() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let hsm = SoftHsm::new();
    let out = d.join("out.eif");
    let signer1 = key("signer1.pem");
    let token_cert = hsm.certificate.clone();
    let uri = |q: &str| format!("pkcs11:token={};object={}{q}", softhsm::TOKEN, softhsm::KEY);
    let cases: Vec<(PathBuf, String, Vec<&str>, &str)> = vec![
        (signer1.clone(), s(&key("missing.key")).into(), vec![], "cannot read private key"),
        (signer1.clone(), s(d).into(), vec![], "cannot read private key"),
        (
            signer1.clone(),
            s(&key("signer2.key")).into(),
            vec![],
            "does not belong to the signing certificate",
        ),
        (key("expired.pem"), s(&key("expired.key")).into(), vec![], "it expired on"),
        (
            token_cert.clone(),
            uri("?pin-value=1234"),
            vec!["--pkcs11-module", "/nonexistent/p11.so"],
            "does not exist",
        ),
        (
            token_cert.clone(),
            "pkcs11:token=nosuch;object=k?pin-value=1234".into(),
            vec![],
            "no token matches",
        ),
        (token_cert.clone(), uri("?pin-value=9999"), vec![], "cannot log in to the token"),
        (token_cert.clone(), uri(""), vec![], "no private key with this object/id"),
        (
            token_cert.clone(),
            "pkcs11:token=eifbake-test;object=nokey?pin-value=1234".into(),
            vec![],
            "no private key",
        ),
        (signer1.clone(), uri("?pin-value=1234"), vec![], "does not belong to the signing certificate"),
        (token_cert.clone(), uri("?pin-value=1234&pin=x"), vec![], "unknown query attribute"),
    ];
    for (cert, k, extra, want) in &cases {
        let mut args = sign_args(cert, k);
        args.extend(extra.iter().map(|s| s.to_string()));
        let err = refused(&eif_cmd(d, "out.eif", &strs(&args), &hsm.env()), want, &out);
        if let Some(pin) = k.split("pin-value=").nth(1).map(|p| p.split('&').next().unwrap()) {
            assert!(!err.contains(&format!("pin-value={pin}")), "the PIN is printed: {err}");
            assert!(err.contains("pin-value=(hidden)"), "{err}");
        }
    }
}

/// A key on a SoftHSM2 token signs: AWS's reader accepts the EIF, PCR8 is
/// the certificate's, the key is sensitive and not extractable (its value
/// cannot be read), two signatures differ (the token's nonces) and both
/// check; the PIN may come from --pin-file or $EIFBAKE_PKCS11_PIN, the
/// module from --pkcs11-module or $EIFBAKE_PKCS11_MODULE.
#[test]
fn softhsm_signs_and_the_key_stays_on_the_token() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let hsm = SoftHsm::new();
    let cert = hsm.certificate.clone();
    let args = sign_args(&cert, &hsm.uri());
    ok(&eif_cmd(d, "a.eif", &strs(&args), &hsm.env()));
    let aws = aws_accepts(&d.join("a.eif"));
    assert_eq!(aws["PCR8"], pcr8_of(&cert), "PCR8 is not the certificate's");
    assert_eq!(hsm.key_custody(), (false, true, false), "(CKA_EXTRACTABLE, CKA_SENSITIVE, value readable)");

    // PIN from a file, module named on the command line.
    let pin = d.join("pin");
    fs::write(&pin, "1234\n").unwrap();
    let mut args = sign_args(&cert, &format!("pkcs11:token={};object={}", softhsm::TOKEN, softhsm::KEY));
    args.extend(["--pin-file".into(), s(&pin).into(), "--pkcs11-module".into(), softhsm::MODULE.into()]);
    ok(&eif_cmd(d, "b.eif", &strs(&args), &hsm.env()));
    // PIN and module from the environment.
    let mut env = hsm.env();
    env.push(("EIFBAKE_PKCS11_PIN", "1234".into()));
    env.push(("EIFBAKE_PKCS11_MODULE", softhsm::MODULE.into()));
    let args = sign_args(&cert, &format!("pkcs11:token={};object={}", softhsm::TOKEN, softhsm::KEY));
    ok(&eif_cmd(d, "c.eif", &strs(&args), &env));

    let (a, b, c) =
        (raw_signature(&d.join("a.eif")), raw_signature(&d.join("b.eif")), raw_signature(&d.join("c.eif")));
    assert!(a != b && b != c && a != c, "the token's ECDSA nonces are random: the signatures differ");
    for n in ["b.eif", "c.eif"] {
        assert_eq!(aws_accepts(&d.join(n)), aws, "{n}");
        let o = run(eifbake().args(["describe", "--json", s(&d.join(n))]));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["signature"]["valid"], true, "{n}: {:#}", j["signature"]);
    }
    // Apart from the signature bytes, the files are the same.
    let (fa, fb) = (fs::read(d.join("a.eif")).unwrap(), fs::read(d.join("b.eif")).unwrap());
    let at =
        Eif::open(&d.join("a.eif")).unwrap().section(eifbake::eif::SectionKind::Signature).unwrap().offset
            as usize;
    assert!(fa[548..at] == fb[548..at], "the HSM-signed files differ before the signature section");
    assert_eq!(Pcr::of(Certificate::from_pem_file(&cert).unwrap().der()).hex(), aws["PCR8"]);

    // In one process, a signer after another: each closes its session and
    // finalises the module when dropped, so the next can initialise it.
    hsm.in_process(|| {
        let key = eifbake::signing::Certificate::from_pem_file(&cert).unwrap().p384_key().unwrap();
        for round in 0..2 {
            let signer =
                eifbake::signing::load_signer(&cert, &hsm.uri(), eifbake::signing::Validity::Enforce)
                    .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
            let sig = signer.sign_es384(b"message").unwrap();
            eifbake::signing::verify_es384(&key, b"message", &sig).unwrap();
        }
    });
}
