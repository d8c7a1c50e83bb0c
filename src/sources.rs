//! Sources: the recipe's git repositories, local directories, downloads and
//! vendored crates, pinned by `lock` and turned into plain directories by
//! `build`.
//!
//! What this module is for:
//!
//! - **Resolution** ([`resolve`], used by `lock`): a git `rev` becomes a
//!   commit (with `git ls-remote`) and the tree at that commit is hashed; a
//!   local directory is hashed; a URL is downloaded and its declared sha256
//!   checked; a `Cargo.lock`'s crates.io packages are downloaded, checked
//!   against its checksums and vendored ([`crate::cargo_vendor`]). The
//!   result, a [`Pin`], is what the lockfile records (for `cargo_lock`
//!   sources with every crate, so materialising needs the pin alone, not
//!   the Cargo.lock).
//! - **Materialisation** ([`materialize`], used by `build`): given a
//!   [`Pin`], produce a directory holding exactly the pinned tree (no
//!   `.git`), or refuse with a message naming the source: a commit the
//!   server no longer has, a local tree edited since the lock, a download
//!   whose bytes changed. [`check_rev`] tells `lock --update` whether a
//!   branch moved.
//!
//! [`SourceCache`] keeps materialised trees by tree hash, so builds reuse
//! them and `--offline` builds need no network. What it checks, on every
//! [`SourceCache::get`] (so on every build, warm store or not):
//!
//! - a local (`path`) source: the directory on disk is hashed and compared
//!   with the lock's tree hash, never taken on trust from a cached copy; a
//!   mismatch is refused naming the first changed path (found by comparing
//!   with the cached copy of the locked tree when the store has one);
//! - a `cargo_lock` source: its Cargo.lock, when it is there, must list
//!   the crates the lock pins (else the step's `cargo --locked` would fail
//!   on a crate the vendored tree lacks);
//! - the cache entry: re-hashed and compared with its name (the lock's tree
//!   hash); one that differs is refused, not repaired, naming the entry and
//!   `eifbake store gc --caches` (why: [`crate::cache`]).
//!
//! Entries are published by [`crate::cache::publish`], whose rename never
//! replaces an existing entry,
//! and a build never removes one, so builds sharing a store may read the
//! same entry at once.
//!
//! What it is not for: reading or writing the lockfile (`crate::lock`),
//! mounting sources into steps (`crate::sandbox`).
//!
//! Limits: git submodules and LFS objects are not fetched; `git archive`
//! applies the commit's own `export-ignore`/`export-subst` attributes.
//!
//! # Tree hash (`eifbake-tree-v1`)
//!
//! The tree hash is a sha256 [`Digest`] that depends only on the names,
//! kinds, executable bits and contents of what is under a directory, never
//! on mtimes, owners, the umask, inode order or the directory-listing order
//! of the host:
//!
//! 1. Walk the directory (not following symbolic links) and list every entry
//!    below it except the root itself. Its *path* is the relative path, its
//!    components joined by `/`, as raw bytes. Entries of a path source whose
//!    path has a component equal to a name in its ignore list are skipped,
//!    with everything below them.
//! 2. Each entry gives one record:
//!    - directory: `d <path>\0`
//!    - regular file: `f <hex> <path>\0` or, when the owner-executable bit
//!      (0o100) is set, `x <hex> <path>\0`, where `<hex>` is the lowercase
//!      sha256 of the file's bytes;
//!    - symbolic link: `l <hex> <path>\0` where `<hex>` is the sha256 of the
//!      link target's bytes (the target is not followed).
//!
//!    Any other kind (device, FIFO, socket) is an error.
//! 3. Sort the records by path, bytewise, and hash
//!    `eifbake-tree-v1\0` followed by the records in that order.
//!
//! An empty directory therefore hashes to `sha256("eifbake-tree-v1\0")`.
//! Hard links are hashed as independent files.
//!
//! # Output-tree hash (`eifbake-output-tree-v1`)
//!
//! What the step cache records for a step's `/out` ([`output_tree_hash`])
//! covers everything later steps and the ramdisk writer read from it, so
//! that an edit of any of it is caught. It is the tree hash with these
//! differences: the domain is `eifbake-output-tree-v1\0`; directories,
//! files, device nodes and FIFOs carry their permission bits (`mode & 0o7777`
//! in octal, then a space) after the kind letter, and a file is always `f`;
//! a device node is `c <mode> <rdev> <path>` or `b …`, a FIFO `p <mode>
//! <path>`; sockets are skipped; and every path of a multiply-linked inode
//! after the first (bytewise) is `h <hex> <path>`, `<hex>` being the sha256
//! of the first path. Owners and times are not covered. Nothing reads these
//! hashes but the step cache, so the definition can change with the step
//! key's version.
//!
//! # Root-tree hash (`eifbake-root-tree-v1`)
//!
//! What the root cache records for an extracted image root
//! ([`root_tree_hash`], [`crate::cache::RootCache`]): a step starts from that
//! tree, owners and extended attributes included, so they are covered too.
//! It is the output-tree hash with the domain `eifbake-root-tree-v1\0` and,
//! in every record after the mode (symbolic links get one too),
//! `<uid>:<gid> <xattrs> `, where `<xattrs>` is `-` for an entry without
//! extended attributes, else the sha256 (hex) of them sorted by name, each
//! as the name, a NUL, the value's length (8 bytes, little-endian) and the
//! value. Only the root cache reads it.
//!
//! # How sources are fetched
//!
//! Git goes through the git CLI with the host's and the user's git
//! configuration switched off (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`,
//! `core.autocrlf=false`), so nothing on the host changes the checked-out
//! bytes: a shallow `git fetch --depth=1 URL COMMIT`, falling back to a full
//! fetch when the server refuses fetching a commit by id, then
//! `git archive COMMIT` unpacked into the destination.
//!
//! Downloads (url sources and crates) go through [`crate::download`]
//! (http and https with the linked HTTP client, or a `file://` URL read
//! directly; a size limit, timeouts and retries); the sha256 is computed by
//! eifbake from the downloaded bytes, not trusted from anyone.
//!
//! An unpacked url source is a tar (plain or gzip) or a zip (by its magic
//! bytes). Tar entries go through the `tar` crate's `unpack_in`, which
//! keeps them inside the destination. Zip entries are directories and
//! regular files only (mode 0644, or 0755 with the owner-exec bit), with
//! relative paths of plain components (absolute paths, `..`, backslashes
//! and symbolic links are refused, naming the entry), never written over
//! an existing file, at most [`MAX_ZIP_BYTES`] in all.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cache;
use crate::cargo_vendor::{self, LockedCrate};
use crate::digest::Digest;
use crate::download;
use crate::fsutil;
use crate::recipe::{Source, SourceKind};

