//! Run one build step inside an OCI runtime bundle, with no network (a
//! fetch step: the outside world only, see [`network`]).
//!
//! What this module is for: given a root filesystem directory, the sources
//! to mount read-only, a shell script and the step's extra environment, write
//! a `config.json` (with `oci-spec`'s runtime types) into a private bundle
//! directory and run it with `crun` (default) or `runc`. The step sees:
//!
//! - fresh mount, pid, ipc, uts and network namespaces: the network namespace
//!   holds only its own `lo` (the runtime brings it up), so nothing outside
//!   the step is reachable, loopback servers of the host included. A fetch
//!   step ([`StepRun::network`], the recipe's `network = true`) is the one
//!   exception: it joins a network namespace of its own that `pasta`
//!   connects to the outside world in user mode ([`network`] says how and
//!   why pasta). It never shares the host's network namespace, so the
//!   host's interfaces, abstract unix sockets and loopback services stay out
//!   of reach (unless whoever runs eifbake lists loopback ports in
//!   [`HOST_PORTS_ENV`]; a recipe cannot). Everything else below is the same
//!   for fetch steps;
//! - exactly the fixed environment of [`fixed_env`] (HOME, LANG, LC_ALL,
//!   PATH, SOURCE_DATE_EPOCH, TZ) plus the
//!   step's own variables, which may not redefine the fixed ones;
//! - the file-owner part of root's capabilities (`step_capabilities`, from
//!   [`policy::STEP_CAPABILITIES`]: chown, dac_override, fowner, fsetid,
//!   kill, setuid, setgid; no mknod, chroot, network or admin), no new
//!   privileges;
//! - a seccomp filter as strict as Docker's default ([`seccomp`]): no new
//!   namespaces (`unshare -U` fails), no mount, keyrings, BPF, perf, ptrace,
//!   modules or reboot; refused calls fail with `EPERM`;
//! - fixed resource limits ([`policy::STEP_RLIMITS`]: no core dumps, 4096
//!   open files, 4096 processes per user) and, where a device cgroup
//!   applies, access to the standard devices only ([`policy`]);
//! - hostname `eifbake`, user 0:0, umask 022 (the spec's `process.user.umask`,
//!   honoured by crun and runc ≥ 1.1; the tests check it inside the step);
//! - the sources bound read-only at their mount points, a fresh empty host
//!   directory bound read-write at `/out`, `/proc` (with `/proc/kcore` and
//!   the other host-revealing files masked, `/proc/sys` read-only), a tmpfs
//!   `/dev` with only the runtime's standard device nodes (no `/dev/kvm`,
//!   no block devices), a read-only `/sys` and a tmpfs `/tmp`.
//!
//! The root filesystem is used read-write in place: the caller makes a fresh
//! copy per step (the layer extractor does, leaving out the image's device
//! nodes, which crun would let a step open), or gives a read-only root the
//! step starts from ([`StepRun::lower`]) below an overlay whose upper layer
//! is the step's own directory ([`overlay`]). Either way a step may write
//! anywhere, but only `/out` is collected. The script runs as `/bin/sh -euc SCRIPT`,
//! as process 1 of the step, so its environment is exactly the one given
//! (the shell itself then adds `PWD` and `SHLVL` for its children).
//!
//! Output of the step (stdout and stderr, interleaved by line) is streamed to
//! a log file capped at [`LOG_LIMIT`] bytes; the last [`TAIL_LINES`] lines are
//! kept in memory for the error message. A failing, timed-out or unstartable
//! step returns an error naming the step, the command, the exit status and
//! the tail of its output, and its `/out` directory is removed.
//!
//! Lifetime: a step's processes die with eifbake (`kill -9` included), on
//! its timeout and on Ctrl-C, under crun and runc alike: the runtime runs as
//! process 1 of its own pid namespace, tied to eifbake (see `supervise`).
//! The container's runtime state is deleted after every run, and the bundle
//! (which holds the state directory) is removed.
//!
//! Hosts: crun runs with `--cgroup-manager=disabled` (CI containers rarely
//! delegate cgroups), so there the device rules and the pids limit of
//! `linux.resources` do not apply and the capabilities and seccomp filter
//! are what keep devices out of reach. crun 1.8 still refuses
//! hybrid cgroup hosts whose cgroup2 hierarchy has controllers; there it is
//! started in a private mount namespace with that hierarchy detached (see
//! `hide_unified_cgroup`: unmounted as real root, covered by an empty tmpfs
//! in a user namespace, where it cannot be unmounted). runc needs the
//! cgroups it finds usable.
//!
//! Rootless: when eifbake is not real root ([`crate::userns::Privilege`]),
//! the runtime is started as root of a user namespace, and sees the same
//! spec, so the step's view (uid 0, environment, hostname, umask, mounts)
//! is the same. Under `unshare -r` that is the namespace eifbake is in; for
//! a plain user it is one made per step ([`crate::userns::Holder`]) that
//! maps the user to 0 and, with `newuidmap` and `/etc/subuid` ranges, those
//! ranges to 1, 2, … (else only 0 is mapped, and chown to other ids fails).
//! Files a step gives to those other ids are given back to the caller after
//! the step (`/out` and the root filesystem), so they can be read and
//! removed. When no user namespace can be had, the error names the kernel
//! setting that forbids it, and a missing runtime is told apart from one
//! that could not start. Two things a rootless step sees differently: the
//! image's files all belong to root (the layers were extracted by the
//! caller), and where `setgroups` is denied (under `unshare -r`, or with
//! one id mapped) the runtime cannot clear the supplementary groups, so the
//! step keeps the caller's (its own group shows as 0).
//!
//! Architectures: a step runs its image's programs, so an image for another
//! architecture (an arm64 image on an x86_64 host) needs an emulator the
//! kernel starts by itself: a `binfmt_misc` handler (qemu-user) registered
//! with the F flag. [`execution_for`] tells, before any runtime starts,
//! whether the host has one; the build refuses the step when it does not.
//!
//! What it is not for: building root filesystems (the layer extractor),
//! deciding which outputs go into the enclave (the build command), bounding
//! memory or CPU (a step is kept from escaping, not from using the host's
//! resources: only the limits above are set), or caching steps.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount as OciMount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};

