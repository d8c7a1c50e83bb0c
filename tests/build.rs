//! End-to-end tests of `eifbake build`: a recipe whose step runs a shell
//! script in a busybox fixture image, pulled from a real loopback registry,
//! built into an EIF that the AWS crate measures the same, that boots under
//! QEMU, and that a second build elsewhere reproduces bit for bit.
//!
//! Needs root, crun, docker-registry, skopeo and qemu-system-x86 (CI installs
//! them with scripts/deps.sh), and Debian's cloud kernel (downloaded once by
//! scripts/fetch-kernel.sh from the Debian archive).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use common::TestRegistry;
use eifbake::oci::layout::Layout;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A project directory holding `recipes/hello` (the demo recipe, its images
/// moved to `reg`) and its lock, with the fixture images pushed to `reg`.
struct Project {
    _reg: TestRegistry,
    dir: tempfile::TempDir,
}

impl Project {
    fn new(layout: &str) -> Project {
        let reg = TestRegistry::start();
        let dir = tempfile::tempdir().unwrap();
        common::push_demo_images(&reg, dir.path(), ["1", "1", "1"]);
        let project = dir.path().join("project");
        let hello = project.join("recipes/hello");
        fs::create_dir_all(hello.join("app")).unwrap();
        fs::copy(Path::new(ROOT).join("recipes/hello/app/hello.sh"), hello.join("app/hello.sh")).unwrap();
        let recipe = fs::read_to_string(Path::new(ROOT).join("recipes/hello/recipe.toml"))
            .unwrap()
            .replace("127.0.0.1:5055", &reg.addr)
            .replace(":1.35\"", ":1\"")
            .replace(":6.1\"", ":1\"")
            .replace("layout = \"single\"", &format!("layout = \"{layout}\""));
        fs::write(hello.join("recipe.toml"), recipe).unwrap();
        let p = Project { _reg: reg, dir };
        p.eifbake_ok(&project, &["lock", "recipes/hello"], &[]);
        p
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// Run eifbake in `cwd` with `env`; returns (code, stdout, stderr).
    fn eifbake(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)], umask: u32) -> (i32, String, String) {
        let mut cmd = common::bin::eifbake_cmd();
        cmd.args(args).current_dir(cwd).envs(env.iter().copied());
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn eifbake_ok(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
        let (code, out, err) = self.eifbake(cwd, args, env, 0o022);
        assert_eq!(code, 0, "eifbake {args:?} exited {code}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }

    /// `eifbake build` expected to fail: returns (code, stderr).
    fn build_fails(&self, store: &Path, out: &Path) -> (i32, String) {
        let args =
            ["--store", store.to_str().unwrap(), "build", "recipes/hello", "--out", out.to_str().unwrap()];
        let (code, _, err) = self.eifbake(&self.project(), &args, &[], 0o022);
        (code, err)
    }

    fn build(&self, cwd: &Path, store: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
        let store = store.to_str().unwrap().to_string();
        let out = out.to_str().unwrap().to_string();
        let mut args = vec!["--store", store.as_str(), "build", "recipes/hello", "--out", out.as_str()];
        args.extend_from_slice(extra);
        self.eifbake_ok(cwd, &args, env)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn aws_pcrs(eif: &Path) -> BTreeMap<String, String> {
    let mut r = EifReader::from_eif(eif.display().to_string()).expect("AWS EifReader accepts the EIF");
    assert!(r.check_crc(), "AWS computes another CRC");
    let mut m = r.get_measurements().unwrap();
    m.remove("HashAlgorithm");
    m
}

fn pcrs_file(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (hex, name) = l.split_once(' ').unwrap();
            (name.to_string(), hex.to_string())
        })
        .collect()
}

#[test]
fn builds_boots_and_rebuilds_identically_elsewhere() {
    let p = Project::new("single");
    let work = p.dir.path();
    let out_a = work.join("out-a");
    let log = p.build(&p.project(), &work.join("store-a"), &out_a, &[], &[("TZ", "UTC"), ("LC_ALL", "C")]);
    assert!(log.contains("step compile: ran"), "{log}");
    // The time the step spent in the sandbox, which the benchmarks compare rebuilds against.
    let secs: f64 = log
        .lines()
        .find_map(|l| l.strip_prefix("step compile: ran (")?.strip_suffix(" s in the sandbox)"))
        .unwrap_or_else(|| panic!("no sandbox time for the step in:\n{log}"))
        .parse()
        .unwrap();
    assert!(secs > 0.0 && secs < 600.0, "{log}");
    let eif_a = out_a.join("hello.eif");
    // The four outputs and the step logs, nothing else: the staging directory is gone.
    let mut names: Vec<String> =
        fs::read_dir(&out_a).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["hello.eif", "hello.manifest.json", "hello.pcrs", "hello.provenance.json", "logs"]);
    assert!(out_a.join("logs/hello.compile.log").is_file());

    // The AWS crate agrees with the .pcrs file and the manifest.
    let ours = pcrs_file(&out_a.join("hello.pcrs"));
    let aws = aws_pcrs(&eif_a);
    for n in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(ours[n], aws[n], "{n}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out_a.join("hello.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["outputs"]["pcrs"]["PCR0"].as_str().unwrap(), ours["PCR0"]);
    let sha = format!("sha256:{}", eifbake::digest::Digest::of(&fs::read(&eif_a).unwrap()).hex());
    assert_eq!(manifest["outputs"]["eif"]["sha256"].as_str().unwrap(), sha);
    assert_eq!(manifest["origin"]["recipe"]["path"], "recipes/hello/recipe.toml");
    let prov: serde_json::Value =
        serde_json::from_slice(&fs::read(out_a.join("hello.provenance.json")).unwrap()).unwrap();
    assert_eq!(prov["subject"][0]["digest"]["sha256"].as_str().unwrap(), &sha["sha256:".len()..]);

    // describe shows the embedded inputs: the measured ones, without the
    // recipe's path or the images' registry.
    let d = p.eifbake_ok(work, &["describe", eif_a.to_str().unwrap(), "--json"], &[]);
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["Metadata"]["CustomMetadata"], manifest["inputs"]);
    let text = d["Metadata"]["CustomMetadata"].to_string();
    assert!(
        text.contains("\"steps\"") && !text.contains("recipes/hello") && !text.contains("eifbake-demo/"),
        "{text}"
    );

    // A second build: a copy of the project in another, deeper directory, a
    // fresh store, no step cache, another umask, time zone and locale.
    let other = work.join("elsewhere/deeper/checkout");
    fs::create_dir_all(&other).unwrap();
    run(Command::new("cp").arg("-a").arg(p.project().join("recipes")).arg(&other));
    run(Command::new("cp").arg("-a").arg(p.project().join("lockfiles")).arg(&other));
    let out_b = work.join("out-b");
    let env_b =
        [("TZ", "Pacific/Chatham"), ("LC_ALL", "C.UTF-8"), ("LANG", "C.UTF-8"), ("HOME", "/nonexistent")];
    let (code, log_b, err) = p.eifbake(
        &other,
        &[
            "--store",
            work.join("store-b").to_str().unwrap(),
            "build",
            "recipes/hello",
            "--out",
            out_b.to_str().unwrap(),
            "--no-cache",
        ],
        &env_b,
        0o077,
    );
    assert_eq!(code, 0, "{log_b}\n{err}");
    assert_eq!(fs::read(&eif_a).unwrap(), fs::read(out_b.join("hello.eif")).unwrap(), "EIFs differ");
    for f in ["hello.pcrs", "hello.manifest.json", "hello.provenance.json"] {
        assert_eq!(fs::read(out_a.join(f)).unwrap(), fs::read(out_b.join(f)).unwrap(), "{f} differs");
    }

    // An unchanged step comes from the cache.
    let out_c = work.join("out-c");
    let log_c = p.build(&p.project(), &work.join("store-a"), &out_c, &[], &[]);
    assert!(log_c.contains("step compile: cached"), "{log_c}");
    assert_eq!(fs::read(&eif_a).unwrap(), fs::read(out_c.join("hello.eif")).unwrap());

    // `store gc --caches` empties the step and source caches; the step runs
    // again and gives the same image.
    let store_a = work.join("store-a");
    let gc = |extra: &[&str]| {
        let mut args = vec!["--store", store_a.to_str().unwrap(), "store", "gc", "--caches", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str::<serde_json::Value>(&p.eifbake_ok(work, &args, &[])).unwrap()
    };
    let dry = gc(&["--dry-run"]);
    let entries: Vec<&str> =
        dry["caches"].as_array().unwrap().iter().map(|e| e["entry"].as_str().unwrap()).collect();
    assert!(entries.iter().any(|e| e.starts_with("steps/")), "{dry}");
    assert!(dry["caches"].as_array().unwrap().iter().all(|e| e["bytes"].as_u64().unwrap() > 0), "{dry}");
    assert!(fs::read_dir(Layout::new(&store_a).steps()).unwrap().count() > 0, "a dry run removed entries");
    let done = gc(&[]);
    assert_eq!(done["caches"], dry["caches"]);
    assert_eq!(fs::read_dir(Layout::new(&store_a).steps()).unwrap().count(), 0);
    let out_d = work.join("out-d");
    let log_d = p.build(&p.project(), &store_a, &out_d, &[], &[]);
    assert!(log_d.contains("step compile: ran"), "{log_d}");
    assert_eq!(fs::read(&eif_a).unwrap(), fs::read(out_d.join("hello.eif")).unwrap());

    // It boots: the EIF's own kernel, cmdline and ramdisk under QEMU.
    let sections = work.join("sections");
    p.eifbake_ok(work, &["describe", eif_a.to_str().unwrap(), "--extract", sections.to_str().unwrap()], &[]);
    let cmdline = fs::read_to_string(sections.join("cmdline")).unwrap();
    let boot = common::qemu::boot(
        &sections.join("kernel"),
        &[&sections.join("ramdisk0")],
        &cmdline,
        Duration::from_secs(180),
    );
    assert!(
        boot.console.contains("hello from the enclave: Linux")
            && boot.console.contains("SOURCE_DATE_EPOCH=1700000000"),
        "the enclave did not print its line:\n{}",
        boot.console
    );
}

#[test]
fn nitro_cli_layout_has_boot_and_user_ramdisks() {
    let p = Project::new("nitro-cli");
    let work = p.dir.path();
    let out = work.join("out");
    p.build(&p.project(), &work.join("store"), &out, &[], &[]);
    let eif = out.join("hello.eif");
    let aws = aws_pcrs(&eif);
    assert_eq!(pcrs_file(&out.join("hello.pcrs"))["PCR2"], aws["PCR2"]);
    let sections = work.join("sections");
    p.eifbake_ok(work, &["describe", eif.to_str().unwrap(), "--extract", sections.to_str().unwrap()], &[]);
    let list = |name: &str| -> Vec<String> {
        let out = Command::new("cpio")
            .arg("-it")
            .arg("--quiet")
            .arg("-F")
            .arg(sections.join(name))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
    };
    assert_eq!(list("ramdisk0"), ["dev", "init"]);
    let user = list("ramdisk1");
    for want in [
        "cmd",
        "env",
        "rootfs",
        "rootfs/bin/busybox",
        "rootfs/usr/bin/hello",
        "rootfs/proc",
        "rootfs/etc/eifbake/inputs.json",
    ] {
        assert!(user.iter().any(|e| e == want), "{want} missing from the user ramdisk: {user:?}");
    }
}

#[test]
fn refuses_edited_sources_and_drifted_locks_and_reports_failing_steps() {
    let p = Project::new("single");
    let work = p.dir.path();
    let project = p.project();
    let store = work.join("store");

    // A source edited after locking is refused, naming it.
    let app = project.join("recipes/hello/app/hello.sh");
    let original = fs::read(&app).unwrap();
    fs::write(&app, b"#!/bin/sh\necho tampered\n").unwrap();
    let out = work.join("out");
    let (code, err) = p.build_fails(&store, &out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sources.app") && err.contains("changed since lock"), "{err}");
    assert!(!out.join("hello.eif").exists(), "an EIF was written from an unlocked source");
    fs::write(&app, original).unwrap();

    // A recipe edited after locking (the lock has drifted) is refused.
    let recipe = project.join("recipes/hello/recipe.toml");
    let text = fs::read_to_string(&recipe).unwrap();
    fs::write(&recipe, text.replace("memory_mib = 512", "memory_mib = 1024")).unwrap();
    let (code, err) = p.build_fails(&store, &out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since") && err.contains("hello.lock"), "{err}");

    // A failing step: its command, exit code and output tail, and no EIF.
    fs::write(&recipe, text.replace("chmod 0755 /out/bin/hello", "echo about to fail; exit 3")).unwrap();
    p.eifbake_ok(&project, &["lock", "recipes/hello"], &[]);
    let (code, err) = p.build_fails(&store, &out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("compile") && err.contains("3") && err.contains("about to fail"), "{err}");
    assert!(!out.join("hello.eif").exists());

    // A declared output the step did not write is named.
    fs::write(&recipe, text.replace("chmod 0755 /out/bin/hello", "rm /out/bin/hello")).unwrap();
    p.eifbake_ok(&project, &["lock", "recipes/hello"], &[]);
    let (code, err) = p.build_fails(&store, &out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/out/bin/hello") && err.contains("did not write it"), "{err}");
    assert!(!out.join("hello.eif").exists());
}
