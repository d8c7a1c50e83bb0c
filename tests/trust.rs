//! Image signatures with a threshold (`[trust]`), checked against
//! independent tools: keys made by `gpg --quick-gen-key` in a private
//! GNUPGHOME, signatures made by `skopeo standalone-sign` for fixture
//! images pushed to the loopback registry, served from a lookaside
//! directory or over loopback HTTP. eifbake's verdict on each signature
//! is compared with `skopeo standalone-verify`'s, and each refusal must
//! name the image and the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use eifbake::digest::Digest;
use eifbake::lock::Lock;
use eifbake::oci::layout::Layout;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A private GNUPGHOME with keys made by gpg; its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        // Short path: gpg-agent's socket path has a length limit.
        let home = tempfile::Builder::new().prefix("g").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg (Debian package gnupg)");
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new ed25519 signing key for `uid`, made at `at` (epoch seconds) or now; its fingerprint.
    fn key(&self, uid: &str, at: Option<i64>) -> String {
        let faked = at.map(|t| format!("--faked-system-time={t}!"));
        let mut args: Vec<&str> = faked.iter().map(String::as_str).collect();
        args.extend(["--quick-gen-key", uid, "ed25519", "sign", "never"]);
        self.run(&args);
        let listing = self.run(&["--with-colons", "--list-keys", uid]);
        listing.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
    }

    fn export(&self, fprs: &[&str], to: &Path) {
        let mut args = vec!["--armor", "--export"];
        args.extend(fprs);
        std::fs::write(to, self.run(&args)).unwrap();
    }

    /// `skopeo standalone-sign` of `manifest` as `reference` by `fpr`.
    fn sign(&self, manifest: &Path, reference: &str, fpr: &str) -> Vec<u8> {
        let out = self.home.path().join("sig.tmp");
        let st = Command::new("skopeo")
            .env("GNUPGHOME", self.home.path())
            .args(["standalone-sign", "--output", s(&out), s(manifest), reference, fpr])
            .output()
            .unwrap();
        assert!(st.status.success(), "skopeo standalone-sign: {}", String::from_utf8_lossy(&st.stderr));
        std::fs::read(&out).unwrap()
    }

    /// `skopeo standalone-verify` of `sig` with this home's keys: accepted or not.
    fn skopeo_accepts(&self, manifest: &Path, reference: &str, fpr: &str, sig: &[u8]) -> bool {
        let p = self.home.path().join("verify.sig");
        std::fs::write(&p, sig).unwrap();
        Command::new("skopeo")
            .env("GNUPGHOME", self.home.path())
            .args(["standalone-verify", s(manifest), reference, fpr, s(&p)])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ =
            Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
    }
}

/// The raw manifest of `image` as the registry serves it, written to `dir/NAME`.
fn raw_manifest(image: &str, dir: &Path, name: &str) -> (PathBuf, Digest) {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")]);
    let p = dir.join(name);
    std::fs::write(&p, &raw).unwrap();
    (p, Digest::of(raw.as_bytes()))
}

