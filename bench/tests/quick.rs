//! The harness's quick mode, run for real: every section must produce its
//! table with numeric figures (no timings are compared: they vary), the JSON
//! must hold the same run, and the checked-in bench/RESULTS.md must have the
//! shape the renderer produces (same headings and table headers).
//!
//! Needs what the full benchmark needs (scripts/deps.sh --with-eif-build):
//! cpio, pigz, skopeo, docker-registry, buildah, crun, AWS eif_build, and
//! root (the apps section builds recipes/rust-server with eifbake and
//! buildah: a few minutes, the Rust toolchain image cached under
//! target/fixtures/).

use std::path::Path;
use std::process::Command;

/// The `## ` headings and table header rows, digits replaced by `N` (the
/// memory table's columns follow the tree sizes: only its first cell counts).
fn skeleton(md: &str) -> Vec<String> {
    md.lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("| command |") || l.starts_with("| step |"))
        .map(|l| if l.starts_with("| step |") { "| step |" } else { l })
        .map(|l| l.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect::<String>())
        .map(|l| l.replace("NN", "N").replace("NN", "N").replace("NN", "N"))
        .collect()
}

/// The tables under each `## ` heading: heading → rows (without header and rule).
fn tables(md: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for l in md.lines() {
        if let Some(h) = l.strip_prefix("## ") {
            out.push((h.to_string(), Vec::new()));
        } else if l.starts_with("| ")
            && !["| command |", "| step |", "| target |"].iter().any(|h| l.starts_with(h))
        {
            let cells: Vec<String> = l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect();
            if let Some(last) = out.last_mut() {
                last.1.push(cells);
            }
        }
    }
    out
}

#[test]
fn quick_run_renders_every_table_with_figures() {
    let tmp = std::env::temp_dir().join(format!("eifbake-bench-quick-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (md_path, json_path) = (tmp.join("RESULTS.md"), tmp.join("results.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_eifbake-bench"))
        .args(["run", "--quick", "--results"])
        .arg(&md_path)
        .arg("--json")
        .arg(&json_path)
        .arg("--work")
        .arg(tmp.join("work"))
        .output()
        .unwrap();
    assert!(out.status.success(), "quick run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(!md.contains("**Skipped:**"), "a section was skipped:\n{md}");

    let by_heading = tables(&md);
    for (prefix, min_rows) in [
        ("Targets", 14),
        ("pack:", 5),
        ("sign:", 3),
        ("measure:", 5),
        ("memory", 5),
        ("onepass:", 3),
        ("unpack:", 2),
        ("pull:", 2),
        ("apps:", 7),
    ] {
        let (h, rows) = by_heading
            .iter()
            .find(|(h, _)| h.starts_with(prefix))
            .unwrap_or_else(|| panic!("no section {prefix}:\n{md}"));
        assert!(rows.len() >= min_rows, "{h}: {} rows, expected {min_rows}:\n{md}", rows.len());
        if prefix == "Targets" {
            assert!(rows.iter().all(|r| r[2] == "met" || r[2] == "**missed**"), "{rows:?}");
            continue;
        }
        if prefix == "memory" {
            // `RSS MiB (wall s)` per tree size (the peers' may be n/a).
            for r in rows.iter().filter(|r| r[0].starts_with("eifbake")) {
                assert_eq!(r.len(), 3, "{h}: two tree sizes: {r:?}");
                for c in &r[1..] {
                    let (rss, wall) = c.split_once(" (").unwrap_or_else(|| panic!("{h}: {r:?}"));
                    let rss: f64 = rss.parse().unwrap_or_else(|_| panic!("{h}: {r:?}"));
                    let wall: f64 =
                        wall.trim_end_matches(')').parse().unwrap_or_else(|_| panic!("{h}: {r:?}"));
                    assert!(rss > 0.0 && wall > 0.0, "{h}: {r:?}");
                }
            }
            continue;
        }
        for r in rows {
            // wall, CPU, cores, RSS: numbers, wall and RSS above zero.
            let nums: Vec<f64> = r[1..5]
                .iter()
                .map(|c| c.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{h}: {r:?}")))
                .collect();
            assert!(nums[0] > 0.0 && nums[3] > 0.0, "{h}: {r:?}");
        }
    }
    assert!(md.contains("## fuzzing"), "fuzz/RESULTS.md is included");
    assert!(md.contains("## Exact commands"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["settings"]["quick"], true);
    let walls = json["pack"]["done"]["eb_plain"]["timing"]["wall_ns"].as_array().unwrap();
    assert_eq!(walls.len(), 1, "quick mode runs once");

    // The change rebuild is judged against its own compile step, read from
    // eifbake's output: it must be there.
    let step = json["apps"]["done"]["change_step_s"][0].as_f64().unwrap();
    assert!(step > 0.0, "compile step of the change rebuild: {step} s");

    // Memory is measured per command, not inherited from the harness: the
    // smallest peak (sha384sum) is far below the harness's own.
    let rss = json["measure"]["done"]["sha384sum"]["rss_kib"][0].as_u64().unwrap();
    assert!(rss < 16 * 1024, "sha384sum peak {rss} KiB");

    let checked_in =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")).unwrap();
    assert_eq!(skeleton(&checked_in), skeleton(&md), "bench/RESULTS.md is not in the renderer's format");
    std::fs::remove_dir_all(&tmp).unwrap();
}
