//! The test harness itself: `common::bin` runs `eifbake` with only its
//! allow-listed variables, so a developer's exported `EIFBAKE_SIGNING_KEY`,
//! `SOURCE_DATE_EPOCH` or `EIFBAKE_CONFIG` cannot change what the other
//! integration tests see.
//!
//! This binary holds a single test because it sets variables in its own
//! process environment, which no other test may observe.

mod common;
mod eif_common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::bin::eifbake_cmd;
use common::{push_fixtures, TestRegistry};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A locked recipe that signs with the test certificate and names no key
/// (so only `$EIFBAKE_SIGNING_KEY` could supply one); returns its path.
fn signing_recipe(reg: &TestRegistry, root: &Path) -> std::path::PathBuf {
    let rdir = root.join("recipes/v");
    fs::create_dir_all(rdir.join("app")).unwrap();
    fs::create_dir_all(rdir.join("keys")).unwrap();
    fs::write(rdir.join("app/main.sh"), "echo main\n").unwrap();
    let cert = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing/signer1.pem");
    fs::copy(cert, rdir.join("keys/cert.pem")).unwrap();
    let mut text = common::busybox_step_recipe(
        "v",
        "1.0.0",
        &reg.image("fx/busybox:1"),
        "path = \"app\"",
        "mkdir -p /out/r",
    );
    text.push_str("\n[signing]\ncertificate = \"keys/cert.pem\"\n");
    let recipe = rdir.join("recipe.toml");
    fs::write(&recipe, text).unwrap();
    let o = eifbake_cmd().args(["--store", s(&root.join("store")), "lock", s(&recipe)]).output().unwrap();
    assert!(o.status.success(), "lock: {}", stderr(&o));
    recipe
}

#[test]
fn the_runner_hides_the_callers_eifbake_environment() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let dir = tempfile::tempdir().unwrap();
    let recipe = signing_recipe(&reg, dir.path());
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing/signer1.key");
    let poison: [(&str, &str); 4] = [
        ("EIFBAKE_SIGNING_KEY", s(&key)),
        ("SOURCE_DATE_EPOCH", "yesterday"),
        ("EIFBAKE_CONFIG", "/nonexistent/eifbake-config.toml"),
        ("EIFBAKE_STORE", "/dev/null/store"),
    ];
    for (k, v) in poison {
        std::env::set_var(k, v);
    }
    // An empty store and --offline: a build that gets past its signing key
    // stops at the first image instead of building.
    let build = || {
        let mut c = eifbake_cmd();
        c.args(["--offline", "--store", s(&dir.path().join("empty-store")), "build", s(&recipe)])
            .args(["--out", s(&dir.path().join("out"))]);
        c
    };

    // Each variable, were it inherited, changes what this build does...
    for (k, v) in &poison[..3] {
        let o = build().env(k, v).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{k}: {err}");
        assert!(!err.contains("no private key"), "{k}={v} had no effect on the build: {err}");
    }
    // ... but through the runner it sees none of them: no key, so refused.
    let o = build().output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no private key") && err.contains("EIFBAKE_SIGNING_KEY"), "{err}");

    // `eifbake eif` ignores the process's SOURCE_DATE_EPOCH=yesterday too, and
    // the golden build (its own SOURCE_DATE_EPOCH) still gives the golden bytes.
    let eif = dir.path().join("eif");
    fs::create_dir_all(&eif).unwrap();
    eif_common::write_inputs(&eif, b"hello\n", 0o100644);
    let o = eif_common::eifbake().args(eif_common::build_args(&eif, "x.eif")).output().unwrap();
    assert!(o.status.success(), "eif with SOURCE_DATE_EPOCH=yesterday in the test process: {}", stderr(&o));
    let golden = dir.path().join("golden");
    fs::create_dir_all(&golden).unwrap();
    let (_, bytes, _) = eif_common::golden_build(&golden, "x86_64", &[], "022", &[]);
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(eif_common::golden_path("x86_64")).unwrap()).unwrap();
    assert_eq!(eifbake::digest::Digest::of(&bytes).to_string(), expected["eif_sha256"]);
}
