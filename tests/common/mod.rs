//! Test helpers shared by integration tests (each test binary uses a subset,
//! hence `dead_code` is allowed here and nowhere else): the clean-environment
//! `eifbake` runner ([`bin`]), root-only checks ([`root_or_skip`]), `git`
//! with a fixed identity ([`git`]), the QEMU boot harness ([`qemu`]),
//! busybox root filesystems ([`rootfs`]), a real loopback OCI registry
//! (Debian's `docker-registry`, CNCF distribution), fixture images built from
//! scratch into OCI layouts, and `skopeo` to push them.
//!
//! Every helper panics with a message saying what failed: these are tests.
#![allow(dead_code)]

pub mod bin;
pub mod crates;
pub mod git;
pub mod http;
pub mod qemu;
pub mod rootfs;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eifbake::digest::Digest;
use eifbake::oci::model::{self, media, Descriptor};
use eifbake::oci::store::Store;

/// A `docker-registry serve` on 127.0.0.1:<free port> with a temporary
/// storage root; killed when dropped. Its access log counts requests.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The filesystem storage root (`docker/registry/v2/...` lives below it).
    pub data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// Poll `GET /v2/` until it answers 200, the child exits, or `timeout` passes.
fn wait_ready(child: &mut Child, addr: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                // 401 is a live registry too (one that wants credentials).
                let status = buf.lines().next().unwrap_or("");
                if status.starts_with("HTTP/1.") && (status.contains(" 200 ") || status.contains(" 401 ")) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(None)
    }

    /// A registry requiring HTTP basic auth, `htpasswd` being one bcrypt
    /// `user:hash` line (distribution accepts only bcrypt).
    pub fn start_with_htpasswd(htpasswd: &str) -> TestRegistry {
        TestRegistry::start_with(Some(htpasswd))
    }

    fn start_with(htpasswd: Option<&str>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let auth = match htpasswd {
            Some(line) => {
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, format!("{line}\n")).unwrap();
                format!("auth:\n  htpasswd:\n    realm: eifbake-test\n    path: {}\n", p.display())
            }
            None => String::new(),
        };
        let data = dir.path().join("data");
        let log = dir.path().join("registry.log");
        let config = dir.path().join("config.yml");
        for _attempt in 0..5 {
            // The port is free now; another process could take it before the
            // registry binds it, hence the retries.
            let addr = format!("127.0.0.1:{}", free_port());
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n{auth}http:\n  addr: {addr}\n",
                    data.display()
                ),
            )
            .unwrap();
            let logf = std::fs::File::create(&log).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::from(logf.try_clone().unwrap()))
                .stderr(Stdio::from(logf))
                .spawn()
                .expect("cannot run docker-registry (Debian package docker-registry; see scripts/deps.sh)");
            if wait_ready(&mut child, &addr, Duration::from_secs(15)) {
                return TestRegistry { child, addr, data, log, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not answer /v2/ after 5 attempts; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many `GET` requests whose path contains `needle` the registry has answered.
    pub fn gets(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains("\"GET /v2/") && l.contains(needle)).count()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.data.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// `127.0.0.1:PORT/<repo>`
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The variable that lets a non-root developer skip the root-only checks.
pub const NONROOT_ENV: &str = "EIFBAKE_TESTS_NONROOT";

/// Whether the root-only check `what` can run: true as root. Otherwise the
/// test fails saying so, unless `$EIFBAKE_TESTS_NONROOT` is set, when it
/// prints a warning and returns false so the caller skips `what`. CI runs as
/// root, so a skipped check is never silently counted as passed there.
pub fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os(NONROOT_ENV).is_some(),
        "{what} needs root: run this test as root (as CI does), or set {NONROOT_ENV}=1 to skip it with a warning"
    );
    eprintln!("WARNING: NOT CHECKED (not root, {NONROOT_ENV} set): {what}");
    false
}

/// Run skopeo, returning stdout; panics with stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("cannot run skopeo (Debian package skopeo)");
    assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One file, directory or symlink of a fixture layer.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    /// A block or character device node: (path, `Block` or `Char`, major, minor).
    Device(&'a str, tar::EntryType, u32, u32),
}

/// A deterministic uncompressed layer tar.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Device(p, kind, major, minor) => {
                h.set_entry_type(*kind);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A layer with Debian's static busybox at /bin/busybox and a few applet links.
pub fn busybox_layer() -> Vec<u8> {
    busybox_layer_from(Path::new(rootfs::BUSYBOX), &["sh", "ls", "cat", "echo", "cp", "mkdir"])
}

