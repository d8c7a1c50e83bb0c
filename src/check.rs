//! `check`: build a recipe several times under varied host conditions,
//! compare the EIFs, and when they differ, find the variation that causes it.
//!
//! Every run is a separate `eifbake build --no-cache --offline` process
//! (this executable), in its own copy of the project (`recipes/` and the
//! lock; a path source outside `recipes/` is not copied, but every source is
//! pre-materialised anyway, see below), with its own store directory. Before
//! the runs, [`check`] fetches every pinned blob into one base store and
//! materialises every pinned source there (both verified by digest / tree
//! hash); each run's store then gets hard links to (or copies of) those
//! blobs and its own fresh copy of each source tree, checked against its
//! tree hash. Blobs and trees are content addressed, so sharing them cannot
//! hide a difference; step outputs are made afresh in every run.
//!
//! Round one runs a control build (no variation) and `runs - 1` builds with
//! every selected variation at once. When all agree, the recipe passes. When
//! not, the bisect (reprotest's auto-build idea) runs a second control: if
//! the two controls differ, the build is not reproducible even without
//! variation (randomness, the clock); otherwise each variation runs alone
//! against the control and those that change the bytes are named.
//!
//! Variations ([`Variation`]), each applied to the child process only:
//! `path` (the project copied to a much deeper directory), `umask` (077 vs
//! 022), `tz` (Pacific/Chatham vs UTC), `locale` (C.UTF-8 vs C), `user` (as
//! root: primary group 65534 and no supplementary groups; the uid stays 0
//! because the OCI runtime needs it; skipped when not root), `env` (noise
//! variables), `cpus` (affinity to CPU 0 vs all), `dirorder` (source trees
//! created in reverse order; see below), `time` (the run starts in a later
//! wall-clock second than the control, waiting for the next second only
//! when the control took less than one; no faketime, which static binaries
//! and the OCI runtime would escape anyway).
//!
//! `dirorder`: on ext4 with `dir_index`, `readdir` order is a hash order that
//! does not depend on creation order, so reversing creation there would vary
//! nothing. On tmpfs, `readdir` lists entries in reverse creation order. So
//! when running as root, [`check`] mounts a private tmpfs and puts every
//! run's source cache (`STORE/eifbake/sources`, a symlink) on it; the trees
//! are created in name order, and in reverse name order for the `dirorder`
//! run, then verified against their tree hashes (a wrong copy would be
//! refused by the build, failing the run for the wrong reason). Without root
//! `dirorder` is skipped with a note. Image root filesystems and step
//! outputs are not reordered.
//!
//! Signing: every run signs as `build` would (same certificate and key
//! file; RFC 6979 makes the signature deterministic), except with a key on
//! a PKCS#11 token: it is checked once, and the runs build unsigned, since
//! a token's random ECDSA nonces would make every signed run differ (the
//! signature covers PCR0 only, which the unsigned runs compare).
//!
//! Not for: explaining a difference byte by byte (that is
//! [`crate::eif::diff`]) or rebuilding someone else's EIF
//! ([`crate::verify`]).

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build::{signing_paths, SignWith};
use crate::digest::Digest;
use crate::eif::diff::{compare, EifDiff};
use crate::eif::Eif;
use crate::lock::Lock;
use crate::oci::layout::{self, Layout};
use crate::oci::Store;
use crate::progress::Progress;
use crate::recipe::{Project, Recipe};

/// One varied condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variation {
    Path,
    Umask,
    Tz,
    Locale,
    User,
    Env,
    Cpus,
    Dirorder,
    Time,
}