use crate::epoch::Epoch;
use crate::platform::Arch;
use crate::userns::{Holder, Mapping, Privilege};

pub mod network;
mod overlay;
pub mod policy;
pub mod seccomp;
mod supervise;

pub use overlay::can_name as overlay_can_name;
use overlay::{OverlayRoot, MERGED};

pub use network::{NetworkAccess, HOST_PORTS_ENV};

/// The fixed `PATH` inside every step.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The fixed hostname inside every step.
pub const HOSTNAME: &str = "eifbake";
/// The umask every step runs with.
pub const UMASK: u32 = 0o022;
/// The most bytes of step output kept in the log file; the rest is counted and dropped.
pub const LOG_LIMIT: u64 = 16 << 20;
/// How many trailing lines of output an error message shows.
pub const TAIL_LINES: usize = 30;
/// The default time limit of one step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which OCI runtime runs the bundle: parsed once from the command line's
/// `--runtime` (clap's `ValueEnum`: `crun`, `runc`) and passed as this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Runtime {
    #[default]
    Crun,
    Runc,
}

impl Runtime {
    pub fn program(self) -> &'static str {
        match self {
            Runtime::Crun => "crun",
            Runtime::Runc => "runc",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.program())
    }
}

/// A host path bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub guest: String,
    pub readonly: bool,
}

/// Everything one step run needs.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The step's name, for messages.
    pub name: String,
    /// The root filesystem directory, fresh for this step (it is written
    /// to). With [`StepRun::lower`], the overlay's upper directory instead:
    /// empty at the start, it receives every change the step makes.
    pub rootfs: PathBuf,
    /// A root filesystem the step starts from without a copy: the read-only
    /// lower layer of an overlay whose upper layer is `rootfs`, mounted in
    /// the runtime's private mount namespace (see [`Sandbox::overlay_usable`]).
    /// Nothing the step does writes into it.
    pub lower: Option<PathBuf>,
    /// Sources and earlier steps' outputs (normally read-only).
    pub mounts: Vec<Bind>,
    /// Absolute working directory inside the sandbox.
    pub workdir: String,
    /// Shell script, run with `/bin/sh -euc`.
    pub script: String,
    /// Extra environment on top of [`fixed_env`].
    pub env: BTreeMap<String, String>,
    pub epoch: Epoch,
    /// Host directory that becomes `/out`; must not exist yet, and is removed on failure.
    pub out_dir: PathBuf,
    /// Where the step's output goes (created or truncated).
    pub log: PathBuf,
    pub timeout: Duration,
    /// `None` (every ordinary step): a fresh network namespace with only
    /// `lo`. `Some` (a fetch step): the outside world through `pasta`
    /// ([`network`]), never the host's loopback unless the access lists ports.
    pub network: Option<NetworkAccess>,
    /// `UID:GID` the script runs as; `None`: 0:0.
    pub user: Option<(u32, u32)>,
    /// `out_dir` exists already and is used as it is (a root step whose
    /// root has an `/out` of its own: `out_dir` is that directory, checked
    /// not to be a symlink); otherwise it must not exist.
    pub keep_out: bool,
}

/// What a successful step run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub out_dir: PathBuf,
    pub log: PathBuf,
    /// Bytes of output the step wrote (including any beyond the log limit).
    pub output_bytes: u64,
    pub duration: Duration,
}

