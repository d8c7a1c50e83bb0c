//! Golden tests: fixed synthetic inputs give a checked-in EIF sha256 and PCRs,
//! unsigned and signed with the checked-in test key (`tests/data/signing`),
//! and a second build elsewhere (other directory, umask, TZ, locale) gives the
//! same bytes; signing is deterministic, so this holds for signed images too.
//!
//! Recompute the golden values (then review the diff) with
//! `EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden` (`make golden`).

mod eif_common;

use std::fs;
use std::path::Path;

use eif_common::*;
use eifbake::digest::Digest;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/eif.json");
const GOLDEN_SIGNED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/eif-signed.json");
const SIGNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/signing");

fn build(dir: &Path, envs: &[(&str, &str)], umask: &str) -> (serde_json::Value, Vec<u8>, String) {
    build_with(dir, envs, umask, &[])
}

fn build_with(
    dir: &Path,
    envs: &[(&str, &str)],
    umask: &str,
    extra: &[String],
) -> (serde_json::Value, Vec<u8>, String) {
    write_inputs(dir, b"hello\n", 0o100644);
    let mut args = build_args(dir, "hello.eif");
    args.extend_from_slice(extra);
    let args = args.join("' '");
    // A shell with only these variables sets the umask, then execs eifbake.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec '{}' '{args}'", env!("CARGO_BIN_EXE_eifbake")))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SOURCE_DATE_EPOCH", "1774569600")
        .env("EIFBAKE_NO_PROGRESS", "1")
        .envs(envs.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "eifbake eif failed: {}", text(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let eif = fs::read(dir.join("hello.eif")).unwrap();
    let pcrs = fs::read_to_string(dir.join("hello.eif.pcrs")).unwrap();
    (json, eif, pcrs)
}

#[test]
fn golden_eif() {
    let a = tempfile::tempdir().unwrap();
    let (json, eif, pcrs) = build(a.path(), &[("TZ", "UTC"), ("LC_ALL", "C")], "022");
    let m = &json["Measurements"];
    let actual = serde_json::json!({
        "command": "EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden",
        "eif_sha256": Digest::of(&eif).to_string(),
        "size": eif.len(),
        "PCR0": m["PCR0"],
        "PCR1": m["PCR1"],
        "PCR2": m["PCR2"],
    });
    if std::env::var_os("EIFBAKE_REGEN_GOLDEN").is_some() {
        fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        fs::write(GOLDEN, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(GOLDEN).expect("tests/golden/eif.json (make golden)"))
            .unwrap();
    assert_eq!(actual, expected, "EIF bytes or PCRs changed; if intended, run `make golden` and review");
    // The .pcrs file says the same as the JSON.
    for n in 0..3 {
        let key = format!("PCR{n}");
        assert!(pcrs.contains(&format!("{} {key}\n", m[&key].as_str().unwrap())));
    }

    // Another directory, umask, time zone and locale: the same bytes.
    let b = tempfile::tempdir().unwrap();
    let (json2, eif2, pcrs2) =
        build(b.path(), &[("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")], "077");
    assert!(eif == eif2, "a second build in another environment gave different bytes");
    assert_eq!(pcrs, pcrs2);
    assert_eq!(json["Measurements"], json2["Measurements"]);
}

/// Compare `actual` with a golden file, rewriting it first under EIFBAKE_REGEN_GOLDEN.
fn check_golden(path: &str, actual: &serde_json::Value) {
    if std::env::var_os("EIFBAKE_REGEN_GOLDEN").is_some() {
        fs::write(path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|_| panic!("{path} (make golden)")))
            .unwrap();
    assert_eq!(
        actual, &expected,
        "signed EIF bytes or PCRs changed; if intended, run `make golden` and review"
    );
}

#[test]
fn golden_signed_eif() {
    // The formatting of the certificate file does not matter (CRLF, 76 columns
    // vs openssl's PEM), nor the key's encoding (SEC1 vs PKCS#8).
    let sign = |cert: &str, key: &str| {
        vec![
            "--signing-certificate".to_string(),
            format!("{SIGNING}/{cert}"),
            "--private-key".to_string(),
            format!("{SIGNING}/{key}"),
        ]
    };
    let a = tempfile::tempdir().unwrap();
    let (json, eif, pcrs) =
        build_with(a.path(), &[("TZ", "UTC"), ("LC_ALL", "C")], "022", &sign("signer1.pem", "signer1.key"));
    let m = &json["Measurements"];
    assert!(m["PCR8"].is_string(), "a signed image has PCR8: {json}");
    let actual = serde_json::json!({
        "command": "EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden",
        "signed_with": "tests/data/signing/signer1.pem (test-only key)",
        "eif_sha256": Digest::of(&eif).to_string(),
        "size": eif.len(),
        "PCR0": m["PCR0"],
        "PCR1": m["PCR1"],
        "PCR2": m["PCR2"],
        "PCR8": m["PCR8"],
    });
    check_golden(GOLDEN_SIGNED, &actual);
    assert!(pcrs.ends_with(&format!("{} PCR8\n", m["PCR8"].as_str().unwrap())), "{pcrs}");

    // Signing does not change PCR0..2: they equal the unsigned golden's.
    let unsigned: serde_json::Value = serde_json::from_str(&fs::read_to_string(GOLDEN).unwrap()).unwrap();
    for k in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(actual[k], unsigned[k], "{k}");
    }

    let b = tempfile::tempdir().unwrap();
    let (json2, eif2, pcrs2) = build_with(
        b.path(),
        &[("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")],
        "077",
        &sign("signer1.crlf.pem", "signer1.sec1.key"),
    );
    assert!(eif == eif2, "a second signed build in another environment gave different bytes");
    assert_eq!(pcrs, pcrs2);
    assert_eq!(json["Measurements"], json2["Measurements"]);
}
