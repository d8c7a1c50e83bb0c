//! eifbake's benchmark harness: pack, sign, measure, unpack and pull, each
//! side by side with the tools people use today, on one deterministic
//! synthetic root filesystem; writes bench/RESULTS.md and, for machines,
//! the same figures as JSON (target/bench/results.json by default).
//!
//! ```text
//! make bench                                    # the full run (512 MiB tree, 3 runs)
//! cargo run --release -p eifbake-bench -- run --size-mib 1024 --runs 5
//! cargo run --release -p eifbake-bench -- run --quick --results /tmp/R.md
//! cargo run --release -p eifbake-bench -- render --json target/bench/results.json
//! ```
//!
//! Why a binary crate in a workspace with eifbake (and not an xtask or a
//! test): the root package is the workspace's only default member, so
//! `cargo test` and `cargo build` at the top never compile the harness, its
//! test or AWS's EIF reader crate, and stay as fast as before; `make bench`
//! and `cargo test -p eifbake-bench` build it when asked. The helpers it
//! times beside eifbake (a SHA-384 pass, AWS's reader, layer application)
//! are subcommands of this same binary (`tool …`, [`tools`]) so each runs as
//! a process of its own, measured like any other command.
//!
//! Not for: correctness tests (the test suite checks outputs; here they are
//! only checked enough that a speed figure means something), or the fuzzing
//! figures, which `fuzz/run.sh` produces and this report includes as
//! fuzz/RESULTS.md stands.
//!
//! Invariants: every figure in the report comes from a command this run
//! executed ([`sections`]); a section that cannot run is reported as skipped
//! with its reason and the others still run; the loopback registry stops
//! when the pull section ends, also on error; exit code 2 on errors.

mod data;
mod gentree;
mod machine;
mod render;
mod results;
mod run;
mod sections;
mod timing;
mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::results::{Machine, Outcome, Results, Settings};
use crate::run::{log, remove, Ctx};

const CMDLINE: &str = "console=ttyS0 reboot=k panic=30 pci=off nomodules random.trust_cpu=on";

#[derive(Parser)]
#[command(name = "eifbake-bench", about = "eifbake's benchmarks: writes bench/RESULTS.md")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and write the report and the JSON.
    Run(RunArgs),
    /// Render the report again from a JSON file of an earlier run.
    Render {
        #[arg(long, default_value = "target/bench/results.json")]
        json: PathBuf,
        #[arg(long, default_value = "bench/RESULTS.md")]
        results: PathBuf,
    },
    /// One of the helper programs the benchmark times (see tools.rs).
    #[command(subcommand, hide = true)]
    Tool(tools::Tool),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Size of the main synthetic tree, MiB (at least 16).
    #[arg(long, default_value_t = 512)]
    size_mib: u64,
    /// Runs per timed command; the best wall time counts.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Runs of each command of the apps section (every cold build compiles
    /// the application, so fewer than --runs by default).
    #[arg(long, default_value_t = 2)]
    app_runs: u32,
    /// Run only these sections (comma-separated: pack, sign, measure,
    /// memory, onepass, unpack, pull, apps); the others are reported as
    /// skipped. For trying one section; the checked-in report runs all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The directory of real files the onepass section packs.
    #[arg(long, default_value = "/usr/share")]
    onepass_dir: PathBuf,
    /// Extra tree sizes for the memory section, comma-separated ("" for none).
    #[arg(long, default_value = "128,1024", value_delimiter = ',')]
    scale_mib: Vec<String>,
    /// Small data and one run of everything: 16 MiB tree, 32 MiB scale
    /// tree, eifbake's debug build; a smoke test, under a minute.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
    /// Where to write the JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Work directory (trees, layers, outputs; kept between runs).
    #[arg(long, default_value = "bench/work")]
    work: PathBuf,
    /// AWS eif_build (default: PATH, then target/tools/bin, else installed there).
    #[arg(long, env = "EIF_BUILD")]
    eif_build: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Cmd::Run(args) => run_all(args),
        Cmd::Render { json, results } => render_again(json, results),
        Cmd::Tool(t) => tools::run(t),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eifbake-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The repository's top directory.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ has a parent").to_path_buf()
}

fn render_again(json: &Path, results: &Path) -> Result<()> {
    let text = std::fs::read_to_string(json).with_context(|| format!("read {}", json.display()))?;
    let r: Results =
        serde_json::from_str(&text).with_context(|| format!("{}: not a results file", json.display()))?;
    write_report(&r, results)
}

