//! Caution deployment files through `eifbake import`: examples/procfile-app
//! (a Procfile, a Containerfile, its app sources) imported, locked, built
//! in two directories to the same bytes, `verify` GOOD, the manifest
//! carrying app_sources, enclave_sources, metadata and the deployment
//! settings; its `binary` form, whose root holds only that file (and what
//! eifbake adds); and the refusals at the command line (exit 2, naming the
//! file, line and key), the attacks on paths among them. Builds run as
//! root (CI does); the rest does not need it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eifbake, TestRegistry};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/procfile-app")
}

/// A copy of the example at `to`, without its recipe; `from` replaced by
/// `image` in the Containerfile.
fn copy_example(to: &Path, image: Option<&str>) -> PathBuf {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    let o = Command::new("cp").arg("-r").arg(example()).arg(to).output().unwrap();
    assert!(o.status.success(), "cp: {}", String::from_utf8_lossy(&o.stderr));
    fs::remove_file(to.join("recipe.toml")).unwrap();
    if let Some(image) = image {
        let cf = to.join("Containerfile");
        let text =
            fs::read_to_string(&cf).unwrap().replace("127.0.0.1:5055/eifbake-demo/busybox:1.35", image);
        fs::write(&cf, text).unwrap();
    }
    to.to_path_buf()
}

/// The flags the example's committed recipe was imported with.
const DEMO_FLAGS: [&str; 4] = [
    "--kernel-image",
    "127.0.0.1:5055/eifbake-demo/linux-cloud:6.1",
    "--init-image",
    "127.0.0.1:5055/eifbake-demo/init:1",
];

/// The committed recipe is what `eifbake import` writes (so it stays in
/// step with the Procfile and the importer); importing again gives the same
/// bytes; an existing recipe is kept unless --force.
#[test]
fn the_example_recipe_is_what_import_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_example(&tmp.path().join("procfile-app"), None);
    let procfile = dir.join("Procfile");
    let mut args = vec!["import", s(&procfile)];
    args.extend(DEMO_FLAGS);
    let (code, o, e) = eifbake(&args);
    assert_eq!(code, 0, "import: {o}{e}");
    let written = fs::read(dir.join("recipe.toml")).unwrap();
    assert!(
        written == fs::read(example().join("recipe.toml")).unwrap(),
        "examples/procfile-app/recipe.toml is stale"
    );
    let (code, _, e) = eifbake(&args);
    assert_eq!(code, 2);
    assert!(e.contains("recipe.toml exists; give --force"), "{e}");
    args.push("--force");
    let (code, o, e) = eifbake(&args);
    assert_eq!(code, 0, "import --force: {o}{e}");
    assert!(fs::read(dir.join("recipe.toml")).unwrap() == written, "same input, same bytes");
    // -o elsewhere is refused: the recipe's paths are relative to the repository.
    let other = tmp.path().join("recipe.toml");
    let (code, _, e) = eifbake(&["import", s(&procfile), "-o", s(&other)]);
    assert_eq!(code, 2);
    assert!(e.contains("must sit beside"), "{e}");
    let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 4, "no temporary file left: {leftovers:?}");
}

