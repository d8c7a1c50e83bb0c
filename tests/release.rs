//! Releases on a registry: `push`, `pull`, `describe`/`diff`/`verify REF`,
//! signed rebuild attestations as referrers and their listing, and batches
//! of releases, against a real loopback registry (Debian's docker-registry,
//! which has no referrers API: the referrers tag schema path), and an
//! enclave's attestation document checked against a release's PCRs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use eifbake::digest::Digest;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn signing(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
}

/// Build the release `name` (no steps: cheap to build and rebuild) into `proj/out`.
fn build_release(reg: &TestRegistry, proj: &Path, name: &str) -> PathBuf {
    let recipe = write_recipe(proj, name, "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    let text = fs::read_to_string(&recipe).unwrap().replace("\"/bin/sh\" }", "\"/bin/busybox\" }").replace(
        "command = [\"/bin/sh\"]",
        "command = [\"/bin/sh\"]\napp_sources = [\"https://example.org/app.git\"]",
    );
    fs::write(&recipe, text).unwrap();
    let store = proj.join("store");
    eifbake_ok(&["--store", s(&store), "lock", s(&recipe)]);
    eifbake_ok(&["--store", s(&store), "build", s(&recipe), "--out", s(&proj.join("out"))]);
    proj.join("out").join(name)
}

fn push_json(release: &Path, reference: &str) -> serde_json::Value {
    serde_json::from_str(&eifbake_ok(&["push", s(release), reference, "--json"])).unwrap()
}

