//! Golden tests: fixed synthetic inputs give a checked-in EIF sha256 and
//! PCRs, for x86_64 (`tests/golden/eif.json`), for aarch64 (an arm64
//! `Image` header over the same bytes, `--arch aarch64`:
//! `tests/golden/eif-aarch64.json`) and signed with the checked-in test key
//! (`tests/data/signing`: `tests/golden/eif-signed.json`); a second build
//! elsewhere (other directory, umask, TZ, locale) gives the same bytes, signed
//! images included, since signing is deterministic. `tests/aws_oracle.rs` has
//! AWS's reader confirm the aarch64 golden's PCRs, CRC and flag.
//!
//! Recompute the golden values (then review the diff) with
//! `EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden` (`make golden`).

mod common;
mod eif_common;

use std::fs;
use std::path::Path;

use eif_common::*;
use eifbake::digest::Digest;

const SIGNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/signing");

/// Compare `actual` with a golden file, rewriting it first under EIFBAKE_REGEN_GOLDEN.
fn check_golden(path: &Path, actual: &serde_json::Value) {
    if std::env::var_os("EIFBAKE_REGEN_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let expected: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(path).unwrap_or_else(|_| panic!("{} (make golden)", path.display())),
    )
    .unwrap();
    assert_eq!(
        actual,
        &expected,
        "EIF bytes or PCRs changed against {}; if intended, run `make golden` and review",
        path.display()
    );
}

fn golden(arch: &str) {
    let a = tempfile::tempdir().unwrap();
    let (json, eif, pcrs) = golden_build(a.path(), arch, &[("TZ", "UTC"), ("LC_ALL", "C")], "022", &[]);
    let m = &json["Measurements"];
    let actual = serde_json::json!({
        "command": "EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden",
        "eif_sha256": Digest::of(&eif).to_string(),
        "size": eif.len(),
        "PCR0": m["PCR0"],
        "PCR1": m["PCR1"],
        "PCR2": m["PCR2"],
    });
    check_golden(&golden_path(arch), &actual);
    assert_eq!(json["arch"], arch);
    assert_eq!(eif[6..8], [0, (arch == "aarch64") as u8], "header flags");
    // The .pcrs file says the same as the JSON.
    for n in 0..3 {
        let key = format!("PCR{n}");
        assert!(pcrs.contains(&format!("{} {key}\n", m[&key].as_str().unwrap())));
    }

    // Another directory, umask, time zone and locale: the same bytes.
    let b = tempfile::tempdir().unwrap();
    let (json2, eif2, pcrs2) = golden_build(
        b.path(),
        arch,
        &[("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")],
        "077",
        &[],
    );
    assert!(eif == eif2, "a second build in another environment gave different bytes");
    assert_eq!(pcrs, pcrs2);
    assert_eq!(json["Measurements"], json2["Measurements"]);
}

#[test]
fn golden_eif() {
    golden("x86_64");
}

#[test]
fn golden_eif_aarch64() {
    golden("aarch64");
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
    let (json, eif, pcrs) = golden_build(
        a.path(),
        "x86_64",
        &[("TZ", "UTC"), ("LC_ALL", "C")],
        "022",
        &sign("signer1.pem", "signer1.key"),
    );
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
    let signed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eif-signed.json");
    check_golden(&signed_path, &actual);
    assert!(pcrs.ends_with(&format!("{} PCR8\n", m["PCR8"].as_str().unwrap())), "{pcrs}");

    // Signing does not change PCR0..2: they equal the unsigned golden's.
    let unsigned: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(golden_path("x86_64")).unwrap()).unwrap();
    for k in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(actual[k], unsigned[k], "{k}");
    }

    let b = tempfile::tempdir().unwrap();
    let (json2, eif2, pcrs2) = golden_build(
        b.path(),
        "x86_64",
        &[("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")],
        "077",
        &sign("signer1.crlf.pem", "signer1.sec1.key"),
    );
    assert!(eif == eif2, "a second signed build in another environment gave different bytes");
    assert_eq!(pcrs, pcrs2);
    assert_eq!(json["Measurements"], json2["Measurements"]);
}
