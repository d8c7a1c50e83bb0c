//! Signed EIFs (PCR8) end to end: what signing changes in the file and what
//! it does not, every bad certificate or key refused with exit 2 and a
//! message naming the file, describe and diff on good and bad signature
//! sections, and rewriting an image from a ready-made signature section.
//! The keys are the checked-in test-only ones in `tests/data/signing`.

mod common;
mod eif_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use eif_common::*;
use eifbake::eif::{self, Eif, EifInputs, Metadata, Signing};
use eifbake::epoch::Epoch;
use eifbake::platform::Arch;
use eifbake::progress::Progress;
use eifbake::signing::{self, Validity};

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
}

/// `eifbake eif` over the standard inputs in `dir` (written if missing), plus `extra` arguments.
fn eif_cmd(dir: &Path, out: &str, extra: &[&std::ffi::OsStr]) -> Output {
    if !dir.join("bzImage").exists() {
        write_inputs(dir, b"hello\n", 0o100644);
    }
    run(eifbake().args(build_args(dir, out)).args(extra).env("SOURCE_DATE_EPOCH", "1"))
}

/// Build `out` in `dir`, signed with `name`.pem / `name`.key (unsigned when None); must succeed.
fn build(dir: &Path, out: &str, signer: Option<&str>) -> (PathBuf, serde_json::Value) {
    let (cert, k) = signer.map(|n| (key(&format!("{n}.pem")), key(&format!("{n}.key")))).unzip();
    let mut extra: Vec<&std::ffi::OsStr> = Vec::new();
    if let (Some(c), Some(k)) = (&cert, &k) {
        extra.extend([
            "--signing-certificate".as_ref(),
            c.as_os_str(),
            "--private-key".as_ref(),
            k.as_os_str(),
        ]);
    }
    let o = eif_cmd(dir, out, &extra);
    assert!(o.status.success(), "{}", text(&o.stderr));
    (dir.join(out), serde_json::from_slice(&o.stdout).unwrap())
}

