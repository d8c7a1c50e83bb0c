//! `eifbake verify`: rebuild from a manifest (or an EIF's embedded inputs)
//! alone, in a fresh store and directory, against the loopback registry, and
//! compare with the manifest, a `.pcrs` file and published EIFs, including
//! one written by AWS's `eif_build`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use eifbake::oci::layout::Layout;

use common::git::git;
use common::{eifbake, TestRegistry};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Built {
    _reg: TestRegistry,
    dir: tempfile::TempDir,
    /// The app source as the rebuilder has it (a copy outside the project).
    app: PathBuf,
    out: PathBuf,
}

impl Built {
    fn manifest(&self) -> PathBuf {
        self.out.join("v.manifest.json")
    }
    fn eif(&self) -> PathBuf {
        self.out.join("v.eif")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// Lock and build a recipe with a path source and one step, then copy the
/// app source elsewhere (as a rebuilder would have it).
fn built() -> Built {
    built_with(None, false)
}

/// The checked-in test signing keys and certificates.
fn signing_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
}

/// [`built`], with the app source from the git repository at `git` (a
/// `file://` URL) instead of the path source `app`; when `signed`, the recipe
/// has `[signing] certificate = "keys/cert.pem"` (no key: the build gets it
/// from `$EIFBAKE_SIGNING_KEY`, the test key signer1).
fn built_with(git: Option<&str>, signed: bool) -> Built {
    let key = signing_data("signer1.key");
    let signer = signed.then(|| (signing_data("signer1.pem"), vec![("EIFBAKE_SIGNING_KEY", key)]));
    built_signed_by(git, signer)
}

/// [`built_with`], signed (when `signer` is given) with its certificate and
/// the key its environment names (`EIFBAKE_SIGNING_KEY`, a token's settings).
fn built_signed_by(git: Option<&str>, signer: Option<(PathBuf, Vec<(&str, PathBuf)>)>) -> Built {
    let reg = TestRegistry::start();
    let _f = common::push_fixtures(&reg);
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("recipes/v");
    fs::create_dir_all(rdir.join("app")).unwrap();
    fs::write(rdir.join("app/main.sh"), "echo main\n").unwrap();
    fs::write(rdir.join("app/data.txt"), "some data\n").unwrap();
    let source = match git {
        Some(url) => format!("git = \"{url}\"\nrev = \"main\""),
        None => "path = \"app\"".to_string(),
    };
    let script =
        "mkdir -p /out/r\necho \"hello-from-the-$((6*7))\" > /out/r/greeting\ncp main.sh data.txt /out/r/";
    let mut text = common::busybox_step_recipe("v", "1.2.3", &reg.image("fx/busybox:1"), &source, script);
    if let Some((cert, _)) = &signer {
        fs::create_dir_all(rdir.join("keys")).unwrap();
        fs::copy(cert, rdir.join("keys/cert.pem")).unwrap();
        text.push_str("\n[signing]\ncertificate = \"keys/cert.pem\"\n");
    }
    fs::write(rdir.join("recipe.toml"), text).unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let recipe = rdir.join("recipe.toml");
    let (c, o, e) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(c, 0, "{o}{e}");
    let env: Vec<(&str, &Path)> = signer
        .as_ref()
        .map(|(_, env)| env.iter().map(|(k, v)| (*k, v.as_path())).collect())
        .unwrap_or_default();
    let (c, o, e) = common::eifbake_env(&["--store", s(&store), "build", s(&recipe), "--out", s(&out)], &env);
    assert_eq!(c, 0, "{o}{e}");
    let app = dir.path().join("rebuilder-app");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(rdir.join("app"))
        .arg(&app)
        .status()
        .unwrap()
        .success());
    Built { _reg: reg, dir, app, out }
}