fn write_report(r: &Results, path: &Path) -> Result<()> {
    let fuzz = std::fs::read_to_string(repo_root().join("fuzz/RESULTS.md")).ok();
    let md = render::markdown(r, fuzz.as_deref());
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, md).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// The settings of a run, and the command line that gives them.
fn settings(a: &RunArgs) -> Result<Settings> {
    let mut scale = Vec::new();
    for s in a.scale_mib.iter().filter(|s| !s.is_empty()) {
        scale.push(
            s.parse::<u64>().with_context(|| format!("--scale-mib: expected MiB integers, got {s:?}"))?,
        );
    }
    if a.runs == 0 || a.app_runs == 0 {
        bail!("--runs, --app-runs: expected a positive integer, got 0");
    }
    let (size_mib, runs, app_runs, scale_mib) =
        if a.quick { (16, 1, 1, vec![32]) } else { (a.size_mib, a.runs, a.app_runs, scale) };
    let scale_arg: Vec<String> = scale_mib.iter().map(u64::to_string).collect();
    let command = if a.quick {
        "cargo run --release --locked -p eifbake-bench -- run --quick".to_string()
    } else {
        format!(
            "cargo run --release --locked -p eifbake-bench -- run --size-mib {size_mib} --runs {runs} --app-runs {app_runs} --scale-mib \"{}\"",
            scale_arg.join(",")
        )
    };
    let command = if a.only.is_empty() { command } else { format!("{command} --only {}", a.only.join(",")) };
    let measure_runs = if a.quick { 1 } else { runs.max(5) };
    Ok(Settings {
        size_mib,
        runs,
        measure_runs,
        app_runs,
        scale_mib,
        quick: a.quick,
        only: a.only.clone(),
        command,
        cmdline: CMDLINE.into(),
    })
}

fn run_all(a: &RunArgs) -> Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let s = settings(a)?;
    let load_start = machine::load();
    let others = machine::others();
    let date = machine::first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let work = root.join(&a.work);
    let res = work.join("results");
    remove(&res)?;
    std::fs::create_dir_all(&res).with_context(|| format!("create {}", res.display()))?;
    let eb = build_eifbake(&root, &res, s.quick)?;
    let eif_build = find_eif_build(&root, &res, a.eif_build.clone(), s.quick);
    let mut ctx = Ctx {
        root: root.clone(),
        work: work.clone(),
        res,
        runs: s.runs,
        measure_runs: s.measure_runs,
        app_runs: s.app_runs,
        vars: BTreeMap::new(),
    };
    set_vars(&mut ctx, &eb, eif_build.as_deref())?;
    let (tree, tree_stats) = data::tree(&work, s.size_mib)?;
    ctx.set("TREE", &tree);
    ctx.set("KERNEL", data::kernel_path(&work));
    let r = run_sections(&mut ctx, &s, &a.onepass_dir);
    let machine = Machine {
        date,
        duration_s: started.elapsed().as_secs(),
        git_branch: machine::first_line(
            "git",
            &["-C", &root.to_string_lossy(), "rev-parse", "--abbrev-ref", "HEAD"],
        ),
        git_rev: machine::first_line(
            "git",
            &["-C", &root.to_string_lossy(), "describe", "--always", "--dirty"],
        ),
        eifbake_version: machine::first_line(&eb.to_string_lossy(), &["--version"]),
        rustc: machine::first_line("rustc", &["--version"]),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model: machine::cpu_model(),
        mem_total_gib: machine::mem_total_gib(),
        kernel: machine::first_line("uname", &["-r"]),
        load_start,
        load_end: machine::load(),
        peers: machine::peers(eif_build.as_deref()),
        user: machine::first_line("id", &["-un"]),
        others,
    };
    let results = Results { settings: s, machine, tree: tree_stats, ..r };
    let json = root.join(&a.json);
    if let Some(d) = json.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
    let out = root.join(&a.results);
    write_report(&results, &out)?;
    log(&format!("wrote {} and {} in {} s", out.display(), json.display(), started.elapsed().as_secs()));
    Ok(())
}