fn describe_json(p: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = run(eifbake().arg("describe").arg("--json").arg(p));
    (o.status.code(), serde_json::from_slice(&o.stdout).unwrap_or_default(), text(&o.stderr))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Section `i`'s table offset and size fields in the header.
fn offset_field(i: usize) -> std::ops::Range<usize> {
    28 + 8 * i..36 + 8 * i
}
fn size_field(i: usize) -> std::ops::Range<usize> {
    284 + 8 * i..292 + 8 * i
}

/// The standard signed images have 5 sections before the signature.
const SIG: usize = 5;

/// Replace the (last) signature section's data, fixing its sizes and, if `fix_crc`, the CRC.
fn with_signature(signed: &[u8], data: &[u8], fix_crc: bool) -> Vec<u8> {
    let off = u64_at(signed, offset_field(SIG).start) as usize;
    let mut b = signed[..off + 12].to_vec();
    b.extend_from_slice(data);
    let size = (data.len() as u64).to_be_bytes();
    b[size_field(SIG)].copy_from_slice(&size);
    b[off + 4..off + 12].copy_from_slice(&size);
    if fix_crc {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&b[..544]);
        crc.update(&b[548..]);
        let crc = crc.finalize();
        b[544..548].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

fn signature_data(signed: &[u8]) -> &[u8] {
    &signed[u64_at(signed, offset_field(SIG).start) as usize + 12..]
}

#[test]
fn signing_appends_one_section_and_pcr8_only() {
    let root = tempfile::tempdir().unwrap();
    let (unsigned, ju) = build(root.path(), "unsigned.eif", None);
    let (signed, js) = build(root.path(), "signed.eif", Some("signer1"));
    let (u, s) = (fs::read(&unsigned).unwrap(), fs::read(&signed).unwrap());
    // Every section of the unsigned image, byte for byte, then the signature.
    assert!(s[548..u.len()] == u[548..], "signing changed a section before the signature");
    assert_eq!(u64_at(&s, offset_field(SIG).start), u.len() as u64, "the signature section comes last");
    assert_eq!(u16::from_be_bytes([s[26], s[27]]), 6);
    assert_eq!(u16::from_be_bytes([u[26], u[27]]), 5);
    assert_eq!(&s[u.len()..u.len() + 4], &[0, 4, 0, 0], "section type 4, flags 0");
    // The header differs only in num_sections, the signature's offset and size, and the CRC.
    let mut patched = u[..548].to_vec();
    patched[26..28].copy_from_slice(&s[26..28]);
    patched[offset_field(SIG)].copy_from_slice(&s[offset_field(SIG)]);
    patched[size_field(SIG)].copy_from_slice(&s[size_field(SIG)]);
    patched[544..548].copy_from_slice(&s[544..548]);
    assert!(patched == s[..548], "the header differs in more than the signature's fields and the CRC");

    let (mu, ms) = (&ju["Measurements"], &js["Measurements"]);
    for k in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(mu[k], ms[k], "{k}");
    }
    assert!(mu.get("PCR8").is_none());
    let cert_der =
        signing::load_signer(&key("signer1.pem"), key("signer1.key").to_str().unwrap(), Validity::Enforce)
            .unwrap()
            .certificate()
            .der()
            .to_vec();
    assert_eq!(ms["PCR8"], eifbake::pcr::Pcr::of(&cert_der).hex());
    assert_eq!(js["signing_certificate"]["key_algorithm"], "ECDSA P-384");
    let pcrs = fs::read_to_string(root.path().join("signed.eif.pcrs")).unwrap();
    assert!(pcrs.ends_with(&format!("{} PCR8\n", ms["PCR8"].as_str().unwrap())), "{pcrs}");

    // describe: the certificate's facts and a valid signature, exit 0.
    let (code, j, err) = describe_json(&signed);
    assert_eq!(code, Some(0), "{err}");
    let sig = &j["signature"];
    assert_eq!(sig["valid"], true);
    assert_eq!(sig["algorithm"], "ES384");
    assert_eq!(sig["PCR8"], ms["PCR8"]);
    assert_eq!(sig["signed_pcr0"], ms["PCR0"]);
    let c = &sig["certificate"];
    assert_eq!(c["subject"], "O=eifbake tests,CN=eifbake test signer 1 (test only)");
    assert_eq!(c["issuer"], "O=eifbake tests,CN=eifbake test CA (test only)");
    assert_eq!(c["serial"], "1001");
    assert_eq!(c["not_before"], "2020-01-01T00:00:00Z");
    assert_eq!(c["not_after"], "2099-12-31T23:59:59Z");
    assert_eq!(c["sha256_fingerprint"], eifbake::digest::Digest::of(&cert_der).hex());
    assert_eq!(j["Measurements"]["PCR8"], ms["PCR8"]);
    let o = run(eifbake().arg("describe").arg(&signed));
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for want in [
        "5  signature",
        "Signature\n  subject       O=eifbake tests,CN=eifbake test signer 1 (test only)\n",
        "  not after     2099-12-31T23:59:59Z\n",
        "  key           ECDSA P-384\n",
        "  algorithm     ES384\n",
        "  signature     OK",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, _, _) = describe_json(&unsigned);
    assert_eq!(code, Some(0));
}

#[test]
fn another_key_changes_only_the_signature_and_pcr8() {
    let root = tempfile::tempdir().unwrap();
    let (a, ja) = build(root.path(), "a.eif", Some("signer1"));
    let (b, jb) = build(root.path(), "b.eif", Some("signer2"));
    let (x, y) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let sig_at = u64_at(&x, offset_field(SIG).start) as usize;
    assert_eq!(sig_at as u64, u64_at(&y, offset_field(SIG).start));
    assert!(x[548..sig_at] == y[548..sig_at], "a section before the signature differs");
    let mut hx = x[..548].to_vec();
    hx[size_field(SIG)].copy_from_slice(&y[size_field(SIG)]);
    hx[544..548].copy_from_slice(&y[544..548]);
    assert!(hx == y[..548], "the headers differ in more than the signature size and the CRC");
    assert_ne!(signature_data(&x), signature_data(&y));
    let (ma, mb) = (&ja["Measurements"], &jb["Measurements"]);
    for k in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(ma[k], mb[k], "{k}");
    }
    assert_ne!(ma["PCR8"], mb["PCR8"]);

    // Signing again with the same key: the same bytes (RFC 6979).
    let (a2, _) = build(root.path(), "a2.eif", Some("signer1"));
    assert!(fs::read(&a2).unwrap() == x, "signing is not deterministic");

    // diff names the signature section, PCR8 and the certificate.
    let o = run(eifbake().arg("diff").arg(&a).arg(&b));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "section 5\n  - signature ",
        "PCR8: ",
        "signature\n  signing certificate: O=eifbake tests,CN=eifbake test signer 1 (test only) (sha256 ",
        "-> O=eifbake tests,CN=eifbake test signer 2 (test only) (sha256 ",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("PCR0:") && !out.contains("section 4"), "{out}");
    assert!(!out.contains("signature check"), "both signatures are valid:\n{out}");
    let o = run(eifbake().arg("diff").arg(&a).arg(&a2));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

