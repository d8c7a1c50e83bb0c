//! `build`: a recipe and its lock in, `out/NAME.eif` + `.pcrs` +
//! `.manifest.json` + `.provenance.json` out, the same bytes on every machine.
//!
//! The order of work, each piece delegated to its module:
//!
//! 1. [`Lock::load_checked_at`] refuses a drifted recipe or lock.
//! 2. Images: every pinned blob must be in the store ([`fetch::fetch_lock`]
//!    pulls missing ones unless `--offline`).
//! 3. Sources: materialised from their pins ([`crate::sources`]), refused when
//!    they changed.
//! 4. The kernel is taken from its image and refused when Nitro cannot boot
//!    it for the recipe's `arch` ([`crate::eif::kernel`]): before any step
//!    spends time.
//! 5. Steps: each runs in a fresh root filesystem made from its image's
//!    layers ([`crate::oci::layer`]) inside the sandbox ([`crate::sandbox`]).
//!    A step whose inputs (image, mounts, script, env, epoch, tool version)
//!    hash to a key already in the step cache ([`crate::cache`]) is not run
//!    again; the cached output is re-hashed and checked against the hash
//!    recorded when it was stored every time it is taken, and a damaged
//!    entry stops the build. A step that runs is read from its own scratch
//!    output for the rest of the build, and a copy is published in the cache
//!    by an atomic rename that never replaces an entry (other builds on the
//!    same store may be reading it). Sources (3.) are checked the same way
//!    on every build: a local directory is hashed on disk, a cached tree is
//!    re-hashed. A step to
//!    run whose image (by the platform its lock entry pins: the recipe's
//!    arch, or the image's own) is for another architecture than the host's is refused
//!    before its runtime starts unless an emulator can run it
//!    ([`crate::sandbox::execution_for`]); a recipe with no steps builds for
//!    any `arch` on any host. Each step that runs streams its output to
//!    `OUT_DIR/logs/RECIPE.STEP.log` ([`LOGS_DIR`]), which stays there after
//!    the build, failed or not (the error of a failed step names it); a
//!    cached step writes no log.
//!
//!    A root step ([`Step::root`], what a Containerfile lowers to) starts
//!    from an exact copy of an earlier root step's output (or its image,
//!    or nothing), gets its copies done by eifbake, and its root after the
//!    run is its output ([`root`]).
//!
//!    A fetch step (`network = true`) is the exception to "no network" and
//!    to the step cache: its output is pinned in the lock by output-tree
//!    hash ([`crate::lock::LockedStep`]) and taken from the store's fetched
//!    trees by that hash, or the step runs (with a network, see
//!    [`crate::sandbox::network`]) and any other tree is refused naming the
//!    first differing file (`fetch_step`). Later steps key it by that hash.
//!    `eifbake lock` runs the same phase to make the pins
//!    ([`pin_fetch_steps`]), `eifbake fetch` to fill the store
//!    ([`fetch_steps`]); `--offline` and `verify` without `--allow-network`
//!    never run one ([`BuildOptions::network`]).
//! 6. The enclave tree ([`crate::cpio::Tree`]) is assembled per the layout:
//!    step outputs are collected without following anything a step wrote
//!    (`collect_outputs`), the measured inputs ([`crate::manifest::Inputs`]:
//!    images by digest, sources by tree hash, steps, enclave settings; no
//!    registry hosts, no recipe text) embedded at [`INPUTS_PATH`];
//!    a command that cannot start in that tree (missing, or an ELF program
//!    whose interpreter is missing) is refused (`check_command_starts`);
//!    ramdisks written, the EIF written ([`crate::eif`]) with the same inputs
//!    as CustomMetadata.
//! 7. The manifest, PCRs and provenance are written beside the EIF. The
//!    manifest's `outputs.files` reports each enclave path the recipe's
//!    `report` names, looked up in the finished root filesystem
//!    (`reported_files`): a regular file by sha256 and size, a symlink by
//!    its target (never followed); a missing path, a directory or a device
//!    stops the build before the EIF is written.
//!
//! Untrusted recipes (`verify` rebuilds other people's) cannot write outside
//! the scratch and output directories: every name used as a path component
//! (recipe, image, source and step names) and every path was validated when
//! the recipe was parsed ([`crate::recipe`]).
//!
//! Scratch space (`$TMPDIR/eifbake-build-*`) and the staging directory
//! (`OUT_DIR/.eifbake-out-*`) are [`LiveTempDir`]s: locked while their build
//! runs, and removed by the next build when their build was killed.
//!
//! The four outputs are staged in a directory inside the output directory
//! and renamed into place together, the manifest last. Nothing from
//! the host (build path, clock, user, umask, locale, root or not) reaches
//! the outputs: trees are normalised by the cpio writer, device nodes that
//! an extraction without root had to skip are packed from the layers, the only time is
//! SOURCE_DATE_EPOCH, and the recipe and lock are named (in the unmeasured
//! manifest only) by paths relative to the project.
//!
//! Not for: the command line (`commands::build`) or comparing builds
//! (`verify`, `check`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cache::{RootCache, StepCache};
use crate::cpio::{Content, Node, Tree};
use crate::digest::Digest;
use crate::eif::kernel::KernelKind;
use crate::eif::{write_eif, EifInputs, Metadata, Signing};
use crate::epoch::Epoch;
use crate::fetch;
use crate::fsutil::{lstat_beneath, write_atomic, Found, LiveTempDir};
use crate::lock::{Lock, LockedStep};
use crate::manifest::{
    self, EifOutput, FileRef, Inputs, Manifest, Origin, Outputs, ReportedFile, SignatureOutput,
};
use crate::oci::layer::{apply_layers, ApplyOptions, DeviceNode, DevicePolicy, LayerSource};
use crate::oci::Store;
use crate::progress::Progress;
use crate::recipe::{Compression, ImageFile, Layout, Recipe, Step};
use crate::sandbox::{execution_for, Bind, NetworkAccess, Runtime, Sandbox, StepRun, BINFMT_MISC};
use crate::signing::Validity;
use crate::sources::{first_listing_difference, output_listing, SourceCache};

mod root;

/// Where the inputs manifest sits in the enclave root filesystem.
pub const INPUTS_PATH: &str = "etc/eifbake/inputs.json";
/// The directory of the output directory holding the step logs, `RECIPE.STEP.log`.
pub const LOGS_DIR: &str = "logs";
/// Scratch directories, in `$TMPDIR`; stale ones are removed by the next build.
pub const SCRATCH_PREFIX: &str = "eifbake-build-";
/// Staging directories for the four outputs, in the output directory; stale ones likewise.
pub const STAGE_PREFIX: &str = ".eifbake-out-";

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub store: PathBuf,
    pub out_dir: PathBuf,
    /// The lockfile, when not the recipe's default `lockfiles/NAME.lock`.
    pub lockfile: Option<PathBuf>,
    pub runtime: Runtime,
    pub offline: bool,
    pub no_cache: bool,
    /// Whether a fetch step (`network = true`) may run, with a network.
    /// `verify` rebuilds other people's recipes and gives none unless told
    /// (`--allow-network`); a fetch step whose pinned tree the store holds
    /// needs no run either way.
    pub network: bool,
    /// Registries reachable over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Registry mirrors, tried in order before an image's own registry.
    pub mirrors: Vec<crate::config::Mirror>,
    /// SOURCE_DATE_EPOCH given on the command line / environment (wins over the recipe).
    pub epoch: Option<Epoch>,
    pub step_timeout: Duration,
    /// Keep the scratch directory (for debugging); it is printed.
    pub keep_work: bool,
    /// Whether to sign the EIF.
    pub signing: SignWith,
}

/// Whether a build signs its EIF.
#[derive(Debug, Clone)]
pub enum SignWith {
    /// As the recipe's `[signing]` table says (unsigned when it has none),
    /// with these command-line overrides.
    Recipe(SigningOverrides),
    /// Never (`build --unsigned`; `verify`'s rebuild, which has no key).
    Unsigned,
}

/// Signing settings from the command line, over the recipe's `[signing]` table.
#[derive(Debug, Clone, Default)]
pub struct SigningOverrides {
    /// `--signing-certificate`: wins over `signing.certificate`.
    pub certificate: Option<PathBuf>,
    /// `--private-key`: wins over `signing.key`.
    pub key: Option<String>,
    /// `$EIFBAKE_SIGNING_KEY`: used when neither the command line nor the recipe names a key.
    pub fallback_key: Option<String>,
    pub validity: Validity,
    /// `--pkcs11-module` and `--pin-file`, for a `pkcs11:` key.
    pub token: crate::signing::TokenOptions,
}