#[test]
fn push_pull_verify_round_trip_and_tampered_blob() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let release = build_release(&reg, proj.path(), "rel");
    let reference = reg.image("releases/rel:1.0");

    let pushed = push_json(&release, &reference);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    // The same files give the same artifact: pushing again changes nothing.
    assert_eq!(push_json(&release, &reference)["digest"], digest.as_str());

    // skopeo reads the artifact as an OCI image manifest 1.1 artifact.
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")]);
    assert_eq!(Digest::of(raw.as_bytes()).to_string(), digest);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.eifbake.release.v1");
    assert_eq!(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
    assert_eq!(m["config"]["size"], 2);
    let types: Vec<&str> =
        m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "application/vnd.eifbake.eif.v1",
            "application/vnd.eifbake.manifest.v1+json",
            "application/vnd.in-toto+json",
            "application/vnd.eifbake.pcrs.v1+text"
        ]
    );
    let bake: serde_json::Value =
        serde_json::from_slice(&fs::read(release.with_extension("manifest.json")).unwrap()).unwrap();
    let a = &m["annotations"];
    assert_eq!(a["io.eifbake.pcr0"], bake["outputs"]["pcrs"]["PCR0"], "{a}");
    assert_eq!(a["io.eifbake.pcr2"], bake["outputs"]["pcrs"]["PCR2"], "{a}");
    assert_eq!(a["io.eifbake.app-sources"], "[\"https://example.org/app.git\"]");
    assert_eq!(a["io.eifbake.tool.version"], env!("CARGO_PKG_VERSION"));
    // skopeo copies it as an OCI artifact, every blob, digests preserved.
    let layout = proj.path().join("layout");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{reference}"),
        &format!("oci:{}:rel", s(&layout)),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // pull, by tag and by digest: the four files, byte-identical.
    for (r, dir) in
        [(reference.clone(), "pulled"), (format!("{}@{digest}", reg.image("releases/rel")), "pinned")]
    {
        let out = proj.path().join(dir);
        let v: serde_json::Value =
            serde_json::from_str(&eifbake_ok(&["pull", &r, "--out", s(&out), "--json"])).unwrap();
        assert_eq!(v["digest"], digest.as_str());
        for ext in ["eif", "manifest.json", "provenance.json", "pcrs"] {
            let name = format!("rel.{ext}");
            assert_eq!(
                fs::read(out.join(&name)).unwrap(),
                fs::read(release.with_extension(ext)).unwrap(),
                "{name} differs after pull"
            );
        }
        assert_eq!(fs::read_dir(&out).unwrap().count(), 4, "temporary files left in {}", out.display());
    }

    // describe, diff and verify take the reference.
    let d: serde_json::Value =
        serde_json::from_str(&eifbake_ok(&["describe", &reference, "--json"])).unwrap();
    assert_eq!(d["Measurements"]["PCR0"], bake["outputs"]["pcrs"]["PCR0"], "{d}");
    let (code, out, err) = eifbake(&["diff", &reference, s(&release.with_extension("eif"))]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("identical"), "{out}");
    let (code, out, err) = eifbake(&["verify", &reference, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "GOOD");
    let from: Vec<&str> =
        v["figures"].as_array().unwrap().iter().map(|f| f["from"].as_str().unwrap()).collect();
    assert!(from.contains(&"published EIF") && from.contains(&"pcrs file"), "{v:#}");

    // --eif and --pcrs take a reference too (the release's EIF and .pcrs).
    let (code, out, err) = eifbake(&[
        "verify",
        s(&release.with_extension("manifest.json")),
        "--eif",
        &reference,
        "--pcrs",
        &reference,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "GOOD");
    assert_eq!(v["figures"].as_array().unwrap().len(), 11, "manifest 4, published EIF 4, pcrs file 3: {v:#}");

    // A path that exists is a file, whatever it looks like; a host-less name that does not is too.
    let (code, _, err) = eifbake(&["describe", "no-such-dir/rel.eif"]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-dir/rel.eif"), "{err}");

    // The registry serves a tampered EIF (same length, one byte flipped): refused, naming the digest.
    let eif_digest =
        Digest::from_hex(m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:")).unwrap();
    let data = reg.blob_data(&eif_digest);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let out = proj.path().join("tampered");
    let (code, _, err) = eifbake(&["pull", &reference, "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&eif_digest.to_string()) && err.contains("refusing"), "{err}");
    let left: Vec<_> =
        fs::read_dir(&out).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a refused pull left files: {left:?}");
    let (code, _, err) = eifbake(&["verify", &reference]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&eif_digest.to_string()), "{err}");
}

#[test]
fn push_refuses_files_that_are_not_one_release() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let release = build_release(&reg, proj.path(), "mix");
    let pcrs = release.with_extension("pcrs");
    let text = fs::read_to_string(&pcrs).unwrap();
    let first = text.chars().next().unwrap();
    fs::write(&pcrs, text.replacen(first, if first == '0' { "1" } else { "0" }, 1)).unwrap();
    let (code, _, err) = eifbake(&["push", s(&release), &reg.image("releases/mix:1")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(".pcrs") && err.contains("not one release"), "{err}");
    assert_eq!(reg.log().matches("PUT /v2/releases/mix/manifests").count(), 0, "{}", reg.log());

    // --push attaches to a release: a file subject, or --attest without FILE and --push, is refused.
    let (key1, cert1) = (signing("signer1.key"), signing("signer1.pem"));
    let manifest = release.with_extension("manifest.json");
    let (code, _, err) =
        eifbake(&["verify", s(&manifest), "--attest", "--push", "--key", s(&key1), "--cert", s(&cert1)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give a registry reference"), "{err}");
    let (code, _, err) = eifbake(&["verify", s(&manifest), "--attest"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--attest without FILE needs --push"), "{err}");
}

/// The referrer manifests listed under the referrers tag of `digest` (docker-registry has no API).
fn tag_schema_index(reg: &TestRegistry, repo: &str, digest: &str) -> serde_json::Value {
    let tag = digest.replace(':', "-");
    let raw =
        skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}:{tag}", reg.image(repo))]);
    serde_json::from_str(&raw).unwrap()
}

fn attestations(reference: &str, keys: &[&Path]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["attestations", reference, "--json"];
    for k in keys {
        args.extend(["--key", s(k)]);
    }
    let (code, out, err) = eifbake(&args);
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, err)
}

/// Push a copy of the attestation `att` (a referrer manifest digest in
/// `repo`) whose signed payload has `edit` applied and whose signature is
/// kept, as a referrer of the release `to` (`(repo, digest)`): what an
/// attacker with push access to the repository can do.
fn push_forged(reg: &TestRegistry, repo: &str, att: &str, to: (&str, &str), edit: impl Fn(String) -> String) {
    use base64::Engine as _;
    use eifbake::oci::model::DescriptorExt as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw =
        skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}@{att}", reg.image(repo))]);
    let mut m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let env_digest = m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut env: serde_json::Value =
        serde_json::from_slice(&fs::read(reg.blob_data(&Digest::from_hex(&env_digest).unwrap())).unwrap())
            .unwrap();
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    env["payload"] = b64.encode(edit(payload)).into();
    let env_bytes = serde_json::to_vec(&env).unwrap();
    m["layers"][0]["digest"] = Digest::of(&env_bytes).to_string().into();
    m["layers"][0]["size"] = env_bytes.len().into();
    let (to_repo, release) = to;
    let target = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}@{release}", reg.image(to_repo)),
    ]);
    m["subject"]["digest"] = release.into();
    m["subject"]["size"] = target.len().into();
    let m_bytes = serde_json::to_vec(&m).unwrap();
    let registry = eifbake::oci::registry::Registry::new(&[]);
    let r: eifbake::oci::Reference = reg.image(&format!("{to_repo}:x")).parse().unwrap();
    let subject = Digest::from_hex(release.trim_start_matches("sha256:")).unwrap();
    let mut entry = eifbake::oci::model::descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        &Digest::of(&m_bytes),
        m_bytes.len() as u64,
    );
    entry.set_artifact_type(Some("application/vnd.eifbake.rebuild-attestation.v1".into()));
    entry.annotate("io.eifbake.rebuild.keyid", env["signatures"][0]["keyid"].as_str().unwrap().into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        registry.push_blob(&r, &env_bytes).await.unwrap();
        eifbake::release::referrers::attach(&registry, &r, &subject, &m_bytes, entry).await.unwrap();
    });
}

