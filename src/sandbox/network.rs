//! The network of a fetch step (`network = true`): its own network
//! namespace, connected to the outside world by `pasta` (Debian's `passt`
//! package), never the host's.
//!
//! What this module is for: making, for one step run, a network namespace
//! that the runtime joins (its path goes into the OCI spec instead of a
//! fresh, loopback-only namespace) and attaching `pasta` to it. `pasta` is a
//! user-mode TCP/IP stack: it answers the step's packets on a tap interface
//! and makes ordinary sockets on the host for them, so the step reaches the
//! hosts the host reaches, over TCP, UDP and ICMP echo, but it never shares
//! the host's network namespace. Therefore it sees none of the host's
//! interfaces, none of the host's abstract unix sockets and none of the
//! host's loopback services. (What the host serves on its external
//! addresses it reaches, as any machine of the LAN could; the LAN and a
//! cloud metadata service too: pasta does not filter destinations.) Why `pasta` and not `slirp4netns` or a veth
//! pair: a veth pair needs bridging, NAT and firewall rules on the host (and
//! would expose the host's own addresses); `slirp4netns` works the same way
//! as `pasta` but maps the host's loopback at 10.0.2.2 unless told not to,
//! and is slower; `pasta` is in Debian bookworm and can be told exactly which
//! ports, if any, lead to the host's loopback.
//!
//! How: a holder process (`sleep infinity`) is started in a new network
//! namespace with every capability dropped (its bounding set emptied before
//! exec), so the namespace belongs to the host's user namespace (a step's
//! root gets no network-admin power over it) and `pasta`, which drops its
//! own capabilities early, may still open `/proc/HOLDER/ns/net`. `pasta`
//! then attaches (`--netns`), configures the namespace's interface, address
//! and routes like the host's (`--config-net`) and brings its `lo` up. The
//! step is started once the namespace has its default route and `pasta`
//! listens on the forwarded loopback ports, if any. The runtime sees its own
//! `/proc` (see `supervise`), so the spec names the namespace by a file in
//! the bundle ([`Joined::netns`]) onto which it is bound in the runtime's
//! private mount namespace only. Both processes die with eifbake
//! (`PR_SET_PDEATHSIG`) and are killed after the step.
//!
//! `pasta` options, and why:
//!
//! - `-t none -u none`: nothing from outside is forwarded into the step;
//! - `-T none -U none` (the default would be `auto`: every port the host's
//!   loopback listens on, reachable on the step's own 127.0.0.1): none of
//!   the host's loopback services;
//! - `--no-map-gw`: the gateway address is not a back door to the host's
//!   loopback;
//! - `--runas 0:0` when eifbake is root: `/dev/net/tun` is often readable
//!   by root only; `pasta` keeps uid 0 but drops its capabilities and
//!   confines itself with its own seccomp filter after opening it.
//!
//! The one exception is [`HOST_PORTS_ENV`]: the user (tests do) may list
//! ports of the host's loopback to make reachable on the step's own
//! `127.0.0.1` (`-T PORTS`). It is an environment variable of whoever runs
//! eifbake, never a recipe field: a recipe cannot open the host's loopback
//! to itself.
//!
//! What this module is not for: deciding which steps get a network (the
//! recipe's `network` key, checked by the build), pinning what they fetch
//! (`crate::lock`, `crate::build`), the rest of the sandbox (unchanged for
//! fetch steps: capabilities, seccomp, mounts).
//!
//! Name resolution: the step's `/etc/resolv.conf` is a read-only file
//! naming [`DNS_ADDRESS`], and `pasta --dns-forward` sends queries to that
//! address on to the host's first resolver (whatever the host's own
//! `/etc/resolv.conf` names, which may be a loopback resolver such as
//! systemd-resolved's: that one service, for DNS only, is the exception to
//! "no host loopback").
//!
//! Only as real root: a rootless run (a user namespace per step) cannot
//! join a namespace of the host's user namespace, and is refused, naming
//! why.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::userns::Privilege;