/// The first bytes hashed into every tree hash; changes if the definition does.
pub const TREE_HASH_DOMAIN: &[u8] = b"eifbake-tree-v1\0";
/// The first bytes hashed into every output-tree hash (step outputs).
pub const OUTPUT_TREE_HASH_DOMAIN: &[u8] = b"eifbake-output-tree-v1\0";
/// The first bytes hashed into every root-tree hash (extracted image roots).
pub const ROOT_TREE_HASH_DOMAIN: &[u8] = b"eifbake-root-tree-v1\0";

/// What the lock records about one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `git`, `path`, `url` or `cargo_lock`.
    pub kind: String,
    /// The git `rev` of the recipe that `commit` was resolved from (git sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The git or download URL (absent for path sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The git commit `rev` resolved to (git sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The tree hash of the materialised directory.
    pub tree: Digest,
    /// The sha256 of the downloaded file (url sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// The vendored crates, sorted by name and version (`cargo_lock` sources only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crates: Vec<LockedCrate>,
}

/// The tree hash of `dir`, skipping paths with a component in `ignore`.
pub fn tree_hash(dir: &Path, ignore: &[String]) -> Result<Digest> {
    Ok(hash_records(TREE_HASH_DOMAIN, &tree_records(dir, ignore, Rules::Source)?))
}

/// The output-tree hash of a step's `/out` (`eifbake-output-tree-v1`, see
/// the module documentation): what the step cache records and checks.
pub fn output_tree_hash(dir: &Path) -> Result<Digest> {
    Ok(hash_records(OUTPUT_TREE_HASH_DOMAIN, &tree_records(dir, &[], Rules::Output)?))
}

/// The root-tree hash of an extracted image root (`eifbake-root-tree-v1`,
/// see the module documentation): what the root cache records and checks.
pub fn root_tree_hash(dir: &Path) -> Result<Digest> {
    Ok(hash_records(ROOT_TREE_HASH_DOMAIN, &tree_records(dir, &[], Rules::Root)?))
}

/// A step output's output-tree hash and its listing: one line per entry,
/// `"<hex> <path>"`, sorted by path, `<hex>` being the sha256 of the
/// entry's record (kind, mode, content digest and path, see the module
/// documentation). The lock keeps a fetch step's listing, so a tree that
/// later differs can be refused naming the first differing path without
/// any copy of the locked tree. Paths must be UTF-8.
pub fn output_listing(dir: &Path) -> Result<(Digest, Vec<String>)> {
    let records = tree_records(dir, &[], Rules::Output)?;
    let mut lines = Vec::with_capacity(records.len());
    for (path, record) in &records {
        let Ok(path) = std::str::from_utf8(path) else {
            bail!(
                "{}: {:?} is not a UTF-8 file name; a fetch step's output must use UTF-8 names",
                dir.display(),
                String::from_utf8_lossy(path)
            )
        };
        lines.push(format!("{} {path}", Digest::of(record).hex()));
    }
    Ok((hash_records(OUTPUT_TREE_HASH_DOMAIN, &records), lines))
}

/// The first path where two listings of [`output_listing`] differ, and how:
/// `"PATH (changed)"`, `"PATH (added)"` (only in `now`) or `"PATH (removed)"`.
pub fn first_listing_difference(was: &[String], now: &[String]) -> Option<String> {
    let records = |lines: &[String]| -> Vec<Record> {
        let mut v: Vec<Record> = lines
            .iter()
            .map(|l| {
                let (hex, path) = l.split_once(' ').unwrap_or(("", l));
                (path.as_bytes().to_vec(), hex.as_bytes().to_vec())
            })
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    };
    first_difference(&records(was), &records(now))
}

/// Which definition a tree's records follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// `eifbake-tree-v1`: sources.
    Source,
    /// `eifbake-output-tree-v1`: step outputs.
    Output,
    /// `eifbake-root-tree-v1`: extracted image roots (the root cache).
    Root,
}

