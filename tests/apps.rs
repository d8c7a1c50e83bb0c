//! Real applications end to end, the two example recipes:
//!
//! - recipes/rust-server, a Rust HTTP server with crates.io dependencies,
//!   compiled by the Debian Rust toolchain image (scripts/make-rust-image.sh)
//!   from crates vendored by a `cargo_lock` source;
//! - recipes/go-www, a Go web server (standard library only) serving files
//!   embedded with `//go:embed`, compiled by the Debian Go toolchain image
//!   (scripts/make-go-image.sh); the recipe `report`s the served files, so
//!   the manifest lists their sha256.
//!
//! Each is built into the same EIF bytes three times: once in the test's
//! project, and by `eifbake check` (every variation: another directory,
//! umask, TZ, locale, user, environment, CPU set, directory order, start
//! time) in a control run and a varied run; the server is statically
//! linked; `eifbake verify` rebuilds it from the manifest alone (GOOD); then
//! the EIF's kernel and ramdisk boot under QEMU and curl fetches the served
//! files over a forwarded port: the bytes must be the source files' (and,
//! for go-www, hash to the digests the manifest reports).
//!
//! Loopback only: the images come from a loopback registry, the `.crate`
//! files (httparse and itoa, which eifbake's own Cargo.lock pins, so building
//! eifbake put them in the host's cargo cache) from a loopback HTTP server.
//!
//! Cost: the toolchain images are built once and cached under
//! target/fixtures/ (keyed by the Debian package versions); build A uses a
//! store under target/fixtures/apps-store, so a warm run reuses its step.
//! `check`'s two runs (`--no-cache`) and `verify` always compile: three
//! compiles per app, each about 30 s for rust-server and 130 s for go-www
//! (Go rebuilds the part of its standard library net/http needs, since
//! CGO_ENABLED=0 and -trimpath match none of Debian's prebuilt packages) on
//! the 2-core machine under load.
//!
//! Needs root, crun, docker-registry, skopeo (scripts/deps.sh), the Debian
//! archive the first time (the toolchain packages, the cloud kernel).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::crates::{cached_crate, own_locked};
use common::http::HttpServer;
use common::TestRegistry;
use eifbake::digest::Digest;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One example application: recipes/NAME, the toolchain image its step runs
/// in, and whether its crates must be served (a `cargo_lock` source).
struct App {
    name: &'static str,
    /// The script under scripts/ that makes the toolchain image.
    script: &'static str,
    /// The toolchain's repository under `eifbake-demo/` and its tag, as the recipe names it.
    repo: &'static str,
    tag: &'static str,
    crates: bool,
}

const RUST_SERVER: App =
    App { name: "rust-server", script: "make-rust-image.sh", repo: "rust", tag: "1.96", crates: true };
const GO_WWW: App =
    App { name: "go-www", script: "make-go-image.sh", repo: "golang", tag: "1.19", crates: false };

impl App {
    fn recipe(&self) -> String {
        format!("recipes/{}", self.name)
    }

    fn source(&self) -> PathBuf {
        Path::new(ROOT).join(self.recipe())
    }

