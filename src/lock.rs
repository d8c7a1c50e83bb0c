//! Lockfiles (`lockfiles/NAME.lock`): what a recipe's inputs are pinned to.
//!
//! A lockfile is TOML written by `eifbake lock`, with keys in a fixed order
//! so that diffs are small and readable:
//!
//! ```toml
//! # written by eifbake lock; do not edit
//! version = 1
//! recipe = "recipes/hello.toml"
//! recipe_sha256 = "sha256:…"          # the recipe's bytes, to detect drift
//!
//! [images.busybox]
//! reference = "stagex/core-busybox:sx2026.03.0"   # exactly as in the recipe
//! index = "sha256:…"                  # optional, see below
//! manifest = "sha256:…"               # the linux/<arch> platform manifest
//! platform = "linux/amd64"
//! keyring = "sha256:…"                # with a [trust] policy: the keyring checked with
//! signers = ["3D0A…", "9F21…"]         # and the primary keys whose signatures counted
//!
//! [sources.app]                       # see crate::sources::Pin
//! kind = "git"
//! rev = "main"
//! url = "https://…"
//! commit = "…"
//! tree = "sha256:…"                   # eifbake's tree hash of the exported tree
//!
//! [sources.crates]                    # a cargo_lock source
//! kind = "cargo_lock"
//! tree = "sha256:…"                   # the vendored directory
//!
//! [[sources.crates.crates]]           # one per crates.io package, sorted
//! name = "itoa"
//! version = "1.0.18"
//! checksum = "sha256:…"               # the Cargo.lock's checksum of the .crate
//!
//! [steps.vendor]                      # a fetch step (`network = true`)
//! definition = "sha256:…"             # what it was run as (image, script, env, mounts)
//! output = "sha256:…"                 # the output-tree hash of its /out
//! files = ["<hex> Cargo.lock", …]     # its listing, to name a changed file
//! ```
//!
//! `[steps.NAME]` pins what a fetch step wrote: `eifbake lock` runs it once
//! (see `crate::build::pin_fetch_steps`) and records its output; builds
//! take that tree from the store or refuse a run that gives anything else,
//! and refuse a step whose definition no longer matches. `files` is the
//! step's [`crate::sources::output_listing`].
//!
//! `platform` is the recipe's `arch` as an OCI platform, or the image's own
//! when the recipe gives one (`[images.NAME] platform = …`, a step image
//! for another platform: see [`crate::recipe::ImageEntry`]);
//! [`Lock::load_checked`] refuses an entry pinned for another platform.
//!
//! `keyring` and `signers` are written by `eifbake lock` for an image with a
//! signature policy ([`crate::trust`]); [`Lock::load_checked`] refuses a
//! keyring file whose sha256 is no longer the locked one.
//!
//! `manifest` is what builds use. `index` is the digest the reference
//! itself resolved to: an image index / manifest list, or — for
//! single-platform images — the same digest as `manifest`. It may be absent
//! when only the platform manifest digest is known (StageX release files
//! publish only those); such a lock is valid and `fetch` pulls the manifest
//! by digest.
//!
//! Not for: talking to registries (the caller passes a resolver; see
//! [`crate::oci::registry`]) or fetching sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci::registry::Resolved;
use crate::oci::Reference;
use crate::platform::Platform;
use crate::recipe::{Project, Recipe, Source, SourceKind};
use crate::sources::Pin;

/// The first line of every lockfile.
pub const HEADER: &str = "# written by eifbake lock; do not edit\n";
/// The lockfile format version this code reads and writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    /// The recipe path, relative to the directory holding `lockfiles/` (informational).
    pub recipe: String,
    /// sha256 of the recipe file's bytes when the lock was written.
    pub recipe_sha256: Digest,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, LockedImage>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, Pin>,
    /// Fetch steps' outputs, by step name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, LockedStep>,
}

