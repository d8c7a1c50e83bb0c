//! Rebuild attestations: the verification summary `verify` writes (an
//! in-toto Statement with an SLSA VSA predicate), signed by the rebuilder
//! in a [`dsse`](super::dsse) envelope and attached to the release as a
//! referrer; and the listing of who rebuilt a release with what result.
//!
//! The referrer: an OCI artifact manifest with `artifactType`
//! [`media::REBUILD_ATTESTATION`], the empty config, one layer (the
//! envelope, [`media::DSSE_ENVELOPE`]), `subject` = the release manifest,
//! and annotations repeating the verdict, the signer's key id, the tool
//! version and the time, for tools that read only the index. eifbake never
//! trusts those annotations: [`list`] reads every envelope.
//!
//! What [`list`] checks, for each attestation: the referrer manifest and
//! the envelope against their digests; a signature under one of the keys
//! the user names (matched by key id; none matches: [`Status::UnknownKey`],
//! shown but not believed); the statement is a VSA whose subject is this
//! release's EIF (an attestation copied from another release is
//! [`Status::Bad`]). Verdict, tool version and date are read from the
//! verified statement only.
//!
//! Not for: the rebuild itself ([`crate::verify`]), key management.

use anyhow::{bail, Context, Result};
use p384::ecdsa::VerifyingKey;
use serde::Serialize;
use serde_json::json;

use super::dsse::{key_id, Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::referrers::{self, Mechanism};
use super::{tokio, Published, EMPTY_CONFIG};
use crate::digest::Digest;
use crate::oci::model::{self, media, DescriptorExt};
use crate::oci::registry::Registry;
use crate::oci::Reference;
use crate::signing::Signer;

/// Annotation keys of an attestation referrer (unverified hints).
pub mod annotation {
    pub const VERDICT: &str = "io.eifbake.rebuild.verdict";
    pub const KEY_ID: &str = "io.eifbake.rebuild.keyid";
    pub const TOOL_VERSION: &str = "io.eifbake.tool.version";
    pub const CREATED: &str = "org.opencontainers.image.created";
}

/// Largest envelope read (a VSA is a few KiB).
const MAX_ENVELOPE: u64 = 1 << 20;

/// A public key the user trusts, and how to name its holder.
#[derive(Debug, Clone)]
pub struct NamedKey {
    /// The certificate subject, else the key file's name.
    pub label: String,
    pub key: VerifyingKey,
    pub id: String,
}

impl NamedKey {
    /// Load a `--key` file: a certificate (named by its subject) or a public key.
    pub fn load(path: &std::path::Path) -> Result<NamedKey> {
        let key = super::dsse::load_public_key(path)?;
        let label = crate::signing::Certificate::from_pem_file(path)
            .map(|c| c.subject())
            .unwrap_or_else(|_| path.display().to_string());
        Ok(NamedKey { label, id: key_id(&key), key })
    }
}

/// `reference`'s repository at `digest`.
pub fn pinned(reference: &Reference, digest: &Digest) -> Result<Reference> {
    format!("{}/{}@{digest}", reference.registry(), reference.repository())
        .parse()
        .with_context(|| format!("{reference}: cannot name {digest} in its repository"))
}

/// The attestation referrer manifest for the envelope blob `(digest, size)`.
fn referrer_manifest(release: &Published, envelope: (&Digest, u64), hints: &[(&str, String)]) -> Vec<u8> {
    let a: std::collections::BTreeMap<&str, &String> = hints.iter().map(|(k, v)| (*k, v)).collect();
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::REBUILD_ATTESTATION,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(EMPTY_CONFIG).to_string(),
                   "size": EMPTY_CONFIG.len(), "data": "e30="},
        "layers": [{"mediaType": media::DSSE_ENVELOPE, "digest": envelope.0.to_string(), "size": envelope.1}],
        "subject": {"mediaType": media::OCI_MANIFEST, "digest": release.digest.to_string(), "size": release.bytes.len()},
        "annotations": a,
    });
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// Sign `statement` with `signer` and attach it to `release` (at
/// `reference`'s repository). Returns the referrer's digest and how the
/// registry lists it.
pub fn attach(
    registry: &Registry,
    reference: &Reference,
    release: &Published,
    statement: &serde_json::Value,
    signer: &dyn Signer,
) -> Result<(Digest, Mechanism)> {
    let payload = serde_json::to_vec(statement)?;
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, signer)?;
    let env_bytes = serde_json::to_vec(&envelope)?;
    let p = &statement["predicate"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let hints = [
        (annotation::VERDICT, s(&p["verificationResult"])),
        (annotation::KEY_ID, envelope.signatures[0].keyid.clone()),
        (annotation::TOOL_VERSION, s(&p["verifier"]["version"]["eifbake"])),
        (annotation::CREATED, s(&p["timeVerified"])),
    ];
    let manifest = referrer_manifest(release, (&Digest::of(&env_bytes), env_bytes.len() as u64), &hints);
    let digest = Digest::of(&manifest);
    let mut entry = model::descriptor(media::OCI_MANIFEST, &digest, manifest.len() as u64);
    entry.set_artifact_type(Some(media::REBUILD_ATTESTATION.into()));
    for (k, v) in &hints {
        entry.annotate(k, v.clone());
    }
    let mechanism = tokio()?.block_on(async {
        registry.push_blob(reference, EMPTY_CONFIG).await?;
        registry.push_blob(reference, &env_bytes).await?;
        referrers::attach(registry, reference, &release.digest, &manifest, entry).await
    })?;
    Ok((digest, mechanism))
}