/// The environment every step starts from, sorted by name.
pub fn fixed_env(epoch: Epoch) -> BTreeMap<String, String> {
    [
        ("HOME", "/root".to_string()),
        ("LANG", "C".to_string()),
        ("LC_ALL", "C".to_string()),
        ("PATH", PATH.to_string()),
        ("SOURCE_DATE_EPOCH", epoch.to_string()),
        ("TZ", "UTC".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs steps with one OCI runtime.
#[derive(Debug, Clone)]
pub struct Sandbox {
    runtime: Runtime,
}

impl Sandbox {
    pub fn new(runtime: Runtime) -> Sandbox {
        Sandbox { runtime }
    }

    /// The OCI runtime spec for a step, with `bundle_rootfs` as the root
    /// path and a fresh network namespace.
    pub fn spec(&self, step: &StepRun) -> Result<Spec> {
        self.spec_in(step, None, None)
    }

    /// [`Sandbox::spec`] for a fetch step when `joined` is given (see
    /// [`network`]): joining that network namespace instead of making a
    /// fresh one, with that `resolv.conf` bound read-only at `/etc/resolv.conf`;
    /// a step with a [`StepRun::lower`] has its root at [`MERGED`] in `bundle`.
    pub fn spec_in(
        &self,
        step: &StepRun,
        joined: Option<&network::Joined>,
        bundle: Option<&Path>,
    ) -> Result<Spec> {
        let netns = joined.map(|j| j.netns.as_path());
        let at = format!("step {:?}", step.name);
        let env = step_env(&at, step)?;
        guest_path(&at, "workdir", &step.workdir)?;
        let rootfs = fs::canonicalize(&step.rootfs)
            .with_context(|| format!("{at}: rootfs {} is not accessible", step.rootfs.display()))?;
        // What the step will see at / (an overlay's lower layer holds it all at the start).
        let seen = step.lower.as_deref().unwrap_or(&rootfs);
        // Not followed: an absolute link such as /bin/sh -> /bin/busybox means the rootfs's file.
        if seen.join("bin/sh").symlink_metadata().is_err() {
            bail!("{at}: rootfs {} has no /bin/sh to run the step's script", seen.display());
        }
        // An overlay is mounted in the bundle, where the runtime finds it.
        let rootfs = match (&step.lower, bundle) {
            (Some(_), Some(b)) => b.join(MERGED),
            (Some(_), None) => bail!("{at}: an overlay root needs the bundle it is mounted in"),
            (None, _) => rootfs,
        };
        let mut spec = Spec::default();
        spec.set_version("1.0.2".to_string())
            .set_hostname(Some(HOSTNAME.to_string()))
            .set_process(Some(step_process(step, &env)?))
            .set_root(Some(RootBuilder::default().path(rootfs).readonly(false).build()?))
            .set_mounts(Some(step_mounts(&at, step, joined)?))
            .set_annotations(None)
            .set_linux(Some(step_linux(netns)?));
        Ok(spec)
    }

    /// Run one step; on success `/out` holds what it wrote, on failure nothing is left there.
    ///
    /// As real root the runtime runs as it is. Otherwise it runs as root of
    /// a user namespace: the one eifbake is in already (`unshare -r`), or, for
    /// a plain user, one made for the step ([`crate::userns::Holder`]). There
    /// files a step gave to other ids are handed back to the caller
    /// afterwards, in `/out` and in the root filesystem, so both can be read
    /// and removed.
    pub fn run(&self, step: &StepRun) -> Result<StepReport> {
        if step.keep_out {
            if !step.out_dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                bail!("step {:?}: {} is not a directory", step.name, step.out_dir.display());
            }
        } else if step.out_dir.symlink_metadata().is_ok() {
            bail!(
                "step {:?}: output directory {} already exists; each run needs a fresh one",
                step.name,
                step.out_dir.display()
            );
        }
        let ns = step_namespace().with_context(|| format!("step {:?} cannot run", step.name))?;
        fs::create_dir_all(&step.out_dir)
            .with_context(|| format!("step {:?}: cannot create {}", step.name, step.out_dir.display()))?;
        let out_dir = fs::canonicalize(&step.out_dir)?;
        let step_abs = StepRun { out_dir: out_dir.clone(), ..step.clone() };
        let mut result = self.run_inner(&step_abs, ns.as_ref());
        if let Some(ns) = ns.as_ref().filter(|ns| ns.mapping().is_multi()) {
            let back = ns.hand_back(&[&out_dir, &step.rootfs]);
            if let (Ok(_), Err(e)) = (&result, back) {
                result = Err(e.context(format!("step {:?}: cannot take back its outputs", step.name)));
            }
        }
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = fs::remove_dir_all(&out_dir);
                Err(e)
            }
        }
    }

    fn run_inner(&self, step: &StepRun, ns: Option<&Holder>) -> Result<StepReport> {
        let bundle = tempfile::Builder::new()
            .prefix("eifbake-bundle.")
            .tempdir()
            .context("cannot create a bundle directory")?;
        // Dropped (pasta and the namespace gone) after the runtime's state is deleted.
        let attached = match &step.network {
            Some(access) => {
                Some(network::Attached::start(&step.name, access, &bundle.path().join("pasta.log"))?)
            }
            None => None,
        };
        // The runtime's /proc is its own pid namespace's: the namespace is
        // bound onto this file in its private mount namespace (`supervise`).
        let joined = network::Joined::in_bundle(bundle.path());
        if attached.is_some() {
            joined.create()?;
        }
        let overlay = match &step.lower {
            Some(lower) => Some(OverlayRoot::prepare(step, lower, bundle.path())?),
            None => None,
        };
        let spec = self.spec_in(step, attached.as_ref().map(|_| &joined), Some(bundle.path()))?;
        let config = bundle.path().join("config.json");
        let json = config_json(&spec)?;
        fs::write(&config, json).with_context(|| format!("cannot write {}", config.display()))?;
        let state = bundle.path().join("state");
        fs::create_dir(&state)?;
        // Unique within this process too: runc names the container's cgroups after it.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("eifbake-{}-{run}", std::process::id());

        if let Some(sig) = supervise::interrupted() {
            bail!("step {:?} not started: eifbake was interrupted (signal {sig})", step.name);
        }
        let _interrupts = supervise::Interrupts::catch();
        let started = Instant::now();
        let mut cmd = self.runtime_cmd(&state, ns);
        cmd.arg("run").arg("--bundle").arg(bundle.path()).arg(&id);
        let mut mounts = supervise::PrivateMounts::default();
        if let Some(from) = attached.as_ref().map(network::Attached::netns_path) {
            mounts = mounts.bind(&from, &joined.netns)?;
        }
        if let Some(o) = &overlay {
            mounts = o.mounts(mounts, !Privilege::detect().is_root())?;
        }
        supervise::die_with_parent(&mut cmd, mounts)
            .with_context(|| format!("step {:?}: cannot prepare its runtime", step.name))?;
        // One pipe for stdout and stderr, so the log keeps the order the step wrote in.
        let (reader, writer) = pipe()?;
        cmd.stdin(Stdio::null()).stdout(Stdio::from(writer.try_clone()?)).stderr(Stdio::from(writer));
        let shown = format!("{} run --bundle {} {id}", self.runtime.program(), bundle.path().display());
        let log = Arc::new(Mutex::new(LogSink::create(&step.log)?));
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("step {:?}: {}", step.name, start_error(self.runtime, &e)))?;
        // The child holds the write end now; ours must go or the reader never sees EOF.
        drop(cmd);
        let readers = [spawn_reader(File::from(reader), Arc::clone(&log))];
        let status = wait_with_timeout(&mut child, step.timeout);
        let interrupted = supervise::interrupted();
        let timed_out = status.is_none() && interrupted.is_none();
        if status.is_none() {
            // The child is the waiter: killing it kills the runtime's pid
            // namespace, the step's included (see `supervise`).
            let _ = child.kill();
        }
        let status = match status {
            Some(s) => s,
            None => child.wait()?,
        };
        for r in readers {
            let _ = r.join();
        }
        let _ = self
            .runtime_cmd(&state, ns)
            .args(["delete", "--force", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let sink =
            Arc::try_unwrap(log).map_err(|_| anyhow::anyhow!("log still shared"))?.into_inner().unwrap();
        let (tail, total) = sink.finish()?;

        if timed_out || interrupted.is_some() || !status.success() {
            let how = if let Some(sig) = interrupted {
                format!("interrupted by signal {sig}; the step was stopped")
            } else if timed_out {
                format!("timed out after {} s", step.timeout.as_secs())
            } else {
                describe_status(status)
            };
            let mut msg = format!(
                "step {:?} failed: {how}\n  command: /bin/sh -euc {:?}\n  runtime: {shown}\n  log: {}",
                step.name,
                step.script,
                step.log.display()
            );
            if tail.is_empty() {
                msg.push_str("\n  (no output)");
            } else {
                msg.push_str(&format!("\n  last {} lines of output:", tail.len()));
                for l in &tail {
                    msg.push_str("\n  | ");
                    msg.push_str(l);
                }
            }
            if let Some(why) = ns.and_then(|ns| ns.mapping().single_because.as_deref()) {
                msg.push_str(&format!(
                    "\n  note: the step ran rootless with only its own id mapped (0 inside), because {why}; \
                     a step that changes owners to other ids fails that way"
                ));
            }
            bail!(msg);
        }
        Ok(StepReport {
            out_dir: step.out_dir.clone(),
            log: step.log.clone(),
            output_bytes: total,
            duration: started.elapsed(),
        })
    }

    /// The runtime's command line with its state directory, started inside
    /// `ns` when given, and with the cgroup2 hierarchy hidden where crun
    /// would refuse a hybrid host.
    fn runtime_cmd(&self, state: &Path, ns: Option<&Holder>) -> Command {
        let mut cmd = Command::new(self.runtime.program());
        cmd.arg("--root").arg(state);
        if let Some(ns) = ns {
            // First: the mount namespace below must belong to this user namespace.
            ns.enter(&mut cmd);
        }
        if self.runtime == Runtime::Crun {
            // Steps need no resource control, and cgroups are often not
            // delegated to us (CI containers): never touch them.
            cmd.arg("--cgroup-manager=disabled");
            if hybrid_cgroups_with_v2_controllers() {
                hide_unified_cgroup(&mut cmd);
            }
        }
        cmd
    }
}

/// The user namespace a step's runtime must be started in: none for real
/// root or for root of a user namespace already (`unshare -r`), a new one
/// for a plain user.
fn step_namespace() -> Result<Option<Holder>> {
    match Privilege::detect() {
        Privilege::Root | Privilege::NamespaceRoot => Ok(None),
        Privilege::User { uid, gid } => {
            let name = crate::userns::user_name(uid);
            Ok(Some(Holder::start(Mapping::for_user(uid, gid, name.as_deref()))?))
        }
    }
}

/// Why the runtime did not start, naming the fix: not installed, or
/// installed but refused its namespaces (and then which setting refuses).
fn start_error(runtime: Runtime, e: &std::io::Error) -> String {
    let program = runtime.program();
    let found = crate::userns::find_program(program);
    start_message(program, found.as_deref(), e, Privilege::detect(), crate::userns::diagnose())
}

/// [`start_error`] from what it found: where the program is, who eifbake
/// runs as, and which kernel setting forbids user namespaces, if one does.
fn start_message(
    program: &str,
    found: Option<&Path>,
    e: &std::io::Error,
    who: Privilege,
    forbidden: Option<String>,
) -> String {
    let Some(path) = found else {
        return format!(
            "cannot start {program}: it is not installed or not on PATH (Debian: apt-get install {program}, \
             or choose the other runtime with --runtime)"
        );
    };
    let mut msg = format!("cannot start {program} ({}): {e}", path.display());
    let who = match who {
        Privilege::Root => return msg,
        Privilege::NamespaceRoot => "root of a user namespace",
        Privilege::User { .. } => "a user other than root",
    };
    msg.push_str(&format!(
        "; {program} is installed, but eifbake runs as {who} and could not set up the user and mount \
         namespaces a rootless step needs"
    ));
    if let Some(why) = forbidden {
        msg.push_str(&format!(": {why}"));
    }
    msg
}

/// The step's environment: [`fixed_env`] plus the step's own variables,
/// which may not redefine a fixed one. `at` names the step in errors.
fn step_env(at: &str, step: &StepRun) -> Result<BTreeMap<String, String>> {
    let mut env = fixed_env(step.epoch);
    for (k, v) in &step.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            bail!("{at}: env {k:?}: names cannot be empty or contain '=' or NUL; values cannot contain NUL");
        }
        if env.contains_key(k) {
            bail!("{at}: env {k:?} is fixed by eifbake and cannot be redefined by a step");
        }
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

/// `/bin/sh -euc SCRIPT` as root (or [`StepRun::user`]) with [`UMASK`], no new privileges, the
/// build capabilities and [`policy::rlimits`].
fn step_process(step: &StepRun, env: &BTreeMap<String, String>) -> Result<oci_spec::runtime::Process> {
    let (uid, gid) = step.user.unwrap_or((0, 0));
    let user = UserBuilder::default().uid(uid).gid(gid).umask(UMASK).build()?;
    Ok(ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(vec!["/bin/sh".to_string(), "-euc".to_string(), step.script.clone()])
        .env(env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(&step.workdir)
        .no_new_privileges(true)
        .capabilities(step_capabilities()?)
        .rlimits(policy::rlimits()?)
        .build()?)
}

/// One mount of the spec.
fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Result<OciMount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The standard filesystems (`/proc`, `/dev`, `/sys`, `/tmp`), the step's
/// bind mounts (never over `/out`), then its output directory at `/out`.
fn step_mounts(at: &str, step: &StepRun, joined: Option<&network::Joined>) -> Result<Vec<OciMount>> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
    ];
    for b in &step.mounts {
        guest_path(at, "mount point", &b.guest)?;
        if b.guest == "/out" || b.guest.starts_with("/out/") {
            bail!("{at}: mount point {:?}: /out is the step's own output directory", b.guest);
        }
        let host = fs::canonicalize(&b.host)
            .with_context(|| format!("{at}: mount {}: {} is not accessible", b.guest, b.host.display()))?;
        let host = host.to_str().with_context(|| format!("{at}: {} is not UTF-8", host.display()))?;
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        opts.push(if b.readonly { "ro" } else { "rw" });
        mounts.push(mount(&b.guest, "bind", host, &opts)?);
    }
    let out =
        step.out_dir.to_str().with_context(|| format!("{at}: {} is not UTF-8", step.out_dir.display()))?;
    mounts.push(mount("/out", "bind", out, &["rbind", "nosuid", "nodev", "rw"])?);
    if let Some(j) = joined {
        let conf = j
            .resolv_conf
            .to_str()
            .with_context(|| format!("{at}: {} is not UTF-8", j.resolv_conf.display()))?;
        mounts.push(mount("/etc/resolv.conf", "bind", conf, &["bind", "nosuid", "nodev", "noexec", "ro"])?);
    }
    Ok(mounts)
}

