//! aarch64 end to end, against a real loopback registry holding
//! multi-platform images (an index over an amd64 and an arm64 manifest):
//!
//! - a recipe with `arch = "aarch64"` locks each reference to its arm64
//!   manifest (the same references lock to amd64 without `arch`), builds with
//!   no steps an EIF with the aarch64 flag from Debian's arm64 `Image` and
//!   busybox-static:arm64, which AWS's reader accepts and which boots under
//!   `qemu-system-aarch64`, printing the enclave program's marker;
//! - a step in an arm64 image on a host that cannot run arm64 programs is
//!   refused before any OCI runtime starts, naming the step, the image's
//!   platform and what to install;
//! - a kernel for the other architecture is refused by `build`, both ways,
//!   before any step runs;
//! - a lock edited to pin another platform's manifest is refused;
//! - a real cross-compile: a step in an x86_64 toolchain image (Debian's
//!   `gcc-aarch64-linux-gnu`, made by scripts/make-debian-image.sh and
//!   cached under target/fixtures/) pinned for linux/amd64 compiles a static
//!   aarch64 program, which the aarch64 EIF runs under `qemu-system-aarch64`.
//!
//! Needs root, docker-registry, skopeo, crun, qemu-system-arm, and Debian's
//! arm64 kernel and busybox-static:arm64 (downloaded once from the Debian
//! archive by scripts/fetch-kernel.sh and scripts/fetch-busybox.sh; CI's
//! scripts/deps.sh adds the arm64 package lists).

mod common;
mod eif_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use common::{eifbake_ok, layer_tar, push_multi_arch, Entry, TestRegistry};
use eifbake::lock::Lock;
use eifbake::oci::model::{Descriptor, DescriptorExt};
use eifbake::oci::store::Store;

/// The demo's init: mounts, reads /env and /cmd, runs the command, powers off.
const INIT: &str = include_str!("../recipes/hello/init/init");
/// What the init and the enclave's command use.
const APPLETS: &[&str] = &["sh", "cat", "echo", "mount", "poweroff", "uname", "mkdir"];

/// A project directory and a registry, with `fx/os:1` pushed: for amd64 and
/// arm64, that arch's busybox, the init at /sbin/demo-init and /etc/passwd.
struct Project {
    reg: TestRegistry,
    layout: tempfile::TempDir,
    dir: tempfile::TempDir,
    os: (Descriptor, Vec<Descriptor>),
}

fn os_layers(arch: &str) -> Vec<Vec<u8>> {
    vec![
        common::busybox_layer_from(&common::rootfs::busybox_for(arch), APPLETS),
        layer_tar(&[
            Entry::Dir("sbin"),
            Entry::File("sbin/demo-init", INIT.as_bytes(), 0o755),
            Entry::Dir("etc"),
            Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ]),
    ]
}

/// A kernel image's one layer: `kernel` at /boot/vmlinuz (and `config` at /boot/config).
fn kernel_layer(kernel: &[u8], config: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut entries = vec![Entry::Dir("boot"), Entry::File("boot/vmlinuz", kernel, 0o644)];
    if let Some(c) = config {
        entries.push(Entry::File("boot/config", c, 0o644));
    }
    vec![layer_tar(&entries)]
}

impl Project {
    fn new() -> Project {
        let reg = TestRegistry::start();
        let layout = tempfile::tempdir().unwrap();
        let store = Store::open(layout.path()).unwrap();
        let os = push_multi_arch(&store, &reg.image("fx/os:1"), &["amd64", "arm64"], os_layers);
        Project { reg, layout, dir: tempfile::tempdir().unwrap(), os }
    }

