//! Who eifbake runs as, and the user namespace that lets a user who is not
//! root run build steps anyway.
//!
//! What this module is for:
//!
//! - [`Privilege::detect`]: real root (uid 0 with the host's identity id
//!   map), root only inside a user namespace (`unshare -r`, as Debian's
//!   reprotest runs builds), or a plain user. Only real root can chown to
//!   any id or create device nodes; the other two cannot, whatever
//!   `geteuid()` says.
//! - [`Mapping::for_user`]: the ids a plain user's steps get: the user as
//!   root (0) inside, plus, when `/etc/subuid` and `/etc/subgid` give the user
//!   ranges and `newuidmap`/`newgidmap` are installed, those ranges as ids
//!   1, 2, … inside (so a step can chown); one id otherwise.
//! - [`Holder`]: a user namespace with that mapping, kept alive by a child
//!   process; [`Holder::enter`] makes a command start inside it as root.
//!   The sandbox runs the OCI runtime there, so crun or runc see the same
//!   world as under `unshare -r`.
//! - [`diagnose`]: when none of this is possible, a sentence naming what is
//!   missing (user namespaces disabled, by which setting) and the fix.
//!
//! Invariants: uid and gid 0 inside are always the caller; a holder process
//! never outlives its [`Holder`] (it is killed on drop, and exits by itself
//! when eifbake dies, as its stdin closes); nothing here changes the calling
//! process's own namespaces.
//!
//! What it is not for: the runtime spec or invocation (`crate::sandbox`),
//! or deciding how layers are extracted (`crate::oci::layer` asks
//! [`Privilege::detect`]).

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// What the calling process may do to file ownership and devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// uid 0 in the host's (initial) user namespace.
    Root,
    /// uid 0, but in a user namespace that maps only some ids (`unshare -r`).
    NamespaceRoot,
    /// Any other user.
    User { uid: u32, gid: u32 },
}

impl Privilege {
    /// Looks at `geteuid()` and `/proc/self/uid_map`.
    pub fn detect() -> Privilege {
        let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        if uid != 0 {
            return Privilege::User { uid, gid };
        }
        match fs::read_to_string("/proc/self/uid_map") {
            Ok(map) if !is_identity_map(&map) => Privilege::NamespaceRoot,
            _ => Privilege::Root,
        }
    }

    /// True only for real root: owners of any id and device nodes can be created.
    pub fn is_root(self) -> bool {
        self == Privilege::Root
    }
}

/// True when a `uid_map` text maps every id to itself (the initial namespace).
pub fn is_identity_map(text: &str) -> bool {
    let lines: Vec<Vec<&str>> =
        text.lines().map(|l| l.split_whitespace().collect()).filter(|f: &Vec<&str>| !f.is_empty()).collect();
    matches!(lines.as_slice(), [l] if l.as_slice() == ["0", "0", "4294967295"])
}

/// One line of a uid_map or gid_map: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of a plain user's step namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// Why only one id is mapped, when that is so (what to install or configure).
    pub single_because: Option<String>,
}

impl Mapping {
    /// The mapping for `uid`/`gid` (user `name`), from `/etc/subuid`,
    /// `/etc/subgid` and whether `newuidmap`/`newgidmap` are on `PATH`.
    pub fn for_user(uid: u32, gid: u32, name: Option<&str>) -> Mapping {
        let sub_u = subordinate(Path::new("/etc/subuid"), name, uid);
        let sub_g = subordinate(Path::new("/etc/subgid"), name, uid);
        let helpers = ["newuidmap", "newgidmap"].iter().all(|p| find_program(p).is_some());
        Mapping::choose(uid, gid, sub_u, sub_g, helpers, name.unwrap_or("this user"))
    }