/// `eifbake verify ARGS --json` with no store given (a fresh temporary one).
fn verify(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a = vec!["verify", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = eifbake(&a);
    let v = if code == 2 {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: exit {code}\n{out}\n{err}"))
    };
    (code, v, err)
}

fn failed(v: &serde_json::Value) -> Vec<String> {
    v["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| format!("{} ({})", f["what"].as_str().unwrap(), f["from"].as_str().unwrap()))
        .collect()
}

#[test]
fn round_trip_tampering_and_attestation() {
    let b = built();
    let source = format!("app={}", s(&b.app));
    let manifest = b.manifest();

    // The manifest alone (plus the path source), a fresh store and directory: GOOD.
    let attest = b.path("vsa.json");
    let pcrs = b.out.join("v.pcrs");
    let (code, v, err) =
        verify(&[s(&manifest), "--source", &source, "--pcrs", s(&pcrs), "--attest", s(&attest)]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD");
    assert_eq!(
        v["figures"].as_array().unwrap().len(),
        7,
        "sha256 + 3 PCRs from the manifest, 3 from the pcrs file"
    );
    let st: serde_json::Value = serde_json::from_slice(&fs::read(&attest).unwrap()).unwrap();
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/verification_summary/v1");
    assert_eq!(st["predicate"]["verificationResult"], "PASSED");
    assert_eq!(st["subject"][0]["name"], "v.eif");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    let sha = m["outputs"]["eif"]["sha256"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert_eq!(st["subject"][0]["digest"]["sha256"], sha.as_str());

    // The manifest and the EIF published with it: the EIF's own sha256 and PCRs are expected too.
    let (code, v, err) = verify(&[s(&manifest), "--source", &source, "--eif", s(&b.eif())]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD");

    // Without the path source: cannot rebuild, naming it.
    let (code, _, err) = verify(&[s(&manifest)]);
    assert_eq!(code, 2);
    assert!(err.contains("sources.app") && err.contains("--source app=DIR"), "{err}");

    // One byte of a source file changed: cannot rebuild that source, named.
    let tampered = b.path("tampered-app");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&b.app)
        .arg(&tampered)
        .status()
        .unwrap()
        .success());
    fs::write(tampered.join("data.txt"), "some dama\n").unwrap();
    let (code, _, err) = verify(&[s(&manifest), "--source", &format!("app={}", s(&tampered))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sources.app") && err.contains("not the source that was built"), "{err}");

    // One byte of the published EIF's ramdisk: BAD, the diff names the entry.
    let mut bytes = fs::read(b.eif()).unwrap();
    let needle = b"hello-from-the-42";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("step output in the ramdisk");
    assert_eq!(bytes.windows(needle.len()).filter(|w| w == needle).count(), 1);
    bytes[at + needle.len() - 1] = b'3';
    let published = b.path("published.eif");
    fs::write(&published, &bytes).unwrap();
    let (code, v, err) = verify(&[s(&manifest), "--source", &source, "--eif", s(&published)]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "BAD");
    let bad = failed(&v);
    assert_eq!(bad, ["sha256 (published EIF)", "PCR0 (published EIF)", "PCR1 (published EIF)"], "{v:#}");
    let section = &v["diff"]["sections"][0];
    assert_eq!(section["a"]["kind"], "ramdisk", "{v:#}");
    let changed = &section["entries"]["changed"];
    assert_eq!(changed.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(changed[0]["path"], "r/greeting");
    assert_eq!(changed[0]["changes"][0]["field"], "content sha256");
    // Text on both sides: a unified diff (rebuild --- / published +++).
    assert_eq!(
        changed[0]["detail"],
        "--- a\n+++ b\n@@ -1,1 +1,1 @@\n-hello-from-the-42\n+hello-from-the-43\n"
    );
    // The text report says the same.
    let (code, text, _) = eifbake(&["verify", s(&manifest), "--source", &source, "--eif", s(&published)]);
    assert_eq!(code, 1);
    assert!(text.starts_with("BAD v\n") && text.contains("changed r/greeting"), "{text}");
    assert!(text.contains("\n    -hello-from-the-42\n    +hello-from-the-43\n"), "{text}");

    // The manifest's own figures hold, the published EIF's do not; the
    // attestation is about the latter.
    let (code, v, err) =
        verify(&[s(&manifest), "--source", &source, "--eif", s(&published), "--attest", s(&attest)]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(failed(&v), ["sha256 (published EIF)", "PCR0 (published EIF)", "PCR1 (published EIF)"]);
    assert_eq!(v["figures"].as_array().unwrap().len(), 8);
    let st: serde_json::Value = serde_json::from_slice(&fs::read(&attest).unwrap()).unwrap();
    assert_eq!(st["subject"][0]["name"], "published.eif");
    assert_eq!(st["predicate"]["verificationResult"], "FAILED");

    // One character of a .pcrs line: BAD, naming the register.
    let text = fs::read_to_string(&pcrs).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let flipped = if lines[2].starts_with('0') { "1" } else { "0" };
    lines[2].replace_range(0..1, flipped);
    let bad_pcrs = b.path("bad.pcrs");
    fs::write(&bad_pcrs, lines.join("\n") + "\n").unwrap();
    let (code, v, err) =
        verify(&[s(&manifest), "--source", &source, "--pcrs", s(&bad_pcrs), "--attest", s(&attest)]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(failed(&v), ["PCR2 (pcrs file)"]);
    let st: serde_json::Value = serde_json::from_slice(&fs::read(&attest).unwrap()).unwrap();
    assert_eq!(st["predicate"]["verificationResult"], "FAILED");
}

#[test]
fn tool_version_mismatch_is_refused() {
    let b = built();
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(b.manifest()).unwrap()).unwrap();
    m["inputs"]["tool"]["version"] = "0.0.0-elsewhere".into();
    let other = b.path("other.manifest.json");
    fs::write(&other, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let source = format!("app={}", s(&b.app));
    let (code, _, err) = verify(&[s(&other), "--source", &source]);
    assert_eq!(code, 2);
    assert!(err.contains("0.0.0-elsewhere") && err.contains("--allow-tool-mismatch"), "{err}");
    // Allowed: the rebuild (by this version) matches the recorded outputs, with a note.
    let (code, v, err) = verify(&[s(&other), "--source", &source, "--allow-tool-mismatch"]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert!(v["notes"][0].as_str().unwrap().contains("0.0.0-elsewhere"));
}

/// `--store` reuses the builder's blobs after re-hashing them: GOOD, and a
/// damaged blob stops the rebuild (exit 2) naming the file.
#[test]
fn a_reused_store_is_rehashed() {
    let b = built();
    let store = b.path("store");
    let source = format!("app={}", s(&b.app));
    let (code, v, err) = verify(&["--store", s(&store), s(&b.manifest()), "--source", &source]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD");
    let blobs = Layout::new(&store).blobs();
    let largest = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&largest).unwrap();
    bytes[1000] ^= 1;
    fs::write(&largest, bytes).unwrap();
    let (code, _, err) = verify(&["--store", s(&store), s(&b.manifest()), "--source", &source]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the store is damaged") && err.contains(&largest.display().to_string()), "{err}");
}

fn eif_build() -> PathBuf {
    if let Ok(p) = std::env::var("EIF_BUILD") {
        return p.into();
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("eif_build")).collect())
        .unwrap_or_default();
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/eif_build"));
    candidates.into_iter().find(|p| p.is_file()).expect(
        "AWS's eif_build is needed (`scripts/deps.sh --with-eif-build` puts it in target/tools/bin; or set EIF_BUILD)",
    )
}

/// AWS's eif_build from the same kernel, cmdline and ramdisk: same PCRs,
/// another sha256 (its metadata differs), reported as measured-identical.
#[test]
fn eif_from_aws_eif_build_has_equal_pcrs() {
    let b = built();
    let x = b.path("extract");
    let (c, o, e) = eifbake(&["describe", s(&b.eif()), "--extract", s(&x)]);
    assert_eq!(c, 0, "{o}{e}");
    let aws = b.path("aws.eif");
    let cmdline = fs::read_to_string(x.join("cmdline")).unwrap();
    let st = std::process::Command::new(eif_build())
        .args(["--kernel", s(&x.join("kernel")), "--cmdline", &cmdline, "--ramdisk", s(&x.join("ramdisk0"))])
        .args(["--output", s(&aws)])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let (code, v, err) =
        verify(&[s(&b.manifest()), "--source", &format!("app={}", s(&b.app)), "--eif", s(&aws)]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD_MEASURED");
    assert_eq!(failed(&v), ["sha256 (published EIF)"]);
    let notes = v["notes"].to_string();
    assert!(
        notes.contains(
            "measured content identical (PCRs equal); the files differ only in unmeasured metadata/signature"
        ),
        "{notes}"
    );
    // The diff shows only the metadata differs: other sections merely moved (same sha256).
    for sec in v["diff"]["sections"].as_array().unwrap() {
        let (a, b) = (&sec["a"], &sec["b"]);
        assert!(
            a["kind"] == "metadata" || (a["kind"] == b["kind"] && a["sha256"] == b["sha256"]),
            "a measured section differs: {sec:#}"
        );
    }
}

/// A git source is fetched again from its pinned URL and commit: the
/// manifest alone suffices (the project is deleted first); when the
/// repository is gone, the rebuild cannot happen and says which source.
#[test]
fn git_source_rebuilds_from_the_manifest_alone() {
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("app.git-work");
    fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("main.sh"), "echo main\n").unwrap();
    fs::write(repo.join("data.txt"), "some data\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let url = format!("file://{}", repo.display());
    let b = built_with(Some(&url), false);
    fs::remove_dir_all(b.path("recipes")).unwrap();
    fs::remove_dir_all(b.path("lockfiles")).unwrap();
    fs::remove_dir_all(b.path("store")).unwrap();
    let (code, v, err) = verify(&[s(&b.manifest())]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD");

    fs::rename(&repo, repos.path().join("moved")).unwrap();
    let (code, _, err) = verify(&[s(&b.manifest())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot rebuild") && err.contains("sources.app"), "{err}");
}

/// A signed build: the manifest records the signature, and a rebuilder with
/// no key puts that signature on the rebuild and compares whole files
/// (GOOD, PCR8 and sha256 included); a signature naming another image's PCR0
/// is BAD; the build is refused before any work without a key.
#[test]
fn signed_build_verifies_without_the_key() {
    let b = built_with(None, true);
    let source = format!("app={}", s(&b.app));
    let m: serde_json::Value = serde_json::from_slice(&fs::read(b.manifest()).unwrap()).unwrap();
    let sig = &m["outputs"]["signature"];
    assert!(sig["certificate"]["subject"].as_str().unwrap().contains("eifbake test signer 1"), "{sig:#}");
    assert_eq!(sig["certificate"]["PCR8"], m["outputs"]["pcrs"]["PCR8"]);
    assert!(m["outputs"]["pcrs"]["PCR8"].is_string(), "{m:#}");
    assert!(fs::read_to_string(b.out.join("v.pcrs")).unwrap().contains(" PCR8\n"));
    let (code, out, err) = eifbake(&["describe", "--json", s(&b.eif())]);
    assert_eq!(code, 0, "{out}{err}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["signature"]["valid"], true, "{:#}", d["signature"]);
    assert_eq!(d["Measurements"]["PCR8"], m["outputs"]["pcrs"]["PCR8"]);

    // The rebuilder has no key (none in the recipe, none in the environment).
    fs::remove_dir_all(b.path("recipes/v/keys")).unwrap();
    let pcrs = b.out.join("v.pcrs");
    let (code, v, err) =
        verify(&[s(&b.manifest()), "--source", &source, "--pcrs", s(&pcrs), "--eif", s(&b.eif())]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "GOOD", "{v:#}");
    let whats: Vec<String> = v["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["what"].as_str().unwrap(), f["from"].as_str().unwrap()))
        .collect();
    for w in [
        "signature manifest",
        "PCR8 manifest",
        "sha256 published EIF",
        "PCR8 published EIF",
        "PCR8 pcrs file",
    ] {
        assert!(whats.iter().any(|x| x == w), "no figure {w:?}: {whats:?}");
    }
    assert_eq!(v["rebuilt_sha256"].as_str().unwrap().len(), "sha256:".len() + 64);

    // Another build of other content, signed with the same key: its signature
    // section names another PCR0. Put into the manifest, the verdict is BAD.
    fs::write(b.path("recipes/v/app/data.txt"), "other data\n").unwrap();
    let recipe = b.path("recipes/v/recipe.toml");
    let store = b.path("store");
    let other = b.path("out-other");
    let (c, o, e) = eifbake(&["--store", s(&store), "lock", s(&recipe)]);
    assert_eq!(c, 0, "{o}{e}");
    let (cert, key) = (signing_data("signer1.pem"), signing_data("signer1.key"));
    let args = [
        "--store",
        s(&store),
        "build",
        s(&recipe),
        "--out",
        s(&other),
        "--signing-certificate",
        s(&cert),
        "--private-key",
        s(&key),
    ];
    let (c, o, e) = eifbake(&args);
    assert_eq!(c, 0, "{o}{e}");
    let om: serde_json::Value =
        serde_json::from_slice(&fs::read(other.join("v.manifest.json")).unwrap()).unwrap();
    assert_ne!(om["outputs"]["pcrs"]["PCR0"], m["outputs"]["pcrs"]["PCR0"]);
    assert_eq!(om["outputs"]["pcrs"]["PCR8"], m["outputs"]["pcrs"]["PCR8"], "same certificate, same PCR8");
    let mut forged = m.clone();
    forged["outputs"]["signature"]["section"] = om["outputs"]["signature"]["section"].clone();
    let forged_path = b.path("forged.manifest.json");
    fs::write(&forged_path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let (code, v, err) = verify(&[s(&forged_path), "--source", &source]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["verdict"], "BAD");
    let bad = failed(&v);
    assert!(bad.contains(&"signature (manifest)".to_string()), "{bad:?}");
    let f = v["figures"].as_array().unwrap().iter().find(|f| f["what"] == "signature").unwrap();
    assert!(f["rebuilt"].as_str().unwrap().contains("PCR0"), "{f:#}");

    // A recipe that signs, with no key anywhere: refused before any work, saying how to give one.
    let (code, out, err) =
        eifbake(&["--store", s(&store), "build", s(&recipe), "--out", s(&b.path("out-nokey"))]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no private key") && err.contains("EIFBAKE_SIGNING_KEY"), "{err}");
    assert!(!b.path("out-nokey").exists(), "a refused build made its output directory");
}

/// A build signed by a key on a PKCS#11 token (SoftHSM2): the token's ECDSA
/// nonces are random, so two builds of the same recipe carry different
/// signature bytes, yet each verifies GOOD (whole file, PCR8 included)
/// because the rebuild reuses the signature section its manifest records.
/// A signing problem fails the build before any work: exit 2, no EIF.
#[test]
fn hsm_signed_builds_verify_through_the_recorded_signature() {
    let hsm = common::softhsm::SoftHsm::new();
    let mut env = hsm.env();
    env.push(("EIFBAKE_SIGNING_KEY", PathBuf::from(hsm.uri())));
    let b = built_signed_by(None, Some((hsm.certificate.clone(), env.clone())));
    let env_ref: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let (recipe, store) = (b.path("recipes/v/recipe.toml"), b.path("store"));
    let out2 = b.path("out2");
    let (c, o, e) =
        common::eifbake_env(&["--store", s(&store), "build", s(&recipe), "--out", s(&out2)], &env_ref);
    assert_eq!(c, 0, "{o}{e}");
    let (one, two) = (fs::read(b.eif()).unwrap(), fs::read(out2.join("v.eif")).unwrap());
    assert!(one != two, "the token's signatures should differ from build to build");
    let section = |p: &Path| eifbake::eif::Eif::open(p).unwrap().signature_section().unwrap().unwrap();
    assert_ne!(section(&b.eif()), section(&out2.join("v.eif")));

    let source = format!("app={}", s(&b.app));
    fs::remove_dir_all(b.path("recipes/v/keys")).unwrap();
    for out in [&b.out, &out2] {
        let (m, eif) = (out.join("v.manifest.json"), out.join("v.eif"));
        let (code, v, err) = verify(&[s(&m), "--source", &source, "--eif", s(&eif)]);
        assert_eq!(code, 0, "{v:#}\n{err}");
        assert_eq!(v["verdict"], "GOOD", "{v:#}");
        let whats: Vec<String> = v["figures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["ok"] == true)
            .map(|f| format!("{} {}", f["what"].as_str().unwrap(), f["from"].as_str().unwrap()))
            .collect();
        for w in ["signature manifest", "sha256 published EIF", "PCR8 published EIF"] {
            assert!(whats.iter().any(|x| x == w), "no good figure {w:?}: {whats:?}");
        }
    }

    // Signing problems: refused before any work, exit 2, no EIF written.
    fs::create_dir_all(b.path("recipes/v/keys")).unwrap();
    fs::copy(&hsm.certificate, b.path("recipes/v/keys/cert.pem")).unwrap();
    let uri = |q: &str| format!("pkcs11:token={};object={}{q}", common::softhsm::TOKEN, common::softhsm::KEY);
    let cases = [
        (uri("?pin-value=9999"), "cannot log in to the token"),
        ("pkcs11:token=absent;object=k?pin-value=1234".to_string(), "no token matches"),
        (uri("?pin-value=1234&module-path=/nonexistent/p11.so"), "does not exist"),
        (s(&signing_data("signer1.key")).to_string(), "does not belong to the signing certificate"),
        (s(&b.path("absent.key")).to_string(), "cannot read private key"),
    ];
    let expired_cert = signing_data("expired.pem");
    let expired = ["--signing-certificate", s(&expired_cert)];
    let refused = b.path("out-refused");
    let expired_key = s(&signing_data("expired.key")).to_string();
    for (key, want, extra) in
        cases.into_iter().map(|(k, w)| (k, w, &[][..])).chain([(expired_key, "it expired on", &expired[..])])
    {
        let mut args = vec!["--store", s(&store), "build", s(&recipe), "--out", s(&refused)];
        args.extend(["--private-key", &key]);
        args.extend(extra);
        let (c, o, e) = common::eifbake_env(&args, &env_ref[..1]);
        assert_eq!(c, 2, "{key}: {o}{e}");
        assert!(e.contains(want), "{key}: expected {want:?} in {e}");
        assert!(!refused.join("v.eif").exists(), "{key}: a refused build wrote an EIF");
    }
}