    /// The enclave's command, which the QEMU overlay starts instead.
    fn command(&self) -> String {
        format!("/usr/bin/{}", self.name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What every test of an app needs: a loopback registry with the demo's
/// images and the app's toolchain under the names its recipe uses, a
/// scratch directory, and for rust-server the crates server and the eifbake
/// config file naming it.
struct Setup {
    app: &'static App,
    reg: TestRegistry,
    tmp: tempfile::TempDir,
    _crates: Option<HttpServer>,
    config: Option<PathBuf>,
}

impl Setup {
    fn new(app: &'static App) -> Setup {
        let reg = TestRegistry::start();
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("fixtures");
        common::push_demo_images(&reg, &work, ["1.35", "6.1", "1"]);
        let image = work.join("images").join(app.repo);
        run(Command::new(Path::new(ROOT).join("scripts").join(app.script)).arg(&image).arg(app.tag));
        let src = format!("oci:{}:{}", image.display(), app.tag);
        let dst = format!("docker://{}/eifbake-demo/{}:{}", reg.addr, app.repo, app.tag);
        common::skopeo(&["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", &src, &dst]);
        let (mut crates, mut config) = (None, None);
        if app.crates {
            let server = HttpServer::start();
            let file = tmp.path().join("eifbake.toml");
            serve_crates(app, &server, &file);
            (crates, config) = (Some(server), Some(file));
        }
        Setup { app, reg, tmp, _crates: crates, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The environment every eifbake run gets, plus `extra`.
    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = extra.to_vec();
        if let Some(c) = &self.config {
            env.push(("EIFBAKE_CONFIG", s(c)));
        }
        env
    }

    /// A copy of the app's recipe directory under `project` (no `target/`),
    /// its images moved to this registry.
    fn copy_recipe(&self, project: &Path) {
        let dest = project.join(self.app.recipe());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let ignore = ["target".to_string()];
        eifbake::fsutil::copy_tree(&self.app.source(), &dest, &ignore, eifbake::fsutil::CopyModes::Canonical)
            .unwrap();
        let recipe =
            fs::read_to_string(dest.join("recipe.toml")).unwrap().replace("127.0.0.1:5055", &self.reg.addr);
        fs::write(dest.join("recipe.toml"), recipe).unwrap();
    }

    /// A project at `project` with the recipe copied and locked.
    fn locked_project(&self, project: &Path) {
        self.copy_recipe(project);
        eifbake_ok(project, &["lock", &self.app.recipe()], &self.env(&[]), 0o022);
    }
}

/// The crates of the app's Cargo.lock, served by `server`, and the eifbake
/// config file pointing `[cargo] download` at it.
fn serve_crates(app: &App, server: &HttpServer, config: &Path) {
    let lock = app.source().join("app/Cargo.lock");
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

/// What [`build_and_check`] leaves: build A's project and outputs, and the
/// sections of its EIF (`describe --extract`).
struct Built {
    project: PathBuf,
    out: PathBuf,
    sections: PathBuf,
}

impl Built {
    fn manifest(&self, name: &str) -> PathBuf {
        self.out.join(format!("{name}.manifest.json"))
    }
}

/// Lock the app and build it (build A: umask 022, TZ=UTC, the persistent
/// store, so a warm run reuses its step), then run `eifbake check --json`
/// from the same project: a control build and one with all nine variations
/// at once (another, deeper directory, umask 077, another TZ and locale, ...),
/// each a separate `build --no-cache` in a fresh store. All three EIFs must
/// be the same bytes. Then extract build A's sections.
fn build_and_check(setup: &Setup) -> Built {
    let (app, recipe) = (setup.app, setup.app.recipe());
    let project = setup.path("a/project");
    setup.locked_project(&project);
    let (out, store) = (setup.path("out-a"), persistent_store());
    let args = ["--store", s(&store), "build", &recipe, "--out", s(&out)];
    eifbake_ok(&project, &args, &setup.env(&[("TZ", "UTC"), ("LC_ALL", "C")]), 0o022);
    let eif = out.join(format!("{}.eif", app.name));
    let built = Digest::of(&fs::read(&eif).unwrap()).to_string();

    let store = setup.path("check-store");
    let args = ["--store", s(&store), "check", &recipe, "--json"];
    let report = eifbake_ok(&project, &args, &setup.env(&[]), 0o022);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["reproducible"], true, "{v:#}");
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0, "as root nothing is skipped: {v:#}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v:#}");
    assert_eq!(runs[1]["vary"].as_array().unwrap().len(), 9, "every variation applied: {v:#}");
    for run in runs {
        assert_eq!(
            run["sha256"].as_str(),
            Some(built.as_str()),
            "check's {} run differs from build A: {v:#}",
            run["label"]
        );
    }
    eprintln!("check {}: runs took {} s and {} s", app.name, runs[0]["seconds"], runs[1]["seconds"]);

    let sections = setup.path("sections");
    eifbake_ok(&project, &["describe", s(&eif), "--extract", s(&sections)], &[], 0o022);
    Built { project, out, sections }
}

/// The enclave's server binary is in the ramdisk, an ELF with no
/// interpreter (statically linked: it runs on the busybox root).
fn assert_static_server(app: &App, sections: &Path, scratch: &Path) {
    let ramdisk = sections.join("ramdisk0");
    assert!(!sections.join("ramdisk1").exists(), "{} is single-ramdisk", app.recipe());
    let member = app.command().trim_start_matches('/').to_string();
    let listing = run(Command::new("sh").arg("-c").arg(format!("cpio -it < '{}'", ramdisk.display())));
    assert!(listing.lines().any(|l| l == member), "no {member} in:\n{listing}");
    let unpacked = scratch.join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("sh")
        .current_dir(&unpacked)
        .arg("-c")
        .arg(format!("cpio -id {member} < '{}'", ramdisk.display())));
    let elf = fs::read(unpacked.join(&member)).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let interp = eifbake::elf::interpreter(&mut std::io::Cursor::new(&elf)).unwrap();
    assert_eq!(interp, None, "{member} has an interpreter: not statically linked");
}

/// A rebuilder's view: `verify` from the manifest alone (with the app's
/// path source, which no one can download), in the store `check` filled
/// with the pinned blobs (content addressed, so sharing it hides nothing;
/// verify never reuses a step). Must be GOOD.
fn assert_verifies(setup: &Setup, built: &Built) {
    let app = built.project.join(setup.app.recipe()).join("app");
    let store = setup.path("check-store");
    let manifest = built.manifest(setup.app.name);
    let args = ["--store", s(&store), "verify", s(&manifest), "--source", &format!("app={}", s(&app))];
    let verdict = eifbake_ok(setup.tmp.path(), &args, &setup.env(&[]), 0o022);
    assert!(verdict.starts_with("GOOD"), "{verdict}");
}

#[test]
fn rust_server_reproduces_passes_check_verifies_and_serves() {
    if !common::root_or_skip("building recipes/rust-server (steps run in crun)") {
        return;
    }
    let setup = Setup::new(&RUST_SERVER);
    let built = build_and_check(&setup);
    assert_static_server(&RUST_SERVER, &built.sections, setup.tmp.path());
    assert_verifies(&setup, &built);
    let served = boot_and_fetch(&RUST_SERVER, &built.sections, setup.tmp.path(), &["/"]);
    let want = fs::read(RUST_SERVER.source().join("app/static/index.html")).unwrap();
    assert_eq!(Digest::of(&served["/"]), Digest::of(&want), "the enclave served another page");
}

/// The files go-www embeds and serves: (URL path, file under app/static, enclave path the recipe reports).
const GO_WWW_FILES: [(&str, &str, &str); 2] = [
    ("/", "index.html", "/usr/share/www/index.html"),
    ("/style.css", "style.css", "/usr/share/www/style.css"),
];

#[test]
fn go_www_reproduces_passes_check_verifies_and_serves_the_reported_files() {
    if !common::root_or_skip("building recipes/go-www (steps run in crun)") {
        return;
    }
    let setup = Setup::new(&GO_WWW);
    let built = build_and_check(&setup);
    assert_static_server(&GO_WWW, &built.sections, setup.tmp.path());
    assert_verifies(&setup, &built);

    // The manifest reports each served file by the sha256 of its source.
    let m: serde_json::Value = serde_json::from_slice(&fs::read(built.manifest("go-www")).unwrap()).unwrap();
    let reported: BTreeMap<&str, &str> = m["outputs"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs.files in the manifest: {m:#}"))
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["sha256"].as_str().unwrap()))
        .collect();
    assert_eq!(reported.len(), GO_WWW_FILES.len(), "{reported:?}");

    let urls: Vec<&str> = GO_WWW_FILES.iter().map(|f| f.0).collect();
    let served = boot_and_fetch(&GO_WWW, &built.sections, setup.tmp.path(), &urls);
    for (url, file, path) in GO_WWW_FILES {
        let source = Digest::of(&fs::read(GO_WWW.source().join("app/static").join(file)).unwrap());
        assert_eq!(
            Digest::of(&served[url]),
            source,
            "{url}: the enclave served other bytes than static/{file}"
        );
        assert_eq!(reported.get(path).copied(), Some(source.to_string().as_str()), "{path} in the manifest");
    }
}

/// Boot the EIF's kernel and ramdisks (`sections`, from `describe
/// --extract`) under QEMU with user-mode networking and a host port
/// forwarded to the enclave's 8080, plus the overlay of
/// scripts/qemu-net-overlay.sh (virtio-net modules, eth0 set up, then the
/// app's server: an enclave has no network of its own), and fetch each of
/// `urls` with curl; returns the bodies by URL path. `no_timer_check`: on
/// a loaded host TCG can be too slow for the kernel's IO-APIC timer check,
/// which then panics ("IO-APIC + timer doesn't work") before userspace.
fn boot_and_fetch(app: &App, sections: &Path, scratch: &Path, urls: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let overlay = scratch.join("qemu-net.cpio");
    run(Command::new(Path::new(ROOT).join("scripts/qemu-net-overlay.sh"))
        .arg(common::qemu::kernel_dir())
        .arg(&overlay)
        .arg(app.command()));
    let mut initrd = fs::read(sections.join("ramdisk0")).unwrap();
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
        .arg(format!("{} console=ttyS0 panic=-1 pci=conf1 no_timer_check", cmdline.trim()))
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8080"))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&console).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run qemu-system-x86_64 (Debian package qemu-system-x86)");
    let fetch = |url: &str, to: &Path| {
        Command::new("curl")
            .args(["-fs", "-m", "5", "-o"])
            .arg(to)
            .arg(format!("http://127.0.0.1:{port}{url}"))
            .status()
            .expect("cannot run curl")
            .success()
    };
    let mut bodies = BTreeMap::new();
    let start = std::time::Instant::now();
    let mut up = false;
    while start.elapsed() < std::time::Duration::from_secs(240) && !up {
        std::thread::sleep(std::time::Duration::from_secs(1));
        up = fetch(urls[0], &scratch.join("body"));
    }
    for url in urls.iter().filter(|_| up) {
        let body = scratch.join("body");
        let _ = fs::remove_file(&body);
        if fetch(url, &body) {
            bodies.insert(url.to_string(), fs::read(&body).unwrap());
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log = fs::read_to_string(&console).unwrap_or_default();
    assert!(up, "no answer on port {port} (the enclave's 8080) within 240 s; console:\n{log}");
    for url in urls {
        assert!(bodies.contains_key(*url), "curl could not fetch {url}; console:\n{log}");
    }
    bodies
}
