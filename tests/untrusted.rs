//! Recipes are untrusted input: a rebuilder runs `eifbake verify` on
//! manifests other people publish, and the recipe text inside them is the
//! publisher's. These tests try the attacks for real, with busybox steps in
//! crun, against a loopback registry: names that climb out of the scratch
//! directory, outputs that pull host files into the EIF through `..` or
//! through symlinks a step planted, and the litter a killed build leaves.
//! Also: a failed step's log stays where the error says, and an enclave
//! command whose ELF interpreter is missing is refused at build time.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestRegistry;
use eifbake::cpio::{Kind, Reader};
use eifbake::digest::Digest;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A registry with the fixture images, and a directory for projects.
struct Env {
    reg: TestRegistry,
    dir: tempfile::TempDir,
}

fn env() -> Env {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    Env { reg, dir: tempfile::tempdir().unwrap() }
}

const OUTPUTS: &str = "outputs = { \"/out/r\" = \"/r\" }";

impl Env {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `recipes/NAME/recipe.toml` (a busybox step `make` running `script`, its
    /// outputs table replaced by `outputs`) in project `NAME`, with the app
    /// source holding `app` files; returns the recipe path.
    fn recipe(&self, name: &str, script: &str, outputs: &str, app: &[(&str, &Path)]) -> PathBuf {
        let rdir = self.path(name).join("recipes").join(name);
        fs::create_dir_all(rdir.join("app")).unwrap();
        fs::write(rdir.join("app/main.sh"), "echo main\n").unwrap();
        for (to, from) in app {
            fs::copy(from, rdir.join("app").join(to)).unwrap();
        }
        let text = common::busybox_step_recipe(
            name,
            "1.0.0",
            &self.reg.image("fx/busybox:1"),
            "path = \"app\"",
            script,
        )
        .replace(OUTPUTS, outputs);
        let recipe = rdir.join("recipe.toml");
        fs::write(&recipe, text).unwrap();
        recipe
    }

    /// `eifbake lock` then `eifbake build` into `out`, with `TMPDIR=tmp`;
    /// returns the build's (code, stderr).
    fn build(&self, recipe: &Path, out: &Path, tmp: &Path) -> (i32, String) {
        let store = self.path("store");
        let (c, o, e) = common::eifbake(&["--store", s(&store), "lock", s(recipe)]);
        assert_eq!(c, 0, "lock: {o}{e}");
        fs::create_dir_all(tmp).unwrap();
        let (c, _, e) = common::eifbake_env(
            &["--store", s(&store), "build", s(recipe), "--out", s(out)],
            &[("TMPDIR", tmp)],
        );
        (c, e)
    }
}

/// The entries of the EIF's (single) ramdisk: name, kind, data.
fn ramdisk(eif: &Path, sections: &Path) -> Vec<(String, Kind, Vec<u8>)> {
    common::eifbake_ok(&["describe", s(eif), "--extract", s(sections)]);
    let mut r = Reader::open(sections.join("ramdisk0")).unwrap();
    let mut entries = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        let data = r.data_to_vec(64 << 20).unwrap();
        entries.push((e.name_lossy().into_owned(), e.kind(), data));
    }
    entries
}

/// Rewrite the manifest at `from` so that it embeds `recipe_text` (with its
/// sha256) and a lock that pins it (its `recipe_sha256` updated): what a
/// publisher of a malicious recipe would hand out. Returns the new manifest's path.
fn forged_manifest(from: &Path, recipe_text: &str, to: &Path) -> PathBuf {
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(from).unwrap()).unwrap();
    let old_recipe = m["origin"]["recipe"]["sha256"].as_str().unwrap().to_string();
    let new_recipe = Digest::of(recipe_text.as_bytes()).to_string();
    let lock = m["origin"]["lock"]["text"].as_str().unwrap().replace(&old_recipe, &new_recipe);
    assert!(lock.contains(&new_recipe), "the lock names the recipe's sha256");
    m["origin"]["recipe"]["text"] = recipe_text.into();
    m["origin"]["recipe"]["sha256"] = new_recipe.into();
    m["origin"]["lock"]["sha256"] = Digest::of(lock.as_bytes()).to_string().into();
    m["origin"]["lock"]["text"] = lock.into();
    fs::write(to, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    to.to_path_buf()
}

