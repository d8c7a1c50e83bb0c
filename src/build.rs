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
//!    run whose image is for another architecture than the host's is refused
//!    before its runtime starts unless an emulator can run it
//!    ([`crate::sandbox::execution_for`]); a recipe with no steps builds for
//!    any `arch` on any host.
//! 6. The enclave tree ([`crate::cpio::Tree`]) is assembled per the layout,
//!    the measured inputs ([`crate::manifest::Inputs`]: images by digest,
//!    sources by tree hash, steps, enclave settings; no registry hosts, no
//!    recipe text) embedded at [`INPUTS_PATH`], ramdisks written, the EIF
//!    written ([`crate::eif`]) with the same inputs as CustomMetadata.
//! 7. The manifest, PCRs and provenance are written beside the EIF.
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

use crate::cache::{self, StepCache};
use crate::cpio::Tree;
use crate::digest::Digest;
use crate::eif::kernel::KernelKind;
use crate::eif::{write_eif, EifInputs, Metadata, Signing};
use crate::epoch::Epoch;
use crate::fetch;
use crate::fsutil::write_atomic;
use crate::lock::Lock;
use crate::manifest::{self, EifOutput, FileRef, Inputs, Manifest, Origin, Outputs, SignatureOutput};
use crate::oci::layer::{apply_layers, ApplyOptions, DeviceNode, DevicePolicy, LayerSource};
use crate::oci::Store;
use crate::progress::Progress;
use crate::recipe::{Compression, ImageFile, Layout, Recipe};
use crate::sandbox::{execution_for, Bind, Runtime, Sandbox, StepRun, BINFMT_MISC};
use crate::signing::Validity;
use crate::sources::SourceCache;

/// Where the inputs manifest sits in the enclave root filesystem.
pub const INPUTS_PATH: &str = "etc/eifbake/inputs.json";

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
}