#[test]
fn bad_certificates_and_keys_exit_2_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_inputs(dir, b"hello\n", 0o100644);
    let good_cert = fs::read_to_string(key("signer1.pem")).unwrap();
    let good_key = fs::read_to_string(key("signer1.key")).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    };
    let garbled_cert = write("garbled-cert.pem", &good_cert.replacen("MII", "M!I", 1));
    let truncated_cert = write("truncated-cert.pem", &good_cert[..good_cert.len() / 2]);
    let garbled_key = write("garbled.key", &good_key.replacen("MIG2", "MIG3", 1));
    let not_pem_key = write("not-pem.key", "just some text\n");
    let k = |n: &str| key(n).display().to_string();
    let p = |p: &PathBuf| p.display().to_string();
    let cases: Vec<(String, String, &str, &str)> = vec![
        (k("expired.pem"), k("expired.key"), "expired.pem", "it expired on 2001-01-01T00:00:00Z"),
        (
            k("future.pem"),
            k("future.key"),
            "future.pem",
            "it is not valid yet: valid from 2090-01-01T00:00:00Z",
        ),
        (k("p256.pem"), k("p256.key"), "p256.pem", "its public key is ECDSA P-256; eifbake signs with ES384"),
        (k("signer1.pem"), k("p256.key"), "p256.key", "is ECDSA P-256; eifbake signs with ES384"),
        (k("rsa.pem"), k("rsa.key"), "rsa.pem", "its public key is RSA"),
        (k("signer1.pem"), k("rsa.key"), "rsa.key", "is RSA"),
        (
            k("no-digital-signature.pem"),
            k("no-digital-signature.key"),
            "no-digital-signature.pem",
            "keyUsage (keyAgreement) does not include digitalSignature",
        ),
        (k("chain.pem"), k("signer1.key"), "chain.pem", "holds 2 certificates"),
        (k("signer1.pem"), k("signer2.key"), "signer2.key", "does not belong to the signing certificate"),
        (p(&garbled_cert), k("signer1.key"), "garbled-cert.pem", "garbled PEM"),
        (p(&truncated_cert), k("signer1.key"), "truncated-cert.pem", "no \"-----END CERTIFICATE-----\" line"),
        (k("signer1.pem"), p(&garbled_key), "garbled.key", "garbled PKCS#8 key"),
        (k("signer1.pem"), p(&not_pem_key), "not-pem.key", "no PEM block found"),
        // A token that cannot be reached (tests/key_custody.rs has the SoftHSM2 cases).
        (
            k("signer1.pem"),
            "pkcs11:token=hsm;object=eif?module-path=/nonexistent/p11.so".into(),
            "pkcs11:token=hsm",
            "/nonexistent/p11.so does not exist",
        ),
        (k("signer1.pem"), p(&dir.join("absent.key")), "absent.key", "cannot read private key"),
    ];
    for (cert, keyfile, names, want) in &cases {
        let o = eif_cmd(
            dir,
            "out.eif",
            &["--signing-certificate".as_ref(), cert.as_ref(), "--private-key".as_ref(), keyfile.as_ref()],
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cert} + {keyfile}: {err}");
        assert!(
            err.contains(names) && err.contains(want),
            "{cert} + {keyfile}: expected {names:?} and {want:?} in {err}"
        );
        assert!(!dir.join("out.eif").exists(), "a refused signing left an output");
    }

    // --ignore-certificate-validity signs with an expired certificate; describe shows it valid (the
    // signature holds; dates are the verifier's business) with its dates.
    let (e, ek) = (key("expired.pem"), key("expired.key"));
    let o = eif_cmd(
        dir,
        "expired.eif",
        &[
            "--signing-certificate".as_ref(),
            e.as_os_str(),
            "--private-key".as_ref(),
            ek.as_os_str(),
            "--ignore-certificate-validity".as_ref(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (code, j, err) = describe_json(&dir.join("expired.eif"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(j["signature"]["valid"], true);
    assert_eq!(j["signature"]["certificate"]["not_after"], "2001-01-01T00:00:00Z");
    // The flag is only for signing.
    let o = eif_cmd(dir, "x.eif", &["--ignore-certificate-validity".as_ref()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--signing-certificate"), "{}", text(&o.stderr));
}

#[test]
fn describe_reports_bad_signature_sections() {
    let root = tempfile::tempdir().unwrap();
    let (signed, js) = build(root.path(), "signed.eif", Some("signer1"));
    let good = fs::read(&signed).unwrap();
    let section = signature_data(&good).to_vec();
    // The signature of an image with another user ramdisk.
    let other_dir = root.path().join("other");
    fs::create_dir_all(&other_dir).unwrap();
    write_inputs(&other_dir, b"HELLO\n", 0o100644);
    let (other, jo) = build(&other_dir, "other.eif", Some("signer1"));
    let other_section = signature_data(&fs::read(&other).unwrap()).to_vec();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.eif",
            with_signature(&good, &section[..section.len() - 40], true),
            "truncated or garbled",
        ),
        ("cut-short.eif", with_signature(&good, &section[..7], true), "truncated or garbled"),
        ("garbage.eif", with_signature(&good, b"\xff\x00garbage", true), "truncated or garbled"),
        (
            "empty.eif",
            with_signature(&good, &[0x80], true),
            "the signature section's array of signatures is empty",
        ),
        ("grafted.eif", with_signature(&good, &other_section, true), "the signature is for PCR0 "),
    ];
    for (name, bytes, want) in &cases {
        let p = root.path().join(name);
        fs::write(&p, bytes).unwrap();
        let (code, j, err) = describe_json(&p);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}: section 5 (signature): the signature does not check"))
                && err.contains(want),
            "{name}: expected {want:?} in {err}"
        );
        assert_eq!(j["crc32"]["ok"], true, "{name}");
        assert_eq!(j["signature"]["valid"], false, "{name}");
        assert_eq!(j["Measurements"]["PCR0"], js["Measurements"]["PCR0"], "{name}: describe still measures");
        let o = run(eifbake().arg("describe").arg(&p));
        assert!(text(&o.stdout).contains("  signature     INVALID: "), "{name}: {}", text(&o.stdout));
    }
    // The grafted one names both PCR0s and still measures PCR8 from its certificate.
    let (_, j, err) = describe_json(&root.path().join("grafted.eif"));
    let (p0, o0) =
        (js["Measurements"]["PCR0"].as_str().unwrap(), jo["Measurements"]["PCR0"].as_str().unwrap());
    assert!(err.contains(&format!("is for PCR0 {o0}, but this image's PCR0 is {p0}")), "{err}");
    assert_eq!(j["Measurements"]["PCR8"], js["Measurements"]["PCR8"]);
    // diff says which side's signature fails.
    let o = run(eifbake().arg("diff").arg(&signed).arg(root.path().join("grafted.eif")));
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.contains("signature check: valid -> INVALID: the signature is for PCR0"), "{out}");

    // Both a CRC mismatch and a bad signature: both reported.
    let p = root.path().join("both.eif");
    fs::write(&p, with_signature(&good, &other_section, false)).unwrap();
    let (code, _, err) = describe_json(&p);
    assert_eq!(code, Some(2));
    assert!(err.contains("CRC-32 mismatch") && err.contains("the signature does not check"), "{err}");

    // Over the limit: refused when opening, naming the limit.
    let p = root.path().join("huge.eif");
    fs::write(&p, with_signature(&good, &vec![0x80; 64 * 1024 + 1], true)).unwrap();
    let (code, _, err) = describe_json(&p);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("huge.eif: section 5 (signature) is 65537 bytes, over eifbake's limit of 65536"),
        "{err}"
    );
}

