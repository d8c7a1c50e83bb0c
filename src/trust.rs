//! Image signatures with a threshold: "at least N of these keys signed this
//! manifest", which containers-policy.json cannot say (its requirements are
//! ANDed, and `signedBy` accepts any one key of a keyring).
//!
//! What it is for: the recipe's `[trust]` policy ([`crate::recipe::Trust`])
//! applied to each pinned image. Signatures are containers "simple signing"
//! ("atomic container signature") blobs, as `skopeo standalone-sign`,
//! `skopeo copy --sign-by` and podman write them: an OpenPGP signed message
//! whose payload is JSON naming the manifest digest
//! (`critical.image.docker-manifest-digest`) and the image's identity
//! (`critical.identity.docker-reference`). They are read from a lookaside
//! (the containers layout: `<lookaside>/<repository path>@sha256=<hex>/signature-<n>`,
//! `n` from 1 up to the first missing one), over http(s) or from a
//! directory.
//!
//! A signature counts when, and only when: it is a signed OpenPGP message
//! with one signature over a literal payload ([`check_signature`]); a key
//! of the keyring (its primary key, or a subkey bound to it for signing)
//! verifies it; that key was neither expired nor revoked when the
//! signature was made (a hard revocation, with no reason or "compromised",
//! voids every signature of the key); the signature itself has not
//! expired; the payload is an atomic container signature whose critical
//! part has exactly the known members, whose digest is the pinned manifest
//! digest and whose identity is the recipe's reference (the same repository
//! when the recipe pins by digest only, as policy.json's
//! `matchRepoDigestOrExact`). Signers are counted by primary-key
//! fingerprint, so one key signing twice (or with two subkeys) counts once.
//!
//! Where it runs: `eifbake lock` fetches the signatures of each pinned
//! manifest, keeps them in the store ([`crate::oci::layout::Layout::signatures`]),
//! checks them and records the keyring's sha256 and the signers in the lock;
//! `fetch`, `build` and `verify` check the kept ones again (offline too: only
//! when the store has too few valid ones are they fetched again, never with
//! `--offline`). Below the threshold is an error naming the image, the reason
//! each signature was rejected, and how many were valid.
//!
//! Not for: signing, other signature formats (sigstore, cosign), or
//! trusting anything about a signature before its OpenPGP check passed
//! (the payload is parsed only after).
//!
//! Invariants: a kept signature's file is named by the sha256 of its bytes
//! (a changed file is refused as tampered, never counted); signatures are
//! added to the store, never replaced or removed by eifbake; the verdict
//! depends on the signature's own creation time, not on the clock, so an
//! old lock still checks years later unless the keyring changes.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::packet::{RevocationCode, Signature, SignatureType};
use pgp::types::{KeyDetails, PublicKeyTrait, Tag};
use serde::Serialize;

use crate::digest::Digest;
use crate::lock::LockedImage;
use crate::oci::Reference;
use crate::oci::Store;
use crate::recipe::ImageTrust;

/// The most bytes one signature may have.
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;
/// The most signatures read for one image from a lookaside.
pub const MAX_SIGNATURES: usize = 64;
/// `critical.type` of a containers simple-signing payload.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// An OpenPGP keyring file.
#[derive(Debug)]
pub struct Keyring {
    pub path: PathBuf,
    pub sha256: Digest,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Read a keyring (armored or binary public keys); every key must parse.
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes = fs::read(path).with_context(|| format!("cannot read keyring {}", path.display()))?;
        let bad = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "keyring {}: not an OpenPGP public keyring ({e}); export it with `gpg --export --armor KEYS`",
                path.display()
            )
        };
        let (iter, _) = SignedPublicKey::from_reader_many(&bytes[..]).map_err(|e| bad(&e))?;
        let keys = iter.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
        if keys.is_empty() {
            return Err(bad(&"it holds no key"));
        }
        Ok(Keyring { path: path.to_path_buf(), sha256: Digest::of(&bytes), keys })
    }
}