/// Build a recipe. See the module documentation for the order of work.
pub fn build(recipe_path: &Path, opts: &BuildOptions) -> Result<BuildResult> {
    let (recipe, lock) = Lock::load_checked_at(recipe_path, opts.lockfile.as_deref())?;
    let lock_path = opts.lockfile.clone().unwrap_or_else(|| Lock::default_path(recipe_path, &recipe.name));
    let lock_text = fs::read_to_string(&lock_path)
        .with_context(|| format!("cannot read {} as UTF-8 text", lock_path.display()))?;
    let lock_sha = Digest::of(lock_text.as_bytes());
    // The recipe's own text goes into the (unmeasured) origin so `verify` can rebuild from the manifest alone.
    let recipe_file = Recipe::resolve_path(recipe_path);
    let recipe_text = fs::read_to_string(&recipe_file)
        .with_context(|| format!("cannot read {} as UTF-8 text", recipe_file.display()))?;
    let recipe_sha = Digest::of(recipe_text.as_bytes());
    let epoch = match opts.epoch {
        Some(e) => e,
        None => recipe.source_date_epoch.unwrap_or(Epoch(0)),
    };
    let base_dir = Recipe::base_dir(recipe_path);
    // The signing key is loaded and checked first, so a bad one fails before any work.
    let signer = match &opts.signing {
        SignWith::Unsigned => None,
        SignWith::Recipe(o) => match signing_paths(&recipe, recipe_path, o)? {
            Some((cert, key)) => Some(crate::signing::load_signer(&cert, &key, o.validity)?),
            None => None,
        },
    };
    let store = Store::open(&opts.store)?;
    // Held for the whole build: `store gc` waits, so it never removes blobs
    // or cache entries this build reads.
    let _using_store = store.writing()?;

    // Images: everything pinned must be in the store.
    let registry = crate::oci::registry::Registry::new(&opts.insecure).with_mirrors(opts.mirrors.clone());
    fetch::fetch_lock(&store, &lock, &registry, opts.offline, &Progress::bytes("fetch", 0))?;

    let scratch = tempfile::Builder::new()
        .prefix("eifbake-build-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let work = scratch.path().to_path_buf();

    // Sources.
    let cache = SourceCache::new(cache::sources_dir(store.root()));
    let mut source_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (name, source) in &recipe.sources {
        let pin = lock.sources.get(name).with_context(|| {
            format!("sources.{name} is not pinned in {}; run `eifbake lock`", lock_path.display())
        })?;
        let dir = cache.get(name, source, &base_dir, pin, opts.offline)?;
        source_dirs.insert(name.clone(), dir);
    }

    // Image root filesystems, extracted on demand.
    let apply_options = recipe.limits.apply_options();
    let mut images = ImageTrees {
        store: &store,
        lock: &lock,
        work: work.join("images"),
        done: BTreeMap::new(),
        limits: &apply_options,
    };

    // The kernel first: one Nitro cannot boot for the recipe's arch is refused before any step runs.
    let e = &recipe.enclave;
    let kernel = images.file(&e.kernel)?;
    let what = format!(
        "kernel {} of image {:?} ({})",
        e.kernel.path, e.kernel.image, lock.images[&e.kernel.image].reference
    );
    if let Some(why) = KernelKind::of_file(&kernel)?.refusal(&what, recipe.arch.into()) {
        bail!("recipe {}: enclave.kernel: {why}", recipe_file.display());
    }

    // Steps.
    let sandbox = Sandbox::new(opts.runtime);
    let step_cache = StepCache::new(store.root());
    let mut step_outs: BTreeMap<String, (PathBuf, Digest)> = BTreeMap::new();
    let (mut steps_cached, mut steps_run) = (Vec::new(), Vec::new());
    for step in &recipe.steps {
        let image_digest = lock.images[&step.image].manifest;
        let mut mounts = Vec::new();
        let mut key = KeyHasher::new();
        key.field("tool", manifest::TOOL_VERSION.as_bytes());
        key.field("runtime-abi", b"1");
        key.field("image", image_digest.to_string().as_bytes());
        key.field("epoch", epoch.to_string().as_bytes());
        key.field("workdir", step.workdir.as_bytes());
        key.field("run", step.run.as_bytes());
        for (k, v) in &step.env {
            key.field("env", format!("{k}={v}").as_bytes());
        }
        for (guest, what) in &step.mounts {
            let (host, id) = if let Some(prev) = what.strip_prefix("step:") {
                let (dir, k) = &step_outs[prev];
                (dir.clone(), k.to_string())
            } else {
                let pin = &lock.sources[what];
                (source_dirs[what].clone(), pin.tree.to_string())
            };
            key.field("mount", format!("{guest}={id}").as_bytes());
            mounts.push(Bind { host, guest: guest.clone(), readonly: true });
        }
        let key = key.finish();
        let cached = if opts.no_cache { None } else { step_cache.lookup(&step.name, &key)? };
        let out = if let Some(cached) = cached {
            steps_cached.push(step.name.clone());
            cached
        } else {
            let platform = &lock.images[&step.image].platform;
            if let Err(why) = execution_for(platform, Path::new(BINFMT_MISC)) {
                bail!(
                    "step {:?} cannot run: its image {:?} is for {platform} (recipe {} has arch = \"{}\"), \
                     this host runs linux/{} programs, and {why}. Install an emulator that works in containers \
                     (Debian: apt-get install qemu-user-static binfmt-support, which registers qemu-{} with the \
                     F flag), or build on a {platform} host. A recipe whose kernel, init and root filesystem \
                     all come from images needs no steps and builds anywhere.",
                    step.name,
                    step.image,
                    recipe_file.display(),
                    recipe.arch,
                    crate::sandbox::host_arch(),
                    recipe.arch,
                );
            }
            let rootfs = work.join("steps").join(&step.name).join("rootfs");
            // Without the image's device nodes: a step gets only the runtime's
            // standard devices, and crun applies no device cgroup.
            let no_devices = ApplyOptions { devices: DevicePolicy::Skip, ..apply_options.clone() };
            images.extract_fresh(&step.image, &rootfs, &no_devices)?;
            let out_dir = work.join("steps").join(&step.name).join("out");
            let log = work.join("steps").join(&step.name).join("log");
            sandbox
                .run(&StepRun {
                    name: step.name.clone(),
                    rootfs: rootfs.clone(),
                    mounts,
                    workdir: step.workdir.clone(),
                    script: step.run.clone(),
                    env: step.env.clone(),
                    epoch,
                    out_dir: out_dir.clone(),
                    log,
                    timeout: opts.step_timeout,
                })
                .with_context(|| format!("step {:?} failed", step.name))?;
            let _ = fs::remove_dir_all(&rootfs);
            step_cache.publish(&step.name, &key, &out_dir)?;
            steps_run.push(step.name.clone());
            out_dir
        };
        step_outs.insert(step.name.clone(), (out, key));
    }

    // Inputs manifest: the measured inputs (embedded below, so the PCRs
    // commit to them) and their unmeasured origin (the manifest only).
    let inputs = Inputs::of_recipe(&recipe, &lock, epoch)?;
    let origin = Origin::of_recipe(
        &recipe,
        &lock,
        FileRef {
            path: project_relative(&Recipe::resolve_path(recipe_path)),
            sha256: recipe_sha,
            text: Some(recipe_text),
        },
        FileRef { path: format!("lockfiles/{}.lock", recipe.name), sha256: lock_sha, text: Some(lock_text) },
    );
    let inputs_json = inputs.to_json()?;

    // Enclave tree(s).
    let root_prefix = match e.layout {
        Layout::Single => "",
        Layout::NitroCli => "rootfs",
    };
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
    for step in &recipe.steps {
        let (out, _) = &step_outs[&step.name];
        for (from, to) in &step.outputs {
            let rel = from.trim_start_matches("/out").trim_start_matches('/');
            let host = out.join(rel);
            let md = fs::symlink_metadata(&host).with_context(|| {
                format!("step {:?} declares output {from:?} but did not write it", step.name)
            })?;
            if md.is_dir() {
                user.add_host_dir(under(to), &host)?;
            } else if md.file_type().is_symlink() {
                user.add_symlink(under(to), fs::read_link(&host)?.as_os_str().as_encoded_bytes())?;
            } else {
                user.add_file_host(under(to), &host)?;
            }
        }
    }
    user.add_file_bytes(under(INPUTS_PATH), inputs_json.clone(), false)?;
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
    trees.push(user);

    let mut ramdisks = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let path = work.join(format!("ramdisk{i}.cpio"));
        let f = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, f);
        match e.compression {
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

    // The EIF.
    fs::create_dir_all(&opts.out_dir).with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
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
        Some(serde_json::from_slice(&inputs_json)?),
    )?;
    // The four outputs are written into a staging directory beside their
    // final place, then renamed in one burst, the manifest (which names the
    // EIF's sha256) last: an interruption while they are written leaves the
    // previous outputs as they were; only one between the four renames can
    // leave old and new side by side, and then the manifest is the old one.
    let stage = tempfile::Builder::new()
        .prefix(".eifbake-out-")
        .tempdir_in(&opts.out_dir)
        .with_context(|| format!("cannot create a staging directory in {}", opts.out_dir.display()))?;
    let staged = |ext: &str| stage.path().join(format!("{}.{ext}", recipe.name));
    let written = write_eif(
        &EifInputs {
            kernel,
            cmdline: e.cmdline.clone(),
            ramdisks,
            arch: recipe.arch.into(),
            default_mem: e.memory_mib << 20,
            default_cpus: e.cpus,
            metadata,
            signing: signer.clone().map(Signing::Key),
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
            pcrs: m.into(),
            signature: match (&signer, &written.signature) {
                (Some(s), Some(section)) => Some(SignatureOutput::new(s.certificate().info(), section)),
                _ => None,
            },
        },
    };
    write_atomic(staged("pcrs"), m.to_pcrs_file().as_bytes())?;
    write_atomic(staged("provenance.json"), &manifest.provenance().to_json()?)?;
    write_atomic(staged("manifest.json"), &manifest.to_json()?)?;
    let mut finals = Vec::new();
    for ext in ["eif", "pcrs", "provenance.json", "manifest.json"] {
        let to = opts.out_dir.join(format!("{}.{ext}", recipe.name));
        fs::rename(staged(ext), &to)
            .with_context(|| format!("cannot rename the new output into {}", to.display()))?;
        finals.push(to);
    }
    crate::fsutil::sync_dir(&opts.out_dir)?;
    let [eif_path, pcrs_path, provenance, manifest_path] =
        <[PathBuf; 4]>::try_from(finals).expect("four outputs");
    if opts.keep_work {
        let kept = scratch.keep();
        eprintln!("eifbake: kept the scratch directory {}", kept.display());
    }
    Ok(BuildResult {
        eif: eif_path,
        pcrs: pcrs_path,
        manifest_path,
        provenance,
        manifest,
        steps_cached,
        steps_run,
    })
}