/// A layer with the static busybox `busybox` (e.g. [`rootfs::busybox_for`]
/// another arch) at /bin/busybox and a link in /bin for each of `applets`.
pub fn busybox_layer_from(busybox: &Path, applets: &[&str]) -> Vec<u8> {
    let bb = std::fs::read(busybox)
        .unwrap_or_else(|e| panic!("{} (Debian package busybox-static): {e}", busybox.display()));
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![Entry::Dir("bin"), Entry::File("bin/busybox", &bb, 0o755)];
    entries.extend(links.iter().map(|l| Entry::Symlink(l, "busybox")));
    layer_tar(&entries)
}

/// Write one image per architecture of `archs` (OCI names) into `store`,
/// each from `layers(arch)`, and an index over them; push the index to
/// `dest` (`127.0.0.1:PORT/repo:tag`). Returns the index and the manifests,
/// in the order of `archs`.
pub fn push_multi_arch(
    store: &Store,
    dest: &str,
    archs: &[&str],
    layers: impl Fn(&str) -> Vec<Vec<u8>>,
) -> (Descriptor, Vec<Descriptor>) {
    let manifests: Vec<Descriptor> = archs.iter().map(|a| write_image(store, a, &layers(a))).collect();
    let index = write_index(store, &manifests);
    let name = dest.rsplit('/').next().unwrap().replace(':', "-");
    push(store, &name, index.clone(), dest, None);
    (index, manifests)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Write an image (config + layers, the first uncompressed, the rest gzip) into
/// `store` for linux/`arch`; returns the manifest descriptor (with platform).
pub fn write_image(store: &Store, arch: &str, layers: &[Vec<u8>]) -> Descriptor {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        diff_ids.push(Digest::of(tar).to_string());
        let (blob, mt) =
            if i == 0 { (tar.clone(), media::OCI_TAR) } else { (gzip(tar), media::OCI_TAR_GZIP) };
        let d = store.put_blob_bytes(&blob).unwrap();
        layer_descs.push(serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cd = store.put_blob_bytes(&config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let md = store.put_blob_bytes(&manifest).unwrap();
    let mut desc = model::descriptor(media::OCI_MANIFEST, &md, manifest.len() as u64);
    desc.set_platform(Some(model::platform("linux", arch)));
    desc
}

/// Write an image index over `manifests` into `store`; returns its descriptor.
pub fn write_index(store: &Store, manifests: &[Descriptor]) -> Descriptor {
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    let d = store.put_blob_bytes(&index).unwrap();
    model::descriptor(media::OCI_INDEX, &d, index.len() as u64)
}

/// Name `desc` as `name` in the layout `store` and push it to `dest`
/// (`127.0.0.1:PORT/repo:tag`) with skopeo (`--all` keeps indexes whole).
pub fn push(store: &Store, name: &str, desc: Descriptor, dest: &str, creds: Option<&str>) {
    store.add_image(name, desc).unwrap();
    let src = format!("oci:{}:{name}", store.root().display());
    let dst = format!("docker://{dest}");
    let mut args = vec!["copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args);
}

/// The three fixture images the tests use, pushed to `reg`:
/// `fx/busybox:1` (single manifest), `fx/multi:1` (amd64 + arm64 index),
/// `fx/layers:1` (three layers with whiteouts and an opaque directory).
pub struct Fixtures {
    pub busybox: Descriptor,
    pub multi: Descriptor,
    pub multi_amd64: Descriptor,
    pub multi_arm64: Descriptor,
    pub layers: Descriptor,
    pub layout: tempfile::TempDir,
}

pub fn push_fixtures(reg: &TestRegistry) -> Fixtures {
    push_fixtures_with(reg, None)
}

/// [`push_fixtures`] to a registry that wants `user:password`.
pub fn push_fixtures_with(reg: &TestRegistry, creds: Option<&str>) -> Fixtures {
    let layout = tempfile::tempdir().unwrap();
    let s = Store::open(layout.path()).unwrap();
    let busybox = write_image(&s, "amd64", &[busybox_layer()]);
    push(&s, "busybox", busybox.clone(), &reg.image("fx/busybox:1"), creds);

    let amd =
        write_image(&s, "amd64", &[busybox_layer(), layer_tar(&[Entry::File("arch", b"amd64\n", 0o644)])]);
    let arm = write_image(&s, "arm64", &[layer_tar(&[Entry::File("arch", b"arm64\n", 0o644)])]);
    let mut arm_desc = arm.clone();
    let mut v8 = model::platform("linux", "arm64");
    v8.set_variant(Some("v8".into()));
    arm_desc.set_platform(Some(v8));
    let multi = write_index(&s, &[amd.clone(), arm_desc]);
    push(&s, "multi", multi.clone(), &reg.image("fx/multi:1"), creds);

    let l1 = layer_tar(&[
        Entry::Dir("etc"),
        Entry::File("etc/a", b"a\n", 0o644),
        Entry::File("etc/b", b"b\n", 0o644),
        Entry::Dir("opaque"),
        Entry::File("opaque/old", b"old\n", 0o644),
    ]);
    let l2 = layer_tar(&[
        Entry::Dir("etc"),
        Entry::File("etc/.wh.a", b"", 0o644),
        Entry::Dir("opaque"),
        Entry::File("opaque/.wh..wh..opq", b"", 0o644),
        Entry::File("opaque/new", b"new\n", 0o644),
    ]);
    let l3 = layer_tar(&[Entry::File("etc/c", b"c\n", 0o600), Entry::Symlink("etc/d", "c")]);
    let layers = write_image(&s, "amd64", &[l1, l2, l3]);
    push(&s, "layers", layers.clone(), &reg.image("fx/layers:1"), creds);

    Fixtures { busybox, multi, multi_amd64: amd, multi_arm64: arm, layers, layout }
}

/// A project directory with `recipes/NAME.toml` using `images` (name -> reference).
pub fn write_recipe(root: &Path, name: &str, arch: &str, images: &[(&str, String)]) -> PathBuf {
    std::fs::create_dir_all(root.join("recipes")).unwrap();
    let mut text = format!("name = \"{name}\"\narch = \"{arch}\"\n\n[images]\n");
    for (k, v) in images {
        text.push_str(&format!("{k} = \"{v}\"\n"));
    }
    let first = images[0].0;
    text.push_str(&format!(
        "\n[enclave]\nrootfs = \"{first}\"\nkernel = {{ image = \"{first}\", path = \"/bin/busybox\" }}\ninit = {{ image = \"{first}\", path = \"/bin/sh\" }}\ncmdline = \"console=ttyS0\"\ncommand = [\"/bin/sh\"]\n"
    ));
    let p = root.join(format!("recipes/{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Run the eifbake binary in a clean environment ([`bin::clean_env`]); returns (exit code, stdout, stderr).
pub fn eifbake(args: &[&str]) -> (i32, String, String) {
    eifbake_env(args, &[])
}

/// [`eifbake`] with extra environment variables.
pub fn eifbake_env(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let out = bin::eifbake_cmd().args(args).envs(env.iter().map(|(k, v)| (*k, *v))).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run eifbake and panic (with its output) unless it exits 0; returns stdout.
pub fn eifbake_ok(args: &[&str]) -> String {
    let (code, out, err) = eifbake(args);
    assert_eq!(code, 0, "eifbake {args:?} exited {code}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// The text of a recipe named `name` whose one step, `make`, runs `script` in
/// the busybox image `image` with the source `app` (its TOML body given as
/// `source`, e.g. `path = "app"`) at /src/app, and whose `/out/r` becomes
/// `/r` in a single-ramdisk enclave on busybox. Used by the check and verify
/// tests, which vary the script and the source.
pub fn busybox_step_recipe(name: &str, version: &str, image: &str, source: &str, script: &str) -> String {
    format!(
        r#"name = "{name}"
version = "{version}"
source_date_epoch = 1700000000

[images]
bb = "{image}"

[sources.app]
{source}
app_source = true

[[steps]]
name = "make"
image = "bb"
mounts = {{ "/src/app" = "app" }}
workdir = "/src/app"
run = """
{script}
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

/// Make the demo's three fixture images (busybox, the cloud kernel, the
/// demo's init: what scripts/demo.sh makes) in `work/images` and push them
/// to `reg` as `eifbake-demo/{busybox,linux-cloud,init}`, tagged with the
/// tags `tags` gives in that order (the demo's are `1.35`, `6.1`, `1`).
pub fn push_demo_images(reg: &TestRegistry, work: &Path, tags: [&str; 3]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let images = work.join("images");
    std::fs::create_dir_all(&images).unwrap();
    qemu::kernel(); // make sure the kernel is cached for make-kernel-image.sh
    let script = |name: &str| root.join("scripts").join(name);
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new(script("make-busybox-image.sh")).arg(images.join("busybox")).arg(tags[0]));
    run(Command::new(script("make-kernel-image.sh"))
        .arg(images.join("kernel"))
        .arg(tags[1])
        .env("EIFBAKE_KERNEL_DIR", qemu::kernel_dir()));
    let init_root = work.join("init-root");
    std::fs::create_dir_all(&init_root).unwrap();
    std::fs::copy(root.join("recipes/hello/init/init"), init_root.join("init")).unwrap();
    run(Command::new("chmod").arg("0755").arg(&init_root).arg(init_root.join("init")));
    run(Command::new(script("oci-layout-from-dir.sh")).arg(&init_root).arg(images.join("init")).arg(tags[2]));
    for ((name, repo), tag) in
        [("busybox", "busybox"), ("kernel", "linux-cloud"), ("init", "init")].into_iter().zip(tags)
    {
        let src = format!("oci:{}:{tag}", images.join(name).display());
        let dst = format!("docker://{}/eifbake-demo/{repo}:{tag}", reg.addr);
        skopeo(&["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", &src, &dst]);
    }
}
