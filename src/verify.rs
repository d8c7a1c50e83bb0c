//! `verify`: rebuild an EIF from its manifest alone and say whether the
//! rebuild matches what was published.
//!
//! The manifest's unmeasured [`Origin`] carries the recipe and lock texts
//! and where the images and sources came from; its measured [`Inputs`] the
//! pinned digests and tree hashes, SOURCE_DATE_EPOCH and the tool version.
//! [`verify`] recreates `recipes/…` and `lockfiles/NAME.lock` in a fresh
//! temporary project, fetches exactly the pinned blobs and sources, runs
//! [`crate::build::build`] there with the step cache bypassed, and compares
//! the rebuilt EIF's sha256 and PCR0/1/2 with every expected figure it was
//! given: the manifest's outputs, a `.pcrs` file, a published EIF. The
//! manifest's reported enclave paths (`outputs.files`, from the recipe's
//! `report`) are compared with the rebuild's too, one `file PATH` figure
//! each; a mismatch is `BAD`.
//!
//! The store: by default a fresh temporary store, so nothing from earlier
//! builds is reused. When the caller names a store ([`VerifyOptions::store`])
//! the pinned images' blobs already in it are reused after re-hashing each
//! one against its digest (the images are named by the manifest's digests),
//! so reuse cannot change what is built. Step outputs are never reused
//! (`no_cache`), and source trees are re-hashed against their pins on every
//! use.
//!
//! A rebuild that fails keeps its directory (without the temporary store),
//! so the step log its error names (`out/logs/NAME.STEP.log`) can be read.
//!
//! Signed images: the rebuild is unsigned (a rebuilder has no key). When
//! the manifest records a signature section, or a published EIF has one,
//! that section is checked against the rebuilt PCR0 and, when it signs it,
//! appended to the rebuild ([`crate::eif::sign_existing`]); the signed
//! rebuild's sha256 and PCR8 are then compared with the original's. Signing
//! is deterministic, so a signed image rebuilds bit for bit. A section that
//! does not sign the rebuilt PCR0 is a failed `signature` figure.
//!
//! Verdicts ([`Verdict`]): `GOOD` when every figure matches; `GOOD_MEASURED`
//! when every PCR matches but a published EIF's sha256 does not (an EIF from
//! another tool, e.g. AWS's `eif_build`: the files differ only in unmeasured
//! metadata; the enclave attests to the same measurements, so this exits 0
//! like GOOD, with the explanation printed);
//! `BAD` otherwise (exit 1). A rebuild that cannot happen (missing path
//! source, blob gone, tool version mismatch, a manifest of another inputs
//! format, an EIF given without its manifest) is an error (exit 2).
//!
//! An EIF alone cannot be rebuilt: it embeds only its measured inputs, which
//! say what went in (digests, tree hashes) but not where to fetch it from;
//! `verify` says to give its manifest and the EIF with `--eif`. Manifests
//! and EIFs of another inputs format (see [`crate::manifest::check_format`])
//! are refused naming the eifbake version that can rebuild them.
//!
//! Not for: deciding whether builds are deterministic under varied
//! conditions (that is [`crate::check`]), or signing and publishing
//! attestations (the statement written by [`attestation`] is signed and
//! attached to a release by [`crate::release::rebuilds`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::build::{build, BuildOptions};
use crate::digest::Digest;
use crate::eif::diff::{compare, EifDiff};
use crate::eif::Eif;
use crate::epoch::Epoch;
use crate::manifest::{Inputs, Manifest, Origin, FORMAT, TOOL_VERSION};
use crate::pcr::{Measurements, Pcr};
use crate::progress::Progress;
use crate::recipe::{Recipe, SourceKind};
use crate::sandbox::Runtime;

/// The SLSA Verification Summary predicate type used by `--attest`.
pub const VSA_PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// The verifier id written in attestations.
pub const VERIFIER_ID: &str = "urn:eifbake:verifier:rebuild";
/// The policy a GOOD verdict means: rebuilt from the manifest, PCR0/1/2 and sha256 compared.
pub const POLICY_URI: &str = "urn:eifbake:policy:rebuild-compare-pcrs-sha256:v1";

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Reuse this store's pinned blobs (see the module docs); `None`: a fresh temporary store.
    pub store: Option<PathBuf>,
    /// Directories for path sources, by source name.
    pub sources: BTreeMap<String, PathBuf>,
    /// A published `.pcrs` file to compare with.
    pub pcrs: Option<PathBuf>,
    /// A published EIF to compare with.
    pub published_eif: Option<PathBuf>,
    pub allow_tool_mismatch: bool,
    pub runtime: Runtime,
    pub insecure: Vec<String>,
    /// Registry mirrors for the rebuild's fetches.
    pub mirrors: Vec<crate::config::Mirror>,
    pub offline: bool,
    pub step_timeout: Duration,
    /// Keep the rebuild directory and print where.
    pub keep: bool,
    /// Let the recipe's fetch steps (`network = true`) run with a network.
    pub allow_network: bool,
}