/// What a listed attestation's signature is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Signed by a named key, about this release.
    Good,
    /// Signed by a key the user did not name: not believed.
    UnknownKey,
    /// Damaged, tampered with, or about another release.
    Bad,
}

/// One attestation of a release, as [`list`] found it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub digest: Digest,
    pub status: Status,
    /// The named key's holder ([`NamedKey::label`]), else the claimed key id.
    pub who: String,
    pub key_id: String,
    /// `PASSED` or `FAILED` (verified statements only).
    pub verdict: Option<String>,
    pub tool_version: Option<String>,
    pub time_verified: Option<String>,
    /// Why the status is not good.
    pub problem: Option<String>,
}

/// Every rebuild attestation attached to `release`, each checked (module docs).
pub fn list(
    registry: &Registry,
    reference: &Reference,
    release: &Published,
    keys: &[NamedKey],
) -> Result<(Vec<Listed>, Mechanism)> {
    let rt = tokio()?;
    let (found, mechanism) = rt.block_on(referrers::list(registry, reference, &release.digest))?;
    let eif = release_eif(release)?;
    let mut out = Vec::new();
    for d in found {
        // Some listings drop `artifactType`: such an entry is fetched and its manifest decides.
        let artifact_type = d.artifact_type().as_ref().map(|t| t.to_string());
        if artifact_type.is_some() && artifact_type.as_deref() != Some(media::REBUILD_ATTESTATION) {
            continue;
        }
        let digest = d.sha256()?;
        let claimed = d.annotation(annotation::KEY_ID).unwrap_or_default().to_string();
        let listed = match rt.block_on(check_one(registry, reference, release, &eif, &digest, keys)) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => Listed {
                digest,
                status: Status::Bad,
                who: claimed.clone(),
                key_id: claimed,
                verdict: None,
                tool_version: None,
                time_verified: None,
                problem: Some(format!("{e:#}")),
            },
        };
        out.push(listed);
    }
    Ok((out, mechanism))
}

/// The EIF digest of a release (its EIF layer).
fn release_eif(release: &Published) -> Result<Digest> {
    let l = release.manifest.layers().iter().find(|l| l.media_type().to_string() == media::EIF);
    l.context("the release has no EIF layer")?.sha256()
}

/// Fetch and check one attestation referrer (see the module docs); `None`
/// when the referrer is something else (another artifact type).
async fn check_one(
    registry: &Registry,
    reference: &Reference,
    release: &Published,
    eif: &Digest,
    digest: &Digest,
    keys: &[NamedKey],
) -> Result<Option<Listed>> {
    let (bytes, _) = registry.fetch_manifest(&pinned(reference, digest)?).await?;
    let what = format!("attestation {digest}");
    let m = match model::Manifest::parse(&bytes, &what)? {
        model::Manifest::Image(m) => m,
        model::Manifest::Index(_) => return Ok(None),
    };
    if m.artifact_type().as_ref().map(|t| t.to_string()).as_deref() != Some(media::REBUILD_ATTESTATION) {
        return Ok(None);
    }
    if m.subject().as_ref().map(|s| s.digest().to_string()) != Some(release.digest.to_string()) {
        bail!("{what}: its subject is not this release {}", release.digest);
    }
    let [layer] = m.layers().as_slice() else {
        bail!("{what}: {} layers, expected one envelope", m.layers().len())
    };
    if layer.size() > MAX_ENVELOPE {
        bail!("{what}: the envelope declares {} bytes, more than {MAX_ENVELOPE}", layer.size());
    }
    let mut env_bytes = Vec::new();
    registry.fetch_blob_into(reference, layer, &mut env_bytes).await?;
    let envelope = Envelope::from_json(&env_bytes, &what)?;
    let claimed = envelope.key_ids().first().map(|s| s.to_string()).unwrap_or_default();
    let mut listed = Listed {
        digest: *digest,
        status: Status::UnknownKey,
        who: claimed.clone(),
        key_id: claimed.clone(),
        verdict: None,
        tool_version: None,
        time_verified: None,
        problem: Some("signed by a key not named with --key".into()),
    };
    let Some(key) = keys.iter().find(|k| envelope.key_ids().contains(&k.id.as_str())) else {
        return Ok(Some(listed));
    };
    listed.who = key.label.clone();
    let payload = envelope.verify(&key.key).with_context(|| format!("{what}: signature of {}", key.label))?;
    let st: serde_json::Value = serde_json::from_slice(&payload)
        .with_context(|| format!("{what}: the signed payload is not JSON"))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE
        || st["predicateType"] != crate::verify::VSA_PREDICATE_TYPE
    {
        bail!("{what}: the signed payload is not an in-toto verification summary");
    }
    if st["subject"][0]["digest"]["sha256"].as_str() != Some(eif.hex().as_str()) {
        bail!(
            "{what}: the signed summary is about another EIF ({}), not this release's {eif}",
            st["subject"][0]["digest"]["sha256"]
        );
    }
    let p = &st["predicate"];
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    listed.status = Status::Good;
    listed.problem = None;
    listed.verdict = s(&p["verificationResult"]);
    listed.tool_version = s(&p["verifier"]["version"]["eifbake"]);
    listed.time_verified = s(&p["timeVerified"]);
    Ok(Some(listed))
}

/// Whether `release` already carries a good attestation signed by `key`
/// (a rebuilder resuming a batch skips it).
pub fn attested_by(
    registry: &Registry,
    reference: &Reference,
    release: &Published,
    key: &NamedKey,
) -> Result<bool> {
    let (listed, _) = list(registry, reference, release, std::slice::from_ref(key))?;
    Ok(listed.iter().any(|l| l.status == Status::Good))
}
