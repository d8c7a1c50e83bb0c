//! `cargo_lock` sources: the crates.io packages of a `Cargo.lock`,
//! downloaded, checked and unpacked into a directory cargo builds from with
//! `--offline --locked`.
//!
//! What it is for: steps run without network, so a Rust program's
//! dependencies must be in a source before the step starts. [`read_cargo_lock`]
//! lists the packages a `Cargo.lock` (format versions 3 and 4) takes from
//! crates.io, each with the sha256 the lockfile records; [`vendor`]
//! downloads each `.crate` (from [`crate::config::CargoConfig`]'s download
//! URL, crates.io's by default), refuses one whose sha256 is not the
//! lockfile's, and assembles the tree:
//!
//! ```text
//! cargo/config.toml                 replaces crates.io by ../vendor
//! vendor/NAME-VERSION/…             the unpacked .crate
//! vendor/NAME-VERSION/.cargo-checksum.json
//! ```
//!
//! `.cargo-checksum.json` is what cargo's directory sources read:
//! `{"files":{PATH:SHA256,…},"package":CHECKSUM}`, paths sorted, so the
//! tree (and its tree hash) depends only on the crates' bytes. The config
//! says `directory = "vendor"`, which cargo resolves against the parent of
//! the directory holding the config file, so the tree works wherever it is
//! mounted: a step runs `cargo build --offline --locked --config
//! MOUNT/cargo/config.toml`. (Not `CARGO_HOME=MOUNT/cargo`: cargo writes
//! into its home, and the mount is read-only.)
//!
//! Invariants: a `.crate` is unpacked only after its sha256 matched the
//! pin; every entry lands below `vendor/NAME-VERSION/` (absolute paths,
//! `..`, symbolic and hard links, devices and entries of another top
//! directory are refused, naming the crate and the entry); only directories
//! and regular files are created, with mode 0644 or 0755 (the entry's
//! owner-exec bit), so nothing on the host changes the tree; a crate
//! unpacks to at most [`MAX_CRATE_BYTES`] in at most [`MAX_CRATE_ENTRIES`]
//! entries, and its download ([`crate::download`]) is refused past
//! [`MAX_CRATE_BYTES`] too. Crate names and versions are checked to be file-name safe
//! before they name a directory or a URL.
//!
//! The unpacker is its own, not [`crate::oci::layer`]'s: image layers may
//! carry symlinks, hard links, devices and whiteouts, all of which a crate
//! must not, and a crate's entries must also stay below one directory.
//!
//! Not for: git or path dependencies (a git package is refused naming it
//! and the lockfile; path packages are part of the project's own source),
//! registries other than crates.io, or caching trees (that is
//! [`crate::sources::SourceCache`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A crates.io package as the eifbake lock records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    /// The sha256 of the `.crate` file, as the `Cargo.lock` records it.
    pub checksum: Digest,
}

/// The most bytes one `.crate` may unpack to (512 MiB).
pub const MAX_CRATE_BYTES: u64 = 512 << 20;
/// The most entries one `.crate` may hold.
pub const MAX_CRATE_ENTRIES: u64 = 100_000;

/// The `source` of crates.io packages, git and sparse index.
const CRATES_IO: [&str; 2] =
    ["registry+https://github.com/rust-lang/crates.io-index", "sparse+https://index.crates.io/"];

/// The file cargo's directory sources read each crate's checksums from.
const CHECKSUM_FILE: &str = ".cargo-checksum.json";

/// The cargo configuration written to `cargo/config.toml`.
pub const CARGO_CONFIG: &str =
    "# written by eifbake: use the crates vendored in ../vendor, never the network\n\
[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
[source.vendored-sources]\ndirectory = \"vendor\"\n";

#[derive(Deserialize)]
struct CargoLockFile {
    version: Option<i64>,
    #[serde(default)]
    package: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The crates.io packages of the `Cargo.lock` at `path`, sorted by name and
/// version; git packages and packages of other registries are refused,
/// path packages skipped.
pub fn read_cargo_lock(path: &Path) -> Result<Vec<LockedCrate>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: CargoLockFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
        .with_context(|| format!("{} is not a Cargo.lock", path.display()))?;
    if !matches!(file.version, Some(3 | 4)) {
        bail!(
            "{}: version = {}: eifbake reads Cargo.lock versions 3 and 4; regenerate it with a recent cargo \
             (`cargo update --workspace`)",
            path.display(),
            file.version.map_or("(none, version 1 or 2)".to_string(), |v| v.to_string())
        );
    }
    let mut crates: BTreeMap<(String, String), Digest> = BTreeMap::new();
    for p in &file.package {
        let Some(c) = locked_crate(path, p)? else { continue };
        let key = (c.name, c.version);
        if crates.get(&key).is_some_and(|d| *d != c.checksum) {
            bail!("{}: package {} {} is listed twice with different checksums", path.display(), key.0, key.1);
        }
        crates.insert(key, c.checksum);
    }
    Ok(crates
        .into_iter()
        .map(|((name, version), checksum)| LockedCrate { name, version, checksum })
        .collect())
}

