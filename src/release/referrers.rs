//! Referrers (OCI 1.1): manifests whose `subject` is a release, attached
//! and listed through whichever mechanism the registry offers.
//!
//! - The referrers API (`GET /v2/<name>/referrers/<digest>`): the registry
//!   keeps the list itself; pushing the referrer is all there is to do.
//! - The referrers tag schema, for registries without the API (Debian's
//!   docker-registry 2.8 is one): the list is an image index under the tag
//!   `sha256-<hex of the subject digest>`, which the client that pushes a
//!   referrer updates (read, add the descriptor, write back).
//!
//! Which one: a registry whose referrers endpoint answers (200) has the
//! API; one that answers 404 does not. (The distribution specification
//! also lets a client watch for `OCI-Subject` on the manifest push; the
//! HTTP client used here does not expose response headers, so the endpoint
//! is asked instead, which the specification's readers do anyway.)
//!
//! Invariants: a descriptor appears in a tag-schema index at most once
//! (attaching twice changes nothing); the index keeps the entries other
//! clients put there. Not atomic: two clients updating the same tag at the
//! same moment can lose one entry (the specification's known limitation of
//! the tag schema); re-running the attach restores it.
//!
//! Not for: what the referrers say (see [`super::rebuilds`]).

use anyhow::{Context, Result};

use crate::digest::Digest;
use crate::oci::model::{self, media, Descriptor, ImageIndex};
use crate::oci::registry::Registry;
use crate::oci::Reference;

/// How a registry lists referrers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    Api,
    TagSchema,
}

/// The referrers tag of `subject`: `sha256-<hex>`.
pub fn tag_of(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The referrers of `subject` in `repo`'s repository, and how they were found.
pub async fn list(
    registry: &Registry,
    repo: &Reference,
    subject: &Digest,
) -> Result<(Vec<Descriptor>, Mechanism)> {
    if let Some(index) = registry.referrers_api(repo, subject).await? {
        return Ok((index.manifests().clone(), Mechanism::Api));
    }
    Ok((tag_index(registry, repo, subject).await?.manifests().clone(), Mechanism::TagSchema))
}

/// The index under the referrers tag of `subject` (empty when there is none).
async fn tag_index(registry: &Registry, repo: &Reference, subject: &Digest) -> Result<ImageIndex> {
    let tag = tag_of(subject);
    match registry.fetch_manifest_if_any(repo, &tag).await? {
        None => Ok(model::empty_index()),
        Some(bytes) => match model::Manifest::parse(&bytes, &format!("the referrers tag {tag} of {repo}"))? {
            model::Manifest::Index(i) => Ok(i),
            model::Manifest::Image(_) => anyhow::bail!(
                "the referrers tag {tag} of {repo} holds an image manifest, not an index; \
                 something else uses that tag"
            ),
        },
    }
}

/// Push the referrer `manifest` (whose `subject` is `subject`) by digest,
/// then list it under the referrers tag unless the registry has the API.
/// `entry` is its descriptor as an index lists it (media type, digest,
/// size, artifactType, annotations).
pub async fn attach(
    registry: &Registry,
    repo: &Reference,
    subject: &Digest,
    manifest: &[u8],
    entry: Descriptor,
) -> Result<Mechanism> {
    registry.push_manifest(repo, None, manifest, media::OCI_MANIFEST).await?;
    if registry.referrers_api(repo, subject).await?.is_some() {
        return Ok(Mechanism::Api);
    }
    let mut index = tag_index(registry, repo, subject).await?;
    let mut entries = index.manifests().clone();
    if !entries.iter().any(|d| d.digest() == entry.digest()) {
        entries.push(entry);
        index.set_manifests(entries);
        let bytes = model::layout_index_bytes(&index);
        registry
            .push_manifest(repo, Some(&tag_of(subject)), &bytes, media::OCI_INDEX)
            .await
            .with_context(|| format!("cannot update the referrers tag {} of {repo}", tag_of(subject)))?;
    }
    Ok(Mechanism::TagSchema)
}
