//! The content-addressed store: an OCI image layout directory.
//!
//! Layout ([`super::layout`] spells every path): `oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`, plus eifbake's own `ingest/` (temporary files being
//! verified), `index.lock` (the flock that serialises `index.json` updates)
//! and `gc.lock` (fetches hold it shared, `gc` exclusively, so gc never
//! removes blobs of an image still being fetched). Every blob is streamed into
//! a temporary file in `ingest/`, hashed and counted while written, compared
//! with the expected digest and size, and only then renamed to its final
//! name: a blob under `blobs/` is always complete and verified, and several
//! eifbake processes sharing one store never see or make a partial blob.
//!
//! Verified on write is not trusted on read: a blob file can be changed
//! after it was stored (disk damage, another user, an attacker with write
//! access to the cache). So every blob is verified again each time a build
//! reads it: manifests and configs are re-hashed by
//! [`Store::read_blob_bytes`] / [`Store::read_descriptor_bytes`] (the latter
//! also compares the descriptor's size), and layers are hashed and sized in
//! the same pass that unpacks them (the layer module, given the descriptor's
//! digest and size). A mismatch is a [`BlobError`] naming the digest, the
//! file and the fix (remove it; `eifbake fetch` downloads it again).
//!
//! `index.json` names each image with an `org.opencontainers.image.ref.name`
//! annotation that skopeo's and umoci's `oci:` transports accept (see
//! [`ref_name_for`]); the full reference and the index digest the image came
//! from are kept in `io.eifbake.*` annotations. `fetch` records the
//! reference it pulled; `store import --name REF` records one for an image
//! brought in from a layout or archive. [`Store::resolve_local`] resolves
//! references from these records (and digests from the blobs), so `lock`
//! works without any registry on an air-gapped host.
//!
//! The documents are oci-spec's types ([`super::model`]): manifests and
//! configs are parsed from the verified bytes, read only, never
//! re-serialised; `index.json` is the one document the store writes, through
//! [`model::layout_index_bytes`] (annotations sorted, so the same index is
//! always the same bytes).
//!
//! Not for: talking to registries ([`super::registry`]), unpacking layers
//! into a root filesystem (the layer module), deciding what to pin ([`crate::lock`]).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::FlockOperation;
use serde::Serialize;

use super::layout::{self, Layout};
pub use super::model::Descriptor;
use super::model::{self, DescriptorExt, ImageIndex, Manifest};
use super::reference::Reference;
use super::registry::Resolved;
use crate::digest::{Digest, HashingWriter};
use crate::fsutil;
use crate::platform::{self, Arch};

/// Annotation skopeo and umoci use to name an image in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full reference an image was fetched as.
pub const ANN_REFERENCE: &str = "io.eifbake.reference";
/// The image index (or manifest list) digest the platform manifest was chosen from.
pub const ANN_INDEX: &str = "io.eifbake.index-digest";

/// Manifests and configs are read into memory; anything larger is refused.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A blob in the store that is not what its name says: changed on disk
/// after it was verified (the store is only written through verified
/// renames, so this is damage or tampering).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "blob {digest} in the store is corrupt: {path} hashes to {found}; remove that file and run \
         `eifbake fetch` to download it again (or `eifbake store gc` if no image needs it)"
    )]
    Corrupt { digest: Digest, path: PathBuf, found: Digest },
    #[error(
        "blob {digest} in the store is corrupt: {path} has {found} bytes, its descriptor declares \
         {declared}; remove that file and run `eifbake fetch` to download it again (or `eifbake store gc` \
         if no image needs it)"
    )]
    Size { digest: Digest, path: PathBuf, declared: u64, found: u64 },
}

/// A layer of a pinned image, in application order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An OCI image layout directory used as eifbake's blob store.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

/// The `index.json` name for an image fetched as `reference`: skopeo's and
/// umoci's `oci:DIR:NAME` split at the first `:` and accept only
/// `[A-Za-z0-9._/-]`-ish names, so `/` stays and `:` and `@` become `_`
/// (`127.0.0.1:5000/x:y` → `127.0.0.1_5000/x_y`).
pub fn ref_name_for(reference: &str) -> String {
    reference.chars().map(|c| if c.is_ascii_alphanumeric() || "._-/".contains(c) { c } else { '_' }).collect()
}

impl Store {
    /// The store directory: `--store`/`$EIFBAKE_STORE` if given, else `<cache dir>/eifbake/store`.
    pub fn default_path(explicit: Option<&Path>) -> Result<PathBuf> {
        match explicit {
            Some(p) => Ok(p.to_path_buf()),
            None => Ok(dirs::cache_dir()
                .context("no user cache directory ($XDG_CACHE_HOME / $HOME unset); pass --store DIR")?
                .join("eifbake")
                .join("store")),
        }
    }