#[test]
fn signed_rebuild_attestations_as_referrers_tag_schema() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let release = build_release(&reg, proj.path(), "att");
    let reference = reg.image("releases/att:1");
    let digest = push_json(&release, &reference)["digest"].as_str().unwrap().to_string();
    let (key1, cert1, cert2) = (signing("signer1.key"), signing("signer1.pem"), signing("signer2.pem"));
    let push_args = ["--attest", "--push", "--key", s(&key1), "--cert", s(&cert1)];

    // No attestation yet.
    let (code, v, err) = attestations(&reference, &[&cert1]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["attestations"], serde_json::json!([]), "{v}");

    let mut args = vec!["verify", &reference];
    args.extend(push_args);
    let out = eifbake_ok(&args);
    assert!(out.starts_with("GOOD att\n") && out.contains("attached the signed summary"), "{out}");

    // docker-registry has no referrers API: the tag schema holds the referrer.
    let index = tag_schema_index(&reg, "releases/att", &digest);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["artifactType"], "application/vnd.eifbake.rebuild-attestation.v1");
    let att = entries[0]["digest"].as_str().unwrap().to_string();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}@{att}", reg.image("releases/att")),
    ]);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str());
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.dsse.envelope.v1+json");

    // Listed with signer1's certificate: good, with verdict, tool version and date.
    let (code, v, err) = attestations(&reference, &[&cert1]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["mechanism"], "tag-schema");
    let a = &v["attestations"][0];
    assert_eq!(a["status"], "good", "{v}");
    assert_eq!(a["verdict"], "PASSED");
    assert_eq!(a["tool_version"], env!("CARGO_PKG_VERSION"));
    assert!(a["who"].as_str().unwrap().contains("eifbake test signer 1"), "{a}");
    assert!(a["time_verified"].as_str().unwrap().ends_with('Z'), "{a}");
    // With another rebuilder's key only: shown, not believed.
    let (code, v, _) = attestations(&reference, &[&cert2]);
    assert_eq!(code, 0);
    assert_eq!(v["attestations"][0]["status"], "unknown-key", "{v}");
    assert_eq!(v["attestations"][0]["verdict"], serde_json::Value::Null, "an unverified verdict was shown");
    // The text form marks it too.
    let (_, text, _) = eifbake(&["attestations", &reference, "--key", s(&cert2)]);
    assert!(text.contains("UNKNOWN KEY"), "{text}");

    // Again: this rebuilder's attestation is there, so the release is skipped.
    let mut again = args.clone();
    again.push("--json");
    let v: serde_json::Value = serde_json::from_str(&eifbake_ok(&again)).unwrap();
    assert_eq!(v["skipped"], true, "{v}");
    assert_eq!(tag_schema_index(&reg, "releases/att", &digest)["manifests"].as_array().unwrap().len(), 1);

    // A forged copy: the verdict time edited, the signature kept. Flagged BAD, exit 1.
    push_forged(&reg, "releases/att", &att, ("releases/att", &digest), |p| {
        p.replace("\"timeVerified\":\"", "\"timeVerified\":\"1")
    });
    let (code, v, err) = attestations(&reference, &[&cert1]);
    assert_eq!(code, 1, "{v}{err}");
    let list = v["attestations"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["status"], "good");
    assert_eq!(list[1]["status"], "bad");
    assert!(list[1]["problem"].as_str().unwrap().contains("does not verify"), "{v}");

    // The stored envelope damaged at rest: refused by its digest, flagged BAD.
    let env =
        Digest::from_hex(m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:")).unwrap();
    let mut bytes = fs::read(reg.blob_data(&env)).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(reg.blob_data(&env), &bytes).unwrap();
    let (code, v, _) = attestations(&reference, &[&cert1]);
    assert_eq!(code, 1);
    assert_eq!(v["attestations"][0]["status"], "bad", "{v}");
    assert!(v["attestations"][0]["problem"].as_str().unwrap().contains(&env.to_string()), "{v}");
}