    /// The decision of [`Mapping::for_user`], given what it found.
    pub fn choose(
        uid: u32,
        gid: u32,
        sub_u: Option<(u32, u32)>,
        sub_g: Option<(u32, u32)>,
        helpers: bool,
        who: &str,
    ) -> Mapping {
        let own = |id| vec![IdRange { inside: 0, outside: id, count: 1 }];
        let single = |why: String| Mapping { uids: own(uid), gids: own(gid), single_because: Some(why) };
        match (sub_u, sub_g, helpers) {
            (Some((us, uc)), Some((gs, gc)), true) => {
                let mut m = Mapping { uids: own(uid), gids: own(gid), single_because: None };
                m.uids.push(IdRange { inside: 1, outside: us, count: uc });
                m.gids.push(IdRange { inside: 1, outside: gs, count: gc });
                m
            }
            (Some(_), Some(_), false) => single(
                "newuidmap/newgidmap are not installed (Debian: apt-get install uidmap), so the \
                 subordinate ids in /etc/subuid and /etc/subgid cannot be used"
                    .into(),
            ),
            _ => single(format!(
                "/etc/subuid and /etc/subgid give {who} no subordinate ids (add a line \
                 `NAME:100000:65536` to each, as `useradd` does, and install uidmap)"
            )),
        }
    }

    /// True when more than the caller's own id is mapped.
    pub fn is_multi(&self) -> bool {
        self.uids.len() > 1
    }
}

/// The first range `/etc/subuid`-style `file` gives user `name` or `uid`:
/// (first outside id, count).
pub fn subordinate(file: &Path, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    parse_subordinate(&text, name, uid)
}

/// The first `NAME_OR_UID:START:COUNT` line of `text` for `name` or `uid`.
pub fn parse_subordinate(text: &str, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        let [who, start, count] = f.as_slice() else { return None };
        let ours = Some(*who) == name || who.parse::<u32>().ok() == Some(uid);
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (ours && count > 0).then_some((start, count))
    })
}

/// The user name of `uid` from `/etc/passwd`, if it has one there.
pub fn user_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// Where `program` is on `PATH`, if anywhere.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// Why a user namespace cannot be created here, from the kernel settings
/// that forbid it; `None` when none of them does.
pub fn diagnose() -> Option<String> {
    diagnose_in(Path::new("/proc/sys"))
}

/// [`diagnose`] with the sysctl tree at `proc_sys` (for tests).
pub fn diagnose_in(proc_sys: &Path) -> Option<String> {
    let read = |p: &str| fs::read_to_string(proc_sys.join(p)).ok().map(|s| s.trim().to_string());
    if read("user/max_user_namespaces").as_deref() == Some("0") {
        return Some(
            "user namespaces are disabled: /proc/sys/user/max_user_namespaces is 0 (fix: \
             sysctl -w user.max_user_namespaces=15000, or build as root)"
                .into(),
        );
    }
    if read("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "unprivileged user namespaces are disabled: /proc/sys/kernel/unprivileged_userns_clone \
             is 0 (fix: sysctl -w kernel.unprivileged_userns_clone=1, or build as root)"
                .into(),
        );
    }
    if read("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some(
            "AppArmor restricts unprivileged user namespaces: \
             /proc/sys/kernel/apparmor_restrict_unprivileged_userns is 1 (fix: sysctl -w \
             kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing \
             userns for eifbake and the runtime, or build as root)"
                .into(),
        );
    }
    None
}

/// A user namespace with a [`Mapping`], held open by a child process.
#[derive(Debug)]
pub struct Holder {
    child: Child,
    userns: File,
    mapping: Mapping,
}