/// One record of a tree: its path and its bytes (without the trailing NUL).
type Record = (Vec<u8>, Vec<u8>);
/// A file's (device, inode): which paths are hard links of one file.
type InodeId = (u64, u64);

/// The records of every entry below `dir`, sorted by path.
fn tree_records(dir: &Path, ignore: &[String], rules: Rules) -> Result<Vec<Record>> {
    let ignore: BTreeSet<&OsStr> = ignore.iter().map(|s| OsStr::new(s.as_str())).collect();
    let meta = fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{}: expected a directory", dir.display());
    }
    // The walk lists; the records (a sha256 of each file) are made in parallel.
    let mut entries = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !ignore.contains(e.file_name()));
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        let md = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        entries.push((entry.into_path(), md));
    }
    let made: Vec<Option<(Record, Option<InodeId>)>> = entries
        .par_iter()
        .map(|(host, md)| {
            let rel = host.strip_prefix(dir).expect("walkdir yields paths under its root");
            let path = rel.as_os_str().as_bytes().to_vec();
            let Some(record) = record(host, &path, md, rules)? else { return Ok(None) };
            let link =
                (rules != Rules::Source && md.nlink() > 1 && !md.is_dir()).then(|| (md.dev(), md.ino()));
            Ok(Some(((path, record), link)))
        })
        .collect::<Result<_>>()?;
    let mut records = Vec::with_capacity(made.len());
    let mut linked = Vec::new();
    for (record, link) in made.into_iter().flatten() {
        if let Some(id) = link {
            linked.push((record.0.clone(), id));
        }
        records.push(record);
    }
    records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // Output and root trees: every link to an inode after the first (in
    // path order) is recorded as a hard link to the first.
    linked.sort_unstable();
    let mut first: HashMap<InodeId, Vec<u8>> = HashMap::new();
    for (path, id) in linked {
        if let Some(to) = first.get(&id) {
            let i = records.binary_search_by(|r| r.0.cmp(&path)).expect("recorded");
            records[i].1 = [b"h ", Digest::of(to).hex().as_bytes(), b" ", &path].concat();
        } else {
            first.insert(id, path);
        }
    }
    Ok(records)
}

/// The record of one entry at `host` (relative path `path`), `None` for an
/// entry the rules skip.
fn record(host: &Path, path: &[u8], md: &fs::Metadata, rules: Rules) -> Result<Option<Vec<u8>>> {
    let ft = md.file_type();
    let output = rules != Rules::Source;
    let mut mode = if output { format!("{:o} ", md.mode() & 0o7777) } else { String::new() };
    if rules == Rules::Root {
        mode.push_str(&format!("{}:{} {} ", md.uid(), md.gid(), xattrs_hex(host)?));
    }
    let head: Vec<u8> = if ft.is_dir() {
        format!("d {mode}").into_bytes()
    } else if ft.is_file() {
        let f = File::open(host).with_context(|| format!("cannot open {}", host.display()))?;
        let (d, _) = Digest::of_reader(BufReader::with_capacity(1 << 16, f))
            .with_context(|| format!("cannot read {}", host.display()))?;
        let kind = if output {
            "f"
        } else if md.mode() & 0o100 != 0 {
            "x"
        } else {
            "f"
        };
        format!("{kind} {mode}{} ", d.hex()).into_bytes()
    } else if ft.is_symlink() {
        let target = fs::read_link(host).with_context(|| format!("cannot read link {}", host.display()))?;
        let owner = if rules == Rules::Root { mode.as_str() } else { "" };
        format!("l {owner}{} ", Digest::of(target.as_os_str().as_bytes()).hex()).into_bytes()
    } else if output && (ft.is_char_device() || ft.is_block_device()) {
        let kind = if ft.is_char_device() { "c" } else { "b" };
        format!("{kind} {mode}{} ", md.rdev()).into_bytes()
    } else if output && ft.is_fifo() {
        format!("p {mode}").into_bytes()
    } else if output && ft.is_socket() {
        return Ok(None);
    } else {
        bail!(
            "{}: only directories, regular files and symbolic links can be part of a source",
            host.display()
        );
    };
    Ok(Some([head, path.to_vec()].concat()))
}

/// `-` for an entry without extended attributes, else the sha256 (hex) of
/// its attributes sorted by name, each `<name>\0<value length, 8 bytes
/// little-endian><value>`: what a root tree's record says of them.
fn xattrs_hex(host: &Path) -> Result<String> {
    use rustix::fs::{lgetxattr, llistxattr};
    let ctx = || format!("cannot read the extended attributes of {}", host.display());
    let mut names = vec![0u8; 4096];
    let n = loop {
        match llistxattr(host, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok("-".into()),
            Err(e) => return Err(std::io::Error::from(e)).with_context(ctx),
        }
    };
    if n == 0 {
        return Ok("-".into());
    }
    let mut list: Vec<&[u8]> = names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()).collect();
    list.sort_unstable();
    let mut h = Sha256::new();
    for name in list {
        let cname = std::ffi::CString::new(name).expect("split on NUL");
        let mut value = vec![0u8; 4096];
        let len = loop {
            match lgetxattr(host, cname.as_c_str(), &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(std::io::Error::from(e)).with_context(ctx),
            }
        };
        h.update(name);
        h.update([0u8]);
        h.update((len as u64).to_le_bytes());
        h.update(&value[..len]);
    }
    Ok(Digest::from_bytes(h.finalize().into()).hex())
}

