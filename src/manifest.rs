//! The build's record of itself: `NAME.manifest.json` and
//! `NAME.provenance.json`.
//!
//! What this module is for: the serde types of the output manifest and of
//! its in-toto Statement v1 with an SLSA Provenance v1 predicate, their
//! deterministic JSON, and the restatement of a recipe and its lock as
//! those types. The manifest has three parts:
//!
//! - [`Inputs`], measured: what determines the EIF's bytes, in canonical
//!   form: tool and version, name, version, arch, SOURCE_DATE_EPOCH, each
//!   image by its platform manifest digest, each source by its tree hash,
//!   the steps (name, image, mounts, workdir, run, env, outputs, and for a
//!   fetch step the output-tree hash the lock pins, `fetched`; for a root
//!   step, what a Containerfile lowers to, its `root`, `copy` and `user`)
//!   and the enclave settings (with `labels`, and a Procfile's
//!   `app_sources`, `enclave_sources` and `metadata`, when there are any). Keys that
//!   only some builds have are left out when empty, so older manifests'
//!   bytes are unchanged. The build embeds exactly these bytes in the EIF's
//!   metadata (CustomMetadata) and in the root filesystem at
//!   `etc/eifbake/inputs.json`, so the PCRs commit to them (PCR2 in the
//!   `nitro-cli` layout, PCR1 in `single`, PCR0 in both).
//! - [`Origin`], unmeasured: the recipe and lock files (path, sha256, text)
//!   and the Containerfile the recipe names, if any,
//!   each image's reference (registry host included), index digest and
//!   platform, each source's kind, URL, commit and archive sha256, the
//!   app sources (the recipe's own list and the URLs of sources marked
//!   `app_source`), and (when the recipe has them, e.g. imported from a
//!   Procfile) the deployment settings. Where things came from and how the recipe is written
//!   never change a PCR: pulling the same digests from a mirror, or adding
//!   a comment to the recipe, gives the same EIF.
//! - [`Outputs`]: the EIF's sha256 and size and its PCRs, known only after,
//!   and the recipe's `report` paths as the root filesystem holds them
//!   ([`ReportedFile`]; left out when the recipe names none).
//!
//! [`Manifest`] is all three; [`Manifest::provenance`] restates it as an
//! in-toto [`Statement`].
//!
//! Formats: [`FORMAT`] numbers the inputs' shape. Format 1 (eifbake 0.1.0
//! before this split) measured the recipe and lock digests and full image
//! references; its PCRs cannot be reproduced by a format-2 build, so
//! [`check_format`] refuses it naming the eifbake that wrote it.
//!
//! Determinism: JSON key order is the struct field order (maps are
//! `BTreeMap`s, so sorted), lists of images and sources are sorted by name
//! (steps keep their run order) and `app_sources` sorted and deduplicated
//! by the `normalize` methods (which the JSON writers call), output is
//! pretty-printed with two-space indentation and a final newline, and the
//! only time in it is SOURCE_DATE_EPOCH. Unknown keys are errors when
//! reading, so a manifest from a newer eifbake is refused rather than
//! half-understood.
//!
//! What it is not for: computing digests, tree hashes or PCRs (the lock,
//! sources, EIF and PCR modules do), or writing files (callers use
//! [`crate::fsutil::write_atomic`] with [`Manifest::to_json`]).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::epoch::Epoch;
use crate::pcr::Measurements;
use crate::platform::{Arch, Platform};
use crate::recipe::{Compression, Layout, Recipe, SourceKind};

/// The manifest format version written by this eifbake.
pub const FORMAT: u32 = 2;
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
/// Unmeasured ([`Origin`]): a rebuilder uses it to recreate the project.
/// The path must not depend on where the checkout lives: callers give it
/// relative to the project (e.g. `recipes/hello.toml`), never absolute.
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

/// One pinned image, as measured: its platform manifest digest, nothing
/// about where it was pulled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// The key in the recipe's `[images]`.
    pub name: String,
    /// The digest of the platform manifest used: it names the config and
    /// every layer, so it determines the image's bytes.
    pub manifest_digest: Digest,
}

/// One pinned source, as measured: the tree hash of its directory (not the
/// URL, commit or archive it came from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// The key in the recipe's `[sources]`.
    pub name: String,
    /// The tree hash of the source's directory (see `crate::sources`).
    pub tree: Digest,
}