/// The primary-key fingerprint of `key`, upper-case hex (as gpg prints it).
fn fingerprint(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

/// Why one signature does not count.
pub type Rejection = String;

/// One signature to judge: where it is, and its bytes (or why it cannot be used).
type Found = (PathBuf, Result<Vec<u8>, Rejection>);

/// Check one signature blob against the keyring, the manifest `digest` and
/// the image's `reference`; the primary-key fingerprint of its signer.
pub fn check_signature(
    bytes: &[u8],
    keyring: &Keyring,
    digest: &Digest,
    reference: &Reference,
) -> Result<String, Rejection> {
    let (payload, sig, signer) = verified_payload(bytes, keyring)?;
    let created = *sig.created().ok_or("the OpenPGP signature has no creation time")?;
    if let Some(e) = sig.signature_expiration_time().filter(|d| d.num_seconds() > 0) {
        if Utc::now() > created + *e {
            return Err(format!("the OpenPGP signature expired at {}", created + *e));
        }
    }
    key_valid_at(signer.0, signer.1, created)?;
    check_payload(&payload, digest, reference)?;
    Ok(fingerprint(signer.0))
}

/// The signing key: the keyring entry, and `Some(i)` when its subkey `i` signed.
type SigningKey<'k> = (&'k SignedPublicKey, Option<usize>);

/// The payload of a signed message that a key of the keyring verifies,
/// with its signature and signer. Nothing of the payload is looked at
/// before the signature verified.
fn verified_payload<'k>(
    bytes: &[u8],
    keyring: &'k Keyring,
) -> Result<(Vec<u8>, Signature, SigningKey<'k>), Rejection> {
    let not_signed = |e: &dyn std::fmt::Display| format!("not an OpenPGP signed message ({e})");
    let mut msg = Message::from_bytes(bytes).map_err(|e| not_signed(&e))?;
    if msg.is_compressed() {
        msg = msg.decompress().map_err(|e| not_signed(&e))?;
    }
    if !msg.is_signed() {
        return Err(not_signed(&"it carries no signature"));
    }
    let mut payload = Vec::new();
    (&mut msg).take(MAX_SIGNATURE_BYTES + 1).read_to_end(&mut payload).map_err(|e| not_signed(&e))?;
    if payload.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(format!("its payload is larger than {MAX_SIGNATURE_BYTES} bytes"));
    }
    let (sig, inner) = match &msg {
        Message::SignedOnePass { reader, .. } => (reader.signature().cloned(), reader.get_ref()),
        Message::Signed { reader, .. } => (Some(reader.signature().clone()), reader.get_ref()),
        _ => unreachable!("checked: signed"),
    };
    let sig = sig.ok_or_else(|| not_signed(&"no signature packet after the payload"))?;
    if !inner.is_literal() {
        return Err("it has more than one layer of signatures; expected exactly one".into());
    }
    for key in &keyring.keys {
        if msg.verify(&key.primary_key).is_ok() {
            return Ok((payload, sig, (key, None)));
        }
        for (i, sub) in key.public_subkeys.iter().enumerate() {
            if msg.verify(&sub.key).is_ok() {
                return Ok((payload, sig, (key, Some(i))));
            }
        }
    }
    let issuer: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| format!("{f:X}"))
        .chain(sig.issuer().iter().map(|k| hex::encode_upper(k.as_ref())))
        .collect();
    Err(format!(
        "no key of the keyring verifies it (signed by {}): a key outside the keyring, or a damaged signature",
        issuer.first().map_or("an unnamed key", String::as_str)
    ))
}

