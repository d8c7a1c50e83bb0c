//! The registry client: resolve references to digests and download manifests
//! and blobs, verified, into the [`Store`].
//!
//! Built on `oci-client` for the HTTP distribution protocol (token
//! handshakes, redirects, accept headers). Manifests arrive as raw bytes and
//! are parsed with [`Manifest::parse`], like the store's; descriptors are
//! oci-spec's ([`super::model`]) and become oci-client's only in `oci_desc`,
//! to ask for a blob. eifbake adds its policy on top:
//!
//! - registry mirrors ([`crate::config`]): an image of registry `R` is asked
//!   of each mirror of `R` in order, then of `R` itself; the first that
//!   serves it wins. Mirrors change where bytes come from, never what is
//!   accepted: pinned manifests and blobs are checked against their digests
//!   whoever serves them (a tag resolved through a mirror is what that
//!   mirror says it is, as the user who configured it chose);
//! - HTTPS everywhere except loopback registries (`localhost`, `127.0.0.0/8`,
//!   `[::1]`) and registries the user names with `--insecure-registry`
//!   (mirrors included);
//! - credentials from `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//!   or `~/.docker/config.json` (`auths.<host>.auth` = base64 `user:pass`,
//!   or `registrytoken` for a bearer token), else anonymous;
//! - every manifest and blob is checked against the digest and size it was
//!   asked for before anything uses it; blobs go through
//!   [`Store::blob_writer`] so a bad download never becomes visible.
//!
//! Releases ([`crate::release`]) use the same client to push blobs and
//! manifests, stream one verified blob into a writer, read a referrers tag
//! and ask the referrers API; those go to the registry a reference names,
//! never to a mirror.
//!
//! Not for: choosing what to pin (that is [`crate::lock`]) or any store
//! layout policy beyond "put verified blobs in".

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use super::model::{self, media, Descriptor, DescriptorExt, ImageIndex, Manifest};
use super::reference::{host_is_loopback, Reference};
use super::store::{Store, MAX_MANIFEST_SIZE};
use crate::config::Mirror;
use crate::digest::Digest;
use crate::platform::{Arch, Platform};
use crate::progress::Progress;

/// How many blobs are downloaded at once.
pub const MAX_CONCURRENT_DOWNLOADS: usize = 4;

/// What a reference resolves to for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The digest the reference itself points at: an image index / manifest
    /// list, or (for single-platform images) the platform manifest itself.
    pub index: Digest,
    /// The platform manifest for `platform`.
    pub manifest: Digest,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: Platform,
}

/// A registry client with eifbake's transport, credential and mirror policy.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    insecure: Vec<String>,
    mirrors: Vec<Mirror>,
}

/// One place an image can be pulled from: a mirror or its own registry.
struct Target {
    client: oci_client::Client,
    auth: RegistryAuth,
    /// The image as the lock names it (for messages).
    reference: Reference,
    /// The registry to ask (`reference`'s own, or a mirror's host).
    registry: String,
    /// Where HTTP requests go (`registry-1.docker.io` for `docker.io`).
    http_host: String,
    /// The repository there (a mirror's prefix included).
    repository: String,
    /// `via mirror HOST` or empty, for messages.
    via: String,
}

impl Target {
    fn pinned(&self, digest: &Digest) -> oci_client::Reference {
        let mut r = oci_client::Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        );
        r.set_mirror_registry(self.http_host.clone());
        r
    }

    fn as_given(&self) -> oci_client::Reference {
        if let Some(d) = self.reference.digest() {
            return self.pinned(&d);
        }
        let mut r = oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            self.reference.tag().unwrap_or("latest").to_string(),
        );
        r.set_mirror_registry(self.http_host.clone());
        r
    }
}

/// Run `f` against each target in order until one succeeds; when all fail,
/// the error names each target's failure.
async fn first_ok<'a, T, F, Fut>(targets: &'a [Target], f: F) -> Result<T>
where
    F: Fn(&'a Target) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut errors = Vec::new();
    for t in targets {
        match f(t).await {
            Ok(v) => return Ok(v),
            Err(e) => errors.push((t, e)),
        }
    }
    if errors.len() == 1 {
        return Err(errors.pop().expect("one").1);
    }
    let all: Vec<String> = errors
        .iter()
        .map(|(t, e)| {
            let via = if t.via.is_empty() { format!("from {}", t.registry) } else { t.via.clone() };
            format!("{via}: {e:#}")
        })
        .collect();
    bail!("every registry failed (mirrors first): {}", all.join("; "))
}