/// The certificate and key a build signs with, or `None` for an unsigned
/// build: command line over recipe over `$EIFBAKE_SIGNING_KEY` (for the key).
/// The recipe's paths are relative to its directory.
pub fn signing_paths(
    recipe: &Recipe,
    recipe_path: &Path,
    o: &SigningOverrides,
) -> Result<Option<(PathBuf, String)>> {
    let base = Recipe::base_dir(recipe_path);
    let table = recipe.signing.as_ref();
    let certificate = match (&o.certificate, table) {
        (Some(c), _) => c.clone(),
        (None, Some(t)) => base.join(&t.certificate),
        (None, None) => {
            if o.key.is_some() {
                bail!(
                    "--private-key given, but no certificate: the recipe {} has no [signing] table; \
                     give --signing-certificate too",
                    Recipe::resolve_path(recipe_path).display()
                );
            }
            return Ok(None);
        }
    };
    let key = match (&o.key, table.and_then(|t| t.key.as_deref()), &o.fallback_key) {
        (Some(k), _, _) => k.clone(),
        (None, Some(k), _) if k.starts_with("pkcs11:") => k.to_string(),
        (None, Some(k), _) => base.join(k).to_string_lossy().into_owned(),
        (None, None, Some(k)) => k.clone(),
        (None, None, None) => bail!(
            "signing with {} but no private key: give --private-key KEY.pem, set EIFBAKE_SIGNING_KEY, \
             or add key = \"…\" to the recipe's [signing] table (or build --unsigned)",
            certificate.display()
        ),
    };
    Ok(Some((certificate, key)))
}

/// What a build produced.
#[derive(Debug, Clone, Serialize)]
pub struct BuildResult {
    pub eif: PathBuf,
    pub pcrs: PathBuf,
    pub manifest_path: PathBuf,
    pub provenance: PathBuf,
    pub manifest: Manifest,
    /// Steps taken from the cache / run.
    pub steps_cached: Vec<String>,
    pub steps_run: Vec<String>,
    /// Seconds each step of `steps_run` spent in the sandbox (its runtime
    /// started to its exit; extracting its root filesystem not included).
    pub step_seconds: BTreeMap<String, f64>,
}

/// Build a recipe. See the module documentation for the order of work;
/// each phase is one function below.
pub fn build(recipe_path: &Path, opts: &BuildOptions) -> Result<BuildResult> {
    let loaded = load_inputs(recipe_path, opts)?;
    let (recipe, lock) = (&loaded.recipe, &loaded.lock);
    // The signing key is loaded and checked first, so a bad one fails before any work.
    let signer = load_signer(recipe, recipe_path, &opts.signing)?;
    let store = Store::open(&opts.store)?;
    // Held for the whole build: `store gc` waits, so it never removes blobs
    // or cache entries this build reads.
    let _using_store = store.writing()?;
    let trusted = fetch_images(&store, &loaded, recipe_path, opts)?;

    let scratch = LiveTempDir::new_in(&std::env::temp_dir(), SCRATCH_PREFIX)?;
    let work = scratch.path().to_path_buf();
    let logs = logs_dir(&opts.out_dir)?;
    let source_dirs = materialise_sources(&store, &loaded, recipe_path, opts.offline)?;

    // Image root filesystems, extracted on demand.
    let apply_options = recipe.limits.apply_options();
    let mut images = ImageTrees::new(&store, &loaded, &work, &apply_options, opts);
    let kernel = checked_kernel(&loaded, &mut images)?;
    let cx = StepsContext {
        loaded: &loaded,
        opts,
        store: &store,
        work: &work,
        logs: &logs,
        source_dirs: &source_dirs,
        pinning: Pinning::Check,
    };
    let steps = run_steps(&cx, &images, &mut lock.steps.clone(), recipe.steps.len())?;

    // Inputs manifest: the measured inputs (embedded below, so the PCRs
    // commit to them) and their unmeasured origin (the manifest only).
    let inputs = Inputs::of_recipe(recipe, lock, loaded.epoch)?;
    let mut origin = Origin::of_recipe(recipe, lock, loaded.recipe_ref.clone(), loaded.lock_ref.clone());
    origin.containerfile = containerfile_ref(&loaded)?;
    origin.add_trust(&trusted, keyring_refs(recipe, recipe_path)?);
    let inputs_json = inputs.to_json()?;
    let trees = enclave_trees(recipe, &loaded.recipe_file, &mut images, &steps.outs, &inputs_json)?;
    let files = reported_files(recipe, &loaded.recipe_file, trees.last().expect("a user ramdisk"))?;
    let ramdisks = write_ramdisks(&trees, &work, recipe.enclave.compression, loaded.epoch)?;

    let stage = LiveTempDir::new_in(&opts.out_dir, STAGE_PREFIX)?;
    let manifest = write_staged_outputs(
        &loaded,
        &mut images,
        EifParts { kernel, ramdisks, inputs_json: &inputs_json, signer: signer.as_ref() },
        inputs,
        origin,
        files,
        stage.path(),
    )?;
    let [eif, pcrs, provenance, manifest_path] = publish(stage.path(), &opts.out_dir, &recipe.name)?;
    if opts.keep_work {
        let kept = scratch.keep()?;
        eprintln!("eifbake: kept the scratch directory {}", kept.display());
    }
    Ok(BuildResult {
        eif,
        pcrs,
        manifest_path,
        provenance,
        manifest,
        steps_cached: steps.cached,
        steps_run: steps.run,
        step_seconds: steps.seconds,
    })
}

/// `eifbake lock`: pin the fetch steps of the recipe at `recipe_path` in
/// `lock` (freshly made by [`crate::lock::relock`], not yet saved), running
/// each, in order, with its inputs as a build would give them (the steps
/// before it run or come from the step cache). Pins of `existing` whose
/// step definition still matches are kept, and checked as a build checks
/// them, unless `update`. Each fetched tree is kept in the store. Returns
/// the names of the fetch steps that ran.
pub fn pin_fetch_steps(
    recipe_path: &Path,
    lock: &mut Lock,
    lock_path: &Path,
    existing: Option<&Lock>,
    update: bool,
    opts: &BuildOptions,
) -> Result<Vec<String>> {
    let (recipe, _) = Recipe::load(recipe_path)?;
    let unpinned = Loaded::unchecked(recipe_path, recipe, lock.clone(), lock_path, opts);
    let mut pins = existing.map(|l| l.steps.clone()).unwrap_or_default();
    let ran = run_fetch_steps(recipe_path, &unpinned, opts, Pinning::Lock { update }, &mut pins)?;
    let names: Vec<&String> = unpinned.recipe.steps.iter().filter(|s| s.network).map(|s| &s.name).collect();
    pins.retain(|name, _| names.contains(&name));
    lock.steps = pins;
    Ok(ran)
}

/// `eifbake fetch`: make sure the store holds the pinned output of every
/// fetch step of a recipe (running the ones it lacks, with the steps they
/// need), so `build --offline` works. Returns the fetch steps that ran.
pub fn fetch_steps(recipe_path: &Path, opts: &BuildOptions) -> Result<Vec<String>> {
    let loaded = load_inputs(recipe_path, opts)?;
    let mut pins = loaded.lock.steps.clone();
    run_fetch_steps(recipe_path, &loaded, opts, Pinning::Check, &mut pins)
}

/// Phases 2, 3 and 5 up to the last fetch step; the fetch steps that ran.
fn run_fetch_steps(
    recipe_path: &Path,
    loaded: &Loaded,
    opts: &BuildOptions,
    pinning: Pinning,
    pins: &mut BTreeMap<String, LockedStep>,
) -> Result<Vec<String>> {
    let Some(last) = loaded.recipe.steps.iter().rposition(|s| s.network) else { return Ok(Vec::new()) };
    let store = Store::open(&opts.store)?;
    let _using_store = store.writing()?;
    fetch_images(&store, loaded, recipe_path, opts)?;
    let scratch = LiveTempDir::new_in(&std::env::temp_dir(), SCRATCH_PREFIX)?;
    let work = scratch.path().to_path_buf();
    let logs = logs_dir(&opts.out_dir)?;
    let source_dirs = materialise_sources(&store, loaded, recipe_path, opts.offline)?;
    let apply_options = loaded.recipe.limits.apply_options();
    let images = ImageTrees::new(&store, loaded, &work, &apply_options, opts);
    let cx = StepsContext {
        loaded,
        opts,
        store: &store,
        work: &work,
        logs: &logs,
        source_dirs: &source_dirs,
        pinning,
    };
    let done = run_steps(&cx, &images, pins, last + 1)?;
    let fetch: Vec<&String> = loaded.recipe.steps.iter().filter(|s| s.network).map(|s| &s.name).collect();
    Ok(done.run.into_iter().filter(|n| fetch.contains(&n)).collect())
}