/// The key (primary, or subkey `sub`) was valid at `at`: a self-signature
/// binds it, it had not expired, it was not revoked.
fn key_valid_at(key: &SignedPublicKey, sub: Option<usize>, at: DateTime<Utc>) -> Result<(), Rejection> {
    let fpr = fingerprint(key);
    let primary = &key.primary_key;
    for rev in &key.details.revocation_signatures {
        if rev.verify_key(primary).is_ok() && revokes(rev, at) {
            return Err(format!("key {fpr} is revoked{}", reason(rev)));
        }
    }
    let selfsig = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter().map(move |s| (u, s)))
        .filter(|(_, s)| s.created().is_some_and(|c| *c <= at))
        .filter(|(u, s)| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
        .max_by_key(|(_, s)| *s.created().expect("filtered"))
        .map(|(_, s)| s)
        .ok_or_else(|| format!("key {fpr} has no valid self-signature made before the signature"))?;
    expired(&fpr, primary.created_at(), selfsig, at)?;
    let Some(i) = sub else { return Ok(()) };
    let sk = &key.public_subkeys[i];
    let sub_fpr = fingerprint(&sk.key);
    for s in &sk.signatures {
        if s.typ() == Some(SignatureType::SubkeyRevocation)
            && s.verify_subkey_binding(primary, &sk.key).is_ok()
            && revokes(s, at)
        {
            return Err(format!("subkey {sub_fpr} of key {fpr} is revoked{}", reason(s)));
        }
    }
    let binding = sk
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|s| s.created().is_some_and(|c| *c <= at))
        .filter(|s| s.key_flags().sign())
        .filter(|s| s.verify_subkey_binding(primary, &sk.key).is_ok())
        .filter(|s| {
            s.embedded_signature().is_some_and(|b| b.verify_primary_key_binding(&sk.key, primary).is_ok())
        })
        .max_by_key(|s| *s.created().expect("filtered"))
        .ok_or_else(|| format!("subkey {sub_fpr} of key {fpr} is not bound to it for signing"))?;
    expired(&format!("subkey {sub_fpr} of key {fpr}"), sk.key.created_at(), binding, at)
}

/// Whether the revocation `rev` voids a signature made at `at`: a hard one
/// (no reason, compromised, or an unknown code) always, a soft one
/// (superseded, retired) from its own time on.
fn revokes(rev: &Signature, at: DateTime<Utc>) -> bool {
    match rev.revocation_reason_code() {
        Some(RevocationCode::KeySuperseded | RevocationCode::KeyRetired) => {
            rev.created().is_none_or(|c| *c <= at)
        }
        _ => true,
    }
}

fn reason(rev: &Signature) -> String {
    match rev.revocation_reason_code() {
        Some(c) => format!(" (reason: {c:?})"),
        None => String::new(),
    }
}

/// A key created at `created` whose binding signature `sig` gives its
/// expiry: refused when it had expired by `at`.
fn expired(what: &str, created: &DateTime<Utc>, sig: &Signature, at: DateTime<Utc>) -> Result<(), Rejection> {
    match sig.key_expiration_time().filter(|d| d.num_seconds() > 0) {
        Some(d) if *created + *d <= at => {
            Err(format!("key {what} had expired ({}) when the signature was made ({at})", *created + *d))
        }
        _ => Ok(()),
    }
}

/// The simple-signing payload, parsed strictly in its critical part.
fn check_payload(payload: &[u8], digest: &Digest, reference: &Reference) -> Result<(), Rejection> {
    use serde_json::Value;
    let bad = |why: &str| format!("its payload is not an atomic container signature: {why}");
    let v: Value = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
    let top = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
    if top.keys().any(|k| k != "critical" && k != "optional") {
        return Err(bad("members other than `critical` and `optional`"));
    }
    let exactly =
        |v: &Value, what: &str, keys: &[&str]| -> Result<serde_json::Map<String, Value>, Rejection> {
            let o = v.as_object().ok_or_else(|| bad(&format!("{what} is not an object")))?;
            if o.len() != keys.len() || !keys.iter().all(|k| o.contains_key(*k)) {
                return Err(bad(&format!("{what} must have exactly the members {}", keys.join(", "))));
            }
            Ok(o.clone())
        };
    let critical =
        exactly(top.get("critical").unwrap_or(&Value::Null), "critical", &["type", "image", "identity"])?;
    if critical["type"] != SIGNATURE_TYPE {
        return Err(bad(&format!("critical.type is {}, not {SIGNATURE_TYPE:?}", critical["type"])));
    }
    let image = exactly(&critical["image"], "critical.image", &["docker-manifest-digest"])?;
    let identity = exactly(&critical["identity"], "critical.identity", &["docker-reference"])?;
    let signed_digest =
        image["docker-manifest-digest"].as_str().ok_or_else(|| bad("the digest is not a string"))?;
    if signed_digest != digest.to_string() {
        return Err(format!(
            "it signs manifest {signed_digest}, not the pinned manifest {digest} (a signature of another image)"
        ));
    }
    let signed_ref =
        identity["docker-reference"].as_str().ok_or_else(|| bad("the identity is not a string"))?;
    if !identity_matches(signed_ref, reference) {
        return Err(format!("it signs the identity {signed_ref:?}, not {reference}"));
    }
    Ok(())
}

