//! What is measured, where images come from, and locking without a
//! registry: the PCRs commit to what determines the bytes (images by
//! digest, sources by tree hash, steps, settings), not to registry hosts or
//! the recipe's text; registry mirrors serve images with every blob still
//! checked by digest; and an air-gapped host locks, builds and verifies
//! from images imported into the store, with no registry at all.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{eifbake, eifbake_env, push_fixtures, TestRegistry};
use eifbake::lock::Lock;
use eifbake::oci::Store;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

fn ok_env(args: &[&str], env: &[(&str, &Path)]) -> String {
    let (c, o, e) = eifbake_env(args, env);
    assert_eq!(c, 0, "eifbake {args:?}\n{o}\n{e}");
    o
}

const SCRIPT: &str = "mkdir -p /out/r\ncp main.sh /out/r/\necho built > /out/r/note";

/// A project `v` in `dir` whose one step runs `script` in `image`, with the
/// path source `app`; returns the recipe path.
fn project(dir: &Path, image: &str, script: &str) -> PathBuf {
    let rdir = dir.join("recipes/v");
    fs::create_dir_all(rdir.join("app")).unwrap();
    fs::write(rdir.join("app/main.sh"), "echo main\n").unwrap();
    let text = common::busybox_step_recipe("v", "1.0.0", image, "path = \"app\"", script);
    fs::write(rdir.join("recipe.toml"), text).unwrap();
    rdir.join("recipe.toml")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// `(EIF bytes, .pcrs text, manifest)` of the build in `out`.
fn outputs(out: &Path) -> (Vec<u8>, String, serde_json::Value) {
    (
        fs::read(out.join("v.eif")).unwrap(),
        fs::read_to_string(out.join("v.pcrs")).unwrap(),
        json(&out.join("v.manifest.json")),
    )
}

fn lock_and_build(
    store: &Path,
    recipe: &Path,
    out: &Path,
    extra: &[&str],
) -> (Vec<u8>, String, serde_json::Value) {
    let mut a = vec!["--store", s(store)];
    a.extend_from_slice(extra);
    let mut lock = a.clone();
    lock.extend(["lock", s(recipe)]);
    ok(&lock);
    let mut build = a;
    build.extend(["build", s(recipe), "--out", s(out)]);
    ok(&build);
    outputs(out)
}

/// The same digests pulled from two registries (two loopback
/// docker-registry instances) give the same EIF and PCRs; so does the recipe
/// with a comment added; a changed step script changes them. The registry
/// hosts and the recipe text are in the manifest's origin only, never in
/// the EIF.
#[test]
fn measured_inputs_hold_what_determines_the_bytes() {
    let (reg_a, reg_b) = (TestRegistry::start(), TestRegistry::start());
    let (fa, fb) = (push_fixtures(&reg_a), push_fixtures(&reg_b));
    assert_eq!(fa.busybox.digest, fb.busybox.digest, "the fixtures differ between registries");
    let dir = tempfile::tempdir().unwrap();
    let recipe = project(dir.path(), &reg_a.image("fx/busybox:1"), SCRIPT);
    let (eif_a, pcrs_a, m_a) =
        lock_and_build(&dir.path().join("store-a"), &recipe, &dir.path().join("out-a"), &[]);

    // From the other registry, into a fresh store: it really serves the blobs.
    let text = fs::read_to_string(&recipe).unwrap();
    fs::write(&recipe, text.replace(&reg_a.addr, &reg_b.addr)).unwrap();
    let blobs_b = reg_b.gets("/blobs/");
    let (eif_b, pcrs_b, m_b) =
        lock_and_build(&dir.path().join("store-b"), &recipe, &dir.path().join("out-b"), &[]);
    assert!(reg_b.gets("/blobs/") > blobs_b, "the second build did not pull from {}", reg_b.addr);
    assert_eq!(pcrs_a, pcrs_b, "PCRs depend on the registry host");
    assert!(eif_a == eif_b, "the EIF depends on the registry host");
    assert_eq!(m_a["inputs"], m_b["inputs"]);
    assert_ne!(m_a["origin"]["images"], m_b["origin"]["images"]);
    assert_eq!(m_a["inputs"]["format"], 2);
    let origin = &m_b["origin"];
    assert_eq!(origin["images"][0]["reference"], reg_b.image("fx/busybox:1"));
    assert!(origin["recipe"]["text"].as_str().unwrap().contains(&reg_b.addr));
    // Nothing of the origin is measured: not in the embedded inputs.
    let measured = m_b["inputs"].to_string();
    for absent in [reg_a.addr.as_str(), reg_b.addr.as_str(), "recipe.toml", "v.lock", "path = "] {
        assert!(!measured.contains(absent), "{absent:?} is measured: {measured}");
    }
    let d: serde_json::Value =
        serde_json::from_str(&ok(&["describe", "--json", s(&dir.path().join("out-b/v.eif"))])).unwrap();
    assert_eq!(d["Metadata"]["CustomMetadata"], m_b["inputs"], "CustomMetadata is not the measured inputs");
    assert!(
        !eif_b.windows(reg_b.addr.len()).any(|w| w == reg_b.addr.as_bytes()),
        "the registry is in the EIF"
    );

    // A comment in the recipe: re-locked (its digest changed), same EIF.
    fs::write(&recipe, format!("# built for the release\n{}", fs::read_to_string(&recipe).unwrap())).unwrap();
    let (eif_c, pcrs_c, m_c) =
        lock_and_build(&dir.path().join("store-b"), &recipe, &dir.path().join("out-c"), &[]);
    assert_ne!(m_c["origin"]["recipe"]["sha256"], m_b["origin"]["recipe"]["sha256"]);
    assert_eq!(pcrs_c, pcrs_b, "a recipe comment changed the PCRs");
    assert!(eif_c == eif_b);

    // A changed step script changes the measured inputs and the PCRs.
    let text = fs::read_to_string(&recipe).unwrap();
    fs::write(&recipe, text.replace("echo built", "echo rebuilt")).unwrap();
    let (_, pcrs_d, m_d) =
        lock_and_build(&dir.path().join("store-b"), &recipe, &dir.path().join("out-d"), &[]);
    assert_ne!(m_d["inputs"]["steps"], m_c["inputs"]["steps"]);
    let pcr = |t: &str, n: &str| t.lines().find(|l| l.ends_with(n)).unwrap().to_string();
    for n in ["PCR0", "PCR1"] {
        assert_ne!(pcr(&pcrs_d, n), pcr(&pcrs_c, n), "{n} did not change with the step script");
    }

    // verify rebuilds from the manifest (whose origin names registry b) ...
    let app = format!("app={}", s(&dir.path().join("recipes/v/app")));
    let (c, o, e) =
        eifbake(&["verify", "--json", s(&dir.path().join("out-c/v.manifest.json")), "--source", &app]);
    assert_eq!(c, 0, "{o}\n{e}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&o).unwrap()["verdict"], "GOOD");
    // ... but an EIF alone cannot say where its images came from.
    let (c, _, e) = eifbake(&["verify", s(&dir.path().join("out-c/v.eif")), "--source", &app]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("embeds only its measured inputs") && e.contains("v.manifest.json --eif"), "{e}");
}

/// A manifest and an EIF made by eifbake 0.1.0 with inputs format 1 (which
/// measured registry hosts and the recipe digest): `verify` says which
/// eifbake can rebuild them and exits 2, before any work.
#[test]
fn verify_names_the_eifbake_of_an_older_inputs_format() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest-format1.json");
    let (c, o, e) = eifbake(&["verify", s(&old)]);
    assert_eq!(c, 2, "{o}{e}");
    assert!(
        e.contains("made by eifbake 0.1.0 with inputs format 1") && e.contains("rebuild with eifbake 0.1.0"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (kernel, ramdisk) = kernel_and_ramdisk(dir.path());
    let inputs = json(&old)["inputs"].to_string();
    let eif = dir.path().join("old.eif");
    ok(&[
        "eif",
        "--kernel",
        s(&kernel),
        "--cmdline",
        "console=ttyS0",
        "--ramdisk",
        s(&ramdisk),
        "--metadata",
        &inputs,
        "--output",
        s(&eif),
    ]);
    let (c, o, e) = eifbake(&["verify", s(&eif)]);
    assert_eq!(c, 2, "{o}{e}");
    assert!(e.contains("CustomMetadata") && e.contains("made by eifbake 0.1.0 with inputs format 1"), "{e}");
}

/// A kernel stand-in and a ramdisk of one file.
fn kernel_and_ramdisk(dir: &Path) -> (PathBuf, PathBuf) {
    let kernel = dir.join("kernel");
    fs::write(&kernel, vec![0x5au8; 4096]).unwrap();
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("init"), "#!/bin/sh\n").unwrap();
    let ramdisk = dir.join("ramdisk.cpio");
    ok(&["ramdisk", s(&tree), "--output", s(&ramdisk)]);
    (kernel, ramdisk)
}

/// PCR2 of a single-ramdisk EIF is the same for every such EIF: describe
/// says so (text and JSON); with two ramdisks it does not.
#[test]
fn describe_says_pcr2_of_a_single_ramdisk_eif_pins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, ramdisk) = kernel_and_ramdisk(dir.path());
    let one = dir.path().join("one.eif");
    let two = dir.path().join("two.eif");
    let base = ["eif", "--kernel", s(&kernel), "--cmdline", "console=ttyS0", "--ramdisk", s(&ramdisk)];
    ok(&[&base[..], &["--output", s(&one)]].concat());
    ok(&[&base[..], &["--ramdisk", s(&ramdisk), "--output", s(&two)]].concat());
    let text = ok(&["describe", s(&one)]);
    assert!(text.contains("note: PCR2 is a constant") && text.contains("pinning it pins nothing"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&ok(&["describe", "--json", s(&one)])).unwrap();
    assert!(j["notes"][0].as_str().unwrap().contains("PCR2 is a constant"), "{j:#}");
    // The note's claim: PCR2 is SHA384(0^48 ‖ SHA384("")) whatever the ramdisk.
    assert_eq!(j["Measurements"]["PCR2"], eifbake::pcr::Pcr::of(b"").hex());
    let text = ok(&["describe", s(&two)]);
    assert!(!text.contains("PCR2 is a constant"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&ok(&["describe", "--json", s(&two)])).unwrap();
    assert_eq!(j["notes"], serde_json::json!([]));
}

/// Images of registry O are served by mirror M: `--registry-mirror O=M` on
/// lock, build and verify, the config file on fetch. O itself holds nothing.
/// A mirror serving a tampered blob is refused by digest.
#[test]
fn registry_mirrors_serve_pinned_images_verified_by_digest() {
    let origin = TestRegistry::start();
    let mirror = TestRegistry::start();
    let fx = push_fixtures(&mirror);
    let dir = tempfile::tempdir().unwrap();
    let recipe = project(dir.path(), &origin.image("fx/busybox:1"), SCRIPT);
    let flag = format!("{}={}", origin.addr, mirror.addr);
    let store = dir.path().join("store");

    // Without the mirror the origin has nothing.
    let (c, _, e) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(c, 2, "{e}");
    ok(&["--store", s(&store), "lock", s(&recipe), "--registry-mirror", &flag]);
    let lock = Lock::load(&dir.path().join("lockfiles/v.lock")).unwrap();
    assert_eq!(lock.images["bb"].manifest, fx.busybox.digest);
    assert_eq!(
        lock.images["bb"].reference,
        origin.image("fx/busybox:1"),
        "the lock names the recipe's reference"
    );

    // fetch through the config file's mirror.
    let config = dir.path().join("eifbake.toml");
    fs::write(
        &config,
        format!("[[registry.mirror]]\nfrom = \"{}\"\nto = \"{}\"\n", origin.addr, mirror.addr),
    )
    .unwrap();
    let cfg: &[(&str, &Path)] = &[("EIFBAKE_CONFIG", &config)];
    let blobs = mirror.gets("/blobs/");
    ok_env(&["--store", s(&store), "fetch", s(&recipe)], cfg);
    assert!(mirror.gets("/blobs/") > blobs, "fetch did not use the mirror");
    assert_eq!(origin.gets("/blobs/"), 0);
    // The store records the recipe's reference, not the mirror's.
    let listed = Store::open(&store).unwrap().find_image(&origin.image("fx/busybox:1")).unwrap();
    assert_eq!(listed.digest, fx.busybox.digest);

    // build (fresh store) and verify (fresh temporary store) with the flag.
    let out = dir.path().join("out");
    ok(&[
        "--store",
        s(&dir.path().join("store2")),
        "build",
        s(&recipe),
        "--out",
        s(&out),
        "--registry-mirror",
        &flag,
    ]);
    let app = format!("app={}", s(&dir.path().join("recipes/v/app")));
    let (c, o, e) = eifbake(&["verify", "--json", s(&out.join("v.manifest.json")), "--source", &app]);
    assert_eq!(c, 2, "verify without the mirror must fail to fetch: {o}{e}");
    let (c, o, e) = eifbake(&[
        "verify",
        "--json",
        s(&out.join("v.manifest.json")),
        "--source",
        &app,
        "--registry-mirror",
        &flag,
    ]);
    assert_eq!(c, 0, "{o}{e}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&o).unwrap()["verdict"], "GOOD");

    // A mirror serving other bytes under a pinned digest is refused, and nothing is stored.
    let layout = Store::open(fx.layout.path()).unwrap();
    let layer = layout.layers(&fx.busybox.digest).unwrap()[0].digest;
    let data = mirror.blob_data(&layer);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let store3 = dir.path().join("store3");
    let (c, _, e) = eifbake_env(&["--store", s(&store3), "fetch", s(&recipe)], cfg);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains(&layer.to_string()) && e.contains(&format!("via mirror {}", mirror.addr)), "{e}");
    assert!(!Store::open(&store3).unwrap().has_blob(&layer), "a tampered blob was stored");

    // A malformed mirror is an error naming it.
    let (c, _, e) = eifbake(&["--store", s(&store), "lock", s(&recipe), "--registry-mirror", "nothing"]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("FROM=TO"), "{e}");
}

/// An air-gapped host: a fixture image exported by eifbake as an
/// oci-archive, imported with `--name`, locked `--offline` from the store
/// (a tag, and a digest reference without --offline), built and verified
/// with no registry running at all.
#[test]
fn air_gapped_import_lock_build_verify() {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let layout = Store::open(&layout_dir).unwrap();
    let image = common::write_image(&layout, "amd64", &[common::busybox_layer()]);
    layout.add_image("busybox", image.clone()).unwrap();
    let tar = dir.path().join("busybox.tar");
    ok(&["--store", s(&layout_dir), "store", "export", "busybox", s(&tar)]);

    let store = dir.path().join("store");
    let out = ok(&["--store", s(&store), "store", "import", s(&tar), "--name", "fx/busybox:1"]);
    assert!(out.contains("imported docker.io/fx/busybox_1"), "{out}");

    // No host in the reference: docker.io's, resolved from the store's record.
    let recipe = project(dir.path(), "fx/busybox:1", SCRIPT);
    ok(&["--offline", "--store", s(&store), "lock", s(&recipe)]);
    let lock = Lock::load(&dir.path().join("lockfiles/v.lock")).unwrap();
    assert_eq!(lock.images["bb"].manifest, image.digest);
    assert_eq!(lock.images["bb"].platform.to_string(), "linux/amd64");
    let out_dir = dir.path().join("out");
    ok(&["--offline", "--store", s(&store), "build", s(&recipe), "--out", s(&out_dir)]);
    let app = format!("app={}", s(&dir.path().join("recipes/v/app")));
    let v = ok(&[
        "--offline",
        "--store",
        s(&store),
        "verify",
        "--json",
        s(&out_dir.join("v.manifest.json")),
        "--source",
        &app,
    ]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&v).unwrap()["verdict"], "GOOD", "{v}");

    // A digest reference whose blobs are in the store needs no registry, --offline or not.
    let pinned = dir.path().join("pinned");
    let recipe2 = project(&pinned, &format!("fx/busybox@{}", image.digest), SCRIPT);
    ok(&["--store", s(&store), "lock", s(&recipe2)]);
    assert_eq!(Lock::load(&pinned.join("lockfiles/v.lock")).unwrap().images["bb"].manifest, image.digest);

    // A reference the store has no record of: --offline says how to import it.
    let other = dir.path().join("other");
    let recipe3 = project(&other, "fx/busybox:2", SCRIPT);
    let (c, _, e) = eifbake(&["--offline", "--store", s(&store), "lock", s(&recipe3)]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("store import PATH --name docker.io/fx/busybox:2"), "{e}");
    // The wrong platform is refused, naming it.
    let arm = other.join("recipes/v/recipe.toml");
    let text = fs::read_to_string(&arm).unwrap().replace("fx/busybox:2", "fx/busybox:1");
    fs::write(&arm, text.replace("source_date_epoch", "arch = \"aarch64\"\nsource_date_epoch")).unwrap();
    let (c, _, e) = eifbake(&["--offline", "--store", s(&store), "lock", s(&arm)]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("linux/amd64") && e.contains("linux/arm64"), "{e}");
}
