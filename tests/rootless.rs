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
        fs::copy(common::bin::EIFBAKE, &bin).unwrap();
        World { reg, dir, bin, uid, gid }
    }

    /// A locked project `proj/recipes/NAME/recipe.toml` made of `text`, readable by everyone.
    fn project(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.dir.path().join("proj/recipes").join(name);
        fs::create_dir_all(dir.join("app")).unwrap();
        fs::write(dir.join("app/alpha"), "alpha\n").unwrap();
        let recipe = dir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        let d = self.place("lock", &Runner::Root);
        let out = self.eifbake(
            &Runner::Root,
            &d.join("home"),
            &["--store", s(&d.join("store")), "lock", s(&recipe)],
        );
        assert!(out.status.success(), "lock: {}", String::from_utf8_lossy(&out.stderr));
        let status = Command::new("chmod").args(["-R", "a+rX"]).arg(self.dir.path().join("proj")).status();
        assert!(status.unwrap().success());
        recipe
    }

    /// A fresh directory for one build, owned by the user that makes it.
    /// Its `home` and `tmp` (TMPDIR) are the user's too.
    fn place(&self, name: &str, runner: &Runner) -> PathBuf {
        let d = self.dir.path().join(name);
        for sub in ["home", "tmp"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        if !matches!(runner, Runner::Root) {
            for p in [d.clone(), d.join("home"), d.join("tmp")] {
                std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid)).unwrap();
            }
        }
        d
    }

    /// Run eifbake as `runner`, with `home` as HOME and `home/../tmp` as TMPDIR.
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
        common::bin::clean_env(&mut cmd).args(args).env("HOME", home).env("TMPDIR", home.join("../tmp"));
        cmd.output().unwrap()
    }

    /// The build in `place` ran its step from the root cache's copy of the
    /// image below an overlay (mounted in the runtime's user namespace when
    /// not root), not from a fresh extraction: the cache holds the image's root.
    fn started_from_the_root_cache(&self, place: &str) {
        let roots = eifbake::oci::layout::Layout::new(self.dir.path().join(place).join("store")).roots();
        let entries: Vec<_> = fs::read_dir(&roots)
            .unwrap_or_else(|e| {
                panic!("{place}: no root cache ({e}): the step did not start from an overlay")
            })
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{place}: {entries:?}");
        assert!(entries[0].join("root/bin/busybox").is_file(), "{place}: {}", entries[0].display());
    }

    /// Build `recipe` in a fresh place as `runner`; returns the out directory.
    fn build(&self, recipe: &Path, place: &str, runner: Runner) -> PathBuf {
        self.build_with(recipe, place, runner, &[])
    }

    /// [`World::build`] with more arguments for `build`.
    fn build_with(&self, recipe: &Path, place: &str, runner: Runner, extra: &[&str]) -> PathBuf {
        let d = self.place(place, &runner);
        let (store, out) = (d.join("store"), d.join("out"));
        let mut args = vec!["--store", s(&store), "build", s(recipe), "--out", s(&out)];
        args.extend_from_slice(extra);
        let res = self.eifbake(&runner, &d.join("home"), &args);
        assert!(
            res.status.success(),
            "build as {runner:?} failed:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        // Scratch trees, step root filesystems included, were removable by whoever built.
        let left: Vec<_> = fs::read_dir(d.join("tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "build as {runner:?} left {left:?} in its TMPDIR");
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
            let diff = common::bin::eifbake_cmd()
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
    for place in ["root", "user", "unshare"] {
        w.started_from_the_root_cache(place);
    }
}

/// runc runs rootless steps too, with the same result.
#[test]
fn runc_builds_the_same_rootless() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let recipe =
        w.project("probe", &common::busybox_step_recipe("probe", "0.1.0", &image, "path = \"app\"", PROBE));
    let root = w.build(&recipe, "root", Runner::Root);
    let user = w.build_with(&recipe, "user", Runner::User, &["--runtime", "runc"]);
    let unshare = w.build_with(&recipe, "unshare", Runner::UserUnshare, &["--runtime", "runc"]);
    same_outputs("probe", &root, &user, "root (crun) and plain-user (runc) builds");
    same_outputs("probe", &root, &unshare, "root (crun) and `unshare -r` (runc) builds");
    for place in ["user", "unshare"] {
        w.started_from_the_root_cache(place);
    }
}

/// A tar entry of [`odd_layer`]: path, type, mode, owner, device numbers.
fn odd_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    id: u64,
    dev: (u32, u32),
) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(id);
    h.set_gid(id);
    h.set_mtime(1);
    let data: &[u8] = if kind == tar::EntryType::Regular { b"odd\n" } else { b"" };
    h.set_size(data.len() as u64);
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(dev.0).unwrap();
        h.set_device_minor(dev.1).unwrap();
    }
    b.append_data(&mut h, path, data).unwrap();
}