/// The signed identity is the image's reference (both normalised); when the
/// recipe pins a digest without a tag, any tag of the same repository.
fn identity_matches(signed: &str, reference: &Reference) -> bool {
    let Ok(s) = signed.parse::<Reference>() else { return false };
    if s.registry() != reference.registry() || s.repository() != reference.repository() {
        return false;
    }
    match (reference.tag(), reference.digest()) {
        (None, Some(_)) => true,
        _ => s.tag() == reference.tag() && s.digest() == reference.digest(),
    }
}

/// The URL or file path of signature `n` of `digest` in `lookaside`.
pub fn lookaside_location(lookaside: &str, reference: &Reference, digest: &Digest, n: usize) -> String {
    format!(
        "{}/{}@sha256={}/signature-{n}",
        lookaside.trim_end_matches('/'),
        reference.repository(),
        digest.hex()
    )
}

/// Fetch the signatures of `digest` from the lookaside, from
/// `signature-1` up to the first missing one. `base` resolves a relative
/// directory.
fn fetch_lookaside(
    lookaside: &str,
    base: &Path,
    reference: &Reference,
    digest: &Digest,
    image: &str,
) -> Result<Vec<Vec<u8>>> {
    let remote = lookaside.starts_with("https://") || lookaside.starts_with("http://");
    let dir = lookaside.strip_prefix("file://").map(PathBuf::from).unwrap_or_else(|| base.join(lookaside));
    let opts = crate::download::Options { max_bytes: MAX_SIGNATURE_BYTES, ..Default::default() };
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut out = Vec::new();
    for n in 1..=MAX_SIGNATURES {
        let bytes = if remote {
            let url = lookaside_location(lookaside, reference, digest, n);
            let to = tmp.path().join("sig");
            match crate::download::download_as(&format!("image {image:?}: signature"), &url, &to, &opts) {
                Ok(_) => fs::read(&to)?,
                Err(e) if e.downcast_ref::<crate::download::NotFound>().is_some() => break,
                Err(e) => return Err(e),
            }
        } else {
            let p = PathBuf::from(lookaside_location(&dir.to_string_lossy(), reference, digest, n));
            match fs::metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Ok(m) if m.len() > MAX_SIGNATURE_BYTES => {
                    bail!(
                        "image {image:?}: signature {} is larger than {MAX_SIGNATURE_BYTES} bytes",
                        p.display()
                    )
                }
                _ => fs::read(&p)
                    .with_context(|| format!("image {image:?}: cannot read signature {}", p.display()))?,
            }
        };
        out.push(bytes);
    }
    Ok(out)
}

/// Keep signatures in the store, each named by its sha256 (never replacing one).
fn keep(store: &Store, digest: &Digest, sigs: &[Vec<u8>]) -> Result<()> {
    let dir = store.layout().signatures(digest);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for s in sigs {
        let p = dir.join(Digest::of(s).hex());
        if !p.exists() {
            crate::fsutil::write_atomic(&p, s)?;
        }
    }
    Ok(())
}

/// The signatures kept for `digest`: (file, bytes or why it is refused).
fn kept(store: &Store, digest: &Digest) -> Result<Vec<Found>> {
    let dir = store.layout().signatures(digest);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let found = Digest::of(&bytes);
        let b = if found.hex() == name {
            Ok(bytes)
        } else {
            Err(format!(
                "the kept file changed since it was stored (it hashes to {found}): tampered or damaged"
            ))
        };
        out.push((p, b));
    }
    Ok(out)
}

/// The verdict on one image: who signed it validly, and every rejection.
#[derive(Debug, Clone, Serialize)]
pub struct ImageVerdict {
    /// Distinct primary-key fingerprints with a valid signature, sorted.
    pub signers: Vec<String>,
    /// (where the signature is, why it does not count).
    pub rejected: Vec<(String, Rejection)>,
}

fn judge(
    sigs: &[(String, Result<Vec<u8>, Rejection>)],
    keyring: &Keyring,
    digest: &Digest,
    reference: &Reference,
) -> ImageVerdict {
    let mut signers = BTreeSet::new();
    let mut rejected = Vec::new();
    for (at, bytes) in sigs {
        match bytes
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|b| check_signature(b, keyring, digest, reference))
        {
            Ok(fpr) => {
                if !signers.insert(fpr.clone()) {
                    rejected.push((at.clone(), format!("key {fpr} signed already (a key counts once)")));
                }
            }
            Err(why) => rejected.push((at.clone(), why)),
        }
    }
    ImageVerdict { signers: signers.into_iter().collect(), rejected }
}

