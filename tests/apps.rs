//! Real applications end to end: recipes/rust-server, a Rust HTTP server
//! with crates.io dependencies, compiled by the Debian Rust toolchain image
//! (scripts/make-rust-image.sh) from crates vendored by a `cargo_lock`
//! source, built twice in different directories under a different umask and
//! TZ into the same EIF bytes, and rebuilt by `eifbake verify` from the
//! manifest alone (GOOD); then the EIF's kernel and ramdisk boot under QEMU
//! and the server answers over a forwarded port with the app's page.
//!
//! Loopback only: the images come from a loopback registry, the `.crate`
//! files (httparse and itoa, which eifbake's own Cargo.lock pins, so building
//! eifbake put them in the host's cargo cache) from a loopback HTTP server.
//!
//! Cost: the toolchain image is built once and cached under
//! target/fixtures/ (keyed by the Debian package versions); build A uses a
//! store under target/fixtures/apps-store, so a warm run reuses its step.
//! Build B (`--no-cache`) and `verify` always compile.
//!
//! Needs root, crun, docker-registry, skopeo (scripts/deps.sh), the Debian
//! archive the first time (the toolchain packages, the cloud kernel).

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::crates::{cached_crate, own_locked};
use common::http::HttpServer;
use common::TestRegistry;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RECIPE: &str = "recipes/rust-server";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The fixture images recipes/rust-server names, made from Debian packages
/// into `images/` and pushed to `reg` under the names the recipe uses.
fn push_images(reg: &TestRegistry, images: &Path) {
    let script = |name: &str| Path::new(ROOT).join("scripts").join(name);
    fs::create_dir_all(images).unwrap();
    common::qemu::kernel(); // cached for make-kernel-image.sh
    run(Command::new(script("make-busybox-image.sh")).arg(images.join("busybox")).arg("1.35"));
    run(Command::new(script("make-kernel-image.sh"))
        .arg(images.join("kernel"))
        .arg("6.1")
        .env("EIFBAKE_KERNEL_DIR", common::qemu::kernel_dir()));
    let init_root = images.join("init-root");
    fs::create_dir_all(&init_root).unwrap();
    fs::copy(Path::new(ROOT).join("recipes/hello/init/init"), init_root.join("init")).unwrap();
    run(Command::new("chmod").arg("0755").arg(&init_root).arg(init_root.join("init")));
    run(Command::new(script("oci-layout-from-dir.sh")).arg(&init_root).arg(images.join("init")).arg("1"));
    run(Command::new(script("make-rust-image.sh")).arg(images.join("rust")).arg("1.96"));
    for (name, repo, tag) in [
        ("busybox", "busybox", "1.35"),
        ("kernel", "linux-cloud", "6.1"),
        ("init", "init", "1"),
        ("rust", "rust", "1.96"),
    ] {
        let src = format!("oci:{}:{tag}", images.join(name).display());
        let dst = format!("docker://{}/eifbake-demo/{repo}:{tag}", reg.addr);
        common::skopeo(&["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", &src, &dst]);
    }
}

/// A copy of recipes/rust-server under `project`, its images moved to `reg`.
fn copy_recipe(project: &Path, reg: &TestRegistry) {
    let dest = project.join(RECIPE);
    fs::create_dir_all(dest.join("app/src")).unwrap();
    fs::create_dir_all(dest.join("app/static")).unwrap();
    let src = Path::new(ROOT).join(RECIPE);
    for f in ["app/Cargo.toml", "app/Cargo.lock", "app/src/main.rs", "app/static/index.html"] {
        fs::copy(src.join(f), dest.join(f)).unwrap();
    }
    let recipe = fs::read_to_string(src.join("recipe.toml")).unwrap().replace("127.0.0.1:5055", &reg.addr);
    fs::write(dest.join("recipe.toml"), recipe).unwrap();
}

