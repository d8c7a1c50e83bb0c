//! The OCI data model eifbake uses: oci-spec's image types, and the few
//! things eifbake needs around them.
//!
//! What it is for: one set of types for image manifests, indexes,
//! descriptors, platforms and configurations ([`Descriptor`],
//! [`ImageManifest`], [`ImageIndex`], [`Platform`], [`ImageConfiguration`],
//! [`MediaType`]), used by the store, the registry client and `fetch`
//! alike; every media-type string eifbake knows ([`media`]); parsing a
//! manifest blob into [`Manifest`] with eifbake's checks; and the one
//! deterministic serialisation of an `index.json` ([`layout_index_bytes`]).
//! oci-client's own descriptor type is made from these at the single place
//! where the registry client needs it (`registry::oci_desc`).
//!
//! Not for: reading or writing blobs (the store), the HTTP protocol
//! (the registry client), the recipe's architecture names (the recipe and
//! lock types; [`linux_arch_matches`] is the one place a [`Platform`] is
//! compared with one).
//!
//! Invariants:
//!
//! - **Hashed bytes are never re-serialised.** Manifests, indexes and
//!   configs are content-addressed: eifbake keeps the bytes it downloaded
//!   (or was given) and parses them with oci-spec only to read them.
//!   oci-spec would not write them back identically (its annotations are a
//!   `HashMap`, so their order would change), and it never has to.
//! - **`index.json` is written in one deterministic form.** It is the only
//!   OCI document eifbake serialises; [`layout_index_bytes`] writes it with
//!   fields in the OCI order and every annotation map sorted by key, so the
//!   same index always gives the same bytes (`store export` depends on it).
//! - **Every digest a parsed manifest names is a sha256** (the store holds
//!   only sha256 blobs): [`Manifest::parse`] refuses any other, naming the
//!   blob, so [`DescriptorExt::sha256`] fails only on descriptors built
//!   elsewhere.
//! - Unknown fields are ignored, as the image specification requires of
//!   readers; what a blob *is* (its `mediaType`, `schemaVersion` and shape)
//!   is checked, and a mismatch is refused naming the blob.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os, Platform,
};

use crate::digest::Digest;

/// Every media type eifbake names, as the strings registries and layouts use.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_NONDIST_TAR_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_NONDIST_TAR_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const OCTET_STREAM: &str = "application/octet-stream";

    /// OCI 1.1's empty descriptor (`{}`), the config of artifacts.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// The `artifactType` of an eifbake release (see `crate::release`).
    pub const RELEASE: &str = "application/vnd.eifbake.release.v1";
    /// A release's layers: the EIF, the eifbake manifest, the provenance (an
    /// in-toto Statement, as in-toto names it) and the `.pcrs` text.
    pub const EIF: &str = "application/vnd.eifbake.eif.v1";
    pub const EIFBAKE_MANIFEST: &str = "application/vnd.eifbake.manifest.v1+json";
    pub const IN_TOTO: &str = "application/vnd.in-toto+json";
    pub const PCRS: &str = "application/vnd.eifbake.pcrs.v1+text";
    /// The `artifactType` of a signed rebuild attestation, and its one layer.
    pub const REBUILD_ATTESTATION: &str = "application/vnd.eifbake.rebuild-attestation.v1";
    pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

    /// What a registry is asked for when eifbake pulls a manifest.
    pub const MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
}

/// What eifbake reads from a [`Descriptor`] beyond oci-spec's getters.
pub trait DescriptorExt {
    /// The blob's digest as the store names it; an error for any algorithm but sha256.
    fn sha256(&self) -> Result<Digest>;
    /// The annotation `key`, if present.
    fn annotation(&self, key: &str) -> Option<&str>;
    /// Set the annotation `key` to `value`.
    fn annotate(&mut self, key: &str, value: String);
    /// Remove the annotation `key`.
    fn unannotate(&mut self, key: &str);
}

impl DescriptorExt for Descriptor {
    fn sha256(&self) -> Result<Digest> {
        let d = self.digest();
        match d.algorithm() {
            oci_spec::image::DigestAlgorithm::Sha256 => Digest::from_hex(d.digest())
                .with_context(|| format!("descriptor digest {d}: not a sha256 digest")),
            _ => bail!("descriptor digest {d}: eifbake stores sha256 blobs only"),
        }
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations().as_ref()?.get(key).map(String::as_str)
    }

    fn annotate(&mut self, key: &str, value: String) {
        let mut a = self.annotations().clone().unwrap_or_default();
        a.insert(key.to_string(), value);
        self.set_annotations(Some(a));
    }

    fn unannotate(&mut self, key: &str) {
        let mut a: HashMap<String, String> = self.annotations().clone().unwrap_or_default();
        a.remove(key);
        self.set_annotations(if a.is_empty() { None } else { Some(a) });
    }
}