/// The recipe and lock of a build, checked against each other, with what
/// the rest of the build derives from them.
struct Loaded {
    recipe: Recipe,
    lock: Lock,
    /// The lockfile read (the recipe's default one unless `--lockfile`).
    lock_path: PathBuf,
    /// The recipe file itself (a directory `recipe_path` resolved).
    recipe_file: PathBuf,
    /// The recipe and lock as the (unmeasured) origin names them, with
    /// their text, so `verify` can rebuild from the manifest alone.
    recipe_ref: FileRef,
    lock_ref: FileRef,
    /// SOURCE_DATE_EPOCH: the options' over the recipe's over 0.
    epoch: Epoch,
}

impl Loaded {
    /// A recipe with a lock that is being made (`eifbake lock`): not
    /// checked against each other, and with no texts for an origin.
    fn unchecked(
        recipe_path: &Path,
        recipe: Recipe,
        lock: Lock,
        lock_path: &Path,
        opts: &BuildOptions,
    ) -> Loaded {
        let recipe_file = Recipe::resolve_path(recipe_path);
        let named = |path: String| FileRef { path, sha256: Digest::of(b""), text: None };
        let epoch = opts.epoch.or(recipe.source_date_epoch).unwrap_or(Epoch(0));
        Loaded {
            recipe_ref: named(crate::recipe::Project::of(&recipe_file).recipe_relative()),
            lock_ref: named(format!("lockfiles/{}.lock", recipe.name)),
            recipe,
            lock,
            lock_path: lock_path.to_path_buf(),
            recipe_file,
            epoch,
        }
    }
}

/// Phase 1: the recipe and lock, refused when either drifted
/// ([`Lock::load_checked_at`]), and their texts for the origin.
fn load_inputs(recipe_path: &Path, opts: &BuildOptions) -> Result<Loaded> {
    let (recipe, lock) = Lock::load_checked_at(recipe_path, opts.lockfile.as_deref())?;
    let lock_path = opts.lockfile.clone().unwrap_or_else(|| Lock::default_path(recipe_path, &recipe.name));
    let lock_text = fs::read_to_string(&lock_path)
        .with_context(|| format!("cannot read {} as UTF-8 text", lock_path.display()))?;
    let recipe_file = Recipe::resolve_path(recipe_path);
    let recipe_text = fs::read_to_string(&recipe_file)
        .with_context(|| format!("cannot read {} as UTF-8 text", recipe_file.display()))?;
    let recipe_ref = FileRef {
        path: crate::recipe::Project::of(&recipe_file).recipe_relative(),
        sha256: Digest::of(recipe_text.as_bytes()),
        text: Some(recipe_text),
    };
    let lock_ref = FileRef {
        path: format!("lockfiles/{}.lock", recipe.name),
        sha256: Digest::of(lock_text.as_bytes()),
        text: Some(lock_text),
    };
    let epoch = match opts.epoch {
        Some(e) => e,
        None => recipe.source_date_epoch.unwrap_or(Epoch(0)),
    };
    Ok(Loaded { recipe, lock, lock_path, recipe_file, recipe_ref, lock_ref, epoch })
}

/// The Containerfile a recipe names, as the origin records it: its path
/// relative to the recipe's directory and its text.
fn containerfile_ref(loaded: &Loaded) -> Result<Option<FileRef>> {
    let Some(rel) = &loaded.recipe.containerfile else { return Ok(None) };
    let file = Recipe::base_dir(&loaded.recipe_file).join(rel);
    let text =
        fs::read_to_string(&file).with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
    let path =
        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
    Ok(Some(FileRef { path, sha256: Digest::of(text.as_bytes()), text: Some(text) }))
}

/// The signer of a signed build ([`signing_paths`]), loaded and checked, or
/// `None` for an unsigned one.
fn load_signer(
    recipe: &Recipe,
    recipe_path: &Path,
    signing: &SignWith,
) -> Result<Option<std::sync::Arc<dyn crate::signing::Signer>>> {
    match signing {
        SignWith::Unsigned => Ok(None),
        SignWith::Recipe(o) => match signing_paths(recipe, recipe_path, o)? {
            Some((cert, key)) => {
                Ok(Some(crate::signing::load_signer_with(&cert, &key, o.validity, &o.token)?))
            }
            None => Ok(None),
        },
    }
}

/// Phase 2: every image blob pinned in the lock is in the store (missing
/// ones pulled unless `--offline`), and every image with a `[trust]`
/// policy carries enough valid signatures ([`crate::trust`]: the store's
/// kept ones, fetched again only when they fall short and not offline).
fn fetch_images(
    store: &Store,
    loaded: &Loaded,
    recipe_path: &Path,
    opts: &BuildOptions,
) -> Result<BTreeMap<String, crate::trust::ImageVerdict>> {
    let registry = crate::oci::registry::Registry::new(&opts.insecure).with_mirrors(opts.mirrors.clone());
    fetch::fetch_lock(store, &loaded.lock, &registry, opts.offline, &Progress::bytes("fetch", 0))?;
    let source = crate::trust::Source::Kept { offline: opts.offline };
    crate::trust::check_images(store, &loaded.recipe, &loaded.lock, recipe_path, source)
}

/// The keyrings of the recipe's `[trust]` policies, with their text, for
/// the manifest's origin (so `verify` can recreate them).
fn keyring_refs(recipe: &Recipe, recipe_path: &Path) -> Result<Vec<FileRef>> {
    let base = Recipe::base_dir(recipe_path);
    let mut out = Vec::new();
    for rel in crate::trust::keyrings(recipe) {
        let p = base.join(&rel);
        let text = fs::read_to_string(&p).with_context(|| {
            format!("cannot read keyring {} as text (export it with --armor)", p.display())
        })?;
        out.push(FileRef {
            path: rel.to_string_lossy().into_owned(),
            sha256: Digest::of(text.as_bytes()),
            text: Some(text),
        });
    }
    Ok(out)
}

/// Phase 3: each source materialised from its pin (refused when it
/// changed); its directory by source name.
fn materialise_sources(
    store: &Store,
    loaded: &Loaded,
    recipe_path: &Path,
    offline: bool,
) -> Result<BTreeMap<String, PathBuf>> {
    let base_dir = Recipe::base_dir(recipe_path);
    let cache = SourceCache::new(store.layout().sources());
    let mut source_dirs = BTreeMap::new();
    for (name, source) in &loaded.recipe.sources {
        let pin = loaded.lock.sources.get(name).with_context(|| {
            format!("sources.{name} is not pinned in {}; run `eifbake lock`", loaded.lock_path.display())
        })?;
        let dir = cache.get(name, source, &base_dir, pin, offline)?;
        source_dirs.insert(name.clone(), dir);
    }
    Ok(source_dirs)
}

/// Phase 4: the kernel file, refused when Nitro cannot boot it for the
/// recipe's arch: before any step spends time.
fn checked_kernel(loaded: &Loaded, images: &mut ImageTrees<'_>) -> Result<PathBuf> {
    let (recipe, e) = (&loaded.recipe, &loaded.recipe.enclave);
    let kernel = images.file(&e.kernel)?;
    let what = format!(
        "kernel {} of image {:?} ({})",
        e.kernel.path, e.kernel.image, loaded.lock.images[&e.kernel.image].reference
    );
    if let Some(why) = KernelKind::of_file(&kernel)?.refusal(&what, recipe.arch) {
        bail!("recipe {}: enclave.kernel: {why}", loaded.recipe_file.display());
    }
    Ok(kernel)
}

/// What the steps phase needs besides the image trees.
struct StepsContext<'a> {
    loaded: &'a Loaded,
    opts: &'a BuildOptions,
    store: &'a Store,
    /// The build's scratch directory.
    work: &'a Path,
    /// `OUT_DIR/logs`.
    logs: &'a Path,
    source_dirs: &'a BTreeMap<String, PathBuf>,
    pinning: Pinning,
}

/// How the steps phase treats fetch steps (`network = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// A build or `eifbake fetch`: each fetch step must have a pin whose
    /// definition matches it; its output is taken from the store by hash,
    /// or the step runs and anything but the pinned tree is refused.
    Check,
    /// `eifbake lock`: a pin whose definition still matches is kept (and
    /// checked as a build would) unless `update`; the others are made by
    /// running the step.
    Lock { update: bool },
}

/// What the steps phase produced.
struct StepsDone {
    /// Each step's output directory and cache key, by step name.
    outs: BTreeMap<String, (PathBuf, Digest)>,
    /// Step names taken from the cache / run, in recipe order.
    cached: Vec<String>,
    run: Vec<String>,
    /// Sandbox seconds of each step that ran, by name.
    seconds: BTreeMap<String, f64>,
}