impl Registry {
    /// `insecure`: extra `host[:port]` registries reachable over plain HTTP.
    pub fn new(insecure: &[String]) -> Self {
        Registry { insecure: insecure.to_vec(), mirrors: Vec::new() }
    }

    /// The same client, asking `mirrors` (in order) before an image's own registry.
    pub fn with_mirrors(mut self, mirrors: Vec<Mirror>) -> Self {
        self.mirrors = mirrors;
        self
    }

    /// Whether requests for `reference` go over plain HTTP: only for loopback
    /// registries and those named with `--insecure-registry`.
    pub fn plain_http(&self, reference: &Reference) -> bool {
        self.plain_http_host(reference.registry()) || self.plain_http_host(reference.http_host())
    }

    fn plain_http_host(&self, host: &str) -> bool {
        host_is_loopback(host) || self.insecure.iter().any(|h| h == host)
    }

    fn client(&self, host: &str, plain: bool) -> oci_client::Client {
        let protocol =
            if plain { ClientProtocol::HttpsExcept(vec![host.to_string()]) } else { ClientProtocol::Https };
        let config = ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        oci_client::Client::new(config)
    }

    /// Where to ask for `reference`: each mirror of its registry, in order, then the registry itself.
    fn targets(&self, reference: &Reference) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for m in self.mirrors.iter().filter(|m| m.from == reference.registry()) {
            let http_host =
                if m.to_host == "docker.io" { "registry-1.docker.io" } else { m.to_host.as_str() };
            out.push(Target {
                client: self.client(http_host, self.plain_http_host(&m.to_host)),
                auth: credentials_for(&m.to_host)?,
                reference: reference.clone(),
                registry: m.to_host.clone(),
                http_host: http_host.to_string(),
                repository: match &m.to_prefix {
                    Some(p) => format!("{p}/{}", reference.repository()),
                    None => reference.repository().to_string(),
                },
                via: format!("via mirror {}", m.to_host),
            });
        }
        let host = reference.http_host().to_string();
        out.push(Target {
            client: self.client(&host, self.plain_http(reference)),
            auth: credentials_for(reference.registry())?,
            reference: reference.clone(),
            registry: reference.registry().to_string(),
            http_host: host,
            repository: reference.repository().to_string(),
            via: String::new(),
        });
        Ok(out)
    }

    /// Resolve `reference` (by its digest if it has one, else by tag) to the
    /// manifest for `linux/<arch>` (`linux/amd64`, `linux/arm64`),
    /// asking its mirrors first.
    pub async fn resolve(&self, reference: &Reference, arch: Arch) -> Result<Resolved> {
        let targets = self.targets(reference)?;
        first_ok(&targets, |t| resolve_at(t, arch)).await
    }

    /// Pull several pinned images into `store`: first each missing index and
    /// platform manifest, then every missing config and layer of all images
    /// together (a blob shared by two images is downloaded once),
    /// [`MAX_CONCURRENT_DOWNLOADS`] at a time. Returns what was downloaded per
    /// image, in order. With `offline`, nothing is downloaded and the first
    /// missing blob is an error naming it.
    pub async fn pull_images(
        &self,
        store: &Store,
        images: &[PullRequest],
        offline: bool,
        progress: &Progress,
    ) -> Result<Vec<PullStats>> {
        let mut stats = vec![PullStats::default(); images.len()];
        let mut targets = Vec::with_capacity(images.len());
        for img in images {
            targets.push(if offline { None } else { Some(self.targets(&img.reference)?) });
        }
        let missing = |d: &Digest, what: &str, r: &Reference| -> anyhow::Error {
            anyhow::anyhow!(
                "{what} {d} of {r} is not in the store {} and --offline forbids downloading it",
                store.root().display()
            )
        };
        // (image number, descriptor) for every blob to download, each digest once.
        let mut todo: Vec<(usize, Descriptor)> = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let r = &img.reference;
            let mut manifests = vec![img.manifest];
            if let Some(x) = img.index.filter(|x| *x != img.manifest) {
                manifests.insert(0, x);
            }
            for d in &manifests {
                if store.has_blob(d) {
                    continue;
                }
                let ts = targets[i].as_ref().ok_or_else(|| missing(d, "manifest", r))?;
                let (bytes, _) = first_ok(ts, |t| pull_manifest(t, t.pinned(d), Some(*d), None))
                    .await
                    .with_context(|| format!("fetching {r}"))?;
                store.put_blob_verified(&bytes[..], d, bytes.len() as u64)?;
                stats[i].manifests += 1;
                stats[i].bytes += bytes.len() as u64;
            }
            let m = store.manifest(&img.manifest)?;
            if m.is_index() {
                bail!(
                    "{r}: {} is an image index, but the lock pins it as the platform manifest",
                    img.manifest
                );
            }
            for d in m.children() {
                let digest = d.sha256()?;
                if !store.has_blob(&digest) && !todo.iter().any(|(_, x)| x.digest() == d.digest()) {
                    if offline {
                        return Err(missing(&digest, "blob", r));
                    }
                    todo.push((i, d.clone()));
                }
            }
        }
        progress.inc_length(todo.iter().map(|(_, d)| d.size()).sum());
        let targets = &targets;
        let results: Vec<(usize, Result<u64>)> = futures_util::stream::iter(todo.iter())
            .map(|(i, d)| async move {
                let ts = targets[*i].as_ref().expect("online when downloading");
                (*i, first_ok(ts, |t| download_blob(t, store, d, progress)).await)
            })
            .buffer_unordered(MAX_CONCURRENT_DOWNLOADS)
            .collect()
            .await;
        for (i, r) in results {
            stats[i].bytes += r?;
            stats[i].blobs += 1;
        }
        Ok(stats)
    }
}