/// The `linux` section: fresh mount, pid, ipc, uts and network namespaces
/// (a fetch step joins the network namespace at `netns`), the default
/// masked and read-only paths, [`policy::resources`] and the seccomp profile
/// of the host's architecture.
fn step_linux(netns: Option<&Path>) -> Result<oci_spec::runtime::Linux> {
    let namespaces = [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| match netns.filter(|_| typ == LinuxNamespaceType::Network) {
        Some(path) => LinuxNamespaceBuilder::default().typ(typ).path(path).build(),
        None => LinuxNamespaceBuilder::default().typ(typ).build(),
    })
    .collect::<Result<Vec<_>, _>>()?;
    Ok(LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .resources(policy::resources(Privilege::detect().is_root())?)
        .seccomp(seccomp::profile(Arch::host())?)
        .build()?)
}

/// Where the kernel lists its `binfmt_misc` handlers (one file per handler).
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How the host runs a step image's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The image is for the host's own architecture.
    Native,
    /// Through this `binfmt_misc` handler (qemu-user), registered with the F
    /// flag so it works inside the step's root filesystem.
    Emulated { handler: PathBuf, interpreter: String },
}

/// Whether programs of an image for `arch` can run in a step on this host,
/// and how; `binfmt` is normally [`BINFMT_MISC`].
///
/// A foreign architecture needs a `binfmt_misc` handler whose magic matches
/// that architecture's ELF executables and which was registered with the F
/// (fix-binary) flag: without it the kernel looks the interpreter up inside
/// the step's root filesystem, where it is not. Debian's `qemu-user-static`
/// registers its handlers that way. The error is a phrase saying what is
/// missing, for the caller to put in a sentence naming the step.
pub fn execution_for(arch: Arch, binfmt: &Path) -> std::result::Result<Execution, String> {
    if Arch::host() == Some(arch) {
        return Ok(Execution::Native);
    }
    let machine = arch.elf_machine();
    let arch = arch.oci();
    let status = fs::read_to_string(binfmt.join("status")).map_err(|_| {
        format!(
            "binfmt_misc is not mounted at {} (no emulator can be registered for {arch} programs)",
            binfmt.display()
        )
    })?;
    if status.trim() != "enabled" {
        return Err(format!(
            "binfmt_misc is disabled ({} says {:?})",
            binfmt.join("status").display(),
            status.trim()
        ));
    }
    // A static executable's ELF header for `arch`: the bytes a handler's magic is compared with.
    let mut sample = [0u8; 20];
    sample[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    sample[16..18].copy_from_slice(&2u16.to_le_bytes());
    sample[18..20].copy_from_slice(&machine.to_le_bytes());
    let mut entries: Vec<PathBuf> = fs::read_dir(binfmt)
        .map_err(|e| format!("cannot list {}: {e}", binfmt.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !matches!(p.file_name().and_then(|n| n.to_str()), Some("status" | "register")))
        .collect();
    entries.sort();
    let mut unusable = Vec::new();
    for path in entries {
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let h = BinfmtHandler::parse(&text);
        if !h.matches(&sample) {
            continue;
        }
        if !h.enabled {
            unusable.push(format!("{} is disabled", path.display()));
        } else if !h.flags.contains('F') {
            unusable.push(format!(
                "{} is registered without the F (fix-binary) flag, so its interpreter {} would be looked up \
                 inside the step's root filesystem",
                path.display(),
                h.interpreter
            ));
        } else {
            return Ok(Execution::Emulated { handler: path, interpreter: h.interpreter });
        }
    }
    if unusable.is_empty() {
        Err(format!("no binfmt_misc handler for {arch} programs is registered in {}", binfmt.display()))
    } else {
        Err(unusable.join("; "))
    }
}

/// One `binfmt_misc` handler, as its file under [`BINFMT_MISC`] shows it.
#[derive(Debug, Default)]
struct BinfmtHandler {
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl BinfmtHandler {
    fn parse(text: &str) -> BinfmtHandler {
        let mut h = BinfmtHandler::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "enabled" => h.enabled = true,
                "interpreter" => h.interpreter = value.to_string(),
                "flags:" => h.flags = value.to_string(),
                "offset" => h.offset = value.parse().unwrap_or(0),
                "magic" => h.magic = hex::decode(value).unwrap_or_default(),
                "mask" => h.mask = hex::decode(value).unwrap_or_default(),
                _ => {}
            }
        }
        h
    }

    /// The kernel's test: every magic byte equals the file's under the mask.
    fn matches(&self, file: &[u8]) -> bool {
        !self.magic.is_empty()
            && self.magic.iter().enumerate().all(|(i, m)| {
                let mask = self.mask.get(i).copied().unwrap_or(0xff);
                file.get(self.offset + i).is_some_and(|b| (b ^ m) & mask == 0)
            })
    }
}

/// The capabilities of a step's root user: [`policy::STEP_CAPABILITIES`],
/// the file-owner part of root that package builds need (the policy module
/// says why each); no mknod, chroot, network or admin.
fn step_capabilities() -> Result<oci_spec::runtime::LinuxCapabilities> {
    policy::capabilities()
}

/// The bytes of a bundle's `config.json` for `spec`.
fn config_json(spec: &Spec) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(spec)?)
}