/// A step output that is a symlink goes into the EIF as that symlink, and a
/// directory output keeps the symlinks inside it as symlinks: the host's
/// `/etc` never is read. Then `verify` of manifests whose recipes name a
/// step `../../../escape` or collect `/out/../../../etc/hostname` is refused
/// before anything is fetched or run, and writes nothing outside its
/// scratch directory.
#[test]
fn symlink_outputs_stay_symlinks_and_forged_manifests_are_refused_before_running() {
    let env = env();
    let script = "mkdir -p /out/r /out/dir\necho hi > /out/r/greeting\n\
                  busybox ln -s /etc /out/hostetc\nbusybox ln -s /etc/hostname /out/dir/h\necho x > /out/dir/x";
    let outputs =
        "outputs = { \"/out/r\" = \"/r\", \"/out/hostetc\" = \"/hostetc\", \"/out/dir\" = \"/dir\" }";
    let recipe = env.recipe("sym", script, outputs, &[]);
    let out = env.path("out");
    let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
    assert_eq!(code, 0, "{err}");
    let entries = ramdisk(&out.join("sym.eif"), &env.path("sections"));
    let get =
        |name: &str| entries.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!((get("hostetc").1, &get("hostetc").2[..]), (Kind::Symlink, &b"/etc"[..]));
    assert_eq!((get("dir/h").1, &get("dir/h").2[..]), (Kind::Symlink, &b"/etc/hostname"[..]));
    assert_eq!(get("dir/x").2, b"x\n");
    assert!(!entries.iter().any(|(n, _, _)| n.starts_with("hostetc/")), "the host's /etc was followed");

    // Forged manifests, from the publisher of a malicious recipe.
    let text = fs::read_to_string(&recipe).unwrap();
    let app = env.path("sym/recipes/sym/app");
    let source = format!("app={}", s(&app));
    let base = env.path("verify");
    let tmp = base.join("a/b");
    fs::create_dir_all(&tmp).unwrap();
    let gets_before = env.reg.gets("/blobs/");
    let climbing = text.replace("name = \"make\"", "name = \"../../../escape\"");
    let dotdot = text.replace("\"/out/r\" = \"/r\"", "\"/out/../../../etc/hostname\" = \"/r\"");
    for (label, forged, key) in
        [("name", &climbing, "steps[0].name = \"../../../escape\""), ("dotdot", &dotdot, "outputs key")]
    {
        let m = forged_manifest(&out.join("sym.manifest.json"), forged, &env.path(&format!("{label}.json")));
        let (code, o, err) =
            common::eifbake_env(&["verify", s(&m), "--source", &source], &[("TMPDIR", tmp.as_path())]);
        assert_eq!(code, 2, "{label}: {o}{err}");
        assert!(err.contains("origin.recipe.text") && err.contains(key), "{label}: {err}");
    }
    assert_eq!(env.reg.gets("/blobs/"), gets_before, "verify fetched blobs for a recipe it must refuse");
    let outside: Vec<_> = fs::read_dir(base.join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, ["b"], "verify wrote outside its scratch directory");
    assert!(!base.join("escape").exists() && !base.join("a/escape").exists());

    // A rebuild whose step fails keeps the log its error names.
    let failing = text.replace("echo hi > /out/r/greeting", "echo verify-fail-marker; exit 3");
    let m = forged_manifest(&out.join("sym.manifest.json"), &failing, &env.path("failing.json"));
    let (code, o, err) =
        common::eifbake_env(&["verify", s(&m), "--source", &source], &[("TMPDIR", tmp.as_path())]);
    assert_eq!(code, 2, "{o}{err}");
    let log = err
        .split_whitespace()
        .find(|w| w.ends_with("/out/logs/sym.make.log"))
        .unwrap_or_else(|| panic!("no log path in: {err}"));
    assert!(fs::read_to_string(log).unwrap().contains("verify-fail-marker"), "{err}");
    assert!(err.contains("is kept for inspection"), "{err}");
}

/// A step that plants `ln -s /etc /out/hostetc` and declares the output
/// `/out/hostetc/hostname` (a file) or `/out/hostusr/bin` (a directory,
/// through `ln -s /usr /out/hostusr`) is refused: the host's files never
/// reach the EIF.
#[test]
fn outputs_through_a_planted_symlink_are_refused() {
    let env = env();
    for (name, script, output) in [
        ("file", "mkdir -p /out/r\nbusybox ln -s /etc /out/hostetc", "\"/out/hostetc/hostname\" = \"/h\""),
        ("dir", "mkdir -p /out/r\nbusybox ln -s /usr /out/hostusr", "\"/out/hostusr/bin\" = \"/b\""),
    ] {
        let recipe = env.recipe(name, script, &format!("outputs = {{ \"/out/r\" = \"/r\", {output} }}"), &[]);
        let out = env.path(&format!("out-{name}"));
        let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("is a symlink, which is not followed"), "{name}: {err}");
        assert!(!out.join(format!("{name}.eif")).exists());
    }
}