/// One build step, as measured: everything that decides what it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    pub name: String,
    /// A key of the recipe's `[images]` (whose digest is in [`Inputs::images`]).
    pub image: String,
    /// Guest path -> source name or `step:NAME`.
    pub mounts: BTreeMap<String, String>,
    pub workdir: String,
    pub run: String,
    pub env: BTreeMap<String, String>,
    /// Path under `/out` -> path in the enclave.
    pub outputs: BTreeMap<String, String>,
    /// A fetch step (`network = true`): what it wrote, the output-tree hash
    /// the lock pins. Absent for ordinary steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched: Option<Digest>,
    /// A root step's root (`image`, `scratch`, `step:NAME`); absent for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// A root step's copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<crate::recipe::CopyOp>,
    /// A root step's `UID:GID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl StepInput {
    pub fn from_step(s: &crate::recipe::Step) -> StepInput {
        StepInput {
            name: s.name.clone(),
            image: s.image.clone(),
            mounts: s.mounts.clone(),
            workdir: s.workdir.clone(),
            run: s.run.clone(),
            env: s.env.clone(),
            outputs: s.outputs.clone(),
            fetched: None,
            root: s.root.clone(),
            copy: s.copy.clone(),
            user: s.user.clone(),
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

impl ImageFileInput {
    pub fn from_file(f: &crate::recipe::ImageFile) -> ImageFileInput {
        ImageFileInput { image: f.image.clone(), path: f.path.clone(), config: f.config.clone() }
    }
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
    /// Enclave path (without a leading `/`) -> octal mode, four digits.
    pub modes: BTreeMap<String, String>,
    /// `enclave.labels` (a Containerfile's `LABEL`s); absent when none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `enclave.app_sources` as the recipe lists them (a Procfile's
    /// `app_sources`): measured, so an attested enclave commits to where its
    /// code is published, as Caution's platform has it; absent when none.
    /// (Sources marked `app_source` add their URL to the unmeasured
    /// [`Origin::app_sources`] only: a mirror must not change a PCR.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_sources: Vec<String>,
    /// `enclave.enclave_sources` (a Procfile's): where the enclave's platform
    /// code is published; measured likewise; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enclave_sources: Vec<String>,
    /// `enclave.metadata` (a Procfile's free-form `metadata`); measured like
    /// `labels`; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

impl EnclaveSettings {
    pub fn from_recipe(r: &Recipe) -> EnclaveSettings {
        let e = &r.enclave;
        EnclaveSettings {
            layout: e.layout,
            rootfs: e.rootfs.clone(),
            kernel: ImageFileInput::from_file(&e.kernel),
            init: ImageFileInput::from_file(&e.init),
            nsm: e.nsm.as_ref().map(ImageFileInput::from_file),
            cmdline: e.cmdline.clone(),
            command: e.command.clone(),
            env: e.env.clone(),
            cpus: e.cpus,
            memory_mib: e.memory_mib,
            ports: e.ports.clone(),
            compression: e.compression,
            modes: r
                .mode_overrides()
                .into_iter()
                .map(|(p, m)| (p.trim_start_matches('/').to_string(), format!("{m:04o}")))
                .collect(),
            labels: e.labels.clone(),
            app_sources: e.app_sources.clone(),
            enclave_sources: e.enclave_sources.clone(),
            metadata: e.metadata.clone(),
        }
    }
}

/// The measured inputs: what determines the EIF's bytes, in canonical form.
/// Embedded in the EIF (CustomMetadata) and in its root filesystem at
/// `etc/eifbake/inputs.json`, so the PCRs commit to them.
///
/// Two builds with equal `Inputs` give the same EIF, wherever their images
/// and sources were fetched from and however their recipe text is
/// formatted; anything that changes the bytes changes `Inputs`.
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
    pub arch: Arch,
    pub source_date_epoch: Epoch,
    /// Sorted by name.
    pub images: Vec<ImageInput>,
    /// Sorted by name.
    pub sources: Vec<SourceInput>,
    /// In the order they run.
    pub steps: Vec<StepInput>,
    pub enclave: EnclaveSettings,
}

impl Inputs {
    /// The measured inputs of `recipe` pinned by `lock`, built at `epoch`.
    /// Errors name an image or source the lock does not pin.
    pub fn of_recipe(recipe: &Recipe, lock: &crate::lock::Lock, epoch: Epoch) -> Result<Inputs> {
        let mut images = Vec::new();
        for name in recipe.images.keys() {
            let li = lock
                .images
                .get(name)
                .with_context(|| format!("image {name:?} is not pinned in the lock; run `eifbake lock`"))?;
            images.push(ImageInput { name: name.clone(), manifest_digest: li.manifest });
        }
        let mut sources = Vec::new();
        for name in recipe.sources.keys() {
            let pin = lock
                .sources
                .get(name)
                .with_context(|| format!("sources.{name} is not pinned in the lock; run `eifbake lock`"))?;
            sources.push(SourceInput { name: name.clone(), tree: pin.tree });
        }
        let mut inputs = Inputs {
            format: FORMAT,
            tool: Tool::current(),
            name: recipe.name.clone(),
            version: recipe.version.clone(),
            arch: recipe.arch,
            source_date_epoch: epoch,
            images,
            sources,
            steps: recipe
                .steps
                .iter()
                .map(|s| StepInput {
                    fetched: lock.steps.get(&s.name).filter(|_| s.network).map(|l| l.output),
                    ..StepInput::from_step(s)
                })
                .collect(),
            enclave: EnclaveSettings::from_recipe(recipe),
        };
        inputs.normalize();
        Ok(inputs)
    }

    /// Sort images and sources by name (steps keep their order: it is the run order).
    pub fn normalize(&mut self) {
        self.images.sort_by(|a, b| a.name.cmp(&b.name));
        self.sources.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The canonical JSON bytes (normalised, pretty, final newline).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut n = self.clone();
        n.normalize();
        to_json(&n)
    }

    /// Parse inputs JSON, refusing (with what to do) inputs of another [`FORMAT`].
    pub fn from_json(bytes: &[u8]) -> Result<Inputs> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).context("invalid eifbake inputs manifest")?;
        Inputs::from_value(v, "inputs")
    }

    /// [`Inputs::from_json`] from a parsed value; `field` names it in errors.
    pub fn from_value(v: serde_json::Value, field: &str) -> Result<Inputs> {
        check_format(&v, field)?;
        serde_json::from_value(v).with_context(|| format!("{field}: not an eifbake inputs manifest"))
    }
}

