//! The fixture images (scripts/make-busybox-image.sh, make-kernel-image.sh)
//! are deterministic, valid OCI layouts that reference tools read, and the
//! busybox one runs steps in the sandbox.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use eifbake::digest::Digest;
use eifbake::oci::layout::Layout;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// Run a fixture script with a given umask; returns the manifest digest it prints.
fn make(name: &str, out: &Path, umask: &str) -> Digest {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec bash \"$0\" \"$1\""))
        .arg(script(name))
        .arg(out)
        .env("EIFBAKE_KERNEL_DIR", common::qemu::kernel_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().parse().unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().display().to_string(), fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

/// Check the layout's internal digests and return (manifest JSON, the layer's bytes).
fn check_layout(dir: &Path, digest: Digest) -> (serde_json::Value, Vec<u8>) {
    let blob = |d: &str| fs::read(Layout::new(dir).blob(&d.parse().unwrap())).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(Layout::new(dir).index()).unwrap()).unwrap();
    let desc = &index["manifests"][0];
    assert_eq!(desc["digest"], digest.to_string());
    assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], "latest");
    let manifest_bytes = blob(desc["digest"].as_str().unwrap());
    assert_eq!(Digest::of(&manifest_bytes), digest);
    assert_eq!(desc["size"], manifest_bytes.len());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(manifest["layers"][0]["size"], layer.len());
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let mut tar = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], Digest::of(&tar).to_string());
    (manifest, tar)
}

#[test]
fn busybox_image_is_deterministic_valid_and_runs_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let da = make("make-busybox-image.sh", &a, "077");
    let db = make("make-busybox-image.sh", &b, "002");
    assert_eq!(da, db, "the umask changed the image");
    assert_eq!(files(&a), files(&b));
    let (_, tar) = check_layout(&a, da);
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().uid().unwrap(), 0);
        names.push(e.path().unwrap().display().to_string());
    }
    assert!(names.contains(&"./bin/busybox".to_string()) && names.contains(&"./bin/sh".to_string()));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "layer entries are not sorted");

    // A reference OCI tool reads it, and the unpacked rootfs runs a step.
    let unpacked = tmp.path().join("unpacked");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", a.display()))
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(o.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&o.stderr));
    let step = eifbake::sandbox::StepRun {
        name: "fixture".into(),
        rootfs: unpacked.join("rootfs"),
        mounts: vec![],
        workdir: "/".into(),
        script: "head -n1 /etc/passwd > /out/passwd; ls /bin | grep -c . > /out/applets".into(),
        env: Default::default(),
        epoch: eifbake::epoch::Epoch(1),
        out_dir: tmp.path().join("out"),
        log: tmp.path().join("log"),
        timeout: std::time::Duration::from_secs(60),
        network: None,
        user: None,
        keep_out: false,
        lower: None,
    };
    eifbake::sandbox::Sandbox::new(eifbake::sandbox::Runtime::Crun).run(&step).unwrap();
    assert_eq!(fs::read_to_string(tmp.path().join("out/passwd")).unwrap(), "root:x:0:0:root:/root:/bin/sh\n");
    let applets: usize = fs::read_to_string(tmp.path().join("out/applets")).unwrap().trim().parse().unwrap();
    assert!(applets > 100, "only {applets} entries in /bin");
}

#[test]
fn kernel_image_holds_bzimage_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("kernel");
    let d = make("make-kernel-image.sh", &out, "022");
    let (_, tar) = check_layout(&out, d);
    let kdir = common::qemu::kernel_dir();
    let mut found = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if e.header().entry_type().is_file() {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            let expected = match name.as_str() {
                "./bzImage" => fs::read(kdir.join("vmlinuz")).unwrap(),
                "./linux.config" => fs::read(kdir.join("config")).unwrap(),
                other => panic!("unexpected file {other} in the kernel image"),
            };
            assert!(data == expected, "{name} differs from the fetched kernel");
            assert_eq!(e.header().mode().unwrap(), 0o644);
        }
        found.push(name);
    }
    assert_eq!(found, ["./", "./bzImage", "./linux.config"]);
    // Rebuilding gives the same digest.
    assert_eq!(make("make-kernel-image.sh", &tmp.path().join("again"), "077"), d);
}
