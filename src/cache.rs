//! The caches eifbake keeps in the store beside the OCI layout (where they
//! are is [`crate::oci::layout`]'s; the inside of a step entry is this
//! module's):
//!
//! - `STORE/eifbake/sources/<tree hex>/`: a materialised source tree, named
//!   after its tree hash ([`crate::sources::SourceCache`]).
//! - `STORE/eifbake/steps/<key hex>/`: a step's output ([`StepCache`]),
//!   `out/` holding the tree and `tree` the output-tree hash
//!   ([`crate::sources::output_tree_hash`]) it had when it was stored.
//! - `STORE/eifbake/fetched/<output-tree hex>/`: what a fetch step
//!   (`network = true`) wrote, laid out like a step entry but named after
//!   its output-tree hash, the one the lock pins ([`StepCache::fetched`]).
//!   `eifbake fetch` fills a store; `store export --fetched LOCKFILE`
//!   carries a lock's trees to another store ([`export_fetched_tar`],
//!   [`export_fetched_dir`]) and `store import` brings them in
//!   ([`import_fetched`]), each checked against the hash it is named after.
//! - `STORE/eifbake/roots/<key hex>/`: an image's root filesystem as a step
//!   starts from it ([`RootCache`]), `root/` holding the extracted tree and
//!   `tree` its root-tree hash ([`crate::sources::root_tree_hash`]: owners
//!   and extended attributes included). Steps use it read-only, as the
//!   lower layer of an overlay (`crate::sandbox`), so no step writes into it.
//!
//! What it is for: finding a cached entry, checking it, publishing a new one.
//! Not for: computing step keys or running steps (`crate::build`), fetching
//! sources (`crate::sources`), removing entries (`Store::gc_caches`).
//!
//! Invariants, the same for every cache:
//!
//! - **Published whole, by one sequence.** An entry is built under a
//!   temporary `.incoming-` name in the cache directory, hashed, and renamed
//!   to its final name with `RENAME_NOREPLACE`
//!   ([`crate::fsutil::rename_noreplace`]); [`publish`] is that sequence,
//!   and both caches use it. No build sees a partial entry, and no rename
//!   ever replaces an entry.
//! - **Never removed or replaced by a build.** Several builds may share a
//!   store and read one entry at the same time. When a build finds the entry
//!   it wanted to publish already there and sound, it keeps that one and
//!   drops its own copy. Only `eifbake store gc --caches` removes entries,
//!   under the store's exclusive lock, which waits until no build holds the
//!   shared one ([`crate::oci::Store::writing`]).
//! - **Verified on every use.** A source entry is re-hashed and compared
//!   with its name (the lock's tree hash) every time a build uses it; a step
//!   entry's `out/` is re-hashed and compared with its `tree` record every
//!   time a build takes it from the cache instead of running the step; a
//!   root entry's `root/` is re-hashed and compared with its `tree` record
//!   every time a step is to start from it.
//! - **A damaged entry is refused, not repaired.** An entry that fails its
//!   check was changed after it was published (entries are never written in
//!   place, so an interrupted build cannot be the cause). The build stops
//!   with exit 2, naming the entry and `eifbake store gc --caches`. Repairing
//!   it in place would mean removing an entry another build may be reading,
//!   and a silent repair would hide that someone wrote into the store. A
//!   build that does not read the entry (`--no-cache`, which runs every
//!   step) only warns about it.
//!
//! What the check does not catch: a consistent rewrite of both a step
//! entry's `out/` and its `tree` record (whoever can write the store can do
//! that; `verify` rebuilds with no step cache), and changes made between the
//! check and the moment the build reads the entry.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::digest::Digest;
use crate::fsutil::{self, CopyModes};
use crate::oci::layout::Layout;
use crate::sources::{output_tree_hash, root_tree_hash};

/// A step entry's output tree, under the entry.
const OUT: &str = "out";
/// A step entry's record of its output-tree hash, under the entry.
const RECORD: &str = "tree";

/// Step outputs by step key: `STEPS/<key hex>/{out/,tree}`.
#[derive(Debug, Clone)]
pub struct StepCache {
    dir: PathBuf,
}

impl StepCache {
    /// The step cache of the store at `store_root`.
    pub fn new(store_root: &Path) -> StepCache {
        StepCache { dir: Layout::new(store_root).steps() }
    }