/// One `[[package]]` of a Cargo.lock: a crates.io crate, `None` for a path
/// package, an error for anything else.
fn locked_crate(path: &Path, p: &CargoPackage) -> Result<Option<LockedCrate>> {
    let at = format!("{}: package {} {}", path.display(), p.name, p.version);
    let Some(source) = &p.source else { return Ok(None) };
    if source.starts_with("git+") {
        bail!(
            "{at} comes from git ({source}); steps have no network and eifbake vendors only crates.io \
             packages: depend on a crates.io release, or add the repository as a git source and use a \
             path dependency"
        );
    }
    if !CRATES_IO.contains(&source.as_str()) {
        bail!("{at} comes from {source}; eifbake vendors only crates.io packages");
    }
    let Some(sum) = &p.checksum else {
        bail!(
            "{at} has no checksum, so its download cannot be checked; regenerate the Cargo.lock with cargo"
        );
    };
    let checksum: Digest = format!("sha256:{sum}")
        .parse()
        .map_err(|_| anyhow::anyhow!("{at}: checksum {sum:?} is not a sha256 in lowercase hex"))?;
    let c = LockedCrate { name: p.name.clone(), version: p.version.clone(), checksum };
    check_names(&c).with_context(|| at.clone())?;
    Ok(Some(c))
}

/// Crate names and versions become a directory name and part of a URL:
/// refuse anything but what crates.io allows.
fn check_names(c: &LockedCrate) -> Result<()> {
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name.as_bytes()[0].is_ascii_alphabetic()
        && c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let version_ok = !c.version.is_empty()
        && c.version.len() <= 128
        && c.version.as_bytes()[0].is_ascii_digit()
        && c.version.bytes().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b));
    if !name_ok || !version_ok {
        bail!("crate {:?} version {:?}: not a crates.io name and version", c.name, c.version);
    }
    Ok(())
}

/// The download URL of `c` from `template` (cargo's markers).
pub fn download_url(template: &str, c: &LockedCrate) -> String {
    template
        .replace("{crate}", &c.name)
        .replace("{version}", &c.version)
        .replace("{sha256-checksum}", &c.checksum.hex())
}

/// Download, check and unpack `crates` into `dest` (which must not exist),
/// with the cargo configuration; returns the tree hash. `source` names the
/// eifbake source, `lockfile` the Cargo.lock the checksums come from, in errors.
pub fn vendor(
    source: &str,
    lockfile: &str,
    crates: &[LockedCrate],
    template: &str,
    dest: &Path,
) -> Result<Digest> {
    for c in crates {
        check_names(c).with_context(|| format!("sources.{source}"))?;
    }
    let vendor_dir = dest.join("vendor");
    fs::create_dir_all(&vendor_dir).with_context(|| format!("cannot create {}", vendor_dir.display()))?;
    fs::create_dir(dest.join("cargo"))?;
    fs::write(dest.join("cargo/config.toml"), CARGO_CONFIG)?;
    fs::set_permissions(dest.join("cargo/config.toml"), fs::Permissions::from_mode(0o644))?;
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let opts = crate::download::Options { max_bytes: MAX_CRATE_BYTES, ..Default::default() };
    crates.par_iter().try_for_each(|c| {
        let file = scratch.path().join(format!("{}-{}.crate", c.name, c.version));
        let url = download_url(template, c);
        let found = crate::download::download(source, &url, &file, &opts)?.sha256;
        if found != c.checksum {
            bail!(
                "sources.{source}: crate {} {} downloaded from {url} has sha256 {found}, but {lockfile} pins {}; \
                 the registry served other bytes: refusing it (check the [cargo] download setting of the \
                 eifbake config, or the Cargo.lock)",
                c.name,
                c.version,
                c.checksum
            );
        }
        let dir = unpack_crate(&file, c, &vendor_dir)
            .with_context(|| format!("sources.{source}: crate {} {} ({url})", c.name, c.version))?;
        write_checksums(&dir, c)
    })?;
    crate::sources::tree_hash(dest, &[])
}