/// What a fetch step wrote when it was locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedStep {
    /// The hash of the step's definition when it ran (`crate::build`'s
    /// `fetch_definition`): a step edited since no longer matches.
    pub definition: Digest,
    /// The output-tree hash of its `/out`.
    pub output: Digest,
    /// Its listing ([`crate::sources::output_listing`]), sorted by path.
    pub files: Vec<String>,
}

/// One image of the recipe, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The reference exactly as the recipe writes it.
    pub reference: String,
    /// What the reference resolved to (index, manifest list, or = `manifest`); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The platform manifest builds use.
    pub manifest: Digest,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: Platform,
    /// With a signature policy (`[trust]`): the sha256 of the keyring file
    /// the signatures were checked with (a changed keyring needs a new lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<Digest>,
    /// With a signature policy: the primary-key fingerprints of the keys
    /// whose valid signatures of `manifest` met the threshold, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
}

/// What `relock` did to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    pub name: String,
    pub reference: String,
    /// `kept`, `added`, `updated` or `unchanged` (re-resolved to the same digest).
    pub action: &'static str,
    pub manifest: Digest,
}

impl Lock {
    /// Parse lockfile text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Lock> {
        let lock: Lock = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
            .with_context(|| format!("invalid lockfile {}", path.display()))?;
        if lock.version != VERSION {
            bail!(
                "lockfile {}: version = {} (this eifbake reads version {VERSION})",
                path.display(),
                lock.version
            );
        }
        Ok(lock)
    }

    pub fn load(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read lockfile {}", path.display()))?;
        Lock::parse(&text, path)
    }

    /// The lockfile text: the header comment, then TOML in a fixed key order.
    pub fn to_toml(&self) -> String {
        // Pretty: a fetch step's `files` is one line per entry, for readable diffs.
        let body = toml::to_string_pretty(self).expect("a lock always serialises");
        format!("{HEADER}{body}")
    }

    /// Write atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::fsutil::write_atomic(path, self.to_toml().as_bytes())
    }

    /// The default lockfile of a recipe: `lockfiles/NAME.lock` in its
    /// project root ([`Project`]).
    pub fn default_path(recipe_path: &Path, name: &str) -> PathBuf {
        Project::of(recipe_path).root.join("lockfiles").join(format!("{name}.lock"))
    }

    /// Load a recipe and its lock and refuse any mismatch: a recipe edited
    /// since locking, an image missing from the lock, or a reference or
    /// platform that differs. Uses the default lock path.
    pub fn load_checked(recipe_path: &Path) -> Result<(Recipe, Lock)> {
        Lock::load_checked_at(recipe_path, None)
    }

    /// [`Lock::load_checked`] with an explicit lockfile path.
    pub fn load_checked_at(recipe_path: &Path, lock_path: Option<&Path>) -> Result<(Recipe, Lock)> {
        let (recipe, sha) = Recipe::load(recipe_path)?;
        let rp = Recipe::resolve_path(recipe_path);
        let lp =
            lock_path.map(Path::to_path_buf).unwrap_or_else(|| Lock::default_path(recipe_path, &recipe.name));
        if !lp.exists() {
            bail!(
                "recipe {} has no lockfile {}; run `eifbake lock {}`",
                rp.display(),
                lp.display(),
                rp.display()
            );
        }
        let lock = Lock::load(&lp)?;
        if lock.recipe_sha256 != sha {
            bail!(
                "recipe {} changed since {} was written (lock: recipe_sha256 = {}, recipe now {}); run `eifbake lock {}`",
                rp.display(),
                lp.display(),
                lock.recipe_sha256,
                sha,
                rp.display()
            );
        }
        for name in recipe.images.keys() {
            let (reference, platform) = (recipe.image_reference(name), recipe.image_platform(name));
            let Some(li) = lock.images.get(name) else {
                bail!(
                    "image {name:?} of recipe {} is not in {}; run `eifbake lock`",
                    rp.display(),
                    lp.display()
                );
            };
            if li.reference != reference {
                bail!(
                    "image {name:?}: recipe {} says {reference:?} but {} pins {:?}; run `eifbake lock`",
                    rp.display(),
                    lp.display(),
                    li.reference
                );
            }
            if let Some(t) = recipe.image_trust(name) {
                crate::trust::check_locked_keyring(name, &t, li, &Recipe::base_dir(recipe_path), &lp)?;
            }
            if li.platform != platform {
                bail!(
                    "image {name:?}: {} pins platform {} but recipe {} pins it for {platform}; \
                     run `eifbake lock`",
                    lp.display(),
                    li.platform,
                    rp.display()
                );
            }
        }
        let fetch_steps: Vec<&str> =
            recipe.steps.iter().filter(|s| s.network).map(|s| s.name.as_str()).collect();
        if let Some(missing) = fetch_steps.iter().find(|s| !lock.steps.contains_key(**s)) {
            bail!(
                "step {missing:?} of recipe {} has network = true but {} pins no output for it ([steps.{missing}]); \
                 run `eifbake lock {}`",
                rp.display(),
                lp.display(),
                rp.display()
            );
        }
        if let Some(extra) = lock.steps.keys().find(|k| !fetch_steps.contains(&k.as_str())) {
            bail!(
                "{} pins step {extra:?}, which recipe {} has no fetch step of; run `eifbake lock`",
                lp.display(),
                rp.display()
            );
        }
        if let Some(extra) = lock.images.keys().find(|k| !recipe.images.contains_key(*k)) {
            bail!(
                "{} pins image {extra:?}, which recipe {} no longer has; run `eifbake lock`",
                lp.display(),
                rp.display()
            );
        }
        Ok((recipe, lock))
    }
}

