//! Tie a step's processes to eifbake: they die when it dies or is interrupted.
//!
//! What this module is for: crun and runc leave the container running when
//! the runtime process is killed (the container's init is only their child).
//! [`die_with_parent`] starts the runtime as process 1 of a fresh pid
//! namespace, with a fresh `/proc`, both killed (`PR_SET_PDEATHSIG`) when
//! eifbake's spawned child goes. The step's own pid namespace is nested in
//! that one, and when a pid namespace's process 1 dies the kernel kills
//! every process in it, nested ones included: so `kill -9` of eifbake, a
//! timeout, or Ctrl-C take every process of the step with them, whatever the
//! runtime. [`Interrupts`] turns SIGINT, SIGTERM and SIGHUP during a step
//! into a flag the step's wait loop sees, so the step is stopped and its
//! runtime state deleted before eifbake returns an error and exits.
//!
//! The process tree of one step:
//!
//! ```text
//! eifbake ─ waiter (forked, never execs; dies with eifbake)
//!             └─ runtime, pid 1 of a new pid namespace (dies with the waiter)
//!                  └─ step's /bin/sh, pid 1 of the step's pid namespace
//! ```
//!
//! The waiter exits with the runtime's status, so eifbake sees the step's
//! exit code as before. Because the runtime sees its own pids, the pid it
//! records in its state is not a host pid: eifbake never asks it to `kill`
//! the container; it kills the waiter, and then asks it to `delete` the
//! (dead) container's state.
//!
//! What it is not for: what a step may do inside (the spec, [`super::policy`],
//! [`super::seccomp`]).
//!
//! Invariants: the waiter's death signal fires when the thread that spawned
//! it ends, so [`super::Sandbox::run`] spawns and waits in one thread. When
//! [`die_with_parent`] cannot make the pid namespace
//! because the caller lacks the privilege (`EPERM`, an unprivileged runtime
//! without its own user namespace), the runtime still gets the death signal
//! but its container does not die with it; with root it always can.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// Mounts made in the runtime's private mount namespace before it starts,
/// so the spec can name what they show by paths the runtime sees; the
/// host's mounts are untouched, and the mounts go with the runtime.
#[derive(Debug, Default)]
pub struct PrivateMounts {
    /// A fetch step's network namespace (`/proc/HOLDER/ns/net`) bound onto
    /// an empty file in the bundle, before the runtime's fresh `/proc`
    /// hides the host's pids.
    bind: Option<(CString, CString)>,
    /// An overlay: mount point and option string.
    overlay: Option<(CString, CString)>,
}

impl PrivateMounts {
    /// Bind `from` onto `to`.
    pub fn bind(mut self, from: &Path, to: &Path) -> io::Result<PrivateMounts> {
        self.bind = Some((cstr(from)?, cstr(to)?));
        Ok(self)
    }

    /// Mount an overlay at `at`: `lower` read-only below `upper`, with
    /// `work` (empty, on `upper`'s filesystem) for the kernel's use. In a
    /// user namespace (`userxattr`) its own attributes are `user.overlay.*`.
    /// Paths holding `,` `:` or `\\` cannot be told apart in the option
    /// string and are refused.
    pub fn overlay(
        mut self,
        at: &Path,
        lower: &Path,
        upper: &Path,
        work: &Path,
        userxattr: bool,
    ) -> io::Result<PrivateMounts> {
        let mut opts = Vec::new();
        for (key, p) in [("lowerdir", lower), ("upperdir", upper), ("workdir", work)] {
            if !super::overlay::can_name(p) {
                return Err(io::Error::other(format!(
                    "{} holds `,`, `:` or `\\`, which an overlay's options cannot carry",
                    p.display()
                )));
            }
            opts.push([key.as_bytes(), b"=", p.as_os_str().as_bytes()].concat());
        }
        if userxattr {
            opts.push(b"userxattr".to_vec());
        }
        self.overlay = Some((cstr(at)?, CString::new(opts.join(&b","[..])).map_err(io::Error::other)?));
        Ok(self)
    }

    fn is_empty(&self) -> bool {
        self.bind.is_none() && self.overlay.is_none()
    }

    /// Make the mounts, in the mount namespace the caller just made.
    ///
    /// # Safety
    ///
    /// Call only between fork and exec: it makes only the async-signal-safe
    /// mount(2) call, on C strings made before the fork.
    unsafe fn make(&self) -> io::Result<()> {
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if let Some((from, to)) = &self.bind {
            check(libc::mount(
                from.as_ptr(),
                to.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
        if let Some((at, opts)) = &self.overlay {
            check(libc::mount(
                c"overlay".as_ptr(),
                at.as_ptr(),
                c"overlay".as_ptr(),
                0,
                opts.as_ptr().cast(),
            ))?;
        }
        Ok(())
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Make the runtime `cmd` starts die with this process, in its own pid
/// namespace, after `mounts` are made in its private mount namespace.
pub fn die_with_parent(cmd: &mut Command, mounts: PrivateMounts) -> io::Result<()> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec. It calls only
    // async-signal-safe system calls (prctl, getppid, unshare, mount, pipe2,
    // fork, poll, close, dup2, close_range, waitpid, kill, signal, _exit) on
    // constant strings, the C strings of `mounts` (made before the fork) and
    // local variables, and never returns in the waiter.
    // That is also the contract of `death_signal`, `runtime_side`,
    // `PrivateMounts::make` and `waiter` (each runs between fork and exec, in
    // a single-threaded child), and the descriptors handed to them are the
    // pipe just created here.
    unsafe {
        cmd.pre_exec(move || {
            death_signal(parent)?;
            if libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) != 0 {
                let e = io::Error::last_os_error();
                // Without the namespaces a mount cannot be private: then fail.
                return if e.raw_os_error() == Some(libc::EPERM) && mounts.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            mounts.make()?;
            let mut alive = [0 as libc::c_int; 2];
            check(libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC))?;
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => runtime_side(alive),
                child => waiter(child, alive),
            }
        });
    }
    Ok(())
}

/// Whether `mounts` can be made where `cmd` runs: `cmd` (a harmless
/// command, such as the runtime's `--version`) is started after making
/// them in a private mount namespace of its own. The answer for a whole
/// build: an overlay the kernel refuses (too old, an upper directory on a
/// filesystem it cannot use, no privilege) says no.
pub fn can_mount(mut cmd: Command, mounts: PrivateMounts) -> bool {
    // SAFETY: as in `die_with_parent`: unshare and `PrivateMounts::make`
    // only, in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            mounts.make()
        });
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}