/// What only real root can extract as the image says: files of other
/// owners that their owner cannot read, a closed directory, set-id bits and
/// device nodes (one replaced and one removed by the next layer).
fn odd_layers() -> Vec<Vec<u8>> {
    use tar::EntryType::{Block, Char, Directory, Regular};
    let mut b = tar::Builder::new(Vec::new());
    odd_entry(&mut b, "etc", Directory, 0o755, 0, (0, 0));
    odd_entry(&mut b, "etc/secret", Regular, 0o000, 1000, (0, 0));
    odd_entry(&mut b, "closed", Directory, 0o500, 1000, (0, 0));
    odd_entry(&mut b, "closed/inside", Regular, 0o400, 1000, (0, 0));
    odd_entry(&mut b, "bin/setuid", Regular, 0o4755, 0, (0, 0));
    odd_entry(&mut b, "dev", Directory, 0o755, 0, (0, 0));
    odd_entry(&mut b, "dev/console", Char, 0o600, 0, (5, 1));
    odd_entry(&mut b, "dev/sda", Block, 0o660, 6, (8, 0));
    odd_entry(&mut b, "dev/gone", Char, 0o666, 0, (1, 3));
    odd_entry(&mut b, "dev/replaced", Char, 0o666, 0, (1, 5));
    let first = b.into_inner().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    odd_entry(&mut b, "dev/.wh.gone", Regular, 0o644, 0, (0, 0));
    odd_entry(&mut b, "dev/replaced", Regular, 0o644, 0, (0, 0));
    vec![common::busybox_layer(), first, b.into_inner().unwrap()]
}

/// Pushes the busybox image with [`odd_layers`] as `fx/odd:1`; returns its reference.
fn push_odd(reg: &TestRegistry) -> String {
    let layout = tempfile::tempdir().unwrap();
    let store = eifbake::oci::Store::open(layout.path()).unwrap();
    let desc = common::write_image(&store, "amd64", &odd_layers());
    common::push(&store, "odd", desc, &reg.image("fx/odd:1"), None);
    reg.image("fx/odd:1")
}

/// Steps that give files to other ids (kept private to them) and a root
/// filesystem only root can extract faithfully: a plain user with
/// subordinate ids gets the same EIF as root, device nodes and all, and
/// the step saw the owners it set.
#[test]
fn chowning_steps_and_odd_images_build_the_same_as_a_plain_user() {
    let w = World::new();
    let script = "mkdir -p /out/r/d
echo private > /out/r/private
/bin/busybox chown 1000:1000 /out/r/private
/bin/busybox chmod 600 /out/r/private
echo deep > /out/r/d/x
/bin/busybox chown -R 1234:4321 /out/r/d
/bin/busybox chmod 600 /out/r/d/x
/bin/busybox chmod 700 /out/r/d
/bin/busybox stat -c '%u:%g %a %n' /out/r/private /out/r/d /out/r/d/x > /out/r/stat
/bin/busybox id > /out/r/id";
    let text = common::busybox_step_recipe("odd", "0.1.0", &push_odd(&w.reg), "path = \"app\"", script);
    let recipe = w.project("odd", &text);
    let root = w.build(&recipe, "root", Runner::Root);
    let user = w.build(&recipe, "user", Runner::User);
    let files = ramdisk_files(&root.join("odd.eif"));
    assert_eq!(
        String::from_utf8_lossy(&files["r/stat"]),
        "1000:1000 600 /out/r/private\n1234:4321 700 /out/r/d\n1234:4321 600 /out/r/d/x\n"
    );
    assert_eq!(String::from_utf8_lossy(&files["r/id"]), "uid=0 gid=0\n");
    let entries =
        Command::new("cpio").args(["-itv", "--quiet"]).stdin(ramdisk_bytes(&root.join("odd.eif"))).output();
    let listing = String::from_utf8_lossy(&entries.unwrap().stdout).into_owned();
    assert!(listing.contains("5,   1") && listing.contains("dev/console"), "{listing}");
    assert!(listing.contains("etc/secret") && !listing.contains("dev/gone"), "{listing}");
    same_outputs("odd", &root, &user, "root and plain-user builds of odd images and chowning steps");
}

