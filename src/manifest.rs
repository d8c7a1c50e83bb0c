//! The build's record of itself: `NAME.manifest.json` and
//! `NAME.provenance.json`.
//!
//! What this module is for: the serde types of the output manifest and of
//! its in-toto Statement v1 with an SLSA Provenance v1 predicate, and their
//! deterministic JSON. The manifest has two parts:
//!
//! - [`Inputs`]: everything that goes into the build (tool, recipe and lock
//!   digests, SOURCE_DATE_EPOCH, pinned images and sources, the app sources,
//!   the enclave settings). It is known before the EIF exists, so the build
//!   embeds it in the EIF's metadata and in the user ramdisk (PCR2 then
//!   commits to it).
//! - [`Outputs`]: the EIF's sha256 and size and its PCRs, known only after.
//!
//! [`Manifest`] is both; [`Manifest::provenance`] restates it as an in-toto
//! [`Statement`].
//!
//! Determinism: JSON key order is the struct field order (maps are
//! `BTreeMap`s, so sorted), lists of images and sources are sorted by name
//! and `app_sources` sorted and deduplicated by [`Inputs::normalize`] (which
//! the JSON writers call), output is pretty-printed with two-space
//! indentation and a final newline, and the only time in it is
//! SOURCE_DATE_EPOCH. Unknown keys are errors when reading, so a manifest
//! from a newer eifbake is refused rather than half-understood.
//!
//! What it is not for: computing any of these values (the lock, sources,
//! EIF and PCR modules do), or writing files (callers use
//! [`crate::fsutil::write_atomic`] with [`Manifest::to_json`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::epoch::Epoch;
use crate::recipe::{Compression, Layout};

/// The manifest format version written by this eifbake.
pub const FORMAT: u32 = 1;
/// The tool's name, as written in manifests and EIF metadata.
pub const TOOL_NAME: &str = "eifbake";
/// The tool's version, as written in manifests and EIF metadata.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA Provenance v1 predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The SLSA `buildType` of an eifbake recipe build: its external parameters
/// are the recipe, lock and epoch, its resolved dependencies the pinned
/// images and sources. A URN, since the project publishes no URL for it yet.
pub const BUILD_TYPE: &str = "urn:eifbake:build-type:recipe:v1";
/// The SLSA `builder.id` of a local eifbake run.
pub const BUILDER_ID: &str = "urn:eifbake:builder:local";
/// The digest-set key of eifbake's tree hash (see `crate::sources`).
pub const TREE_DIGEST_KEY: &str = "eifbakeTreeV1";

/// The name and version of the tool that built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    /// This eifbake.
    pub fn current() -> Tool {
        Tool { name: TOOL_NAME.to_string(), version: TOOL_VERSION.to_string() }
    }
}

/// A file identified by its path and its sha256.
///
/// The inputs are embedded in the EIF, so the path must not depend on where
/// the checkout lives: callers give it relative to the project (e.g.
/// `recipes/hello.toml`), never absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub path: String,
    pub sha256: Digest,
    /// The file's text, so a rebuilder can recreate it from the manifest
    /// alone (`eifbake verify`). Absent in manifests that only name the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One pinned image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// The key in the recipe's `[images]`.
    pub name: String,
    /// The reference as the recipe gives it (`stagex/core-busybox:sx2026.03.0`).
    pub reference: String,
    /// The digest of the image index the reference resolved to, when it is one.
    pub index_digest: Option<Digest>,
    /// The digest of the platform manifest used.
    pub manifest_digest: Digest,
}

/// One pinned source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// The key in the recipe's `[sources]`.
    pub name: String,
    /// `git`, `path` or `url`.
    pub kind: String,
    /// The git or download URL (null for path sources).
    pub url: Option<String>,
    /// The git commit (git sources).
    pub commit: Option<String>,
    /// The tree hash of the source's directory.
    pub tree: Digest,
    /// The downloaded file's sha256 (url sources).
    pub sha256: Option<Digest>,
}