/// Phase 5: the first `until` steps, in recipe order: a fetch step by its
/// pin ([`fetch_step`]), any other taken from the step cache when its key
/// ([`step_key`]) is there (and `--no-cache` was not given), run
/// ([`run_step`]) and published in the cache otherwise. `pins` are the
/// fetch steps' pins (the lock's; `eifbake lock` adds to them).
fn run_steps(
    cx: &StepsContext<'_>,
    images: &ImageTrees<'_>,
    pins: &mut BTreeMap<String, LockedStep>,
    until: usize,
) -> Result<StepsDone> {
    let (recipe, epoch) = (&cx.loaded.recipe, cx.loaded.epoch);
    let sandbox = Sandbox::new(cx.opts.runtime);
    let step_cache = StepCache::new(cx.store.root());
    let mut done =
        StepsDone { outs: BTreeMap::new(), cached: Vec::new(), run: Vec::new(), seconds: BTreeMap::new() };
    for step in recipe.steps.iter().take(until) {
        if step.network {
            let (out, key, ran) = fetch_step(cx, &sandbox, images, step, &done.outs, pins)?;
            if let Some(took) = ran {
                done.seconds.insert(step.name.clone(), took.as_secs_f64());
            }
            if ran.is_some() { &mut done.run } else { &mut done.cached }.push(step.name.clone());
            done.outs.insert(step.name.clone(), (out, key));
            continue;
        }
        let (key, mounts) = step_key(step, &cx.loaded.lock, epoch, &done.outs, cx.source_dirs);
        let cached = if cx.opts.no_cache { None } else { step_cache.lookup(&step.name, &key)? };
        let out = if let Some(cached) = cached {
            done.cached.push(step.name.clone());
            cached
        } else {
            let run = step_run(cx, step, mounts, None);
            let inputs = root::RootInputs { prior: &done.outs, source_dirs: cx.source_dirs, epoch };
            let took = run_step(
                &sandbox,
                images,
                recipe,
                &cx.loaded.recipe_file,
                &cx.loaded.lock,
                step,
                &run,
                &inputs,
            )?;
            done.seconds.insert(step.name.clone(), took.as_secs_f64());
            let out_dir = run.out_dir;
            step_cache.publish(&step.name, &key, &out_dir)?;
            done.run.push(step.name.clone());
            out_dir
        };
        done.outs.insert(step.name.clone(), (out, key));
    }
    Ok(done)
}

/// The sandbox run of `step` in the build's scratch directory, its log in `OUT_DIR/logs`.
fn step_run(
    cx: &StepsContext<'_>,
    step: &Step,
    mounts: Vec<Bind>,
    network: Option<NetworkAccess>,
) -> StepRun {
    StepRun {
        name: step.name.clone(),
        rootfs: cx.work.join("steps").join(&step.name).join("rootfs"),
        mounts,
        workdir: step.workdir.clone(),
        script: step.run.clone(),
        env: step.env.clone(),
        epoch: cx.loaded.epoch,
        out_dir: cx.work.join("steps").join(&step.name).join("out"),
        log: cx.logs.join(format!("{}.{}.log", cx.loaded.recipe.name, step.name)),
        timeout: cx.opts.step_timeout,
        network,
        user: None,
        keep_out: false,
        lower: None,
    }
}

/// One fetch step (`network = true`): its output directory, the key later
/// steps see it by (derived from its output-tree hash) and whether it ran.
///
/// Its pin must match its definition ([`fetch_definition`]). The pinned
/// tree is taken from the store (`STORE/eifbake/fetched`, checked) unless
/// `--no-cache` (which a step that may not run, see
/// [`BuildOptions::network`], ignores); else the step runs with a network
/// (never with `--offline`) and a tree other than the pinned one is refused, naming
/// the first differing file from the lock's listing. Under
/// [`Pinning::Lock`] a step without a matching pin runs and is pinned.
fn fetch_step(
    cx: &StepsContext<'_>,
    sandbox: &Sandbox,
    images: &ImageTrees<'_>,
    step: &Step,
    prior: &BTreeMap<String, (PathBuf, Digest)>,
    pins: &mut BTreeMap<String, LockedStep>,
) -> Result<(PathBuf, Digest, Option<Duration>)> {
    let (definition, mounts) = fetch_definition(step, &cx.loaded.lock, prior, cx.source_dirs);
    let keep = kept_pin(cx, step, &definition, pins.get(&step.name))?;
    let fetched = StepCache::fetched(cx.store.root());
    if let Some(pin) = &keep {
        // --no-cache runs a fetch step again, when it may run at all.
        if !cx.opts.no_cache || !cx.opts.network {
            if let Some(dir) = fetched.lookup_fetched(&step.name, &pin.output)? {
                return Ok((dir, fetched_key(&pin.output), None));
            }
        }
    }
    if !cx.opts.network {
        bail!(
            "step {:?} has network = true and would run with a network: a fetch step reaches whatever this \
             machine reaches (its LAN and cloud metadata services included), and this recipe is not yours. \
             Give --allow-network to let it, or rebuild with --store STORE holding its pinned output",
            step.name
        );
    }
    if cx.opts.offline {
        let (what, way) = match keep {
            Some(_) => ("its pinned output is not in the store", "eifbake fetch"),
            None => ("it must run to be pinned", "eifbake lock"),
        };
        bail!(
            "step {:?} has network = true and {what} (store {}, under eifbake/fetched), and --offline \
             forbids running it; run `{way} {}` (online) first",
            step.name,
            cx.store.root().display(),
            cx.loaded.recipe_file.display()
        );
    }
    let run = step_run(cx, step, mounts, Some(NetworkAccess::from_env()?));
    let (recipe, lock) = (&cx.loaded.recipe, &cx.loaded.lock);
    let inputs = root::RootInputs { prior, source_dirs: cx.source_dirs, epoch: cx.loaded.epoch };
    let took = run_step(sandbox, images, recipe, &cx.loaded.recipe_file, lock, step, &run, &inputs)?;
    let (output, files) = output_listing(&run.out_dir)
        .with_context(|| format!("step {:?}: hashing what it fetched", step.name))?;
    match keep {
        Some(pin) if pin.output != output => bail!(
            "step {:?} (network = true) fetched a tree other than the one {} pins: first difference: {}; \
             expected output {}, got {output}. A fetch step's result is trusted by its hash only: if the \
             change upstream is intended, run `eifbake lock --update {}` to pin the new tree",
            step.name,
            cx.loaded.lock_path.display(),
            first_listing_difference(&pin.files, &files).unwrap_or_else(|| "none by path".into()),
            pin.output,
            cx.loaded.recipe_file.display()
        ),
        Some(_) => {}
        None => {
            pins.insert(step.name.clone(), LockedStep { definition, output, files });
        }
    }
    fetched.publish(&step.name, &output, &run.out_dir)?;
    Ok((run.out_dir, fetched_key(&output), Some(took)))
}

/// The pin of a fetch step to keep, `None` when `eifbake lock` is to make
/// a new one; an error when a build finds no pin or one for another
/// definition of the step.
fn kept_pin(
    cx: &StepsContext<'_>,
    step: &Step,
    definition: &Digest,
    pin: Option<&LockedStep>,
) -> Result<Option<LockedStep>> {
    let (lock_path, recipe) = (cx.loaded.lock_path.display(), cx.loaded.recipe_file.display());
    match (cx.pinning, pin) {
        (Pinning::Lock { update: true }, _) => Ok(None),
        (_, Some(p)) if p.definition == *definition => Ok(Some(p.clone())),
        (Pinning::Lock { .. }, _) => Ok(None),
        (Pinning::Check, Some(p)) => bail!(
            "step {:?} (network = true) changed since {lock_path} pinned its output: its definition (image, \
             run, env, workdir, mounts) now hashes to {definition}, the pin was made for {}; run `eifbake lock \
             {recipe}` again",
            step.name,
            p.definition
        ),
        (Pinning::Check, None) => bail!(
            "step {:?} has network = true but {lock_path} pins no output for it ([steps.{}]); run `eifbake lock \
             {recipe}`",
            step.name,
            step.name
        ),
    }
}

/// What later steps' keys see of a fetch step: its output-tree hash.
fn fetched_key(output: &Digest) -> Digest {
    let mut key = KeyHasher::new();
    key.field("fetched", output.to_string().as_bytes());
    key.finish()
}