/// Refusals at the command line: exit 2, the file, line and key named; a
/// Containerfile or tarball reached through a symlink out of the
/// repository is refused before anything is written.
#[test]
fn refusals_name_the_file_line_and_key_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("Containerfile"), "FROM scratch\nCOPY secret /\nCMD [\"/x\"]\n").unwrap();
    fs::write(outside.join("image.tar"), "not really").unwrap();
    let cases: [(&str, &str, &str); 6] = [
        ("Procfile", "run: /app/x\nbuild: make\n", "Procfile:2: build: the legacy build command"),
        ("Procfile", "containerfile: Containerfile\n", "Procfile: run: missing"),
        (
            "Procfile",
            "run: /x\ncontainerfile: link/Containerfile\n",
            "Procfile:2: containerfile: \"link/Containerfile\" leads to",
        ),
        (
            "Procfile",
            "run: /x\noci_tarball: link/image.tar\n",
            "Procfile:2: oci_tarball: \"link/image.tar\" leads to",
        ),
        (
            "Procfile",
            "run: /x\ncontainerfile: ../outside/Containerfile\n",
            "Procfile:2: containerfile: \"../outside/Containerfile\": expected",
        ),
        ("caution.hcl", "run = \"/x\"\nregion = \"us-east-1\"\n", "caution.hcl:2: region: unknown field"),
    ];
    for (i, (name, text, want)) in cases.iter().enumerate() {
        let repo = tmp.path().join(format!("repo{i}"));
        fs::create_dir_all(&repo).unwrap();
        std::os::unix::fs::symlink(&outside, repo.join("link")).unwrap();
        fs::write(repo.join(name), text).unwrap();
        let (code, o, e) = eifbake(&["import", s(&repo.join(name))]);
        assert_eq!(code, 2, "{text}: {o}{e}");
        assert!(e.contains(want), "{text}:\n{e}\nwant {want}");
        assert!(!repo.join("recipe.toml").exists(), "nothing written for {text}");
    }
}

/// `eifbake describe --extract` and GNU cpio: the enclave's root filesystem.
fn eif_root(work: &Path, eif: &Path) -> PathBuf {
    let x = work.join("extract");
    let _ = fs::remove_dir_all(&x);
    let (code, o, e) = eifbake(&["describe", s(eif), "--extract", s(&x)]);
    assert_eq!(code, 0, "describe: {o}{e}");
    let tree = work.join("eif-root");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(&tree).unwrap();
    let o = Command::new("cpio")
        .args(["-i", "-d", "--no-absolute-filenames", "--quiet"])
        .current_dir(&tree)
        .stdin(fs::File::open(x.join("ramdisk0")).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio: {}", String::from_utf8_lossy(&o.stderr));
    tree
}

/// Every non-directory path under `root`.
fn files(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect()
}

fn ok(args: &[&str]) {
    let (code, o, e) = eifbake(args);
    assert_eq!(code, 0, "eifbake {args:?}: {o}{e}");
}

/// import → lock → build in two directories (other umask, time zone,
/// locale, store, no cache) → the same bytes → `verify` GOOD; the manifest
/// lists what the Procfile gave. Then the `binary` form of the same app.
#[test]
fn procfile_app_imports_builds_twice_identically_verifies_and_binary_keeps_one_file() {
    if !common::root_or_skip("building the Procfile example") {
        return;
    }
    let reg = TestRegistry::start();
    common::push_fixtures(&reg);
    let bb = reg.image("fx/busybox:1");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let a = copy_example(&work.join("a/procfile-app"), Some(&bb));
    let boot = ["--kernel-image", &bb, "--kernel-path", "/bin/busybox", "--kernel-config", ""];
    let boot = [&boot[..], &["--init-image", &bb, "--init-path", "/bin/busybox"]].concat();
    let procfile = a.join("Procfile");
    ok(&[&["import", s(&procfile)], &boot[..]].concat());
    let store_a = work.join("store-a");
    ok(&["--store", s(&store_a), "lock", s(&a)]);
    let out_a = work.join("out-a");
    ok(&["--store", s(&store_a), "build", s(&a), "--out", s(&out_a)]);

    let b = work.join("b/elsewhere/procfile-app");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    assert!(Command::new("cp").arg("-a").arg(&a).arg(&b).status().unwrap().success());
    let out_b = work.join("out-b");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077 && exec \"$@\"", "sh"]).arg(common::bin::eifbake_cmd().get_program());
    let o = common::bin::clean_env(&mut cmd)
        .args(["--store", s(&work.join("store-b")), "build", s(&b), "--no-cache", "--out", s(&out_b)])
        .envs([("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8")])
        .output()
        .unwrap();
    assert!(o.status.success(), "build B: {}", String::from_utf8_lossy(&o.stderr));
    for ext in ["eif", "pcrs", "manifest.json"] {
        let f = format!("procfile-app.{ext}");
        assert!(fs::read(out_a.join(&f)).unwrap() == fs::read(out_b.join(&f)).unwrap(), "{f} differs");
    }
    let m_path = out_a.join("procfile-app.manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&m_path).unwrap()).unwrap();
    let origin = &m["origin"];
    assert_eq!(origin["app_sources"], serde_json::json!(["https://codeberg.org/example/procfile-app"]));
    assert_eq!(origin["deployment"], serde_json::json!({"domain": "hello.example.com", "ports": "8083"}));
    // The source lists and the metadata are measured: in the inputs the EIF embeds.
    let enclave = &m["inputs"]["enclave"];
    assert_eq!(enclave["app_sources"], serde_json::json!(["https://codeberg.org/example/procfile-app"]));
    assert_eq!(enclave["enclave_sources"], serde_json::json!(["https://codeberg.org/example/enclaveos"]));
    assert_eq!(enclave["metadata"], "procfile-app example 0.1.0");
    assert!(origin.get("enclave_sources").is_none() && origin.get("metadata").is_none(), "{origin}");
    assert_eq!(enclave["command"], serde_json::json!(["/app/hello", "--greeting", "hello"]));
    assert_eq!((enclave["memory_mib"].as_u64(), enclave["cpus"].as_u64()), (Some(256), Some(2)));
    let root_a = eif_root(work, &out_a.join("procfile-app.eif"));
    let embedded: serde_json::Value =
        serde_json::from_slice(&fs::read(root_a.join("etc/eifbake/inputs.json")).unwrap()).unwrap();
    assert_eq!(embedded, m["inputs"], "the EIF embeds the manifest's inputs, source lists included");
    let full = files(&root_a);
    assert!(full.contains(&"app/hello".to_string()) && full.contains(&"bin/busybox".to_string()), "{full:?}");

    let ctx = format!("context={}", a.display());
    let (code, o, e) = eifbake(&["verify", s(&m_path), "--source", &ctx]);
    assert_eq!(code, 0, "verify: {o}{e}");
    assert!(o.contains("GOOD"), "{o}");

    // The binary form: only /app/hello of the final stage (same store: the
    // stage's steps come from the cache).
    let text = fs::read_to_string(&procfile).unwrap() + "binary: /app/hello\n";
    fs::write(&procfile, text).unwrap();
    ok(&[&["import", s(&procfile), "--force"], &boot[..]].concat());
    ok(&["--store", s(&store_a), "lock", s(&a)]);
    let out_c = work.join("out-c");
    ok(&["--store", s(&store_a), "build", s(&a), "--out", s(&out_c)]);
    let only = files(&eif_root(work, &out_c.join("procfile-app.eif")));
    let eifbake_adds = ["cmd", "env", "etc/eifbake/inputs.json", "init"];
    let app: Vec<&String> = only.iter().filter(|f| !eifbake_adds.contains(&f.as_str())).collect();
    assert_eq!(app, ["app/hello"], "the binary form's root: {only:?}");
    assert!(full.len() > only.len() + 2, "{full:?}");
}