impl SourceInput {
    /// The manifest entry of a source pinned as `pin`.
    pub fn from_pin(name: &str, pin: &crate::sources::Pin) -> SourceInput {
        SourceInput {
            name: name.to_string(),
            kind: pin.kind.clone(),
            url: pin.url.clone(),
            commit: pin.commit.clone(),
            tree: pin.tree,
            sha256: pin.sha256,
        }
    }
}

/// A file taken from an image (kernel, init, nsm.ko).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFileInput {
    pub image: String,
    pub path: String,
    pub config: Option<String>,
}

/// The enclave settings the EIF was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveSettings {
    pub layout: Layout,
    pub rootfs: Option<String>,
    pub kernel: ImageFileInput,
    pub init: ImageFileInput,
    pub nsm: Option<ImageFileInput>,
    pub cmdline: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cpus: u64,
    pub memory_mib: u64,
    pub ports: Vec<u32>,
    pub compression: Compression,
}

/// Everything that goes into a build; embedded in the EIF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// [`FORMAT`].
    pub format: u32,
    pub tool: Tool,
    /// The recipe's `name`.
    pub name: String,
    /// The recipe's `version`.
    pub version: String,
    pub arch: String,
    pub recipe: FileRef,
    pub lock: FileRef,
    pub source_date_epoch: Epoch,
    pub images: Vec<ImageInput>,
    pub sources: Vec<SourceInput>,
    /// Git URLs of the application's own sources (Procfile `app_sources`).
    pub app_sources: Vec<String>,
    pub enclave: EnclaveSettings,
}

impl Inputs {
    /// Sort images and sources by name and `app_sources` bytewise, deduplicated.
    pub fn normalize(&mut self) {
        self.images.sort_by(|a, b| a.name.cmp(&b.name));
        self.sources.sort_by(|a, b| a.name.cmp(&b.name));
        self.app_sources.sort();
        self.app_sources.dedup();
    }

    /// The canonical JSON bytes (normalised, pretty, final newline).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut n = self.clone();
        n.normalize();
        to_json(&n)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Inputs> {
        serde_json::from_slice(bytes).context("invalid eifbake inputs manifest")
    }
}

/// A PCR value: 48 bytes (SHA-384) as 96 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PcrHex(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("PCR value {0:?}: expected 96 lowercase hex characters (a SHA-384)")]
pub struct PcrHexError(String);

impl PcrHex {
    pub fn from_bytes(b: &[u8; 48]) -> PcrHex {
        PcrHex(hex::encode(b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PcrHex {
    type Err = PcrHexError;
    fn from_str(s: &str) -> Result<PcrHex, PcrHexError> {
        if s.len() == 96 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(PcrHex(s.to_string()))
        } else {
            Err(PcrHexError(s.to_string()))
        }
    }
}

impl fmt::Display for PcrHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PcrHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for PcrHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PcrHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The measurements of the EIF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pcrs {
    #[serde(rename = "PCR0")]
    pub pcr0: PcrHex,
    #[serde(rename = "PCR1")]
    pub pcr1: PcrHex,
    #[serde(rename = "PCR2")]
    pub pcr2: PcrHex,
    /// Signed images only.
    #[serde(rename = "PCR8", default, skip_serializing_if = "Option::is_none")]
    pub pcr8: Option<PcrHex>,
}

impl From<&crate::pcr::Measurements> for Pcrs {
    fn from(m: &crate::pcr::Measurements) -> Pcrs {
        Pcrs {
            pcr0: PcrHex::from_bytes(&m.pcr0.0),
            pcr1: PcrHex::from_bytes(&m.pcr1.0),
            pcr2: PcrHex::from_bytes(&m.pcr2.0),
            pcr8: m.pcr8.as_ref().map(|p| PcrHex::from_bytes(&p.0)),
        }
    }
}

/// The EIF file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EifOutput {
    /// The file name (`NAME.eif`), without the output directory.
    pub file: String,
    pub sha256: Digest,
    pub size: u64,
}

/// What the build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub eif: EifOutput,
    pub pcrs: Pcrs,
    /// Signed images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureOutput>,
}

/// Who signed the EIF, and the signature section itself: with it a
/// rebuilder who has no key can put the same signature on a rebuild and
/// compare whole files (`verify`). Not embedded in the image (the inputs
/// are), so signing never changes PCR0/1/2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureOutput {
    /// The signing certificate: subject, issuer, serial, dates, fingerprint, PCR8.
    pub certificate: crate::signing::CertificateInfo,
    /// The EIF's signature section (AWS's CBOR), base64.
    pub section: String,
}