    fn layout(&self) -> Store {
        Store::open(self.layout.path()).unwrap()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `recipes/NAME.toml` for `arch`, the root filesystem and init from
    /// `fx/os:1`, the kernel at /boot/vmlinuz of `kernel_ref`, plus `extra` TOML.
    fn recipe(&self, name: &str, arch: &str, kernel_ref: &str, extra: &str) -> PathBuf {
        fs::create_dir_all(self.path("recipes")).unwrap();
        let text = format!(
            r#"name = "{name}"
arch = "{arch}"
source_date_epoch = 1700000000

[images]
os = "{os}"
linux = "{linux}"
{extra}
[enclave]
rootfs = "os"
kernel = {{ image = "linux", path = "/boot/vmlinuz" }}
init = {{ image = "os", path = "/sbin/demo-init" }}
cmdline = "console=ttyS0 reboot=k panic=30 pci=off nomodules"
command = ["/bin/sh", "-c", "echo EIFBAKE-ARM64-$((6 * 7)) on $(uname -m)"]
"#,
            os = self.reg.image("fx/os:1"),
            linux = self.reg.image(kernel_ref),
        );
        let p = self.path(&format!("recipes/{name}.toml"));
        fs::write(&p, text).unwrap();
        p
    }

    fn lock(&self, recipe: &Path) -> Lock {
        eifbake_ok(&["lock", recipe.to_str().unwrap()]);
        let name = recipe.file_stem().unwrap().to_str().unwrap();
        Lock::load(&self.path(&format!("lockfiles/{name}.lock"))).unwrap()
    }

    /// `eifbake build` with `path` as the whole PATH: (exit code, stderr).
    fn build(&self, recipe: &Path, path: &str) -> (i32, String) {
        let out = common::bin::eifbake_cmd()
            .arg("--store")
            .arg(self.path("store"))
            .arg("build")
            .arg(recipe)
            .arg("--out")
            .arg(self.path("out"))
            .env("PATH", path)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn host_path() -> String {
    std::env::var("PATH").unwrap_or_default()
}

#[test]
fn aarch64_recipe_locks_arm64_manifests_and_its_eif_boots() {
    let p = Project::new();
    let kernels = push_multi_arch(&p.layout(), &p.reg.image("fx/linux:1"), &["amd64", "arm64"], |arch| {
        let k = common::qemu::kernel_for(arch);
        kernel_layer(&fs::read(&k).unwrap(), Some(&fs::read(k.with_file_name("config")).unwrap()))
    });
    let arm = p.recipe("arm", "aarch64", "fx/linux:1", "");
    fs::write(
        &arm,
        fs::read_to_string(&arm)
            .unwrap()
            .replace("\"/boot/vmlinuz\"", "\"/boot/vmlinuz\", config = \"/boot/config\""),
    )
    .unwrap();

    // The lock pins each reference's arm64 manifest, under the index it came from.
    let lock = p.lock(&arm);
    for (name, (index, manifests)) in [("os", &p.os), ("linux", &kernels)] {
        let li = &lock.images[name];
        assert_eq!(li.platform.to_string(), "linux/arm64", "{name}");
        assert_eq!(li.manifest, manifests[1].sha256().unwrap(), "{name}: not the arm64 manifest");
        assert_eq!(li.index, Some(index.sha256().unwrap()), "{name}");
    }
    // The same references in a recipe without `arch` pin the amd64 manifests.
    let amd = p.recipe("amd", "x86_64", "fx/linux:1", "");
    let lock = p.lock(&amd);
    for (name, (_, manifests)) in [("os", &p.os), ("linux", &kernels)] {
        assert_eq!(lock.images[name].platform.to_string(), "linux/amd64", "{name}");
        assert_eq!(lock.images[name].manifest, manifests[0].sha256().unwrap(), "{name}");
    }

    // No steps: builds on this host whatever its arch.
    let (code, err) = p.build(&arm, &host_path());
    assert_eq!(code, 0, "{err}");
    let eif = p.path("out/arm.eif");

    // AWS's reader sees the aarch64 flag, a good CRC and the PCRs eifbake wrote.
    let mut r = EifReader::from_eif(eif.display().to_string()).expect("AWS EifReader accepts the EIF");
    assert!(r.check_crc(), "AWS computes another CRC");
    assert_eq!(r.get_header().flags & 1, 1, "no aarch64 flag");
    let aws = r.get_measurements().unwrap();
    let pcrs = fs::read_to_string(p.path("out/arm.pcrs")).unwrap();
    for n in ["PCR0", "PCR1", "PCR2"] {
        assert!(pcrs.contains(&format!("{} {n}\n", aws[n])), "{n}: AWS says {}, arm.pcrs:\n{pcrs}", aws[n]);
    }
    // The metadata's kernel version comes from the arm64 kernel's config ("# Linux/arm64 6.1.x Kernel Configuration").
    let config = fs::read_to_string(common::qemu::kernel_for("arm64").with_file_name("config")).unwrap();
    let version = config.lines().find_map(|l| l.strip_prefix("# Linux/arm64 ")).unwrap();
    assert_eq!(r.get_metadata().unwrap().build_info.img_kernel, version.split(' ').next().unwrap());

    let d = eifbake_ok(&["describe", "--json", eif.to_str().unwrap()]);
    let d: serde_json::Value = serde_json::from_str(&d).unwrap();
    assert_eq!(d["arch"], "aarch64");
    assert!(d["kernel"].as_str().unwrap().starts_with("an arm64 Image ("), "{}", d["kernel"]);
    assert_eq!(d["Metadata"]["CustomMetadata"]["arch"], "aarch64", "the manifest records the arch");

    // It boots: the EIF's own kernel, cmdline and ramdisk on QEMU's arm64 virt machine.
    let boot = boot_arm64(&p, &eif);
    assert!(
        boot.console.contains("EIFBAKE-ARM64-42 on aarch64"),
        "the enclave did not print its marker:\n{}",
        boot.console
    );
}

/// The data of `name` (at most `max` bytes) in `eif`'s first ramdisk; panics
/// when it is not there.
fn ramdisk_file(eif: &Path, name: &str, max: u64) -> Vec<u8> {
    let r = eifbake::eif::Eif::open(eif).unwrap();
    let mut cpio = eifbake::cpio::Reader::new(r.section_reader(r.ramdisks().next().unwrap())).unwrap();
    let mut found = None;
    while let Some(e) = cpio.next_entry().unwrap() {
        if e.name_lossy() == name {
            found = Some(cpio.data_to_vec(max).unwrap());
        }
    }
    found.unwrap_or_else(|| panic!("{name} is in the EIF"))
}

/// Extract `eif`'s sections and boot them on QEMU's arm64 virt machine.
fn boot_arm64(p: &Project, eif: &Path) -> common::qemu::Boot {
    let sections = p.path("sections");
    eifbake_ok(&["describe", eif.to_str().unwrap(), "--extract", sections.to_str().unwrap()]);
    common::qemu::boot_sections("arm64", &sections, Duration::from_secs(180))
}

/// An index whose arm64 manifest holds a (synthetic) arm64 Image and whose
/// amd64 one a bzImage, both at /boot/vmlinuz, pushed as `tag`; `crossed`
/// swaps them (mislabelled images).
fn synthetic_kernels(p: &Project, tag: &str, crossed: bool) {
    push_multi_arch(&p.layout(), &p.reg.image(tag), &["amd64", "arm64"], |arch| {
        let arm = (arch == "arm64") != crossed;
        let k = if arm { eif_common::arm64_image(3, 100_000) } else { eif_common::bzimage(3, 100_000) };
        kernel_layer(&k, None)
    });
}

const STEP: &str = r#"
[[steps]]
name = "greet"
image = "os"
run = "echo hi > /out/greeting; exit 7"
outputs = { "/out/greeting" = "/etc/greeting" }
"#;

#[test]
fn a_step_in_an_arm64_image_is_refused_before_the_runtime_starts() {
    let p = Project::new();
    synthetic_kernels(&p, "fx/synthetic-linux:1", false);
    let recipe = p.recipe("steps", "aarch64", "fx/synthetic-linux:1", STEP);
    p.lock(&recipe);
    let can_run = eifbake::sandbox::execution_for(
        eifbake::platform::Arch::Aarch64,
        Path::new(eifbake::sandbox::BINFMT_MISC),
    );
    // No crun or runc on this PATH: had the runtime been started, the error would say so.
    let (code, err) = p.build(&recipe, "/nonexistent");
    assert_eq!(code, 2, "{err}");
    match can_run {
        Err(why) => {
            for want in [
                "step \"greet\" cannot run: its image \"os\" is for linux/arm64",
                "recipes/steps.toml has arch = \"aarch64\"",
                &format!("this host runs linux/{} programs", eifbake::platform::Arch::host_oci_name()),
                &why,
                "apt-get install qemu-user-static binfmt-support",
                "qemu-aarch64",
                "needs no steps",
            ] {
                assert!(err.contains(want), "expected {want:?} in: {err}");
            }
            assert!(!err.contains("cannot start"), "the runtime was started: {err}");
        }
        // A host that runs arm64 programs gets as far as starting the runtime.
        Ok(how) => assert!(err.contains("cannot start crun"), "{how:?}: {err}"),
    }
    assert!(!p.path("out/steps.eif").exists());
}

#[test]
fn build_refuses_a_kernel_for_the_other_arch_both_ways() {
    let p = Project::new();
    synthetic_kernels(&p, "fx/mislabelled-linux:1", true);
    for (arch, is, other) in
        [("aarch64", "an x86 bzImage", "arm64 `Image`"), ("x86_64", "an arm64 Image", "x86 bzImage")]
    {
        // A step that fails when run: the kernel is checked before any step runs.
        let recipe = p.recipe(&format!("k-{arch}"), arch, "fx/mislabelled-linux:1", STEP);
        p.lock(&recipe);
        let (code, err) = p.build(&recipe, &host_path());
        assert_eq!(code, 2, "{arch}: {err}");
        let want = format!(
            "recipes/k-{arch}.toml: enclave.kernel: kernel /boot/vmlinuz of image \"linux\" ({}) is {is}",
            p.reg.image("fx/mislabelled-linux:1")
        );
        assert!(err.contains(&want), "expected {want:?} in: {err}");
        assert!(err.contains(&format!("but the EIF is for {arch}")) && err.contains(other), "{err}");
        assert!(!err.contains("exit code 7") && !err.contains("step \"greet\""), "a step ran first: {err}");
        assert!(!p.path(&format!("out/k-{arch}.eif")).exists());
    }
}

#[test]
fn a_lock_pinning_another_platforms_manifest_is_refused() {
    let p = Project::new();
    synthetic_kernels(&p, "fx/synthetic-linux:1", false);
    let recipe = p.recipe("edited", "aarch64", "fx/synthetic-linux:1", "");
    let lock = p.lock(&recipe);
    // A hand edit: the amd64 manifest under the arm64 platform the recipe needs.
    let (arm, amd) = (p.os.1[1].sha256().unwrap(), p.os.1[0].sha256().unwrap());
    assert_eq!(lock.images["os"].manifest, arm);
    let lockfile = p.path("lockfiles/edited.lock");
    fs::write(&lockfile, fs::read_to_string(&lockfile).unwrap().replace(&arm.to_string(), &amd.to_string()))
        .unwrap();
    let (code, err) = p.build(&recipe, &host_path());
    assert_eq!(code, 2, "{err}");
    let want = format!(
        "image \"os\" ({}): the lock pins manifest {amd} as linux/arm64, but its config",
        p.reg.image("fx/os:1")
    );
    assert!(
        err.contains(&want) && err.contains("says architecture \"amd64\""),
        "expected {want:?} in: {err}"
    );
    assert!(err.contains("eifbake lock --update"), "{err}");
}

/// A step whose image gives its own platform, the host's: `[images.builder]`
/// is `fx/os:1` pinned for the host while the enclave is for the other arch.
fn cross_step(p: &Project, host: eifbake::platform::Arch) -> String {
    format!(
        r#"
[images.builder]
ref = "{}"
platform = "linux/{}"

[[steps]]
name = "cross"
image = "builder"
run = "echo made-on-$(uname -m) > /out/made"
outputs = {{ "/out/made" = "/etc/made" }}
"#,
        p.reg.image("fx/os:1"),
        host.oci()
    )
}

/// The cross-compiling shape: an enclave for the other arch than the host's
/// (aarch64 on an x86_64 host) whose step runs natively in an image pinned
/// for the host's platform. The lock records that image's platform and its
/// manifest for it, the step's output lands in the EIF for the enclave's
/// arch, and a lock whose manifest for the image does not match its
/// platform is refused by `fetch`, naming the image.
#[test]
fn a_step_image_with_its_own_platform_runs_natively_for_a_foreign_enclave() {
    use eifbake::platform::Arch;
    let Some(host) = Arch::host() else { return };
    let enclave = host.other();
    let p = Project::new();
    synthetic_kernels(&p, "fx/synthetic-linux:1", false);
    let recipe = p.recipe("cross", enclave.name(), "fx/synthetic-linux:1", &cross_step(&p, host));
    let lock = p.lock(&recipe);
    let idx = |a: Arch| usize::from(a == Arch::Aarch64); // push order: amd64, arm64
    let (builder, os) = (&lock.images["builder"], &lock.images["os"]);
    assert_eq!(builder.platform.to_string(), format!("linux/{}", host.oci()));
    assert_eq!(builder.manifest, p.os.1[idx(host)].sha256().unwrap(), "not the host's manifest");
    assert_eq!(os.platform.to_string(), format!("linux/{}", enclave.oci()));
    assert_eq!(os.manifest, p.os.1[idx(enclave)].sha256().unwrap());
    let lockfile = p.path("lockfiles/cross.lock");
    let text = fs::read_to_string(&lockfile).unwrap();
    assert!(
        text.contains(&format!("[images.builder]\nreference = \"{}\"", p.reg.image("fx/os:1"))),
        "{text}"
    );

    let (code, err) = p.build(&recipe, &host_path());
    assert_eq!(code, 0, "{err}");
    let eif = p.path("out/cross.eif");
    let d: serde_json::Value =
        serde_json::from_str(&eifbake_ok(&["describe", "--json", eif.to_str().unwrap()])).unwrap();
    assert_eq!(d["arch"], enclave.name());
    let made = String::from_utf8(ramdisk_file(&eif, "etc/made", 1 << 20)).unwrap();
    assert_eq!(made, format!("made-on-{}\n", std::env::consts::ARCH), "the step did not run natively");

    // The enclave's manifest under the builder's host platform: fetch refuses it, naming the image.
    let (host_m, enclave_m) = (builder.manifest.to_string(), os.manifest.to_string());
    fs::write(&lockfile, text.replace(&host_m, &enclave_m)).unwrap();
    let out = common::bin::eifbake_cmd()
        .args(["--store", p.path("store2").to_str().unwrap(), "fetch", recipe.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "image \"builder\" ({}): the lock pins manifest {enclave_m} as linux/{}, but its config",
        p.reg.image("fx/os:1"),
        host.oci()
    );
    assert!(
        err.contains(&want) && err.contains(&format!("says architecture \"{}\"", enclave.oci())),
        "{err}"
    );
}

/// The cross toolchain image: Debian's x86_64-hosted aarch64 C compiler and
/// arm64 libc (both amd64 packages), made by scripts/make-debian-image.sh
/// (cached under target/fixtures/cross-gcc-image, keyed by the package
/// versions) and pushed to `p`'s registry as `fx/cross-gcc:12`.
fn push_cross_gcc(p: &Project) -> String {
    let layout = p.path("cross-gcc");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-debian-image.sh");
    let out = std::process::Command::new(script)
        .arg("cross-gcc")
        .arg(&layout)
        .arg("12")
        .args(["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"])
        .output()
        .unwrap();
    assert!(out.status.success(), "make-debian-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    let reference = p.reg.image("fx/cross-gcc:12");
    let src = format!("oci:{}:12", layout.display());
    common::skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{reference}"),
    ]);
    reference
}

/// The program cross-compiled: prints a computed marker and the machine it runs on.
const HELLO_C: &str = r#"#include <stdio.h>
#include <sys/utsname.h>
int main(void) {
    struct utsname u;
    if (uname(&u) != 0) return 1;
    printf("EIFBAKE-CROSS-%d on %s\n", 6 * 7, u.machine);
    return 0;
}
"#;

/// The ELF header's `e_machine` of an ELF64 little-endian file, or why not.
fn elf64_machine(bytes: &[u8]) -> Result<u16, String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err(format!("not ELF64 little-endian (class {}, data {})", bytes[4], bytes[5]));
    }
    Ok(u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// A real cross-compile: on an x86_64 host, a step in an x86_64 toolchain
/// image (its own `platform = "linux/amd64"`) compiles a static C program
/// for aarch64 into an aarch64 EIF; the lock records the step image's
/// platform, the program in the EIF is an aarch64 ELF with no interpreter,
/// and the EIF boots under `qemu-system-aarch64`, running it.
#[test]
fn a_program_cross_compiled_on_x86_64_runs_in_the_aarch64_enclave() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: the cross toolchain image is made from Debian's amd64 packages");
        return;
    }
    if !common::root_or_skip("steps run in crun") {
        return;
    }
    let p = Project::new();
    let cc = push_cross_gcc(&p);
    push_multi_arch(&p.layout(), &p.reg.image("fx/linux:1"), &["arm64"], |arch| {
        kernel_layer(&fs::read(common::qemu::kernel_for(arch)).unwrap(), None)
    });
    fs::create_dir_all(p.path("recipes/hello-src")).unwrap();
    fs::write(p.path("recipes/hello-src/hello.c"), HELLO_C).unwrap();
    let extra = format!(
        r#"
[images.cc]
ref = "{cc}"
platform = "linux/amd64"

[sources.hello]
path = "hello-src"

[[steps]]
name = "compile"
image = "cc"
mounts = {{ "/src" = "hello" }}
run = "aarch64-linux-gnu-gcc -static -O2 -pipe -o /out/hello /src/hello.c"
outputs = {{ "/out/hello" = "/bin/cross-hello" }}
"#
    );
    let recipe = p.recipe("cross-cc", "aarch64", "fx/linux:1", &extra);
    let text = fs::read_to_string(&recipe).unwrap();
    let marker_cmd = text.lines().find(|l| l.starts_with("command = ")).unwrap().to_string();
    fs::write(&recipe, text.replace(&marker_cmd, r#"command = ["/bin/cross-hello"]"#)).unwrap();

    // The lock records the step image's own platform and the enclave's.
    let lock = p.lock(&recipe);
    assert_eq!(lock.images["cc"].platform.to_string(), "linux/amd64");
    assert_eq!(lock.images["os"].platform.to_string(), "linux/arm64");
    assert_eq!(lock.images["linux"].platform.to_string(), "linux/arm64");
    let lock_text = fs::read_to_string(p.path("lockfiles/cross-cc.lock")).unwrap();
    let cc_entry = lock_text.split("[images.cc]").nth(1).expect("[images.cc] in the lock");
    let cc_entry = cc_entry.split("\n[").next().unwrap();
    assert!(cc_entry.contains("platform = \"linux/amd64\""), "{lock_text}");

    let (code, err) = p.build(&recipe, &host_path());
    assert_eq!(code, 0, "{err}");
    let eif = p.path("out/cross-cc.eif");

    // The program in the EIF really is an aarch64 ELF, static.
    let program = ramdisk_file(&eif, "bin/cross-hello", 64 << 20);
    const EM_AARCH64: u16 = 183;
    assert_eq!(elf64_machine(&program), Ok(EM_AARCH64), "bin/cross-hello is not an aarch64 ELF");
    let interp = eifbake::elf::interpreter(&mut std::io::Cursor::new(&program)).unwrap();
    assert_eq!(interp, None, "bin/cross-hello is not static");

    // It runs in the aarch64 enclave.
    let boot = boot_arm64(&p, &eif);
    assert!(
        boot.console.contains("EIFBAKE-CROSS-42 on aarch64"),
        "the cross-compiled program did not print its marker:\n{}",
        boot.console
    );
}