/// A fetch step's definition hash, which its pin records: its image's
/// manifest digest, workdir, script, env and mounts (by what they hold);
/// not the epoch or the tool version, which change no download. With the
/// mounts the step runs with.
fn fetch_definition(
    step: &Step,
    lock: &Lock,
    prior: &BTreeMap<String, (PathBuf, Digest)>,
    source_dirs: &BTreeMap<String, PathBuf>,
) -> (Digest, Vec<Bind>) {
    let mut key = KeyHasher::with_domain(b"eifbake-fetch-definition-v1\0");
    key.field("image", image_id(lock, &step.image).as_bytes());
    root_fields(&mut key, step, lock, prior);
    key.field("workdir", step.workdir.as_bytes());
    key.field("run", step.run.as_bytes());
    for (k, v) in &step.env {
        key.field("env", format!("{k}={v}").as_bytes());
    }
    let mut mounts = Vec::new();
    for (guest, id, bind) in step_mounts(step, lock, prior, source_dirs) {
        key.field("mount", format!("{guest}={id}").as_bytes());
        mounts.push(bind);
    }
    (key.finish(), mounts)
}

/// Each mount of `step`: its guest path, what identifies its content (a
/// source's tree hash, an earlier step's key) and its read-only bind.
fn step_mounts(
    step: &Step,
    lock: &Lock,
    prior: &BTreeMap<String, (PathBuf, Digest)>,
    source_dirs: &BTreeMap<String, PathBuf>,
) -> Vec<(String, String, Bind)> {
    step.mounts
        .iter()
        .map(|(guest, what)| {
            let (host, id) = if let Some(prev) = what.strip_prefix("step:") {
                let (dir, k) = &prior[prev];
                (dir.clone(), k.to_string())
            } else {
                (source_dirs[what].clone(), lock.sources[what].tree.to_string())
            };
            (guest.clone(), id, Bind { host, guest: guest.clone(), readonly: true })
        })
        .collect()
}

/// What identifies image `name` in a key: its manifest digest (empty for
/// a root step without an image).
fn image_id(lock: &Lock, name: &str) -> String {
    lock.images.get(name).map(|li| li.manifest.to_string()).unwrap_or_default()
}

/// A root step's root, copies (each source by what it holds) and user, in
/// its key; nothing for other steps, whose keys stay as they were.
fn root_fields(key: &mut KeyHasher, step: &Step, lock: &Lock, prior: &BTreeMap<String, (PathBuf, Digest)>) {
    let Some(root) = &step.root else { return };
    let id = |what: &str| -> String {
        match what.split_once(':') {
            Some(("step", n)) => format!("step:{}", prior[n].1),
            Some(("source", n)) => format!("source:{}", lock.sources[n].tree),
            Some(("image", n)) => format!("image:{}", image_id(lock, n)),
            _ => what.to_string(),
        }
    };
    key.field("root", id(root).as_bytes());
    for c in &step.copy {
        let from = c.from.as_deref().map(id).unwrap_or_default();
        let line = format!(
            "{from}\0{}\0{}\0{}\0{}",
            c.src.join("\0"),
            c.dst,
            c.mode.as_deref().unwrap_or(""),
            c.no_archives
        );
        key.field("copy", line.as_bytes());
    }
    key.field("user", step.user.as_deref().unwrap_or("").as_bytes());
}

/// A step's cache key: the tool version, the runtime ABI, its image's
/// manifest digest, the epoch, its workdir, script and env, and each mount
/// by what it holds (a source's tree hash, an earlier step's key); with the
/// mounts the step runs with (`prior` holds the earlier steps' outputs).
fn step_key(
    step: &Step,
    lock: &Lock,
    epoch: Epoch,
    prior: &BTreeMap<String, (PathBuf, Digest)>,
    source_dirs: &BTreeMap<String, PathBuf>,
) -> (Digest, Vec<Bind>) {
    let mut mounts = Vec::new();
    let mut key = KeyHasher::new();
    key.field("tool", manifest::TOOL_VERSION.as_bytes());
    key.field("runtime-abi", b"1");
    key.field("image", image_id(lock, &step.image).as_bytes());
    root_fields(&mut key, step, lock, prior);
    key.field("epoch", epoch.to_string().as_bytes());
    key.field("workdir", step.workdir.as_bytes());
    key.field("run", step.run.as_bytes());
    for (k, v) in &step.env {
        key.field("env", format!("{k}={v}").as_bytes());
    }
    for (guest, id, bind) in step_mounts(step, lock, prior, source_dirs) {
        key.field("mount", format!("{guest}={id}").as_bytes());
        mounts.push(bind);
    }
    (key.finish(), mounts)
}

/// Phase 6 (end): each enclave tree written as a cpio ramdisk in `work`,
/// compressed as the recipe says; their paths in order.
fn write_ramdisks(
    trees: &[Tree],
    work: &Path,
    compression: Compression,
    epoch: Epoch,
) -> Result<Vec<PathBuf>> {
    let mut ramdisks = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let path = work.join(format!("ramdisk{i}.cpio"));
        let f = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, f);
        match compression {
            Compression::None => {
                let mut w = w;
                tree.write(&mut w, epoch)?;
                w.flush()?;
            }
            Compression::Gzip => {
                let mut gz = crate::gzip::GzipWriter::new(w);
                tree.write(&mut gz, epoch)?;
                let (mut w, _) = gz.finish()?;
                w.flush()?;
            }
        }
        ramdisks.push(path);
    }
    Ok(ramdisks)
}

/// What goes into the EIF besides the recipe's enclave settings.
struct EifParts<'a> {
    kernel: PathBuf,
    ramdisks: Vec<PathBuf>,
    /// The measured inputs, also the EIF's CustomMetadata.
    inputs_json: &'a [u8],
    signer: Option<&'a std::sync::Arc<dyn crate::signing::Signer>>,
}

/// Phase 7: the EIF, PCRs, provenance and manifest written into `stage` as
/// `NAME.{eif,pcrs,provenance.json,manifest.json}`; returns the manifest.
///
/// They are renamed into place afterwards ([`publish`]) in one burst, the
/// manifest (which names the EIF's sha256) last: an interruption while they
/// are written leaves the previous outputs as they were; only one between
/// the four renames can leave old and new side by side, and then the
/// manifest is the old one.
fn write_staged_outputs(
    loaded: &Loaded,
    images: &mut ImageTrees<'_>,
    parts: EifParts<'_>,
    inputs: Inputs,
    origin: Origin,
    files: Vec<ReportedFile>,
    stage: &Path,
) -> Result<Manifest> {
    let (recipe, e, epoch) = (&loaded.recipe, &loaded.recipe.enclave, loaded.epoch);
    let kernel_config = match &e.kernel.config {
        Some(c) => {
            Some(images.file(&ImageFile { image: e.kernel.image.clone(), path: c.clone(), config: None })?)
        }
        None => None,
    };
    let metadata = Metadata::new(
        &recipe.name,
        &recipe.version,
        epoch,
        kernel_config.as_deref(),
        Some(serde_json::from_slice(parts.inputs_json)?),
    )?;
    let staged = |ext: &str| stage.join(format!("{}.{ext}", recipe.name));
    let written = write_eif(
        &EifInputs {
            kernel: parts.kernel,
            cmdline: e.cmdline.clone(),
            ramdisks: parts.ramdisks,
            arch: recipe.arch,
            default_mem: e.memory_mib << 20,
            default_cpus: e.cpus,
            epoch,
            metadata,
            signing: parts.signer.cloned().map(Signing::Key),
        },
        &staged("eif"),
        &Progress::bytes("eif", 0),
    )?;
    let (eif_sha, eif_size) = Digest::of_reader(fs::File::open(staged("eif"))?)?;
    let m = &written.measurements;
    let manifest = Manifest {
        inputs,
        origin,
        outputs: Outputs {
            eif: EifOutput { file: format!("{}.eif", recipe.name), sha256: eif_sha, size: eif_size },
            pcrs: m.clone(),
            signature: match (parts.signer, &written.signature) {
                (Some(s), Some(section)) => Some(SignatureOutput::new(s.certificate().info(), section)),
                _ => None,
            },
            files,
        },
    };
    write_atomic(staged("pcrs"), m.to_pcrs_file().as_bytes())?;
    write_atomic(staged("provenance.json"), &manifest.provenance().to_json()?)?;
    write_atomic(staged("manifest.json"), &manifest.to_json()?)?;
    Ok(manifest)
}

/// Rename the four staged outputs `NAME.{eif,pcrs,provenance.json,manifest.json}`
/// from `stage` into `out_dir`, the manifest last, and sync the directory;
/// returns their final paths in that order.
fn publish(stage: &Path, out_dir: &Path, name: &str) -> Result<[PathBuf; 4]> {
    let mut finals = Vec::new();
    for ext in ["eif", "pcrs", "provenance.json", "manifest.json"] {
        let to = out_dir.join(format!("{name}.{ext}"));
        fs::rename(stage.join(format!("{name}.{ext}")), &to)
            .with_context(|| format!("cannot rename the new output into {}", to.display()))?;
        finals.push(to);
    }
    crate::fsutil::sync_dir(out_dir)?;
    Ok(<[PathBuf; 4]>::try_from(finals).expect("four outputs"))
}

