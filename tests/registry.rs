//! lock, fetch and store against a real loopback registry (Debian's
//! docker-registry) holding fixture images these tests build and push with
//! skopeo; skopeo and umoci then read the store eifbake wrote.

mod common;

use std::path::Path;

use common::*;
use eifbake::digest::Digest;
use eifbake::lock::Lock;
use eifbake::oci::Store;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The digest of a manifest as skopeo sees it (sha256 of `inspect --raw`).
fn skopeo_raw(image: &str) -> (Digest, serde_json::Value) {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")]);
    (Digest::of(raw.as_bytes()), serde_json::from_str(&raw).unwrap())
}

/// A project whose recipe `t` names the three fixture images of `reg`.
fn three_image_project(reg: &TestRegistry) -> (tempfile::TempDir, std::path::PathBuf) {
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(
        proj.path(),
        "t",
        "x86_64",
        &[
            ("busybox", reg.image("fx/busybox:1")),
            ("multi", reg.image("fx/multi:1")),
            ("layers", reg.image("fx/layers:1")),
        ],
    );
    (proj, recipe)
}

#[test]
fn lock_fetch_refetch_and_reference_tools_read_the_store() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let (proj, recipe) = three_image_project(&reg);

    // lock: digests match what skopeo reports.
    let out = eifbake_ok(&["lock", s(&recipe)]);
    assert!(out.contains("added"), "{out}");
    let lock_path = proj.path().join("lockfiles/t.lock");
    let lock = Lock::load(&lock_path).unwrap();
    let (bb_digest, _) = skopeo_raw(&reg.image("fx/busybox:1"));
    assert_eq!(lock.images["busybox"].manifest, bb_digest);
    assert_eq!(lock.images["busybox"].index, Some(bb_digest), "single manifest: index = manifest");
    assert_eq!(bb_digest, fx.busybox.digest);
    let (multi_digest, multi_raw) = skopeo_raw(&reg.image("fx/multi:1"));
    assert_eq!(lock.images["multi"].index, Some(multi_digest));
    let amd64 = multi_raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lock.images["multi"].manifest.to_string(), amd64);
    assert_eq!(lock.images["multi"].manifest, fx.multi_amd64.digest);
    assert_eq!(lock.images["multi"].platform.to_string(), "linux/amd64");
    assert!(std::fs::read_to_string(&lock_path)
        .unwrap()
        .starts_with("# written by eifbake lock; do not edit\n"));
    Lock::load_checked(&recipe).unwrap();

    // Re-locking without --update asks the registry nothing.
    let before = reg.gets("/manifests/");
    let out = eifbake_ok(&["lock", s(&recipe)]);
    assert!(out.lines().filter(|l| l.starts_with("kept")).count() == 3, "{out}");
    assert_eq!(reg.gets("/manifests/"), before);

    // fetch: everything lands in the store, verified.
    let store_dir = proj.path().join("store");
    let out = eifbake_ok(&["--store", s(&store_dir), "fetch", s(&recipe)]);
    assert!(out.contains("downloaded"), "{out}");
    let store = Store::open(&store_dir).unwrap();
    for d in [fx.busybox.digest, fx.multi.digest, fx.multi_amd64.digest, fx.layers.digest] {
        assert!(store.has_blob(&d), "{d} not fetched");
    }
    assert!(!store.has_blob(&fx.multi_arm64.digest), "the arm64 manifest was fetched for an amd64 recipe");
    let layers = store.layers(&fx.layers.digest).unwrap();
    assert_eq!(layers.len(), 3);
    assert!(layers[1].media_type.ends_with("+gzip"));
    for l in &layers {
        let (d, n) = Digest::of_reader(store.open_blob(&l.digest).unwrap()).unwrap();
        assert_eq!((d, n), (l.digest, l.size));
    }
    assert_eq!(store.image_config(&fx.busybox.digest).unwrap().architecture().to_string(), "amd64");
    // The busybox layer is shared by fx/busybox and fx/multi's amd64 image: downloaded once.
    let shared = store.layers(&fx.busybox.digest).unwrap()[0].digest;
    assert_eq!(store.layers(&fx.multi_amd64.digest).unwrap()[0].digest, shared);
    assert_eq!(reg.gets(&format!("/blobs/{shared}")), 1, "{}", reg.log());

    // Re-fetch downloads nothing: no blob or manifest request reaches the registry.
    let (blobs, manifests) = (reg.gets("/blobs/"), reg.gets("/manifests/"));
    assert!(blobs > 0);
    let out = eifbake_ok(&["--store", s(&store_dir), "fetch", s(&recipe), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for img in v["images"].as_object().unwrap().values() {
        assert_eq!(img["downloaded"]["bytes"], 0, "{out}");
    }
    assert_eq!(
        (reg.gets("/blobs/"), reg.gets("/manifests/")),
        (blobs, manifests),
        "re-fetch hit the registry"
    );

    // skopeo and umoci read the store as an OCI layout.
    let ls: serde_json::Value =
        serde_json::from_str(&eifbake_ok(&["--store", s(&store_dir), "store", "ls", "--json"])).unwrap();
    let names: Vec<String> =
        ls.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 3, "{ls}");
    assert!(ls.as_array().unwrap().iter().all(|r| r["complete"] == true), "{ls}");
    let bb_name = names.iter().find(|n| n.contains("busybox")).unwrap();
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci:{}:{bb_name}", s(&store_dir))])).unwrap();
    assert_eq!(inspect["Digest"], fx.busybox.digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
    let umoci = std::process::Command::new("umoci").args(["ls", "--layout", s(&store_dir)]).output().unwrap();
    assert!(umoci.status.success(), "umoci ls: {}", String::from_utf8_lossy(&umoci.stderr));
    let listed = String::from_utf8_lossy(&umoci.stdout);
    for n in &names {
        assert!(listed.lines().any(|l| l == n), "umoci ls lacks {n}: {listed}");
    }
    let layers_name = names.iter().find(|n| n.contains("layers")).unwrap();
    let stat = std::process::Command::new("umoci")
        .args(["stat", "--json", "--image", &format!("{}:{layers_name}", s(&store_dir))])
        .output()
        .unwrap();
    assert!(stat.status.success(), "umoci stat: {}", String::from_utf8_lossy(&stat.stderr));

    // export as an oci-archive, which skopeo reads, and which imports into a fresh store.
    let tar = proj.path().join("layers.tar");
    eifbake_ok(&["--store", s(&store_dir), "store", "export", layers_name, s(&tar)]);
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}", s(&tar))])).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);
    let store2 = proj.path().join("store2");
    eifbake_ok(&["--store", s(&store2), "store", "import", s(&tar)]);
    assert_eq!(Store::open(&store2).unwrap().layers(&fx.layers.digest).unwrap().len(), 3);

    // gc keeps everything reachable and removes a stray blob.
    let stray = store.put_blob_bytes(b"stray").unwrap();
    let out = eifbake_ok(&["--store", s(&store_dir), "store", "gc", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(v["removed"][0]["digest"], stray.to_string());
    assert!(store.has_blob(&stray));
    eifbake_ok(&["--store", s(&store_dir), "store", "gc"]);
    assert!(!store.has_blob(&stray));
    assert!(store.has_blob(&fx.multi.digest), "gc dropped the index named by io.eifbake.index-digest");
    Lock::load_checked(&recipe).unwrap();
}

#[test]
fn arm64_pins_and_digest_references_and_drift() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let pinned = format!("{}@{}", reg.image("fx/multi"), fx.multi.digest);
    let recipe = write_recipe(
        proj.path(),
        "arm",
        "aarch64",
        &[("multi", reg.image("fx/multi:1")), ("pinned", pinned.clone())],
    );
    eifbake_ok(&["lock", s(&recipe)]);
    let lock = Lock::load(&proj.path().join("lockfiles/arm.lock")).unwrap();
    assert_eq!(lock.images["multi"].manifest, fx.multi_arm64.digest);
    assert_eq!(lock.images["multi"].platform.to_string(), "linux/arm64");
    assert_eq!(lock.images["pinned"].reference, pinned);
    assert_eq!(lock.images["pinned"].index, Some(fx.multi.digest));
    assert_eq!(lock.images["pinned"].manifest, fx.multi_arm64.digest);

    // A single-platform amd64 image cannot be locked for aarch64.
    let bad = write_recipe(proj.path(), "bad", "aarch64", &[("busybox", reg.image("fx/busybox:1"))]);
    let (code, _, err) = eifbake(&["lock", s(&bad)]);
    assert_eq!(code, 2);
    assert!(err.contains("linux/amd64") && err.contains("linux/arm64"), "{err}");

    // An unknown tag is an error naming the image.
    let missing = write_recipe(proj.path(), "missing", "x86_64", &[("nope", reg.image("fx/nope:1"))]);
    let (code, _, err) = eifbake(&["lock", s(&missing)]);
    assert_eq!(code, 2);
    assert!(err.contains("\"nope\"") && err.contains("fx/nope"), "{err}");
    assert!(!proj.path().join("lockfiles/missing.lock").exists(), "a failed lock left a file");

    // Editing the recipe after locking: fetch refuses until it is re-locked.
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("console=ttyS0", "console=ttyS1")).unwrap();
    let (code, _, err) = eifbake(&["--store", s(&proj.path().join("store")), "fetch", s(&recipe)]);
    assert_eq!(code, 2);
    assert!(err.contains("changed since") && err.contains("arm.lock"), "{err}");
    eifbake_ok(&["lock", s(&recipe)]);
    eifbake_ok(&["--store", s(&proj.path().join("store")), "fetch", s(&recipe)]);
}