/// What the subject of verification was read from.
#[derive(Debug, Clone)]
pub struct Subject {
    pub path: PathBuf,
    /// The bytes' sha256 (of the manifest file or of the EIF).
    pub sha256: Digest,
    pub inputs: Inputs,
    /// The manifest's unmeasured origin (recipe and lock texts, image
    /// references), when the subject is a manifest: an EIF carries only
    /// its measured inputs.
    pub origin: Option<Origin>,
    /// The manifest's outputs, when the subject is a manifest.
    pub outputs: Option<crate::manifest::Outputs>,
    /// True when the subject is an EIF (its own figures are expected).
    pub is_eif: bool,
}

/// Read a `NAME.manifest.json`, or the inputs embedded in an EIF's CustomMetadata.
pub fn load_subject(path: &Path) -> Result<Subject> {
    let mut magic = [0u8; 4];
    let is_eif = {
        use std::io::Read;
        let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.read(&mut magic).with_context(|| format!("cannot read {}", path.display()))? == 4
            && &magic == b".eif"
    };
    let (sha256, _) = Digest::of_reader(fs::File::open(path)?)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if is_eif {
        let eif = Eif::open(path)?;
        let meta = eif.metadata_json()?.with_context(|| {
            format!("{}: the EIF has no metadata section, so no embedded eifbake inputs", path.display())
        })?;
        let custom = meta.get("CustomMetadata").filter(|c| !c.is_null()).with_context(|| {
            format!(
                "{}: metadata field CustomMetadata is empty; expected the eifbake inputs manifest \
                 (was this EIF built by eifbake? verify its NAME.manifest.json instead)",
                path.display()
            )
        })?;
        let inputs = Inputs::from_value(custom.clone(), "CustomMetadata")
            .with_context(|| format!("{}: metadata field CustomMetadata", path.display()))?;
        Ok(Subject { path: path.to_path_buf(), sha256, inputs, origin: None, outputs: None, is_eif: true })
    } else {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = Manifest::from_json(&bytes).with_context(|| format!("{}", path.display()))?;
        Ok(Subject {
            path: path.to_path_buf(),
            sha256,
            inputs: m.inputs,
            origin: Some(m.origin),
            outputs: Some(m.outputs),
            is_eif: false,
        })
    }
}

/// The result of verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Good,
    GoodMeasured,
    Bad,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Good => "GOOD",
            Verdict::GoodMeasured => "GOOD (measured content identical)",
            Verdict::Bad => "BAD",
        }
    }
}

/// One comparison: which figure, from where, expected and rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `sha256`, `PCR0`, `PCR1`, `PCR2`.
    pub what: String,
    /// Where the expected value comes from (`manifest`, `pcrs file`, `subject EIF`, `published EIF`).
    pub from: String,
    pub expected: String,
    pub rebuilt: String,
    pub ok: bool,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub name: String,
    pub subject: String,
    /// The file name of the EIF the result is about: the published one
    /// (`--eif`), else the subject EIF, else `NAME.eif` from the manifest.
    pub eif_name: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
    /// The rebuilt EIF's sha256.
    pub rebuilt_sha256: Digest,
    /// The EIF diff between the rebuild (a) and the published EIF (b), on BAD.
    pub diff: Option<EifDiff>,
    /// Where the rebuild was kept (`keep`).
    pub kept: Option<PathBuf>,
}

/// A relative path inside the rebuild project, refusing absolute paths and `..`.
fn safe_relative(p: &str, field: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if p.is_empty() || path.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("manifest field {field}: {p:?} must be a relative path without `..`");
    }
    Ok(path.to_path_buf())
}

/// Copy a directory's contents (`cp -a DIR/. DEST`).
fn copy_into(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(from.join("."))
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !st.success() {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}

/// Write the Containerfile a manifest's origin carries beside the recreated
/// recipe (its path is relative to the recipe's directory, checked like the
/// others); returns its path and text.
fn recreate_containerfile(origin: &Origin, recipe_path: &Path) -> Result<Option<(PathBuf, String)>> {
    let Some(cf) = &origin.containerfile else { return Ok(None) };
    let text = cf.text.as_deref().context("manifest field origin.containerfile.text is missing")?;
    if Digest::of(text.as_bytes()) != cf.sha256 {
        bail!(
            "manifest field origin.containerfile.text does not hash to origin.containerfile.sha256 {}",
            cf.sha256
        );
    }
    let rel = safe_relative(&cf.path, "origin.containerfile.path")?;
    let path = Recipe::base_dir(recipe_path).join(rel);
    fs::create_dir_all(path.parent().expect("relative path under dir"))?;
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some((path, text.to_string())))
}