/// Create `OUT_DIR/logs` (and `OUT_DIR`): every step that runs streams its
/// output to `OUT_DIR/logs/RECIPE.STEP.log`, where it stays after the build,
/// failed or not.
fn logs_dir(out_dir: &Path) -> Result<PathBuf> {
    let logs = out_dir.join(LOGS_DIR);
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    Ok(logs)
}

/// Run one step that is not in the cache: refuse it when the host cannot
/// run its image's programs, give it a fresh root filesystem, run it in the
/// sandbox (its log at `run.log`), then drop the root filesystem. A root
/// step ([`Step::root`]) starts from its root and copies ([`root::prepare`])
/// and its root becomes its output ([`root::finish`]). Returns the time it
/// spent in the sandbox (zero for a root step with no script).
#[allow(clippy::too_many_arguments)]
fn run_step(
    sandbox: &Sandbox,
    images: &ImageTrees<'_>,
    recipe: &Recipe,
    recipe_file: &Path,
    lock: &Lock,
    step: &Step,
    run: &StepRun,
    inputs: &root::RootInputs<'_>,
) -> Result<Duration> {
    let has_script = !step.run.trim().is_empty();
    if has_script {
        check_runnable(recipe, recipe_file, lock, step)?;
    }
    // Without the image's device nodes: a step gets only the runtime's
    // standard devices, and crun applies no device cgroup.
    let no_devices = ApplyOptions { devices: DevicePolicy::Skip, ..images.limits.clone() };
    let mut took = Duration::ZERO;
    if step.root.is_some() {
        let missing = root::prepare(step, &run.rootfs, images, inputs, &no_devices)?;
        if has_script {
            let out = run.rootfs.join("out");
            let user = step
                .user
                .as_deref()
                .and_then(|u| u.split_once(':'))
                .map(|(u, g)| (u.parse().expect("validated uid"), g.parse().expect("validated gid")));
            let keep_out = out.symlink_metadata().is_ok();
            let r = StepRun { out_dir: out, keep_out, user, ..run.clone() };
            took = sandbox
                .run(&r)
                .with_context(|| {
                    format!(
                        "{}step {:?} failed; its full output is in {}",
                        crate::containerfile::lower::origin_of(recipe, recipe_file, &step.name),
                        step.name,
                        run.log.display()
                    )
                })?
                .duration;
        }
        root::finish(&run.rootfs, &missing, &run.out_dir)?;
        return Ok(took);
    }
    // The image's root from the root cache, below an overlay; else a fresh copy.
    let run = match images.step_root(&step.image, &no_devices)? {
        Some(lower) => {
            fs::create_dir_all(&run.rootfs)?;
            StepRun { lower: Some(lower), ..run.clone() }
        }
        None => {
            images.extract_fresh(&step.image, &run.rootfs, &no_devices)?;
            run.clone()
        }
    };
    let report = sandbox.run(&run).with_context(|| {
        format!("step {:?} failed; its full output is in {}", step.name, run.log.display())
    })?;
    let _ = fs::remove_dir_all(&run.rootfs);
    Ok(report.duration)
}

/// Refuse a step the host cannot run: its image (or, for a root step
/// without one, the recipe's arch) is for another architecture and no
/// emulator is registered.
fn check_runnable(recipe: &Recipe, recipe_file: &Path, lock: &Lock, step: &Step) -> Result<()> {
    let platform = match lock.images.get(&step.image) {
        Some(li) => li.platform.clone(),
        None => crate::platform::Platform::linux(recipe.arch),
    };
    if let Err(why) = execution_for(platform.arch, Path::new(BINFMT_MISC)) {
        bail!(
            "step {:?} cannot run: its image {:?} is for {platform} (recipe {} has arch = \"{}\"), \
             this host runs linux/{} programs, and {why}. Install an emulator that works in containers \
             (Debian: apt-get install qemu-user-static binfmt-support, which registers qemu-{} with the \
             F flag), build on a {platform} host, or give the step an image for this host \
             ([images.{}] platform = \"linux/{}\", e.g. a cross-compiler). A recipe whose kernel, init \
             and root filesystem all come from images needs no steps and builds anywhere.",
            step.name,
            step.image,
            recipe_file.display(),
            recipe.arch,
            crate::platform::Arch::host_oci_name(),
            platform.arch,
            step.image,
            crate::platform::Arch::host_oci_name(),
        );
    }
    Ok(())
}

/// The enclave's ramdisk trees, per the layout (single: one; nitro-cli:
/// boot, then user): the root filesystem image, the step outputs
/// ([`collect_outputs`]), the inputs manifest at [`INPUTS_PATH`], init,
/// `cmd` and `env`, the mode overrides; the command is checked to start
/// ([`check_command_starts`]).
fn enclave_trees(
    recipe: &Recipe,
    recipe_file: &Path,
    images: &mut ImageTrees<'_>,
    step_outs: &BTreeMap<String, (PathBuf, Digest)>,
    inputs_json: &[u8],
) -> Result<Vec<Tree>> {
    let e = &recipe.enclave;
    let root_prefix = root_prefix(e.layout);
    let mut user = Tree::new();
    if let Some(r) = &e.rootfs {
        let dir = images.extracted(r)?;
        user.add_host_dir(root_prefix, &dir)?;
        // Device nodes an extraction without root could not create: packed as root's would be.
        for d in &images.done[r].1 {
            let mut p = root_prefix.as_bytes().to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&d.path);
            if d.char {
                user.add_char_device(&p, d.major, d.minor)?;
            } else {
                user.add_block_device(&p, d.major, d.minor)?;
            }
        }
    } else if !root_prefix.is_empty() {
        user.add_dir(root_prefix)?;
    }
    let under = |p: &str| -> String {
        let p = p.trim_start_matches('/');
        if root_prefix.is_empty() {
            p.to_string()
        } else {
            format!("{root_prefix}/{p}")
        }
    };
    collect_outputs(recipe, step_outs, &mut user, &under)?;
    user.add_file_bytes(under(INPUTS_PATH), inputs_json.to_vec(), false)?;
    let cmd: String = e.command.iter().map(|a| format!("{a}\n")).collect();
    let env: String = e.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let init = images.file(&e.init)?;
    let mut trees = Vec::new();
    match e.layout {
        Layout::Single => {
            user.add_file_host("init", &init)?;
            user.set_mode("init", 0o755)?;
            user.add_file_bytes("cmd", cmd, false)?;
            user.add_file_bytes("env", env, false)?;
            for d in ["dev", "proc", "sys", "tmp", "run"] {
                if user.get(d).is_none() {
                    user.add_dir(d)?;
                }
            }
        }
        Layout::NitroCli => {
            let mut boot = Tree::new();
            boot.add_file_host("init", &init)?;
            boot.set_mode("init", 0o755)?;
            if let Some(nsm) = &e.nsm {
                boot.add_file_host("nsm.ko", images.file(nsm)?)?;
            }
            boot.add_dir("dev")?;
            trees.push(boot);
            user.add_file_bytes("cmd", cmd, false)?;
            user.add_file_bytes("env", env, false)?;
            for d in ["dev", "run", "sys", "var", "proc", "tmp"] {
                let p = format!("rootfs/{d}");
                if user.get(&p).is_none() {
                    user.add_dir(&p)?;
                }
            }
        }
    }
    for (path, mode) in recipe.mode_overrides() {
        user.set_mode(under(&path), mode)?;
    }
    check_command_starts(&user, root_prefix, &e.command, recipe_file)?;
    trees.push(user);
    Ok(trees)
}

/// Where the enclave's root filesystem sits in its (last) ramdisk tree.
fn root_prefix(layout: Layout) -> &'static str {
    match layout {
        Layout::Single => "",
        Layout::NitroCli => "rootfs",
    }
}

