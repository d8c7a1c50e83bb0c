//! Releases on OCI registries: one build's four files (`NAME.eif`,
//! `NAME.manifest.json`, `NAME.provenance.json`, `NAME.pcrs`) published as
//! one OCI artifact, read back verified, and the rebuild attestations
//! attached to it as referrers.
//!
//! - this module: the artifact's shape ([`artifact_manifest`]), [`push`],
//!   [`pull`], and telling a registry reference from a file path ([`Subject::parse`]);
//! - [`referrers`]: attaching a manifest to a release (`subject`) and listing
//!   what is attached, through the referrers API or the referrers tag schema;
//! - [`dsse`]: DSSE envelopes signed with ECDSA P-384 / SHA-384;
//! - [`rebuilds`]: signed rebuild attestations (the `verify` summary) as
//!   referrers, and the listing that checks their signatures.
//!
//! The artifact (OCI image manifest 1.1, "artifact" guidance): `artifactType`
//! [`media::RELEASE`], the empty config descriptor, four layers in the order
//! EIF, manifest, provenance, `.pcrs`, each with its own media type and an
//! `org.opencontainers.image.title` (the file name, as `oras` uses it), and
//! annotations with PCR0/1/2 (and PCR8 when signed), the app sources, the
//! tool version and the release name and version. Its bytes depend only on
//! the four files: pushing the same release twice gives the same digest.
//!
//! Invariants:
//! - [`push`] refuses a release whose files disagree (the EIF's sha256 or
//!   the `.pcrs` are not the manifest's), so a registry never holds one;
//! - [`pull`] checks every blob's size and digest against the artifact
//!   manifest while streaming it, then the same agreement as `push`, and
//!   only then renames the four files into place (each was written under a
//!   temporary name in the output directory): a failed pull leaves no file;
//! - file names written by [`pull`] come from the release's validated name,
//!   never from an annotation.
//!
//! Not for: rebuilding (that is [`crate::verify`]) or the store of pinned
//! images ([`crate::oci::store`]).

pub mod dsse;
pub mod rebuilds;
pub mod referrers;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::digest::Digest;
use crate::fsutil::AtomicFile;
use crate::manifest::Manifest;
use crate::oci::model::{self, media, DescriptorExt, ImageManifest};
use crate::oci::registry::Registry;
use crate::oci::Reference;
use crate::pcr::Measurements;

/// Annotation keys of the release artifact.
pub mod annotation {
    pub const PCR_PREFIX: &str = "io.eifbake.pcr";
    pub const APP_SOURCES: &str = "io.eifbake.app-sources";
    pub const TOOL_VERSION: &str = "io.eifbake.tool.version";
    pub const EIF_SHA256: &str = "io.eifbake.eif.sha256";
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const VERSION: &str = "org.opencontainers.image.version";
    pub const CREATED: &str = "org.opencontainers.image.created";
}

/// The four files of one release, as `build` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFiles {
    pub name: String,
    pub eif: PathBuf,
    pub manifest: PathBuf,
    pub provenance: PathBuf,
    pub pcrs: PathBuf,
}

/// One layer: its media type and the suffix of its file name.
const LAYERS: [(&str, &str); 4] = [
    (media::EIF, ".eif"),
    (media::EIFBAKE_MANIFEST, ".manifest.json"),
    (media::IN_TOTO, ".provenance.json"),
    (media::PCRS, ".pcrs"),
];

impl ReleaseFiles {
    /// The files of `out/NAME` (also accepted: the path of any of the four).
    pub fn of(prefix: &Path) -> ReleaseFiles {
        let mut s = prefix.to_string_lossy().into_owned();
        if let Some((_, suffix)) = LAYERS.iter().find(|(_, suf)| s.ends_with(suf)) {
            s.truncate(s.len() - suffix.len());
        }
        ReleaseFiles::in_dir(Path::new(&s).parent().unwrap_or(Path::new("")), &file_name(&s))
    }