/// The same odd root filesystem, with no steps, under `unshare -r`: root
/// of a user namespace cannot create device nodes or chown either.
#[test]
fn odd_images_pack_the_same_under_unshare() {
    let w = World::new();
    let image = push_odd(&w.reg);
    let text = format!(
        "name = \"plain\"\nversion = \"1\"\nsource_date_epoch = 1700000000\n\n[images]\nbb = \"{image}\"\n\n\
         [enclave]\nrootfs = \"bb\"\nkernel = {{ image = \"bb\", path = \"/bin/busybox\" }}\n\
         init = {{ image = \"bb\", path = \"/bin/busybox\" }}\ncmdline = \"console=ttyS0\"\ncommand = [\"/bin/sh\"]\n"
    );
    let recipe = w.project("plain", &text);
    let root = w.build(&recipe, "root", Runner::Root);
    let unshare = w.build(&recipe, "unshare", Runner::UserUnshare);
    same_outputs("plain", &root, &unshare, "root and `unshare -r` builds of an odd image");
}

/// The first ramdisk of `eif`, as a file handle for `cpio`.
fn ramdisk_bytes(eif: &Path) -> std::process::Stdio {
    let eif = eifbake::eif::Eif::open(eif).unwrap();
    let section = eif.ramdisks().next().unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut eif.section_reader(section), &mut data).unwrap();
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    std::process::Stdio::from(f)
}