/// The crates of the app's Cargo.lock, served by `server`, and the eifbake
/// config file pointing `[cargo] download` at it.
fn serve_crates(server: &HttpServer, config: &Path) {
    let lock = Path::new(ROOT).join(RECIPE).join("app/Cargo.lock");
    let crates = eifbake::cargo_vendor::read_cargo_lock(&lock).unwrap();
    assert_eq!(crates.len(), 2, "{}: expected httparse and itoa", lock.display());
    for c in &crates {
        assert_eq!(c, &own_locked(&c.name), "the app's {} is not the one eifbake's Cargo.lock pins", c.name);
        server.serve(&format!("/crates/{0}/{0}-{1}.crate", c.name, c.version), &cached_crate(c));
    }
    let template = format!("http://127.0.0.1:{}/crates/{{crate}}/{{crate}}-{{version}}.crate", server.port);
    fs::write(config, format!("[cargo]\ndownload = {template:?}\n")).unwrap();
}

/// `eifbake ARGS` in `cwd` under `umask` with `env`; panics unless it exits 0.
fn eifbake_ok(cwd: &Path, args: &[&str], env: &[(&str, &str)], umask: u32) -> String {
    let mut cmd = common::bin::eifbake_cmd();
    cmd.args(args).current_dir(cwd).envs(env.iter().copied());
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "eifbake {args:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

/// The store build A uses: under target/, so a second run reuses its step.
fn persistent_store() -> PathBuf {
    Path::new(ROOT).join("target/fixtures/apps-store")
}

#[test]
fn rust_server_builds_reproducibly_and_verifies() {
    if !common::root_or_skip("building recipes/rust-server (steps run in crun)") {
        return;
    }
    let reg = TestRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    push_images(&reg, &tmp.path().join("images"));
    let server = HttpServer::start();
    let config = tmp.path().join("eifbake.toml");
    serve_crates(&server, &config);
    let cfg = s(&config);

    let (a, b) = (tmp.path().join("a/project"), tmp.path().join("elsewhere/b/project"));
    copy_recipe(&a, &reg);
    copy_recipe(&b, &reg);
    eifbake_ok(&a, &["lock", RECIPE], &[("EIFBAKE_CONFIG", cfg)], 0o022);
    fs::create_dir_all(b.join("lockfiles")).unwrap();
    fs::copy(a.join("lockfiles/rust-server.lock"), b.join("lockfiles/rust-server.lock")).unwrap();

    let (out_a, out_b) = (tmp.path().join("out-a"), tmp.path().join("out-b"));
    let store_a = persistent_store();
    let store_b = tmp.path().join("store-b");
    let args_a = ["--store", s(&store_a), "build", RECIPE, "--out", s(&out_a)];
    let env_a = [("EIFBAKE_CONFIG", cfg), ("TZ", "UTC"), ("LC_ALL", "C")];
    eifbake_ok(&a, &args_a, &env_a, 0o022);
    let args_b = ["--store", s(&store_b), "build", RECIPE, "--out", s(&out_b), "--no-cache"];
    let env_b = [("EIFBAKE_CONFIG", cfg), ("TZ", "Asia/Kathmandu"), ("LC_ALL", "C.UTF-8")];
    eifbake_ok(&b, &args_b, &env_b, 0o077);

    let eif_a = fs::read(out_a.join("rust-server.eif")).unwrap();
    let eif_b = fs::read(out_b.join("rust-server.eif")).unwrap();
    if eif_a != eif_b {
        let diff = common::bin::eifbake_cmd()
            .args(["diff", s(&out_a.join("rust-server.eif")), s(&out_b.join("rust-server.eif"))])
            .output()
            .unwrap();
        panic!("the two builds differ:\n{}", String::from_utf8_lossy(&diff.stdout));
    }
    assert_eq!(
        fs::read(out_a.join("rust-server.pcrs")).unwrap(),
        fs::read(out_b.join("rust-server.pcrs")).unwrap()
    );

    // The server binary is in the EIF, statically linked (no interpreter).
    let sections = tmp.path().join("sections");
    eifbake_ok(&a, &["describe", s(&out_a.join("rust-server.eif")), "--extract", s(&sections)], &[], 0o022);
    let ramdisk = fs::read_dir(&sections)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("ramdisk"))
        .expect("a ramdisk section");
    let listing = run(Command::new("sh").arg("-c").arg(format!("cpio -it < '{}'", ramdisk.display())));
    assert!(listing.lines().any(|l| l == "usr/bin/rust-server"), "no usr/bin/rust-server in:\n{listing}");
    let unpacked = tmp.path().join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("sh")
        .current_dir(&unpacked)
        .arg("-c")
        .arg(format!("cpio -id usr/bin/rust-server < '{}'", ramdisk.display())));
    let elf = fs::read(unpacked.join("usr/bin/rust-server")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let interp = eifbake::elf::interpreter(&mut std::io::Cursor::new(&elf)).unwrap();
    assert_eq!(interp, None, "rust-server has an interpreter: not statically linked");

    // A rebuilder's view: the manifest alone (with the app's path source,
    // which no one can download); the step is never reused by verify.
    let manifest = out_a.join("rust-server.manifest.json");
    let app = a.join(RECIPE).join("app");
    let verdict = eifbake_ok(
        tmp.path(),
        &["--store", s(&store_b), "verify", s(&manifest), "--source", &format!("app={}", s(&app))],
        &[("EIFBAKE_CONFIG", cfg)],
        0o022,
    );
    assert!(verdict.starts_with("GOOD"), "{verdict}");

    boot_and_fetch(&sections, tmp.path());
}