/// Put `sigs` in the lookaside directory `dir` for `repo`@`digest` (replacing what was there).
fn lookaside<S: AsRef<[u8]>>(dir: &Path, repo: &str, digest: &Digest, sigs: &[S]) {
    let d = dir.join(format!("{repo}@sha256={}", digest.hex()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (i, sig) in sigs.iter().enumerate() {
        std::fs::write(d.join(format!("signature-{}", i + 1)), sig.as_ref()).unwrap();
    }
}

/// Everything one test binary shares: the registry, the keys, the manifest.
struct World {
    _reg: TestRegistry,
    _fx: Fixtures,
    gpg: Gpg,
    /// A GNUPGHOME holding only the keyring's keys (what skopeo verifies with).
    verifier: Gpg,
    image: String,
    manifest: PathBuf,
    digest: Digest,
    other_manifest: PathBuf,
    a: String,
    b: String,
    outsider: String,
    expired: String,
    revoked: String,
    dir: tempfile::TempDir,
}

/// The keys: A and B (in the keyring), C (outside), E (expired before it
/// signed: its expiry set afterwards, dated before the signature), R (revoked).
fn world() -> World {
    let reg = TestRegistry::start();
    let fx = push_fixtures(&reg);
    let dir = tempfile::tempdir().unwrap();
    let image = reg.image("fx/busybox:1");
    let (manifest, digest) = raw_manifest(&image, dir.path(), "busybox.json");
    let (other_manifest, _) = raw_manifest(&reg.image("fx/layers:1"), dir.path(), "layers.json");
    let gpg = Gpg::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let a = gpg.key("Alice <a@eifbake.test>", None);
    let b = gpg.key("Bob <b@eifbake.test>", None);
    let outsider = gpg.key("Carol <c@eifbake.test>", None);
    let expired = gpg.key("Eve <e@eifbake.test>", Some(now - 10 * 86400));
    let revoked = gpg.key("Rob <r@eifbake.test>", None);
    let verifier = Gpg::new();
    World {
        _reg: reg,
        _fx: fx,
        gpg,
        verifier,
        image,
        manifest,
        digest,
        other_manifest,
        a,
        b,
        outsider,
        expired,
        revoked,
        dir,
    }
}

impl World {
    /// Expire E (an expiry dated ten days ago, a day after its creation)
    /// and revoke R (gpg's own revocation certificate), then export the
    /// keyring (A, B, E, R) and give it to the verifying home.
    fn finish_keys(&self) -> PathBuf {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let t = format!("--faked-system-time={}!", now - 10 * 86400 + 60);
        self.gpg.run(&[&t, "--quick-set-expire", &self.expired, "1d"]);
        let rev = self.gpg.home.path().join(format!("openpgp-revocs.d/{}.rev", self.revoked));
        let text = std::fs::read_to_string(rev).unwrap().replace(":-----BEGIN", "-----BEGIN");
        let revp = self.gpg.home.path().join("r.rev");
        std::fs::write(&revp, text).unwrap();
        self.gpg.run(&["--import", s(&revp)]);
        let keyring = self.dir.path().join("keys.asc");
        self.gpg.export(&[&self.a, &self.b, &self.expired, &self.revoked], &keyring);
        self.verifier.run(&["--import", s(&keyring)]);
        keyring
    }

    fn sign(&self, fpr: &str) -> Vec<u8> {
        self.gpg.sign(&self.manifest, &self.image, fpr)
    }
}

/// A project locking fx/busybox:1 with `[trust]` (`keyring` copied in).
fn project(w: &World, keyring: &Path, threshold: u32, lookaside: &str) -> (tempfile::TempDir, PathBuf) {
    let proj = tempfile::tempdir().unwrap();
    let recipe = write_recipe(proj.path(), "t", "x86_64", &[("busybox", w.image.clone())]);
    std::fs::create_dir_all(proj.path().join("recipes/keys")).unwrap();
    std::fs::copy(keyring, proj.path().join("recipes/keys/maintainers.asc")).unwrap();
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str(&format!(
        "\n[trust]\nkeyring = \"keys/maintainers.asc\"\nthreshold = {threshold}\nlookaside = {lookaside:?}\n"
    ));
    std::fs::write(&recipe, text).unwrap();
    (proj, recipe)
}

/// `eifbake lock` of a fresh project whose lookaside holds only `sigs`:
/// refused (exit 2, no lockfile written); its stderr. `what` names the case
/// in every failure message.
fn lock_refused<S: AsRef<[u8]>>(w: &World, keyring: &Path, threshold: u32, sigs: &[S], what: &str) -> String {
    let sigdir = w.dir.path().join("lookaside");
    lookaside(&sigdir, "fx/busybox", &w.digest, sigs);
    let (proj, recipe) = project(w, keyring, threshold, s(&sigdir));
    let (code, _, err) = eifbake(&["--store", s(&proj.path().join("store")), "lock", s(&recipe)]);
    assert_eq!(code, 2, "{what}: {err}");
    assert!(!proj.path().join("lockfiles/t.lock").exists(), "{what}: a refused lock was written");
    err
}

/// `eifbake --offline build` of `recipe` with `store`, unsigned: exit code and stderr.
fn offline_build(store: &Path, recipe: &Path, out: &Path) -> (i32, String) {
    let (code, _, err) =
        eifbake(&["--offline", "--store", s(store), "build", s(recipe), "--out", s(out), "--unsigned"]);
    (code, err)
}

#[test]
fn signatures_by_gpg_and_skopeo_meet_the_threshold_and_each_refusal_is_named() {
    let w = world();
    let (sig_a, sig_b) = (w.sign(&w.a), w.sign(&w.b));
    // A second signature by A: made a second later, so other bytes (an
    // identical file is one signature, kept once).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let sig_a2 = w.sign(&w.a);
    assert_ne!(sig_a, sig_a2);
    let wrong_digest = w.gpg.sign(&w.other_manifest, &w.image, &w.a);
    let other_ref = w.image.replace("fx/busybox:1", "fx/other:1");
    let wrong_identity = w.gpg.sign(&w.manifest, &other_ref, &w.a);
    let by_outsider = w.sign(&w.outsider);
    let by_expired = w.sign(&w.expired);
    let by_revoked = w.sign(&w.revoked);
    let keyring = w.finish_keys();
    let sigdir = w.dir.path().join("lookaside");
    let repo = "fx/busybox";

    // skopeo's verdict on each signature, against the keyring alone.
    let (m, r, v) = (&w.manifest, w.image.as_str(), &w.verifier);
    assert!(v.skopeo_accepts(m, r, &w.a, &sig_a) && v.skopeo_accepts(m, r, &w.b, &sig_b));
    for (what, sig, fpr) in [
        ("wrong digest", &wrong_digest, &w.a),
        ("wrong identity", &wrong_identity, &w.a),
        ("outside the keyring", &by_outsider, &w.outsider),
        ("expired key", &by_expired, &w.expired),
        ("revoked key", &by_revoked, &w.revoked),
    ] {
        assert!(!v.skopeo_accepts(m, r, fpr, sig), "skopeo accepts the signature with a {what}");
    }

    // Two distinct keyring keys: locked, the signers recorded.
    lookaside(&sigdir, repo, &w.digest, &[&sig_a, &sig_b]);
    let (proj, recipe) = project(&w, &keyring, 2, s(&sigdir));
    let store = proj.path().join("store");
    let out = eifbake_ok(&["--store", s(&store), "lock", s(&recipe)]);
    assert!(out.contains("signed") && out.contains(&w.a) && out.contains(&w.b), "{out}");
    let lock = Lock::load(&proj.path().join("lockfiles/t.lock")).unwrap();
    let mut want = vec![w.a.clone(), w.b.clone()];
    want.sort();
    assert_eq!(lock.images["busybox"].signers, want);
    assert_eq!(lock.images["busybox"].keyring, Some(Digest::of(&std::fs::read(&keyring).unwrap())));

    // Each bad signature beside one good one (threshold 2): refused,
    // naming the image, the reason and how many were valid.
    let cases: [(&str, Vec<&Vec<u8>>, &str); 7] = [
        ("wrong digest", vec![&sig_a, &wrong_digest], "not the pinned manifest"),
        ("wrong identity", vec![&sig_a, &wrong_identity], "fx/other:1"),
        ("expired key", vec![&sig_a, &by_expired], "had expired"),
        ("revoked key", vec![&sig_a, &by_revoked], "is revoked"),
        ("outside the keyring", vec![&sig_a, &by_outsider], "no key of the keyring verifies it"),
        ("duplicate signer", vec![&sig_a, &sig_a2], "signed already (a key counts once)"),
        ("threshold not met", vec![&sig_b], "below its threshold of 2"),
    ];
    for (what, sigs, why) in cases {
        let err = lock_refused(&w, &keyring, 2, &sigs, what);
        assert!(err.contains("image \"busybox\"") && err.contains(why), "{what}: {err}");
        assert!(
            err.contains("1 valid signature(s)") && err.contains("below its threshold of 2"),
            "{what}: {err}"
        );
    }
    // The expired key's reason names when it expired; the outsider's names it.
    let err = lock_refused(&w, &keyring, 1, &[&by_outsider], "outsider alone");
    assert!(err.contains(&w.outsider) || err.contains(&w.outsider[24..]), "{err}");
}

#[test]
fn kept_signatures_are_checked_offline_and_a_tampered_store_is_refused() {
    let w = world();
    let (sig_a, sig_b) = (w.sign(&w.a), w.sign(&w.b));
    let keyring = w.finish_keys();
    // Over loopback HTTP, in the containers lookaside layout.
    let http = common::http::HttpServer::start();
    let path = |n: usize| format!("/sigs/fx/busybox@sha256={}/signature-{n}", w.digest.hex());
    http.serve(&path(1), &sig_a);
    http.serve(&path(2), &sig_b);
    let base = format!("http://127.0.0.1:{}/sigs", http.port);
    let (proj, recipe) = project(&w, &keyring, 2, &base);
    let store = proj.path().join("store");
    eifbake_ok(&["--store", s(&store), "lock", s(&recipe)]);
    let asked = http.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(asked, 3, "signature-1, -2, then the missing -3 ends the list");

    // fetch keeps them; fetch --offline checks the kept ones, asking nothing.
    eifbake_ok(&["--store", s(&store), "fetch", s(&recipe)]);
    let out = eifbake_ok(&["--offline", "--store", s(&store), "fetch", s(&recipe)]);
    assert!(out.contains("signed by 2"), "{out}");
    assert_eq!(
        http.requests.load(std::sync::atomic::Ordering::SeqCst),
        asked,
        "offline fetch asked the lookaside"
    );
    let kept = Layout::new(&store).signatures(&w.digest);
    let files: Vec<PathBuf> = std::fs::read_dir(&kept).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2);
    // An offline build passes the signature check (and stops later: the
    // fixture recipe's init is a symlink).
    let out_dir = proj.path().join("out");
    let (code, err) = offline_build(&store, &recipe, &out_dir);
    assert_eq!(code, 2);
    assert!(!err.contains("threshold") && err.contains("is a symlink"), "{err}");

    // A kept signature tampered with: refused, named, offline.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    std::fs::write(&files[0], &bytes).unwrap();
    let (code, err) = offline_build(&store, &recipe, &out_dir);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("image \"busybox\"") && err.contains("tampered or damaged"), "{err}");
    assert!(err.contains("1 valid signature(s)") && err.contains(s(&files[0])), "{err}");
    // Deleted: refused too.
    std::fs::remove_file(&files[0]).unwrap();
    let (code, err) = offline_build(&store, &recipe, &out_dir);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("image \"busybox\"") && err.contains("below its threshold of 2"), "{err}");
    assert!(err.contains("--offline"), "{err}");
    // Online, the missing one is fetched again from the lookaside.
    eifbake_ok(&["--store", s(&store), "fetch", s(&recipe)]);

    // A keyring edited since the lock: refused until re-locked.
    let kr = recipe.parent().unwrap().join("keys/maintainers.asc");
    let mut text = std::fs::read_to_string(&kr).unwrap();
    text.push('\n');
    std::fs::write(&kr, text).unwrap();
    let (code, _, err) = eifbake(&["--offline", "--store", s(&store), "fetch", s(&recipe)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("keyring") && err.contains("changed since") && err.contains("eifbake lock"),
        "{err}"
    );
}

