//! `eifbake check` against real builds (crun, a loopback registry, the busybox
//! fixture image): a deterministic recipe passes with every variation on;
//! recipes that really are non-deterministic fail with exit 1 and the bisect
//! names the cause. Runs as root (CI does): the `user` and `dirorder`
//! variations need it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{eifbake, TestRegistry};

/// A project with `recipes/NAME/recipe.toml` whose one step runs `script`
/// in the busybox fixture with the path source `app` at /src/app and whose
/// `/out/r` becomes `/r` in the enclave; locked against `reg`.
pub fn project(reg: &TestRegistry, root: &Path, name: &str, script: &str) -> PathBuf {
    let dir = root.join("recipes").join(name);
    fs::create_dir_all(dir.join("app/sub")).unwrap();
    for f in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] {
        fs::write(dir.join("app").join(f), format!("{f}\n")).unwrap();
    }
    fs::write(dir.join("app/sub/inner"), "inner\n").unwrap();
    let image = reg.image("fx/busybox:1");
    let text = common::busybox_step_recipe(name, "0.1.0", &image, "path = \"app\"", script);
    let recipe = dir.join("recipe.toml");
    fs::write(&recipe, text).unwrap();
    let store = root.join("store");
    let (code, out, err) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(code, 0, "lock: {out}{err}");
    recipe
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn check(root: &Path, recipe: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let store = root.join("store");
    let mut args = vec!["--store", s(&store), "check", s(recipe), "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = eifbake(&args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("check exited {code}, {e}: {out}\n{err}"));
    (code, v, err)
}

fn causes(v: &serde_json::Value) -> Vec<String> {
    v["causes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

fn fixtures() -> (TestRegistry, tempfile::TempDir) {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    (reg, tempfile::tempdir().unwrap())
}

/// Everything a step could try to read from the host: the umask, its working
/// directory, its environment, the time zone and date as formatted from
/// SOURCE_DATE_EPOCH, the user, a sorted listing. The sandbox fixes all of
/// them, so every variation must leave the EIF unchanged. The build path in
/// particular cannot leak: steps see sources at fixed guest paths, and the
/// manifest names the recipe relative to the project.
#[test]
fn deterministic_recipe_passes_every_variation() {
    let (reg, dir) = fixtures();
    let script = "mkdir -p /out/r\numask > /out/r/umask\npwd > /out/r/pwd\n/bin/busybox env | /bin/busybox sort > /out/r/env\n\
/bin/busybox date -d @$SOURCE_DATE_EPOCH > /out/r/date\n/bin/busybox id > /out/r/id\nls -R /src/app > /out/r/list";
    let recipe = project(&reg, dir.path(), "steady", script);
    let (code, v, err) = check(dir.path(), &recipe, &[]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["reproducible"], true);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0, "as root nothing is skipped: {v:#}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["vary"].as_array().unwrap().len(), 9, "every variation applied: {v:#}");
}

/// A step that writes the clock differs between two controls already.
#[test]
fn the_clock_is_caught_without_any_variation() {
    let (reg, dir) = fixtures();
    let recipe =
        project(&reg, dir.path(), "clock", "/bin/busybox date +%s > /out/r\ncat /proc/uptime >> /out/r");
    let (code, v, err) = check(dir.path(), &recipe, &["--vary", "umask,tz"]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["reproducible"], false);
    assert_eq!(v["differs_without_variation"], true, "{v:#}");
    // The diff names the ramdisk entry that differs.
    let sections = v["diff"]["sections"].as_array().unwrap();
    let changed: Vec<&str> = sections
        .iter()
        .flat_map(|s| s["entries"]["changed"].as_array().cloned().unwrap_or_default())
        .map(|c| c["path"].as_str().unwrap().to_string())
        .map(|p| Box::leak(p.into_boxed_str()) as &str)
        .collect();
    assert!(changed.contains(&"r"), "{v:#}");
}

/// `find` lists a directory in readdir order; with the source tree created in
/// reverse order (on tmpfs), the listing changes, and only `dirorder` is blamed.
#[test]
fn directory_order_is_named_by_the_bisect() {
    let (reg, dir) = fixtures();
    let recipe = project(&reg, dir.path(), "order", "/bin/busybox find /src/app > /out/r");
    let (code, v, err) = check(dir.path(), &recipe, &[]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["differs_without_variation"], false, "{v:#}");
    assert_eq!(causes(&v), ["dirorder"], "{v:#}");
}

/// `--keep` leaves the differing outputs; `--vary` rejects unknown names (exit 2).
#[test]
fn keep_and_bad_vary() {
    let (reg, dir) = fixtures();
    let recipe = project(&reg, dir.path(), "keep", "/bin/busybox find /src/app > /out/r");
    let (code, v, err) = check(dir.path(), &recipe, &["--vary", "dirorder", "--keep"]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    let kept = PathBuf::from(v["kept"].as_str().unwrap());
    let (a, b) = (v["differing"][0].as_str().unwrap(), v["differing"][1].as_str().unwrap());
    assert!(Path::new(a).is_file() && Path::new(b).is_file() && Path::new(a).starts_with(&kept));
    fs::remove_dir_all(&kept).unwrap();
    let store = dir.path().join("store");
    let (code, _, err) = eifbake(&["--store", s(&store), "check", s(&recipe), "--vary", "moon"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown variation \"moon\""), "{err}");
}

/// A recipe with a `[signing]` table (certificate and key relative to the
/// recipe): every run signs, so the runs agree on the signed file, which is
/// the very file `build` writes; `--unsigned` checks the unsigned one.
#[test]
fn a_signing_recipe_is_checked_signed() {
    let (reg, dir) = fixtures();
    let recipe = project(&reg, dir.path(), "signed", "mkdir -p /out/r\necho signed > /out/r/x");
    let keys = recipe.parent().unwrap().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
    fs::copy(data.join("signer2.pem"), keys.join("cert.pem")).unwrap();
    fs::copy(data.join("signer2.key"), keys.join("key.pem")).unwrap();
    let mut text = fs::read_to_string(&recipe).unwrap();
    text.push_str("\n[signing]\ncertificate = \"keys/cert.pem\"\nkey = \"keys/key.pem\"\n");
    fs::write(&recipe, text).unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, v, err) = check(dir.path(), &recipe, &["--vary", "umask,path"]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    let out_dir = dir.path().join("out");
    let (code, out, err) =
        eifbake(&["--store", s(&store), "build", s(&recipe), "--out", s(&out_dir), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let built: serde_json::Value = serde_json::from_str(&out).unwrap();
    let signed_sha = &built["manifest"]["outputs"]["eif"]["sha256"];
    assert!(built["manifest"]["outputs"]["pcrs"]["PCR8"].is_string(), "{built:#}");
    for run in v["runs"].as_array().unwrap() {
        assert_eq!(&run["sha256"], signed_sha, "check's runs are not the signed build: {v:#}");
    }

    let (code, v, err) = check(dir.path(), &recipe, &["--vary", "umask", "--unsigned"]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_ne!(&v["runs"][0]["sha256"], signed_sha, "--unsigned still signed");
}

/// A recipe signed by a key on a PKCS#11 token (SoftHSM2): the token is
/// checked, but the runs build unsigned, because the token's random ECDSA
/// nonces would make signed runs differ; so the check passes, and a wrong
/// PIN still fails it before any run.
#[test]
fn a_token_key_is_checked_but_the_runs_are_unsigned() {
    let (reg, dir) = fixtures();
    let hsm = common::softhsm::SoftHsm::new();
    let recipe = project(&reg, dir.path(), "token", "mkdir -p /out/r\necho token > /out/r/x");
    let keys = recipe.parent().unwrap().join("keys");
    fs::create_dir_all(&keys).unwrap();
    fs::copy(&hsm.certificate, keys.join("cert.pem")).unwrap();
    let mut text = fs::read_to_string(&recipe).unwrap();
    let no_pin = format!("pkcs11:token={};object={}", common::softhsm::TOKEN, common::softhsm::KEY);
    // A PIN in the recipe would be published with it (the manifest records the recipe's text).
    let with_pin = format!("{text}\n[signing]\ncertificate = \"keys/cert.pem\"\nkey = \"{}\"\n", hsm.uri());
    fs::write(&recipe, with_pin).unwrap();
    let (code, out, err) = eifbake(&["--store", s(&dir.path().join("store")), "lock", s(&recipe)]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("would publish the PIN"), "{err}");
    text.push_str(&format!("\n[signing]\ncertificate = \"keys/cert.pem\"\nkey = \"{no_pin}\"\n"));
    fs::write(&recipe, text).unwrap();
    let store = dir.path().join("store");
    let (code, out, err) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(code, 0, "{out}{err}");
    let (conf, pin) = (hsm.conf.clone(), PathBuf::from(common::softhsm::PIN));
    let env: [(&str, &Path); 2] = [("SOFTHSM2_CONF", &conf), ("EIFBAKE_PKCS11_PIN", &pin)];
    let run_check = |extra: &[&str]| {
        let mut a =
            vec!["--store", s(&store), "check", s(&recipe), "--runs", "2", "--vary", "umask", "--json"];
        a.extend_from_slice(extra);
        common::eifbake_env(&a, &env)
    };
    let (code, out, err) = run_check(&[]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (code, out, err) = common::eifbake_env(
        &[
            "--store",
            s(&store),
            "build",
            s(&recipe),
            "--unsigned",
            "--out",
            s(&dir.path().join("out")),
            "--json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let built: serde_json::Value = serde_json::from_str(&out).unwrap();
    for run in v["runs"].as_array().unwrap() {
        assert_eq!(
            run["sha256"], built["manifest"]["outputs"]["eif"]["sha256"],
            "not the unsigned build: {v:#}"
        );
    }
    let bad =
        format!("pkcs11:token={};object={}?pin-value=0000", common::softhsm::TOKEN, common::softhsm::KEY);
    let (code, out, err) = run_check(&["--private-key", &bad]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot log in to the token"), "{err}");
}