    /// The fetched trees of the store at `store_root`: entries keyed by their
    /// own output-tree hash (see [`StepCache::lookup_fetched`]).
    pub fn fetched(store_root: &Path) -> StepCache {
        StepCache { dir: Layout::new(store_root).fetched() }
    }

    /// The verified copy of the tree `output` a fetch step wrote, or `None`
    /// when the store has none; an error naming the entry when it is damaged.
    pub fn lookup_fetched(&self, step: &str, output: &Digest) -> Result<Option<PathBuf>> {
        let found = self.lookup(step, output)?;
        if let Some(out) = &found {
            let recorded = check_entry(out.parent().expect("an entry's out/"))?;
            if recorded != *output {
                bail!(
                    "step {step:?}: fetched entry {} holds tree {recorded}, not the {output} it is named after;                      remove it with `eifbake store gc --caches`",
                    self.entry(output).display()
                );
            }
        }
        Ok(found)
    }

    /// The entry of `key` (which may not exist).
    pub fn entry(&self, key: &Digest) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// The verified output of the step `step` whose inputs hash to `key`, or
    /// `None` when it is not cached; an error naming the entry when it is
    /// cached but no longer holds what was stored.
    pub fn lookup(&self, step: &str, key: &Digest) -> Result<Option<PathBuf>> {
        let entry = self.entry(key);
        if entry.symlink_metadata().is_err() {
            return Ok(None);
        }
        if let Err(why) = check_entry(&entry) {
            bail!(
                "step {step:?}: step cache entry {} is damaged: {why:#}; it was changed after it was \
                 cached, so eifbake will not use it. Remove it with `eifbake store gc --caches` and build \
                 again (or build with --no-cache)",
                entry.display()
            );
        }
        Ok(Some(entry.join(OUT)))
    }

    /// Copy `out`, the output the step `step` just wrote, into the cache
    /// under `key` with its output-tree hash. When the entry exists already
    /// (another build published it, or `--no-cache` ran the step again) it
    /// is kept and this copy dropped, with a warning when it is damaged or
    /// holds another tree (the step is not reproducible).
    pub fn publish(&self, step: &str, key: &Digest, out: &Path) -> Result<()> {
        let entry = self.entry(key);
        let hash = match publish(&self.dir, &entry, |staged| stage_step(step, out, staged))? {
            Published::New(_) => return Ok(()),
            Published::Exists(hash) => hash,
        };
        match check_entry(&entry) {
            Ok(kept) if kept == hash => {}
            Ok(kept) => eprintln!(
                "eifbake: warning: step {step:?} wrote output tree {hash}, but the step cache entry {} for \
                 the same inputs holds {kept}: the step is not reproducible (`eifbake check` finds why). \
                 This build uses its own output; the cache keeps the first one.",
                entry.display()
            ),
            Err(why) => eprintln!(
                "eifbake: warning: step cache entry {} is damaged ({why:#}); this build did not use it. \
                 Remove it with `eifbake store gc --caches`.",
                entry.display()
            ),
        }
        Ok(())
    }
}

/// An image root's tree under its entry.
const ROOT: &str = "root";

/// Extracted image roots by key: `ROOTS/<key hex>/{root/,tree}`. The key
/// (made by the caller) names the image manifest and every option that
/// changes what an extraction writes, so an entry is only ever used for
/// the extraction it stands for.
#[derive(Debug, Clone)]
pub struct RootCache {
    dir: PathBuf,
}

impl RootCache {
    /// The root cache of the store at `store_root`.
    pub fn new(store_root: &Path) -> RootCache {
        RootCache { dir: Layout::new(store_root).roots() }
    }