fn hash_records(domain: &[u8], records: &[Record]) -> Digest {
    let mut h = Sha256::new();
    h.update(domain);
    for (_, r) in records {
        h.update(r);
        h.update([0u8]);
    }
    Digest::from_bytes(h.finalize().into())
}

/// The first path (bytewise) where two trees' records differ, and how:
/// `"PATH (changed)"`, `"PATH (added)"` (only in `now`) or `"PATH (removed)"`.
fn first_difference(was: &[Record], now: &[Record]) -> Option<String> {
    let (mut i, mut j) = (0, 0);
    let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    while i < was.len() || j < now.len() {
        match (was.get(i), now.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    return Some(format!("{} (changed)", name(&a.0)));
                }
                (i, j) = (i + 1, j + 1);
            }
            (Some(a), Some(b)) if a.0 < b.0 => return Some(format!("{} (removed)", name(&a.0))),
            (Some(a), None) => return Some(format!("{} (removed)", name(&a.0))),
            (_, Some(b)) => return Some(format!("{} (added)", name(&b.0))),
            (None, None) => unreachable!("loop condition"),
        }
    }
    None
}

/// Pin a source for the lock: resolve a git rev to a commit, hash trees,
/// check downloads. `base_dir` is the recipe's directory (for path sources).
pub fn resolve(name: &str, source: &Source, base_dir: &Path) -> Result<Pin> {
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dest = scratch.path().join("tree");
    match source.kind() {
        SourceKind::Git { url, rev } => {
            let commit = ls_remote(name, url, rev)?;
            let tree = fetch_git(name, url, &commit, &dest)?;
            Ok(Pin {
                kind: "git".into(),
                rev: Some(rev.into()),
                url: Some(url.into()),
                commit: Some(commit),
                tree,
                sha256: None,
                crates: vec![],
            })
        }
        SourceKind::Path { path, ignore } => {
            let dir = base_dir.join(path);
            let tree =
                tree_hash(&dir, ignore).with_context(|| format!("sources.{name}: path {}", dir.display()))?;
            Ok(Pin {
                kind: "path".into(),
                rev: None,
                url: None,
                commit: None,
                tree,
                sha256: None,
                crates: vec![],
            })
        }
        SourceKind::Url { url, sha256, unpack } => {
            let tree = fetch_url(name, url, sha256, unpack, &dest)?;
            Ok(Pin {
                kind: "url".into(),
                rev: None,
                url: Some(url.into()),
                commit: None,
                tree,
                sha256: Some(sha256),
                crates: vec![],
            })
        }
        SourceKind::CargoLock { path } => {
            let crates = read_cargo_lock(name, path, base_dir)?;
            let tree = fetch_crates(name, path, &crates, &dest)?;
            Ok(Pin {
                kind: "cargo_lock".into(),
                rev: None,
                url: None,
                commit: None,
                tree,
                sha256: None,
                crates,
            })
        }
    }
}

/// Pin a source for `lock --offline`, which downloads nothing and asks no
/// git remote. A path source is hashed. A url or `cargo_lock` source whose
/// existing pin still matches the recipe (`matching`: same URL and sha256,
/// the same crates) is re-resolved from the store's copy: its tree in
/// `cache`, checked against the pin (the pin is content-addressed, so a
/// download could only give the same tree or fail). Anything else (a new or
/// changed url or `cargo_lock` source, a tree the store lacks, any git
/// source: where a rev points now is the remote's to say) is refused,
/// naming the source, what would be fetched and the command that fetches it.
pub fn pin_offline(
    name: &str,
    source: &Source,
    base_dir: &Path,
    matching: Option<&Pin>,
    cache: &SourceCache,
    recipe: &Path,
) -> Result<Pin> {
    let recipe = recipe.display();
    let what = match source.kind() {
        SourceKind::Path { .. } => return resolve(name, source, base_dir),
        SourceKind::Git { url, rev } => {
            bail!(
                "sources.{name}: pinning git rev {rev:?} asks {url} which commit it names now, and --offline \
                 forbids asking; run `eifbake lock {recipe}` without --offline (or, to keep the pinned commit, \
                 without --update)"
            )
        }
        SourceKind::Url { url, .. } => format!("downloading {url}"),
        SourceKind::CargoLock { path } => {
            let crates = read_cargo_lock(name, path, base_dir)?;
            format!("downloading the {} crates of {}", crates.len(), path.display())
        }
    };
    let Some(pin) = matching else {
        bail!(
            "sources.{name}: pinning it means {what}, and --offline forbids downloading; run `eifbake lock \
             {recipe}` without --offline"
        )
    };
    if cache.holds(name, pin)? {
        return Ok(pin.clone());
    }
    bail!(
        "sources.{name}: its pinned tree {} is not in the store's source cache {} and re-pinning it means \
         {what}, which --offline forbids; run `eifbake fetch {recipe}` without --offline to keep its tree in \
         the store, or lock without --update",
        pin.tree,
        cache.dir.display()
    )
}

/// The crates.io packages of the `Cargo.lock` of source `name` (at `path`,
/// relative to `base_dir`); errors name the source.
pub fn read_cargo_lock(name: &str, path: &Path, base_dir: &Path) -> Result<Vec<LockedCrate>> {
    cargo_vendor::read_cargo_lock(&base_dir.join(path)).with_context(|| format!("sources.{name}.cargo_lock"))
}