/// oci-spec's digest for one of the store's.
pub fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string().parse().expect("a sha256 digest is a valid OCI digest")
}

/// A descriptor of the blob `digest` (`size` bytes) of type `media_type`.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, oci_digest(digest))
}

/// The platform `os/arch` (`arch` as OCI names it: `amd64`, `arm64`).
pub fn platform(os: &str, arch: &str) -> Platform {
    let mut p = Platform::default();
    p.set_os(Os::from(os));
    p.set_architecture(Arch::from(arch));
    p
}

/// Whether `p` is `linux/<arch>` (for arm64, variant absent or `v8`): the
/// one place an OCI platform meets eifbake's [`Arch`](crate::platform::Arch).
pub fn linux_arch_matches(p: &Platform, arch: crate::platform::Arch) -> bool {
    *p.os() == Os::Linux
        && p.architecture().to_string() == arch.oci()
        && (arch != crate::platform::Arch::Aarch64 || matches!(p.variant().as_deref(), None | Some("v8")))
}

/// A manifest blob: an image manifest or an index (OCI or docker schema 2).
// Parsed one at a time and dropped soon after: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// Parse manifest bytes; `what` names the blob in errors. The
    /// `mediaType`, when present, decides what the blob must be; without
    /// one, a `manifests` list makes it an index.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Manifest> {
        let v: Value = serde_json::from_slice(bytes)
            .with_context(|| format!("{what}: not an OCI/docker manifest or index (not JSON)"))?;
        let schema = v.get("schemaVersion");
        if schema.and_then(Value::as_u64) != Some(2) {
            bail!("{what}: schemaVersion {} (expected 2)", schema.unwrap_or(&Value::Null));
        }
        let is_index = match v.get("mediaType") {
            None => v.get("manifests").is_some(),
            Some(Value::String(t)) if t == media::OCI_INDEX || t == media::DOCKER_LIST => true,
            Some(Value::String(t)) if t == media::OCI_MANIFEST || t == media::DOCKER_MANIFEST => false,
            Some(t) => bail!(
                "{what}: mediaType {t} is neither an image manifest ({}, {}) nor an index ({}, {})",
                media::OCI_MANIFEST,
                media::DOCKER_MANIFEST,
                media::OCI_INDEX,
                media::DOCKER_LIST
            ),
        };
        let m = if is_index {
            Manifest::Index(
                serde_json::from_value(v).with_context(|| format!("{what}: not a valid image index"))?,
            )
        } else {
            Manifest::Image(
                serde_json::from_value(v).with_context(|| format!("{what}: not a valid image manifest"))?,
            )
        };
        for d in m.children() {
            d.sha256().with_context(|| format!("{what}: a {} it references", d.media_type()))?;
        }
        Ok(m)
    }

    pub fn is_index(&self) -> bool {
        matches!(self, Manifest::Index(_))
    }

    /// The top-level `mediaType`, if the blob has one.
    pub fn media_type(&self) -> Option<&MediaType> {
        match self {
            Manifest::Image(m) => m.media_type().as_ref(),
            Manifest::Index(i) => i.media_type().as_ref(),
        }
    }

    /// Every blob this manifest references directly: an index's manifests,
    /// or an image manifest's config and then its layers.
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Index(i) => i.manifests().iter().collect(),
            Manifest::Image(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
        }
    }
}

/// The `linux/<arch>` manifest of an index's list (see
/// [`linux_arch_matches`]); the error lists the platforms there are.
pub fn platform_manifest(list: &[Descriptor], arch: crate::platform::Arch) -> Result<&Descriptor> {
    let hit = list.iter().find(|d| d.platform().as_ref().is_some_and(|p| linux_arch_matches(p, arch)));
    hit.with_context(|| {
        let have: Vec<String> = list
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| format!("{}/{}", p.os(), p.architecture()))
            .collect();
        format!("has no {} manifest (it has: {})", crate::platform::Platform::linux(arch), have.join(", "))
    })
}

/// The `os/architecture` an image configuration names.
pub fn config_platform(config: &[u8]) -> Result<String> {
    let c = ImageConfiguration::from_reader(config).context("not an image configuration")?;
    Ok(format!("{}/{}", c.os(), c.architecture()))
}

/// An empty OCI image index, as a new layout's `index.json`.
pub fn empty_index() -> ImageIndex {
    let mut i = ImageIndex::default();
    i.set_schema_version(2);
    i.set_media_type(Some(MediaType::ImageIndex));
    i.set_manifests(Vec::new());
    i
}

/// The bytes of `index` as `index.json`: pretty JSON, a final newline,
/// every annotation map sorted by key (oci-spec keeps them in a `HashMap`).
pub fn layout_index_bytes(index: &ImageIndex) -> Vec<u8> {
    let mut v = serde_json::to_value(index).expect("an image index serialises");
    sort_annotations(&mut v);
    let mut b = serde_json::to_vec_pretty(&v).expect("a JSON value serialises");
    b.push(b'\n');
    b
}