/// Resolve the reference of `t` at `t`'s registry (see [`Registry::resolve`]).
async fn resolve_at(t: &Target, arch: Arch) -> Result<Resolved> {
    let reference = &t.reference;
    let (bytes, top) = pull_manifest(t, t.as_given(), reference.digest(), None)
        .await
        .with_context(|| format!("resolving {reference}"))?;
    let what = format!("manifest {top} of {reference}");
    let platform = Platform::linux(arch);
    let m = match Manifest::parse(&bytes, &what)? {
        Manifest::Index(list) => {
            let hit = model::platform_manifest(list.manifests(), arch)
                .with_context(|| format!("{reference}: the index {top}"))?;
            return Ok(Resolved { index: top, manifest: hit.sha256()?, platform });
        }
        Manifest::Image(m) => m,
    };
    // A single manifest: check its config says it is for the platform asked for.
    let config = m.config();
    let cfg = fetch_small_blob(t, config).await.with_context(|| format!("config of {what}"))?;
    let have =
        model::config_platform(&cfg).with_context(|| format!("config {} of {what}", config.digest()))?;
    if have.parse::<Platform>().ok() != Some(platform.clone()) {
        bail!("{reference}: single-platform image for {have}, but the recipe wants {platform}");
    }
    Ok(Resolved { index: top, manifest: top, platform })
}

/// One pinned image to pull: see [`Registry::pull_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub reference: Reference,
    /// The index the manifest was chosen from, if known (pulled too, so gc and
    /// offline re-locks can see it).
    pub index: Option<Digest>,
    pub manifest: Digest,
}

/// What a pull downloaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullStats {
    pub manifests: u64,
    pub blobs: u64,
    pub bytes: u64,
}

async fn pull_manifest(
    t: &Target,
    r: oci_client::Reference,
    expect: Option<Digest>,
    expect_size: Option<u64>,
) -> Result<(Vec<u8>, Digest)> {
    let r = &r;
    let (bytes, _claimed) =
        t.client.pull_manifest_raw(r, &t.auth, media::MANIFESTS).await.with_context(|| {
            format!("cannot fetch the manifest {} from {}", r.whole(), r.resolve_registry())
        })?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        bail!("manifest {} is larger than {MAX_MANIFEST_SIZE} bytes", r.whole());
    }
    let actual = Digest::of(&bytes);
    if let Some(e) = expect {
        if actual != e {
            bail!("manifest {}: the registry served content hashing to {actual}; refusing it", r.whole());
        }
    }
    if let Some(s) = expect_size {
        if bytes.len() as u64 != s {
            bail!("manifest {}: {} bytes served, {s} expected", r.whole(), bytes.len());
        }
    }
    Ok((bytes, actual))
}