fn inputs(dir: &Path, user: &[u8], signing: Option<Signing>) -> EifInputs {
    write_inputs(dir, user, 0o100644);
    EifInputs {
        kernel: dir.join("bzImage"),
        cmdline: "console=ttyS0".into(),
        ramdisks: vec![dir.join("boot.cpio"), dir.join("user.cpio")],
        arch: Arch::X86_64,
        default_mem: eif::DEFAULT_MEM,
        default_cpus: eif::DEFAULT_CPUS,
        epoch: Epoch(1),
        metadata: Metadata::new("img", "1", Epoch(1), None, None).unwrap(),
        signing,
    }
}

#[test]
fn a_ready_made_section_rebuilds_the_same_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let signer =
        signing::load_signer(&key("signer1.pem"), key("signer1.key").to_str().unwrap(), Validity::Enforce)
            .unwrap();
    let out = dir.join("signed.eif");
    let w =
        eif::write_eif(&inputs(dir, b"a", Some(Signing::Key(signer))), &out, &Progress::hidden()).unwrap();
    let section = w.signature.clone().unwrap();
    assert_eq!(Eif::open(&out).unwrap().signature_section().unwrap(), Some(section.clone()));
    assert_eq!(w.measurements.pcr8, Some(signer_pcr8()));
    assert_eq!(w.size, fs::metadata(&out).unwrap().len());

    // Without the key: the same section gives the same file.
    let again = dir.join("again.eif");
    let w2 = eif::write_eif(
        &inputs(dir, b"a", Some(Signing::Section(section.clone()))),
        &again,
        &Progress::hidden(),
    )
    .unwrap();
    assert!(
        fs::read(&again).unwrap() == fs::read(&out).unwrap(),
        "rebuilt from the section, the bytes differ"
    );
    assert_eq!(w2.measurements, w.measurements);
    let v = Eif::open(&again).unwrap().verify(&Progress::hidden()).unwrap();
    assert!(v.crc_ok() && v.signature_ok());
    assert_eq!(v.measurements, w.measurements);

    // Other contents: the section does not sign them, and nothing is written.
    let other = dir.join("other.eif");
    let e = eif::write_eif(
        &inputs(dir, b"b", Some(Signing::Section(section.clone()))),
        &other,
        &Progress::hidden(),
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("other.eif") && e.contains("does not sign this image: the signature is for PCR0"),
        "{e}"
    );
    assert!(!other.exists());
    // A garbled or oversized section is refused.
    let e = eif::write_eif(
        &inputs(dir, b"a", Some(Signing::Section(section[..100].to_vec()))),
        &other,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("the signature section given"), "{e:#}");
    let e = eif::write_eif(
        &inputs(dir, b"a", Some(Signing::Section(vec![0; 64 * 1024 + 1]))),
        &other,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("over eifbake's limit of 65536 bytes"), "{e:#}");
    assert!(!other.exists());
}

fn signer_pcr8() -> eifbake::pcr::Pcr {
    let pem = fs::read_to_string(key("signer1.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    eifbake::pcr::Pcr::of(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
}