fn sort_annotations(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "annotations" {
                    if let Value::Object(a) = x {
                        a.sort_keys();
                    }
                }
                sort_annotations(x);
            }
        }
        Value::Array(xs) => xs.iter_mut().for_each(sort_annotations),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: serde_json::Value) -> Vec<u8> {
        let d = Digest::of(b"x").to_string();
        let mut m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": d, "size": 1},
            "layers": [{"mediaType": media::OCI_TAR, "digest": d, "size": 1}],
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn manifests_and_indexes_are_told_apart_by_media_type_then_shape() {
        let m = Manifest::parse(&manifest(serde_json::json!({})), "blob M").unwrap();
        assert!(!m.is_index());
        assert_eq!(m.children().len(), 2);
        let docker = manifest(serde_json::json!({"mediaType": media::DOCKER_MANIFEST}));
        assert!(!Manifest::parse(&docker, "blob M").unwrap().is_index());
        let list = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert!(Manifest::parse(&serde_json::to_vec(&list).unwrap(), "blob I").unwrap().is_index());
    }

    #[test]
    fn unknown_fields_are_ignored_as_the_image_spec_requires() {
        let plain = Manifest::parse(&manifest(serde_json::json!({})), "blob M").unwrap();
        let extra = manifest(serde_json::json!({"io.example.unknown": {"a": 1}}));
        assert_eq!(Manifest::parse(&extra, "blob M").unwrap(), plain);
    }

    #[test]
    fn wrong_media_type_schema_or_digest_is_refused_naming_the_blob() {
        let cases = [
            (serde_json::json!({"mediaType": media::OCI_CONFIG}), "is neither an image manifest"),
            (serde_json::json!({"mediaType": media::OCI_INDEX}), "not a valid image index"),
            (serde_json::json!({"mediaType": 7}), "is neither an image manifest"),
            (serde_json::json!({"schemaVersion": 1}), "schemaVersion 1"),
            (
                serde_json::json!({"config": {"mediaType": media::OCI_CONFIG, "digest": format!("sha512:{}", "a".repeat(128)), "size": 1}}),
                "sha256 blobs only",
            ),
            (serde_json::json!({"layers": null}), "not a valid image manifest"),
        ];
        for (extra, want) in cases {
            let e =
                format!("{:#}", Manifest::parse(&manifest(extra.clone()), "blob sha256:abc").unwrap_err());
            assert!(e.starts_with("blob sha256:abc: ") && e.contains(want), "{extra}: {e}");
        }
        let e = format!("{:#}", Manifest::parse(b"not json", "blob sha256:abc").unwrap_err());
        assert!(e.starts_with("blob sha256:abc: "), "{e}");
    }

    #[test]
    fn platforms_match_linux_and_the_arm64_variant() {
        use crate::platform::Arch::{Aarch64, X86_64};
        let mut p = platform("linux", "arm64");
        assert!(linux_arch_matches(&p, Aarch64) && !linux_arch_matches(&p, X86_64));
        p.set_variant(Some("v8".into()));
        assert!(linux_arch_matches(&p, Aarch64));
        p.set_variant(Some("v7".into()));
        assert!(!linux_arch_matches(&p, Aarch64));
        assert!(!linux_arch_matches(&platform("windows", "amd64"), X86_64));
        assert_eq!(platform("linux", "amd64").architecture().to_string(), "amd64");
    }

    /// The exact bytes the store's own index type wrote before it used
    /// oci-spec's: fields in OCI order, annotations sorted, a final newline.
    #[test]
    fn index_json_bytes_are_deterministic_and_unchanged() {
        let d = Digest::of(b"m");
        let mut desc = descriptor(media::OCI_MANIFEST, &d, 5);
        for k in ["z", "org.opencontainers.image.ref.name", "a", "io.eifbake.reference"] {
            desc.annotate(k, format!("v-{k}"));
        }
        let mut p = platform("linux", "arm64");
        p.set_variant(Some("v8".into()));
        desc.set_platform(Some(p));
        let mut index = empty_index();
        index.set_manifests(vec![desc]);
        let want = format!(
            r#"{{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {{
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "{d}",
      "size": 5,
      "annotations": {{
        "a": "v-a",
        "io.eifbake.reference": "v-io.eifbake.reference",
        "org.opencontainers.image.ref.name": "v-org.opencontainers.image.ref.name",
        "z": "v-z"
      }},
      "platform": {{
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8"
      }}
    }}
  ]
}}
"#
        );
        for _ in 0..8 {
            assert_eq!(String::from_utf8(layout_index_bytes(&index)).unwrap(), want);
        }
        let empty = "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n  \"manifests\": []\n}\n";
        assert_eq!(String::from_utf8(layout_index_bytes(&empty_index())).unwrap(), empty);
    }
}