#[test]
fn offline_fetch_names_the_missing_blob() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("layers", reg.image("fx/layers:1"))]);
    eifbake_ok(&["lock", s(&recipe)]);
    let store_dir = proj.path().join("store");

    // Nothing in the store yet: offline names the manifest and asks nothing of the registry.
    let before = reg.gets("/v2/fx/");
    let (code, _, err) = eifbake(&["--offline", "--store", s(&store_dir), "fetch", s(&recipe)]);
    assert_eq!(code, 2);
    assert!(err.contains(&fx.layers.digest.to_string()) && err.contains("--offline"), "{err}");

    eifbake_ok(&["--store", s(&store_dir), "fetch", s(&recipe)]);
    let store = Store::open(&store_dir).unwrap();
    let layer = store.layers(&fx.layers.digest).unwrap()[1].digest;
    std::fs::remove_file(store.blob_path(&layer)).unwrap();
    let after_fetch = reg.gets("/v2/fx/");
    let (code, _, err) = eifbake(&["--offline", "--store", s(&store_dir), "fetch", s(&recipe)]);
    assert_eq!(code, 2);
    assert!(err.contains(&layer.to_string()), "{err}");
    assert_eq!(reg.gets("/v2/fx/"), after_fetch, "offline fetch touched the registry");
    assert!(after_fetch > before);
    // Online, only the missing blob is downloaded.
    let blobs = reg.gets("/blobs/");
    eifbake_ok(&["--store", s(&store_dir), "fetch", s(&recipe)]);
    assert_eq!(reg.gets("/blobs/"), blobs + 1);
    assert!(store.has_blob(&layer));
    eifbake_ok(&["--offline", "--store", s(&store_dir), "fetch", s(&recipe)]);
}