impl Variation {
    pub const ALL: [Variation; 9] = [
        Variation::Path,
        Variation::Umask,
        Variation::Tz,
        Variation::Locale,
        Variation::User,
        Variation::Env,
        Variation::Cpus,
        Variation::Dirorder,
        Variation::Time,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variation::Path => "path",
            Variation::Umask => "umask",
            Variation::Tz => "tz",
            Variation::Locale => "locale",
            Variation::User => "user",
            Variation::Env => "env",
            Variation::Cpus => "cpus",
            Variation::Dirorder => "dirorder",
            Variation::Time => "time",
        }
    }

    /// Parse a `--vary` list; empty means all.
    pub fn parse_list(names: &[String]) -> Result<Vec<Variation>> {
        if names.is_empty() {
            return Ok(Variation::ALL.to_vec());
        }
        let mut out = Vec::new();
        for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let v = Variation::ALL.iter().find(|v| v.name() == n).with_context(|| {
                format!(
                    "--vary: unknown variation {n:?}; expected some of {}",
                    Variation::ALL.map(|v| v.name()).join(", ")
                )
            })?;
            if !out.contains(v) {
                out.push(*v);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub lockfile: Option<PathBuf>,
    pub runs: u32,
    pub vary: Vec<Variation>,
    pub keep: bool,
    /// The base store: pinned blobs are fetched into it once and shared.
    pub store: PathBuf,
    pub runtime: crate::sandbox::Runtime,
    pub insecure: Vec<String>,
    pub offline: bool,
    /// The eifbake executable that builds (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Run `diffoscope` on the two differing EIFs when it is installed.
    pub diffoscope: bool,
    /// Whether every run signs (as `build` would).
    pub signing: SignWith,
}

/// One build of the check.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub label: String,
    pub vary: Vec<Variation>,
    pub eif: PathBuf,
    pub sha256: Digest,
    pub seconds: f64,
}

/// What `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub recipe: String,
    /// All runs agree.
    pub reproducible: bool,
    pub runs: Vec<Run>,
    /// Variations not applied, and why.
    pub skipped: Vec<(Variation, String)>,
    /// Two controls (no variation) differ: randomness or the clock.
    pub differs_without_variation: bool,
    /// Variations that alone make the build differ from the control.
    pub causes: Vec<Variation>,
    pub notes: Vec<String>,
    /// The EIF diff between the control and the first differing run.
    pub diff: Option<EifDiff>,
    /// The two differing EIFs (control, other), for `--diffoscope`.
    pub differing: Option<(PathBuf, PathBuf)>,
    /// Where the outputs were kept.
    pub kept: Option<PathBuf>,
    /// What `diffoscope` printed (`--diffoscope`), or why it did not run.
    pub diffoscope: Option<String>,
}

/// A tmpfs mounted for the check, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        fs::create_dir_all(at).ok()?;
        let target = CString::new(at.as_os_str().as_bytes()).ok()?;
        let kind = CString::new("tmpfs").ok()?;
        let opts = CString::new("mode=0755").ok()?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                kind.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                opts.as_ptr() as *const libc::c_void,
            )
        };
        (rc == 0).then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        if let Ok(t) = CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a valid path string; failure only leaves the mount behind.
            unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The recipe's project ([`Project`]), which `check` copies: the recipe