/// Refuse inputs written in another format than this eifbake's [`FORMAT`],
/// naming the eifbake that wrote them: their PCRs commit to that format, so
/// only that version can rebuild them.
pub fn check_format(inputs: &serde_json::Value, field: &str) -> Result<()> {
    let Some(format) = inputs.get("format").and_then(|f| f.as_u64()) else {
        bail!("{field}.format is missing or not a number: not an eifbake inputs manifest");
    };
    if format != u64::from(FORMAT) {
        let tool = inputs.pointer("/tool/version").and_then(|v| v.as_str()).unwrap_or("(unknown version)");
        bail!(
            "made by eifbake {tool} with inputs format {format} ({field}.format); this eifbake {TOOL_VERSION} \
             writes and rebuilds inputs format {FORMAT}, whose measured content differs, so it cannot \
             reproduce those PCRs: rebuild with eifbake {tool}"
        );
    }
    Ok(())
}

/// Where an image came from (unmeasured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOrigin {
    /// The key in the recipe's `[images]`.
    pub name: String,
    /// The reference as the recipe gives it, registry host included.
    pub reference: String,
    /// The digest of the image index the reference resolved to, when known.
    pub index_digest: Option<Digest>,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: Platform,
    /// With a `[trust]` policy: the primary-key fingerprints of the keys
    /// whose valid signatures of the manifest the build checked, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
}

/// Where a source came from (unmeasured; see [`crate::sources::Pin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOrigin {
    /// The key in the recipe's `[sources]`.
    pub name: String,
    /// `git`, `path`, `url` or `cargo_lock`.
    pub kind: String,
    /// The git or download URL (null for path and cargo_lock sources).
    pub url: Option<String>,
    /// The git commit (git sources).
    pub commit: Option<String>,
    /// The downloaded file's sha256 (url sources).
    pub sha256: Option<Digest>,
}

impl SourceOrigin {
    /// The manifest entry of a source pinned as `pin`.
    pub fn from_pin(name: &str, pin: &crate::sources::Pin) -> SourceOrigin {
        SourceOrigin {
            name: name.to_string(),
            kind: pin.kind.clone(),
            url: pin.url.clone(),
            commit: pin.commit.clone(),
            sha256: pin.sha256,
        }
    }
}