/// Ports of the host's loopback a fetch step may reach on its own
/// `127.0.0.1` (comma-separated, e.g. `8080,8443`); unset: none. For tests
/// and local mirrors; not a recipe field.
pub const HOST_PORTS_ENV: &str = "EIFBAKE_FETCH_HOST_LOOPBACK_PORTS";

/// The address a fetch step's `/etc/resolv.conf` names: `pasta` forwards
/// DNS queries sent to it to the host's resolver (`--dns-forward`).
pub const DNS_ADDRESS: &str = "169.254.1.53";

/// How long `pasta` may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What network a step gets besides its own loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAccess {
    /// Ports of the host's loopback forwarded to the step's `127.0.0.1`
    /// (from [`HOST_PORTS_ENV`]); empty by default.
    pub host_loopback_ports: Vec<u16>,
}

impl NetworkAccess {
    /// The outside world, plus the host loopback ports [`HOST_PORTS_ENV`] lists.
    pub fn from_env() -> Result<NetworkAccess> {
        let text = std::env::var(HOST_PORTS_ENV).unwrap_or_default();
        Self::with_ports(&text)
    }

    /// The outside world, plus the host loopback ports listed in `text` (`8080,8443`).
    pub fn with_ports(text: &str) -> Result<NetworkAccess> {
        let mut ports = Vec::new();
        for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => bail!("{HOST_PORTS_ENV}={text:?}: {p:?} is not a port number (expected e.g. 8080,8443)"),
            }
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(NetworkAccess { host_loopback_ports: ports })
    }

    /// The `pasta` arguments for this access, before `--netns PATH`.
    pub fn pasta_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-f",
            "-q",
            "--config-net",
            "--no-map-gw",
            "-t",
            "none",
            "-u",
            "none",
            "-U",
            "none",
            "--dns-forward",
            DNS_ADDRESS,
        ]
        .map(String::from)
        .to_vec();
        args.push("-T".into());
        if self.host_loopback_ports.is_empty() {
            args.push("none".into());
        } else {
            args.push(self.host_loopback_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
        }
        if Privilege::detect().is_root() {
            args.extend(["--runas".to_string(), "0:0".to_string()]);
        }
        args
    }
}

/// What a fetch step's bundle holds for its network: the file the namespace
/// is bound onto in the runtime's mount namespace (see `supervise`), and the
/// `resolv.conf` bound at the step's `/etc/resolv.conf`.
pub struct Joined {
    pub netns: PathBuf,
    pub resolv_conf: PathBuf,
}

impl Joined {
    /// The paths in the bundle directory `bundle` (not created yet).
    pub fn in_bundle(bundle: &Path) -> Joined {
        Joined { netns: bundle.join("netns"), resolv_conf: bundle.join("resolv.conf") }
    }

    /// Create both files.
    pub fn create(&self) -> Result<()> {
        fs::write(&self.netns, b"").with_context(|| format!("cannot create {}", self.netns.display()))?;
        fs::write(&self.resolv_conf, format!("nameserver {DNS_ADDRESS}\n"))
            .with_context(|| format!("cannot create {}", self.resolv_conf.display()))
    }
}

/// A network namespace with `pasta` attached; both go when this is dropped.
pub struct Attached {
    holder: Child,
    pasta: Child,
}

impl Attached {
    /// Make the namespace, attach `pasta` (its messages go to `log`), wait
    /// until it is ready ([`Attached::wait_ready`]). Real root only.
    pub fn start(step: &str, access: &NetworkAccess, log: &Path) -> Result<Attached> {
        if !matches!(Privilege::detect(), Privilege::Root) {
            bail!(
                "step {step:?} has network = true, and eifbake gives a step a network only when it runs as \
                 real root: a rootless step's runtime cannot join a network namespace of the host's user \
                 namespace. Run eifbake as root, or run `eifbake fetch` as root once and build --offline"
            );
        }
        let holder =
            start_holder().with_context(|| format!("step {step:?}: cannot make its network namespace"))?;
        let mut attached = Attached { pasta: start_pasta(step, access, holder.id(), log)?, holder };
        attached.wait_ready(step, access, log)?;
        Ok(attached)
    }