/// Vendor `crates` into `dest` from the download URL of the eifbake config.
fn fetch_crates(name: &str, path: &Path, crates: &[LockedCrate], dest: &Path) -> Result<Digest> {
    let config = crate::config::Config::load()?;
    cargo_vendor::vendor(name, &path.display().to_string(), crates, config.cargo.download_template(), dest)
}

/// Produce the pinned tree of a source in `dest` (which must not exist) and
/// return its tree hash; refuse, naming the source, when it differs from the pin.
/// On error `dest` is removed.
pub fn materialize(name: &str, source: &Source, base_dir: &Path, pin: &Pin, dest: &Path) -> Result<Digest> {
    if dest.symlink_metadata().is_ok() {
        bail!("sources.{name}: destination {} already exists", dest.display());
    }
    let r = materialize_inner(name, source, base_dir, pin, dest);
    if r.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    r
}

fn materialize_inner(name: &str, source: &Source, base_dir: &Path, pin: &Pin, dest: &Path) -> Result<Digest> {
    let kind = match source.kind() {
        SourceKind::Git { .. } => "git",
        SourceKind::Path { .. } => "path",
        SourceKind::Url { .. } => "url",
        SourceKind::CargoLock { .. } => "cargo_lock",
    };
    if pin.kind != kind {
        bail!(
            "sources.{name}: the recipe says {kind} but the lock pins a {} source; run `eifbake lock`",
            pin.kind
        );
    }
    let found = match source.kind() {
        SourceKind::Git { url, .. } => {
            if pin.url.as_deref() != Some(url) {
                bail!(
                    "sources.{name}: the recipe's URL {url} differs from the lock's {}; run `eifbake lock`",
                    pin.url.as_deref().unwrap_or("(none)")
                );
            }
            let commit = pin
                .commit
                .as_deref()
                .with_context(|| format!("sources.{name}: the lock has no commit for this git source"))?;
            check_commit_id(name, commit)?;
            fetch_git(name, url, commit, dest)?
        }
        SourceKind::Path { path, ignore } => {
            let dir = base_dir.join(path);
            fsutil::copy_tree(&dir, dest, ignore, fsutil::CopyModes::Canonical)
                .with_context(|| format!("sources.{name}: copying {}", dir.display()))?;
            let found = tree_hash(dest, &[])?;
            if found != pin.tree {
                bail!(
                    "sources.{name}: local tree changed since lock: expected {}, found {found} (in {}); \
                     run `eifbake lock` if the change is intended",
                    pin.tree,
                    dir.display()
                );
            }
            found
        }
        SourceKind::Url { url, sha256, unpack } => {
            if pin.url.as_deref() != Some(url) || pin.sha256 != Some(sha256) {
                bail!("sources.{name}: the recipe's url or sha256 differs from the lock; run `eifbake lock`");
            }
            fetch_url(name, url, sha256, unpack, dest)?
        }
        SourceKind::CargoLock { path } => fetch_crates(name, path, &pin.crates, dest)?,
    };
    if found != pin.tree {
        bail!("sources.{name}: tree hash differs from the lock: expected {}, found {found}", pin.tree);
    }
    Ok(found)
}

/// Materialised source trees kept under one directory, `DIR/<tree hex>/`,
/// so a build reuses them and can run with `--offline`.
///
/// An entry is only ever published complete (built under a temporary name
/// and renamed, never over an existing entry) and is re-hashed every time it
/// is used; a build never removes or replaces an entry. A local (`path`)
/// source is hashed on disk on every [`SourceCache::get`] as well, whether
/// or not its tree is cached.
#[derive(Debug, Clone)]
pub struct SourceCache {
    dir: PathBuf,
}

impl SourceCache {
    pub fn new(dir: impl Into<PathBuf>) -> SourceCache {
        SourceCache { dir: dir.into() }
    }

    /// The directory holding the pinned tree of `source`, verified against
    /// `pin`; fetched (git, url) or copied (path) when not cached yet. With
    /// `offline`, git and url sources must already be cached. A local
    /// directory that no longer hashes to the pin is refused, naming the
    /// first changed path; a cache entry that no longer hashes to its name
    /// is refused, naming the entry and `eifbake store gc --caches`.
    pub fn get(
        &self,
        name: &str,
        source: &Source,
        base_dir: &Path,
        pin: &Pin,
        offline: bool,
    ) -> Result<PathBuf> {
        let entry = self.dir.join(pin.tree.hex());
        match source.kind() {
            SourceKind::Path { path, ignore } => {
                self.check_local(name, &base_dir.join(path), ignore, pin, &entry)?
            }
            SourceKind::CargoLock { path } => check_cargo_lock(name, path, base_dir, pin)?,
            _ => {}
        }
        if self.verified(name, &entry, pin)? {
            return Ok(entry);
        }
        if offline && !matches!(source.kind(), SourceKind::Path { .. }) {
            bail!(
                "sources.{name}: tree {} is not in the source cache {} and --offline forbids fetching it",
                pin.tree,
                self.dir.display()
            );
        }
        let published =
            cache::publish(&self.dir, &entry, |staged| materialize(name, source, base_dir, pin, staged))?;
        // Another build may have published the same tree meanwhile: then
        // that one is kept (it may be in use) if it is sound, and ours dropped.
        if let cache::Published::Exists(_) = published {
            if !self.verified(name, &entry, pin)? {
                bail!("sources.{name}: cannot publish {}", entry.display());
            }
        }
        Ok(entry)
    }