/// The unmeasured half of the inputs: the recipe and lock texts (with
/// which `verify` recreates the project), where each image and source was
/// fetched from, and the application's source locations. None of it is in
/// the EIF, so none of it changes a PCR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    pub recipe: FileRef,
    pub lock: FileRef,
    /// The Containerfile the recipe names (`containerfile`), with its text:
    /// `verify` needs it beside the recipe. Absent for other recipes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerfile: Option<FileRef>,
    /// Sorted by name.
    pub images: Vec<ImageOrigin>,
    /// Sorted by name.
    pub sources: Vec<SourceOrigin>,
    /// Where the application's own code comes from (Procfile `app_sources`
    /// semantics): git and url sources marked `app_source` give their URL,
    /// a local directory `path:DIR`; plus `enclave.app_sources`. Sorted,
    /// deduplicated.
    pub app_sources: Vec<String>,
    /// The recipe's `[deployment]` (a Procfile's deployment-only fields,
    /// `domain`, `ports`, …); left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployment: BTreeMap<String, String>,
    /// The keyrings of the recipe's `[trust]` policies (path relative to
    /// the recipe, sha256, text), so `verify` can check the signatures
    /// again; left out when the recipe has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyrings: Vec<FileRef>,
}

impl Origin {
    /// The origin of `recipe` pinned by `lock`, whose files are `recipe_file` and `lock_file`.
    pub fn of_recipe(
        recipe: &Recipe,
        lock: &crate::lock::Lock,
        recipe_file: FileRef,
        lock_file: FileRef,
    ) -> Origin {
        let images = lock
            .images
            .iter()
            .map(|(name, li)| ImageOrigin {
                name: name.clone(),
                reference: li.reference.clone(),
                index_digest: li.index,
                platform: li.platform.clone(),
                signers: Vec::new(),
            })
            .collect();
        let sources = lock.sources.iter().map(|(n, p)| SourceOrigin::from_pin(n, p)).collect();
        let mut app_sources: Vec<String> = recipe.enclave.app_sources.clone();
        for s in recipe.sources.values().filter(|s| s.app_source) {
            app_sources.push(match s.kind() {
                SourceKind::Git { url, .. } | SourceKind::Url { url, .. } => url.to_string(),
                SourceKind::Path { path, .. } => format!("path:{}", path.display()),
                SourceKind::CargoLock { path } => format!("cargo_lock:{}", path.display()),
            });
        }
        let mut o = Origin {
            recipe: recipe_file,
            lock: lock_file,
            containerfile: None,
            images,
            sources,
            app_sources,
            deployment: recipe.deployment.clone(),
            keyrings: Vec::new(),
        };
        o.normalize();
        o
    }

    /// Record who signed each image (the verdicts of [`crate::trust`]) and
    /// the keyrings the signatures were checked with.
    pub fn add_trust(
        &mut self,
        verdicts: &BTreeMap<String, crate::trust::ImageVerdict>,
        keyrings: Vec<FileRef>,
    ) {
        for img in &mut self.images {
            if let Some(v) = verdicts.get(&img.name) {
                img.signers = v.signers.clone();
            }
        }
        self.keyrings = keyrings;
    }

    /// Sort images and sources by name and `app_sources` bytewise, deduplicated.
    pub fn normalize(&mut self) {
        self.images.sort_by(|a, b| a.name.cmp(&b.name));
        self.sources.sort_by(|a, b| a.name.cmp(&b.name));
        self.app_sources.sort();
        self.app_sources.dedup();
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
    /// PCR0, PCR1, PCR2 (and PCR8 when signed), as lowercase hex.
    pub pcrs: Measurements,
    /// Signed images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureOutput>,
    /// The enclave paths the recipe's `report` names, sorted by path; left
    /// out when it names none (so manifests of recipes without `report`
    /// are as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ReportedFile>,
}

/// One enclave path the recipe's `report` names, as the final root
/// filesystem holds it: a regular file with its sha256 and size, or a
/// symlink with its target (never followed). Unmeasured: it restates bytes
/// the PCRs already commit to, so a user can check one served file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedFile {
    /// The absolute enclave path, as the recipe names it.
    pub path: String,
    /// A regular file's sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// A regular file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A symlink's target, as stored (the link itself is what is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
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

/// `NAME.manifest.json`: the measured inputs, their unmeasured origin, and
/// the outputs of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub inputs: Inputs,
    pub origin: Origin,
    pub outputs: Outputs,
}