/// must be under a `recipes/` directory.
fn project_of(recipe_path: &Path) -> Result<Project> {
    let project = Project::of(recipe_path);
    if !project.has_recipes_dir {
        bail!(
            "{}: check needs the recipe under a recipes/ directory (it copies the project); move it into \
             one, e.g. recipes/{}",
            project.recipe_file.display(),
            project.recipe_file.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(project)
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// Copy `from` to `to` creating, in every directory, the entries in name
/// order, or in reverse name order with `reverse` (on tmpfs, which lists a
/// directory newest first, the two copies list in opposite orders). Modes,
/// symlinks and contents are kept.
fn copy_ordered(from: &Path, to: &Path, reverse: bool) -> Result<()> {
    fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
    fill_ordered(from, to, reverse)
}

fn fill_ordered(from: &Path, to: &Path, reverse: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut names: Vec<_> =
        fs::read_dir(from)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    if reverse {
        names.reverse();
    }
    let mut dirs = Vec::new();
    for n in &names {
        let (src, dst) = (from.join(n), to.join(n));
        let md = fs::symlink_metadata(&src)?;
        if md.is_dir() {
            fs::create_dir(&dst)?;
            dirs.push((src, dst, md.permissions().mode()));
        } else if md.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    for (src, dst, mode) in dirs {
        fill_ordered(&src, &dst, reverse)?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

struct Ctx<'a> {
    opts: &'a CheckOptions,
    name: String,
    root: PathBuf,
    recipe_rel: PathBuf,
    lock_src: PathBuf,
    work: PathBuf,
    tmpfs: Option<PathBuf>,
    /// The pinned source trees (tree hash, materialised directory in the base store).
    sources: Vec<(Digest, PathBuf)>,
    /// When the control build started (the `time` variation starts later).
    control_start: Option<SystemTime>,
    count: usize,
    /// The `build` flags that sign (absolute paths), or `--unsigned`.
    sign_args: Vec<OsString>,
}

impl Ctx<'_> {
    /// One build, in its own project copy and store, with `vary` applied;
    /// its EIF and sha256.
    fn run(&mut self, label: &str, vary: &[Variation]) -> Result<Run> {
        let i = self.count;
        self.count += 1;
        let dir = self.work.join(format!("run{i}-{label}"));
        let project = if vary.contains(&Variation::Path) {
            dir.join("a/much/deeper/build/directory/than/the/control/uses/project")
        } else {
            dir.join("project")
        };
        let lock_rel = self.copy_project(&project)?;
        let store = self.run_store(&dir, i, vary.contains(&Variation::Dirorder))?;
        let out = dir.join("out");
        let mut cmd = self.build_command(&project, &store, &lock_rel, &out, vary);
        self.wait_for_time(vary);
        let seconds = self.execute(&mut cmd, &dir.join("build.log"), label, vary)?;
        let eif = out.join(format!("{}.eif", self.name));
        let (sha256, _) = Digest::of_reader(
            fs::File::open(&eif).with_context(|| format!("cannot open {}", eif.display()))?,
        )?;
        Ok(Run { label: label.to_string(), vary: vary.to_vec(), eif, sha256, seconds })
    }

    /// Copy `recipes/` and the lock into `project`; returns the lock's path
    /// relative to it.
    fn copy_project(&self, project: &Path) -> Result<PathBuf> {
        fs::create_dir_all(project)?;
        run_cmd(Command::new("cp").arg("-a").arg(self.root.join("recipes")).arg(project), "cp recipes")?;
        let lock_rel = PathBuf::from("lockfiles").join(format!("{}.lock", self.name));
        fs::create_dir_all(project.join("lockfiles"))?;
        fs::copy(&self.lock_src, project.join(&lock_rel))
            .with_context(|| format!("cannot copy {}", self.lock_src.display()))?;
        Ok(lock_rel)
    }

    /// Run `i`'s store in `dir`: the base store's blobs shared, its kept
    /// image signatures copied, its own source cache (trees created in reverse name order when `reverse`)
    /// and step cache.
    fn run_store(&self, dir: &Path, i: usize, reverse: bool) -> Result<PathBuf> {
        let store = Layout::new(dir.join("store"));
        fs::create_dir_all(store.caches())?;
        let base = Layout::new(&self.opts.store);
        // Hard links when the store is on the same file system, else copies.
        let linked = Command::new("cp")
            .arg("-al")
            .arg(base.blob_tree())
            .arg(store.root())
            .stderr(std::process::Stdio::null())
            .status()?;
        if !linked.success() {
            let _ = fs::remove_dir_all(store.blob_tree());
            run_cmd(Command::new("cp").arg("-a").arg(base.blob_tree()).arg(store.root()), "cp blobs")?;
        }
        for f in layout::LAYOUT_FILES {
            if base.root().join(f).exists() {
                fs::copy(base.root().join(f), store.root().join(f))?;
            }
        }
        // The kept image signatures: an offline run checks its [trust] policy with them.
        if base.signatures_root().is_dir() {
            run_cmd(
                Command::new("cp").arg("-a").arg(base.signatures_root()).arg(store.caches()),
                "cp signatures",
            )?;
        }
        // Its source cache: the pinned trees, created in name order (reverse
        // order for `dirorder`), on the tmpfs when there is one, and checked
        // against their tree hashes (the build refuses a wrong copy, which
        // would fail the run for the wrong reason).
        let src_cache = match &self.tmpfs {
            Some(t) => t.join(format!("run{i}")),
            None => dir.join("sources"),
        };
        fs::create_dir_all(&src_cache)?;
        for (tree, from) in &self.sources {
            let dst = src_cache.join(tree.hex());
            copy_ordered(from, &dst, reverse)?;
            let got = crate::sources::tree_hash(&dst, &[])?;
            if got != *tree {
                bail!("a copy of source tree {tree} ({}) hashes to {got}", from.display());
            }
        }
        std::os::unix::fs::symlink(&src_cache, store.sources())?;
        Ok(store.root().to_path_buf())
    }

    /// The `eifbake build` command of one run, with `vary` applied to its
    /// environment and (umask, CPU affinity, group) to the child process.
    fn build_command(
        &self,
        project: &Path,
        store: &Path,
        lock_rel: &Path,
        out: &Path,
        vary: &[Variation],
    ) -> Command {
        let mut cmd = Command::new(&self.opts.exe);
        cmd.current_dir(project)
            .arg("--store")
            .arg(store)
            .arg("build")
            .arg(&self.recipe_rel)
            .arg("--lockfile")
            .arg(lock_rel)
            .arg("--out")
            .arg(out)
            .arg("--no-cache")
            .arg("--runtime")
            .arg(self.opts.runtime.program())
            .arg("--offline")
            .args(&self.sign_args)
            .env_remove("EIFBAKE_STORE")
            .env("EIFBAKE_NO_PROGRESS", "1")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("LANG", "C");
        for r in &self.opts.insecure {
            cmd.arg("--insecure-registry").arg(r);
        }
        if vary.contains(&Variation::Tz) {
            cmd.env("TZ", "Pacific/Chatham");
        }
        if vary.contains(&Variation::Locale) {
            cmd.env("LC_ALL", "C.UTF-8").env("LANG", "C.UTF-8").env("LANGUAGE", "fr");
        }
        if vary.contains(&Variation::Env) {
            cmd.env("EIFBAKE_CHECK_NOISE", "noise")
                .env("CFLAGS", "-O3 -march=native")
                .env("BUILD_ID", "4242");
        }
        let umask: libc::mode_t = if vary.contains(&Variation::Umask) { 0o077 } else { 0o022 };
        let one_cpu = vary.contains(&Variation::Cpus);
        let other_group = vary.contains(&Variation::User);
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                if one_cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if other_group && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0) {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// For the `time` variation, wait until a later wall-clock second than
    /// the control started in; for the control, note when it starts.
    fn wait_for_time(&mut self, vary: &[Variation]) {
        if vary.contains(&Variation::Time) {
            // Start in a later wall-clock second than the control did (no
            // wait at all when the control build took a second or more).
            if let Some(c) = self.control_start {
                let next =
                    Duration::from_secs(c.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 1);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                if now < next {
                    std::thread::sleep(next - now + Duration::from_millis(10));
                }
            }
        }
        if vary.is_empty() && self.control_start.is_none() {
            self.control_start = Some(SystemTime::now());
        }
    }

    /// Run `cmd` with its output in `log`; its time in seconds, or the
    /// error with the log's tail.
    fn execute(&self, cmd: &mut Command, log: &Path, label: &str, vary: &[Variation]) -> Result<f64> {
        let logf = fs::File::create(log)?;
        cmd.stdout(logf.try_clone()?).stderr(logf);
        let start = Instant::now();
        let st = cmd.status().with_context(|| format!("cannot run {}", self.opts.exe.display()))?;
        let seconds = start.elapsed().as_secs_f64();
        if !st.success() {
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "build {label} ({}) failed ({st}); its log ({}):\n{}",
                names(vary),
                log.display(),
                tail.join("\n")
            );
        }
        Ok(seconds)
    }
}

/// Variation names joined with commas, or `none`.
pub fn names(v: &[Variation]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter().map(|v| v.name()).collect::<Vec<_>>().join(",")
    }
}

/// Build, compare, bisect. See the module documentation.
pub fn check(recipe_path: &Path, opts: &CheckOptions) -> Result<CheckReport> {
    let (recipe, lock) = Lock::load_checked_at(recipe_path, opts.lockfile.as_deref())?;
    let project = project_of(recipe_path)?;
    let recipe_rel = PathBuf::from(project.recipe_relative());
    let lock_src = opts.lockfile.clone().unwrap_or_else(|| Lock::default_path(recipe_path, &recipe.name));
    let sign_args = sign_args(&recipe, recipe_path, &opts.signing)?;
    let sources = prepare_base_store(&recipe, &lock, recipe_path, &lock_src, opts)?;

    let scratch =
        tempfile::Builder::new().prefix("eifbake-check-").tempdir().context("cannot create a scratch dir")?;
    let tmpfs = Tmpfs::mount(&scratch.path().join("tmpfs"));
    let (vary, skipped) = usable_variations(&opts.vary, tmpfs.is_some());
    let mut ctx = Ctx {
        opts,
        name: recipe.name.clone(),
        root: project.root,
        recipe_rel,
        lock_src,
        work: scratch.path().join("runs"),
        tmpfs: tmpfs.as_ref().map(|t| t.0.clone()),
        sources,
        control_start: None,
        count: 0,
        sign_args,
    };
    let control = ctx.run("control", &[])?;
    let mut runs = vec![control.clone()];
    for k in 1..opts.runs {
        runs.push(ctx.run(&format!("varied{k}"), &vary)?);
    }
    let first_bad = runs.iter().find(|r| r.sha256 != control.sha256).cloned();
    let mut report = CheckReport {
        recipe: recipe_path.display().to_string(),
        reproducible: first_bad.is_none(),
        runs: Vec::new(),
        skipped,
        differs_without_variation: false,
        causes: Vec::new(),
        notes: Vec::new(),
        diff: None,
        differing: None,
        kept: None,
        diffoscope: None,
    };
    if let Some(bad) = first_bad {
        bisect(&mut ctx, &control, bad, &vary, &mut runs, &mut report)?;
    }
    report.runs = runs;
    drop(tmpfs);
    if opts.keep && !report.reproducible {
        report.kept = Some(scratch.keep());
    }
    Ok(report)
}

/// The `build` flags every run signs with: the paths resolved (and the key
/// checked) once here, given to each build as absolute paths; or
/// `--unsigned`. A key on a PKCS#11 token is checked (the token reached,
/// the key the certificate's) but the runs build unsigned: a token's ECDSA
/// nonces are random, so signed runs would always differ, while the
/// signature covers only PCR0, which the unsigned runs compare.
fn sign_args(recipe: &Recipe, recipe_path: &Path, signing: &SignWith) -> Result<Vec<OsString>> {
    let mut args: Vec<OsString> = vec!["--unsigned".into()];
    if let SignWith::Recipe(o) = signing {
        if let Some((cert, key)) = signing_paths(recipe, recipe_path, o)? {
            crate::signing::load_signer_with(&cert, &key, o.validity, &o.token)?;
            if key.starts_with("pkcs11:") {
                return Ok(args);
            }
            let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
            args = vec!["--signing-certificate".into(), abs(&cert)?.into(), "--private-key".into()];
            args.push(abs(Path::new(&key))?.into());
            if o.validity == crate::signing::Validity::Ignore {
                args.push("--ignore-certificate-validity".into());
            }
        }
    }
    Ok(args)
}

/// Fetch every pinned blob into the base store and materialise (and
/// verify) every pinned source there; the sources' tree hashes and
/// directories, in recipe order.
fn prepare_base_store(
    recipe: &Recipe,
    lock: &Lock,
    recipe_path: &Path,
    lock_src: &Path,
    opts: &CheckOptions,
) -> Result<Vec<(Digest, PathBuf)>> {
    let store = Store::open(&opts.store)?;
    let registry =
        crate::oci::registry::Registry::new(&opts.insecure).with_mirrors(crate::config::mirrors(&[])?);
    crate::fetch::fetch_lock(&store, lock, &registry, opts.offline, &Progress::bytes("fetch", 0))?;
    let cache = crate::sources::SourceCache::new(store.layout().sources());
    let base_dir = Recipe::base_dir(recipe_path);
    let mut sources = Vec::new();
    for (name, source) in &recipe.sources {
        let pin = lock.sources.get(name).with_context(|| {
            format!("sources.{name} is not pinned in {}; run `eifbake lock`", lock_src.display())
        })?;
        sources.push((pin.tree, cache.get(name, source, &base_dir, pin, opts.offline)?));
    }
    Ok(sources)
}

/// The selected variations this host can apply (`user` needs root,
/// `dirorder` a tmpfs), and the skipped ones with why.
fn usable_variations(selected: &[Variation], have_tmpfs: bool) -> (Vec<Variation>, Vec<(Variation, String)>) {
    let mut skipped = Vec::new();
    let mut vary = selected.to_vec();
    // SAFETY: geteuid has no preconditions.
    if vary.contains(&Variation::User) && unsafe { libc::geteuid() } != 0 {
        skipped.push((Variation::User, "not root: cannot change the group of the build".to_string()));
    }
    if vary.contains(&Variation::Dirorder) && !have_tmpfs {
        skipped.push((
            Variation::Dirorder,
            "cannot mount a tmpfs (needs root): on this file system readdir order may not follow creation order"
                .to_string(),
        ));
    }
    vary.retain(|v| !skipped.iter().any(|(s, _)| s == v));
    (vary, skipped)
}

/// Round one differed (`bad` is the first run that did): a second control,
/// then, when it matches the first, each variation alone; the causes, notes
/// and the diff of the control with the differing run go into `report`.
fn bisect(
    ctx: &mut Ctx<'_>,
    control: &Run,
    bad: Run,
    vary: &[Variation],
    runs: &mut Vec<Run>,
    report: &mut CheckReport,
) -> Result<()> {
    let again = ctx.run("control2", &[])?;
    runs.push(again.clone());
    let other = if again.sha256 != control.sha256 {
        report.differs_without_variation = true;
        report.notes.push(
            "not reproducible even without variation: e.g. randomness or the clock (a step that writes \
             the date); the per-variation bisect is skipped because its results would be noise"
                .into(),
        );
        again
    } else {
        for v in vary {
            let r = ctx.run(v.name(), &[*v])?;
            if r.sha256 != control.sha256 {
                report.causes.push(*v);
            }
            runs.push(r);
        }
        if report.causes.is_empty() {
            report.notes.push(
                "no single variation reproduces the difference: a combination of them (or chance) causes it"
                    .into(),
            );
        }
        bad
    };
    let a = Eif::open(&control.eif)?;
    let b = Eif::open(&other.eif)?;
    report.diff = Some(compare(&a, &b, &Progress::bytes("diff", 0))?);
    report.differing = Some((control.eif.clone(), other.eif.clone()));
    if ctx.opts.diffoscope {
        report.diffoscope =
            Some(match Command::new("diffoscope").arg(&control.eif).arg(&other.eif).output() {
                Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
                Err(e) => format!("diffoscope could not run ({e}); install it (Debian: diffoscope)"),
            });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_copies_the_project_root_and_needs_a_recipes_dir() {
        let p = project_of(Path::new("proj/recipes/hello/recipe.toml")).unwrap();
        assert_eq!(
            (p.root.as_path(), p.recipe_relative().as_str()),
            (Path::new("proj"), "recipes/hello/recipe.toml")
        );
        let e = project_of(Path::new("elsewhere/a.toml")).unwrap_err().to_string();
        assert!(e.contains("elsewhere/a.toml: check needs the recipe under a recipes/ directory"), "{e}");
        assert!(e.contains("e.g. recipes/a.toml"), "{e}");
    }

    #[test]
    fn vary_lists() {
        assert_eq!(Variation::parse_list(&[]).unwrap(), Variation::ALL.to_vec());
        let v = Variation::parse_list(&["tz".into(), "path".into(), "tz".into()]).unwrap();
        assert_eq!(v, [Variation::Path, Variation::Tz]);
        let e = Variation::parse_list(&["moon".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown variation \"moon\"") && e.contains("dirorder"), "{e}");
        assert_eq!(names(&[]), "none");
        assert_eq!(names(&[Variation::Umask, Variation::Time]), "umask,time");
    }

    #[test]
    fn ordered_copies_keep_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("d/e")).unwrap();
        for f in ["a", "b", "d/c", "d/e/f"] {
            fs::write(src.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("a", src.join("link")).unwrap();
        let want = crate::sources::tree_hash(&src, &[]).unwrap();
        for reverse in [false, true] {
            let to = dir.path().join(format!("copy-{reverse}"));
            copy_ordered(&src, &to, reverse).unwrap();
            assert_eq!(crate::sources::tree_hash(&to, &[]).unwrap(), want);
        }
    }
}