/// `verify REF… --jobs N`: one JSON line per release, resumed after an
/// interruption (what already carries this rebuilder's attestation is skipped).
#[test]
fn many_releases_one_line_each_and_resume() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let refs: Vec<String> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| {
            let r = reg.image(&format!("releases/{n}:1"));
            push_json(&build_release(&reg, proj.path(), n), &r);
            r
        })
        .collect();
    let (key1, cert1) = (signing("signer1.key"), signing("signer1.pem"));
    let run = |subjects: &[&str], jobs: &str| {
        let mut args = vec!["verify"];
        args.extend_from_slice(subjects);
        args.extend(["--attest", "--push", "--key", s(&key1), "--cert", s(&cert1), "--jobs", jobs]);
        let (code, out, err) = eifbake(&args);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (code, lines, err)
    };
    let by_subject = |lines: &[serde_json::Value], r: &str| -> serde_json::Value {
        lines
            .iter()
            .find(|l| l["subject"] == r)
            .cloned()
            .unwrap_or_else(|| panic!("no line for {r}: {lines:?}"))
    };

    // A first run that covers only m1 (as if interrupted after it).
    let out = eifbake_ok(&["verify", &refs[0], "--attest", "--push", "--key", s(&key1), "--cert", s(&cert1)]);
    assert!(out.starts_with("GOOD m1\n"), "one release: the report as text\n{out}");

    // The whole batch, two at a time, plus a release that does not exist.
    let missing = reg.image("releases/none:1");
    let (code, lines, err) = run(&[&refs[0], &refs[1], &missing, &refs[2]], "2");
    assert_eq!(code, 2, "a missing release is an error line and exit 2: {lines:?}\n{err}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let first = by_subject(&lines, &refs[0]);
    assert_eq!(first["skipped"], true, "{first}");
    for r in &refs[1..] {
        let l = by_subject(&lines, r);
        assert_eq!((l["skipped"].clone(), l["verdict"].clone()), (false.into(), "GOOD".into()), "{l}");
        assert!(l["attestation"].as_str().unwrap().starts_with("sha256:"), "{l}");
        assert!(l["release"].as_str().unwrap().starts_with("sha256:"), "{l}");
    }
    let none = by_subject(&lines, &missing);
    assert!(none["error"].as_str().unwrap().contains("releases/none"), "{none}");

    // m1's good attestation copied onto m2 (signature intact): about another EIF, BAD.
    let (_, v1, _) = attestations(&refs[0], &[&cert1]);
    let att1 = v1["attestations"][0]["digest"].as_str().unwrap().to_string();
    let m2 = by_subject(&lines, &refs[1])["release"].as_str().unwrap().to_string();
    push_forged(&reg, "releases/m1", &att1, ("releases/m2", &m2), |p| p);
    let (code, v, _) = attestations(&refs[1], &[&cert1]);
    assert_eq!(code, 1, "{v}");
    let bad: Vec<&serde_json::Value> =
        v["attestations"].as_array().unwrap().iter().filter(|a| a["status"] == "bad").collect();
    assert_eq!(bad.len(), 1, "{v}");
    assert!(bad[0]["problem"].as_str().unwrap().contains("another EIF"), "{v}");

    // Everything attested now: a re-run rebuilds nothing.
    let (code, lines, _) = run(&[&refs[0], &refs[1], &refs[2]], "2");
    assert_eq!(code, 0);
    assert!(lines.iter().all(|l| l["skipped"] == true), "{lines:?}");
    for r in &refs {
        let (_, v, _) = attestations(r, &[&cert1]);
        let good = v["attestations"].as_array().unwrap().iter().filter(|a| a["status"] == "good").count();
        assert_eq!(good, 1, "{r}: {v}");
    }
}