impl Manifest {
    /// The canonical JSON bytes of `NAME.manifest.json`.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut n = self.clone();
        n.inputs.normalize();
        n.origin.normalize();
        n.outputs.files.sort_by(|a, b| a.path.cmp(&b.path));
        to_json(&n)
    }

    /// Parse a manifest, refusing one of another inputs [`FORMAT`] with what to do.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let v: serde_json::Value = serde_json::from_slice(bytes).context("invalid eifbake manifest")?;
        let inputs = v.get("inputs").context("invalid eifbake manifest: no `inputs` object")?;
        check_format(inputs, "inputs")?;
        serde_json::from_value(v).context("invalid eifbake manifest")
    }

    /// The same facts as an in-toto Statement with an SLSA Provenance v1 predicate.
    pub fn provenance(&self) -> Statement {
        let mut i = self.inputs.clone();
        i.normalize();
        let mut origin = self.origin.clone();
        origin.normalize();
        let o = &self.outputs;
        let mut pcrs = BTreeMap::new();
        for (n, p) in o.pcrs.registers() {
            pcrs.insert(format!("PCR{n}"), serde_json::Value::from(p.hex()));
        }
        let subject = ResourceDescriptor {
            name: Some(o.eif.file.clone()),
            uri: None,
            digest: digest_set([("sha256", o.eif.sha256.hex())]),
            annotations: Some(pcrs),
        };

        let mut deps = Vec::new();
        for img in &i.images {
            let from = origin.images.iter().find(|x| x.name == img.name);
            let mut ann = BTreeMap::new();
            if let Some(idx) = from.and_then(|f| f.index_digest) {
                ann.insert("indexDigest".to_string(), serde_json::Value::from(idx.to_string()));
            }
            deps.push(ResourceDescriptor {
                name: Some(format!("images.{}", img.name)),
                uri: from.map(|f| format!("oci:{}", f.reference)),
                digest: digest_set([("sha256", img.manifest_digest.hex())]),
                annotations: (!ann.is_empty()).then_some(ann),
            });
        }
        for s in &i.sources {
            let from = origin.sources.iter().find(|x| x.name == s.name);
            let mut digest = digest_set([(TREE_DIGEST_KEY, s.tree.hex())]);
            if let Some(c) = from.and_then(|f| f.commit.as_ref()) {
                digest.insert("gitCommit".to_string(), c.clone());
            }
            if let Some(d) = from.and_then(|f| f.sha256) {
                digest.insert("sha256".to_string(), d.hex());
            }
            let uri = from.and_then(|f| match (f.kind.as_str(), &f.url, &f.commit) {
                ("git", Some(u), Some(c)) => Some(format!("git+{u}@{c}")),
                (_, Some(u), _) => Some(u.clone()),
                _ => None,
            });
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
                        recipe: origin.recipe.clone(),
                        lock: origin.lock.clone(),
                        source_date_epoch: i.source_date_epoch,
                        steps: i.steps.clone(),
                        enclave: i.enclave.clone(),
                        app_sources: origin.app_sources.clone(),
                    },
                    internal_parameters: InternalParameters {
                        format: i.format,
                        name: i.name.clone(),
                        version: i.version.clone(),
                        arch: i.arch,
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

/// What the user controls: the recipe, its lock, the epoch, the steps and the enclave settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalParameters {
    pub recipe: FileRef,
    pub lock: FileRef,
    pub source_date_epoch: Epoch,
    pub steps: Vec<StepInput>,
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
    pub arch: Arch,
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
        let img = |name: &str, hex: &str| ImageInput {
            name: name.into(),
            manifest_digest: Digest::from_hex(hex).unwrap(),
        };
        let from = |name: &str, reference: &str| ImageOrigin {
            name: name.into(),
            reference: reference.into(),
            index_digest: None,
            platform: Platform::linux(Arch::X86_64),
            signers: Vec::new(),
        };
        let mut busybox = from("busybox", "stagex/core-busybox:sx2026.03.0");
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
                arch: Arch::X86_64,
                source_date_epoch: Epoch(1),
                // Deliberately unsorted: the writer sorts.
                images: vec![
                    img("kernel", "9a5c6d0832ba0bc8c5ed29d5a064d69b2837eee4bf689a7df60947a181aeb6ff"),
                    img("busybox", "d608daa946e4799cf28b105aba461db00187657bd55ea7c2935ff11dac237e27"),
                    img("init", "3d1d534143a4f5612c565c733f2f43985438f5f980f8be98767ba955eae19033"),
                ],
                sources: vec![
                    SourceInput { name: "tool".into(), tree: Digest::of(b"tool tree") },
                    SourceInput { name: "app".into(), tree: Digest::of(b"app tree") },
                ],
                steps: vec![StepInput {
                    name: "compile".into(),
                    image: "busybox".into(),
                    mounts: [("/src/app".to_string(), "app".to_string())].into_iter().collect(),
                    workdir: "/src/app".into(),
                    run: "cp hello /out/hello".into(),
                    env: BTreeMap::new(),
                    outputs: [("/out/hello".to_string(), "/usr/bin/hello".to_string())].into_iter().collect(),
                    fetched: None,
                    root: None,
                    copy: Vec::new(),
                    user: None,
                }],
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
                    modes: [("usr/bin/hello".to_string(), "0755".to_string())].into_iter().collect(),
                    labels: BTreeMap::new(),
                    app_sources: Vec::new(),
                    enclave_sources: Vec::new(),
                    metadata: None,
                },
            },
            origin: Origin {
                containerfile: None,
                keyrings: Vec::new(),
                deployment: BTreeMap::new(),
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
                images: vec![
                    from("kernel", "stagex/user-linux-nitro:sx2026.03.0"),
                    busybox,
                    from("init", "stagex/user-nit:sx2026.03.0"),
                ],
                sources: vec![
                    SourceOrigin {
                        name: "tool".into(),
                        kind: "url".into(),
                        url: Some("https://example.com/tool.tar.gz".into()),
                        commit: None,
                        sha256: Some(Digest::of(b"tool.tar.gz")),
                    },
                    SourceOrigin {
                        name: "app".into(),
                        kind: "git".into(),
                        url: Some("https://github.com/example/hello-enclave".into()),
                        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                        sha256: None,
                    },
                ],
                app_sources: vec![
                    "https://github.com/example/hello-enclave".into(),
                    "https://github.com/example/hello-enclave".into(),
                ],
            },
            outputs: Outputs {
                eif: EifOutput { file: "hello.eif".into(), sha256: Digest::of(b"eif"), size: 12345678 },
                pcrs: Measurements {
                    pcr0: "00".repeat(48).parse().unwrap(),
                    pcr1: "11".repeat(48).parse().unwrap(),
                    pcr2: "22".repeat(48).parse().unwrap(),
                    pcr8: None,
                },
                signature: None,
                files: Vec::new(),
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
        sorted.origin.normalize();
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
        b.origin.images.reverse();
        b.origin.sources.reverse();
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
            crates: vec![],
        };
        let app = sample().origin.sources.into_iter().find(|s| s.name == "app").unwrap();
        assert_eq!(SourceOrigin::from_pin("app", &pin), app);
    }

    /// A format-1 manifest (what eifbake 0.1.0 wrote before the measured
    /// inputs became canonical) is refused naming its eifbake and format.
    #[test]
    fn older_formats_are_refused_with_the_version_to_use() {
        let old = include_bytes!("../tests/data/manifest-format1.json");
        let e = format!("{:#}", Manifest::from_json(old).unwrap_err());
        assert!(
            e.contains("made by eifbake 0.1.0 with inputs format 1")
                && e.contains("rebuild with eifbake 0.1.0"),
            "{e}"
        );
        let v: serde_json::Value = serde_json::from_slice(old).unwrap();
        let e = format!("{:#}", Inputs::from_json(v["inputs"].to_string().as_bytes()).unwrap_err());
        assert!(e.contains("inputs format 1"), "{e}");
    }

    #[test]
    fn bad_manifests_are_refused() {
        let mut v: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        v["outputs"]["pcrs"]["PCR0"] = "abc".into();
        let e = format!("{:#}", Manifest::from_json(v.to_string().as_bytes()).unwrap_err());
        assert!(e.contains("must be exactly 96 hex characters"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        v["outputs"]["pcrs"]["PCR9"] = "00".repeat(48).into();
        let e = format!("{:#}", Manifest::from_json(v.to_string().as_bytes()).unwrap_err());
        assert!(e.contains("unknown field `PCR9`"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        v["inputs"]["surprise"] = 1.into();
        let e = format!("{:#}", Manifest::from_json(v.to_string().as_bytes()).unwrap_err());
        assert!(e.contains("unknown field `surprise`"), "{e}");
        assert_eq!(d(&Digest::of(b"x").to_string()), Digest::of(b"x"));
    }
}