impl SignatureOutput {
    pub fn new(certificate: crate::signing::CertificateInfo, section: &[u8]) -> SignatureOutput {
        use base64::Engine as _;
        SignatureOutput { certificate, section: base64::engine::general_purpose::STANDARD.encode(section) }
    }

    /// The signature section's bytes.
    pub fn section_bytes(&self) -> Result<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.section)
            .map_err(|e| anyhow::anyhow!("manifest field outputs.signature.section is not base64: {e}"))
    }
}

/// `NAME.manifest.json`: the inputs and the outputs of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub inputs: Inputs,
    pub outputs: Outputs,
}

impl Manifest {
    /// The canonical JSON bytes of `NAME.manifest.json`.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut n = self.clone();
        n.inputs.normalize();
        to_json(&n)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        serde_json::from_slice(bytes).context("invalid eifbake manifest")
    }

    /// The same facts as an in-toto Statement with an SLSA Provenance v1 predicate.
    pub fn provenance(&self) -> Statement {
        let mut i = self.inputs.clone();
        i.normalize();
        let o = &self.outputs;
        let mut pcrs = BTreeMap::new();
        pcrs.insert("PCR0".to_string(), serde_json::Value::from(o.pcrs.pcr0.as_str()));
        pcrs.insert("PCR1".to_string(), serde_json::Value::from(o.pcrs.pcr1.as_str()));
        pcrs.insert("PCR2".to_string(), serde_json::Value::from(o.pcrs.pcr2.as_str()));
        if let Some(p8) = &o.pcrs.pcr8 {
            pcrs.insert("PCR8".to_string(), serde_json::Value::from(p8.as_str()));
        }
        let subject = ResourceDescriptor {
            name: Some(o.eif.file.clone()),
            uri: None,
            digest: digest_set([("sha256", o.eif.sha256.hex())]),
            annotations: Some(pcrs),
        };

        let mut deps = Vec::new();
        for img in &i.images {
            let mut ann = BTreeMap::new();
            if let Some(idx) = img.index_digest {
                ann.insert("indexDigest".to_string(), serde_json::Value::from(idx.to_string()));
            }
            deps.push(ResourceDescriptor {
                name: Some(format!("images.{}", img.name)),
                uri: Some(format!("oci:{}", img.reference)),
                digest: digest_set([("sha256", img.manifest_digest.hex())]),
                annotations: (!ann.is_empty()).then_some(ann),
            });
        }
        for s in &i.sources {
            let mut digest = digest_set([(TREE_DIGEST_KEY, s.tree.hex())]);
            if let Some(c) = &s.commit {
                digest.insert("gitCommit".to_string(), c.clone());
            }
            if let Some(d) = s.sha256 {
                digest.insert("sha256".to_string(), d.hex());
            }
            let uri = match (s.kind.as_str(), &s.url, &s.commit) {
                ("git", Some(u), Some(c)) => Some(format!("git+{u}@{c}")),
                (_, Some(u), _) => Some(u.clone()),
                _ => None,
            };
            deps.push(ResourceDescriptor {
                name: Some(format!("sources.{}", s.name)),
                uri,
                digest,
                annotations: None,
            });
        }

        Statement {
            typ: STATEMENT_TYPE.to_string(),
            subject: vec![subject],
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.to_string(),
                    external_parameters: ExternalParameters {
                        recipe: i.recipe.clone(),
                        lock: i.lock.clone(),
                        source_date_epoch: i.source_date_epoch,
                        enclave: i.enclave.clone(),
                        app_sources: i.app_sources.clone(),
                    },
                    internal_parameters: InternalParameters {
                        format: i.format,
                        name: i.name.clone(),
                        version: i.version.clone(),
                        arch: i.arch.clone(),
                    },
                    resolved_dependencies: deps,
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: BUILDER_ID.to_string(),
                        version: [(i.tool.name.clone(), i.tool.version.clone())].into_iter().collect(),
                    },
                    metadata: BTreeMap::new(),
                },
            },
        }
    }
}