/// A failing step: the error names its log under `OUT/logs`, and that file
/// exists after the build and holds all of the step's output (more than the
/// tail the error shows). A successful step's log is there too.
#[test]
fn a_failed_steps_log_is_kept_where_the_error_says() {
    let env = env();
    let script = "i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); done\nexit 3";
    let recipe = env.recipe("fails", script, OUTPUTS, &[]);
    let out = env.path("out");
    let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
    assert_eq!(code, 2, "{err}");
    let log = out.join("logs/fails.make.log");
    assert!(err.contains(&log.display().to_string()), "the error does not name {}: {err}", log.display());
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("line-0\n") && text.contains("line-99\n"), "{text}");
    assert!(!err.contains("line-0\n"), "the error shows only the tail");

    let recipe = env.recipe("works", "mkdir -p /out/r\necho built-it; echo x > /out/r/x", OUTPUTS, &[]);
    let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
    assert_eq!(code, 0, "{err}");
    assert!(fs::read_to_string(out.join("logs/works.make.log")).unwrap().contains("built-it"));
}

/// What a build killed with `kill -9` leaves (a scratch directory in
/// `$TMPDIR`, a staging directory with a half-written EIF in the output
/// directory) is removed by the next build; the directories of a build that
/// still runs (held by a live process's lock) are not.
#[test]
fn stale_scratch_and_staging_directories_are_cleaned_and_live_ones_kept() {
    let env = env();
    let recipe = env.recipe("clean", "mkdir -p /out/r\necho x > /out/r/x", OUTPUTS, &[]);
    let tmp = env.path("tmp");
    let out = env.path("out");
    let stale = [tmp.join("eifbake-build-AbC123"), out.join(".eifbake-out-XyZ789")];
    let live = [tmp.join("eifbake-build-live01"), out.join(".eifbake-out-live01")];
    for d in stale.iter().chain(&live) {
        fs::create_dir_all(d.join("steps")).unwrap();
        fs::write(d.join("steps/clean.eif"), vec![0u8; 1 << 20]).unwrap();
    }
    // A live owner: `flock` holds the directory's lock while it runs. With
    // --no-fork it becomes the `sleep`, so killing it below ends the holder
    // (a forked `sleep` would outlive the test, holding the lock and the
    // test's output pipe for ten minutes).
    let mut holders: Vec<_> = live
        .iter()
        .map(|d| Command::new("flock").arg("--no-fork").arg(d).arg("sleep").arg("600").spawn().unwrap())
        .collect();
    let locked = |d: &Path| !Command::new("flock").arg("-n").arg(d).arg("true").status().unwrap().success();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !live.iter().all(|d| locked(d)) {
        assert!(std::time::Instant::now() < deadline, "flock did not take the locks");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, err) = env.build(&recipe, &out, &tmp);
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    assert_eq!(code, 0, "{err}");
    for d in &stale {
        assert!(!d.exists(), "{} was not removed", d.display());
    }
    for d in &live {
        assert!(d.join("steps/clean.eif").exists(), "{} of a live build was removed", d.display());
    }
    let left = |dir: &Path, prefix: &str| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(prefix))
            .count()
    };
    assert_eq!(left(&tmp, "eifbake-build-"), 1, "only the live scratch directory is left");
    assert_eq!(left(&out, ".eifbake-out-"), 1, "only the live staging directory is left");
}

/// A glibc program as the enclave command on a busybox root: refused at
/// build time, naming the command, the interpreter and the fix. With the
/// interpreter added as an output, the same program passes the check.
#[test]
fn a_dynamic_command_without_its_interpreter_is_refused() {
    let env = env();
    let ls = Path::new("/bin/ls");
    let ldso = Path::new("/lib64/ld-linux-x86-64.so.2");
    let script = "mkdir -p /out/r /out/lib64\ncp /src/app/ls /out/r/ls\ncp /src/app/ld.so /out/lib64/ld";
    let text_outputs = "outputs = { \"/out/r\" = \"/r\" }";
    let recipe = env.recipe("dyn", script, text_outputs, &[("ls", ls), ("ld.so", ldso)]);
    let text = fs::read_to_string(&recipe)
        .unwrap()
        .replace("command = [\"/bin/sh\"]", "command = [\"/r/ls\", \"-l\"]");
    fs::write(&recipe, &text).unwrap();
    let out = env.path("out");
    let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
    assert_eq!(code, 2, "{err}");
    for want in [
        "enclave.command \"/r/ls\"",
        "ELF interpreter /lib64/ld-linux-x86-64.so.2",
        "Link the program statically",
    ] {
        assert!(err.contains(want), "{want:?} missing: {err}");
    }
    assert!(!out.join("dyn.eif").exists());

    fs::write(
        &recipe,
        text.replace(
            text_outputs,
            "outputs = { \"/out/r\" = \"/r\", \"/out/lib64/ld\" = \"/lib64/ld-linux-x86-64.so.2\" }",
        ),
    )
    .unwrap();
    let (code, err) = env.build(&recipe, &out, &env.path("tmp"));
    assert_eq!(code, 0, "{err}");
}