    /// The entry of `key` (which may not exist).
    pub fn entry(&self, key: &Digest) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// Where the entries are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified root filesystem of `image` under `key`: checked against
    /// its record when the cache has it, else made by `extract` (which
    /// writes the tree at the path it is given, one that does not exist
    /// yet), hashed and published. An entry that fails its check is
    /// refused, naming it and the way out.
    pub fn get(
        &self,
        image: &str,
        key: &Digest,
        extract: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let entry = self.entry(key);
        if entry.symlink_metadata().is_err() {
            let made = publish(&self.dir, &entry, |staged| {
                fs::create_dir(staged).with_context(|| format!("cannot create {}", staged.display()))?;
                extract(&staged.join(ROOT))?;
                let hash = root_tree_hash(&staged.join(ROOT))?;
                fs::write(staged.join(RECORD), format!("{hash}\n"))
                    .with_context(|| format!("cannot write {}", staged.join(RECORD).display()))?;
                Ok(hash)
            })?;
            if let Published::New(_) = made {
                return Ok(entry.join(ROOT));
            }
        }
        if let Err(why) = check_record(&entry, ROOT, root_tree_hash) {
            bail!(
                "image {image:?}: root cache entry {} is damaged: {why:#}; it was changed after it was \
                 cached, so eifbake will not use it. Remove it with `eifbake store gc --caches` and build \
                 again (or build with --no-cache, which extracts images afresh)",
                entry.display()
            );
        }
        Ok(entry.join(ROOT))
    }
}

/// Where an export keeps fetched trees, relative to its root: the store's
/// own place for them (`eifbake/fetched/<tree hex>/out/`).
pub fn fetched_dir(root: &Path) -> PathBuf {
    Layout::new(root).fetched()
}

impl StepCache {
    /// Publish `out`, a fetched tree brought from elsewhere (an export), as
    /// the entry of `output`, the hash it claims: the copy is hashed before
    /// it is published and refused, naming the tree, when it hashes to
    /// anything else. Returns false when the store had the entry already
    /// (then checked, and kept).
    pub fn import_fetched(&self, output: &Digest, out: &Path) -> Result<bool> {
        let label = format!("fetched tree {output}");
        let published = publish(&self.dir, &self.entry(output), |staged| {
            let hash = stage_entry(&label, out, staged)?;
            refuse_special(&label, &staged.join(OUT))?;
            if hash != *output {
                bail!(
                    "{label}: {} hashes to {hash}, not to the hash it is named after: it was changed after \
                     it was exported, so eifbake refuses it. Export it again from a store that holds it \
                     (`eifbake store export IMAGE FILE --fetched LOCKFILE`)",
                    out.display()
                );
            }
            Ok(hash)
        })?;
        match published {
            Published::New(_) => Ok(true),
            Published::Exists(_) => {
                self.lookup_fetched("(imported)", output)?;
                Ok(false)
            }
        }
    }
}

/// Refuse a tree holding anything but directories, regular files and
/// symbolic links: a device node brought in by an import would reach the
/// steps that mount the tree (a fetch step's own output never has one).
fn refuse_special(label: &str, tree: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(tree).follow_links(false) {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        let ft = entry.file_type();
        if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            bail!(
                "{label}: {} is neither a directory, a regular file nor a symbolic link; refusing the tree",
                entry.path().strip_prefix(tree).unwrap_or(entry.path()).display()
            );
        }
    }
    Ok(())
}

/// The checked `out/` directories of the fetched trees `pins` names (step
/// name, output-tree hash) in the store at `store_root`, each tree once,
/// in hash order; an error naming the step and `eifbake fetch` for one the
/// store lacks.
fn fetched_trees(store_root: &Path, pins: &[(String, Digest)]) -> Result<Vec<(Digest, PathBuf)>> {
    let cache = StepCache::fetched(store_root);
    let mut found = std::collections::BTreeMap::new();
    for (step, output) in pins {
        match cache.lookup_fetched(step, output)? {
            Some(out) => found.insert(*output, out),
            None => bail!(
                "step {step:?}: its pinned output {output} is not in the store {} (under eifbake/fetched); run \
                 `eifbake fetch RECIPE` with this store first",
                store_root.display()
            ),
        };
    }
    Ok(found.into_iter().collect())
}

/// Copy the fetched trees `pins` names from the store at `store_root` into
/// the layout directory `dest` (as entries of its own fetched cache, so
/// `dest` also works as a store).
pub fn export_fetched_dir(store_root: &Path, pins: &[(String, Digest)], dest: &Path) -> Result<()> {
    let into = StepCache::fetched(dest);
    for (output, out) in fetched_trees(store_root, pins)? {
        into.import_fetched(&output, &out)?;
    }
    Ok(())
}