/// A registry with the referrers API (docker-registry behind a proxy that
/// answers the endpoint): the attestation is found through the API and no
/// referrers tag is written.
#[test]
fn signed_rebuild_attestation_through_the_referrers_api() {
    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proxy = eifbake_testkit::referrers::ReferrersProxy::start(&reg.addr);
    let proj = tempfile::tempdir().unwrap();
    let release = build_release(&reg, proj.path(), "api");
    let reference = proxy.image("releases/api:1");
    let digest = push_json(&release, &reference)["digest"].as_str().unwrap().to_string();
    let (key1, cert1) = (signing("signer1.key"), signing("signer1.pem"));
    let out =
        eifbake_ok(&["verify", &reference, "--attest", "--push", "--key", s(&key1), "--cert", s(&cert1)]);
    assert!(out.contains("attached the signed summary"), "{out}");
    assert!(proxy.api_hits() > 0);
    assert_eq!(proxy.recorded(), 1);
    assert!(
        !reg.log().contains(&format!("/manifests/{}", digest.replace(':', "-"))),
        "the referrers tag was written although the registry has the API:\n{}",
        reg.log()
    );
    let (code, v, err) = attestations(&reference, &[&cert1]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["mechanism"], "api", "{v}");
    assert_eq!(v["attestations"][0]["status"], "good", "{v}");
    assert_eq!(v["attestations"][0]["verdict"], "PASSED", "{v}");
    // Straight to the registry (no API, no tag): nothing is listed.
    let (_, v, _) = attestations(&reg.image("releases/api:1"), &[&cert1]);
    assert_eq!(v["mechanism"], "tag-schema");
    assert_eq!(v["attestations"], serde_json::json!([]), "{v}");
}

/// `tester:s3cret` (bcrypt, as in tests/registry.rs).
const HTPASSWD: &str = "tester:$2b$04$OATPRXNlogEudCL5LayDPue3piz66RIRRWbA1cpBrvImAsxxXg05.";

/// A registry that wants credentials: push and pull (manifests and blobs) use the auth file's.
#[test]
fn push_and_pull_with_credentials() {
    use base64::Engine as _;
    let reg = TestRegistry::start_with_htpasswd(HTPASSWD);
    let _fx = push_fixtures_with(&reg, Some("tester:s3cret"));
    let proj = tempfile::tempdir().unwrap();
    let auth = proj.path().join("auth.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode("tester:s3cret");
    fs::write(&auth, format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.addr)).unwrap();
    let env =
        [("REGISTRY_AUTH_FILE", auth.as_path()), ("HOME", proj.path()), ("XDG_RUNTIME_DIR", proj.path())];
    let recipe = write_recipe(proj.path(), "cred", "x86_64", &[("busybox", reg.image("fx/busybox:1"))]);
    let text = fs::read_to_string(&recipe).unwrap().replace("\"/bin/sh\" }", "\"/bin/busybox\" }");
    fs::write(&recipe, text).unwrap();
    let store = proj.path().join("store");
    let out = proj.path().join("out");
    for args in [
        vec!["--store", s(&store), "lock", s(&recipe)],
        vec!["--store", s(&store), "build", s(&recipe), "--out", s(&out)],
    ] {
        let (code, o, e) = eifbake_env(&args, &env);
        assert_eq!(code, 0, "{o}{e}");
    }
    let reference = reg.image("releases/cred:1");
    let release = out.join("cred");
    // Without credentials: refused.
    let nofile = proj.path().join("none.json");
    let (code, _, err) = eifbake_env(
        &["push", s(&release), &reference],
        &[("REGISTRY_AUTH_FILE", &nofile), ("HOME", proj.path()), ("XDG_RUNTIME_DIR", proj.path())],
    );
    assert_eq!(code, 2, "{err}");
    let (code, o, e) = eifbake_env(&["push", s(&release), &reference], &env);
    assert_eq!(code, 0, "{o}{e}");
    let pulled = proj.path().join("pulled");
    let (code, o, e) = eifbake_env(&["pull", &reference, "--out", s(&pulled)], &env);
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(fs::read(pulled.join("cred.eif")).unwrap(), fs::read(out.join("cred.eif")).unwrap());
}