/// The one place eifbake's descriptors become oci-client's (which it needs to pull a blob).
fn oci_desc(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: d.size() as i64,
        ..OciDescriptor::default()
    }
}

async fn fetch_small_blob(t: &Target, d: &Descriptor) -> Result<Vec<u8>> {
    let (digest, size) = (d.sha256()?, d.size());
    if size > MAX_MANIFEST_SIZE {
        bail!("blob {digest} declares {size} bytes: too large for a config");
    }
    let r = t.pinned(&digest);
    let mut s = t.client.pull_blob_stream(&r, &oci_desc(d)).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.try_next().await? {
        if (out.len() + chunk.len()) as u64 > size {
            bail!("blob {digest}: longer than the {size} bytes declared");
        }
        out.extend_from_slice(&chunk);
    }
    if out.len() as u64 != size || Digest::of(&out) != digest {
        bail!("blob {digest}: the registry served different content; refusing it");
    }
    Ok(out)
}

async fn download_blob(t: &Target, store: &Store, d: &Descriptor, progress: &Progress) -> Result<u64> {
    use std::io::Write as _;
    let what = || {
        let via = if t.via.is_empty() { String::new() } else { format!(" ({})", t.via) };
        format!("blob {} of {}{via}", d.digest(), t.reference)
    };
    let digest = d.sha256()?;
    let r = t.pinned(&digest);
    let mut s = t.client.pull_blob_stream(&r, &oci_desc(d)).await.with_context(what)?;
    let mut w = store.blob_writer(digest, d.size())?;
    let mut n = 0u64;
    while let Some(chunk) = s.try_next().await.with_context(what)? {
        w.write_all(&chunk).with_context(what)?;
        n += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    w.finish().with_context(what)?;
    Ok(n)
}

/// Releases and their referrers: publishing and reading single artifacts
/// (see [`crate::release`]). Both go to the registry the reference names,
/// never to a mirror (mirrors serve the images a build pins); each call
/// stores the credentials before its first request, so blob requests are
/// authenticated like manifest requests.
impl Registry {
    /// The reference's own registry (the last target: after its mirrors),
    /// with its credentials stored in its client.
    async fn own(&self, reference: &Reference) -> Result<Target> {
        let t = self.targets(reference)?.pop().expect("a reference's own registry is always a target");
        t.client.store_auth_if_needed(&t.http_host, &t.auth).await;
        Ok(t)
    }

    /// The manifest `reference` names (by digest, checked, or by tag) and its digest.
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest)> {
        let t = self.own(reference).await?;
        pull_manifest(&t, t.as_given(), reference.digest(), None).await
    }

    /// The manifest under `tag` in `reference`'s repository, or `None` when
    /// the registry does not have it (a referrers tag not written yet).
    pub async fn fetch_manifest_if_any(&self, reference: &Reference, tag: &str) -> Result<Option<Vec<u8>>> {
        let t = self.own(reference).await?;
        let mut r = oci_client::Reference::with_tag(t.registry.clone(), t.repository.clone(), tag.into());
        r.set_mirror_registry(t.http_host.clone());
        match t.client.pull_manifest_raw(&r, &t.auth, media::MANIFESTS).await {
            Ok((bytes, _)) if bytes.len() as u64 > MAX_MANIFEST_SIZE => {
                bail!("manifest {} is larger than {MAX_MANIFEST_SIZE} bytes", r.whole())
            }
            Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot fetch the manifest {}", r.whole())),
        }
    }

    /// Stream the blob `d` of `reference`'s repository into `w`, checking its
    /// size and digest; an error names the digest, and `w` then holds
    /// content that must be discarded.
    pub async fn fetch_blob_into(
        &self,
        reference: &Reference,
        d: &Descriptor,
        w: &mut impl std::io::Write,
    ) -> Result<()> {
        let t = self.own(reference).await?;
        let digest = d.sha256()?;
        let what = format!("blob {digest} of {reference}");
        let mut s = t
            .client
            .pull_blob_stream(&t.pinned(&digest), &oci_desc(d))
            .await
            .with_context(|| what.clone())?;
        let mut h = crate::digest::HashingWriter::new(w);
        let refused = || format!("{what}: refusing what the registry served (nothing was written from it)");
        while let Some(chunk) = s.try_next().await.with_context(refused)? {
            if h.len() + chunk.len() as u64 > d.size() {
                bail!("{what}: longer than the {} bytes its manifest declares; refusing it", d.size());
            }
            std::io::Write::write_all(&mut h, &chunk).with_context(|| what.clone())?;
        }
        let (_, got, n) = h.finish();
        if n != d.size() || got != digest {
            bail!(
                "{what}: the registry served {n} bytes with digest {got}, not the {} bytes the manifest \
                 names; refusing it (the registry's copy is damaged or tampered with)",
                d.size()
            );
        }
        Ok(())
    }

    /// Upload `bytes` as a blob of `reference`'s repository; returns its digest.
    pub async fn push_blob(&self, reference: &Reference, bytes: &[u8]) -> Result<Digest> {
        let t = self.own(reference).await?;
        let digest = Digest::of(bytes);
        t.client
            .push_blob(&t.pinned(&digest), bytes, &digest.to_string())
            .await
            .with_context(|| format!("cannot push blob {digest} to {}/{}", t.registry, t.repository))?;
        Ok(digest)
    }

    /// Upload a manifest under `tag` (or by its digest when `None`); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let t = self.own(reference).await?;
        let digest = Digest::of(bytes);
        let mut r = match tag {
            Some(tag) => {
                oci_client::Reference::with_tag(t.registry.clone(), t.repository.clone(), tag.into())
            }
            None => t.pinned(&digest),
        };
        r.set_mirror_registry(t.http_host.clone());
        let content_type = media_type.parse().context("a media type is a valid header value")?;
        t.client
            .push_manifest_raw(&r, bytes.to_vec(), content_type)
            .await
            .with_context(|| format!("cannot push the manifest {digest} to {}", r.whole()))?;
        Ok(digest)
    }

    /// The referrers API's index of the manifests whose `subject` is
    /// `digest`, or `None` when the registry has no referrers API (it
    /// answers 404: use the referrers tag schema). The entries may lack
    /// `artifactType` and annotations (oci-client's index type drops them):
    /// callers decide by each referrer's own manifest.
    pub async fn referrers_api(&self, reference: &Reference, digest: &Digest) -> Result<Option<ImageIndex>> {
        let t = self.own(reference).await?;
        let r = t.pinned(digest);
        match t.client.pull_referrers(&r, None).await {
            Ok(index) => {
                let v = serde_json::to_value(index)?;
                let index: ImageIndex = serde_json::from_value(v)
                    .with_context(|| format!("the referrers of {} are not an image index", r.whole()))?;
                Ok(Some(index))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot list the referrers of {}", r.whole())),
        }
    }
}