    /// Whether the cache holds the tree `pin` names, checked; an error
    /// naming the entry when it holds anything else.
    pub fn holds(&self, name: &str, pin: &Pin) -> Result<bool> {
        self.verified(name, &self.dir.join(pin.tree.hex()), pin)
    }

    /// Whether `entry` exists and holds `pin.tree`; an error naming it and
    /// the way out when it exists but holds anything else.
    fn verified(&self, name: &str, entry: &Path, pin: &Pin) -> Result<bool> {
        if entry.symlink_metadata().is_err() {
            return Ok(false);
        }
        let found = tree_hash(entry, &[]);
        if matches!(found, Ok(ref d) if *d == pin.tree) {
            return Ok(true);
        }
        let found = match found {
            Ok(d) => format!("it hashes to {d}"),
            Err(e) => format!("{e:#}"),
        };
        bail!(
            "sources.{name}: source cache entry {} is damaged: it is named after tree {} but {found}; \
             it was changed after it was cached, so eifbake will not use it. \
             Remove it with `eifbake store gc --caches` and build again",
            entry.display(),
            pin.tree
        )
    }

    /// Hash the local directory `dir` as it is now and refuse, naming the
    /// first changed path when the cached tree `entry` is there to compare
    /// with, unless it still hashes to the pin.
    fn check_local(&self, name: &str, dir: &Path, ignore: &[String], pin: &Pin, entry: &Path) -> Result<()> {
        let now = tree_records(dir, ignore, Rules::Source)
            .with_context(|| format!("sources.{name}: path {}", dir.display()))?;
        let found = hash_records(TREE_HASH_DOMAIN, &now);
        if found == pin.tree {
            return Ok(());
        }
        let what = match tree_records(entry, &[], Rules::Source) {
            Ok(was) if hash_records(TREE_HASH_DOMAIN, &was) == pin.tree => first_difference(&was, &now)
                .map(|d| format!("first difference: {d}"))
                .unwrap_or_else(|| "no single path differs".into()),
            _ => "no copy of the locked tree in the store to name the changed file".into(),
        };
        bail!(
            "sources.{name}: local tree {} changed since lock ({what}): expected {}, found {found}; \
             run `eifbake lock` if the change is intended",
            dir.display(),
            pin.tree
        )
    }
}

/// Refuse a `cargo_lock` source whose Cargo.lock no longer lists the
/// crates the lock pins, naming the first that differs. The tree is made
/// from the pin alone, so a Cargo.lock that is not there (a rebuild from a
/// manifest, which carries the lock but not the project) is not an error.
fn check_cargo_lock(name: &str, path: &Path, base_dir: &Path, pin: &Pin) -> Result<()> {
    let file = base_dir.join(path);
    if file.symlink_metadata().is_err() {
        return Ok(());
    }
    let now = read_cargo_lock(name, path, base_dir)?;
    let what = if let Some(c) = now.iter().find(|c| !pin.crates.contains(c)) {
        format!("{} {} is new or has another checksum", c.name, c.version)
    } else if let Some(c) = pin.crates.iter().find(|c| !now.contains(c)) {
        format!("{} {} is no longer listed", c.name, c.version)
    } else {
        return Ok(());
    };
    bail!(
        "sources.{name}: {} changed since lock ({what}); run `eifbake lock` to vendor its crates",
        file.display()
    )
}

/// For `lock --update` semantics: fail, naming the source, when `rev` no
/// longer points at `locked_commit`.
pub fn check_rev(name: &str, url: &str, rev: &str, locked_commit: &str) -> Result<()> {
    let now = ls_remote(name, url, rev)?;
    if now != locked_commit {
        bail!(
            "sources.{name}: rev {rev:?} of {url} moved: locked {locked_commit}, now {now}; \
             run `eifbake lock --update` to take the new commit"
        );
    }
    Ok(())
}

/// A git command that ignores the host's and the user's configuration.
fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args(["-c", "core.autocrlf=false", "-c", "core.eol=lf", "-c", "advice.detachedHead=false"])
        .stdin(Stdio::null());
    cmd
}

/// Run a git command, returning stdout, or an error with its stderr.
fn run_git(name: &str, what: &str, cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("sources.{name}: cannot run git (is it installed?)"))?;
    if !out.status.success() {
        bail!("sources.{name}: {what} failed: {}", String::from_utf8_lossy(&out.stderr).trim_end());
    }
    Ok(out.stdout)
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_commit_id(name: &str, s: &str) -> Result<()> {
    if !is_commit_id(s) {
        bail!("sources.{name}: commit {s:?} is not a full lowercase hex commit id");
    }
    Ok(())
}

