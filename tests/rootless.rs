//! Builds with steps without root: the same recipe built as root, as a plain
//! user (a user made here with `useradd`, which also gives it subordinate
//! ids) and as that user under `unshare -r` (root only inside a user
//! namespace, as Debian's reprotest runs builds) must give byte-identical
//! EIF, PCRs and manifest.
//!
//! These tests need root (to create the user and to make the root build):
//! run by anyone else they fail, saying so, rather than pass without testing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestRegistry;

/// The unprivileged user the tests build as.
const USER: &str = "eifbake-rootless";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "tests/rootless.rs must run as root: it creates the user {USER}, builds as root and as that user, \
         and compares the bytes (run `cargo test --test rootless` as root, as CI does)"
    );
}

/// The user's (uid, gid), creating it (and its /etc/subuid and /etc/subgid
/// ranges) when absent.
fn ensure_user() -> (u32, u32) {
    let id = |flag: &str| Command::new("id").args([flag, USER]).output().unwrap();
    if !id("-u").status.success() {
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", USER])
            .output()
            .expect("cannot run useradd (Debian package passwd)");
        assert!(out.status.success(), "useradd {USER}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let num = |flag: &str| String::from_utf8(id(flag).stdout).unwrap().trim().parse::<u32>().unwrap();
    (num("-u"), num("-g"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A registry with the fixtures, a world-readable work directory, a copy of
/// the eifbake binary the user can run, and the test user.
struct World {
    reg: TestRegistry,
    dir: tempfile::TempDir,
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

impl World {
    fn new() -> World {
        require_root();
        let (uid, gid) = ensure_user();
        let reg = TestRegistry::start();
        common::push_fixtures(&reg);
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("eifbake");
        fs::copy(env!("CARGO_BIN_EXE_eifbake"), &bin).unwrap();
        World { reg, dir, bin, uid, gid }
    }

    /// A locked project `proj/recipes/NAME/recipe.toml` made of `text`, readable by everyone.
    fn project(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.dir.path().join("proj/recipes").join(name);
        fs::create_dir_all(dir.join("app")).unwrap();
        fs::write(dir.join("app/alpha"), "alpha\n").unwrap();
        let recipe = dir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        let store = self.dir.path().join("lock-store");
        let out = self.eifbake(&Runner::Root, self.dir.path(), &["--store", s(&store), "lock", s(&recipe)]);
        assert!(out.status.success(), "lock: {}", String::from_utf8_lossy(&out.stderr));
        let status = Command::new("chmod").args(["-R", "a+rX"]).arg(self.dir.path().join("proj")).status();
        assert!(status.unwrap().success());
        recipe
    }

    /// A fresh directory for one build, owned by the user that makes it.
    fn place(&self, name: &str, runner: &Runner) -> PathBuf {
        let d = self.dir.path().join(name);
        fs::create_dir_all(d.join("home")).unwrap();
        if !matches!(runner, Runner::Root) {
            std::os::unix::fs::chown(&d, Some(self.uid), Some(self.gid)).unwrap();
            std::os::unix::fs::chown(d.join("home"), Some(self.uid), Some(self.gid)).unwrap();
        }
        d
    }

    /// Run eifbake as `runner`, with `home` as HOME.
    fn eifbake(&self, runner: &Runner, home: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = match runner {
            Runner::Root => Command::new(&self.bin),
            Runner::User | Runner::UserUnshare => {
                let mut c = Command::new("setpriv");
                c.args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--init-groups", "--"]);
                if matches!(runner, Runner::UserUnshare) {
                    c.args(["unshare", "-r", "--"]);
                }
                c.arg(&self.bin);
                c
            }
        };
        cmd.args(args).env("EIFBAKE_NO_PROGRESS", "1").env("HOME", home).env_remove("EIFBAKE_STORE");
        cmd.output().unwrap()
    }

    /// Build `recipe` in a fresh place as `runner`; returns the out directory.
    fn build(&self, recipe: &Path, place: &str, runner: Runner) -> PathBuf {
        let d = self.place(place, &runner);
        let (store, out) = (d.join("store"), d.join("out"));
        let res = self.eifbake(
            &runner,
            &d.join("home"),
            &["--store", s(&store), "build", s(recipe), "--out", s(&out)],
        );
        assert!(
            res.status.success(),
            "build as {runner:?} failed:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        out
    }
}

#[derive(Debug)]
enum Runner {
    Root,
    /// The unprivileged user.
    User,
    /// The unprivileged user under `unshare -r`.
    UserUnshare,
}

/// The contents of the entries under `r/` of the first ramdisk of `eif`, by name.
fn ramdisk_files(eif: &Path) -> BTreeMap<String, Vec<u8>> {
    let eif = eifbake::eif::Eif::open(eif).unwrap();
    let section = eif.ramdisks().next().unwrap();
    let mut r = eifbake::cpio::Reader::new(eif.section_reader(section)).unwrap();
    let mut files = BTreeMap::new();
    while let Some(e) = r.next_entry().unwrap() {
        if e.name_lossy().starts_with("r/") {
            files.insert(e.name_lossy().into_owned(), r.data_to_vec(1 << 20).unwrap());
        }
    }
    files
}

fn same_outputs(name: &str, a: &Path, b: &Path, what: &str) {
    for ext in ["eif", "pcrs", "manifest.json"] {
        let (x, y) = (a.join(format!("{name}.{ext}")), b.join(format!("{name}.{ext}")));
        if fs::read(&x).unwrap() != fs::read(&y).unwrap() {
            let diff = Command::new(env!("CARGO_BIN_EXE_eifbake"))
                .args(["diff", s(&a.join(format!("{name}.eif"))), s(&b.join(format!("{name}.eif")))])
                .output()
                .unwrap();
            panic!(
                "{what}: {} and {} differ; eifbake diff of the EIFs says:\n{}",
                x.display(),
                y.display(),
                String::from_utf8_lossy(&diff.stdout)
            );
        }
    }
}

/// What a step can observe of its identity and surroundings. (Not its
/// supplementary groups: where setgroups(2) is denied, as under `unshare -r`,
/// they cannot be cleared; see the sandbox's documentation.)
const PROBE: &str = "mkdir -p /out/r
/bin/busybox id -u > /out/r/id
/bin/busybox id -g >> /out/r/id
umask > /out/r/umask
/bin/busybox hostname > /out/r/hostname
/bin/busybox env | /bin/busybox sort > /out/r/env
cat /src/app/alpha > /out/r/alpha
/bin/busybox stat -c '%u:%g %n' /bin/busybox /src/app/alpha / > /out/r/owners
echo mine > /out/r/mine
/bin/busybox chown 0:0 /out/r/mine
/bin/busybox chmod 4750 /out/r/mine";

#[test]
fn root_user_and_unshare_builds_are_byte_identical() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let recipe =
        w.project("probe", &common::busybox_step_recipe("probe", "0.1.0", &image, "path = \"app\"", PROBE));
    let root = w.build(&recipe, "root", Runner::Root);
    let user = w.build(&recipe, "user", Runner::User);
    let unshare = w.build(&recipe, "unshare", Runner::UserUnshare);
    let files = ramdisk_files(&root.join("probe.eif"));
    let text = |f: &str| String::from_utf8_lossy(&files[f]).into_owned();
    assert_eq!(text("r/id"), "0\n0\n");
    assert_eq!(text("r/hostname"), "eifbake\n");
    assert_eq!(text("r/umask"), "0022\n");
    assert_eq!(text("r/owners"), "0:0 /bin/busybox\n0:0 /src/app/alpha\n0:0 /\n");
    same_outputs("probe", &root, &user, "root and plain-user builds");
    same_outputs("probe", &root, &unshare, "root and `unshare -r` builds");
}