/// The build as the plain user with `PATH` holding only the programs a
/// rootless build needs, but no crun: the error says it is not installed
/// (rather than blaming permissions), and how to get it.
#[test]
fn a_missing_runtime_is_named_as_not_installed() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let recipe =
        w.project("probe", &common::busybox_step_recipe("probe", "0.1.0", &image, "path = \"app\"", PROBE));
    let d = w.place("noruntime", &Runner::User);
    let bin = user_path(&d, &["crun"]);
    let out = common::bin::clean_env(&mut Command::new(common_program("setpriv")))
        .args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--init-groups", "--"])
        .arg(&w.bin)
        .args(["--store", s(&d.join("store")), "build", s(&recipe), "--out", s(&d.join("out"))])
        .env("PATH", &bin)
        .env("HOME", d.join("home"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot start crun: it is not installed or not on PATH"), "{err}");
    assert!(err.contains("apt-get install crun"), "{err}");
    assert!(!err.contains("not permitted"), "{err}");
}

/// Where `program` is on the host's PATH.
fn common_program(program: &str) -> PathBuf {
    eifbake::userns::find_program(program).unwrap_or_else(|| panic!("{program} is not installed"))
}

/// Inside a user namespace whose limit of new user namespaces is 0 (the
/// per-namespace `user.max_user_namespaces`, set there rather than on the
/// host, which other work shares), the plain user's build fails saying that
/// user namespaces are disabled, by which setting, and how to enable them.
#[test]
fn disabled_user_namespaces_are_named_with_the_fix() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let recipe =
        w.project("probe", &common::busybox_step_recipe("probe", "0.1.0", &image, "path = \"app\"", PROBE));
    let d = w.place("nouserns", &Runner::User);
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && \
         exec setpriv --reuid={USER} --regid={USER} --init-groups -- env HOME={home} {bin} --store {store} \
         build {recipe} --out {out}",
        home = s(&d.join("home")),
        bin = s(&w.bin),
        store = s(&d.join("store")),
        recipe = s(&recipe),
        out = s(&d.join("out")),
    );
    // sh waits for its maps, then starts again as root there (with root's capabilities) to run `script`.
    let mut child = Command::new("unshare")
        .args(["--user", "--", "sh", "-c", "read go && exec sh -c \"$0\"", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it is in its own user namespace, map the host's first 65536 ids to themselves.
    let ns = |pid: String| fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    let pid = child.id().to_string();
    let started = std::time::Instant::now();
    while ns(pid.clone()) == ns("self".into()) {
        assert!(started.elapsed().as_secs() < 10, "unshare --user did not unshare");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for map in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{map}"), "0 0 65536\n").unwrap();
    }
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot create a user namespace for the build steps"), "{err}");
    assert!(err.contains("/proc/sys/user/max_user_namespaces is 0"), "{err}");
    assert!(err.contains("sysctl -w user.max_user_namespaces="), "{err}");
}

/// `PATH` for the plain user with the programs a rootless build uses,
/// except those named in `without`.
fn user_path(d: &Path, without: &[&str]) -> PathBuf {
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    for p in ["cat", "chown", "cp", "newuidmap", "newgidmap", "crun", "runc"] {
        if !without.contains(&p) {
            std::os::unix::fs::symlink(common_program(p), bin.join(p)).unwrap();
        }
    }
    bin
}

/// Without newuidmap only the user's own id is mapped (written directly,
/// with setgroups denied): the probe recipe still builds to root's bytes,
/// and a step that chowns to another id fails saying why and what to install.
#[test]
fn one_mapped_id_builds_the_same_and_explains_a_failing_chown() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let run = |name: &str, script: &str| {
        let recipe =
            w.project(name, &common::busybox_step_recipe(name, "0.1.0", &image, "path = \"app\"", script));
        let root = w.build(&recipe, &format!("{name}-root"), Runner::Root);
        let d = w.place(&format!("{name}-single"), &Runner::User);
        let out = common::bin::clean_env(&mut Command::new(common_program("setpriv")))
            .args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--init-groups", "--"])
            .arg(&w.bin)
            .args(["--store", s(&d.join("store")), "build", s(&recipe), "--out", s(&d.join("out"))])
            .env("PATH", user_path(&d, &["newuidmap", "newgidmap"]))
            .env("HOME", d.join("home"))
            .output()
            .unwrap();
        (root, d.join("out"), out)
    };
    let (root, single, out) = run("probe", PROBE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same_outputs("probe", &root, &single, "root and single-id builds");

    let (_, _, out) = run("chown", "mkdir -p /out/r\necho x > /out/r/x\n/bin/busybox chown 1000 /out/r/x");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ran rootless with only its own id mapped"), "{err}");
    assert!(err.contains("newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)"), "{err}");
}

/// A fetch step (`network = true`) needs real root (its runtime joins a
/// network namespace of the host's user namespace): without it, the build
/// is refused, naming the step and the way out, rather than run without the
/// network or with more than it should get.
#[test]
fn a_fetch_step_without_root_is_refused_naming_why() {
    let w = World::new();
    let image = w.reg.image("fx/busybox:1");
    let text = common::busybox_step_recipe(
        "fetchy",
        "0.1.0",
        &image,
        "path = \"app\"",
        "mkdir /out/r; echo hi > /out/r/x",
    )
    .replace("workdir = \"/src/app\"", "workdir = \"/src/app\"\nnetwork = true");
    let recipe = w.project("fetchy", &text);
    for runner in [Runner::User, Runner::UserUnshare] {
        let d = w.place(&format!("fetch-{runner:?}"), &runner);
        let (store, outdir) = (d.join("store"), d.join("out"));
        let args = ["--store", s(&store), "build", s(&recipe), "--out", s(&outdir)];
        let out = w.eifbake(&runner, &d.join("home"), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{runner:?}: {err}");
        assert!(
            err.contains("step \"make\" has network = true, and eifbake gives a step a network only when it runs as real root")
                && err.contains("build --offline"),
            "{runner:?}: {err}"
        );
    }
}