/// Whether a registry answered "not found" (404, or an error envelope saying so).
fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    match e {
        E::ServerError { code, .. } => *code == 404,
        E::ImageManifestNotFoundError(_) => true,
        E::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, C::NotFound | C::ManifestUnknown | C::NameUnknown | C::Unsupported)),
        _ => false,
    }
}

/// The auth files consulted, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(h) = dirs::home_dir() {
        v.push(h.join(".docker/config.json"));
    }
    v
}

fn normalise_key(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Credentials for `registry` from the first auth file that has an entry for it.
pub fn credentials_for(registry: &str) -> Result<RegistryAuth> {
    credentials_in(&auth_files(), registry)
}

/// Credentials for `registry` from the first of `files` that has an entry for it.
pub fn credentials_in(files: &[PathBuf], registry: &str) -> Result<RegistryAuth> {
    let aliases: &[&str] = if registry == "docker.io" {
        &["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        &[registry]
    };
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read auth file {}", f.display())),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("auth file {}: not JSON", f.display()))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else { continue };
        for (key, entry) in auths {
            if !aliases.contains(&normalise_key(key)) {
                continue;
            }
            let field = |name: &str| entry.get(name).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
            if let Some(tok) = field("registrytoken") {
                return Ok(RegistryAuth::Bearer(tok.to_string()));
            }
            if let Some(b64) = field("auth") {
                let raw =
                    base64::engine::general_purpose::STANDARD.decode(b64.trim()).with_context(|| {
                        format!(
                            "auth file {}: auths.{key:?}.auth is not base64 of user:password",
                            f.display()
                        )
                    })?;
                let s = String::from_utf8(raw).with_context(|| {
                    format!("auth file {}: auths.{key:?}.auth does not decode to UTF-8", f.display())
                })?;
                let (user, pass) = s.split_once(':').with_context(|| {
                    format!("auth file {}: auths.{key:?}.auth does not decode to user:password", f.display())
                })?;
                return Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()));
            }
        }
    }
    Ok(RegistryAuth::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_registries() {
        let r = |s: &str| s.parse::<Reference>().unwrap();
        let reg = Registry::new(&["registry.lan:5000".to_string()]);
        assert!(reg.plain_http(&r("127.0.0.1:5000/x:y")));
        assert!(reg.plain_http(&r("localhost:5000/x:y")));
        assert!(reg.plain_http(&r("[::1]:5000/x:y")));
        assert!(reg.plain_http(&r("registry.lan:5000/x:y")));
        assert!(!reg.plain_http(&r("registry.lan/x:y")));
        assert!(!reg.plain_http(&r("stagex/core-busybox:sx2026.03.0")));
        assert!(!Registry::new(&[]).plain_http(&r("quay.io/stagex/user-nit:1")));
    }

    #[test]
    fn mirrors_are_asked_first_in_order_and_only_for_their_registry() {
        let r = |s: &str| s.parse::<Reference>().unwrap();
        let m = |s: &str| s.parse::<Mirror>().unwrap();
        let reg = Registry::new(&["mirror.lan".to_string()]).with_mirrors(vec![
            m("docker.io=127.0.0.1:5001"),
            m("quay.io=localhost:5002"),
            m("docker.io=mirror.lan/hub/proxy"),
        ]);
        let t = reg.targets(&r("stagex/core-busybox:sx2026.03.0")).unwrap();
        let seen: Vec<(&str, &str, &str)> =
            t.iter().map(|t| (t.registry.as_str(), t.http_host.as_str(), t.repository.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("127.0.0.1:5001", "127.0.0.1:5001", "stagex/core-busybox"),
                ("mirror.lan", "mirror.lan", "hub/proxy/stagex/core-busybox"),
                ("docker.io", "registry-1.docker.io", "stagex/core-busybox"),
            ]
        );
        assert_eq!(
            t[0].pinned(&Digest::of(b"x")).whole(),
            format!("127.0.0.1:5001/stagex/core-busybox@{}", Digest::of(b"x"))
        );
        assert_eq!(t[1].via, "via mirror mirror.lan");
        assert!(t[2].via.is_empty());
        // No mirror for another registry: only the registry itself.
        let t = reg.targets(&r("ghcr.io/x/y:1")).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].registry, "ghcr.io");
    }

    #[test]
    fn credentials_from_auth_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(&a, r#"{"auths":{"quay.io":{"registrytoken":"tok"}}}"#).unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("me:se:cret");
        std::fs::write(
            &b,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{basic}"}},"quay.io":{{"auth":"{basic}"}},"bad.io":{{"auth":"!!"}}}}}}"#
            ),
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), a, b];
        assert!(matches!(credentials_in(&files, "quay.io").unwrap(), RegistryAuth::Bearer(t) if t == "tok"));
        assert!(matches!(credentials_in(&files, "docker.io").unwrap(),
            RegistryAuth::Basic(u, p) if u == "me" && p == "se:cret"));
        assert!(matches!(credentials_in(&files, "127.0.0.1:5000").unwrap(), RegistryAuth::Anonymous));
        let e = format!("{:#}", credentials_in(&files, "bad.io").unwrap_err());
        assert!(e.contains("b.json") && e.contains("bad.io"), "{e}");
    }
}