    /// Open a store, creating an empty layout if the directory does not hold one.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let paths = Layout::new(root.as_ref());
        for d in [paths.blobs(), paths.ingest()] {
            fs::create_dir_all(&d)
                .with_context(|| format!("cannot create store directory {}", d.display()))?;
        }
        let layout = paths.oci_layout();
        match fs::read(&layout) {
            Ok(b) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", layout.display()))?;
                if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
                    bail!("{}: imageLayoutVersion must be \"1.0.0\"", layout.display());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fsutil::write_atomic(&layout, layout::OCI_LAYOUT_CONTENT)?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", layout.display())),
        }
        let store = Store { layout: paths };
        if !store.layout.index().exists() {
            let _lock = store.lock_index()?;
            if !store.layout.index().exists() {
                store.write_index(&model::empty_index())?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where everything in this store lives.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob(digest)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Open a present blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).with_context(|| format!("blob {digest} is not in the store {}", self.root().display()))
    }

    /// Start writing a blob that must turn out to be `expected` with `size` bytes.
    pub fn blob_writer(&self, expected: Digest, size: u64) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}.", expected.hex()))
            .tempfile_in(self.layout.ingest())
            .with_context(|| {
                format!("cannot create a temporary file in {}", self.layout.ingest().display())
            })?;
        let file = tmp.reopen().with_context(|| format!("cannot open {}", tmp.path().display()))?;
        Ok(BlobWriter {
            target: self.blob_path(&expected),
            tmp,
            w: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            expected,
            size,
        })
    }

    /// Stream a blob in, verify digest and size, and only then make it visible.
    pub fn put_blob_verified(&self, mut reader: impl Read, expected: &Digest, size: u64) -> Result<()> {
        if self.has_blob(expected) {
            return Ok(());
        }
        let mut w = self.blob_writer(*expected, size)?;
        io::copy(&mut reader, &mut w).with_context(|| format!("writing blob {expected}"))?;
        w.finish()
    }

    /// Store bytes as a blob and return their descriptor digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        self.put_blob_verified(bytes, &d, bytes.len() as u64)?;
        Ok(d)
    }

    /// Read a small blob (manifest, index, config) and check it still hashes to its name.
    pub fn read_blob_bytes(&self, digest: &Digest) -> Result<Vec<u8>> {
        self.read_blob_checked(digest, None)
    }

    /// [`Store::read_blob_bytes`] for a blob a descriptor names: its size
    /// must also be the descriptor's `size`.
    pub fn read_descriptor_bytes(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.read_blob_checked(&desc.sha256()?, Some(desc.size()))
    }

    fn read_blob_checked(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let f = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        f.take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading blob {digest} ({})", path.display()))?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            bail!(
                "blob {digest} ({}) is larger than {MAX_MANIFEST_SIZE} bytes: not a manifest or config",
                path.display()
            );
        }
        if let Some(declared) = size.filter(|s| *s != bytes.len() as u64) {
            return Err(BlobError::Size { digest: *digest, path, declared, found: bytes.len() as u64 }.into());
        }
        let found = Digest::of(&bytes);
        if found != *digest {
            return Err(BlobError::Corrupt { digest: *digest, path, found }.into());
        }
        Ok(bytes)
    }

    /// A manifest or index by digest, re-hashed as read and parsed with
    /// [`Manifest::parse`]'s checks; errors name the blob and its file.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest> {
        let what = format!("manifest {digest} ({})", self.blob_path(digest).display());
        Manifest::parse(&self.read_blob_bytes(digest)?, &what)
    }

    /// The image manifest `digest`; an error when it is an index.
    fn image_manifest(&self, digest: &Digest) -> Result<model::ImageManifest> {
        match self.manifest(digest)? {
            Manifest::Image(m) => Ok(m),
            Manifest::Index(_) => bail!("manifest {digest} is an index, not an image manifest"),
        }
    }

    /// The image configuration of a platform manifest, as oci-spec's type.
    pub fn image_config(&self, manifest: &Digest) -> Result<oci_spec::image::ImageConfiguration> {
        let m = self.image_manifest(manifest)?;
        let c = m.config();
        let b = self.read_descriptor_bytes(c)?;
        oci_spec::image::ImageConfiguration::from_reader(&b[..]).with_context(|| {
            format!("config {} of manifest {manifest}: not an image configuration", c.digest())
        })
    }

    /// The layers of a platform manifest, in order; errors if any is missing from the store.
    pub fn layers(&self, manifest: &Digest) -> Result<Vec<Layer>> {
        let m = self.image_manifest(manifest)?;
        let mut out = Vec::with_capacity(m.layers().len());
        for l in m.layers() {
            let digest = l.sha256()?;
            if !self.has_blob(&digest) {
                bail!("layer {digest} of manifest {manifest} is not in the store; run `eifbake fetch`");
            }
            out.push(Layer { digest, size: l.size(), media_type: l.media_type().to_string() });
        }
        Ok(out)
    }

    /// The digests of `root` and everything it references that is present, recursively.
    /// Blobs referenced but absent are returned in the second set.
    pub fn closure(&self, root: &Digest) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>)> {
        let mut seen = BTreeSet::new();
        let mut missing = BTreeSet::new();
        let mut todo = vec![(*root, true)];
        while let Some((d, is_manifest)) = todo.pop() {
            if !self.has_blob(&d) {
                missing.insert(d);
                continue;
            }
            if !seen.insert(d) || !is_manifest {
                continue;
            }
            let m = self.manifest(&d)?;
            for x in m.children() {
                todo.push((x.sha256()?, m.is_index()));
            }
        }
        Ok((seen, missing))
    }

    /// Read `index.json`.
    /// Read `index.json`; every image it lists must have a sha256 digest.
    pub fn index(&self) -> Result<ImageIndex> {
        let p = self.layout.index();
        let b = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let index: ImageIndex =
            serde_json::from_slice(&b).with_context(|| format!("{}: not an OCI image index", p.display()))?;
        for d in index.manifests() {
            d.sha256().with_context(|| format!("{}", p.display()))?;
        }
        Ok(index)
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        fsutil::write_atomic(self.layout.index(), &model::layout_index_bytes(index))
    }

    fn lock_index(&self) -> Result<StoreLock> {
        self.flock(self.layout.index_lock(), FlockOperation::LockExclusive)
    }

    /// Hold this while adding blobs that are not yet named in `index.json`
    /// (a fetch or an import): [`Store::gc`] waits for every holder, so it
    /// never deletes blobs of an image still being assembled. Shared: any
    /// number of fetches run together.
    pub fn writing(&self) -> Result<StoreLock> {
        self.flock(self.layout.gc_lock(), FlockOperation::LockShared)
    }

    fn flock(&self, p: PathBuf, how: FlockOperation) -> Result<StoreLock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("cannot open {}", p.display()))?;
        // Released when `f` is closed.
        if let Err(e) = rustix::fs::flock(&f, how) {
            return Err(io::Error::from(e)).with_context(|| format!("cannot lock {}", p.display()));
        }
        Ok(StoreLock(f))
    }

    /// Add or replace the `index.json` entry named `ref_name`, under the store lock.
    pub fn add_image(&self, ref_name: &str, mut desc: Descriptor) -> Result<()> {
        if !self.has_blob(&desc.sha256()?) {
            bail!("cannot name image {ref_name}: its manifest {} is not in the store", desc.digest());
        }
        desc.annotate(REF_NAME, ref_name.to_string());
        let _lock = self.lock_index()?;
        let mut index = self.index()?;
        let mut images = index.manifests().clone();
        images.retain(|d| d.annotation(REF_NAME) != Some(ref_name));
        images.push(desc);
        images.sort_by(|a, b| a.annotation(REF_NAME).cmp(&b.annotation(REF_NAME)));
        index.set_manifests(images);
        self.write_index(&index)
    }

    /// Find an image by ref name, full reference annotation or manifest digest.
    pub fn find_image(&self, what: &str) -> Result<Descriptor> {
        let index = self.index()?;
        let by_digest = what.parse::<Digest>().ok();
        index
            .manifests()
            .iter()
            .find(|d| {
                d.annotation(REF_NAME) == Some(what)
                    || d.annotation(ANN_REFERENCE) == Some(what)
                    || by_digest.is_some_and(|x| d.sha256().ok() == Some(x))
            })
            .cloned()
            .with_context(|| {
                format!("no image {what:?} in the store {} (see `eifbake store ls`)", self.root().display())
            })
    }

    /// Resolve `reference` for `linux/<arch>` from what the store holds,
    /// asking no registry: a reference with a digest by that blob, one with
    /// a tag by the images `index.json` records under that reference
    /// (`io.eifbake.reference`, written by `fetch` and by `store import
    /// --name`; a reference without a registry host means docker.io's, as
    /// everywhere). `Ok(None)` when the store has nothing (complete) for it.
    pub fn resolve_local(&self, reference: &Reference, arch: Arch) -> Result<Option<Resolved>> {
        let tops: Vec<Digest> = match reference.digest() {
            Some(d) if self.has_blob(&d) => vec![d],
            Some(_) => Vec::new(),
            None => self.recorded(reference)?,
        };
        let mut found: Vec<Resolved> = Vec::new();
        let mut problems = Vec::new();
        for top in tops {
            match self.resolve_digest(&top, arch) {
                Ok(Some(r)) if !found.contains(&r) => found.push(r),
                Ok(_) => {}
                Err(e) => problems.push(format!("{top}: {e:#}")),
            }
        }
        match found.len() {
            0 if problems.is_empty() => Ok(None),
            0 => bail!("{reference} in the store {}: {}", self.root().display(), problems.join("; ")),
            1 => Ok(found.pop()),
            _ => bail!(
                "{reference}: the store {} records {} different {} images under this reference ({}); \
                 import the one you mean again with `eifbake store import PATH --name {reference}`",
                self.root().display(),
                found.len(),
                platform::Platform::linux(arch),
                found.iter().map(|r| r.manifest.to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The digests `index.json` records `reference` (same registry,
    /// repository and tag) as resolving to: an entry's index annotation when
    /// that blob is here, else the entry's own digest.
    fn recorded(&self, reference: &Reference) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for d in self.index()?.manifests() {
            let Some(r) = d.annotation(ANN_REFERENCE).and_then(|r| r.parse::<Reference>().ok()) else {
                continue;
            };
            if (r.registry(), r.repository(), r.tag())
                != (reference.registry(), reference.repository(), reference.tag())
            {
                continue;
            }
            let top = match d.annotation(ANN_INDEX).and_then(|i| i.parse::<Digest>().ok()) {
                Some(i) if self.has_blob(&i) => i,
                _ => d.sha256()?,
            };
            if !out.contains(&top) {
                out.push(top);
            }
        }
        Ok(out)
    }

    /// What a present index or manifest gives for `linux/<arch>`; `Ok(None)`
    /// when a single manifest's config (needed to check its platform) is absent.
    fn resolve_digest(&self, top: &Digest, arch: Arch) -> Result<Option<Resolved>> {
        let platform = platform::Platform::linux(arch);
        let m = match self.manifest(top)? {
            Manifest::Index(list) => {
                let hit = model::platform_manifest(list.manifests(), arch)
                    .with_context(|| format!("the index {top}"))?;
                return Ok(Some(Resolved { index: *top, manifest: hit.sha256()?, platform }));
            }
            Manifest::Image(m) => m,
        };
        let config = m.config().sha256()?;
        if !self.has_blob(&config) {
            return Ok(None);
        }
        let have = model::config_platform(&self.read_blob_bytes(&config)?)
            .with_context(|| format!("config {config} of manifest {top}"))?;
        if have.parse::<platform::Platform>().ok() != Some(platform.clone()) {
            bail!("manifest {top} is a single-platform image for {have}, but the recipe wants {platform}");
        }
        Ok(Some(Resolved { index: *top, manifest: *top, platform }))
    }

    /// Remove blobs not reachable from `index.json` (and its `io.eifbake.index-digest`
    /// annotations) or from `extra_roots`; returns what was (or would be) removed.
    pub fn gc(&self, extra_roots: &[Digest], dry_run: bool) -> Result<Vec<(Digest, u64)>> {
        let _writers = self.flock(self.layout.gc_lock(), FlockOperation::LockExclusive)?;
        let _lock = self.lock_index()?;
        let index = self.index()?;
        let mut roots: Vec<Digest> = extra_roots.to_vec();
        for d in index.manifests() {
            roots.push(d.sha256().with_context(|| self.layout.index().display().to_string())?);
            if let Some(i) = d.annotation(ANN_INDEX) {
                roots.push(
                    i.parse().with_context(|| format!("index.json: bad {ANN_INDEX} annotation {i:?}"))?,
                );
            }
        }
        let mut keep = BTreeSet::new();
        for r in roots {
            keep.extend(self.closure(&r)?.0);
        }
        let dir = self.layout.blobs();
        let mut removed = Vec::new();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<io::Result<Vec<_>>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::from_hex(&name) else { continue };
            if keep.contains(&d) {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                fs::remove_file(e.path()).with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
            removed.push((d, size));
        }
        if !dry_run {
            self.clean_ingest(std::time::Duration::from_secs(3600))?;
        }
        Ok(removed)
    }

    /// Empty the caches eifbake keeps beside the layout (`eifbake/steps`,
    /// `eifbake/sources`, `eifbake/fetched`), under the same exclusive lock as [`Store::gc`], so
    /// no build that holds [`Store::writing`] is reading them. Each entry is
    /// first renamed to a `.gc-` name, so an interrupted removal never leaves a
    /// partial entry under a name a build would use. Returns (entry, bytes).
    pub fn gc_caches(&self, dry_run: bool) -> Result<Vec<(String, u64)>> {
        let _writers = self.flock(self.layout.gc_lock(), FlockOperation::LockExclusive)?;
        let mut removed = Vec::new();
        for cache in layout::CACHES {
            let dir = self.layout.cache(cache);
            let mut entries: Vec<_> = match fs::read_dir(&dir) {
                Ok(rd) => rd.collect::<io::Result<Vec<_>>>()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
            };
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                let bytes = tree_bytes(&e.path());
                if !dry_run {
                    let doomed =
                        if name.starts_with(".gc-") { e.path() } else { dir.join(format!(".gc-{name}")) };
                    if doomed != e.path() {
                        fs::rename(e.path(), &doomed)
                            .with_context(|| format!("cannot rename {}", e.path().display()))?;
                    }
                    let gone =
                        if doomed.is_dir() { fs::remove_dir_all(&doomed) } else { fs::remove_file(&doomed) };
                    gone.with_context(|| format!("cannot remove {}", doomed.display()))?;
                }
                removed.push((format!("{cache}/{name}"), bytes));
            }
        }
        Ok(removed)
    }

    /// Remove temporary files older than `age` from `ingest/` (left by killed
    /// processes; younger ones may belong to a fetch still running).
    pub fn clean_ingest(&self, age: std::time::Duration) -> Result<()> {
        let dir = self.layout.ingest();
        let now = std::time::SystemTime::now();
        for e in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let e = e?;
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > age)
                .unwrap_or(false);
            if old {
                let p = e.path();
                let r = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                r.with_context(|| format!("cannot remove stale {}", p.display()))?;
            }
        }
        Ok(())
    }

    /// Import every image (or the one whose ref name is `only`) of an OCI
    /// layout directory; with `name`, the one image imported is recorded as
    /// that reference (its `io.eifbake.reference` and ref name), so `lock
    /// --offline` can resolve it. Returns the ref names imported.
    pub fn import_layout(
        &self,
        dir: &Path,
        only: Option<&str>,
        name: Option<&Reference>,
    ) -> Result<Vec<String>> {
        let _writing = self.writing()?;
        let src = Store { layout: Layout::new(dir) };
        if !src.layout.oci_layout().is_file() {
            bail!("{}: not an OCI image layout (no oci-layout file)", dir.display());
        }
        let index = src.index()?;
        let layout_name = |d: &Descriptor| {
            d.annotation(REF_NAME).map(str::to_string).unwrap_or_else(|| d.digest().to_string())
        };
        let chosen: Vec<Descriptor> =
            index.manifests().iter().filter(|d| only.is_none_or(|o| layout_name(d) == o)).cloned().collect();
        if chosen.is_empty() {
            match only {
                Some(o) => bail!("{}: no image named {o:?} in its index.json", dir.display()),
                None => bail!("{}: index.json lists no images", dir.display()),
            }
        }
        if let (Some(r), n @ 2..) = (name, chosen.len()) {
            bail!(
                "{}: index.json lists {n} images, and --name {r} can name only one; choose it with --image REF_NAME",
                dir.display()
            );
        }
        // Fetched trees first, each checked against its name: a tampered
        // export is refused before any of its images is recorded.
        let mut imported: Vec<String> = crate::cache::import_fetched(self.root(), dir)?
            .into_iter()
            .map(|(tree, new)| format!("fetched tree {tree}{}", if new { "" } else { " (already there)" }))
            .collect();
        for mut desc in chosen {
            self.copy_closure(&src, &desc)?;
            let ref_name = match name {
                Some(r) => {
                    desc.annotate(ANN_REFERENCE, r.to_string());
                    desc.unannotate(ANN_INDEX);
                    ref_name_for(&r.to_string())
                }
                None => ref_name_for(&layout_name(&desc)),
            };
            self.add_image(&ref_name, desc)?;
            imported.push(ref_name);
        }
        Ok(imported)
    }

    /// Import an oci-archive tarball (an OCI layout in a tar, as `skopeo copy … oci-archive:` writes).
    pub fn import_archive(
        &self,
        tar_path: &Path,
        only: Option<&str>,
        name: Option<&Reference>,
    ) -> Result<Vec<String>> {
        let tmp = tempfile::Builder::new()
            .prefix("archive.")
            .tempdir_in(self.layout.ingest())
            .context("cannot create a temporary directory in the store")?;
        let f = File::open(tar_path).with_context(|| format!("cannot open {}", tar_path.display()))?;
        let mut ar = tar::Archive::new(io::BufReader::new(f));
        for entry in ar.entries().with_context(|| format!("{}: not a tar archive", tar_path.display()))? {
            let mut entry = entry.with_context(|| format!("{}: corrupt tar archive", tar_path.display()))?;
            let kind = entry.header().entry_type();
            // Fetched trees keep their links (checked by hash on import);
            // the OCI layout itself is files and directories only. No
            // device node or FIFO is ever created.
            let in_fetched = entry.path()?.starts_with(crate::cache::fetched_dir(Path::new("")));
            entry.set_preserve_permissions(in_fetched);
            let link = kind.is_symlink() || kind.is_hard_link();
            if !(kind.is_file() || kind.is_dir() || (in_fetched && link)) {
                bail!("{}: entry {:?} is not a file or directory", tar_path.display(), entry.path()?);
            }
            // unpack_in refuses paths that would escape the directory.
            if !entry
                .unpack_in(tmp.path())
                .with_context(|| format!("{}: cannot unpack", tar_path.display()))?
            {
                bail!("{}: entry {:?} escapes the archive root", tar_path.display(), entry.path()?);
            }
        }
        self.import_layout(tmp.path(), only, name)
            .with_context(|| format!("importing {}", tar_path.display()))
    }

    fn copy_closure(&self, src: &Store, root: &Descriptor) -> Result<()> {
        let mut todo = vec![(root.sha256()?, root.size(), true)];
        while let Some((d, size, is_manifest)) = todo.pop() {
            if !self.has_blob(&d) {
                let f = src.open_blob(&d)?;
                self.put_blob_verified(f, &d, size)
                    .with_context(|| format!("blob {d} of {}", src.root().display()))?;
            }
            if is_manifest {
                let m = self.manifest(&d)?;
                for x in m.children() {
                    todo.push((x.sha256()?, x.size(), m.is_index()));
                }
            }
        }
        Ok(())
    }

    /// Export one image as an OCI layout directory, or an oci-archive when
    /// `out` ends in `.tar`, with the fetched trees `fetched` names (step,
    /// output-tree hash) beside it under `eifbake/fetched/` ([`crate::cache`]).
    pub fn export(&self, image: &str, out: &Path, fetched: &[(String, Digest)]) -> Result<()> {
        let desc = self.find_image(image)?;
        let (blobs, missing) = self.closure(&desc.sha256()?)?;
        if let Some(m) = missing.iter().next() {
            bail!("image {image}: blob {m} is not in the store; run `eifbake fetch` first");
        }
        let mut index = model::empty_index();
        index.set_manifests(vec![desc]);
        let index_bytes = model::layout_index_bytes(&index);
        if out.extension().is_some_and(|e| e == "tar") {
            let mut ar = tar::Builder::new(fsutil::AtomicFile::create(out)?);
            // Fixed owners, modes and mtime 0, blobs in digest order: the same image exports to the same bytes.
            let header = |size: u64, dir: bool| {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
                h.set_mode(if dir { 0o755 } else { 0o644 });
                h.set_size(size);
                h.set_mtime(0);
                h
            };
            for d in layout::BLOB_DIRS {
                ar.append_data(&mut header(0, true), d, io::empty())?;
            }
            for d in &blobs {
                let f = self.open_blob(d)?;
                let len = f.metadata()?.len();
                ar.append_data(&mut header(len, false), layout::blob_name(d), f)?;
            }
            let oci_layout = layout::OCI_LAYOUT_CONTENT;
            ar.append_data(&mut header(oci_layout.len() as u64, false), layout::OCI_LAYOUT, oci_layout)?;
            ar.append_data(&mut header(index_bytes.len() as u64, false), layout::INDEX, &index_bytes[..])?;
            crate::cache::export_fetched_tar(&mut ar, self.root(), fetched)?;
            ar.into_inner().with_context(|| format!("writing {}", out.display()))?.commit()?;
        } else {
            let dst_layout = Layout::new(out);
            if dst_layout.index().exists() {
                bail!(
                    "{}: already holds an OCI layout; import into it with skopeo or choose a new directory",
                    out.display()
                );
            }
            let dst = Store::open(out)?;
            for d in &blobs {
                dst.put_blob_verified(self.open_blob(d)?, d, fs::metadata(self.blob_path(d))?.len())?;
            }
            fsutil::write_atomic(dst_layout.index(), &index_bytes)?;
            crate::cache::export_fetched_dir(self.root(), fetched, out)?;
            let _ = fs::remove_dir(dst_layout.ingest());
            let _ = fs::remove_file(dst_layout.index_lock());
        }
        Ok(())
    }
}

