//! Golden test: fixed synthetic inputs give a checked-in EIF sha256 and PCRs,
//! and a second build elsewhere (other directory, umask, TZ, locale) gives the
//! same bytes.
//!
//! Recompute the golden values (then review the diff) with
//! `EIFBAKE_REGEN_GOLDEN=1 cargo test --test eif_golden` (`make golden`).

mod eif_common;

use std::fs;
use std::path::Path;

use eif_common::*;
use eifbake::digest::Digest;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/eif.json");

fn build(dir: &Path, envs: &[(&str, &str)], umask: &str) -> (serde_json::Value, Vec<u8>, String) {
    write_inputs(dir, b"hello\n", 0o100644);
    let args = build_args(dir, "hello.eif").join("' '");
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
