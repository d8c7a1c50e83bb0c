//! The seccomp filter of every step: an allow-list as strict as Docker's default.
//!
//! What this module is for: the `linux.seccomp` section of a step's spec,
//! written here as data (lists of system call names). Any system call not
//! allowed fails with `EPERM`, as in Docker's default profile. The allowed
//! set is what programs need to compute, read and write files, run other
//! programs, use threads, signals, timers, System V and POSIX IPC and local
//! sockets; it matches Docker's default profile for a container without
//! `CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_SYS_CHROOT` and the other
//! capabilities a step lacks, with three further refusals: `ptrace` and
//! `process_vm_readv`/`writev` (Docker allows them on kernels from 4.8) and
//! `io_uring_*` (large kernel surface, not needed: programs fall back to
//! ordinary reads and writes).
//!
//! Refused ([`DENIED`] lists the ones the tests check): new namespaces
//! (`unshare`, `setns`, `clone`/`clone3` with namespace flags), mounts
//! (`mount`, `umount2`, `pivot_root`, the new mount API), `chroot`, kernel
//! keyrings, BPF, perf events, module loading, `kexec`, swap, reboot,
//! clock setting, `open_by_handle_at`, `userfaultfd`, `personality` other
//! than the harmless values, `AF_VSOCK` sockets.
//!
//! `clone3` fails with `ENOSYS` rather than `EPERM`, because a filter cannot
//! look at its flags (they are in memory): C libraries then fall back to
//! `clone`, whose flags the filter checks.
//!
//! Architectures: the filter names the host's native architecture and the
//! ones it can also execute (x86_64: x86_64, x86, x32; aarch64: aarch64,
//! arm); system calls of any other architecture fail. A step that runs a
//! foreign image's programs through qemu-user is filtered on the host's
//! architecture, where the emulator makes its system calls.
//!
//! What it is not for: capabilities and devices ([`super::policy`]).
//!
//! Invariants: no name in [`DENIED`] appears in any allowing rule; the
//! default action is `SCMP_ACT_ERRNO` with `EPERM`; the profile does not
//! depend on anything but the host architecture.

use anyhow::Result;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::platform::Arch as Target;

/// `EPERM`: what a refused system call returns.
pub const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns, so callers fall back to `clone`.
pub const ENOSYS: u32 = 38;

/// Files, directories, extended attributes, descriptors.
const FILES: &[&str] = &[
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

/// Waiting on descriptors and asynchronous I/O (not io_uring).
const POLLING: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "_newselect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Processes, threads and their limits (`clone` has its own rule).
const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_time64",
    "futex_waitv",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "ioprio_get",
    "ioprio_set",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "membarrier",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "sysinfo",
    "times",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// User and group identities (changing them needs `SETUID`/`SETGID`).
const CREDENTIALS: &[&str] = &[
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
];

/// Memory mappings.
const MEMORY: &[&str] = &[
    "brk",
    "madvise",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

/// Signals.
const SIGNALS: &[&str] = &[
    "alarm",
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
];

/// Reading clocks, sleeping, timers (setting clocks needs `SYS_TIME`).
const TIME: &[&str] = &[
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
];

/// Scheduling of the step's own threads.
const SCHEDULING: &[&str] = &[
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
];

/// System V and POSIX IPC (private to the step's IPC namespace).
const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Sockets in the step's own network namespace (`socket` has its own rule).
const SOCKETS: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// x86 only: thread pointer and segment set-up.
const X86: &[&str] = &["arch_prctl", "modify_ldt"];
/// Arm only: cache maintenance and the arm calling conventions of a few calls.
const ARM: &[&str] =
    &["arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"];

/// System calls every step is refused (checked by the tests; the filter
/// refuses everything not allowed, these are the ones that matter most).
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "clock_settime",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "userfaultfd",
    "vhangup",
];

/// The `clone` flags that create namespaces (`CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET`): `clone` is allowed
/// only with none of them.
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `personality` values allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32|UNAME26`, and the query `0xffffffff`.
pub const PERSONALITIES: [u64; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: the one socket family refused (it reaches the hypervisor).
pub const AF_VSOCK: u64 = 40;

/// The seccomp architectures of a host of architecture `host` (`None`: one
/// eifbake does not build for).
pub fn architectures(host: Option<Target>) -> Vec<Arch> {
    match host {
        Some(Target::X86_64) => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        Some(Target::Aarch64) => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        None => vec![Arch::ScmpArchNative],
    }
}

/// Every name allowed unconditionally on a host of architecture `host`, sorted.
pub fn allowed(host: Option<Target>) -> Vec<&'static str> {
    let mut names: Vec<&str> =
        [FILES, POLLING, PROCESSES, CREDENTIALS, MEMORY, SIGNALS, TIME, SCHEDULING, IPC, SOCKETS].concat();
    match host {
        Some(Target::X86_64) => names.extend(X86),
        Some(Target::Aarch64) => names.extend(ARM),
        None => {}
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// The step's `linux.seccomp` for a host of architecture `host` ([`Target::host`]).
pub fn profile(host: Option<Target>) -> Result<LinuxSeccomp> {
    let allow = |names: &[&str]| {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActAllow)
    };
    let arg = |op, value: u64, value_two: u64| {
        LinuxSeccompArgBuilder::default().index(0usize).op(op).value(value).value_two(value_two).build()
    };
    let mut rules: Vec<LinuxSyscall> = vec![allow(&allowed(host)).build()?];
    // (flags & CLONE_NAMESPACE_FLAGS) == 0
    rules.push(
        allow(&["clone"])
            .args(vec![arg(LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, 0)?])
            .build()?,
    );
    rules.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    );
    rules.push(allow(&["socket"]).args(vec![arg(LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, 0)?]).build()?);
    for p in PERSONALITIES {
        rules.push(allow(&["personality"]).args(vec![arg(LinuxSeccompOperator::ScmpCmpEq, p, 0)?]).build()?);
    }
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(architectures(host))
        .syscalls(rules)
        .build()?)
}