/// Resolve `rev` (a branch, a tag, `HEAD`, a full ref or a full commit id) to a commit.
fn ls_remote(name: &str, url: &str, rev: &str) -> Result<String> {
    if is_commit_id(rev) {
        return Ok(rev.to_string());
    }
    let out = run_git(name, &format!("git ls-remote {url}"), git().args(["ls-remote", "--", url]))?;
    let text = String::from_utf8_lossy(&out);
    let refs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    let find = |r: &str| refs.iter().find(|(_, name)| *name == r).map(|(c, _)| c.to_string());
    let candidates = if rev == "HEAD" || rev.starts_with("refs/") {
        vec![format!("{rev}^{{}}"), rev.to_string()]
    } else {
        vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}^{{}}"), format!("refs/tags/{rev}")]
    };
    for c in &candidates {
        if let Some(commit) = find(c) {
            check_commit_id(name, &commit)?;
            return Ok(commit);
        }
    }
    bail!("sources.{name}: rev {rev:?} not found in {url} (branches, tags and HEAD were searched)")
}

/// Fetch `commit` from `url` and export its tree into `dest`; returns the tree hash.
fn fetch_git(name: &str, url: &str, commit: &str, dest: &Path) -> Result<Digest> {
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let repo = scratch.path().join("repo.git");
    run_git(name, "git init", git().args(["init", "-q", "--bare"]).arg(&repo))?;
    let shallow = git().arg("-C").arg(&repo).args(["fetch", "-q", "--depth=1", "--", url, commit]).output();
    let have = |repo: &Path| {
        git()
            .arg("-C")
            .arg(repo)
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !matches!(shallow, Ok(ref o) if o.status.success()) || !have(&repo) {
        // Some servers refuse to serve a commit by id: fetch every ref and look.
        run_git(
            name,
            &format!("git fetch {url}"),
            git().arg("-C").arg(&repo).args(["fetch", "-q", "--", url, "+refs/*:refs/remotes/origin/*"]),
        )?;
        if !have(&repo) {
            bail!(
                "sources.{name}: commit {commit} is not available from {url} \
                 (rewritten history, or a wrong commit id?); run `eifbake lock --update` to pin a commit that exists"
            );
        }
    }
    fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut child = git()
        .arg("-C")
        .arg(&repo)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("sources.{name}: cannot run git archive"))?;
    let unpacked = unpack_tar(child.stdout.take().expect("piped"), dest);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "sources.{name}: git archive {commit} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    unpacked.with_context(|| format!("sources.{name}: unpacking commit {commit}"))?;
    tree_hash(dest, &[])
}

/// Unpack a tar stream into `dest`, refusing entries that would land outside it.
fn unpack_tar<R: Read>(r: R, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        use tar::EntryType::*;
        match entry.header().entry_type() {
            XGlobalHeader | XHeader | GNULongName | GNULongLink => continue,
            Regular | Continuous | Directory | Symlink | Link => {}
            other => bail!(
                "{}: unsupported tar entry type {other:?}",
                String::from_utf8_lossy(&entry.path_bytes())
            ),
        }
        let path = entry.path()?.into_owned();
        if !entry.unpack_in(dest)? {
            bail!("{}: tar entry points outside the destination", path.display());
        }
    }
    Ok(())
}

/// Download `url` into `dest` (a directory it creates): the file itself, named
/// after the URL's last path segment, or its unpacked contents. Returns the tree hash.
/// The file name a url source that is not unpacked is materialised as:
/// the URL's last path component (without query or fragment), else `download`.
pub fn url_file_name(url: &str) -> String {
    url.split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("download")
        .to_string()
}

fn fetch_url(name: &str, url: &str, sha256: Digest, unpack: bool, dest: &Path) -> Result<Digest> {
    let file_name = url_file_name(url);
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let tmp = scratch.path().join("download");
    let found = download::download(name, url, &tmp, &download::Options::default())?.sha256;
    if found != sha256 {
        bail!("sources.{name}: download of {url} has sha256 {found}, but the recipe pins {sha256}");
    }
    fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    if unpack {
        unpack_archive(&tmp, dest)
            .with_context(|| format!("sources.{name}: unpacking {url} (expected .tar, .tar.gz or .zip)"))?;
    } else {
        let target = dest.join(&file_name);
        fs::copy(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
    }
    tree_hash(dest, &[])
}

/// Unpack the archive `file` into `dest`: a zip (by its magic `PK\x03\x04`),
/// a gzipped tar or a plain tar.
fn unpack_archive(file: &Path, dest: &Path) -> Result<()> {
    let mut f = BufReader::new(File::open(file)?);
    let mut magic = [0u8; 4];
    let n = fsutil::read_full(&mut f, &mut magic)?;
    if magic[..n] == *b"PK\x03\x04" {
        return unpack_zip(file, dest);
    }
    let f = io::Cursor::new(magic[..n].to_vec()).chain(f);
    if magic[..2] == [0x1f, 0x8b] {
        unpack_tar(flate2::read::MultiGzDecoder::new(f), dest)
    } else {
        unpack_tar(f, dest)
    }
}

/// The most bytes a zip archive may unpack to (16 GiB), whatever its
/// entries declare: a zip bomb stops there.
pub const MAX_ZIP_BYTES: u64 = 16 << 30;

/// Unpack a zip archive into `dest`: directories and regular files only
/// (mode 0644, or 0755 when the entry's unix mode has the owner-exec bit),
/// every path a relative one of plain components (no absolute paths, no
/// `..`, no symbolic links), never over an existing file.
fn unpack_zip(file: &Path, dest: &Path) -> Result<()> {
    let mut zip = zip::ZipArchive::new(BufReader::new(File::open(file)?)).context("not a zip archive")?;
    let mut left = MAX_ZIP_BYTES;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let refuse = |why: &str| anyhow::anyhow!("zip entry {raw:?}: {why}; refusing to unpack it");
        let rel = zip_entry_path(&raw).map_err(&refuse)?;
        let mode = entry.unix_mode().unwrap_or(0);
        if mode & 0o170000 == 0o120000 {
            return Err(refuse("symbolic links are not allowed"));
        }
        let target = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("cannot create {} (is it listed twice?)", target.display()))?;
        let n = io::copy(&mut (&mut entry).take(left + 1), &mut out)
            .with_context(|| format!("zip entry {raw:?}: cannot unpack it"))?;
        if n > left {
            return Err(refuse(&format!("the archive unpacks to more than {MAX_ZIP_BYTES} bytes")));
        }
        left -= n;
        let exec = mode & 0o100 != 0;
        fs::set_permissions(&target, fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
    }
    Ok(())
}

