//! Golden tests: fixed synthetic inputs give a checked-in EIF sha256 and
//! PCRs, for x86_64 (`tests/golden/eif.json`) and for aarch64 (an arm64
//! `Image` header over the same bytes, `--arch aarch64`:
//! `tests/golden/eif-aarch64.json`), and a second build elsewhere (other
//! directory, umask, TZ, locale) gives the same bytes. `tests/aws_oracle.rs`
//! has AWS's reader confirm the aarch64 golden's PCRs, CRC and flag.
//!
//! Recompute the golden values (then review the diff) with
//! `EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden` (`make golden`).

mod eif_common;

use std::fs;

use eif_common::*;
use eifbake::digest::Digest;

fn golden(arch: &str) {
    let path = golden_path(arch);
    let a = tempfile::tempdir().unwrap();
    let (json, eif, pcrs) = golden_build(a.path(), arch, &[("TZ", "UTC"), ("LC_ALL", "C")], "022");
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
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let expected: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} (make golden)", path.display())),
    )
    .unwrap();
    assert_eq!(
        actual,
        expected,
        "EIF bytes or PCRs changed against {}; if intended, run `make golden` and review",
        path.display()
    );
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