/// An flock on a file in the store, released when dropped.
pub struct StoreLock(#[allow(dead_code)] File);

/// A blob being written; becomes visible in the store only through [`BlobWriter::finish`].
pub struct BlobWriter {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
    w: HashingWriter<BufWriter<File>>,
    expected: Digest,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.w.len() + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than the {} bytes its descriptor declares",
                    self.expected, self.size
                ),
            ));
        }
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl BlobWriter {
    /// Check digest and size; on success rename the blob into place, else delete it.
    pub fn finish(self) -> Result<()> {
        let (buf, digest, len) = self.w.finish();
        let file = buf.into_inner().map_err(|e| e.into_error()).context("flushing a blob")?;
        if len != self.size {
            bail!("blob {}: received {len} bytes, its descriptor declares {}", self.expected, self.size);
        }
        if digest != self.expected {
            bail!("blob {}: content hashes to {digest}; refusing it", self.expected);
        }
        file.sync_all().context("syncing a blob")?;
        drop(file);
        fsutil::set_mode(self.tmp.path(), 0o644)?;
        self.tmp
            .persist(&self.target)
            .with_context(|| format!("cannot rename a verified blob to {}", self.target.display()))?;
        Ok(())
    }
}

/// Bytes of regular files below `p` (not following symlinks); 0 where unreadable.
fn tree_bytes(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::model::media;

    #[test]
    fn blobs_are_verified_before_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        let e = s.put_blob_verified(&b"hellp"[..], &good, 5).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");
        let e = s.put_blob_verified(&b"hello!"[..], &good, 5).unwrap_err();
        assert!(format!("{e:#}").contains("longer than"), "{e:#}");
        let e = s.put_blob_verified(&b"hell"[..], &good, 5).unwrap_err().to_string();
        assert!(e.contains("received 4 bytes"), "{e}");
        assert!(!s.has_blob(&good));
        assert_eq!(fs::read_dir(s.layout().ingest()).unwrap().count(), 0, "temp files left");
        s.put_blob_verified(&b"hello"[..], &good, 5).unwrap();
        assert_eq!(fs::read(s.blob_path(&good)).unwrap(), b"hello");
        assert_eq!(s.read_blob_bytes(&good).unwrap(), b"hello");
    }

    fn image(s: &Store, layer: &[u8]) -> Descriptor {
        let l = s.put_blob_bytes(layer).unwrap();
        let c = s.put_blob_bytes(b"{}").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": c.to_string(), "size": 2},
            "layers": [{"mediaType": media::OCI_TAR, "digest": l.to_string(), "size": layer.len()}],
        });
        let b = serde_json::to_vec(&m).unwrap();
        let d = s.put_blob_bytes(&b).unwrap();
        model::descriptor(media::OCI_MANIFEST, &d, b.len() as u64)
    }

    #[test]
    fn index_layers_gc_export_import() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = image(&s, b"layer a");
        let b = image(&s, b"layer b");
        s.add_image("a", a.clone()).unwrap();
        assert_eq!(s.layers(&a.sha256().unwrap()).unwrap()[0].digest, Digest::of(b"layer a"));
        assert_eq!(s.find_image("a").unwrap().sha256().unwrap(), a.sha256().unwrap());
        // b is not named: gc drops its manifest and layer, keeps the shared config.
        let gone = s.gc(&[], true).unwrap();
        assert_eq!(gone.len(), 2);
        assert!(s.has_blob(&b.sha256().unwrap()), "dry run removed something");
        assert_eq!(s.gc(&[b.sha256().unwrap()], false).unwrap().len(), 0);
        assert_eq!(s.gc(&[], false).unwrap().len(), 2);
        assert!(!s.has_blob(&b.sha256().unwrap()) && !s.has_blob(&Digest::of(b"layer b")));

        let out = tempfile::tempdir().unwrap();
        s.export("a", &out.path().join("x.tar"), &[]).unwrap();
        s.export("a", &out.path().join("y.tar"), &[]).unwrap();
        assert_eq!(fs::read(out.path().join("x.tar")).unwrap(), fs::read(out.path().join("y.tar")).unwrap());
        s.export("a", &out.path().join("dir"), &[]).unwrap();
        for src in ["x.tar", "dir"] {
            let d2 = tempfile::tempdir().unwrap();
            let s2 = Store::open(d2.path()).unwrap();
            let p = out.path().join(src);
            let names = if src == "dir" {
                s2.import_layout(&p, None, None)
            } else {
                s2.import_archive(&p, None, None)
            }
            .unwrap();
            assert_eq!(names, ["a"]);
            assert_eq!(s2.layers(&a.sha256().unwrap()).unwrap().len(), 1);
        }
    }

    /// A fetched tree with what a step may write (modes other than the
    /// umask's, a symlink, a hard link, a read-only directory) goes through
    /// an archive and a directory export into another store unchanged (its
    /// output-tree hash, which covers all of that, is checked on import),
    /// and the same trees export to the same archive bytes.
    #[test]
    fn export_and_import_carry_fetched_trees_whole() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.add_image("a", image(&s, b"layer a")).unwrap();
        let out = dir.path().join("step-out");
        fs::create_dir_all(out.join("deps/ro")).unwrap();
        fs::write(out.join("deps/tool"), "#!/bin/sh\n").unwrap();
        fs::write(out.join("deps/ro/data"), "data").unwrap();
        fsutil::set_mode(&out.join("deps/tool"), 0o4750).unwrap();
        fs::hard_link(out.join("deps/tool"), out.join("deps/tool-again")).unwrap();
        symlink("../deps/tool", out.join("deps/link")).unwrap();
        fsutil::set_mode(&out.join("deps/ro"), 0o555).unwrap();
        let tree = crate::sources::output_tree_hash(&out).unwrap();
        crate::cache::StepCache::fetched(dir.path()).publish("vendor", &tree, &out).unwrap();
        let pins = [("vendor".to_string(), tree)];

        let x = tempfile::tempdir().unwrap();
        s.export("a", &x.path().join("x.tar"), &pins).unwrap();
        s.export("a", &x.path().join("y.tar"), &pins).unwrap();
        assert_eq!(fs::read(x.path().join("x.tar")).unwrap(), fs::read(x.path().join("y.tar")).unwrap());
        s.export("a", &x.path().join("dir"), &pins).unwrap();
        for src in ["x.tar", "dir"] {
            let d2 = tempfile::tempdir().unwrap();
            let s2 = Store::open(d2.path()).unwrap();
            let p = x.path().join(src);
            let names = if src == "dir" {
                s2.import_layout(&p, None, None)
            } else {
                s2.import_archive(&p, None, None)
            }
            .unwrap();
            assert_eq!(names, [format!("fetched tree {tree}"), "a".to_string()], "{src}");
            let got = crate::cache::StepCache::fetched(d2.path()).lookup_fetched("vendor", &tree).unwrap();
            let got = got.unwrap_or_else(|| panic!("{src}: the tree is not in the importing store"));
            assert_eq!(crate::sources::output_tree_hash(&got).unwrap(), tree, "{src}");
        }
        // A device node slipped into an export is never created: refused in
        // an archive by its entry, in a directory before the tree is kept.
        let mut ar = tar::Builder::new(Vec::new());
        let mut src = tar::Archive::new(File::open(x.path().join("x.tar")).unwrap());
        for e in src.entries().unwrap() {
            let mut e = e.unwrap();
            let (mut h, path) = (e.header().clone(), e.path().unwrap().into_owned());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            ar.append_data(&mut h, path, &data[..]).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_size(0);
        let node = format!("eifbake/fetched/{}/out/deps/null", tree.hex());
        ar.append_data(&mut h, &node, io::empty()).unwrap();
        fs::write(x.path().join("dev.tar"), ar.into_inner().unwrap()).unwrap();
        let d3 = tempfile::tempdir().unwrap();
        let s3 = Store::open(d3.path()).unwrap();
        let e = s3.import_archive(&x.path().join("dev.tar"), None, None).unwrap_err();
        assert!(format!("{e:#}").contains(&format!("entry {node:?} is not a file or directory")), "{e:#}");
        let in_dir = x.path().join(format!("dir/{node}"));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &in_dir,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = s3.import_layout(&x.path().join("dir"), None, None).unwrap_err();
        assert!(
            format!("{e:#}").contains(&format!("fetched tree {tree}: deps/null is neither a directory")),
            "{e:#}"
        );
        assert!(crate::cache::StepCache::fetched(d3.path()).lookup_fetched("v", &tree).unwrap().is_none());

        // A tree the store lacks cannot be exported: named, with the way to get it.
        let missing = [("other".to_string(), Digest::of(b"no such tree"))];
        let e = s.export("a", &x.path().join("z.tar"), &missing).unwrap_err();
        assert!(
            format!("{e:#}").contains("step \"other\": its pinned output")
                && format!("{e:#}").contains("eifbake fetch"),
            "{e:#}"
        );
        assert!(!x.path().join("z.tar").exists(), "a failed export left a file");
    }

    #[test]
    fn a_manifest_of_the_wrong_type_is_refused_naming_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = s.put_blob_bytes(b"{}").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_CONFIG,
            "config": {"mediaType": media::OCI_CONFIG, "digest": c.to_string(), "size": 2},
            "layers": [],
        });
        let d = s.put_blob_bytes(&serde_json::to_vec(&m).unwrap()).unwrap();
        let e = format!("{:#}", s.layers(&d).unwrap_err());
        assert!(e.contains(&d.to_string()) && e.contains(&s.blob_path(&d).display().to_string()), "{e}");
        assert!(e.contains("neither an image manifest"), "{e}");
        // An index where an image manifest is wanted.
        let i = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []});
        let d = s.put_blob_bytes(&serde_json::to_vec(&i).unwrap()).unwrap();
        let e = format!("{:#}", s.layers(&d).unwrap_err());
        assert!(e.contains(&d.to_string()) && e.contains("is an index"), "{e}");
    }

    #[test]
    fn an_index_json_naming_a_non_sha256_blob_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let i = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": media::OCI_MANIFEST, "digest": format!("sha512:{}", "a".repeat(128)), "size": 1}]});
        fs::write(s.layout().index(), serde_json::to_vec(&i).unwrap()).unwrap();
        let e = format!("{:#}", s.index().unwrap_err());
        assert!(
            e.contains(&s.layout().index().display().to_string()) && e.contains("sha256 blobs only"),
            "{e}"
        );
        let e = format!("{:#}", s.find_image("x").unwrap_err());
        assert!(e.contains("sha256 blobs only"), "{e}");
    }

    #[test]
    fn gc_waits_for_writers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let w = s.writing().unwrap();
        let w2 = s.writing().unwrap(); // shared: a second writer is not blocked
        let unnamed = s.put_blob_bytes(b"not yet named").unwrap();
        let s2 = s.clone();
        let gc = std::thread::spawn(move || s2.gc(&[], false).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!gc.is_finished(), "gc ran while a fetch was writing");
        assert!(s.has_blob(&unnamed));
        drop((w, w2));
        assert_eq!(gc.join().unwrap(), vec![(unnamed, 13)]);
    }

    #[test]
    fn ref_names_are_tag_like() {
        assert_eq!(ref_name_for("127.0.0.1:5000/x/y:t"), "127.0.0.1_5000/x/y_t");
    }
}