/// Attack: `binary` names a symlink the Containerfile's stage made to a
/// host path. The copy resolves it inside the stage's root (as every copy
/// does), so the enclave gets the stage's own file, never the host's.
#[test]
fn binary_through_a_symlink_never_reads_the_host() {
    if !common::root_or_skip("building a Containerfile with steps") {
        return;
    }
    let reg = TestRegistry::start();
    common::push_fixtures(&reg);
    let bb = reg.image("fx/busybox:1");
    let tmp = tempfile::tempdir().unwrap();
    // Outside /tmp: a step's /tmp is a fresh tmpfs (see tests/containerfile.rs).
    let host = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let m = host.path().join("host-dir");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("secret"), "host secret\n").unwrap();
    let m = m.display();
    let repo = tmp.path().join("evil");
    fs::create_dir_all(&repo).unwrap();
    fs::write(
        repo.join("Containerfile"),
        format!(
            "FROM {bb} AS bb\nFROM scratch\nCOPY --from=bb . /\n\
             RUN --network=none /bin/busybox mkdir -p /app {m} && echo inside > {m}/secret \
             && /bin/busybox ln -s {m}/secret /app/server\nCMD [\"/app/server\"]\n"
        ),
    )
    .unwrap();
    fs::write(repo.join("Procfile"), "run: /app/server\nbinary: /app/server\n").unwrap();
    let boot = ["--kernel-image", &bb, "--kernel-path", "/bin/busybox", "--kernel-config", ""];
    let boot = [&boot[..], &["--init-image", &bb, "--init-path", "/bin/busybox"]].concat();
    ok(&[&["import", s(&repo.join("Procfile"))], &boot[..]].concat());
    let store = tmp.path().join("store");
    ok(&["--store", s(&store), "lock", s(&repo)]);
    let out = tmp.path().join("out");
    ok(&["--store", s(&store), "build", s(&repo), "--out", s(&out)]);
    let tree = eif_root(tmp.path(), &out.join("evil.eif"));
    let server = tree.join("app/server");
    assert!(server.symlink_metadata().unwrap().is_file(), "the copy follows the link inside the root");
    assert_eq!(fs::read_to_string(&server).unwrap(), "inside\n", "the stage's own file, not the host's");
    let all = fs::read_dir(tree.join("app")).unwrap().count();
    assert_eq!(all, 1);
    assert_eq!(fs::read_to_string(host.path().join("host-dir/secret")).unwrap(), "host secret\n");
    assert_eq!(fs::read_dir(host.path().join("host-dir")).unwrap().count(), 1, "nothing written to the host");
}