/// How signatures are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `eifbake lock`: always from the lookaside (and kept).
    Lookaside,
    /// `fetch`, `build`, `verify`: the kept ones; the lookaside only when
    /// they fall short and the network is allowed.
    Kept { offline: bool },
}

/// Check image `name` (pinned as `li`) against its policy `t`; `base` is
/// the recipe's directory. The valid signers, or an error naming the image,
/// each rejection and how many were valid.
pub fn check_image(
    store: &Store,
    name: &str,
    li: &LockedImage,
    t: &ImageTrust,
    base: &Path,
    source: Source,
) -> Result<ImageVerdict> {
    let keyring = Keyring::load(&base.join(&t.keyring))
        .with_context(|| format!("image {name:?}: the keyring of its [trust] policy"))?;
    let reference: Reference =
        li.reference.parse().with_context(|| format!("image {name:?}: reference {}", li.reference))?;
    let judge_kept = || -> Result<ImageVerdict> {
        let sigs: Vec<(String, Result<Vec<u8>, Rejection>)> =
            kept(store, &li.manifest)?.into_iter().map(|(p, b)| (p.display().to_string(), b)).collect();
        Ok(judge(&sigs, &keyring, &li.manifest, &reference))
    };
    let mut verdict = match source {
        Source::Kept { .. } => judge_kept()?,
        Source::Lookaside => ImageVerdict { signers: Vec::new(), rejected: Vec::new() },
    };
    let may_fetch = !matches!(source, Source::Kept { offline: true });
    if verdict.signers.len() < t.threshold as usize && may_fetch {
        let fetched = fetch_lookaside(&t.lookaside, base, &reference, &li.manifest, name)?;
        keep(store, &li.manifest, &fetched)?;
        verdict = judge_kept()?;
    }
    if verdict.signers.len() < t.threshold as usize {
        bail!("{}", refusal(name, li, t, &verdict, source, &reference));
    }
    Ok(verdict)
}

fn refusal(
    name: &str,
    li: &LockedImage,
    t: &ImageTrust,
    v: &ImageVerdict,
    source: Source,
    reference: &Reference,
) -> String {
    let mut s = format!(
        "image {name:?} ({}): {} valid signature(s) of manifest {} from distinct keys of the keyring {}, \
         below its threshold of {}",
        li.reference,
        v.signers.len(),
        li.manifest,
        t.keyring.display(),
        t.threshold
    );
    if !v.signers.is_empty() {
        s.push_str(&format!(" (valid: {})", v.signers.join(", ")));
    }
    if v.rejected.is_empty() && v.signers.is_empty() {
        let at = lookaside_location(&t.lookaside, reference, &li.manifest, 1);
        s.push_str(&format!("; no signature found (looked for {at})"));
    }
    for (at, why) in &v.rejected {
        s.push_str(&format!("\n  rejected {at}: {why}"));
    }
    if source == (Source::Kept { offline: true }) {
        s.push_str("\nthe store's kept signatures were checked (--offline); run `eifbake fetch` online to fetch them again");
    }
    s
}

/// `lock`/`build` drift check: the keyring file is the one the lock was made with.
pub fn check_locked_keyring(
    name: &str,
    t: &ImageTrust,
    li: &LockedImage,
    base: &Path,
    lock: &Path,
) -> Result<()> {
    let path = base.join(&t.keyring);
    let bytes =
        fs::read(&path).with_context(|| format!("image {name:?}: cannot read keyring {}", path.display()))?;
    let found = Digest::of(&bytes);
    match li.keyring {
        Some(k) if k == found => Ok(()),
        Some(k) => bail!(
            "image {name:?}: keyring {} changed since {} was written (lock: keyring = {k}, now {found}); \
             run `eifbake lock` to check the signatures with it",
            path.display(),
            lock.display()
        ),
        None => bail!(
            "image {name:?} has a [trust] policy but {} records no keyring for it: it was locked without \
             checking signatures; run `eifbake lock`",
            lock.display()
        ),
    }
}