#[test]
fn tampered_blob_is_refused_and_nothing_is_stored() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    eifbake_ok(&["lock", s(&recipe)]);
    let layout = Store::open(fx.layout.path()).unwrap();
    let layer = layout.layers(&fx.busybox.digest).unwrap()[0].digest;
    // Same length, one byte different: only the digest check can catch it.
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let store_dir = proj.path().join("store");
    let (code, _, err) = eifbake(&["--store", s(&store_dir), "fetch", s(&recipe)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&layer.to_string()), "{err}");
    let store = Store::open(&store_dir).unwrap();
    assert!(!store.has_blob(&layer), "a tampered blob was stored");
    assert_eq!(
        std::fs::read_dir(store_dir.join("ingest")).unwrap().count(),
        0,
        "temporary files left behind"
    );
    assert!(store.index().unwrap().manifests.is_empty(), "the image was named although incomplete");
}

#[test]
fn oci_archive_written_by_skopeo_imports() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("multi.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{}", reg.image("fx/layers:1")),
        &format!("oci-archive:{}:layers", s(&tar)),
    ]);
    let store_dir = dir.path().join("store");
    let out = eifbake_ok(&["--store", s(&store_dir), "store", "import", s(&tar)]);
    assert!(out.contains("imported layers"), "{out}");
    let store = Store::open(&store_dir).unwrap();
    let img = store.find_image("layers").unwrap();
    // skopeo may rewrite the manifest, but the layers are the same blobs.
    let ours: Vec<_> = Store::open(fx.layout.path()).unwrap().layers(&fx.layers.digest).unwrap();
    let theirs = store.layers(&img.digest).unwrap();
    assert_eq!(ours, theirs);
    // A corrupt archive is refused and leaves nothing named.
    let mut bytes = std::fs::read(&tar).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    let broken = dir.path().join("broken.tar");
    std::fs::write(&broken, &bytes).unwrap();
    let store3 = dir.path().join("store3");
    let (code, _, err) = eifbake(&["--store", s(&store3), "store", "import", s(&broken)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.tar"), "{err}");
    assert!(Store::open(&store3).unwrap().index().unwrap().manifests.is_empty());
}

#[test]
fn concurrent_fetches_share_one_store() {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let (proj, recipe) = three_image_project(&reg);
    eifbake_ok(&["lock", s(&recipe)]);
    let store_dir = proj.path().join("store");
    let children: Vec<_> = (0..4)
        .map(|_| {
            common::bin::eifbake_cmd()
                .args(["--store", s(&store_dir), "fetch", s(&recipe)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let store = Store::open(&store_dir).unwrap();
    assert_eq!(store.index().unwrap().manifests.len(), 3);
    let mut n = 0;
    for e in std::fs::read_dir(store_dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let (d, _) = Digest::of_reader(std::fs::File::open(e.path()).unwrap()).unwrap();
        assert_eq!(d.hex(), e.file_name().to_str().unwrap(), "blob file does not hash to its name");
        n += 1;
    }
    assert!(n >= 10, "only {n} blobs");
    assert_eq!(std::fs::read_dir(store_dir.join("ingest")).unwrap().count(), 0);
    for d in [fx.busybox.digest, fx.multi_amd64.digest, fx.layers.digest] {
        assert!(store.closure(&d).unwrap().1.is_empty(), "{d} incomplete");
    }
}

/// `tester:s3cret`, bcrypt cost 4, made with
/// `python3 -c "import crypt; print('tester:'+crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"`.
const HTPASSWD: &str = "tester:$2b$04$OATPRXNlogEudCL5LayDPue3piz66RIRRWbA1cpBrvImAsxxXg05.";

#[test]
fn credentials_from_registry_auth_file() {
    use base64::Engine as _;
    let reg = TestRegistry::start_with_htpasswd(HTPASSWD);
    let fx = push_fixtures_with(&reg, Some("tester:s3cret"));
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    // No credentials anywhere (HOME and XDG_RUNTIME_DIR point at empty dirs): refused.
    let empty = proj.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let nofile = empty.join("auth.json");
    let isolated =
        [("HOME", empty.as_path()), ("XDG_RUNTIME_DIR", empty.as_path()), ("REGISTRY_AUTH_FILE", &nofile)];
    let (code, _, err) = eifbake_env(&["lock", s(&recipe)], &isolated);
    assert_eq!(code, 2);
    assert!(err.contains("Not authorized") && err.contains("fx/busybox"), "{err}");

    let auth = proj.path().join("auth.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode("tester:s3cret");
    std::fs::write(&auth, format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.addr)).unwrap();
    let with_auth =
        [("HOME", empty.as_path()), ("XDG_RUNTIME_DIR", empty.as_path()), ("REGISTRY_AUTH_FILE", &auth)];
    let (code, out, err) = eifbake_env(&["lock", s(&recipe)], &with_auth);
    assert_eq!(code, 0, "{out}{err}");
    let store_dir = proj.path().join("store");
    let (code, out, err) = eifbake_env(&["--store", s(&store_dir), "fetch", s(&recipe)], &with_auth);
    assert_eq!(code, 0, "{out}{err}");
    assert!(Store::open(&store_dir).unwrap().closure(&fx.busybox.digest).unwrap().1.is_empty());
}
