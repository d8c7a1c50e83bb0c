//! Test helpers shared by integration tests (each test binary uses a subset,
//! hence `dead_code` is allowed here and nowhere else): the clean-environment
//! `eifbake` runner ([`bin`]), root-only checks ([`root_or_skip`]), `git`
//! with a fixed identity ([`git`]), the QEMU boot harness ([`qemu`]),
//! busybox root filesystems ([`rootfs`]), and the fixture images the tests
//! push. The loopback OCI registry (Debian's `docker-registry`, CNCF
//! distribution), the OCI layout writers and `skopeo` live in the
//! `eifbake-testkit` crate (testkit/), shared with the benchmark harness,
//! and are re-exported here.
//!
//! Every helper panics with a message saying what failed: these are tests.
#![allow(dead_code)]

pub mod bin;
pub mod crates;
pub mod git;
pub mod http;
pub mod qemu;
pub mod rootfs;
pub mod softhsm;

use std::path::{Path, PathBuf};
use std::process::Command;

use eifbake::oci::model::{self, Descriptor};
use eifbake::oci::store::Store;
// Each test binary uses a subset of these too.
#[allow(unused_imports)]
pub use eifbake_testkit::oci::{
    busybox_layer, busybox_layer_from, layer_tar, push, push_multi_arch, skopeo, write_image, write_index,
    Entry,
};
/// The loopback registry, under the name the tests have always used.
#[allow(unused_imports)]
pub use eifbake_testkit::registry::LoopbackRegistry as TestRegistry;

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