/// The manifest's `outputs.files`: each path the recipe's `report` names,
/// looked up in the enclave's root filesystem (`tree`, the last ramdisk)
/// as the enclave's `lstat` would: symlinks in the parent directories are
/// resolved inside the tree, the last component is not. A regular file is
/// reported with its sha256 and size, a symlink with its target; anything
/// else (missing, a directory, a device) is refused naming the path.
fn reported_files(recipe: &Recipe, recipe_file: &Path, tree: &Tree) -> Result<Vec<ReportedFile>> {
    let prefix = root_prefix(recipe.enclave.layout);
    let mut files = Vec::new();
    for path in &recipe.report {
        let refuse = |what: &str| {
            anyhow::anyhow!(
                "recipe {}: report {path:?}: {what}; name regular files (or symlinks) of the enclave's \
                 root filesystem, e.g. a step output's target",
                recipe_file.display()
            )
        };
        let (parent, name) = path.rsplit_once('/').expect("validated: absolute");
        let key = resolve_in_tree(tree, prefix, parent.as_bytes())
            .map(|mut k| {
                if !k.is_empty() {
                    k.push(b'/');
                }
                k.extend_from_slice(name.as_bytes());
                k
            })
            .ok_or_else(|| refuse("a parent directory is not in the enclave's root filesystem"))?;
        let mut entry = ReportedFile { path: path.clone(), sha256: None, size: None, symlink: None };
        match tree.get(&key) {
            Some(Node::File { content: Content::Bytes(b), .. }) => {
                (entry.sha256, entry.size) = (Some(Digest::of(b)), Some(b.len() as u64));
            }
            Some(Node::File { content: Content::Host(p), .. }) => {
                let f = fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
                let (d, n) = Digest::of_reader(f).with_context(|| format!("cannot read {}", p.display()))?;
                (entry.sha256, entry.size) = (Some(d), Some(n));
            }
            Some(Node::Symlink { target }) => {
                let t = String::from_utf8(target.clone())
                    .map_err(|_| refuse("is a symlink whose target is not UTF-8"))?;
                entry.symlink = Some(t);
            }
            Some(Node::Dir) => return Err(refuse("is a directory (name the files under it)")),
            Some(_) => return Err(refuse("is not a regular file or symlink")),
            None => return Err(refuse("is not in the enclave's root filesystem")),
        }
        files.push(entry);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Put every step's declared outputs into the enclave tree at their targets
/// (`under` maps an enclave path to its tree key).
///
/// Step outputs are untrusted: nothing a step wrote is followed. Each
/// output is looked up below the step's output directory with
/// [`lstat_beneath`] (no symlink resolved on the way, so `/out/link/file`
/// with `link -> /etc` is refused); an output that is itself a symlink goes
/// in as that symlink; a directory is added with [`Tree::add_host_dir`],
/// which records the symlinks inside it as symlinks and follows none.
fn collect_outputs(
    recipe: &Recipe,
    step_outs: &BTreeMap<String, (PathBuf, Digest)>,
    tree: &mut Tree,
    under: &dyn Fn(&str) -> String,
) -> Result<()> {
    for step in &recipe.steps {
        let (out, _) = &step_outs[&step.name];
        for (from, to) in &step.outputs {
            let rel = Path::new(from.strip_prefix("/out").expect("validated: outputs are under /out"));
            let rel = rel.strip_prefix("/").unwrap_or(rel);
            let at = || format!("step {:?} output {from:?}", step.name);
            let found = match lstat_beneath(out, rel) {
                Ok(found) => found,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("step {:?} declares output {from:?} but did not write it", step.name)
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("{}: outputs are collected without following symlinks", at())
                    })
                }
            };
            let host = out.join(rel);
            match found {
                Found::Dir => tree.add_host_dir(under(to), &host),
                Found::File => tree.add_file_host(under(to), &host),
                Found::Symlink(target) => tree.add_symlink(under(to), target),
                Found::Other => bail!("{}: not a regular file, directory or symlink", at()),
            }
            .with_context(at)?;
        }
    }
    Ok(())
}

/// Refuse an enclave command that cannot start in the enclave's root
/// filesystem (`root_prefix` in `tree`): an absolute command that is not
/// there, or an ELF program whose interpreter (`PT_INTERP`, e.g. glibc's
/// `/lib64/ld-linux-x86-64.so.2`) is not. Inside the enclave such a command
/// fails at boot with no one to see it. Symlinks are resolved inside the
/// tree, as the enclave's kernel would; a relative command (found through
/// the init's `PATH`) is not checked.
fn check_command_starts(
    tree: &Tree,
    root_prefix: &str,
    command: &[String],
    recipe_file: &Path,
) -> Result<()> {
    let Some(cmd) = command.first().filter(|c| c.starts_with('/')) else { return Ok(()) };
    let where_ = |what: &str| {
        format!(
            "recipe {}: enclave.command {cmd:?}: {what}, so the enclave would fail at boot",
            recipe_file.display()
        )
    };
    let content = match resolve_in_tree(tree, root_prefix, cmd.as_bytes()).and_then(|k| tree.get(k)) {
        Some(Node::File { content, .. }) => content,
        _ => bail!(
            "{}; add it with a step output or an enclave.rootfs image that has it",
            where_("is not a regular file in the enclave's root filesystem")
        ),
    };
    let interp = match content {
        Content::Bytes(b) => crate::elf::interpreter(&mut std::io::Cursor::new(&b[..]))?,
        Content::Host(p) => crate::elf::interpreter(
            &mut fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("reading {}", p.display()))?,
    };
    let Some(interp) = interp else { return Ok(()) };
    let found = resolve_in_tree(tree, root_prefix, &interp).and_then(|k| tree.get(k));
    if !matches!(found, Some(Node::File { .. })) {
        bail!(
            "{}. Link the program statically (e.g. for musl, or with -static), or give the enclave \
             a root filesystem that has that interpreter and the libraries it loads (enclave.rootfs, \
             or step outputs)",
            where_(&format!(
                "is dynamically linked and its ELF interpreter {} is not in the enclave's root filesystem",
                String::from_utf8_lossy(&interp)
            ))
        );
    }
    Ok(())
}

/// The tree key an absolute enclave path names, following symlinks inside
/// the tree (relative and absolute, `/` being `root_prefix`; `..` stops at
/// the root), or `None` when a component is missing or there are more than
/// 40 links (a loop).
fn resolve_in_tree(tree: &Tree, root_prefix: &str, path: &[u8]) -> Option<Vec<u8>> {
    let key = |done: &[Vec<u8>]| -> Vec<u8> {
        let mut k = root_prefix.as_bytes().to_vec();
        for c in done {
            if !k.is_empty() {
                k.push(b'/');
            }
            k.extend_from_slice(c);
        }
        k
    };
    let comps = |p: &[u8]| -> Vec<Vec<u8>> { p.split(|&b| b == b'/').map(<[u8]>::to_vec).collect() };
    let mut todo: std::collections::VecDeque<Vec<u8>> = comps(path).into();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match &c[..] {
            b"" | b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => done.push(c),
        }
        if let Node::Symlink { target } = tree.get(key(&done))? {
            links += 1;
            if links > 40 {
                return None;
            }
            done.pop();
            if target.starts_with(b"/") {
                done.clear();
            }
            for t in comps(target).into_iter().rev() {
                todo.push_front(t);
            }
        }
    }
    Some(key(&done))
}

/// Hash of length-prefixed, labelled fields: the step cache key.
struct KeyHasher(sha2::Sha256);

impl KeyHasher {
    fn new() -> Self {
        // v2: entries hold `out/` and a `tree` record (v1 entries were the bare output).
        Self::with_domain(b"eifbake-step-key-v2\0")
    }
    fn with_domain(domain: &[u8]) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(domain);
        KeyHasher(h)
    }
    fn field(&mut self, label: &str, value: &[u8]) {
        use sha2::Digest as _;
        self.0.update((label.len() as u64).to_be_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value);
    }
    fn finish(self) -> Digest {
        use sha2::Digest as _;
        Digest::from_bytes(self.0.finalize().into())
    }
}

impl Drop for ImageTrees<'_> {
    /// The probe writes in the scratch directory: let it end before that goes.
    fn drop(&mut self) {
        if let Some(p) = self.probe.get_mut().ok().and_then(Option::take) {
            let _ = p.join();
        }
    }
}

/// The root cache key of the image `manifest` extracted with `opts`: every
/// option that changes what the extraction writes (or refuses) is in it.
fn root_key(manifest: &Digest, opts: &ApplyOptions) -> Digest {
    let ApplyOptions {
        max_total_bytes,
        max_layer_expansion,
        layer_floor,
        max_entries,
        max_path_length,
        same_owner,
        devices,
        xattrs,
    } = opts;
    let mut key = KeyHasher::with_domain(b"eifbake-root-key-v1\0");
    key.field("manifest", manifest.to_string().as_bytes());
    for (label, v) in [
        ("max_total_bytes", *max_total_bytes),
        ("max_layer_expansion", *max_layer_expansion),
        ("layer_floor", *layer_floor),
        ("max_entries", *max_entries),
        ("max_path_length", *max_path_length as u64),
        ("same_owner", *same_owner as u64),
        ("xattrs", *xattrs as u64),
    ] {
        key.field(label, &v.to_be_bytes());
    }
    key.field("devices", format!("{devices:?}").as_bytes());
    key.finish()
}

