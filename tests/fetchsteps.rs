//! Fetch steps (`network = true`) through the CLI, as root with crun, a
//! loopback registry and a loopback HTTP server standing in for "upstream":
//! `lock` pins what the step downloaded by its output-tree hash, `build`
//! reproduces it from the store or refuses a different download naming the
//! first differing file, `fetch` makes `build --offline` work, an ordinary
//! step still cannot reach the server, and an edited fetch step is refused.
//!
//! The server listens on the host's loopback, which a fetch step cannot
//! reach by default: the tests open its one port with
//! `EIFBAKE_FETCH_HOST_LOOPBACK_PORTS`, the user's knob for that.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{bin, TestRegistry};
use eifbake::sandbox::HOST_PORTS_ENV;

/// A loopback HTTP server answering every request with the current body.
struct Upstream {
    port: u16,
    body: Arc<Mutex<String>>,
}

impl Upstream {
    fn start(body: &str) -> Upstream {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body.to_string()));
        let shared = Arc::clone(&body);
        std::thread::spawn(move || {
            for conn in server.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let b = shared.lock().unwrap().clone();
                let _ = write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len());
            }
        });
        Upstream { port, body }
    }

    fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }
}

/// The fetch step's script: two files from upstream, in a directory.
fn fetch_script(port: u16) -> String {
    format!(
        "mkdir -p /out/deps\nwget -q -O /out/deps/a.txt http://127.0.0.1:{port}/a\n\
         wget -q -O /out/deps/b.txt http://127.0.0.1:{port}/b"
    )
}

/// A recipe whose step `vendor` fetches (`network` as given) and whose step
/// `make` (never networked) copies what it fetched into the enclave.
fn recipe(name: &str, image: &str, script: &str, network: bool) -> String {
    format!(
        r#"name = "{name}"
source_date_epoch = 1700000000

[images]
bb = "{image}"

[[steps]]
name = "vendor"
image = "bb"
network = {network}
run = """
{script}
"""

[[steps]]
name = "make"
image = "bb"
mounts = {{ "/deps" = "step:vendor" }}
run = "cp -r /deps/deps /out/r"
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

struct Project {
    _reg: TestRegistry,
    upstream: Upstream,
    dir: tempfile::TempDir,
    recipe: PathBuf,
    image: String,
}

impl Project {
    fn new(name: &str) -> Project {
        let reg = TestRegistry::start();
        let _f = common::push_fixtures(&reg);
        let image = reg.image("fx/busybox:1");
        let upstream = Upstream::start("version 1\n");
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("recipes")).unwrap();
        let recipe = dir.path().join(format!("recipes/{name}.toml"));
        fs::write(&recipe, recipe_text(name, &image, &fetch_script(upstream.port), true)).unwrap();
        Project { _reg: reg, upstream, dir, recipe, image }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// eifbake with the store, the logs under the project and the upstream port opened.
    fn run(&self, args: &[&str]) -> (i32, String) {
        let store = self.path("store");
        let out = bin::eifbake_cmd()
            .arg("--store")
            .arg(&store)
            .args(args)
            .env(HOST_PORTS_ENV, self.upstream.port.to_string())
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), log)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, log) = self.run(args);
        assert_eq!(code, 0, "eifbake {args:?}: {log}");
        log
    }

    fn lock(&self) -> String {
        self.ok(&["lock", s(&self.recipe), "--out", s(&self.path("out"))])
    }

    fn build(&self, extra: &[&str]) -> (i32, String) {
        let out = self.path("out");
        let mut args = vec!["build", s(&self.recipe), "--out", s(&out)];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn lock_text(&self) -> String {
        fs::read_to_string(self.path(&format!("lockfiles/{}.lock", self.name()))).unwrap()
    }

    fn name(&self) -> String {
        self.recipe.file_stem().unwrap().to_string_lossy().into_owned()
    }

    fn fetched_entries(&self) -> usize {
        match fs::read_dir(self.path("store/eifbake/fetched")) {
            Ok(rd) => {
                rd.filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).count()
            }
            Err(_) => 0,
        }
    }
}