    /// `DIR/NAME.eif`, … .
    pub fn in_dir(dir: &Path, name: &str) -> ReleaseFiles {
        let p = |suffix: &str| dir.join(format!("{name}{suffix}"));
        ReleaseFiles {
            name: name.to_string(),
            eif: p(".eif"),
            manifest: p(".manifest.json"),
            provenance: p(".provenance.json"),
            pcrs: p(".pcrs"),
        }
    }

    /// The four paths, in layer order.
    pub fn paths(&self) -> [&Path; 4] {
        [&self.eif, &self.manifest, &self.provenance, &self.pcrs]
    }
}

fn file_name(s: &str) -> String {
    Path::new(s).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What a command argument names: a file, or a release on a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    File(PathBuf),
    Release(Reference),
}

impl Subject {
    /// An argument that names an existing path is that file. Otherwise, when
    /// its first `/`-separated component is a registry host (it contains a
    /// `.` or a `:`, or is `localhost`) and it parses as an image reference,
    /// it is a release on that registry. Anything else is a file (that does
    /// not exist, which the command then says). Docker Hub releases are
    /// written with their host: `docker.io/USER/REPO:TAG`.
    pub fn parse(arg: &str) -> Result<Subject> {
        let path = Path::new(arg);
        if path.symlink_metadata().is_ok() {
            return Ok(Subject::File(path.to_path_buf()));
        }
        let first = arg.split('/').next().unwrap_or("");
        let host_like =
            arg.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        if host_like && !first.starts_with('.') {
            let r: Reference = arg.parse().with_context(|| {
                format!("{arg}: no such file, and not a registry reference (REGISTRY/REPO[:TAG][@sha256:…])")
            })?;
            return Ok(Subject::Release(r));
        }
        Ok(Subject::File(path.to_path_buf()))
    }
}

/// A release as pushed or pulled: the artifact manifest's digest and bytes.
#[derive(Debug, Clone)]
pub struct Published {
    pub digest: Digest,
    pub manifest: ImageManifest,
    pub bytes: Vec<u8>,
}

/// The empty config descriptor of OCI 1.1 artifacts (`{}`).
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// The artifact manifest of a release whose layers are `layers` (digest and
/// size in layer order) and whose eifbake manifest is `m`: deterministic bytes.
pub fn artifact_manifest(name: &str, m: &Manifest, layers: &[(Digest, u64); 4]) -> Vec<u8> {
    let descriptors: Vec<serde_json::Value> = LAYERS
        .iter()
        .zip(layers)
        .map(|((media_type, suffix), (d, size))| {
            json!({"mediaType": media_type, "digest": d.to_string(), "size": size,
                   "annotations": {annotation::TITLE: format!("{name}{suffix}")}})
        })
        .collect();
    let mut a = BTreeMap::new();
    for (n, p) in m.outputs.pcrs.registers() {
        a.insert(format!("{}{n}", annotation::PCR_PREFIX), p.hex());
    }
    a.insert(annotation::APP_SOURCES.into(), serde_json::to_string(&m.origin.app_sources).expect("strings"));
    a.insert(annotation::TOOL_VERSION.into(), m.inputs.tool.version.clone());
    a.insert(annotation::EIF_SHA256.into(), m.outputs.eif.sha256.to_string());
    a.insert(annotation::TITLE.into(), m.inputs.name.clone());
    a.insert(annotation::VERSION.into(), m.inputs.version.clone());
    a.insert(annotation::CREATED.into(), m.inputs.source_date_epoch.rfc3339());
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::RELEASE,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(EMPTY_CONFIG).to_string(),
                   "size": EMPTY_CONFIG.len(), "data": "e30="},
        "layers": descriptors,
        "annotations": a,
    });
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// Refuse a release whose files disagree: the EIF's sha256 and the `.pcrs`
/// must be the manifest's. `eif` is the EIF's digest; `what` names the release.
fn check_agreement(m: &Manifest, eif: &Digest, pcrs: &[u8], what: &str) -> Result<()> {
    if *eif != m.outputs.eif.sha256 {
        bail!(
            "{what}: the EIF has sha256 {eif} but its manifest's outputs.eif.sha256 is {}; \
             these files are not one release (rebuild, or give the matching files)",
            m.outputs.eif.sha256
        );
    }
    let text = std::str::from_utf8(pcrs).with_context(|| format!("{what}: the .pcrs file is not text"))?;
    let p = Measurements::parse_pcrs_file(text).with_context(|| format!("{what}: the .pcrs file"))?;
    if p != m.outputs.pcrs {
        bail!("{what}: the .pcrs file's PCRs are not its manifest's outputs.pcrs; these files are not one release");
    }
    Ok(())
}