/// Where a hybrid (v1 + v2) cgroup setup mounts its cgroup2 hierarchy.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// True on hosts with a hybrid cgroup setup whose cgroup2 hierarchy has
/// controllers (here: `hugetlb`). crun 1.8 refuses to start there ("cgroups
/// in hybrid mode not supported, drop all controllers from cgroupv2") even
/// with `--cgroup-manager=disabled`.
fn hybrid_cgroups_with_v2_controllers() -> bool {
    fs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers"))
        .map(|c| !c.trim().is_empty())
        .unwrap_or(false)
}

/// Run the command in a private mount namespace where the cgroup2
/// hierarchy is detached, so crun sees a plain cgroup v1 host. Only the
/// runtime process's view changes; the host's mounts are untouched.
///
/// Real root unmounts it. In a user namespace the mount is locked (it came
/// from a more privileged namespace) and cannot be unmounted, so an empty
/// tmpfs is mounted over it instead, which hides it just as well.
fn hide_unified_cgroup(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe system calls (unshare, mount, umount2) on constant strings.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            let unified = c"/sys/fs/cgroup/unified";
            let tmpfs = c"tmpfs";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::umount2(unified.as_ptr(), libc::MNT_DETACH) != 0
                && libc::mount(
                    tmpfs.as_ptr(),
                    unified.as_ptr(),
                    tmpfs.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The exit code the step's shell returned, as a phrase.
fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".to_string(),
    }
}