/// In the process that becomes the runtime (pid 1 of the new namespace).
///
/// # Safety
///
/// Call only between fork and exec, with `alive` the liveness pipe, both
/// ends open and owned by this process.
// SAFETY: the body makes only async-signal-safe system calls (close, prctl,
// poll, _exit, mount) on `alive`, a local pollfd and constant C strings, so
// it is sound in a forked child; `alive` is closed exactly once per end.
unsafe fn runtime_side(alive: [libc::c_int; 2]) -> io::Result<()> {
    libc::close(alive[1]);
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
    // The waiter may have died before the death signal was armed: then its
    // end of the pipe is closed and the poll sees a hang-up at once.
    let mut p = libc::pollfd { fd: alive[0], events: libc::POLLIN, revents: 0 };
    if libc::poll(&mut p, 1, 0) != 0 {
        libc::_exit(137);
    }
    libc::close(alive[0]);
    // The runtime reads /proc/PID of its own children: /proc must be this namespace's.
    check(libc::mount(
        c"proc".as_ptr(),
        c"/proc".as_ptr(),
        c"proc".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        std::ptr::null(),
    ))?;
    Ok(())
}

/// In the waiter: hold the liveness pipe, wait for the runtime, exit as it did.
///
/// # Safety
///
/// Call only between fork and exec, in the parent of `child`, with `alive`
/// the liveness pipe; it never returns.
// SAFETY: the body makes only async-signal-safe system calls (dup2,
// close_range or close, waitpid, signal, kill, getpid, _exit) and reads
// errno through `__errno_location`, which is thread-local and valid in any
// thread; closing every descriptor is sound because the process only exits
// afterwards and owns nothing else that Rust could use again.
unsafe fn waiter(child: libc::pid_t, alive: [libc::c_int; 2]) -> ! {
    // Keep only the liveness pipe's write end (as fd 0): the step's output
    // pipe and std's exec-error pipe must close when the runtime's copies do.
    libc::dup2(alive[1], 0);
    if libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) != 0 {
        for fd in 1..65536 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    while libc::waitpid(child, &mut status, 0) == -1 {
        if *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        libc::signal(sig, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
    libc::_exit(libc::WEXITSTATUS(status))
}

/// Arm SIGKILL on the death of the parent, and give up if it is already gone.
///
/// # Safety
///
/// Call only between fork and exec, in the child of `parent`.
// SAFETY: prctl(PR_SET_PDEATHSIG), getppid and _exit are async-signal-safe
// and take no pointers; exiting without unwinding is what a forked child
// that lost its parent must do.
unsafe fn death_signal(parent: libc::pid_t) -> io::Result<()> {
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
    if libc::getppid() != parent {
        libc::_exit(137);
    }
    Ok(())
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The first interrupting signal received while a step ran (0: none). Sticky:
/// once set, no further step starts.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The signals that stop a step (and then eifbake).
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How many steps run now, and the dispositions to restore when none does.
static INSTALLED: Mutex<(usize, Vec<libc::sigaction>)> = Mutex::new((0, Vec::new()));

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = INTERRUPTED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// While alive, SIGINT, SIGTERM and SIGHUP set a flag ([`interrupted`])
/// instead of killing eifbake; the previous dispositions come back when the
/// last one is dropped.
pub struct Interrupts(());

impl Interrupts {
    pub fn catch() -> Interrupts {
        let mut g = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            g.1 = SIGNALS
                .iter()
                .map(|&sig| {
                    // SAFETY: all-zero is a valid `sigaction` (a plain C struct);
                    // `new` and `old` are live locals for the call; `on_signal`
                    // only does an atomic store, which is async-signal-safe.
                    unsafe {
                        let mut new: libc::sigaction = std::mem::zeroed();
                        new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                        new.sa_flags = libc::SA_RESTART;
                        libc::sigemptyset(&mut new.sa_mask);
                        let mut old: libc::sigaction = std::mem::zeroed();
                        libc::sigaction(sig, &new, &mut old);
                        old
                    }
                })
                .collect();
        }
        g.0 += 1;
        Interrupts(())
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        let mut g = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            for (sig, old) in SIGNALS.iter().zip(&g.1) {
                // SAFETY: `old` is a disposition sigaction filled in earlier for
                // this very signal, valid to install again; no pointer is kept.
                unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
            }
        }
    }
}

/// The signal that interrupted a step of this process, if any did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
