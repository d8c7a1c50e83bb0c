//! The description of the machine and the software a run used, for the
//! report's header: CPU, memory, kernel, load, git revision, peers' versions.
//!
//! Not for: anything the figures depend on. A value that cannot be read is
//! `?` (the report still renders).

use std::path::Path;
use std::process::Command;

/// First line of a command's stdout (or stderr, for tools that print their
/// version there), `?` when it cannot run.
pub fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("?").trim().to_string()
        }
        Err(_) => "?".into(),
    }
}

pub fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub fn mem_total_gib() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1048576.0
}

pub fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The peers' versions, in the report's order.
pub fn peers(eif_build: Option<&Path>) -> Vec<String> {
    let eif_build_version = eif_build
        .map(|p| {
            // `--build-tool-version ... [default: X]` in its help.
            let help = Command::new(p).arg("--help").output().map(|o| o.stdout).unwrap_or_default();
            let help = String::from_utf8_lossy(&help).into_owned();
            let after = help.split("--build-tool-version").nth(1).unwrap_or("");
            after.split("default: ").nth(1).and_then(|r| r.split(']').next()).unwrap_or("?").to_string()
        })
        .unwrap_or_default();
    let registry = first_line("docker-registry", &["--version"]);
    vec![
        first_line("cpio", &["--version"]),
        first_line("gzip", &["--version"]),
        first_line("pigz", &["--version"]),
        first_line("tar", &["--version"]),
        format!("AWS eif_build {eif_build_version}"),
        "aws-nitro-enclaves-image-format 0.8".into(),
        first_line("skopeo", &["--version"]),
        first_line("buildah", &["--version"]),
        format!("docker-registry {}", registry.split_whitespace().last().unwrap_or("?")),
    ]
}

/// The processes using the most CPU right now (over their lifetime, as `ps`
/// reports it), other than this harness and `ps` itself: `COMMAND (CPU%)`.
pub fn others() -> Vec<String> {
    let me = std::process::id().to_string();
    let out = Command::new("ps").args(["-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (pid, ppid, cpu, comm) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
            let ours = *pid == me || *ppid == me || *comm == "ps";
            let busy = cpu.parse::<f64>().ok()? >= 5.0;
            (!ours && busy).then(|| format!("{comm} ({cpu}%)"))
        })
        .take(8)
        .collect()
}