/// Append the fetched trees `pins` names to the archive `ar`, each under
/// `eifbake/fetched/<tree hex>/out/`: entries in path order, never
/// following a symlink, with their modes, owner 0 and mtime 0 (hard links
/// within a tree as links), so the same trees give the same bytes.
pub fn export_fetched_tar<W: std::io::Write>(
    ar: &mut tar::Builder<W>,
    store_root: &Path,
    pins: &[(String, Digest)],
) -> Result<()> {
    let trees = fetched_trees(store_root, pins)?;
    if trees.is_empty() {
        return Ok(());
    }
    let base = fetched_dir(Path::new(""));
    let dir = |ar: &mut tar::Builder<W>, path: &Path| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        ar.append_data(&mut h, path, std::io::empty())
    };
    dir(ar, base.parent().expect("eifbake/"))?;
    dir(ar, &base)?;
    for (output, out) in trees {
        let hex = base.join(output.hex());
        dir(ar, &hex)?;
        append_tree(ar, &out, &hex.join(OUT)).with_context(|| format!("exporting fetched tree {output}"))?;
    }
    Ok(())
}

/// Append `src` (a directory, itself included) to `ar` under `name`.
fn append_tree<W: std::io::Write>(ar: &mut tar::Builder<W>, src: &Path, name: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let walker = walkdir::WalkDir::new(src).follow_links(false).sort_by_file_name();
    let mut first_links: std::collections::HashMap<(u64, u64), PathBuf> = std::collections::HashMap::new();
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", src.display()))?;
        let path = name.join(entry.path().strip_prefix(src).expect("walkdir yields paths under its root"));
        let md = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let ft = md.file_type();
        if !md.is_dir() && !ft.is_symlink() && md.nlink() > 1 {
            if let Some(first) = first_links.get(&(md.dev(), md.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                ar.append_link(&mut h, &path, first)?;
                continue;
            }
            first_links.insert((md.dev(), md.ino()), path.clone());
        }
        if ft.is_symlink() {
            let target = fs::read_link(entry.path())?;
            ar.append_link(&mut h, &path, target)?;
        } else if ft.is_file() {
            let f = fs::File::open(entry.path())
                .with_context(|| format!("cannot open {}", entry.path().display()))?;
            ar.append_data(&mut h, &path, f)?;
        } else {
            h.set_size(0);
            ar.append_data(&mut h, &path, std::io::empty())?;
        }
    }
    Ok(())
}

/// Bring the fetched trees an export at `root` holds (`eifbake/fetched/
/// <tree hex>/out/`) into the store at `store_root`, each checked against
/// its name ([`StepCache::import_fetched`]). Returns the trees, in hash
/// order, and whether each was new.
pub fn import_fetched(store_root: &Path, root: &Path) -> Result<Vec<(Digest, bool)>> {
    let dir = fetched_dir(root);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut names = Vec::new();
    for e in rd {
        names.push(e.with_context(|| format!("cannot read {}", dir.display()))?.file_name());
    }
    names.sort();
    let cache = StepCache::fetched(store_root);
    let mut imported = Vec::new();
    for name in names {
        let text = name.to_string_lossy();
        let Ok(output) = Digest::from_hex(&text) else {
            bail!(
                "{}: {text:?} is not a fetched tree (expected its 64-hex-digit tree hash as its name)",
                dir.display()
            )
        };
        imported.push((output, cache.import_fetched(&output, &dir.join(&*text).join(OUT))?));
    }
    Ok(imported)
}

/// Build a step entry at `staged`: a copy of `out` in `out/`, and in `tree`
/// the output-tree hash of that copy, hashed once, after copying: the
/// record describes exactly what is published (the copy's fidelity to `out`
/// is [`fsutil::copy_tree`]'s, tested there).
fn stage_step(step: &str, out: &Path, staged: &Path) -> Result<Digest> {
    stage_entry(&format!("step {step:?}"), out, staged)
}