fn guest_path(at: &str, what: &str, p: &str) -> Result<()> {
    if !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0') {
        bail!("{at}: {what} {p:?}: expected an absolute path without '.' or '..' components");
    }
    Ok(())
}

/// The child's status, or `None` when `timeout` passed or eifbake was interrupted first.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() >= deadline || supervise::interrupted().is_some() => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// The step's log: a file capped at [`LOG_LIMIT`] bytes plus the last lines in memory.
struct LogSink {
    path: PathBuf,
    file: File,
    written: u64,
    total: u64,
    tail: VecDeque<String>,
    error: Option<std::io::Error>,
}

impl LogSink {
    fn create(path: &Path) -> Result<LogSink> {
        let file =
            File::create(path).with_context(|| format!("cannot create step log {}", path.display()))?;
        Ok(LogSink {
            path: path.to_path_buf(),
            file,
            written: 0,
            total: 0,
            tail: VecDeque::new(),
            error: None,
        })
    }

    fn line(&mut self, line: &[u8]) {
        self.total += line.len() as u64;
        if self.written < LOG_LIMIT && self.error.is_none() {
            let take = (LOG_LIMIT - self.written).min(line.len() as u64) as usize;
            match self.file.write_all(&line[..take]) {
                Ok(()) => self.written += take as u64,
                Err(e) => self.error = Some(e),
            }
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        // Keep a line short enough for an error message.
        let text: String = text.chars().take(400).collect();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }

    fn finish(mut self) -> Result<(Vec<String>, u64)> {
        if self.total > self.written && self.error.is_none() {
            let note =
                format!("\n[eifbake: output truncated: {} of {} bytes kept]\n", self.written, self.total);
            let _ = self.file.write_all(note.as_bytes());
        }
        if let Some(e) = self.error {
            return Err(e).with_context(|| format!("writing step log {}", self.path.display()));
        }
        Ok((self.tail.into_iter().collect(), self.total))
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(std::io::Error::from)
        .context("cannot create a pipe for the step's output")
}

fn spawn_reader<R: Read + Send + 'static>(r: R, log: Arc<Mutex<LogSink>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // Lines are bounded so one endless line cannot grow memory without limit.
            match r.by_ref().take(64 * 1024).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => log.lock().unwrap().line(&buf),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_round_trip() {
        // The command line's spelling is the program's name and its Display.
        for r in [Runtime::Crun, Runtime::Runc] {
            assert_eq!(<Runtime as clap::ValueEnum>::from_str(&r.to_string(), false), Ok(r));
        }
        assert_eq!((Runtime::Crun.program(), Runtime::Runc.program()), ("crun", "runc"));
        assert!(<Runtime as clap::ValueEnum>::from_str("docker", false).is_err());
    }

    #[test]
    fn fixed_env_is_the_documented_set() {
        let env = fixed_env(Epoch(7));
        let lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            lines,
            [
                "HOME=/root",
                "LANG=C",
                "LC_ALL=C",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SOURCE_DATE_EPOCH=7",
                "TZ=UTC"
            ]
        );
    }

    fn step(root: &Path) -> StepRun {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/sh"), b"").unwrap();
        StepRun {
            name: "s".into(),
            rootfs: root.to_path_buf(),
            mounts: vec![],
            workdir: "/".into(),
            script: "true".into(),
            env: BTreeMap::new(),
            epoch: Epoch(1),
            out_dir: root.join("out"),
            log: root.join("log"),
            timeout: DEFAULT_TIMEOUT,
            network: None,
            user: None,
            keep_out: false,
            lower: None,
        }
    }