    /// The holder's namespace, as the host's `/proc` names it: bound onto
    /// [`Joined::netns`] for the runtime, whose `/proc` is its own.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// Wait until `pasta` configured the namespace (a default route shows in
    /// the holder's `/proc/PID/net/route`) and listens on every forwarded
    /// loopback port in it, or fail naming `pasta`'s log.
    fn wait_ready(&mut self, step: &str, access: &NetworkAccess, log: &Path) -> Result<()> {
        let net = PathBuf::from(format!("/proc/{}/net", self.holder.id()));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let route = fs::read_to_string(net.join("route")).unwrap_or_default();
            let routed = route.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some("00000000"));
            let listening = listening_ports(&net);
            if routed && access.host_loopback_ports.iter().all(|p| listening.contains(p)) {
                return Ok(());
            }
            let exited = self.pasta.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let said = fs::read_to_string(log).unwrap_or_default();
                let said: String =
                    said.lines().filter(|l| !l.contains("syslog")).collect::<Vec<_>>().join("; ");
                let how = match exited {
                    Some(s) => format!("pasta exited ({s})"),
                    None => format!("pasta did not configure it within {} s", READY_TIMEOUT.as_secs()),
                };
                bail!(
                    "step {step:?} has network = true, but its network could not be set up: {how}; pasta said: \
                     {said:?} (the host needs a default route; Debian: apt-get install passt)"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The TCP ports listened on in the network namespace whose `/proc/PID/net` is `net`.
fn listening_ports(net: &Path) -> Vec<u16> {
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(net.join(table)).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            if f.len() > 3 && f[3] == "0A" {
                if let Some(p) = f[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) {
                    ports.push(p);
                }
            }
        }
    }
    ports
}

impl Drop for Attached {
    fn drop(&mut self) {
        for c in [&mut self.pasta, &mut self.holder] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `sleep infinity` in a new network namespace, with no capabilities, dying with this thread.
fn start_holder() -> Result<Child> {
    let mut cmd = Command::new("sleep");
    cmd.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid, unshare) with integer
    // arguments; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Empty the bounding set: root's exec then gives no capabilities.
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                    && *libc::__errno_location() != libc::EINVAL
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
                != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().context("cannot start `sleep infinity` in a new network namespace")
}

/// `pasta` attached to the holder's namespace, dying with this thread.
fn start_pasta(step: &str, access: &NetworkAccess, holder: u32, log: &Path) -> Result<Child> {
    let out = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new("pasta");
    cmd.args(access.pasta_args())
        .arg("--netns")
        .arg(format!("/proc/{holder}/ns/net"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl, which is async-signal-safe, with integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "step {step:?} has network = true, which needs pasta: it is not installed or not on PATH \
                 (Debian: apt-get install passt)"
            )
        } else {
            anyhow::anyhow!("step {step:?}: cannot start pasta: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_loopback_stays_closed_unless_ports_are_listed() {
        let none = NetworkAccess::with_ports("").unwrap();
        let args = none.pasta_args();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-T"), "none");
        assert_eq!(after("-U"), "none");
        assert_eq!(after("-t"), "none");
        assert_eq!(after("-u"), "none");
        assert!(args.contains(&"--no-map-gw".to_string()));
        assert_eq!(after("--dns-forward"), DNS_ADDRESS);
        let two = NetworkAccess::with_ports(" 8443, 80,8443").unwrap();
        assert_eq!(two.host_loopback_ports, [80, 8443]);
        let args = two.pasta_args();
        assert_eq!(args[args.iter().position(|a| a == "-T").unwrap() + 1], "80,8443");
        let e = NetworkAccess::with_ports("80,x").unwrap_err().to_string();
        assert!(e.contains(HOST_PORTS_ENV) && e.contains("\"x\""), "{e}");
        assert!(NetworkAccess::with_ports("0").is_err());
    }
}
