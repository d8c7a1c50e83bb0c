//! The source and step caches against real builds (crun as root, a loopback
//! registry, the busybox fixture image), through the CLI: a local source
//! edited after a warm build is refused naming the file, tampered cache
//! entries are refused naming the entry and the way out, and concurrent
//! builds on one store all succeed with identical EIFs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{eifbake, TestRegistry};
use eifbake::digest::Digest;
use eifbake::oci::layout::Layout;

/// The step: copies the source into `/out/r` and adds an executable, a
/// symlink, a hard link, a FIFO, odd modes and another owner, all of which
/// the step cache must keep.
const SCRIPT: &str = "mkdir -p /out/r\ncp -r /src/app/. /out/r/\necho run > /out/r/run\n\
/bin/busybox chmod 0750 /out/r/run\n/bin/busybox ln -s run /out/r/link\n/bin/busybox ln /out/r/run /out/r/hard\n\
/bin/busybox mkfifo /out/r/fifo\n/bin/busybox chmod 0604 /out/r/alpha\n/bin/busybox chown 1000:1000 /out/r/bravo\n\
/bin/busybox find /out/r | /bin/busybox sort | while read f; do /bin/busybox stat -c '%n %a %u %g %h %F' \"$f\"; done > /out/list\n\
cp /out/list /out/r/list";

struct Project {
    _reg: TestRegistry,
    dir: tempfile::TempDir,
    recipe: PathBuf,
    app: PathBuf,
}

impl Project {
    /// `recipes/NAME/recipe.toml` with the path source `app` and [`SCRIPT`], locked.
    fn new(name: &str) -> Project {
        let reg = TestRegistry::start();
        let _f = common::push_fixtures(&reg);
        let dir = tempfile::tempdir().unwrap();
        let rdir = dir.path().join("recipes").join(name);
        let app = rdir.join("app");
        fs::create_dir_all(app.join("sub")).unwrap();
        for f in ["alpha", "bravo", "charlie"] {
            fs::write(app.join(f), format!("{f}\n")).unwrap();
        }
        fs::write(app.join("sub/inner"), "inner\n").unwrap();
        let text =
            common::busybox_step_recipe(name, "0.1.0", &reg.image("fx/busybox:1"), "path = \"app\"", SCRIPT);
        let recipe = rdir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        let p = Project { _reg: reg, dir, recipe, app };
        let (code, out, err) = p.run(&["lock", s(&p.recipe)]);
        assert_eq!(code, 0, "lock: {out}{err}");
        p
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let store = self.store();
        let mut all = vec!["--store", s(&store)];
        all.extend_from_slice(args);
        eifbake(&all)
    }

    /// Build into `out`; returns (exit code, stderr).
    fn build(&self, out: &Path, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["build", s(&self.recipe), "--out", s(out)];
        args.extend_from_slice(extra);
        let (code, o, e) = self.run(&args);
        (code, format!("{o}{e}"))
    }

    /// Build into `out`, which must succeed; returns the EIF's sha256.
    fn build_ok(&self, out: &Path, extra: &[&str]) -> Digest {
        let (code, log) = self.build(out, extra);
        assert_eq!(code, 0, "build failed: {log}");
        eif_sha(out)
    }

    /// The only entry of the step cache.
    fn step_entry(&self) -> PathBuf {
        only_entry(&Layout::new(self.store()).steps())
    }
}

/// An edit of a step-cache entry.
type Tamper = fn(&Path);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn eif_sha(out: &Path) -> Digest {
    let eifs: Vec<_> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eif"))
        .collect();
    assert_eq!(eifs.len(), 1, "{eifs:?}");
    Digest::of(&fs::read(&eifs[0]).unwrap())
}

fn only_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1, "expected one cache entry in {}: {entries:?}", dir.display());
    entries.into_iter().next().unwrap()
}