/// Recreate the project (recipe, lock, path sources) under `dir` from a
/// manifest's origin; path sources are checked against the measured tree
/// hashes in `inputs`. Returns the recipe path.
pub fn recreate_project(
    inputs: &Inputs,
    origin: &Origin,
    sources: &BTreeMap<String, PathBuf>,
    dir: &Path,
) -> Result<PathBuf> {
    let recipe_text = origin.recipe.text.as_deref().with_context(|| {
        "manifest field origin.recipe.text is missing: this manifest names its recipe but does not \
         embed it, so it cannot be rebuilt alone"
    })?;
    let lock_text = origin.lock.text.as_deref().with_context(|| {
        "manifest field origin.lock.text is missing: the lockfile is not embedded, so it cannot be rebuilt alone"
    })?;
    if Digest::of(recipe_text.as_bytes()) != origin.recipe.sha256 {
        bail!(
            "manifest field origin.recipe.text does not hash to origin.recipe.sha256 {}",
            origin.recipe.sha256
        );
    }
    if Digest::of(lock_text.as_bytes()) != origin.lock.sha256 {
        bail!("manifest field origin.lock.text does not hash to origin.lock.sha256 {}", origin.lock.sha256);
    }
    let recipe_rel = safe_relative(&origin.recipe.path, "origin.recipe.path")?;
    let lock_rel = safe_relative(&origin.lock.path, "origin.lock.path")?;
    let recipe_path = dir.join(&recipe_rel);
    let lock_path = dir.join(&lock_rel);
    for (p, text) in [(&recipe_path, recipe_text), (&lock_path, lock_text)] {
        fs::create_dir_all(p.parent().expect("relative path under dir"))?;
        fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let containerfile = recreate_containerfile(origin, &recipe_path)?;
    let recipe =
        Recipe::parse_with(recipe_text, containerfile.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
            .context("manifest field origin.recipe.text")?;
    let base = Recipe::base_dir(&recipe_path);
    recreate_keyrings(&recipe, origin, &base)?;
    for name in sources.keys() {
        match recipe.sources.get(name) {
            Some(s) if matches!(s.kind(), SourceKind::Path { .. }) => {}
            Some(_) => {
                bail!("--source {name}=…: sources.{name} is not a path source; it is fetched from its pin")
            }
            None => bail!(
                "--source {name}=…: the recipe has no source {name:?} (it has: {})",
                recipe.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    for (name, s) in &recipe.sources {
        if let SourceKind::Path { path, ignore } = s.kind() {
            let given = sources.get(name).with_context(|| {
                format!(
                    "cannot rebuild: sources.{name} is a local directory ({}) and a manifest cannot carry it; \
                     give it with --source {name}=DIR",
                    path.display()
                )
            })?;
            let pin =
                inputs.sources.iter().find(|p| &p.name == name).with_context(|| {
                    format!("manifest field inputs.sources has no entry for source {name:?}")
                })?;
            let found = crate::sources::tree_hash(given, ignore)
                .with_context(|| format!("--source {name}={}", given.display()))?;
            if found != pin.tree {
                bail!(
                    "cannot rebuild: sources.{name}: the directory {} has tree hash {found}, the manifest pins {}; \
                     it is not the source that was built",
                    given.display(),
                    pin.tree
                );
            }
            let rel = path.to_string_lossy();
            // "." is the recipe's own directory (a Containerfile's build context).
            let dest = match rel.as_ref() {
                "." => base.clone(),
                rel => base.join(safe_relative(rel, &format!("sources.{name}.path"))?),
            };
            copy_into(given, &dest)?;
        }
    }
    // A source that holds the recipe's directory (a build context) brought
    // its own copies of the recipe, lock and Containerfile: the manifest's win.
    for (p, text) in [(&recipe_path, recipe_text), (&lock_path, lock_text)] {
        fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    recreate_containerfile(origin, &recipe_path)?;
    Ok(recipe_path)
}

/// The keyrings of the recipe's `[trust]` policies, from the manifest's
/// origin (each checked against its sha256), written where the recipe
/// names them, so the rebuild checks the images' signatures as the build did.
fn recreate_keyrings(recipe: &Recipe, origin: &Origin, base: &Path) -> Result<()> {
    for rel in crate::trust::keyrings(recipe) {
        let rel = rel.to_string_lossy();
        let f = origin.keyrings.iter().find(|k| k.path == rel).with_context(|| {
            format!("manifest field origin.keyrings has no keyring {rel:?}, which the recipe's [trust] names")
        })?;
        let text = f
            .text
            .as_deref()
            .with_context(|| format!("manifest field origin.keyrings: {rel:?} has no text"))?;
        if Digest::of(text.as_bytes()) != f.sha256 {
            bail!(
                "manifest field origin.keyrings: {rel:?}: the text does not hash to its sha256 {}",
                f.sha256
            );
        }
        let dest = base.join(safe_relative(&rel, "origin.keyrings.path")?);
        fs::create_dir_all(dest.parent().expect("under base"))?;
        fs::write(&dest, text).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}

/// A rebuild failed: keep its directory (the project and `out/logs`, where
/// the error says a failed step's log is; the temporary store, if any, is
/// removed) so the paths in the error stay valid, and say so.
fn keep_failed_rebuild(
    e: anyhow::Error,
    scratch: tempfile::TempDir,
    temp_store: Option<&Path>,
) -> anyhow::Error {
    if let Some(store) = temp_store {
        let _ = fs::remove_dir_all(store);
    }
    let kept = scratch.keep();
    e.context(format!(
        "cannot rebuild (the rebuild directory {} is kept for inspection, with the step logs in out/logs; \
         remove it when done)",
        kept.display()
    ))
}

/// Re-hash every blob of the pinned images already present in a reused
/// store, so a damaged store is reported rather than rebuilt from.
fn check_reused_blobs(root: &Path, inputs: &Inputs, origin: &Origin) -> Result<()> {
    let store = crate::oci::Store::open(root)?;
    for img in &inputs.images {
        let index = origin.images.iter().find(|o| o.name == img.name).and_then(|o| o.index_digest);
        for top in index.iter().chain(std::iter::once(&img.manifest_digest)) {
            if !store.has_blob(top) {
                continue;
            }
            verify_blob(&store, top)?;
            let (present, _) = store.closure(top)?;
            for d in &present {
                verify_blob(&store, d)?;
            }
        }
    }
    Ok(())
}

fn verify_blob(store: &crate::oci::Store, d: &Digest) -> Result<()> {
    let p = store.blob_path(d);
    let (found, _) =
        Digest::of_reader(fs::File::open(&p).with_context(|| format!("cannot read {}", p.display()))?)
            .with_context(|| format!("cannot read {}", p.display()))?;
    if found != *d {
        bail!(
            "cannot rebuild: the store's blob {} hashes to {found}; the store is damaged \
             (remove that file, or verify without --store)",
            p.display()
        );
    }
    Ok(())
}

/// Rebuild and compare; `Err` means the rebuild could not happen (exit 2).
///
/// The phases: the origin to rebuild from ([`rebuildable_origin`]) and the
/// tool version ([`tool_version_notes`]); the expected figures, read before
/// the (slow) rebuild so bad inputs fail fast ([`Expected::read`]); the
/// rebuild ([`rebuild`]); the comparisons ([`Figures`]); the verdict
/// ([`verdict_of`]) and, when it is not GOOD, a diff ([`diff_first_mismatch`]).
pub fn verify(subject: &Subject, opts: &VerifyOptions) -> Result<Report> {
    let inputs = &subject.inputs;
    let origin = rebuildable_origin(subject)?;
    let mut notes = tool_version_notes(subject, opts.allow_tool_mismatch)?;
    let expected = Expected::read(subject, opts)?;

    let scratch = tempfile::Builder::new()
        .prefix("eifbake-verify-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let (scratch, built) = rebuild(subject, origin, opts, scratch)?;
    if built.manifest.inputs != *inputs {
        notes.push(
            "the manifest's measured inputs differ from those its recipe and lock texts give (the rebuild \
             embeds the latter; compare the PCRs)"
                .into(),
        );
    }
    let scratch_dir = scratch.path().to_path_buf();
    let mut figures = Figures::new(&scratch_dir, &built)?;
    figures.compare_all(subject, &expected, &mut notes)?;
    let verdict = verdict_of(&figures.list, &mut notes);
    let diff = diff_first_mismatch(verdict, &expected.published, &figures, &built.eif)?;
    if verdict == Verdict::Bad && expected.published.is_empty() {
        notes
            .push("give the published EIF with --eif to see which section and ramdisk entries differ".into());
    }
    let kept = if opts.keep { Some(scratch.keep()) } else { None };
    Ok(Report {
        verdict,
        name: inputs.name.clone(),
        subject: subject.path.display().to_string(),
        eif_name: expected
            .published
            .last()
            .and_then(|p| p.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{}.eif", inputs.name)),
        figures: figures.list,
        notes,
        rebuilt_sha256: built.manifest.outputs.eif.sha256,
        diff,
        kept,
    })
}

/// The subject's origin (recipe and lock texts, where images and sources
/// came from); refused for an EIF alone, which carries only its measured
/// inputs, saying what to give instead.
fn rebuildable_origin(subject: &Subject) -> Result<&Origin> {
    subject.origin.as_ref().with_context(|| {
        format!(
            "cannot rebuild from {p} alone: an EIF embeds only its measured inputs (inputs format {FORMAT}: \
             images by digest, sources by tree hash, steps, settings), not the recipe and lock texts or \
             where its images and sources came from. Verify the manifest published with it and compare \
             with this EIF: eifbake verify {name}.manifest.json --eif {p}",
            p = subject.path.display(),
            name = subject.inputs.name
        )
    })
}

/// Refuse a subject built by another eifbake version unless `allow_mismatch`
/// (`--allow-tool-mismatch`); then the note saying so.
fn tool_version_notes(subject: &Subject, allow_mismatch: bool) -> Result<Vec<String>> {
    let tool = &subject.inputs.tool;
    if tool.version == TOOL_VERSION {
        return Ok(Vec::new());
    }
    if !allow_mismatch {
        bail!(
            "cannot rebuild: {} was built by {} {} but this is eifbake {TOOL_VERSION}; \
             use that version, or --allow-tool-mismatch to try anyway",
            subject.path.display(),
            tool.name,
            tool.version
        );
    }
    Ok(vec![format!(
        "built by {} {}, rebuilt by eifbake {TOOL_VERSION} (--allow-tool-mismatch)",
        tool.name, tool.version
    )])
}

/// An EIF whose own figures are expected: the subject when it is an EIF,
/// and `--eif`.
struct PublishedEif {
    /// `subject EIF` or `published EIF`.
    label: &'static str,
    path: PathBuf,
    sha256: Digest,
    measurements: Measurements,
    /// Its signature section, when signed.
    section: Option<Vec<u8>>,
}

/// Every expected figure, read before the rebuild.
struct Expected {
    /// A `--pcrs` file's measurements.
    pcrs_file: Option<Measurements>,
    published: Vec<PublishedEif>,
    /// The signature section the manifest records, when signed.
    manifest_section: Option<Vec<u8>>,
}

impl Expected {
    fn read(subject: &Subject, opts: &VerifyOptions) -> Result<Expected> {
        let pcrs_file = match &opts.pcrs {
            Some(p) => {
                let text = fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                Some(Measurements::parse_pcrs_file(&text).with_context(|| format!("{}", p.display()))?)
            }
            None => None,
        };
        let mut paths: Vec<(&'static str, PathBuf)> = Vec::new();
        if subject.is_eif {
            paths.push(("subject EIF", subject.path.clone()));
        }
        if let Some(p) = &opts.published_eif {
            paths.push(("published EIF", p.clone()));
        }
        let mut published = Vec::new();
        for (label, path) in paths {
            let eif = Eif::open(&path)?;
            let v = eif.verify(&Progress::bytes("measure", 0))?;
            let (sha256, _) = Digest::of_reader(fs::File::open(&path)?)?;
            let section = eif.signature_section()?;
            published.push(PublishedEif { label, path, sha256, measurements: v.measurements, section });
        }
        let manifest_section = match subject.outputs.as_ref().and_then(|o| o.signature.as_ref()) {
            Some(sig) => Some(sig.section_bytes()?),
            None => None,
        };
        Ok(Expected { pcrs_file, published, manifest_section })
    }
}

/// Recreate the project in `scratch` and build it there, unsigned and
/// without the step cache; a failed rebuild keeps `scratch`
/// ([`keep_failed_rebuild`]).
fn rebuild(
    subject: &Subject,
    origin: &Origin,
    opts: &VerifyOptions,
    scratch: tempfile::TempDir,
) -> Result<(tempfile::TempDir, crate::build::BuildResult)> {
    let inputs = &subject.inputs;
    let project = scratch.path().join("project");
    let recipe_path = recreate_project(inputs, origin, &opts.sources, &project)?;
    let store = match &opts.store {
        Some(s) => {
            check_reused_blobs(s, inputs, origin)?;
            s.clone()
        }
        None => scratch.path().join("store"),
    };
    let lockfile = project.join(safe_relative(&origin.lock.path, "origin.lock.path")?);
    let temp_store = opts.store.is_none();
    let built = build(
        &recipe_path,
        &BuildOptions {
            store: store.clone(),
            out_dir: scratch.path().join("out"),
            lockfile: Some(lockfile),
            runtime: opts.runtime,
            offline: opts.offline,
            no_cache: true,
            network: opts.allow_network,
            insecure: opts.insecure.clone(),
            mirrors: opts.mirrors.clone(),
            epoch: Some(inputs.source_date_epoch),
            step_timeout: opts.step_timeout,
            keep_work: false,
            signing: crate::build::SignWith::Unsigned,
        },
    );
    match built {
        Ok(b) => Ok((scratch, b)),
        Err(e) => Err(keep_failed_rebuild(e, scratch, temp_store.then_some(store.as_path()))),
    }
}

/// The comparisons of the rebuild with every expected figure, in order.
struct Figures<'a> {
    scratch: &'a Path,
    built: &'a crate::build::BuildResult,
    /// The rebuild's PCR0, PCR1, PCR2.
    rebuilt_pcrs: [Pcr; 3],
    /// The rebuild signed with each distinct signature section compared
    /// with (or why that section does not sign it).
    signed: Vec<(Vec<u8>, SignedRebuild)>,
    /// The EIF each source of expected figures was compared with (the
    /// rebuild, or the rebuild with that source's signature), by `from`.
    compared_with: BTreeMap<String, PathBuf>,
    list: Vec<Figure>,
}

impl<'a> Figures<'a> {
    fn new(scratch: &'a Path, built: &'a crate::build::BuildResult) -> Result<Figures<'a>> {
        let p = &built.manifest.outputs.pcrs;
        Ok(Figures {
            scratch,
            built,
            rebuilt_pcrs: [p.pcr0, p.pcr1, p.pcr2],
            signed: Vec::new(),
            compared_with: BTreeMap::new(),
            list: Vec::new(),
        })
    }

    /// The manifest's figures, each published EIF's, then the pcrs file's.
    fn compare_all(&mut self, subject: &Subject, expected: &Expected, notes: &mut Vec<String>) -> Result<()> {
        if let Some(o) = &subject.outputs {
            let m = &o.pcrs;
            self.image("manifest", o.eif.sha256, expected.manifest_section.as_deref(), m.pcr8)?;
            self.pcrs("manifest", [m.pcr0, m.pcr1, m.pcr2]);
            self.files(&o.files);
        }
        for p in &expected.published {
            let m = &p.measurements;
            self.image(p.label, p.sha256, p.section.as_deref(), m.pcr8)?;
            self.pcrs(p.label, [m.pcr0, m.pcr1, m.pcr2]);
        }
        if let Some(m) = &expected.pcrs_file {
            self.pcrs("pcrs file", [m.pcr0, m.pcr1, m.pcr2]);
            if let Some(p8) = &m.pcr8 {
                self.pcrs_file_pcr8(p8, notes);
            }
        }
        Ok(())
    }

    fn push(&mut self, what: &str, from: &str, expected: String, rebuilt: String, ok: bool) {
        self.list.push(Figure { what: what.into(), from: from.into(), expected, rebuilt, ok });
    }

    /// PCR0, PCR1 and PCR2 from `from` against the rebuild's.
    fn pcrs(&mut self, from: &str, expected: [Pcr; 3]) {
        for (i, (e, r)) in expected.iter().zip(self.rebuilt_pcrs).enumerate() {
            self.push(&format!("PCR{i}"), from, e.hex(), r.hex(), *e == r);
        }
    }

    /// The manifest's reported enclave paths (`outputs.files`) against the
    /// rebuild's, one figure per path either names.
    fn files(&mut self, expected: &[crate::manifest::ReportedFile]) {
        use crate::manifest::ReportedFile;
        let rebuilt = &self.built.manifest.outputs.files;
        let show = |f: Option<&ReportedFile>| match f {
            None => "not reported".to_string(),
            Some(ReportedFile { symlink: Some(t), .. }) => format!("symlink -> {t}"),
            Some(f) => format!(
                "{} ({} bytes)",
                f.sha256.map(|d| d.to_string()).unwrap_or_default(),
                f.size.unwrap_or_default()
            ),
        };
        let paths: std::collections::BTreeSet<&str> =
            expected.iter().chain(rebuilt).map(|f| f.path.as_str()).collect();
        let mut figures = Vec::new();
        for path in paths {
            let e = expected.iter().find(|f| f.path == path);
            let r = rebuilt.iter().find(|f| f.path == path);
            figures.push((format!("file {path}"), show(e), show(r), e == r));
        }
        for (what, e, r, ok) in figures {
            self.push(&what, "manifest", e, r, ok);
        }
    }

    /// A pcrs file's PCR8 comes from a signature: compared with the rebuild
    /// signed with the manifest's or a published EIF's section, if any.
    fn pcrs_file_pcr8(&mut self, p8: &Pcr, notes: &mut Vec<String>) {
        match self.signed.iter().find_map(|(_, r)| r.as_ref().ok()).map(|(_, _, rebuilt)| *rebuilt) {
            Some(rebuilt) => self.push("PCR8", "pcrs file", p8.hex(), rebuilt.hex(), *p8 == rebuilt),
            None => notes.push(
                "PCR8 (signing certificate) in the pcrs file is not checked: no signed manifest or \
                 EIF was given, and a rebuild without the key is unsigned"
                    .into(),
            ),
        }
    }

    /// The figures of one expected image: its sha256 against the rebuild
    /// (signed with its section when it has one), its signature, its PCR8.
    /// Records the EIF it was compared with.
    fn image(&mut self, from: &str, sha: Digest, section: Option<&[u8]>, pcr8: Option<Pcr>) -> Result<()> {
        let mut compared = self.built.eif.clone();
        let mut rebuilt_sha = self.built.manifest.outputs.eif.sha256;
        let mut rebuilt_pcr8 = None;
        if let Some(section) = section {
            let expected = "signs the rebuilt PCR0".to_string();
            match self.signed_rebuild(section)? {
                Ok((path, signed_sha, p8)) => {
                    self.push("signature", from, expected, "valid".into(), true);
                    compared = path;
                    rebuilt_sha = signed_sha;
                    rebuilt_pcr8 = Some(p8);
                }
                Err(problem) => self.push("signature", from, expected, problem, false),
            }
        }
        self.push("sha256", from, sha.to_string(), rebuilt_sha.to_string(), sha == rebuilt_sha);
        if let Some(p8) = pcr8 {
            let rebuilt = rebuilt_pcr8.map_or_else(|| "(unsigned)".to_string(), |p| p.hex());
            self.push("PCR8", from, p8.hex(), rebuilt, Some(p8) == rebuilt_pcr8);
        }
        self.compared_with.insert(from.to_string(), compared);
        Ok(())
    }

    /// The rebuild carrying `section` (no key needed: the section must sign
    /// the rebuilt PCR0), so whole files can still be compared. One signed
    /// copy per distinct section.
    fn signed_rebuild(&mut self, section: &[u8]) -> Result<SignedRebuild> {
        if let Some((_, r)) = self.signed.iter().find(|(b, _)| b == section) {
            return Ok(r.clone());
        }
        let report = crate::eif::signature::check(section, &self.rebuilt_pcrs[0]);
        let r = if report.valid {
            let path = self.scratch.join(format!("signed{}.eif", self.signed.len()));
            let w = crate::eif::sign_existing(
                &self.built.eif,
                &crate::eif::Signing::Section(section.to_vec()),
                &path,
                &Progress::bytes("sign", 0),
            )?;
            let (sha, _) = Digest::of_reader(fs::File::open(&path)?)?;
            Ok((path, sha, w.measurements.pcr8.expect("a signed image has PCR8")))
        } else {
            Err(report.problem.unwrap_or_else(|| "invalid".into()))
        };
        self.signed.push((section.to_vec(), r.clone()));
        Ok(r)
    }
}

/// GOOD when every figure matches; GOOD_MEASURED (with a note) when only a
/// published EIF's sha256 differs; BAD otherwise.
fn verdict_of(figures: &[Figure], notes: &mut Vec<String>) -> Verdict {
    let pcrs_ok = figures.iter().filter(|f| f.what != "sha256").all(|f| f.ok);
    let manifest_sha_ok = figures.iter().filter(|f| f.what == "sha256" && f.from == "manifest").all(|f| f.ok);
    if figures.iter().all(|f| f.ok) {
        Verdict::Good
    } else if pcrs_ok && manifest_sha_ok {
        notes.push(
            "measured content identical (PCRs equal); the files differ only in unmeasured metadata/signature"
                .into(),
        );
        Verdict::GoodMeasured
    } else {
        Verdict::Bad
    }
}

/// Unless GOOD: the diff between what the first published EIF that does not
/// match was compared with and that EIF.
fn diff_first_mismatch(
    verdict: Verdict,
    published: &[PublishedEif],
    figures: &Figures<'_>,
    built_eif: &Path,
) -> Result<Option<EifDiff>> {
    let mismatched = published.iter().find(|p| figures.list.iter().any(|f| f.from == p.label && !f.ok));
    match mismatched {
        Some(p) if verdict != Verdict::Good => {
            let a = Eif::open(figures.compared_with.get(p.label).map_or(built_eif, PathBuf::as_path))?;
            let b = Eif::open(&p.path)?;
            Ok(Some(compare(&a, &b, &Progress::bytes("diff", 0))?))
        }
        _ => Ok(None),
    }
}

/// The rebuild with a published signature section appended (its path, sha256
/// and PCR8), or why that section does not sign the rebuild.
type SignedRebuild = std::result::Result<(PathBuf, Digest, crate::pcr::Pcr), String>;

/// The in-toto Statement v1 with an SLSA Verification Summary v1 predicate
/// recording a verification, ready for a signer.
///
/// The subject is the EIF that was verified ([`Report::eif_name`]) with the
/// sha256 expected of it: the published file's, else the subject EIF's, else
/// the manifest's record.
/// `timeVerified` is `now` as given by the caller: the command passes
/// SOURCE_DATE_EPOCH when it is set (reproducible attestations) and the wall
/// clock otherwise, since the VSA records when the verification happened.
pub fn attestation(subject: &Subject, report: &Report, now: Epoch) -> serde_json::Value {
    let expected_sha = report
        .figures
        .iter()
        .find(|f| f.what == "sha256" && f.from == "published EIF")
        .or_else(|| report.figures.iter().find(|f| f.what == "sha256" && f.from == "subject EIF"))
        .or_else(|| report.figures.iter().find(|f| f.what == "sha256"))
        .map(|f| f.expected.clone())
        .unwrap_or_else(|| report.rebuilt_sha256.to_string());
    let file = report.eif_name.clone();
    let sha_hex = expected_sha.trim_start_matches("sha256:").to_string();
    let passed = report.verdict != Verdict::Bad;
    let input_name = subject.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    serde_json::json!({
        "_type": crate::manifest::STATEMENT_TYPE,
        "subject": [{ "name": file, "digest": { "sha256": sha_hex } }],
        "predicateType": VSA_PREDICATE_TYPE,
        "predicate": {
            "verifier": { "id": VERIFIER_ID, "version": { "eifbake": TOOL_VERSION } },
            "timeVerified": now.rfc3339(),
            "resourceUri": format!("file:{file}"),
            "policy": { "uri": POLICY_URI },
            "inputAttestations": [{
                "uri": format!("file:{input_name}"),
                "digest": { "sha256": subject.sha256.hex() },
            }],
            "verificationResult": if passed { "PASSED" } else { "FAILED" },
            "verifiedLevels": if passed { vec!["EIFBAKE_REBUILD_PCRS_MATCH"] } else { Vec::new() },
            "slsaVersion": "1.0",
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = "name = \"hello\"\nversion = \"0.1.0\"\n\n[images]\nbb = \"r.example/bb:1\"\n\n\
        [sources.app]\npath = \"app\"\n\n[enclave]\nrootfs = \"bb\"\n\
        kernel = { image = \"bb\", path = \"/k\" }\ninit = { image = \"bb\", path = \"/init\" }\n\
        cmdline = \"console=ttyS0\"\ncommand = [\"/bin/sh\"]\n";
    const LOCK: &str = "# written by eifbake lock; do not edit\nversion = 1\n";

    fn manifest() -> Manifest {
        let mut m = Manifest::from_json(include_bytes!("../tests/data/manifest.json")).unwrap();
        m.origin.recipe = crate::manifest::FileRef {
            path: "recipes/hello/recipe.toml".into(),
            sha256: Digest::of(RECIPE.as_bytes()),
            text: Some(RECIPE.into()),
        };
        m.origin.lock = crate::manifest::FileRef {
            path: "lockfiles/hello.lock".into(),
            sha256: Digest::of(LOCK.as_bytes()),
            text: Some(LOCK.into()),
        };
        m
    }

    fn inputs() -> Inputs {
        manifest().inputs
    }

    fn recreate(m: &Manifest, sources: &BTreeMap<String, PathBuf>, dir: &Path) -> Result<PathBuf> {
        recreate_project(&m.inputs, &m.origin, sources, dir)
    }

    fn err(r: Result<PathBuf>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn the_project_is_recreated_only_from_sound_embedded_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let none = BTreeMap::new();
        // The path source must be supplied.
        let e = err(recreate(&manifest(), &none, &dir.path().join("a")));
        assert!(e.contains("sources.app is a local directory") && e.contains("--source app=DIR"), "{e}");
        // Unknown source names are refused.
        let mut bad = BTreeMap::new();
        bad.insert("nope".to_string(), dir.path().to_path_buf());
        let e = err(recreate(&manifest(), &bad, &dir.path().join("b")));
        assert!(e.contains("no source \"nope\""), "{e}");
        // Texts must match their digests.
        let mut m = manifest();
        m.origin.recipe.text = Some(RECIPE.replace("0.1.0", "0.1.1"));
        let e = err(recreate(&m, &none, &dir.path().join("c")));
        assert!(e.contains("origin.recipe.text does not hash to origin.recipe.sha256"), "{e}");
        // A manifest without texts cannot be rebuilt alone.
        let mut m = manifest();
        m.origin.lock.text = None;
        let e = err(recreate(&m, &none, &dir.path().join("d")));
        assert!(e.contains("origin.lock.text is missing"), "{e}");
        // Paths stay inside the project.
        let mut m = manifest();
        m.origin.recipe.path = "../../etc/recipe.toml".into();
        let e = err(recreate(&m, &none, &dir.path().join("e")));
        assert!(e.contains("origin.recipe.path") && e.contains("without `..`"), "{e}");
    }

    #[test]
    fn attestation_is_a_vsa_statement() {
        let dir = tempfile::tempdir().unwrap();
        let subject = Subject {
            path: dir.path().join("hello.manifest.json"),
            sha256: Digest::of(b"manifest"),
            inputs: inputs(),
            origin: None,
            outputs: None,
            is_eif: false,
        };
        let mut report = Report {
            verdict: Verdict::Good,
            name: "hello".into(),
            subject: "hello.manifest.json".into(),
            eif_name: "hello.eif".into(),
            figures: vec![Figure {
                what: "sha256".into(),
                from: "manifest".into(),
                expected: Digest::of(b"eif").to_string(),
                rebuilt: Digest::of(b"eif").to_string(),
                ok: true,
            }],
            notes: vec![],
            rebuilt_sha256: Digest::of(b"eif"),
            diff: None,
            kept: None,
        };
        let st = attestation(&subject, &report, Epoch(1700000000));
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(st["subject"][0]["name"], "hello.eif");
        assert_eq!(st["subject"][0]["digest"]["sha256"], Digest::of(b"eif").hex());
        let p = &st["predicate"];
        assert_eq!(st["predicateType"], VSA_PREDICATE_TYPE);
        assert_eq!(p["verifier"]["id"], VERIFIER_ID);
        assert_eq!(p["timeVerified"], "2023-11-14T22:13:20Z");
        assert_eq!(p["verificationResult"], "PASSED");
        assert_eq!(p["inputAttestations"][0]["uri"], "file:hello.manifest.json");
        assert_eq!(p["inputAttestations"][0]["digest"]["sha256"], Digest::of(b"manifest").hex());
        report.verdict = Verdict::Bad;
        let st = attestation(&subject, &report, Epoch(0));
        assert_eq!(st["predicate"]["verificationResult"], "FAILED");
        assert_eq!(st["predicate"]["verifiedLevels"], serde_json::json!([]));
    }
}