/// [`stage_step`] for what `label` names (a step, an imported tree).
fn stage_entry(label: &str, out: &Path, staged: &Path) -> Result<Digest> {
    fs::create_dir(staged).with_context(|| format!("cannot create {}", staged.display()))?;
    let copy = staged.join(OUT);
    fsutil::copy_tree(out, &copy, &[], CopyModes::Exact)
        .with_context(|| format!("{label}: copying its output into the store"))?;
    let hash = output_tree_hash(&copy).with_context(|| format!("{label}: hashing its output"))?;
    fs::write(staged.join(RECORD), format!("{hash}\n"))
        .with_context(|| format!("cannot write {}", staged.join(RECORD).display()))?;
    Ok(hash)
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The entry is the one just built, whose tree hashes to this.
    New(Digest),
    /// An entry of that name was there already and is kept, unchecked (the
    /// caller checks it); the one just built (hashing to this) was dropped.
    Exists(Digest),
}

/// The one way an entry enters a cache (both caches use it): `build` makes
/// the entry at a path that does not exist yet, inside a temporary
/// `.incoming-` directory in `dir`, and returns the hash of the tree it
/// made; the entry is then renamed to `entry` (in `dir`) with
/// `RENAME_NOREPLACE`, so no build ever sees a partial entry and no entry is
/// ever replaced. The temporary directory goes, whatever happens.
pub fn publish(dir: &Path, entry: &Path, build: impl FnOnce(&Path) -> Result<Digest>) -> Result<Published> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    let staged = tmp.path().join("entry");
    let hash = build(&staged)?;
    if fsutil::rename_noreplace(&staged, entry)? {
        Ok(Published::New(hash))
    } else {
        Ok(Published::Exists(hash))
    }
}

/// The recorded output-tree hash of the step entry `entry`, after checking
/// that its `out/` still hashes to it.
fn check_entry(entry: &Path) -> Result<Digest> {
    check_record(entry, OUT, output_tree_hash)
}

/// The hash an entry's `tree` record holds, after checking that its tree
/// `entry/tree_dir` (hashed by `hash`) still hashes to it.
fn check_record(entry: &Path, tree_dir: &str, hash: fn(&Path) -> Result<Digest>) -> Result<Digest> {
    let record = entry.join(RECORD);
    let text = fs::read_to_string(&record).with_context(|| format!("cannot read {}", record.display()))?;
    let recorded: Digest =
        text.trim_end().parse().with_context(|| format!("{}: not a sha256 digest", record.display()))?;
    let tree = entry.join(tree_dir);
    let found = hash(&tree)?;
    if found != recorded {
        bail!("{} hashes to {found}, but {} says {recorded}", tree.display(), record.display());
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let names = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.starts_with('.')).collect()
    }

    #[test]
    fn publish_never_replaces_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c");
        let entry = dir.join("e");
        let fill = |text: &'static str| {
            move |p: &Path| {
                fs::create_dir(p)?;
                fs::write(p.join("f"), text)?;
                Ok(Digest::of(text.as_bytes()))
            }
        };
        assert_eq!(publish(&dir, &entry, fill("one")).unwrap(), Published::New(Digest::of(b"one")));
        assert_eq!(publish(&dir, &entry, fill("two")).unwrap(), Published::Exists(Digest::of(b"two")));
        assert_eq!(fs::read_to_string(entry.join("f")).unwrap(), "one", "an entry was replaced");
        let e = publish(&dir, &dir.join("x"), |_| bail!("no")).unwrap_err();
        assert_eq!(e.to_string(), "no");
        assert!(!dir.join("x").exists());
        assert_eq!(leftovers(&dir), Vec::<String>::new());
    }

    #[test]
    fn a_step_entry_records_the_hash_of_what_it_holds() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("bin"), "x").unwrap();
        fsutil::set_mode(&out.join("bin"), 0o755).unwrap();
        let cache = StepCache::new(&d.path().join("store"));
        let key = Digest::of(b"key");
        cache.publish("s", &key, &out).unwrap();
        let entry = cache.entry(&key);
        let recorded = fs::read_to_string(entry.join(RECORD)).unwrap();
        assert_eq!(recorded, format!("{}\n", output_tree_hash(&entry.join(OUT)).unwrap()));
        assert_eq!(recorded.trim_end(), output_tree_hash(&out).unwrap().to_string());
        assert_eq!(cache.lookup("s", &key).unwrap(), Some(entry.join(OUT)));
        // Published again (another build, --no-cache): the first is kept.
        cache.publish("s", &key, &out).unwrap();
        assert_eq!(leftovers(&Layout::new(d.path().join("store")).steps()), Vec::<String>::new());
    }
}