/// A local source edited after a build on a warm store used to be served
/// from the cache (old files in the EIF, exit 0, even with --no-cache); the
/// directory on disk is now hashed on every build and the first changed
/// file named.
#[test]
fn local_source_edited_after_a_warm_build_is_refused_naming_the_file() {
    let p = Project::new("stale");
    let out = p.dir.path().join("out");
    let first = p.build_ok(&out, &[]);

    fs::write(p.app.join("sub/inner"), "edited\n").unwrap();
    for extra in [&[][..], &["--no-cache"][..]] {
        let (code, log) = p.build(&out, extra);
        assert_eq!(code, 2, "{extra:?}: {log}");
        assert!(
            log.contains("sources.app: local tree")
                && log.contains("changed since lock (first difference: sub/inner (changed))")
                && log.contains("run `eifbake lock`"),
            "{extra:?}: {log}"
        );
        assert_eq!(eif_sha(&out), first, "the EIF was rewritten from a stale or unlocked source");
    }

    // An added file and a lost executable bit are named too.
    fs::write(p.app.join("sub/inner"), "inner\n").unwrap();
    fs::write(p.app.join("new"), "new\n").unwrap();
    let (code, log) = p.build(&out, &[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("first difference: new (added)"), "{log}");
    fs::remove_file(p.app.join("new")).unwrap();
    fs::set_permissions(p.app.join("charlie"), fs::Permissions::from_mode(0o755)).unwrap();
    let (code, log) = p.build(&out, &[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("first difference: charlie (changed)"), "{log}");
    fs::set_permissions(p.app.join("charlie"), fs::Permissions::from_mode(0o644)).unwrap();

    // Back as locked: builds again, the same bytes.
    assert_eq!(p.build_ok(&out, &[]), first);

    // With no cached copy to compare with, the refusal says so.
    fs::write(p.app.join("alpha"), "edited\n").unwrap();
    let (code, _, err) =
        eifbake(&["--store", s(&p.dir.path().join("fresh-store")), "build", s(&p.recipe), "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since lock (no copy of the locked tree in the store"), "{err}");
}

/// A step-cache entry edited after it was stored (its content, then only a
/// mode bit) is refused naming the entry and `store gc --caches`; after the
/// gc the rebuild gives the original bytes.
#[test]
fn tampered_step_cache_entry_is_refused() {
    let p = Project::new("tstep");
    let out = p.dir.path().join("out");
    let first = p.build_ok(&out, &[]);
    let entry = p.step_entry();
    assert!(entry.join("tree").is_file() && entry.join("out/r/run").is_file(), "{}", entry.display());
    let cold_list = fs::read_to_string(entry.join("out/list")).unwrap();
    // A warm build takes the step from the cache and makes the same bytes.
    let (code, log) = p.build(&out, &[]);
    assert_eq!((code, eif_sha(&out)), (0, first), "{log}");

    let tampers: [(&str, Tamper); 3] = [
        ("content", |e| fs::write(e.join("out/r/alpha"), "evil\n").unwrap()),
        ("mode", |e| {
            fs::set_permissions(e.join("out/r/charlie"), fs::Permissions::from_mode(0o654)).unwrap()
        }),
        ("hard link broken", |e| {
            fs::remove_file(e.join("out/r/hard")).unwrap();
            fs::copy(e.join("out/r/run"), e.join("out/r/hard")).unwrap();
            fs::set_permissions(e.join("out/r/hard"), fs::Permissions::from_mode(0o750)).unwrap();
        }),
    ];
    for (i, (what, tamper)) in tampers.into_iter().enumerate() {
        tamper(&p.step_entry());
        let other = p.dir.path().join(format!("out-tampered-{i}"));
        let (code, log) = p.build(&other, &[]);
        assert_eq!(code, 2, "{what}: {log}");
        assert!(
            log.contains(&format!("step cache entry {} is damaged", entry.display()))
                && log.contains("`eifbake store gc --caches`"),
            "{what}: {log}"
        );
        assert!(!other.join("tstep.eif").exists(), "{what}: an EIF was written from a tampered entry");

        // --no-cache does not read the entry: it builds the right bytes and only warns.
        let (code, log) = p.build(&other, &["--no-cache"]);
        assert_eq!((code, eif_sha(&other)), (0, first), "{what}: {log}");
        assert!(log.contains("warning: step cache entry") && log.contains("is damaged"), "{what}: {log}");

        let (code, o, e) = p.run(&["store", "gc", "--caches"]);
        assert_eq!(code, 0, "{o}{e}");
        assert_eq!(p.build_ok(&other, &[]), first, "{what}: the rebuild after gc differs");
        assert_eq!(fs::read_to_string(p.step_entry().join("out/list")).unwrap(), cold_list);
    }
}

/// A source-cache entry edited after it was stored is refused naming it.
#[test]
fn tampered_source_cache_entry_is_refused() {
    let p = Project::new("tsrc");
    let out = p.dir.path().join("out");
    let first = p.build_ok(&out, &[]);
    let entry = only_entry(&Layout::new(p.store()).sources());
    fs::write(entry.join("sub/inner"), "evil\n").unwrap();
    for extra in [&[][..], &["--no-cache"][..]] {
        let (code, log) = p.build(&out, extra);
        assert_eq!(code, 2, "{extra:?}: {log}");
        assert!(
            log.contains(&format!("sources.app: source cache entry {} is damaged", entry.display()))
                && log.contains("`eifbake store gc --caches`"),
            "{extra:?}: {log}"
        );
    }
    assert!(entry.join("sub/inner").exists(), "a build removed a cache entry");
    let (code, o, e) = p.run(&["store", "gc", "--caches"]);
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(p.build_ok(&out, &[]), first);
    assert_eq!(fs::read_to_string(entry.join("sub/inner")).unwrap(), "inner\n");
}

/// Four builds of one recipe on one store started 0.1 s apart, four
/// rounds (a cold store; then half of them with --no-cache, which runs the
/// step again while the others read its cache entry): every build succeeds
/// and every EIF is the same.
#[test]
fn concurrent_builds_on_one_store_all_succeed_identically() {
    let p = Project::new("race");
    let mut shas = Vec::new();
    for round in 0..4 {
        let mut children = Vec::new();
        for i in 0..4 {
            let out = p.dir.path().join(format!("out-{round}-{i}"));
            let mut cmd = common::bin::eifbake_cmd();
            cmd.arg("--store").arg(p.store()).arg("build").arg(&p.recipe).arg("--out").arg(&out);
            if round > 0 && i % 2 == 1 {
                cmd.arg("--no-cache");
            }
            let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            children.push((out, child));
            std::thread::sleep(Duration::from_millis(100));
        }
        for (out, child) in children {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "round {round}, {}: {}{}",
                out.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                !String::from_utf8_lossy(&o.stderr).contains("warning"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            shas.push(eif_sha(&out));
        }
    }
    assert!(shas.iter().all(|s| *s == shas[0]), "builds differ: {shas:?}");
    let leftovers: Vec<_> = fs::read_dir(Layout::new(p.store()).steps())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary entries left behind: {leftovers:?}");
    p.step_entry();
}

/// The first step tries to leave a changed root for the second, which
/// starts from the same image: it edits, adds, removes, re-owns, re-modes
/// and re-times files, re-modes an image file through a hard link and
/// moves a directory. The second step reports what it sees of the image.
const WRECK: &str = "echo evil > /bin/added\n/bin/busybox ln /bin/busybox /bin/linked\n\
/bin/busybox chmod 0700 /bin/linked\n/bin/busybox rm /bin/cat\n/bin/busybox chown 1234:1234 /bin/ls\n\
/bin/busybox chmod 0700 /bin/echo\n/bin/busybox touch -d @0 /bin/busybox\n\
/bin/busybox mkdir /bin/sub\n/bin/busybox mv /bin/sub /moved\necho wrecked > /out/done";
const LOOK: &str = "/bin/busybox mkdir -p /out/r\n\
/bin/busybox stat -c '%n %a %u %g %s %Y' /bin/* > /out/r/bin\n\
/bin/busybox sha256sum /bin/busybox >> /out/r/bin\n\
/bin/busybox test ! -e /bin/added -a ! -e /bin/linked -a ! -e /moved -a -e /bin/cat";

fn two_step_recipe(name: &str, image: &str, look: &str) -> String {
    format!(
        r#"name = "{name}"
version = "0.1.0"
source_date_epoch = 1700000000

[images]
bb = "{image}"

[[steps]]
name = "wreck"
image = "bb"
run = """
{WRECK}
"""

[[steps]]
name = "look"
image = "bb"
mounts = {{ "/wrecked" = "step:wreck" }}
run = """
{look}
"""
outputs = {{ "/out/r" = "/r" }}

[enclave]
rootfs = "bb"
kernel = {{ image = "bb", path = "/bin/busybox" }}
init = {{ image = "bb", path = "/bin/busybox" }}
cmdline = "console=ttyS0"
command = ["/bin/sh"]
"#
    )
}

/// A locked two-step project on its own store ([`two_step_recipe`]).
fn wreck_project(name: &str, reg: &TestRegistry) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes").join(name);
    fs::create_dir_all(&rdir).unwrap();
    let recipe = rdir.join("recipe.toml");
    fs::write(&recipe, two_step_recipe(name, &reg.image("fx/busybox:1"), LOOK)).unwrap();
    let store = dir.path().join("store");
    let (code, o, e) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(code, 0, "lock: {o}{e}");
    (dir, recipe)
}

/// `eifbake --store STORE build RECIPE --out OUT EXTRA…`: (exit code, output).
fn build_with(store: &Path, recipe: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--store", s(store), "build", s(recipe), "--out", s(out)];
    args.extend_from_slice(extra);
    let (code, o, e) = eifbake(&args);
    (code, format!("{o}{e}"))
}

/// What the `look` step reported: `/r/bin` in the EIF's ramdisks.
fn looked(out: &Path, name: &str) -> String {
    let eif = eifbake::eif::Eif::open(&out.join(format!("{name}.eif"))).unwrap();
    for section in eif.ramdisks() {
        let mut r = eifbake::cpio::Reader::new(eif.section_reader(section)).unwrap();
        while let Some(e) = r.next_entry().unwrap() {
            if e.name_lossy() == "r/bin" {
                return String::from_utf8(r.data_to_vec(1 << 20).unwrap()).unwrap();
            }
        }
    }
    panic!("no r/bin in {}", out.display())
}

/// Steps start from the root cache's copy of their image below an
/// overlay: whatever one step does to its root, the next step (and the
/// next build) starts from the image as it is, the cache entry still
/// checks, and the bytes are those of a build that extracts the image
/// afresh for each step (`--no-cache`).
#[test]
fn a_step_that_wrecks_its_root_leaves_the_image_root_intact() {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let (dir, recipe) = wreck_project("wreck", &reg);
    let store = dir.path().join("store");
    let build = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let (code, log) = build_with(&store, &recipe, &out, extra);
        assert_eq!(code, 0, "build {extra:?}: {log}");
        (eif_sha(&out), looked(&out, "wreck"))
    };
    let cached = build("a", &[]);
    let roots = Layout::new(&store).roots();
    let entry = only_entry(&roots);
    assert!(entry.join("root/bin/busybox").is_file() && entry.join("tree").is_file(), "{}", entry.display());
    let busybox = fs::read(entry.join("root/bin/busybox")).unwrap();
    assert_eq!(
        busybox,
        fs::read(eifbake_testkit::oci::BUSYBOX).unwrap(),
        "the cached root's busybox changed"
    );
    assert!(cached.1.contains(&format!("{}  /bin/busybox", Digest::of(&busybox).hex())), "{}", cached.1);
    assert!(cached.1.contains("/bin/ls 777 0 0") && !cached.1.contains("1234"), "{}", cached.1);

    let fresh = build("b", &["--no-cache"]);
    assert_eq!(fresh, cached, "a step saw another root with the root cache than with a fresh extraction");
    // Run both steps again from the cached root (their step cache emptied):
    // the entry still checks, and nothing leaked into it.
    fs::remove_dir_all(Layout::new(&store).steps()).unwrap();
    assert_eq!(build("c", &[]), cached);
    assert_eq!(only_entry(&roots), entry);
    for leaked in ["added", "linked"] {
        assert!(!entry.join("root/bin").join(leaked).exists(), "{leaked} leaked into the cached root");
    }
    assert!(entry.join("root/bin/cat").symlink_metadata().is_ok() && !entry.join("root/moved").exists());
}

/// A root-cache entry edited after it was stored (a file's bytes, its
/// owner, an extended attribute, an added file) is refused naming the
/// entry and `store gc --caches`; `--no-cache` extracts the image afresh
/// and builds; after the gc the build makes the same bytes again.
#[test]
fn tampered_root_cache_entry_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let (dir, recipe) = wreck_project("troot", &reg);
    let store = dir.path().join("store");
    let build = |out: &Path, extra: &[&str]| build_with(&store, &recipe, out, extra);
    let out = dir.path().join("out");
    let (code, log) = build(&out, &[]);
    assert_eq!(code, 0, "{log}");
    let first = eif_sha(&out);
    let entry = only_entry(&Layout::new(&store).roots());

    let tampers: [(&str, Tamper); 4] = [
        ("content", |e| {
            let mut f = fs::OpenOptions::new().append(true).open(e.join("root/bin/busybox")).unwrap();
            std::io::Write::write_all(&mut f, b"evil").unwrap();
        }),
        ("owner", |e| std::os::unix::fs::lchown(e.join("root/bin/busybox"), Some(1234), Some(1234)).unwrap()),
        ("xattr", |e| {
            let p = std::ffi::CString::new(e.join("root/bin/busybox").into_os_string().into_encoded_bytes())
                .unwrap();
            // SAFETY: valid NUL-terminated strings and a 4-byte buffer.
            let r =
                unsafe { libc::lsetxattr(p.as_ptr(), c"user.evil".as_ptr(), b"evil".as_ptr().cast(), 4, 0) };
            assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
        }),
        ("added file", |e| fs::write(e.join("root/bin/added"), "evil\n").unwrap()),
    ];
    for (i, (what, tamper)) in tampers.into_iter().enumerate() {
        let before = fs::symlink_metadata(entry.join("root/bin/busybox")).unwrap();
        tamper(&entry);
        fs::remove_dir_all(Layout::new(&store).steps()).unwrap(); // the steps must run again
        let other = dir.path().join(format!("out-tampered-{i}"));
        let (code, log) = build(&other, &[]);
        assert_eq!(code, 2, "{what}: {log}");
        assert!(
            log.contains(&format!("root cache entry {} is damaged", entry.display()))
                && log.contains("`eifbake store gc --caches`"),
            "{what}: {log}"
        );
        assert!(!other.join("troot.eif").exists(), "{what}: an EIF was written from a tampered root");
        assert_eq!(fs::symlink_metadata(entry.join("root/bin/busybox")).unwrap().ino(), before.ino());

        let (code, log) = build(&other, &["--no-cache"]);
        assert_eq!((code, eif_sha(&other)), (0, first), "{what}: {log}");

        let (code, o, e) = eifbake(&["--store", s(&store), "store", "gc", "--caches"]);
        assert_eq!(code, 0, "{o}{e}");
        assert!(!entry.exists(), "{what}: gc --caches left the root entry");
        let (code, log) = build(&other, &[]);
        assert_eq!((code, eif_sha(&other)), (0, first), "{what}: the rebuild after gc differs: {log}");
    }
}

/// A store whose path an overlay's options cannot carry (a `:` in it)
/// still builds, each step from a fresh extraction, with the same bytes.
#[test]
fn a_store_path_an_overlay_cannot_name_falls_back_to_fresh_extraction() {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let (dir, recipe) = wreck_project("colon", &reg);
    let mut shas = Vec::new();
    for (store, out) in [("store", "a"), ("st:ore", "b")] {
        let (store, out) = (dir.path().join(store), dir.path().join(out));
        let (code, log) = build_with(&store, &recipe, &out, &[]);
        assert_eq!(code, 0, "{}: {log}", store.display());
        shas.push(eif_sha(&out));
    }
    assert_eq!(shas[0], shas[1]);
    assert!(
        !Layout::new(dir.path().join("st:ore")).roots().exists(),
        "a root entry under a store with a `:`"
    );
}
