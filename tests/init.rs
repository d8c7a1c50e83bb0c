//! `eifbake init`: the static template locks and builds, unchanged, into an
//! EIF against the demo's fixture images (pushed to a loopback registry and
//! reached through `--registry-mirror 127.0.0.1:5055=…`, as the recipe
//! names the demo's address); the rust and go templates parse as recipes;
//! existing files are never overwritten.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::TestRegistry;
use eifbake::recipe::Recipe;

/// Run eifbake in `cwd`; returns (code, stdout, stderr).
fn eifbake(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::bin::eifbake_cmd().args(args).current_dir(cwd).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn eifbake_ok(cwd: &Path, args: &[&str]) -> String {
    let (code, out, err) = eifbake(cwd, args);
    assert_eq!(code, 0, "eifbake {args:?} exited {code}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

#[test]
fn static_template_locks_and_builds_an_eif_as_written() {
    if !common::root_or_skip("init_static_builds") {
        return;
    }
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    common::push_demo_images(&reg, work.path(), ["1.35", "6.1", "1"]);
    let project = work.path().join("first-enclave");
    let out = eifbake_ok(work.path(), &["init", "--template", "static", project.to_str().unwrap()]);
    assert!(out.contains("recipe.toml") && out.contains("hello.sh"), "{out}");
    let recipe_text = fs::read_to_string(project.join("recipe.toml")).unwrap();
    assert!(recipe_text.contains("name = \"first-enclave\""), "{recipe_text}");
    assert_eq!(fs::metadata(project.join("app/hello.sh")).unwrap().permissions().mode() & 0o777, 0o755);

    let mirror = format!("127.0.0.1:5055={}", reg.addr);
    let store = work.path().join("store");
    let dir = project.to_str().unwrap();
    eifbake_ok(&project, &["--registry-mirror", &mirror, "lock", dir]);
    let log = eifbake_ok(
        &project,
        &["--registry-mirror", &mirror, "--store", store.to_str().unwrap(), "build", dir, "--out", "out"],
    );
    assert!(log.contains("step install: ran"), "{log}");
    let eif = project.join("out/first-enclave.eif");
    let bytes = fs::read(&eif).unwrap_or_else(|e| panic!("no {}: {e}\n{log}", eif.display()));
    assert_eq!(&bytes[..4], b".eif", "not an EIF");
    // The recipe was used as written: init's output is what was locked.
    assert_eq!(fs::read_to_string(project.join("recipe.toml")).unwrap(), recipe_text);
}

#[test]
fn rust_and_go_templates_parse_as_recipes() {
    let work = tempfile::tempdir().unwrap();
    for (template, files, toolchain) in [
        ("rust", &["app/Cargo.toml", "app/Cargo.lock", "app/src/main.rs"][..], "rust"),
        ("go", &["app/go.mod", "app/main.go"][..], "go"),
    ] {
        let dir = work.path().join(template);
        eifbake_ok(work.path(), &["init", "--template", template, dir.to_str().unwrap()]);
        let (recipe, _) = Recipe::load(&dir.join("recipe.toml")).unwrap();
        assert_eq!(recipe.name, template);
        assert!(recipe.images.contains_key(toolchain), "{template}: no {toolchain} image");
        assert_eq!(recipe.steps.len(), 1);
        assert_eq!(recipe.steps[0].image, toolchain);
        for f in files {
            assert!(dir.join(f).is_file(), "{template}: {f} not written");
        }
    }
    // The Cargo.toml is one cargo reads: the package the lock lists.
    let manifest: toml::Value =
        toml::from_str(&fs::read_to_string(work.path().join("rust/app/Cargo.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["name"].as_str(), Some("hello"));
}

#[test]
fn init_refuses_to_overwrite_and_names_every_existing_file() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("p");
    fs::create_dir_all(dir.join("app")).unwrap();
    fs::write(dir.join("recipe.toml"), "mine\n").unwrap();
    fs::write(dir.join("app/hello.sh"), "also mine\n").unwrap();
    let (code, _, err) = eifbake(work.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let a = dir.join("recipe.toml");
    let b = dir.join("app/hello.sh");
    assert!(
        err.contains(&format!("{}, {} already exist; nothing was written", a.display(), b.display())),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&a).unwrap(), "mine\n");
    assert_eq!(fs::read_to_string(&b).unwrap(), "also mine\n");

    // One existing file: the others are not written either.
    fs::remove_file(&b).unwrap();
    let (code, _, err) = eifbake(work.path(), &["init", dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{} already exists; nothing was written", a.display())), "{err}");
    assert!(!b.exists());
}