fn recipe_text(name: &str, image: &str, script: &str, network: bool) -> String {
    recipe(name, image, script, network)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The output-tree hash a fetch of `body` (both files) must give: the same
/// tree made on the host with the modes a step's umask 022 gives.
fn expected_output(body: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("deps")).unwrap();
    for f in ["a.txt", "b.txt"] {
        fs::write(d.path().join("deps").join(f), body).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(d.path().join("deps"), fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["a.txt", "b.txt"] {
        fs::set_permissions(d.path().join("deps").join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    eifbake::sources::output_listing(d.path()).unwrap().0.to_string()
}

#[test]
fn a_fetch_step_is_pinned_by_its_output_and_a_changed_upstream_is_refused() {
    if !common::root_or_skip("fetch steps run in crun with pasta") {
        return;
    }
    let p = Project::new("fetchy");
    let said = p.lock();
    let lock = p.lock_text();
    let want = expected_output("version 1\n");
    assert!(lock.contains("[steps.vendor]"), "{lock}");
    assert!(lock.contains(&format!("output = \"{want}\"")), "expected {want}:\n{lock}");
    assert!(lock.contains(" deps/a.txt\"") && lock.contains("definition = \"sha256:"), "{lock}");
    assert!(said.contains("ran       step vendor"), "{said}");
    assert_eq!(p.fetched_entries(), 1, "lock keeps the fetched tree in the store");

    // Locking again keeps the pin without running the step.
    let said = p.lock();
    assert!(said.contains("kept      step vendor"), "{said}");
    assert_eq!(p.lock_text(), lock);

    // The build takes the tree from the store; the measured inputs name it.
    let (code, log) = p.build(&[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("step vendor: cached"), "{log}");
    let manifest = fs::read_to_string(p.path("out/fetchy.manifest.json")).unwrap();
    assert!(manifest.contains(&format!("\"fetched\": \"{want}\"")), "{manifest}");
    // Run again (--no-cache): the same download is accepted.
    let (code, log) = p.build(&["--no-cache"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("step vendor: ran"), "{log}");

    // Upstream changes: a run gives another tree, refused, naming the step and the first file.
    p.upstream.set("version 2\n");
    let (code, log) = p.build(&["--no-cache"]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("step \"vendor\" (network = true) fetched a tree other than the one"), "{log}");
    assert!(log.contains("first difference: deps/a.txt (changed)"), "{log}");
    assert!(log.contains(&format!("expected output {want}")), "{log}");
    // The store copy removed: the same refusal, from the lock's listing alone.
    p.ok(&["store", "gc", "--caches"]);
    assert_eq!(p.fetched_entries(), 0);
    let (code, log) = p.build(&[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("first difference: deps/a.txt (changed)"), "{log}");

    // Offline without the tree in the store: refused, naming the step and `eifbake fetch`.
    p.upstream.set("version 1\n");
    let (code, log) = p.build(&["--offline"]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("step \"vendor\" has network = true") && log.contains("`eifbake fetch"), "{log}");
    // `fetch` runs it (upstream back as locked), then an offline build works.
    let said = p.ok(&["fetch", s(&p.recipe), "--out", s(&p.path("out"))]);
    assert!(said.contains("step vendor") && said.contains("ran"), "{said}");
    assert_eq!(p.fetched_entries(), 1);
    p.upstream.set("gone\n");
    let (code, log) = p.build(&["--offline"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("step vendor: cached"), "{log}");
    assert_eq!(fs::read_to_string(p.path("out/fetchy.manifest.json")).unwrap(), manifest);
}

#[test]
fn an_edited_fetch_step_is_refused_until_locked_again() {
    if !common::root_or_skip("fetch steps run in crun with pasta") {
        return;
    }
    let p = Project::new("edited");
    p.lock();
    let edited =
        recipe_text("edited", &p.image, &format!("{}\necho more", fetch_script(p.upstream.port)), true);
    fs::write(&p.recipe, &edited).unwrap();
    // The lock's recipe hash catches the edit first...
    let (code, log) = p.build(&[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("changed since") && log.contains("run `eifbake lock"), "{log}");
    // ...and with it forged to match, the step's definition still does.
    let sha = eifbake::digest::Digest::of(edited.as_bytes());
    let lock_path = p.path("lockfiles/edited.lock");
    let text = p.lock_text();
    let old = text.lines().find(|l| l.starts_with("recipe_sha256")).unwrap().to_string();
    fs::write(&lock_path, text.replace(&old, &format!("recipe_sha256 = \"{sha}\""))).unwrap();
    let (code, log) = p.build(&[]);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("step \"vendor\" (network = true) changed since")
            && log.contains("pinned its output")
            && log.contains("run `eifbake lock"),
        "{log}"
    );
    // Pinning it again needs a run, which --offline forbids.
    let out = p.path("out");
    let (code, log) = p.run(&["--offline", "lock", s(&p.recipe), "--out", s(&out)]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("it must run to be pinned") && log.contains("run `eifbake lock"), "{log}");
    // Locking again runs it and pins the new definition.
    let said = p.lock();
    assert!(said.contains("ran       step vendor"), "{said}");
    let (code, log) = p.build(&[]);
    assert_eq!(code, 0, "{log}");
}

#[test]
fn an_ordinary_step_cannot_reach_what_a_fetch_step_can() {
    if !common::root_or_skip("steps run in crun") {
        return;
    }
    let p = Project::new("plain");
    fs::write(&p.recipe, recipe_text("plain", &p.image, &fetch_script(p.upstream.port), false)).unwrap();
    p.lock();
    assert!(!p.lock_text().contains("[steps."), "{}", p.lock_text());
    // The loopback port is opened by the environment, yet the ordinary step gets no network.
    let (code, log) = p.build(&[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("step \"vendor\" failed"), "{log}");
    assert!(log.contains("wget: can't connect") || log.contains("Network is unreachable"), "{log}");
}

/// `verify` runs other people's recipes: a fetch step there would reach
/// whatever the rebuilder's machine reaches, so it needs --allow-network.
#[test]
fn verify_runs_a_fetch_step_only_when_allowed() {
    if !common::root_or_skip("fetch steps run in crun with pasta") {
        return;
    }
    let p = Project::new("rebuilt");
    p.lock();
    let (code, log) = p.build(&[]);
    assert_eq!(code, 0, "{log}");
    let manifest = p.path("out/rebuilt.manifest.json");
    // In a fresh store (verify's default): refused before any network is given.
    let out = bin::eifbake_cmd()
        .args(["verify", s(&manifest)])
        .env(HOST_PORTS_ENV, p.upstream.port.to_string())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("step \"vendor\" has network = true") && log.contains("--allow-network"), "{log}");
    // With a store holding the pinned tree, no run (and no network) is needed.
    p.upstream.set("unreachable anyway\n");
    let (code, log) = p.run(&["verify", s(&manifest)]);
    assert_eq!(code, 0, "{log}");
    p.upstream.set("version 1\n");
    let (code, log) = p.run(&["verify", s(&manifest), "--allow-network"]);
    assert_eq!(code, 0, "{log}");
    // Upstream changed: the rebuild is refused, naming the file.
    p.upstream.set("version 2\n");
    let (code, log) = p.run(&["verify", s(&manifest), "--allow-network"]);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("first difference: deps/a.txt (changed)"), "{log}");
}

/// `eifbake --store STORE ARGS` with no loopback port opened to fetch steps: (exit code, output).
fn run_in(store: &Path, args: &[&str]) -> (i32, String) {
    let out = bin::eifbake_cmd().arg("--store").arg(store).args(args).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), log)
}

/// An air-gapped rebuilder: `store export --fetched LOCKFILE` carries the
/// image and the fetch step's pinned tree; `store import` into an empty
/// store, then `build --offline` with upstream changed and no port opened
/// to it gives the same EIF bytes. An export whose tree was changed after
/// it was made (in a directory or in the archive) is refused on import,
/// naming the tree, and leaves nothing behind.
#[test]
fn store_export_carries_fetched_trees_to_an_offline_rebuild() {
    if !common::root_or_skip("fetch steps run in crun with pasta") {
        return;
    }
    let p = Project::new("carried");
    p.lock();
    let (code, log) = p.build(&[]);
    assert_eq!(code, 0, "{log}");
    let eif = fs::read(p.path("out/carried.eif")).unwrap();
    let want = expected_output("version 1\n");
    let lockfile = p.path("lockfiles/carried.lock");
    let tar = p.path("carried.tar");
    let said = p.ok(&["store", "export", &p.image, s(&tar), "--fetched", s(&lockfile)]);
    assert!(said.contains(&format!("exported step vendor's fetched tree {want}")), "{said}");

    // The rebuilder: an empty store, nothing upstream, no port opened to it.
    p.upstream.set("gone\n");
    let store2 = p.path("store2");
    let (code, log) = run_in(&store2, &["store", "import", s(&tar)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(&format!("imported fetched tree {want}")), "{log}");
    let out2 = p.path("out2");
    let (code, log) = run_in(&store2, &["--offline", "build", s(&p.recipe), "--out", s(&out2)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("step vendor: cached"), "{log}");
    assert!(fs::read(out2.join("carried.eif")).unwrap() == eif, "the offline rebuild gave other bytes");

    // Tampered after export, as a directory: refused, naming the tree; nothing imported.
    let dir = p.path("exported");
    p.ok(&["store", "export", &p.image, s(&dir), "--fetched", s(&lockfile)]);
    let file = dir.join(format!("eifbake/fetched/{}/out/deps/a.txt", want.trim_start_matches("sha256:")));
    assert_eq!(fs::read_to_string(&file).unwrap(), "version 1\n");
    fs::write(&file, "version 9\n").unwrap();
    let store3 = p.path("store3");
    let (code, log) = run_in(&store3, &["store", "import", s(&dir)]);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains(&format!("fetched tree {want}")) && log.contains("changed after it was exported"),
        "{log}"
    );
    // The archive edited in place (tar checksums cover headers only): refused the same way.
    let bytes = fs::read(&tar).unwrap();
    let at = bytes.windows(10).position(|w| w == b"version 1\n").expect("the tree's file in the archive");
    let mut edited = bytes.clone();
    edited[at..at + 10].copy_from_slice(b"version 9\n");
    let tampered = p.path("tampered.tar");
    fs::write(&tampered, edited).unwrap();
    let (code, log) = run_in(&store3, &["store", "import", s(&tampered)]);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains(&format!("fetched tree {want}")) && log.contains("changed after it was exported"),
        "{log}"
    );
    let left: Vec<_> =
        fs::read_dir(store3.join("eifbake/fetched")).map(|rd| rd.flatten().count()).into_iter().collect();
    assert!(left.iter().all(|n| *n == 0), "a refused tree was kept: {left:?}");
    let (code, log) = run_in(&store3, &["store", "ls"]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("fx/busybox"), "an image of a refused export was recorded: {log}");
}

/// The children (pid, command) of `parent`, from `/proc`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(status) = fs::read_to_string(e.path().join("status")) else { continue };
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(|v| v.trim().to_string());
        if ppid.as_deref() == Some(&parent.to_string()) {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

/// `kill -9` of eifbake while a fetch step runs takes pasta and the
/// namespace's holder with it, as it takes the step.
#[test]
fn pasta_and_the_namespace_die_with_eifbake() {
    if !common::root_or_skip("fetch steps run in crun with pasta") {
        return;
    }
    let p = Project::new("killed");
    fs::write(&p.recipe, recipe_text("killed", &p.image, "mkdir -p /out/deps; sleep 1000", true)).unwrap();
    let mut child = bin::eifbake_cmd()
        .arg("--store")
        .arg(p.path("store"))
        .args(["lock", s(&p.recipe), "--out", s(&p.path("out"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let helpers = loop {
        let kids = children(child.id());
        let helpers: Vec<(u32, String)> = kids
            .into_iter()
            .filter(|(_, c)| c.starts_with("pasta ") || c.starts_with("sleep infinity"))
            .collect();
        if helpers.len() == 2 {
            break helpers;
        }
        assert!(start.elapsed().as_secs() < 120, "pasta and its holder never started: {helpers:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let start = std::time::Instant::now();
    while !helpers.iter().all(|(pid, _)| gone(*pid)) {
        assert!(start.elapsed().as_secs() < 5, "outlived eifbake: {helpers:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