/// Every section, in the report's order; the settings, machine and tree of
/// the result are placeholders the caller fills.
fn run_sections(ctx: &mut Ctx, s: &Settings, onepass_dir: &Path) -> Results {
    let want = |name: &str| s.only.is_empty() || s.only.iter().any(|o| o == name);
    let p = ctx.work.join("pack");
    let prepared = remove(&p).and_then(|_| Ok(std::fs::create_dir_all(&p)?));
    ctx.set("P", &p);
    let pack: Outcome<_> = if want("pack") {
        prepared.and_then(|_| sections::pack::run(ctx)).into()
    } else {
        not_selected(&s.only, "pack")
    };
    let sign = if want("sign") {
        sections::sign::run(ctx, pack.done()).into()
    } else {
        not_selected(&s.only, "sign")
    };
    let measure = if want("measure") {
        sections::pack::aws_eif(ctx)
            .and_then(|eif| {
                ctx.set("MEIF", eif);
                sections::measure::run(ctx)
            })
            .into()
    } else {
        not_selected(&s.only, "measure")
    };
    let memory = if want("memory") {
        sections::memory::run(ctx, s.size_mib, &s.scale_mib).into()
    } else {
        not_selected(&s.only, "memory")
    };
    // Quick mode packs its small synthetic tree instead of real files.
    let onepass_dir = if s.quick { ctx.var("TREE").to_path_buf() } else { onepass_dir.to_path_buf() };
    let onepass = if want("onepass") {
        sections::onepass::run(ctx, &onepass_dir).into()
    } else {
        not_selected(&s.only, "onepass")
    };
    ctx.set("U", ctx.work.join("unpack"));
    ctx.set("PL", ctx.work.join("pull"));
    let (unpack, pull) = if want("unpack") || want("pull") {
        let layers = data::layers(ctx, s.size_mib).map(|l| {
            ctx.set("L", l[0].path.parent().expect("layers live in a directory"));
            l
        });
        match layers {
            Ok(l) => (
                if want("unpack") {
                    sections::unpack::run(ctx, &l).into()
                } else {
                    not_selected(&s.only, "unpack")
                },
                if want("pull") {
                    sections::pull::run(ctx, &l).into()
                } else {
                    not_selected(&s.only, "pull")
                },
            ),
            Err(e) => (Outcome::Skipped(format!("{e:#}")), Outcome::Skipped(format!("{e:#}"))),
        }
    } else {
        (not_selected(&s.only, "unpack"), not_selected(&s.only, "pull"))
    };
    let apps = if want("apps") { sections::apps::run(ctx).into() } else { not_selected(&s.only, "apps") };
    Results {
        settings: s.clone(),
        machine: placeholder_machine(),
        tree: Default::default(),
        pack,
        sign,
        measure,
        memory,
        unpack,
        pull,
        apps,
        onepass,
    }
}

/// The outcome of a section `--only` left out.
fn not_selected<T>(only: &[String], name: &str) -> Outcome<T> {
    Outcome::Skipped(format!("{name} not selected (--only {})", only.join(",")))
}

fn placeholder_machine() -> Machine {
    Machine {
        date: String::new(),
        duration_s: 0,
        git_branch: String::new(),
        git_rev: String::new(),
        eifbake_version: String::new(),
        rustc: String::new(),
        cpus: 0,
        cpu_model: String::new(),
        mem_total_gib: 0.0,
        kernel: String::new(),
        load_start: String::new(),
        load_end: String::new(),
        peers: vec![],
        user: String::new(),
        others: vec![],
    }
}

fn set_vars(ctx: &mut Ctx, eb: &Path, eif_build: Option<&Path>) -> Result<()> {
    ctx.set("EB", eb);
    ctx.set("BENCH", std::env::current_exe().context("where is eifbake-bench?")?);
    ctx.set("CMDLINE", CMDLINE);
    ctx.set("SIGN_CERT", ctx.root.join("tests/data/signing/signer1.pem"));
    ctx.set("SIGN_KEY", ctx.root.join("tests/data/signing/signer1.key"));
    if let Some(p) = eif_build {
        ctx.set("EIF_BUILD", p);
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Build eifbake (release; the dev profile in quick mode) and return its path.
fn build_eifbake(root: &Path, res: &Path, quick: bool) -> Result<PathBuf> {
    log(&format!("building eifbake ({})", if quick { "debug" } else { "release" }));
    let mut c = Command::new(cargo());
    c.current_dir(root).args(["build", "--locked", "-p", "eifbake", "--bin", "eifbake"]);
    if !quick {
        c.arg("--release");
    }
    let out = c.output().context("cannot run cargo")?;
    std::fs::write(res.join("build.log"), &out.stderr)?;
    if !out.status.success() {
        bail!("cargo build of eifbake failed (see {})", res.join("build.log").display());
    }
    Ok(root.join(if quick { "target/debug/eifbake" } else { "target/release/eifbake" }))
}

/// AWS eif_build: the given one, on PATH, in target/tools/bin, else
/// installed there with cargo (not in quick mode: too slow).
fn find_eif_build(root: &Path, res: &Path, given: Option<PathBuf>, quick: bool) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("eif_build")).find(|c| c.is_file()));
    let tools = root.join("target/tools/bin/eif_build");
    if let Some(p) = given.into_iter().chain(on_path).chain([tools.clone()]).find(|c| c.is_file()) {
        return Some(p);
    }
    if quick {
        log("AWS eif_build not found (scripts/deps.sh --with-eif-build installs it)");
        return None;
    }
    log("installing AWS eif_build into target/tools (cargo install --locked, a few minutes)");
    let ok = Command::new(cargo())
        .args(["install", "--locked", "eif_build", "--version", "0.2.1", "--root"])
        .arg(root.join("target/tools"))
        .stderr(std::fs::File::create(res.join("eif_build-install.log")).ok()?)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(tools)
}