    #[test]
    fn spec_has_no_network_and_fixed_identity() {
        let dir = tempfile::tempdir().unwrap();
        let s = step(dir.path());
        let spec = Sandbox::new(Runtime::Crun).spec(&s).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some(HOSTNAME));
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.user().uid(), 0);
        assert_eq!(p.user().umask(), Some(0o022));
        let ns: Vec<_> =
            spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(ns.contains(&LinuxNamespaceType::Network));
        let json = serde_json::to_value(&spec).unwrap();
        let out = json["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/out").unwrap();
        assert!(out["options"].as_array().unwrap().contains(&"rw".into()));
    }

    #[test]
    fn a_fetch_steps_spec_differs_only_by_its_network_namespace_and_resolver() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = step(dir.path());
        let plain = serde_json::to_value(Sandbox::new(Runtime::Crun).spec(&s).unwrap()).unwrap();
        let plain_net =
            plain["linux"]["namespaces"].as_array().unwrap().iter().find(|n| n["type"] == "network");
        let plain_path = plain_net.unwrap().get("path").cloned();
        s.network = Some(NetworkAccess::default());
        let joined = network::Joined::in_bundle(dir.path());
        let netns = &joined.netns;
        let mut fetch =
            serde_json::to_value(Sandbox::new(Runtime::Crun).spec_in(&s, Some(&joined), None).unwrap())
                .unwrap();
        // The one extra mount: the resolver pasta forwards, read-only.
        let mounts = fetch["mounts"].as_array_mut().unwrap();
        let resolv = mounts.pop().unwrap();
        assert_eq!(resolv["destination"], "/etc/resolv.conf");
        assert_eq!(resolv["source"], joined.resolv_conf.to_str().unwrap());
        assert!(strings(&resolv["options"]).contains(&"ro"), "{resolv}");
        let nss = fetch["linux"]["namespaces"].as_array_mut().unwrap();
        let net = nss.iter_mut().find(|n| n["type"] == "network").unwrap();
        assert_eq!(net["path"], netns.to_str().unwrap());
        match plain_path {
            Some(p) => net["path"] = p,
            None => drop(net.as_object_mut().unwrap().remove("path")),
        }
        // Capability sets are sets: their order in the JSON is not fixed.
        let sorted = |mut v: serde_json::Value| {
            for set in v["process"]["capabilities"].as_object_mut().unwrap().values_mut() {
                set.as_array_mut().unwrap().sort_by_key(|c| c.to_string());
            }
            v
        };
        assert_eq!(
            sorted(fetch),
            sorted(plain),
            "capabilities, seccomp, mounts and the rest must be the same"
        );
    }

    /// The config.json a step's bundle gets, as JSON.
    fn config(s: &StepRun) -> serde_json::Value {
        let spec = Sandbox::new(Runtime::Crun).spec(s).unwrap();
        serde_json::from_slice(&config_json(&spec).unwrap()).unwrap()
    }

    fn strings(v: &serde_json::Value) -> Vec<&str> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn config_grants_only_the_build_capabilities_and_no_devices() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&step(dir.path()));
        let p = &c["process"];
        assert_eq!(p["noNewPrivileges"], true);
        let want = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
        ];
        for set in ["bounding", "effective", "permitted"] {
            let mut got = strings(&p["capabilities"][set]);
            got.sort();
            assert_eq!(got, want, "{set}");
        }
        for set in ["inheritable", "ambient"] {
            assert!(strings(&p["capabilities"][set]).is_empty(), "{set}");
        }
        let rlimits: Vec<(String, u64, u64)> = p["rlimits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r["type"].as_str().unwrap().into(), r["soft"].as_u64().unwrap(), r["hard"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            rlimits,
            [
                ("RLIMIT_CORE".into(), 0, 0),
                ("RLIMIT_NOFILE".into(), 4096, 4096),
                ("RLIMIT_NPROC".into(), 4096, 4096)
            ]
        );

        let linux = &c["linux"];
        assert!(linux.get("devices").is_none(), "extra device nodes: {}", linux["devices"]);
        let rules = linux["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules[0],
            serde_json::json!({"allow": false, "access": "rwm"}),
            "deny-all must come first"
        );
        let allowed: Vec<String> = rules[1..]
            .iter()
            .map(|r| {
                assert_eq!(r["allow"], true);
                assert_eq!(r["access"], "rwm");
                format!(
                    "{} {}:{}",
                    r["type"].as_str().unwrap(),
                    r["major"],
                    r.get("minor").map_or("*".into(), |m| m.to_string())
                )
            })
            .collect();
        assert_eq!(allowed, ["c 1:3", "c 1:5", "c 1:7", "c 1:8", "c 1:9", "c 5:0", "c 5:2", "c 136:*"]);
        assert_eq!(linux["resources"]["pids"]["limit"], 32768);
        assert!(strings(&linux["maskedPaths"]).contains(&"/proc/kcore"));
        assert!(strings(&linux["readonlyPaths"]).contains(&"/proc/sys"));
        let sys = c["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap();
        assert!(strings(&sys["options"]).contains(&"ro"));
    }

    #[test]
    fn config_seccomp_refuses_escapes_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let sc = config(&step(dir.path()))["linux"]["seccomp"].clone();
        assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(sc["defaultErrnoRet"], 1, "EPERM");
        let arches = strings(&sc["architectures"]);
        match Arch::host() {
            Some(Arch::X86_64) => assert_eq!(arches, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            Some(Arch::Aarch64) => assert_eq!(arches, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
            None => panic!("no expectation for {}", std::env::consts::ARCH),
        }
        let rules = sc["syscalls"].as_array().unwrap();
        let allowing: Vec<&serde_json::Value> =
            rules.iter().filter(|r| r["action"] == "SCMP_ACT_ALLOW").collect();
        let rules_for = |name: &str| -> Vec<&serde_json::Value> {
            rules.iter().filter(|r| strings(&r["names"]).contains(&name)).collect()
        };
        // Written out here, not taken from the module: what must never be allowed.
        for denied in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "ptrace",
            "process_vm_writev",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "delete_module",
            "swapon",
            "swapoff",
            "reboot",
            "setns",
            "userfaultfd",
            "fsopen",
            "move_mount",
            "open_tree",
            "io_uring_setup",
            "syslog",
            "settimeofday",
            "clock_settime",
            "sethostname",
            "iopl",
        ] {
            assert!(rules_for(denied).is_empty(), "{denied} has a rule: {:?}", rules_for(denied));
        }
        for denied in seccomp::DENIED {
            assert!(!allowing.iter().any(|r| strings(&r["names"]).contains(denied)), "{denied} allowed");
        }
        // clone: only without namespace flags; clone3: ENOSYS so libcs fall back to clone.
        let clone = rules_for("clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        let a = &clone[0]["args"][0];
        assert_eq!(
            (a["index"].as_u64(), a["op"].as_str(), a["valueTwo"].as_u64()),
            (Some(0), Some("SCMP_CMP_MASKED_EQ"), Some(0))
        );
        let mask = a["value"].as_u64().unwrap();
        for flag in
            [0x0002_0000u64, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000]
        {
            assert_eq!(mask & flag, flag, "clone flag {flag:#x} not masked");
        }
        assert_eq!(
            mask & 0x0001_0f00,
            0,
            "thread flags (CLONE_VM|FS|FILES|SIGHAND|THREAD) must stay allowed"
        );
        let clone3 = rules_for("clone3");
        assert_eq!(
            (clone3[0]["action"].as_str(), clone3[0]["errnoRet"].as_u64()),
            (Some("SCMP_ACT_ERRNO"), Some(38))
        );
        // What builds need is allowed outright.
        let plain: Vec<&str> =
            allowing.iter().filter(|r| r.get("args").is_none()).flat_map(|r| strings(&r["names"])).collect();
        for needed in [
            "read",
            "write",
            "openat",
            "execve",
            "fchownat",
            "mknodat",
            "wait4",
            "exit_group",
            "futex",
            "symlinkat",
        ] {
            assert!(plain.contains(&needed), "{needed} not allowed");
        }
    }

    #[test]
    fn step_env_cannot_override_fixed_env() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = step(dir.path());
        s.env.insert("TZ".into(), "Europe/Paris".into());
        let e = Sandbox::new(Runtime::Crun).spec(&s).unwrap_err().to_string();
        assert!(e.contains("\"TZ\" is fixed"), "{e}");
        s.env.clear();
        s.workdir = "relative".into();
        assert!(Sandbox::new(Runtime::Crun).spec(&s).is_err());
    }

    #[test]
    fn start_errors_tell_missing_from_refused() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let m = start_message("crun", None, &enoent, Privilege::User { uid: 1, gid: 1 }, None);
        assert!(m.contains("crun: it is not installed or not on PATH (Debian: apt-get install crun"), "{m}");
        let crun = Path::new("/usr/bin/crun");
        let why = Some("user namespaces are disabled: X is 0 (fix: Y)".to_string());
        let m = start_message("crun", Some(crun), &eperm, Privilege::User { uid: 1, gid: 1 }, why);
        assert!(m.contains("cannot start crun (/usr/bin/crun): Operation not permitted"), "{m}");
        assert!(m.contains("crun is installed, but eifbake runs as a user other than root"), "{m}");
        assert!(m.ends_with(": user namespaces are disabled: X is 0 (fix: Y)"), "{m}");
        assert!(!m.contains("not installed"), "{m}");
        let m = start_message("runc", Some(crun), &eperm, Privilege::NamespaceRoot, None);
        assert!(m.contains("runs as root of a user namespace"), "{m}");
        let m = start_message("crun", Some(crun), &eperm, Privilege::Root, None);
        assert_eq!(m, "cannot start crun (/usr/bin/crun): Operation not permitted (os error 1)");
    }

    /// A fake binfmt_misc directory holding `handlers` (name, file text).
    fn binfmt(handlers: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in handlers {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// What Debian's qemu-user-static registers for aarch64 (flags given).
    fn qemu_aarch64(flags: &str) -> String {
        format!(
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n\
             magic 7f454c460201010000000000000000000200b700\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n"
        )
    }

    #[test]
    fn foreign_images_need_a_fix_binary_binfmt_handler() {
        let none = binfmt(&[]);
        if let Some(host) = Arch::host() {
            assert_eq!(execution_for(host, none.path()), Ok(Execution::Native));
        }
        if Arch::host() == Some(Arch::Aarch64) {
            return; // the handler fixtures below are for aarch64 programs
        }
        let e = execution_for(Arch::Aarch64, none.path()).unwrap_err();
        assert!(e.contains("no binfmt_misc handler for arm64"), "{e}");
        let e = execution_for(Arch::Aarch64, &none.path().join("unmounted")).unwrap_err();
        assert!(e.contains("not mounted"), "{e}");

        // A handler for another machine (x86-64 is 0x3e) does not count.
        let x86 = qemu_aarch64("PF").replace("0200b700", "02003e00");
        let d = binfmt(&[("qemu-x86_64", &x86)]);
        assert!(execution_for(Arch::Aarch64, d.path()).unwrap_err().contains("no binfmt_misc handler"));

        let d = binfmt(&[("qemu-aarch64", &qemu_aarch64("P"))]);
        let e = execution_for(Arch::Aarch64, d.path()).unwrap_err();
        assert!(e.contains("qemu-aarch64 is registered without the F (fix-binary) flag"), "{e}");
        let d = binfmt(&[("qemu-aarch64", &qemu_aarch64("PF").replace("enabled", "disabled"))]);
        assert!(execution_for(Arch::Aarch64, d.path()).unwrap_err().contains("qemu-aarch64 is disabled"));

        // Any name will do: the magic decides.
        let d = binfmt(&[("aarch64-static", &qemu_aarch64("POCF"))]);
        assert_eq!(
            execution_for(Arch::Aarch64, d.path()),
            Ok(Execution::Emulated {
                handler: d.path().join("aarch64-static"),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            })
        );
        fs::write(d.path().join("status"), "disabled\n").unwrap();
        assert!(execution_for(Arch::Aarch64, d.path()).unwrap_err().contains("binfmt_misc is disabled"));
    }

    #[test]
    fn log_is_capped_and_tail_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogSink::create(&dir.path().join("log")).unwrap();
        let line = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            sink.line(&line);
        }
        for i in 0..40 {
            sink.line(format!("line {i}\n").as_bytes());
        }
        let (tail, total) = sink.finish().unwrap();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 39");
        assert!(total > LOG_LIMIT);
        let len = fs::metadata(dir.path().join("log")).unwrap().len();
        assert!(len < LOG_LIMIT + 200, "log grew to {len}");
    }
}