/// Compute a recipe's new lock.
///
/// Entries of `existing` whose reference and platform still match the recipe
/// are kept unless `update`; the others (and all, with `update`) are resolved
/// with `resolve` (which, for references carrying a digest, must resolve that
/// digest rather than the tag). Sources are pinned with
/// [`crate::sources::resolve`]: git and url pins are kept while the recipe
/// still asks for the same thing (unless `update`), path sources re-hashed.
/// With `offline` (`lock --offline`: the store's source cache) nothing is
/// downloaded and no remote asked: [`crate::sources::pin_offline`].
pub fn relock(
    recipe_path: &Path,
    lock_path: &Path,
    existing: Option<&Lock>,
    update: bool,
    offline: Option<&crate::sources::SourceCache>,
    mut resolve: impl FnMut(&str, &Reference) -> Result<Resolved>,
) -> Result<(Lock, Vec<ImageChange>)> {
    let (recipe, sha) = Recipe::load(recipe_path)?;
    let rp = Recipe::resolve_path(recipe_path);
    let mut images = BTreeMap::new();
    let mut changes = Vec::new();
    for (name, entry) in &recipe.images {
        let raw = &entry.reference().to_string();
        let platform = recipe.image_platform(name);
        let from = || crate::containerfile::lower::origin_of(&recipe, &rp, name);
        let reference: Reference =
            raw.parse().with_context(|| format!("{}recipe {}: images.{name}", from(), rp.display()))?;
        let old = existing.and_then(|l| l.images.get(name));
        if let Some(old) = old.filter(|o| !update && &o.reference == raw && o.platform == platform) {
            changes.push(ImageChange {
                name: name.clone(),
                reference: raw.clone(),
                action: "kept",
                manifest: old.manifest,
            });
            images.insert(name.clone(), old.clone());
            continue;
        }
        let r =
            resolve(name, &reference).with_context(|| format!("{}locking image {name:?} ({raw})", from()))?;
        if let Some(d) = reference.digest() {
            if r.index != d && r.manifest != d {
                bail!(
                    "image {name:?}: {raw} resolved to {} / {}, not to its own digest",
                    r.index,
                    r.manifest
                );
            }
        }
        let action = match old {
            None => "added",
            Some(o) if o.manifest == r.manifest && o.reference == *raw => "unchanged",
            Some(_) => "updated",
        };
        changes.push(ImageChange {
            name: name.clone(),
            reference: raw.clone(),
            action,
            manifest: r.manifest,
        });
        images.insert(
            name.clone(),
            LockedImage {
                reference: raw.clone(),
                index: Some(r.index),
                manifest: r.manifest,
                platform: r.platform,
                keyring: None,
                signers: Vec::new(),
            },
        );
    }
    let base_dir = Recipe::base_dir(recipe_path);
    let mut sources = BTreeMap::new();
    for (name, source) in &recipe.sources {
        let old = existing.and_then(|l| l.sources.get(name));
        let matching = old.filter(|o| pin_still_matches(name, o, source, &base_dir));
        let pin = match (matching, offline) {
            (Some(old), _) if !update => old.clone(),
            (_, Some(cache)) => {
                crate::sources::pin_offline(name, source, &base_dir, matching, cache, recipe_path)?
            }
            _ => crate::sources::resolve(name, source, &base_dir).with_context(|| {
                format!(
                    "{}locking source {name:?}",
                    crate::containerfile::lower::origin_of(&recipe, &rp, name)
                )
            })?,
        };
        sources.insert(name.clone(), pin);
    }
    // Fetch steps are pinned afterwards, by running them (`crate::build::pin_fetch_steps`).
    let lock = Lock {
        version: VERSION,
        recipe: recipe_label(&rp, lock_path),
        recipe_sha256: sha,
        images,
        sources,
        steps: BTreeMap::new(),
    };
    Ok((lock, changes))
}

