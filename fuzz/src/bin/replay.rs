//! Run fuzz targets over corpus files without AFL: a regression check of the
//! checked-in corpus and a measure of a harness's speed.
//!
//! Usage: `replay TARGET [ROUNDS] [FILE|DIR]...` (default: 1 round over
//! `corpus/TARGET`). Prints `REPLAY target=T inputs=N execs=E seconds=S
//! per_second=R`. A panic in a target is a finding and ends the run with
//! the input's path on stderr.

use std::path::PathBuf;
use std::time::Instant;

fn inputs(target: &str, args: &[String]) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = if args.is_empty() {
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)]
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut dir: Vec<PathBuf> = std::fs::read_dir(&root)
                .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
                .map(|e| e.expect("a directory entry").path())
                .collect();
            dir.sort();
            files.extend(dir);
        } else {
            files.push(root);
        }
    }
    files
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first() else {
        eprintln!("usage: replay TARGET [ROUNDS] [FILE|DIR]... (TARGET: {:?})", eifbake_fuzz::TARGETS);
        std::process::exit(2);
    };
    let (rounds, rest) = match args.get(1).and_then(|a| a.parse::<u64>().ok()) {
        Some(n) => (n, &args[2..]),
        None => (1, &args[1..]),
    };
    let files = inputs(target, rest);
    let data: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|p| {
            let d = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, d)
        })
        .collect();
    let start = Instant::now();
    let mut execs = 0u64;
    for _ in 0..rounds {
        for (path, d) in &data {
            if std::panic::catch_unwind(|| eifbake_fuzz::run(target, d)).is_err() {
                eprintln!("replay: target {target} panicked on {}", path.display());
                std::process::exit(1);
            }
            execs += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "REPLAY target={target} inputs={} execs={execs} seconds={secs:.2} per_second={:.0}",
        data.len(),
        execs as f64 / secs.max(1e-9)
    );
}