/// A manifest's release name, refused unless it is a plain file name stem.
fn release_name(m: &Manifest, what: &str) -> Result<String> {
    let n = &m.inputs.name;
    let ok = !n.is_empty()
        && !n.starts_with('.')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!("{what}: manifest field inputs.name {n:?} is not a plain name (letters, digits, . _ -)");
    }
    Ok(n.clone())
}

fn tokio() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Push the release `files` to `reference` (which must have a tag and no digest).
pub fn push(registry: &Registry, files: &ReleaseFiles, reference: &Reference) -> Result<Published> {
    if reference.digest().is_some() {
        bail!("{reference}: push to a tag (REGISTRY/REPO:TAG); a digest is what the push produces");
    }
    let tag = reference.tag().unwrap_or("latest");
    let mut blobs = Vec::with_capacity(4);
    for p in files.paths() {
        blobs.push(fs::read(p).with_context(|| {
            format!("cannot read {} (push takes out/NAME: the four files build writes)", p.display())
        })?);
    }
    let m = Manifest::from_json(&blobs[1]).with_context(|| files.manifest.display().to_string())?;
    let what = format!("release {}", files.eif.with_extension("").display());
    check_agreement(&m, &Digest::of(&blobs[0]), &blobs[3], &what)?;
    let name = release_name(&m, &what)?;
    let layers: [(Digest, u64); 4] = std::array::from_fn(|i| (Digest::of(&blobs[i]), blobs[i].len() as u64));
    let bytes = artifact_manifest(&name, &m, &layers);
    let rt = tokio()?;
    rt.block_on(async {
        registry.push_blob(reference, EMPTY_CONFIG).await?;
        for b in &blobs {
            registry.push_blob(reference, b).await?;
        }
        registry.push_manifest(reference, Some(tag), &bytes, media::OCI_MANIFEST).await
    })?;
    let manifest = parse_release(&bytes, &format!("{reference}"))?;
    Ok(Published { digest: Digest::of(&bytes), manifest, bytes })
}

/// Parse an artifact manifest, refusing anything but an eifbake release.
pub fn parse_release(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    let m = match model::Manifest::parse(bytes, what)? {
        model::Manifest::Image(m) => m,
        model::Manifest::Index(_) => bail!("{what}: an image index, not an eifbake release"),
    };
    let at = m.artifact_type().as_ref().map(|t| t.to_string()).unwrap_or_default();
    if at != media::RELEASE {
        bail!(
            "{what}: artifactType {at:?}, not an eifbake release ({}); was it pushed by eifbake push?",
            media::RELEASE
        );
    }
    Ok(m)
}

/// Fetch the release manifest `reference` names.
pub fn resolve(registry: &Registry, reference: &Reference) -> Result<Published> {
    let (bytes, digest) = tokio()?.block_on(registry.fetch_manifest(reference))?;
    let manifest = parse_release(&bytes, &format!("{reference} ({digest})"))?;
    Ok(Published { digest, manifest, bytes })
}