/// A zip entry's name as a relative path of plain components (a trailing
/// `/` marks a directory).
fn zip_entry_path(raw: &str) -> Result<PathBuf, &'static str> {
    if raw.starts_with('/') || raw.contains('\\') || raw.contains('\0') {
        return Err("absolute paths, backslashes and NUL bytes are not allowed");
    }
    let mut rel = PathBuf::new();
    for part in raw.trim_end_matches('/').split('/') {
        match part {
            "" | "." => return Err("empty and '.' path components are not allowed"),
            ".." => return Err("'..' components are not allowed"),
            p => rel.push(p),
        }
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_name_the_first_changed_added_or_removed_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("deps")).unwrap();
        fs::write(d.join("deps/a"), "a").unwrap();
        fs::write(d.join("deps/b"), "b").unwrap();
        let (hash, was) = output_listing(d).unwrap();
        assert_eq!(hash, output_tree_hash(d).unwrap(), "the listing's hash is the output-tree hash");
        assert_eq!(was.len(), 3);
        assert!(was[1].ends_with(" deps/a") && was[1].len() == 64 + 7, "{was:?}");
        assert_eq!(first_listing_difference(&was, &was), None);
        fs::set_permissions(d.join("deps/b"), fs::Permissions::from_mode(0o600)).unwrap();
        let (_, now) = output_listing(d).unwrap();
        assert_eq!(first_listing_difference(&was, &now).as_deref(), Some("deps/b (changed)"));
        fs::write(d.join("deps/a0"), "new").unwrap();
        let (_, now) = output_listing(d).unwrap();
        assert_eq!(first_listing_difference(&was, &now).as_deref(), Some("deps/a0 (added)"));
        fs::remove_file(d.join("deps/a")).unwrap();
        let (_, now) = output_listing(d).unwrap();
        assert_eq!(first_listing_difference(&was, &now).as_deref(), Some("deps/a (removed)"));
        fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
        let e = output_listing(d).unwrap_err().to_string();
        assert!(e.contains("not a UTF-8 file name"), "{e}");
    }
    use std::os::unix::fs::symlink;

    #[test]
    fn empty_tree_hash_is_the_domain_hash() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(tree_hash(d.path(), &[]).unwrap(), Digest::of(TREE_HASH_DOMAIN));
    }

    #[test]
    fn tree_hash_matches_its_definition() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir(p.join("b")).unwrap();
        fs::write(p.join("b/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("b/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(p.join("a.txt"), "hi\n").unwrap();
        symlink("a.txt", p.join("link")).unwrap();
        let mut expected = TREE_HASH_DOMAIN.to_vec();
        let rec = |v: &mut Vec<u8>, s: String| {
            v.extend_from_slice(s.as_bytes());
            v.push(0)
        };
        rec(&mut expected, format!("f {} a.txt", Digest::of(b"hi\n").hex()));
        rec(&mut expected, "d b".to_string());
        rec(&mut expected, format!("x {} b/run.sh", Digest::of(b"#!/bin/sh\n").hex()));
        rec(&mut expected, format!("l {} link", Digest::of(b"a.txt").hex()));
        assert_eq!(tree_hash(p, &[]).unwrap(), Digest::of(&expected));
    }

    #[test]
    fn tree_hash_ignores_metadata_but_not_content_or_exec_bit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("f"), "x").unwrap();
        let h0 = tree_hash(p, &[]).unwrap();
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345);
        File::options().write(true).open(p.join("f")).unwrap().set_modified(t).unwrap();
        assert_eq!(tree_hash(p, &[]).unwrap(), h0, "mode bits other than u+x or mtime changed the hash");
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o744)).unwrap();
        assert_ne!(tree_hash(p, &[]).unwrap(), h0, "exec bit ignored");
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(p.join("f"), "y").unwrap();
        assert_ne!(tree_hash(p, &[]).unwrap(), h0, "content ignored");
        fs::write(p.join("f"), "x").unwrap();
        fs::create_dir_all(p.join("target/debug")).unwrap();
        fs::write(p.join("target/debug/junk"), "junk").unwrap();
        assert_ne!(tree_hash(p, &[]).unwrap(), h0);
        assert_eq!(tree_hash(p, &["target".into()]).unwrap(), h0, "ignore list not honoured");
    }

    #[test]
    fn rev_lookup_rejects_short_ids() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("abc123"));
        assert!(!is_commit_id(&"A".repeat(40)));
    }
}