/// The recipe path as recorded in the manifest: relative to the project
/// (the directory holding `recipes/`), never absolute, so the build path
/// does not leak.
fn project_relative(recipe_file: &Path) -> String {
    let comps: Vec<String> =
        recipe_file.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    match comps.iter().rposition(|c| c == "recipes") {
        Some(i) => comps[i..].join("/"),
        None => comps.last().cloned().unwrap_or_default(),
    }
}

/// Hash of length-prefixed, labelled fields: the step cache key.
struct KeyHasher(sha2::Sha256);

impl KeyHasher {
    fn new() -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        // v2: entries hold `out/` and a `tree` record (v1 entries were the bare output).
        h.update(b"eifbake-step-key-v2\0");
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

/// Image root filesystems, extracted once per build for reading, or fresh
/// for a step that writes into its root.
struct ImageTrees<'a> {
    store: &'a Store,
    lock: &'a Lock,
    work: PathBuf,
    /// Extracted trees, with the device nodes their extraction skipped.
    done: BTreeMap<String, (PathBuf, Vec<DeviceNode>)>,
    /// The recipe's `[limits]`.
    limits: &'a ApplyOptions,
}

impl ImageTrees<'_> {
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
        let mut p = root.clone();
        for c in f.path.trim_start_matches('/').split('/') {
            p.push(c);
            let md =
                fs::symlink_metadata(&p).with_context(|| format!("image {:?} has no {}", f.image, f.path))?;
            if md.file_type().is_symlink() {
                bail!(
                    "image {:?}: {} goes through a symlink ({}); name the real file",
                    f.image,
                    f.path,
                    p.display()
                );
            }
        }
        if !fs::metadata(&p)?.is_file() {
            bail!("image {:?}: {} is not a regular file", f.image, f.path);
        }
        Ok(p)
    }
}