impl Holder {
    /// Create the namespace: a child (`cat`, waiting on a pipe) unshares its
    /// user namespace before it starts, then the maps are written for it,
    /// by `newuidmap`/`newgidmap` for a multi-id mapping, directly otherwise.
    pub fn start(mapping: Mapping) -> Result<Holder> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls unshare(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            let why = diagnose().unwrap_or_else(|| format!("unshare(CLONE_NEWUSER) failed: {e}"));
            anyhow::anyhow!("cannot create a user namespace for the build steps: {why}")
        })?;
        let pid = child.id();
        let mut holder = Holder {
            userns: File::open(format!("/proc/{pid}/ns/user"))
                .with_context(|| format!("cannot open /proc/{pid}/ns/user"))?,
            child,
            mapping,
        };
        holder.write_maps().context("cannot map ids into the build steps' user namespace")?;
        Ok(holder)
    }

    fn write_maps(&mut self) -> Result<()> {
        let pid = self.child.id();
        let m = &self.mapping;
        if m.is_multi() {
            newidmap("newuidmap", pid, &m.uids)?;
            newidmap("newgidmap", pid, &m.gids)?;
            return Ok(());
        }
        let line = |r: &[IdRange]| format!("{} {} {}\n", r[0].inside, r[0].outside, r[0].count);
        write_proc(pid, "uid_map", &line(&m.uids))?;
        // An unprivileged writer may map its own gid only once setgroups is denied.
        write_proc(pid, "setgroups", "deny")?;
        write_proc(pid, "gid_map", &line(&m.gids))
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Make `cmd` start inside this namespace, as root there (every id of the
    /// mapping usable), before anything else its `pre_exec` hooks do.
    pub fn enter(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let fd = self.userns.as_raw_fd();
        // SAFETY: runs in the forked child before exec; setns, setresuid and
        // setresgid are async-signal-safe and `fd` stays open in the parent
        // (it is owned by `self`, which outlives the spawn).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Give every file under `paths` back to the caller (id 0 inside), so
    /// that it can read, copy and remove what a step chowned to other ids.
    pub fn hand_back(&self, paths: &[&Path]) -> Result<()> {
        let mut cmd = Command::new("chown");
        cmd.args(["-R", "-P", "-h", "0:0", "--"]).args(paths);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        self.enter(&mut cmd);
        let out = cmd.output().context("cannot run chown in the build steps' user namespace")?;
        if !out.status.success() {
            bail!(
                "chown -R 0:0 in the build steps' user namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn newidmap(program: &str, pid: u32, ranges: &[IdRange]) -> Result<()> {
    let mut cmd = Command::new(program);
    cmd.arg(pid.to_string());
    for r in ranges {
        cmd.args([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
    }
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn write_proc(pid: u32, file: &str, text: &str) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let mut f =
        fs::OpenOptions::new().write(true).open(&path).with_context(|| format!("cannot open {path}"))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {text:?} to {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_map_is_only_the_full_one() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 1000 1\n1 100000 65536\n"));
        assert!(!is_identity_map(""));
    }

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(parse_subordinate(text, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(parse_subordinate(text, Some("carol"), 1001), Some((200000, 1000)));
        assert_eq!(parse_subordinate(text, Some("bob"), 1002), None, "an empty range is no range");
        assert_eq!(parse_subordinate("garbage\n", Some("alice"), 1000), None);
    }

    #[test]
    fn mapping_uses_subordinate_ids_only_with_the_helpers() {
        let sub = Some((100000, 65536));
        let m = Mapping::choose(1000, 1000, sub, sub, true, "alice");
        assert!(m.is_multi() && m.single_because.is_none());
        assert_eq!(m.uids[1], IdRange { inside: 1, outside: 100000, count: 65536 });
        assert_eq!(m.uids[0], IdRange { inside: 0, outside: 1000, count: 1 });

        let m = Mapping::choose(1000, 1000, sub, sub, false, "alice");
        assert!(!m.is_multi());
        assert!(m.single_because.unwrap().contains("apt-get install uidmap"));
        let m = Mapping::choose(1000, 1000, None, sub, true, "alice");
        assert!(m.single_because.unwrap().contains("give alice no subordinate ids"));
    }

    #[test]
    fn diagnosis_names_the_setting_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(diagnose_in(dir.path()), None);
        fs::create_dir_all(dir.path().join("kernel")).unwrap();
        fs::create_dir_all(dir.path().join("user")).unwrap();
        fs::write(dir.path().join("kernel/unprivileged_userns_clone"), "0\n").unwrap();
        let e = diagnose_in(dir.path()).unwrap();
        assert!(e.contains("/proc/sys/kernel/unprivileged_userns_clone is 0"), "{e}");
        assert!(e.contains("sysctl -w kernel.unprivileged_userns_clone=1"), "{e}");
        fs::write(dir.path().join("user/max_user_namespaces"), "0\n").unwrap();
        let e = diagnose_in(dir.path()).unwrap();
        assert!(
            e.contains("max_user_namespaces is 0") && e.contains("user.max_user_namespaces=15000"),
            "{e}"
        );
    }
}