/// `oci_tarball`: the image the recipe's comment says to import (`store
/// import FILE --name REF`) is the root filesystem; with `binary`, a root
/// step copies only that file of it. Kernel and init come from the same
/// tarball here, so `lock --offline` needs no registry at all.
#[test]
fn oci_tarball_is_the_root_and_binary_keeps_one_file_of_it() {
    if !common::root_or_skip("building from an OCI tarball") {
        return;
    }
    let reg = TestRegistry::start();
    common::push_fixtures(&reg);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("tarball-app");
    fs::create_dir_all(&repo).unwrap();
    let tar = repo.join("image.tar");
    common::skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}", reg.image("fx/busybox:1")),
        &format!("oci-archive:{}", tar.display()),
    ]);
    let reference = eifbake::procfile::tarball_reference("tarball-app");
    let store = tmp.path().join("store");
    ok(&["--store", s(&store), "store", "import", s(&tar), "--name", &reference]);
    let procfile = repo.join("Procfile");
    let boot = ["--kernel-image", &reference, "--kernel-path", "/bin/busybox", "--kernel-config", ""];
    let boot = [&boot[..], &["--init-image", &reference, "--init-path", "/bin/busybox"]].concat();
    for (i, (procfile_text, want)) in [
        ("run: /bin/sh\noci_tarball: image.tar\n", &["bin/busybox", "bin/cat", "bin/sh"][..]),
        ("run: /bin/busybox\noci_tarball: image.tar\nbinary: /bin/busybox\n", &["bin/busybox"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        fs::write(&procfile, procfile_text).unwrap();
        ok(&[&["import", s(&procfile), "--force"], &boot[..]].concat());
        let recipe = fs::read_to_string(repo.join("recipe.toml")).unwrap();
        assert!(recipe.contains(&format!("eifbake store import image.tar --name {reference}")), "{recipe}");
        ok(&["--store", s(&store), "--offline", "lock", s(&repo)]);
        let out = tmp.path().join(format!("out{i}"));
        ok(&["--store", s(&store), "--offline", "build", s(&repo), "--out", s(&out)]);
        let root = files(&eif_root(tmp.path(), &out.join("tarball-app.eif")));
        let eifbake_adds = ["cmd", "env", "etc/eifbake/inputs.json", "init"];
        let app: Vec<&str> = root.iter().map(String::as_str).filter(|f| !eifbake_adds.contains(f)).collect();
        for w in want {
            assert!(app.contains(w), "{procfile_text}: {w} missing from {app:?}");
        }
        if want.len() == 1 {
            assert_eq!(app, want, "the binary form's root");
        }
    }
}
