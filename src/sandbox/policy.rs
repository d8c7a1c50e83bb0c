//! What a step's root may do: capabilities, devices, resource limits.
//!
//! What this module is for: the parts of a step's OCI spec that bound its
//! privileges, as data, so the spec builder and the tests read one source.
//! The seccomp filter lives next door ([`super::seccomp`]).
//!
//! Capabilities ([`STEP_CAPABILITIES`]): a step runs as root of its own root
//! filesystem, and package builds need only the file-owner part of root:
//!
//! - `CHOWN`: `install -o`, `chown`, tar and cpio keeping owners;
//! - `DAC_OVERRIDE`: root writing or removing files and directories it does
//!   not own or whose mode forbids it (read-only git objects, `0555` trees
//!   that `rm -rf` must empty, `cp` over a `0444` file);
//! - `FOWNER`: `chmod`, `touch -d` and `setfacl` on files after they were
//!   chowned to another user;
//! - `FSETID`: keeping the set-user/group-ID bits a package installs when it
//!   chowns or writes them (they never elevate: no new privileges is set);
//! - `SETUID`, `SETGID`: tools that drop to an unprivileged user to build or
//!   test (`apt`'s `_apt`, `su`, `setpriv`, test suites refusing root);
//! - `KILL`: signalling those dropped-privilege children; only processes of
//!   the step's own pid namespace are visible.
//!
//! Not granted, although Docker grants them: `MKNOD` (a step could create
//! and open host block or character devices, e.g. `/dev/loop0`, wherever no
//! device cgroup applies; fifos and sockets need no capability), `SYS_CHROOT`
//! (no build here needs it; `debootstrap`-style chroots belong in image
//! layers), `NET_BIND_SERVICE` and `NET_RAW` (a step has no network),
//! `AUDIT_WRITE` (there is no audit socket in a private network namespace),
//! `SETPCAP` and `SETFCAP` (changing capability sets and file capabilities;
//! Debian's maintainer scripts fall back to set-user-ID bits). `SYS_ADMIN`
//! and the other administrative capabilities are never granted.
//!
//! Devices: `/dev` is a tmpfs holding only the runtime's standard nodes
//! ([`STANDARD_DEVICES`]: null, zero, full, random, urandom, tty, the
//! `devpts` ptmx and pts, plus the `/dev/shm` tmpfs). Where a device cgroup
//! applies (runc, or any runtime with cgroups), `linux.resources.devices`
//! denies every device and allows exactly those. crun runs without cgroups,
//! so there the defence is that no node for anything else exists and none
//! can be made (no `MKNOD`), and that mounting a filesystem which could hold
//! one is refused (no `SYS_ADMIN`, and seccomp refuses `mount`). "No node
//! exists" includes the root filesystem: the build extracts a step's image
//! without its device nodes (the caller's job; this module cannot see them).
//!
//! Resource limits ([`STEP_RLIMITS`]): fixed values, the same on every host,
//! so a step's `ulimit -a` does not depend on where it runs: no core dumps
//! (they would land in the tree or reach the host's core handler), a bound
//! on open files and on processes per user. The values are at most the
//! hard limits hosts start with (4096 is the kernel's own open-file hard
//! limit), because a runtime may not raise a hard limit above its own
//! (crun refuses, as root too). Root of the initial user
//! namespace is exempt from `RLIMIT_NPROC`; where cgroups apply the pids
//! controller bounds the step too ([`PIDS_LIMIT`]). Memory and CPU are not
//! limited (steps are trusted not to exhaust the host, only not to escape).
//!
//! What it is not for: mounts, namespaces and the environment (the spec
//! builder in the parent module).
//!
//! Invariants: the capability set is the same in the bounding, effective
//! and permitted sets, and inheritable and ambient are empty; every allowed
//! device is also in [`STANDARD_DEVICES`]; the lists are sorted and fixed
//! (the spec, hence a step's environment, does not depend on the host).

use anyhow::Result;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};

/// The capabilities of a step's root user (see the module doc for why each).
pub const STEP_CAPABILITIES: [Capability; 7] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
];

/// A character device a step may use: (path, major, minor); minor `None` is every minor.
pub type Device = (&'static str, i64, Option<i64>);

/// The device nodes a step sees and may open: the runtimes' standard set.
pub const STANDARD_DEVICES: [Device; 8] = [
    ("/dev/null", 1, Some(3)),
    ("/dev/zero", 1, Some(5)),
    ("/dev/full", 1, Some(7)),
    ("/dev/random", 1, Some(8)),
    ("/dev/urandom", 1, Some(9)),
    ("/dev/tty", 5, Some(0)),
    ("/dev/ptmx", 5, Some(2)),
    ("/dev/pts/*", 136, None),
];

/// Resource limits of every step: (type, soft = hard).
pub const STEP_RLIMITS: [(PosixRlimitType, u64); 3] = [
    (PosixRlimitType::RlimitCore, 0),
    (PosixRlimitType::RlimitNofile, 4096),
    (PosixRlimitType::RlimitNproc, 4096),
];

/// The pids cgroup limit, where cgroups apply.
pub const PIDS_LIMIT: i64 = 32768;

/// [`STEP_CAPABILITIES`] as the spec's capability sets.
pub fn capabilities() -> Result<LinuxCapabilities> {
    let set: oci_spec::runtime::Capabilities = STEP_CAPABILITIES.into_iter().collect();
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?)
}

/// The device cgroup rules: deny everything, then allow [`STANDARD_DEVICES`].
pub fn device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    let mut rules = vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?];
    for (_, major, minor) in STANDARD_DEVICES {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(major)
            .access("rwm");
        if let Some(minor) = minor {
            rule = rule.minor(minor);
        }
        rules.push(rule.build()?);
    }
    Ok(rules)
}

/// `linux.resources`: the device rules, and the pids limit when `cgroups`
/// (real root). A rootless runtime cannot create cgroups, and runc then
/// refuses to start a container that asks for a pids limit; the device
/// rules it skips, and the capabilities and seccomp filter stay.
pub fn resources(cgroups: bool) -> Result<LinuxResources> {
    let mut r = LinuxResourcesBuilder::default();
    r = r.devices(device_rules()?);
    if cgroups {
        r = r.pids(LinuxPidsBuilder::default().limit(PIDS_LIMIT).build()?);
    }
    Ok(r.build()?)
}

/// `process.rlimits`: [`STEP_RLIMITS`].
pub fn rlimits() -> Result<Vec<PosixRlimit>> {
    STEP_RLIMITS
        .iter()
        .map(|&(typ, n)| Ok(PosixRlimitBuilder::default().typ(typ).soft(n).hard(n).build()?))
        .collect()
}