/// `attestation verify DOC RELEASE` (and `--manifest REF`, `--pcrs REF`):
/// the PCRs come from the release, pulled and checked. The document is
/// QEMU-shaped (unsigned, accepted only with --insecure-unsigned) with the
/// release's PCRs written in, since no real enclave signs for a test build;
/// its chain and signature checks are tests/attestation.rs's.
#[test]
fn an_attestation_document_is_compared_with_a_release_on_the_registry() {
    use eifbake::attestation;
    use eifbake::eif::signature::cose_sign1;
    use eifbake::pcr::{Measurements, Pcr};

    let reg = TestRegistry::start();
    let _fx = push_fixtures(&reg);
    let proj = tempfile::tempdir().unwrap();
    let release = build_release(&reg, proj.path(), "att");
    let reference = reg.image("releases/att:1");
    push_json(&release, &reference);
    let pcrs =
        Measurements::parse_pcrs_file(&fs::read_to_string(release.with_extension("pcrs")).unwrap()).unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/attestation/nitro-2024-09-07.b64");
    let document = |pcr0: Pcr| {
        let mut doc = attestation::parse(&attestation::read_file(&real).unwrap()).unwrap().document;
        for (i, p) in [(0, pcr0), (1, pcrs.pcr1), (2, pcrs.pcr2)] {
            doc.pcrs.insert(i, p);
        }
        (doc.certificate, doc.cabundle) = (vec![0; 64], vec![vec![0; 64]]);
        let path = proj.path().join(format!("doc-{}.cbor", &pcr0.hex()[..8]));
        fs::write(&path, cose_sign1(&[0xa1, 0x01, 0x20], &doc.to_cbor(), &[0; 64])).unwrap();
        path
    };
    let (same, other) = (document(pcrs.pcr0), document(Pcr::of(b"another image")));
    for how in [vec![reference.as_str()], vec!["--manifest", &reference], vec!["--pcrs", &reference]] {
        let mut args = vec!["attestation", "verify", s(&same)];
        args.extend(&how);
        args.push("--insecure-unsigned");
        let (code, out, err) = eifbake(&args);
        assert_eq!(code, 0, "{how:?}: {out}{err}");
        assert!(out.starts_with("UNAUTHENTICATED") && !out.contains("FAILED"), "{how:?}: {out}");
        args[2] = s(&other);
        let (code, out, _) = eifbake(&args);
        assert_eq!(code, 1, "{how:?}: {out}");
        assert!(out.lines().any(|l| l.starts_with("PCR0") && l.contains("FAILED")), "{how:?}: {out}");
    }
    // RELEASE must be a reference: a file there is refused, naming the flags.
    let (code, _, err) = eifbake(&["attestation", "verify", s(&same), s(&release.with_extension("pcrs"))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a release on a registry") && err.contains("--pcrs"), "{err}");
    // A release that is not there: exit 2, named.
    let missing = reg.image("releases/none:1");
    let (code, _, err) = eifbake(&["attestation", "verify", s(&same), &missing, "--insecure-unsigned"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("releases/none"), "{err}");
}