/// Pull the release `reference` names into `out` (created if missing):
/// every blob checked, then the files' agreement, then the renames.
pub fn pull(registry: &Registry, reference: &Reference, out: &Path) -> Result<(Published, ReleaseFiles)> {
    let rel = resolve(registry, reference)?;
    let what = format!("{reference} ({})", rel.digest);
    let mut found = Vec::with_capacity(4);
    for (media_type, _) in LAYERS {
        let hits: Vec<_> =
            rel.manifest.layers().iter().filter(|l| l.media_type().to_string() == media_type).collect();
        match hits.as_slice() {
            [one] => found.push((*one).clone()),
            _ => bail!("{what}: {} layers of type {media_type}; a release has exactly one", hits.len()),
        }
    }
    for d in &found[1..] {
        if d.size() > crate::oci::store::MAX_MANIFEST_SIZE * 16 {
            bail!("{what}: the {} layer declares {} bytes: too large", d.media_type(), d.size());
        }
    }
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let rt = tokio()?;
    // The small files first, in memory: the manifest names the release.
    let mut small = Vec::new();
    for d in &found[1..] {
        let mut buf = Vec::new();
        rt.block_on(registry.fetch_blob_into(reference, d, &mut buf))?;
        small.push(buf);
    }
    let m = Manifest::from_json(&small[0]).with_context(|| format!("{what}: the manifest layer"))?;
    let name = release_name(&m, &what)?;
    check_agreement(&m, &found[0].sha256()?, &small[2], &what)?;
    let files = ReleaseFiles::in_dir(out, &name);
    let mut eif = AtomicFile::create(&files.eif)?;
    rt.block_on(registry.fetch_blob_into(reference, &found[0], &mut eif))?;
    let mut pending = Vec::new();
    for (path, bytes) in files.paths()[1..].iter().zip(&small) {
        let mut f = AtomicFile::create(path)?;
        std::io::Write::write_all(&mut f, bytes).with_context(|| format!("writing {}", path.display()))?;
        pending.push(f);
    }
    eif.commit()?;
    for f in pending {
        f.commit()?;
    }
    Ok((rel, files))
}

/// The EIF a command argument names: the file itself, or, for a release on
/// a registry, its EIF pulled (verified) into `scratch`.
pub fn local_eif(registry: &Registry, arg: &Path, scratch: &Path) -> Result<PathBuf> {
    local_file(registry, arg, scratch, |f| &f.eif)
}

