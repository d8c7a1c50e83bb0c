//! The context every section runs in ([`Ctx`]): where things are, how many
//! runs, and the variables the benchmark's shell commands use (`$EB`,
//! `$TREE`, `$KERNEL`, …), plus running a command timed ([`Ctx::timed`]) or
//! untimed ([`Ctx::sh`]).
//!
//! Not for: measuring (that is [`crate::timing`]) or deciding what to run.
//!
//! Invariants: the timed commands are the exact strings the report's "Exact
//! commands" section prints, run by `bash -c` with the variables of
//! [`Ctx::vars`] set; each run's stdout and stderr are kept in the results
//! directory as `NAME.stdout`/`NAME.stderr` (the last run's), so a failure
//! can be read afterwards.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::timing::{time_runs, Timing};

pub struct Ctx {
    /// The repository's top directory.
    pub root: PathBuf,
    /// bench/work or `--work`: trees, layers, outputs.
    pub work: PathBuf,
    /// Logs and each command's output.
    pub res: PathBuf,
    pub runs: u32,
    pub measure_runs: u32,
    /// Runs of the apps section's commands.
    pub app_runs: u32,
    /// Variables of the commands, by name.
    pub vars: BTreeMap<String, PathBuf>,
}

impl Ctx {
    /// The value of variable `name` (a path).
    pub fn var(&self, name: &str) -> &Path {
        self.vars.get(name).map(PathBuf::as_path).unwrap_or_else(|| panic!("bench variable {name} unset"))
    }

    pub fn set(&mut self, name: &str, value: impl Into<PathBuf>) {
        self.vars.insert(name.into(), value.into());
    }

    fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c").arg(script).envs(&self.vars).env("EIFBAKE_NO_PROGRESS", "1");
        c
    }

    /// Time `script` `runs` times, removing each of `clear` before every run
    /// (untimed). Logs the figures; a failing run is an error ending with the
    /// last lines of its stderr.
    pub fn timed(&self, name: &str, runs: u32, script: &str, clear: &[&Path]) -> Result<Timing> {
        let prep = || {
            for p in clear {
                remove(p)?;
            }
            Ok(())
        };
        self.timed_with(name, runs, script, prep)
    }

    /// [`Ctx::timed`] with `prep` run (untimed) before every run.
    pub fn timed_with(
        &self,
        name: &str,
        runs: u32,
        script: &str,
        prep: impl FnMut() -> Result<()>,
    ) -> Result<Timing> {
        let out = self.res.join(format!("{name}.stdout"));
        let err = self.res.join(format!("{name}.stderr"));
        let report = self.res.join(format!("{name}.rusage"));
        let make = || {
            // Through the trampoline (see crate::timing): a small process
            // spawns the command, so our own memory is not counted.
            let mut c = Command::new(self.var("BENCH"));
            c.args(["tool", "spawn", "--report"]).arg(&report).args(["--", "bash", "-c", script]);
            c.envs(&self.vars).env("EIFBAKE_NO_PROGRESS", "1");
            c.stdout(fs::File::create(&out)?).stderr(fs::File::create(&err)?);
            Ok(c)
        };
        let t = time_runs(
            runs,
            prep,
            make,
            |status| format!("{name}: {status}: {}", tail(&err, 3)),
            Some(&report),
        )?;
        log(&format!(
            "{name}: best of {runs} {:.2} s (median {:.2} s), CPU {:.2} s, peak RSS {:.1} MiB",
            t.wall_s(),
            t.median_wall_ns() as f64 / 1e9,
            t.cpu_s(),
            t.rss_mib()
        ));
        Ok(t)
    }

    /// The stdout of the last run of timed command `name`.
    pub fn stdout_of(&self, name: &str) -> Result<String> {
        let p = self.res.join(format!("{name}.stdout"));
        fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
    }

    /// Run `script` untimed; its stdout, or an error with its stderr.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.bash(script).output().context("cannot run bash")?;
        if !out.status.success() {
            bail!("`{script}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim_end());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Remove a file or directory tree if it exists.
pub fn remove(p: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    r.with_context(|| format!("remove {}", p.display()))
}

/// The last `n` non-empty lines of a file, joined by spaces.
pub fn tail(p: &Path, n: usize) -> String {
    let text = fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" ")
}

/// Progress on stderr: `[bench HH:MM:SS] message`.
pub fn log(msg: &str) {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (h, m, s) = ((now / 3600) % 24, (now / 60) % 60, now % 60);
    eprintln!("[bench {h:02}:{m:02}:{s:02}] {msg}");
}

pub fn file_size(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p).with_context(|| format!("stat {}", p.display()))?.len())
}