/// [`check_image`] for every image of `recipe` that has a policy, in name
/// order; the verdicts by image name.
pub fn check_images(
    store: &Store,
    recipe: &crate::recipe::Recipe,
    lock: &crate::lock::Lock,
    recipe_path: &Path,
    source: Source,
) -> Result<std::collections::BTreeMap<String, ImageVerdict>> {
    let base = crate::recipe::Recipe::base_dir(recipe_path);
    let mut out = std::collections::BTreeMap::new();
    for name in recipe.images.keys() {
        let (Some(t), Some(li)) = (recipe.image_trust(name), lock.images.get(name)) else { continue };
        out.insert(name.clone(), check_image(store, name, li, &t, &base, source)?);
    }
    Ok(out)
}

/// The keyring files of `recipe`'s policies (relative to the recipe), each once, sorted.
pub fn keyrings(recipe: &crate::recipe::Recipe) -> Vec<PathBuf> {
    let set: BTreeSet<PathBuf> =
        recipe.images.keys().filter_map(|n| recipe.image_trust(n)).map(|t| t.keyring).collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(critical: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"critical": critical, "optional": {"creator": "x"}})).unwrap()
    }

    fn critical(digest: &Digest, reference: &str) -> serde_json::Value {
        serde_json::json!({
            "type": SIGNATURE_TYPE,
            "image": {"docker-manifest-digest": digest.to_string()},
            "identity": {"docker-reference": reference},
        })
    }

    /// The payload is read strictly in its critical part, as the format
    /// requires: unknown members, a wrong type, digest or identity are refused.
    #[test]
    fn payloads_are_checked_strictly() {
        let d = Digest::of(b"m");
        let r: Reference = "registry.example/ns/app:1".parse().unwrap();
        check_payload(&payload(critical(&d, "registry.example/ns/app:1")), &d, &r).unwrap();
        let cases = [
            (critical(&Digest::of(b"other"), "registry.example/ns/app:1"), "not the pinned manifest"),
            (critical(&d, "registry.example/ns/app:2"), "not registry.example/ns/app:1"),
            (critical(&d, "registry.example/other/app:1"), "it signs the identity"),
            (critical(&d, "not a reference at all"), "it signs the identity"),
        ];
        for (c, want) in cases {
            let e = check_payload(&payload(c.clone()), &d, &r).unwrap_err();
            assert!(e.contains(want), "{c}: {e}");
        }
        let mut extra = critical(&d, "registry.example/ns/app:1");
        extra["image"]["docker-manifest-digest-v2"] = "x".into();
        let e = check_payload(&payload(extra), &d, &r).unwrap_err();
        assert!(e.contains("critical.image must have exactly"), "{e}");
        let mut typ = critical(&d, "registry.example/ns/app:1");
        typ["type"] = "cosign container image signature".into();
        assert!(check_payload(&payload(typ), &d, &r).unwrap_err().contains("critical.type"));
        let e = check_payload(b"{\"critical\": {}, \"optional\": {}, \"more\": 1}", &d, &r).unwrap_err();
        assert!(e.contains("members other than"), "{e}");
    }

    #[test]
    fn a_digest_pin_accepts_any_tag_of_its_repository() {
        let d = Digest::of(b"m");
        let pinned: Reference = format!("registry.example/ns/app@{d}").parse().unwrap();
        assert!(identity_matches("registry.example/ns/app:1", &pinned));
        assert!(!identity_matches("registry.example/ns/other:1", &pinned));
        let tagged: Reference = "stagex/core-busybox:sx2026.03.0".parse().unwrap();
        assert!(identity_matches("docker.io/stagex/core-busybox:sx2026.03.0", &tagged));
        assert!(!identity_matches("docker.io/stagex/core-busybox:latest", &tagged));
    }

    #[test]
    fn lookaside_paths_follow_the_containers_layout() {
        let d = Digest::of(b"m");
        let r: Reference = "stagex/core-busybox:sx2026.03.0".parse().unwrap();
        assert_eq!(
            lookaside_location("https://stagex.tools/signatures/", &r, &d, 1),
            format!("https://stagex.tools/signatures/stagex/core-busybox@sha256={}/signature-1", d.hex())
        );
    }
}