/// Whether a source's existing pin still describes what the recipe asks for
/// without asking the network: git and url pins are kept while URL, rev and
/// sha256 are unchanged (`--update` re-resolves a git rev); path sources are
/// always re-hashed, which is cheap and what an edit to them means; a
/// `cargo_lock` pin is kept while its Cargo.lock lists the same crates.
fn pin_still_matches(name: &str, pin: &Pin, source: &Source, base_dir: &Path) -> bool {
    match source.kind() {
        SourceKind::Git { url, rev } => {
            pin.kind == "git" && pin.url.as_deref() == Some(url) && pin.rev.as_deref() == Some(rev)
        }
        SourceKind::Url { url, sha256, .. } => {
            pin.kind == "url" && pin.url.as_deref() == Some(url) && pin.sha256 == Some(sha256)
        }
        SourceKind::Path { .. } => false,
        SourceKind::CargoLock { path } => {
            pin.kind == "cargo_lock"
                && crate::sources::read_cargo_lock(name, path, base_dir).is_ok_and(|c| c == pin.crates)
        }
    }
}

/// The recipe path as recorded in the lock: relative to the directory that
/// holds `lockfiles/` when it is below it, else as given.
fn recipe_label(recipe: &Path, lock_path: &Path) -> String {
    let root = lock_path.parent().and_then(Path::parent);
    if let (Some(root), Ok(r)) = (root, recipe.canonicalize()) {
        let root = if root.as_os_str().is_empty() { Path::new(".") } else { root };
        if let Ok(root) = root.canonicalize() {
            if let Ok(rel) = r.strip_prefix(&root) {
                return rel.display().to_string();
            }
        }
    }
    recipe.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Arch;

    const LITERAL: &str = r#"# written by eifbake lock; do not edit
version = 1
recipe = "recipes/hello.toml"
recipe_sha256 = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

[images.busybox]
reference = "stagex/core-busybox:sx2026.03.0"
manifest = "sha256:d608daa946e4799cf28b105aba461db00187657bd55ea7c2935ff11dac237e27"
platform = "linux/amd64"

[images.local]
reference = "127.0.0.1:5000/x:y"
index = "sha256:3d1d534143a4f5612c565c733f2f43985438f5f980f8be98767ba955eae19033"
manifest = "sha256:9a5c6d0832ba0bc8c5ed29d5a064d69b2837eee4bf689a7df60947a181aeb6ff"
platform = "linux/amd64"

[sources.app]
kind = "git"
rev = "main"
url = "https://github.com/example/hello-enclave"
commit = "0123456789abcdef0123456789abcdef01234567"
tree = "sha256:89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567"

[sources.data]
kind = "url"
url = "https://example.com/data.tar.gz"
tree = "sha256:2fbe7b164dd92edb9c1096152f6d27592d8a69b1b8eb2fc907b5fadea7d11668"
sha256 = "sha256:cd3a66471ce1f630fa77d5c9bd9829f9f9fab6302a1aaa64d67b74f1f069b750"
"#;

    #[test]
    fn round_trips_a_literal_file() {
        let lock = Lock::parse(LITERAL, Path::new("x.lock")).unwrap();
        assert_eq!(lock.images["busybox"].index, None);
        assert_eq!(lock.sources["app"].commit.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"));
        assert_eq!(lock.to_toml(), LITERAL);
    }

    #[test]
    fn fetch_step_pins_round_trip_one_file_a_line() {
        let text = format!(
            "{LITERAL}\n[steps.vendor]\ndefinition = \"sha256:{d}\"\noutput = \"sha256:{o}\"\nfiles = [\n    \"{d} deps\",\n    \"{o} deps/a.txt\",\n]\n",
            d = "1".repeat(64),
            o = "2".repeat(64)
        );
        let lock = Lock::parse(&text, Path::new("x.lock")).unwrap();
        assert_eq!(lock.steps["vendor"].files.len(), 2);
        assert_eq!(lock.steps["vendor"].output, Digest::from_bytes([0x22; 32]));
        assert_eq!(lock.to_toml(), text);
        let e = format!(
            "{:#}",
            Lock::parse(&text.replace("output =", "outputs ="), Path::new("x.lock")).unwrap_err()
        );
        assert!(e.contains("unknown field `outputs`"), "{e}");
    }

    #[test]
    fn a_platform_is_parsed_once_and_a_bad_one_names_the_file_and_field() {
        let lock = Lock::parse(LITERAL, Path::new("x.lock")).unwrap();
        assert_eq!(lock.images["busybox"].platform, Platform::linux(Arch::X86_64));
        let arm = LITERAL.replacen("linux/amd64", "linux/arm64", 1);
        let lock = Lock::parse(&arm, Path::new("x.lock")).unwrap();
        assert_eq!(lock.images["busybox"].platform, Platform::linux(Arch::Aarch64));
        assert_eq!(lock.to_toml(), arm);
        for (bad, why) in [
            ("linux/s390x", "is not one eifbake builds for (amd64 or arm64)"),
            ("linux/x86_64", "is not one eifbake builds for (amd64 or arm64)"),
            ("amd64", "expected OS/ARCH"),
        ] {
            let text = LITERAL.replacen("linux/amd64", bad, 1);
            let e = format!("{:#}", Lock::parse(&text, Path::new("locks/x.lock")).unwrap_err());
            assert!(e.contains("invalid lockfile locks/x.lock") && e.contains(why), "{e}");
            assert!(e.contains(&format!("platform = \"{bad}\"")), "{e}");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_versions() {
        let e = format!(
            "{:#}",
            Lock::parse(&LITERAL.replace("platform =", "arch ="), Path::new("x.lock")).unwrap_err()
        );
        assert!(e.contains("x.lock") && e.contains("unknown field `arch`"), "{e}");
        let e = format!(
            "{:#}",
            Lock::parse(&LITERAL.replace("version = 1", "version = 2"), Path::new("x.lock")).unwrap_err()
        );
        assert!(e.contains("version = 2"), "{e}");
    }

    #[test]
    fn default_path_sits_beside_recipes() {
        assert_eq!(Lock::default_path(Path::new("p/recipes/a.toml"), "a"), Path::new("p/lockfiles/a.lock"));
        assert_eq!(
            Lock::default_path(Path::new("elsewhere/a.toml"), "a"),
            Path::new("elsewhere/lockfiles/a.lock")
        );
    }

    fn example() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        for sub in ["recipes", "lockfiles"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let recipe = dir.path().join("recipes/stagex-hello.toml");
        let lock = dir.path().join("lockfiles/stagex-hello.lock");
        std::fs::copy(root.join("recipes/stagex-hello.toml"), &recipe).unwrap();
        std::fs::copy(root.join("lockfiles/stagex-hello.lock"), &lock).unwrap();
        (dir, recipe, lock)
    }

    #[test]
    fn stagex_example_is_accepted_and_drift_is_refused() {
        let (_dir, recipe, lock_path) = example();
        let text = std::fs::read_to_string(&lock_path).unwrap();
        let (r, lock) = Lock::load_checked(&recipe).unwrap();
        assert_eq!(r.name, "stagex-hello");
        // Exactly the bytes eifbake would write for this lock.
        assert_eq!(lock.to_toml(), text);
        assert_eq!(
            lock.images["busybox"].manifest.to_string(),
            "sha256:d608daa946e4799cf28b105aba461db00187657bd55ea7c2935ff11dac237e27"
        );
        assert!(lock.images.values().all(|i| i.index.is_none()));

        let mut bytes = std::fs::read(&recipe).unwrap();
        let at = bytes.iter().position(|&b| b == b'2').unwrap(); // "cpus = 2" or a version digit
        bytes[at] = b'3';
        std::fs::write(&recipe, &bytes).unwrap();
        let e = format!("{:#}", Lock::load_checked(&recipe).unwrap_err());
        assert!(
            e.contains("stagex-hello.toml") && e.contains("stagex-hello.lock") && e.contains("changed"),
            "{e}"
        );
    }

    fn relock_with_sha(lock_text: &str, recipe: &Path, lock_path: &Path) {
        let (_, sha) = Recipe::load(recipe).unwrap();
        let old = Lock::parse(lock_text, lock_path).unwrap();
        std::fs::write(lock_path, Lock { recipe_sha256: sha, ..old }.to_toml()).unwrap();
    }

    #[test]
    fn load_checked_names_missing_and_changed_images() {
        let (_dir, recipe, lock_path) = example();
        let text = std::fs::read_to_string(&lock_path).unwrap();
        let edited =
            std::fs::read_to_string(&recipe).unwrap().replace("user-nit:sx2026.03.0", "user-nit:sx2026.04.0");
        std::fs::write(&recipe, edited).unwrap();
        relock_with_sha(&text, &recipe, &lock_path);
        let e = format!("{:#}", Lock::load_checked(&recipe).unwrap_err());
        assert!(
            e.contains("image \"init\"") && e.contains("sx2026.04.0") && e.contains("stagex-hello.lock"),
            "{e}"
        );

        let edited = std::fs::read_to_string(&recipe).unwrap().replace("init = \"stagex", "init2 = \"stagex");
        std::fs::write(&recipe, edited.replace("image = \"init\"", "image = \"init2\"")).unwrap();
        relock_with_sha(&text, &recipe, &lock_path);
        let e = format!("{:#}", Lock::load_checked(&recipe).unwrap_err());
        assert!(e.contains("image \"init2\"") && e.contains("is not in"), "{e}");
    }

    #[test]
    fn relock_keeps_updates_and_checks_digests() {
        let (_dir, recipe, lock_path) = example();
        let old = Lock::load(&lock_path).unwrap();
        let fake = |d: u8| Digest::from_bytes([d; 32]);
        let mut calls = Vec::new();
        // Nothing changed: every entry is kept, the resolver is never called.
        let (same, changes) = relock(&recipe, &lock_path, Some(&old), false, None, |n, _| {
            calls.push(n.to_string());
            bail!("unexpected")
        })
        .unwrap();
        assert!(calls.is_empty());
        assert_eq!(same, old);
        assert!(changes.iter().all(|c| c.action == "kept"));
        // --update re-resolves everything.
        let (new, changes) = relock(&recipe, &lock_path, Some(&old), true, None, |_, _| {
            Ok(Resolved { index: fake(1), manifest: fake(2), platform: Platform::linux(Arch::X86_64) })
        })
        .unwrap();
        assert!(changes.iter().all(|c| c.action == "updated"));
        assert_eq!(new.images["init"].index, Some(fake(1)));
        // A reference with a digest must resolve to that digest.
        let pinned = std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("user-nit:sx2026.03.0", &format!("user-nit@{}", fake(7)));
        std::fs::write(&recipe, pinned).unwrap();
        let e = relock(&recipe, &lock_path, Some(&old), false, None, |_, _| {
            Ok(Resolved { index: fake(1), manifest: fake(2), platform: Platform::linux(Arch::X86_64) })
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("not to its own digest"), "{e:#}");
        let (l, changes) = relock(&recipe, &lock_path, Some(&old), false, None, |_, r| {
            assert_eq!(r.digest(), Some(fake(7)));
            Ok(Resolved { index: fake(7), manifest: fake(8), platform: Platform::linux(Arch::X86_64) })
        })
        .unwrap();
        assert_eq!(l.images["init"].manifest, fake(8));
        assert_eq!(changes.iter().filter(|c| c.action == "updated").count(), 1);
        assert_eq!(l.recipe, "recipes/stagex-hello.toml");
    }

    /// An image with its own platform is resolved, pinned and checked for
    /// it: the resolver is asked for that arch's manifest, the lock records
    /// it, a recipe that changes it no longer matches the lock (and relock
    /// resolves that image again, keeping the others).
    #[test]
    fn an_image_platform_is_pinned_and_checked_per_image() {
        let (_dir, recipe, lock_path) = example();
        let old = Lock::load(&lock_path).unwrap();
        let text = std::fs::read_to_string(&recipe).unwrap();
        let step_image = |platform: &str| {
            text.replace(
                "busybox = \"stagex/core-busybox:sx2026.03.0\"",
                &format!(
                    "busybox = \"stagex/core-busybox:sx2026.03.0\"\nbuilder = {{ ref = \"stagex/core-busybox:sx2026.03.0\", platform = \"{platform}\" }}"
                ),
            )
            .replace("image = \"busybox\"", "image = \"builder\"")
        };
        std::fs::write(&recipe, step_image("linux/arm64")).unwrap();
        let fake = |d: u8| Digest::from_bytes([d; 32]);
        let mut asked = Vec::new();
        let (lock, _) = relock(&recipe, &lock_path, Some(&old), false, None, |n, _| {
            asked.push(n.to_string());
            Ok(Resolved { index: fake(1), manifest: fake(2), platform: Platform::linux(Arch::Aarch64) })
        })
        .unwrap();
        assert_eq!(asked, ["builder"], "only the new image is resolved");
        assert_eq!(lock.images["builder"].platform, Platform::linux(Arch::Aarch64));
        assert_eq!(lock.images["busybox"], old.images["busybox"]);
        assert!(lock.to_toml().contains(
            "[images.builder]\nreference = \"stagex/core-busybox:sx2026.03.0\"\nindex = \"sha256:0101"
        ));
        lock.save(&lock_path).unwrap();
        Lock::load_checked(&recipe).unwrap();

        // The recipe now wants the image for amd64: the arm64 pin no longer matches.
        std::fs::write(&recipe, step_image("linux/amd64")).unwrap();
        relock_with_sha(&lock.to_toml(), &recipe, &lock_path);
        let e = format!("{:#}", Lock::load_checked(&recipe).unwrap_err());
        assert!(
            e.contains("image \"builder\"")
                && e.contains("pins platform linux/arm64 but recipe")
                && e.contains("pins it for linux/amd64"),
            "{e}"
        );
        let (_, changes) = relock(&recipe, &lock_path, Some(&lock), false, None, |_, _| {
            Ok(Resolved { index: fake(3), manifest: fake(4), platform: Platform::linux(Arch::X86_64) })
        })
        .unwrap();
        let builder = changes.iter().find(|c| c.name == "builder").unwrap();
        assert_eq!((builder.action, builder.manifest), ("updated", fake(4)));
    }
}