/// The file a command argument names: the file itself, or, for a release on
/// a registry, the member `pick` chooses of the release pulled into `scratch`.
pub fn local_file(
    registry: &Registry,
    arg: &Path,
    scratch: &Path,
    pick: impl Fn(&ReleaseFiles) -> &PathBuf,
) -> Result<PathBuf> {
    let text = arg.to_str().with_context(|| format!("{}: not UTF-8", arg.display()))?;
    match Subject::parse(text)? {
        Subject::File(p) => Ok(p),
        Subject::Release(r) => Ok(pick(&pull(registry, &r, scratch)?.1).clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::from_json(include_bytes!("../../tests/data/manifest.json")).unwrap()
    }

    #[test]
    fn an_existing_path_is_a_file_a_host_qualified_name_a_release() {
        let dir = tempfile::tempdir().unwrap();
        // Looks like a reference, but exists: a file.
        let odd = dir.path().join("127.0.0.1:5000");
        fs::create_dir(&odd).unwrap();
        fs::write(odd.join("x:1"), b"").unwrap();
        let p = odd.join("x:1");
        assert_eq!(Subject::parse(p.to_str().unwrap()).unwrap(), Subject::File(p.clone()));
        let release = |s: &str| match Subject::parse(s).unwrap() {
            Subject::Release(r) => r,
            other => panic!("{s}: {other:?}"),
        };
        let r = release("127.0.0.1:5000/rel/hello:1.0");
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "rel/hello", Some("1.0")));
        let d = Digest::of(b"m");
        assert_eq!(release(&format!("ghcr.io/o/hello@{d}")).digest(), Some(d));
        assert_eq!(release("localhost/hello:2").registry(), "localhost");
        assert_eq!(release("docker.io/o/hello:3").repository(), "o/hello");
        // No registry host, or not there: files (the command then says they are missing).
        for f in ["out/hello.manifest.json", "hello.eif", "o/hello:1", "./x.y/z", "../a.b/c"] {
            assert_eq!(Subject::parse(f).unwrap(), Subject::File(PathBuf::from(f)), "{f}");
        }
        let e = format!("{:#}", Subject::parse("ghcr.io/UPPER/Case:1").unwrap_err());
        assert!(e.contains("no such file, and not a registry reference"), "{e}");
    }

    #[test]
    fn release_files_are_named_from_the_prefix_or_any_member() {
        let want = ReleaseFiles::in_dir(Path::new("out"), "hello");
        for p in [
            "out/hello",
            "out/hello.eif",
            "out/hello.manifest.json",
            "out/hello.provenance.json",
            "out/hello.pcrs",
        ] {
            assert_eq!(ReleaseFiles::of(Path::new(p)), want, "{p}");
        }
        assert_eq!(want.paths()[3], Path::new("out/hello.pcrs"));
    }

    #[test]
    fn the_artifact_manifest_is_deterministic_and_annotated() {
        let m = manifest();
        let layers: [(Digest, u64); 4] = std::array::from_fn(|i| (Digest::of(&[i as u8]), i as u64 + 1));
        let a = artifact_manifest("hello", &m, &layers);
        for _ in 0..4 {
            assert_eq!(artifact_manifest("hello", &m, &layers), a);
        }
        let parsed = parse_release(&a, "test").unwrap();
        assert_eq!(parsed.layers().len(), 4);
        assert_eq!(parsed.layers()[0].media_type().to_string(), media::EIF);
        assert_eq!(parsed.layers()[3].annotation(annotation::TITLE), Some("hello.pcrs"));
        assert_eq!(parsed.config().sha256().unwrap(), Digest::of(b"{}"));
        let ann = parsed.annotations().clone().unwrap();
        assert_eq!(ann["io.eifbake.pcr0"], "0".repeat(96));
        assert_eq!(ann["io.eifbake.pcr2"], "2".repeat(96));
        assert!(!ann.contains_key("io.eifbake.pcr8"), "unsigned: no PCR8");
        assert_eq!(ann[annotation::TOOL_VERSION], m.inputs.tool.version);
        // Another artifact type is not a release.
        let other = String::from_utf8(a).unwrap().replace(media::RELEASE, "application/x-other");
        let e = format!("{:#}", parse_release(other.as_bytes(), "blob X").unwrap_err());
        assert!(e.contains("blob X") && e.contains("not an eifbake release"), "{e}");
    }

    #[test]
    fn files_that_disagree_or_unsafe_names_are_refused() {
        let m = manifest();
        let pcrs = m.outputs.pcrs.to_pcrs_file();
        check_agreement(&m, &m.outputs.eif.sha256, pcrs.as_bytes(), "r").unwrap();
        let e =
            format!("{:#}", check_agreement(&m, &Digest::of(b"other"), pcrs.as_bytes(), "r").unwrap_err());
        assert!(e.contains("outputs.eif.sha256") && e.contains("not one release"), "{e}");
        let wrong = pcrs.replacen('0', "1", 1);
        let e =
            format!("{:#}", check_agreement(&m, &m.outputs.eif.sha256, wrong.as_bytes(), "r").unwrap_err());
        assert!(e.contains(".pcrs"), "{e}");
        for bad in ["../x", ".hidden", "a/b", ""] {
            let mut m = manifest();
            m.inputs.name = bad.into();
            let e = format!("{:#}", release_name(&m, "r").unwrap_err());
            assert!(e.contains("inputs.name"), "{bad}: {e}");
        }
        assert_eq!(release_name(&manifest(), "r").unwrap(), "hello");
    }
}