/// Unpack the `.crate` (a gzipped tar) at `file` into `vendor/NAME-VERSION`
/// by the rules of the module documentation; returns that directory.
fn unpack_crate(file: &Path, c: &LockedCrate, vendor: &Path) -> Result<PathBuf> {
    let top = format!("{}-{}", c.name, c.version);
    let root = vendor.join(&top);
    fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let gz = flate2::read::GzDecoder::new(BufReader::new(File::open(file)?));
    let mut archive = tar::Archive::new(gz.take(MAX_CRATE_BYTES + (1 << 20)));
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in archive.entries().context("not a gzipped tar")? {
        let mut entry = entry.context("reading the .crate (a gzipped tar)")?;
        use tar::EntryType::*;
        let kind = entry.header().entry_type();
        if matches!(kind, XGlobalHeader | XHeader | GNULongName | GNULongLink) {
            continue;
        }
        entries += 1;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse =
            |why: &str| anyhow::anyhow!("entry {shown:?} of the .crate: {why}; refusing to unpack it");
        if entries > MAX_CRATE_ENTRIES {
            return Err(refuse(&format!("the crate has more than {MAX_CRATE_ENTRIES} entries")));
        }
        let rel = entry_path(&entry.path_bytes(), &top).map_err(&refuse)?;
        let target = root.join(&rel);
        match kind {
            Directory => {
                fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?
            }
            Regular | Continuous if rel.as_os_str().is_empty() => {
                return Err(refuse("a file cannot stand for the crate's directory"))
            }
            Regular | Continuous => {
                bytes += entry.size();
                if bytes > MAX_CRATE_BYTES {
                    return Err(refuse(&format!("the crate unpacks to more than {MAX_CRATE_BYTES} bytes")));
                }
                let exec = entry.header().mode().unwrap_or(0) & 0o100 != 0;
                write_entry(&mut entry, &target, exec).map_err(|e| refuse(&format!("{e:#}")))?;
            }
            Symlink | Link => return Err(refuse("links are not allowed in a vendored crate")),
            other => return Err(refuse(&format!("entry type {other:?} is not allowed in a vendored crate"))),
        }
    }
    Ok(root)
}

/// The path of a tar entry below `top/`: every component a plain name, the
/// first one `top`.
fn entry_path(raw: &[u8], top: &str) -> Result<PathBuf, &'static str> {
    let mut parts = Path::new(std::ffi::OsStr::from_bytes(raw)).components();
    match parts.next() {
        Some(Component::Normal(first)) if first.as_bytes() == top.as_bytes() => {}
        Some(Component::RootDir) => return Err("absolute paths are not allowed"),
        _ => return Err("every entry must be below the crate's NAME-VERSION/ directory"),
    }
    let mut rel = PathBuf::new();
    for part in parts {
        match part {
            Component::Normal(p) => rel.push(p),
            Component::ParentDir => return Err("'..' components are not allowed"),
            _ => return Err("only plain path components are allowed"),
        }
    }
    Ok(rel)
}

/// Write one file entry (never over an existing path) with a fixed mode.
fn write_entry(entry: &mut impl Read, target: &Path, exec: bool) -> Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(target)
        .with_context(|| format!("cannot create {} (does the crate list it twice?)", target.display()))?;
    io::copy(entry, &mut f).with_context(|| format!("cannot write {}", target.display()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }))?;
    Ok(())
}

/// Write `.cargo-checksum.json` into the unpacked crate `dir`.
fn write_checksums(dir: &Path, c: &LockedCrate) -> Result<()> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).expect("walkdir yields paths under its root");
        if rel == Path::new(CHECKSUM_FILE) {
            continue; // one the crate itself carries: replaced below
        }
        let (d, _) = Digest::of_reader(BufReader::new(File::open(entry.path())?))?;
        files.insert(rel.to_string_lossy().into_owned(), serde_json::Value::String(d.hex()));
    }
    let json = serde_json::json!({
        "files": files.into_iter().collect::<serde_json::Map<_, _>>(),
        "package": c.checksum.hex(),
    });
    let path = dir.join(CHECKSUM_FILE);
    fs::write(&path, serde_json::to_vec(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_below_the_crate_directory() {
        assert_eq!(entry_path(b"a-1.0.0/src/lib.rs", "a-1.0.0").unwrap(), Path::new("src/lib.rs"));
        assert_eq!(entry_path(b"a-1.0.0/", "a-1.0.0").unwrap(), Path::new(""));
        for bad in ["/etc/passwd", "a-1.0.0/../x", "../a-1.0.0/x", "b-1.0.0/x", "x", "./a-1.0.0/x", ""] {
            assert!(entry_path(bad.as_bytes(), "a-1.0.0").is_err(), "{bad}");
        }
    }

    #[test]
    fn names_that_could_climb_out_are_refused() {
        let c = |name: &str, version: &str| LockedCrate {
            name: name.into(),
            version: version.into(),
            checksum: Digest::of(b""),
        };
        check_names(&c("cfg-if", "1.0.0-rc.1+build")).unwrap();
        for (n, v) in [("../x", "1.0.0"), ("a", "../1"), ("a/b", "1"), ("", "1"), ("a", "1/2"), ("a", "")] {
            assert!(check_names(&c(n, v)).is_err(), "{n} {v}");
        }
    }
}