/// Image root filesystems, extracted once per build for reading, fresh for
/// a step that writes into its root, or (for an ordinary step) the root
/// cache's verified copy below an overlay.
struct ImageTrees<'a> {
    store: &'a Store,
    lock: &'a Lock,
    work: PathBuf,
    /// Extracted trees, with the device nodes their extraction skipped.
    done: BTreeMap<String, (PathBuf, Vec<DeviceNode>)>,
    /// The recipe's `[limits]`.
    limits: &'a ApplyOptions,
    /// The store's root cache; `None` with `--no-cache` (and so for
    /// `verify`), for a recipe without ordinary steps, and where an
    /// overlay's options cannot name the paths: every step's image is then
    /// extracted afresh.
    roots: Option<RootCache>,
    /// Whether steps can have overlay roots here: asked once per build, on
    /// a thread started with the build (the probe's mount namespace takes
    /// a while to go), its answer taken when the first step needs it.
    overlay: std::cell::OnceCell<bool>,
    probe: std::sync::Mutex<Option<std::thread::JoinHandle<bool>>>,
}

impl<'a> ImageTrees<'a> {
    fn new(
        store: &'a Store,
        loaded: &'a Loaded,
        work: &Path,
        limits: &'a ApplyOptions,
        opts: &BuildOptions,
    ) -> Self {
        // Only ordinary steps start from the root cache (root steps write their root).
        let ordinary = loaded.recipe.steps.iter().any(|s| s.root.is_none());
        // And only where the overlay's options can name the store's and the scratch directory's paths.
        let roots = Some(RootCache::new(store.root())).filter(|r| {
            !opts.no_cache && ordinary && [r.dir(), work].into_iter().all(crate::sandbox::overlay_can_name)
        });
        let probe = roots.as_ref().map(|roots| {
            let (sandbox, scratch, lowers) =
                (Sandbox::new(opts.runtime), work.to_path_buf(), roots.dir().to_path_buf());
            std::thread::spawn(move || sandbox.overlay_usable(&scratch, &lowers))
        });
        ImageTrees {
            store,
            lock: &loaded.lock,
            work: work.join("images"),
            done: BTreeMap::new(),
            limits,
            roots,
            overlay: std::cell::OnceCell::new(),
            probe: std::sync::Mutex::new(probe),
        }
    }

    /// The probe's answer (waiting for it the first time).
    fn overlay_usable(&self) -> bool {
        *self.overlay.get_or_init(|| {
            let probe = self.probe.lock().expect("not poisoned").take();
            probe.is_some_and(|p| p.join().unwrap_or(false))
        })
    }

    /// The root cache's verified root of `image` as extracted with `opts`,
    /// made first when the cache lacks it; `None` when steps cannot start
    /// from it here (no root cache, or no overlay: see [`Sandbox::overlay_usable`]).
    fn step_root(&self, image: &str, opts: &ApplyOptions) -> Result<Option<PathBuf>> {
        let Some(roots) = &self.roots else { return Ok(None) };
        if !self.overlay_usable() {
            return Ok(None);
        }
        let li =
            self.lock.images.get(image).with_context(|| format!("image {image:?} is not in the lock"))?;
        let key = root_key(&li.manifest, opts);
        let root = roots.get(image, &key, |dest| {
            apply_layers(&self.layers(image)?, dest, opts)
                .with_context(|| format!("unpacking image {image:?}"))?;
            Ok(())
        })?;
        Ok(Some(root))
    }

    fn layers(&self, image: &str) -> Result<Vec<LayerSource>> {
        let li =
            self.lock.images.get(image).with_context(|| format!("image {image:?} is not in the lock"))?;
        Ok(self
            .store
            .layers(&li.manifest)?
            .into_iter()
            .map(|l| {
                LayerSource::new(
                    self.store.blob_path(&l.digest),
                    l.media_type,
                    format!("{image} layer {}", l.digest),
                )
                .verified(l.digest, l.size)
            })
            .collect())
    }

    /// Extract `image` to `target`; returns the device nodes left out (when not root).
    fn extract_fresh(&self, image: &str, target: &Path, opts: &ApplyOptions) -> Result<Vec<DeviceNode>> {
        if let Some(p) = target.parent() {
            fs::create_dir_all(p)?;
        }
        let summary = apply_layers(&self.layers(image)?, target, opts)
            .with_context(|| format!("unpacking image {image:?}"))?;
        Ok(summary.skipped_device_nodes)
    }

    fn extracted(&mut self, image: &str) -> Result<PathBuf> {
        if let Some((p, _)) = self.done.get(image) {
            return Ok(p.clone());
        }
        let target = self.work.join(image);
        let devices = self.extract_fresh(image, &target, self.limits)?;
        self.done.insert(image.to_string(), (target.clone(), devices));
        Ok(target)
    }

    /// A regular file inside an image, refusing paths that leave the image
    /// through symlinks.
    fn file(&mut self, f: &ImageFile) -> Result<PathBuf> {
        let root = self.extracted(&f.image)?;
        let rel = Path::new(f.path.trim_start_matches('/'));
        match lstat_beneath(&root, rel) {
            Ok(Found::File) => Ok(root.join(rel)),
            Ok(Found::Symlink(to)) => bail!(
                "image {:?}: {} is a symlink (to {}); name the real file",
                f.image,
                f.path,
                String::from_utf8_lossy(&to)
            ),
            Ok(_) => bail!("image {:?}: {} is not a regular file", f.image, f.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("image {:?} has no {}", f.image, f.path)
            }
            Err(e) => Err(e).with_context(|| format!("image {:?}: {}: name the real file", f.image, f.path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A glibc-style root: merged-usr symlinks, the interpreter as a
    /// relative symlink to the real file.
    fn merged_usr_root(prefix: &str) -> Tree {
        let at = |p: &str| if prefix.is_empty() { p.to_string() } else { format!("{prefix}/{p}") };
        let mut t = Tree::new();
        t.add_symlink(at("lib64"), "usr/lib64").unwrap();
        t.add_symlink(at("bin"), "/usr/bin").unwrap();
        t.add_file_bytes(at("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), b"ld".to_vec(), true).unwrap();
        t.add_symlink(at("usr/lib64/ld-linux-x86-64.so.2"), "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            .unwrap();
        t.add_symlink(at("loop"), "loop").unwrap();
        t
    }

    #[test]
    fn paths_resolve_through_symlinks_inside_the_tree() {
        for prefix in ["", "rootfs"] {
            let t = merged_usr_root(prefix);
            let key = resolve_in_tree(&t, prefix, b"/lib64/ld-linux-x86-64.so.2").unwrap();
            let want = if prefix.is_empty() { "" } else { "rootfs/" };
            assert_eq!(
                String::from_utf8(key).unwrap(),
                format!("{want}usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            );
            // `..` stops at the enclave's root, never at the tree's prefix's parent.
            let key = resolve_in_tree(&t, prefix, b"/../../usr/./lib64").unwrap();
            assert_eq!(String::from_utf8(key).unwrap(), format!("{want}usr/lib64"));
            assert!(resolve_in_tree(&t, prefix, b"/loop/x").is_none(), "a symlink loop ends");
        }
    }

    #[test]
    fn a_command_that_cannot_start_is_refused() {
        let recipe = Path::new("recipes/r.toml");
        // A 64-bit ELF header with one PT_INTERP naming glibc's loader.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20] = 64;
        elf[0x36] = 56;
        elf[0x38] = 1;
        elf[64] = 3;
        elf[64 + 8] = 120;
        let interp = b"/lib64/ld-linux-x86-64.so.2\0";
        elf[64 + 32] = interp.len() as u8;
        elf.extend_from_slice(interp);
        let cmd = vec!["/bin/app".to_string(), "--serve".to_string()];

        let mut bare = Tree::new();
        bare.add_file_bytes("usr/bin/app", elf.clone(), true).unwrap();
        bare.add_symlink("bin", "usr/bin").unwrap();
        let e = check_command_starts(&bare, "", &cmd, recipe).unwrap_err().to_string();
        assert!(
            e.contains("enclave.command \"/bin/app\"")
                && e.contains("ELF interpreter /lib64/ld-linux-x86-64.so.2"),
            "{e}"
        );
        assert!(e.contains("Link the program statically"), "{e}");

        let mut glibc = merged_usr_root("rootfs");
        glibc.add_file_bytes("rootfs/usr/bin/app", elf, true).unwrap();
        check_command_starts(&glibc, "rootfs", &cmd, recipe).unwrap();

        let e = check_command_starts(&glibc, "rootfs", &["/usr/bin/missing".into()], recipe).unwrap_err();
        assert!(e.to_string().contains("is not a regular file in the enclave's root filesystem"), "{e}");
        // Not ELF (a script), or relative (found through PATH at boot): not this check's business.
        glibc.add_file_bytes("rootfs/usr/bin/script", b"#!/bin/sh\n".to_vec(), true).unwrap();
        check_command_starts(&glibc, "rootfs", &["/usr/bin/script".into()], recipe).unwrap();
        check_command_starts(&glibc, "rootfs", &["app".into()], recipe).unwrap();
    }
}