/// A rebuilder's side: a build under `[trust]` lists its signers in the
/// manifest, and `verify` of that manifest, in an empty store, fetches the
/// signatures again and checks them before it builds: GOOD while two
/// maintainers' signatures are there, refused once one is withdrawn.
#[test]
fn verify_rechecks_the_signatures_and_refuses_below_the_threshold() {
    let w = world();
    let (sig_a, sig_b) = (w.sign(&w.a), w.sign(&w.b));
    let keyring = w.finish_keys();
    let sigdir = w.dir.path().join("lookaside-verify");
    lookaside(&sigdir, "fx/busybox", &w.digest, &[&sig_a, &sig_b]);
    let (proj, recipe) = project(&w, &keyring, 2, s(&sigdir));
    // The fixture's init is a symlink to busybox; naming busybox itself builds.
    let text = std::fs::read_to_string(&recipe).unwrap().replace("\"/bin/sh\" }", "\"/bin/busybox\" }");
    std::fs::write(&recipe, text).unwrap();
    let (store, out) = (proj.path().join("store"), proj.path().join("out"));
    eifbake_ok(&["--store", s(&store), "lock", s(&recipe)]);
    eifbake_ok(&["--store", s(&store), "build", s(&recipe), "--out", s(&out), "--unsigned"]);
    let manifest = out.join("t.manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let image = m["origin"]["images"].as_array().unwrap().iter().find(|i| i["name"] == "busybox").unwrap();
    let mut want = vec![w.a.clone(), w.b.clone()];
    want.sort();
    assert_eq!(image["signers"], serde_json::json!(want), "{image}");
    assert_eq!(m["origin"]["keyrings"].as_array().map(Vec::len), Some(1), "{}", m["origin"]);

    let fresh = proj.path().join("rebuilder-store");
    let (code, o, e) = eifbake(&["--store", s(&fresh), "verify", s(&manifest)]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("GOOD"), "{o}");

    // One maintainer withdraws: a new rebuilder is refused before anything runs.
    lookaside(&sigdir, "fx/busybox", &w.digest, &[&sig_a]);
    let fresh = proj.path().join("rebuilder-store-2");
    let (code, o, e) = eifbake(&["--store", s(&fresh), "verify", s(&manifest)]);
    assert_eq!(code, 2, "{o}{e}");
    assert!(e.contains("image \"busybox\"") && e.contains("below its threshold of 2"), "{e}");
    assert!(!o.contains("GOOD"), "{o}");
}
