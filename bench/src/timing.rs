//! Timing one command: wall time, CPU time and peak memory of a child
//! process, measured here rather than by GNU time. The child is reaped with
//! wait4(2), whose resource usage covers it and every descendant it waited
//! for (a `bash -c` pipeline's stages): CPU is their user + system time and
//! peak RSS is `ru_maxrss`, the largest resident set of any single process
//! among them (what GNU time's `%M` reports).
//!
//! A child forked from a big process starts with that process's resident
//! set on its books (Linux counts the memory at exec in `ru_maxrss`), so the
//! harness does not spawn timed commands itself: a fresh, small trampoline
//! (`eifbake-bench tool spawn`, [`trampoline`]) spawns each one, reaps it
//! and reports its figures in a file, as GNU time did.
//!
//! Not for: profiling, or commands that leave processes behind (their usage
//! is not counted).
//!
//! Invariants: every sample comes from a run that exited 0; `sync` runs before
//! each timed run so earlier writeback does not land in it; a [`Timing`] has
//! at least one sample.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The samples of one command, one per run, in run order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub wall_ns: Vec<u64>,
    /// User + system time of the command and its children.
    pub cpu_ns: Vec<u64>,
    /// Peak resident set of its largest process, KiB.
    pub rss_kib: Vec<u64>,
}

impl Timing {
    /// The best (least) wall time, the figure the tables report.
    pub fn best_wall_ns(&self) -> u64 {
        self.wall_ns.iter().copied().min().unwrap_or(0)
    }

    /// The median wall time (the lower middle one for an even count).
    pub fn median_wall_ns(&self) -> u64 {
        let mut v = self.wall_ns.clone();
        v.sort_unstable();
        v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
    }

    /// The least CPU time over the runs.
    pub fn min_cpu_ns(&self) -> u64 {
        self.cpu_ns.iter().copied().min().unwrap_or(0)
    }

    /// The largest peak RSS over the runs.
    pub fn max_rss_kib(&self) -> u64 {
        self.rss_kib.iter().copied().max().unwrap_or(0)
    }

    pub fn wall_s(&self) -> f64 {
        self.best_wall_ns() as f64 / 1e9
    }

    pub fn cpu_s(&self) -> f64 {
        self.min_cpu_ns() as f64 / 1e9
    }

    pub fn rss_mib(&self) -> f64 {
        self.max_rss_kib() as f64 / 1024.0
    }

    /// CPU ÷ wall: the parallelism the command actually got.
    pub fn cores(&self) -> f64 {
        self.cpu_s() / self.wall_s()
    }

    fn push(&mut self, s: Sample) {
        self.wall_ns.push(s.wall_ns);
        self.cpu_ns.push(s.cpu_ns);
        self.rss_kib.push(s.rss_kib);
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall_ns: u64,
    cpu_ns: u64,
    rss_kib: u64,
}

/// The trampoline: run `argv` with our stdio, reap it, write
/// `WALL_NS CPU_NS RSS_KIB` to `report`; returns the exit code to exit with
/// (the child's, or 128 + signal).
pub fn trampoline(argv: &[String], report: &std::path::Path) -> Result<u8> {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    let (status, s) = run_once(c)?;
    std::fs::write(report, format!("{} {} {}\n", s.wall_ns, s.cpu_ns, s.rss_kib))
        .with_context(|| format!("write {}", report.display()))?;
    Ok(status.code().map(|c| c as u8).unwrap_or_else(|| 128 + status.signal().unwrap_or(0) as u8))
}

/// Read a trampoline's report.
fn read_report(report: &std::path::Path) -> Result<Sample> {
    let text = std::fs::read_to_string(report).with_context(|| format!("read {}", report.display()))?;
    let v: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    if v.len() != 3 {
        bail!("{}: expected WALL_NS CPU_NS RSS_KIB, got {text:?}", report.display());
    }
    Ok(Sample { wall_ns: v[0], cpu_ns: v[1], rss_kib: v[2] })
}

/// Run `make()`'s command `runs` times (`prep` before each, untimed) and
/// collect the samples. Fails on the first run that does not exit 0,
/// with `describe_failure`'s text.
pub fn time_runs(
    runs: u32,
    mut prep: impl FnMut() -> Result<()>,
    mut make: impl FnMut() -> Result<Command>,
    describe_failure: impl Fn(ExitStatus) -> String,
    report: Option<&std::path::Path>,
) -> Result<Timing> {
    let mut t = Timing::default();
    for _ in 0..runs.max(1) {
        prep().context("preparation failed")?;
        rustix::fs::sync();
        let (status, sample) = run_once(make()?)?;
        if !status.success() {
            bail!("{}", describe_failure(status));
        }
        t.push(match report {
            Some(r) => read_report(r)?,
            None => sample,
        });
    }
    Ok(t)
}

/// Spawn `cmd`, reap it with wait4(2) and return its status and figures.
fn run_once(mut cmd: Command) -> Result<(ExitStatus, Sample)> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child (std's Child does not reap
        // it unless asked); status and ru are valid, writable locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4 on the timed command");
        }
    }
    let wall_ns = start.elapsed().as_nanos() as u64;
    // Reaped above: dropping the handle neither waits nor kills.
    drop(child);
    let tv_ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
    let sample =
        Sample { wall_ns, cpu_ns: tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime), rss_kib: ru.ru_maxrss as u64 };
    Ok((ExitStatus::from_raw(status), sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Result<Command> {
        let mut c = Command::new("bash");
        c.arg("-c").arg(script);
        Ok(c)
    }

    #[test]
    fn measures_every_run_of_a_busy_child() {
        let t = time_runs(
            2,
            || Ok(()),
            || sh("i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"),
            |s| format!("exited {s}"),
            None,
        )
        .unwrap();
        assert_eq!(t.wall_ns.len(), 2);
        assert!(t.best_wall_ns() > 0 && t.best_wall_ns() <= t.median_wall_ns());
        assert!(t.min_cpu_ns() > 0, "the loop used CPU: {t:?}");
        assert!(t.cores() > 0.0);
    }

    #[test]
    fn peak_rss_is_the_childs_not_ours() {
        let t = time_runs(1, || Ok(()), || sh("exec sleep 0.05"), |s| format!("exited {s}"), None).unwrap();
        let small = t.max_rss_kib();
        let big = time_runs(
            1,
            || Ok(()),
            // tail, a grandchild of ours, keeps the whole 48 MiB line in
            // memory: wait4 on the shell must see its peak.
            || sh("head -c 50331648 /dev/zero | tail -n 1 >/dev/null"),
            |s| format!("exited {s}"),
            None,
        )
        .unwrap();
        assert!(small < 16 * 1024, "sleep's peak is small: {small} KiB");
        assert!(big.max_rss_kib() >= 48 * 1024, "tail's 48 MiB line is seen: {} KiB", big.max_rss_kib());
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_description() {
        let e =
            time_runs(3, || Ok(()), || sh("exit 3"), |s| format!("it exited {}", s.code().unwrap()), None)
                .unwrap_err();
        assert_eq!(e.to_string(), "it exited 3");
    }

    #[test]
    fn median_and_best() {
        let t = Timing { wall_ns: vec![5, 1, 9], cpu_ns: vec![4, 2, 3], rss_kib: vec![1, 7, 2] };
        assert_eq!((t.best_wall_ns(), t.median_wall_ns(), t.min_cpu_ns(), t.max_rss_kib()), (1, 5, 2, 7));
    }
}