fn digest_set<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub typ: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

impl Statement {
    /// The canonical JSON bytes of `NAME.provenance.json`.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        to_json(self)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Statement> {
        serde_json::from_slice(bytes).context("invalid in-toto statement")
    }
}

/// An in-toto ResourceDescriptor (the fields eifbake uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
}

/// The SLSA Provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the user controls: the recipe, its lock, the epoch and the enclave settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalParameters {
    pub recipe: FileRef,
    pub lock: FileRef,
    pub source_date_epoch: Epoch,
    pub enclave: EnclaveSettings,
    pub app_sources: Vec<String>,
}

/// What eifbake sets itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalParameters {
    pub format: u32,
    pub name: String,
    pub version: String,
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDetails {
    pub builder: Builder,
    /// Empty: eifbake records no wall-clock times or invocation ids.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    pub id: String,
    pub version: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!("../tests/data/manifest.json");
    const PROVENANCE: &str = include_str!("../tests/data/provenance.json");

    fn d(s: &str) -> Digest {
        s.parse().unwrap()
    }

    /// The manifest of a hypothetical `hello` build with StageX images (real
    /// release 2026.03.0 digests) and made-up source, output and PCR values.
    fn sample() -> Manifest {
        let img = |name: &str, reference: &str, hex: &str| ImageInput {
            name: name.into(),
            reference: reference.into(),
            index_digest: None,
            manifest_digest: Digest::from_hex(hex).unwrap(),
        };
        let mut busybox = img(
            "busybox",
            "stagex/core-busybox:sx2026.03.0",
            "d608daa946e4799cf28b105aba461db00187657bd55ea7c2935ff11dac237e27",
        );
        busybox.index_digest = Some(Digest::of(b"example index"));
        let file = |image: &str, path: &str, config: Option<&str>| ImageFileInput {
            image: image.into(),
            path: path.into(),
            config: config.map(Into::into),
        };
        Manifest {
            inputs: Inputs {
                format: FORMAT,
                tool: Tool { name: "eifbake".into(), version: "0.1.0".into() },
                name: "hello".into(),
                version: "0.1.0".into(),
                arch: "x86_64".into(),
                recipe: FileRef {
                    path: "recipes/hello.toml".into(),
                    sha256: Digest::of(b"recipe"),
                    text: None,
                },
                lock: FileRef {
                    path: "lockfiles/hello.lock".into(),
                    sha256: Digest::of(b"lock"),
                    text: None,
                },
                source_date_epoch: Epoch(1),
                // Deliberately unsorted: the writer sorts.
                images: vec![
                    img(
                        "kernel",
                        "stagex/user-linux-nitro:sx2026.03.0",
                        "9a5c6d0832ba0bc8c5ed29d5a064d69b2837eee4bf689a7df60947a181aeb6ff",
                    ),
                    busybox,
                    img(
                        "init",
                        "stagex/user-nit:sx2026.03.0",
                        "3d1d534143a4f5612c565c733f2f43985438f5f980f8be98767ba955eae19033",
                    ),
                ],
                sources: vec![
                    SourceInput {
                        name: "tool".into(),
                        kind: "url".into(),
                        url: Some("https://example.com/tool.tar.gz".into()),
                        commit: None,
                        tree: Digest::of(b"tool tree"),
                        sha256: Some(Digest::of(b"tool.tar.gz")),
                    },
                    SourceInput {
                        name: "app".into(),
                        kind: "git".into(),
                        url: Some("https://github.com/example/hello-enclave".into()),
                        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                        tree: Digest::of(b"app tree"),
                        sha256: None,
                    },
                ],
                app_sources: vec![
                    "https://github.com/example/hello-enclave".into(),
                    "https://github.com/example/hello-enclave".into(),
                ],
                enclave: EnclaveSettings {
                    layout: Layout::Single,
                    rootfs: Some("busybox".into()),
                    kernel: file("kernel", "/bzImage", Some("/linux.config")),
                    init: file("init", "/usr/bin/init", None),
                    nsm: None,
                    cmdline: "console=ttyS0 reboot=k panic=30 pci=off nomodules random.trust_cpu=on".into(),
                    command: vec!["/usr/bin/hello".into()],
                    env: [("RUST_LOG".to_string(), "info".to_string())].into_iter().collect(),
                    cpus: 2,
                    memory_mib: 512,
                    ports: vec![5005],
                    compression: Compression::None,
                },
            },
            outputs: Outputs {
                eif: EifOutput { file: "hello.eif".into(), sha256: Digest::of(b"eif"), size: 12345678 },
                pcrs: Pcrs {
                    pcr0: "00".repeat(48).parse().unwrap(),
                    pcr1: "11".repeat(48).parse().unwrap(),
                    pcr2: "22".repeat(48).parse().unwrap(),
                    pcr8: None,
                },
                signature: None,
            },
        }
    }

    /// `EIFBAKE_REGEN_GOLDEN=1 cargo test --lib manifest` rewrites the literal
    /// files from [`sample`]; review the diff before committing it.
    fn check_literal(path: &str, literal: &str, bytes: &[u8]) {
        if std::env::var_os("EIFBAKE_REGEN_GOLDEN").is_some() {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            std::fs::write(p, bytes).unwrap();
            return;
        }
        assert_eq!(std::str::from_utf8(bytes).unwrap(), literal, "{path} differs");
    }

    #[test]
    fn manifest_matches_literal_file_and_round_trips() {
        let m = sample();
        let json = m.to_json().unwrap();
        check_literal("tests/data/manifest.json", MANIFEST, &json);
        let back = Manifest::from_json(MANIFEST.as_bytes()).unwrap();
        assert_eq!(back.to_json().unwrap(), MANIFEST.as_bytes());
        let mut sorted = m.clone();
        sorted.inputs.normalize();
        assert_eq!(back, sorted);
        // The inputs alone are the `inputs` object of the manifest.
        let inputs = Inputs::from_json(&m.inputs.to_json().unwrap()).unwrap();
        assert_eq!(inputs, sorted.inputs);
    }

    #[test]
    fn provenance_matches_literal_file_and_round_trips() {
        let st = sample().provenance();
        let json = st.to_json().unwrap();
        check_literal("tests/data/provenance.json", PROVENANCE, &json);
        let back = Statement::from_json(PROVENANCE.as_bytes()).unwrap();
        assert_eq!(back, st);
        let v: serde_json::Value = serde_json::from_str(PROVENANCE).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["subject"][0]["digest"]["sha256"], Digest::of(b"eif").hex());
        let keys: Vec<&String> = v["predicate"]["buildDefinition"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["buildType", "externalParameters", "internalParameters", "resolvedDependencies"]);
        assert!(v["predicate"]["runDetails"]["builder"]["id"].is_string());
    }

    #[test]
    fn order_of_inputs_does_not_change_bytes() {
        let a = sample();
        let mut b = sample();
        b.inputs.images.reverse();
        b.inputs.sources.reverse();
        assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
        assert_eq!(a.provenance().to_json().unwrap(), b.provenance().to_json().unwrap());
    }

    #[test]
    fn source_entries_come_from_pins() {
        let pin = crate::sources::Pin {
            kind: "git".into(),
            rev: Some("main".into()),
            url: Some("https://github.com/example/hello-enclave".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            tree: Digest::of(b"app tree"),
            sha256: None,
        };
        let app = sample().inputs.sources.into_iter().find(|s| s.name == "app").unwrap();
        assert_eq!(SourceInput::from_pin("app", &pin), app);
    }

    #[test]
    fn bad_manifests_are_refused() {
        let mut v: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        v["outputs"]["pcrs"]["PCR0"] = "abc".into();
        let e = format!("{:#}", Manifest::from_json(v.to_string().as_bytes()).unwrap_err());
        assert!(e.contains("expected 96 lowercase hex"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        v["inputs"]["surprise"] = 1.into();
        let e = format!("{:#}", Manifest::from_json(v.to_string().as_bytes()).unwrap_err());
        assert!(e.contains("unknown field `surprise`"), "{e}");
        assert_eq!(d(&Digest::of(b"x").to_string()), Digest::of(b"x"));
    }
}