/// Boot the EIF's kernel and ramdisks (`sections`, from `describe
/// --extract`) under QEMU with user-mode networking and a host port
/// forwarded to the enclave's 8080, plus the overlay of
/// scripts/qemu-net-overlay.sh (virtio-net modules, eth0 set up, then the
/// server: an enclave has no network of its own), and fetch `/` with curl:
/// it must be the app's static/index.html, byte for byte.
fn boot_and_fetch(sections: &Path, scratch: &Path) {
    let overlay = scratch.join("qemu-net.cpio");
    run(Command::new(Path::new(ROOT).join("scripts/qemu-net-overlay.sh"))
        .arg(common::qemu::kernel_dir())
        .arg(&overlay));
    let mut initrd = fs::read(sections.join("ramdisk0")).unwrap();
    assert!(!sections.join("ramdisk1").exists(), "recipes/rust-server is single-ramdisk");
    initrd.extend(fs::read(&overlay).unwrap());
    fs::write(scratch.join("initrd"), &initrd).unwrap();
    let cmdline = fs::read_to_string(sections.join("cmdline")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let console = scratch.join("console.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults"])
        .args(["-serial", "stdio", "-monitor", "none", "-kernel"])
        .arg(sections.join("kernel"))
        .arg("-initrd")
        .arg(scratch.join("initrd"))
        .arg("-append")
        .arg(format!("{} console=ttyS0 panic=-1 pci=conf1", cmdline.trim()))
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8080"))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&console).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run qemu-system-x86_64 (Debian package qemu-system-x86)");
    let page = scratch.join("page.html");
    let url = format!("http://127.0.0.1:{port}/");
    let start = std::time::Instant::now();
    let mut fetched = false;
    while start.elapsed() < std::time::Duration::from_secs(240) && !fetched {
        std::thread::sleep(std::time::Duration::from_secs(1));
        fetched = Command::new("curl")
            .args(["-fs", "-m", "5", "-o"])
            .arg(&page)
            .arg(&url)
            .status()
            .expect("cannot run curl")
            .success();
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log = fs::read_to_string(&console).unwrap_or_default();
    assert!(fetched, "no answer on {url} within 240 s; console:\n{log}");
    let want = fs::read(Path::new(ROOT).join(RECIPE).join("app/static/index.html")).unwrap();
    assert_eq!(
        eifbake::digest::Digest::of(&fs::read(&page).unwrap()),
        eifbake::digest::Digest::of(&want),
        "the enclave served another page; console:\n{log}"
    );
}
