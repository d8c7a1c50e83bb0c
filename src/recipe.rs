//! Recipes: what to build, as a TOML file (`recipes/NAME.toml` or
//! `recipes/NAME/recipe.toml`).
//!
//! This module parses and validates a recipe once, at the edge: unknown keys,
//! wrong types and dangling names (a step naming an image that `[images]`
//! does not define, an enclave output no step produces) are errors that name
//! the file, the line where the TOML parser can tell, and the key. Nothing
//! here touches the network or the store; pinning is [`crate::lock`]'s job.
//!
//! Recipes are untrusted input (`verify` rebuilds from recipes other people
//! publish), so everything that later becomes a host path is checked here,
//! before any work: the recipe's `name` and the image, source and step names
//! are single safe path components (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`);
//! every path (mount points, workdirs, outputs keys, which are under `/out`,
//! enclave targets, image file paths, `report` paths) is a normal absolute path, without
//! `.`, `..` or empty components; a step's `env` cannot name a variable
//! every step gets fixed ([`crate::sandbox::fixed_env`]).
//!
//! Where a recipe sits decides its project ([`Project`]): the one rule for
//! the project root, which the default lockfile, the recipe path a manifest
//! records and `check`'s copy of the project all follow.
//!
//! `arch` ([`crate::platform::Arch`]: `x86_64`, the default, or `aarch64`)
//! selects the platform of the whole build, end to end:
//!
//! - `eifbake lock` resolves every image for `linux/amd64` or `linux/arm64`
//!   (from an image index, the manifest for that platform; a single-platform
//!   image must be for it) and records each image's `platform` in the lock
//!   (an image's own `platform`, below, overrides this);
//! - `fetch` and `build` refuse a lock whose platforms are not the recipe's
//!   (or the image's own), and an image whose config names another architecture;
//! - the kernel must be that arch's: an x86 bzImage for `x86_64`, the
//!   uncompressed arm64 `Image` for `aarch64` (see [`crate::eif::kernel`]);
//!   a wrong or compressed one is refused before any step runs;
//! - steps run the images' programs, so on a host of the other architecture
//!   they need a qemu-user `binfmt_misc` handler (see
//!   [`crate::sandbox::execution_for`]) and are refused, naming the step,
//!   without one; a recipe with no steps (kernel, init and root filesystem
//!   all from images) builds for either arch on any host;
//! - the EIF header's flags get bit 0 for `aarch64`, and the manifest
//!   records `arch`.
//!
//! Fetch steps: a step with `network = true` is the only kind that reaches
//! a network (the outside world through `pasta`, never the host's network
//! namespace or loopback: [`crate::sandbox::network`]). What it writes is
//! pinned by hash: `eifbake lock` runs it and records its output tree in the
//! lock, and builds refuse any other result ([`crate::lock`],
//! `crate::build`). Nothing about where it downloads from is trusted or
//! measured; its output-tree hash is measured.
//!
//! Containerfiles: `containerfile = "Containerfile"` (with `build_args`)
//! names one beside the recipe; [`Recipe::load`] reads it and lowers it
//! ([`crate::containerfile::lower`]) into images, sources and root steps
//! before validating, and the sha256 a lock pins covers both files
//! ([`pinned_digest`]). A root step (`root`, `copy`, `user`) runs in its
//! stage's root filesystem, and that root is its output.
//!
//! Cross-arch steps: an `[images]` entry may give its own platform
//! (`[images.builder] ref = "…" platform = "linux/amd64"`, [`ImageEntry`]):
//! it is pinned and checked for that platform instead of the recipe's
//! (lock, fetch), and its steps run natively where that is the host's (or
//! need an emulator for it), so an amd64 cross-compiler can build for an
//! aarch64 enclave. What becomes the enclave (`enclave.rootfs`, `kernel`,
//! `init`, `nsm`) must be for `arch`, checked when the recipe is read.
//!
//! What of a recipe is measured: not its text (comments, key order and
//! formatting never change a PCR) nor where its images and sources come
//! from (registry hosts, URLs), but what determines the bytes: each image's
//! digest, each source's tree hash, the steps, the enclave settings, the
//! epoch, arch, name and version ([`crate::manifest::Inputs`]), written
//! into the ramdisk at `etc/eifbake/inputs.json`. Which PCR holds them
//! depends on `enclave.layout`: `nitro-cli` puts them in the second (user)
//! ramdisk, so PCR2 commits to them; `single` has one ramdisk, which PCR1
//! and PCR0 measure, and its PCR2 is the same constant for every
//! single-ramdisk EIF (the measurement of no data): pin PCR0 or PCR1 there.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::epoch::Epoch;
use crate::platform::Arch;

/// A parsed, validated recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Image name; outputs are `out/NAME.eif` and the lock is `lockfiles/NAME.lock`.
    pub name: String,
    /// Written to the EIF metadata's ImageVersion.
    #[serde(default = "default_version")]
    pub version: String,
    /// SOURCE_DATE_EPOCH for the build, unless the environment sets one.
    #[serde(default)]
    pub source_date_epoch: Option<Epoch>,
    /// Target architecture of the enclave and of every image pulled (see the
    /// module documentation for what it changes).
    #[serde(default)]
    pub arch: Arch,
    /// Enclave paths whose sha256 and size the manifest reports
    /// (`outputs.files`), so a user can check what a running enclave serves.
    /// Each must be a regular file or a symlink (reported with its target,
    /// never followed) in the final root filesystem. Not measured: naming a
    /// path never changes the EIF.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report: Vec<String>,
    /// Image name -> OCI reference (`stagex/core-busybox:sx2026.03.0`,
    /// `…@sha256:…`), or a table giving the image its own platform; see [`ImageEntry`].
    #[serde(default)]
    pub images: BTreeMap<String, ImageEntry>,
    /// Source name -> where it comes from.
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
    /// Build steps, run in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The enclave image.
    pub enclave: Enclave,
    /// Sign the EIF (adds PCR8); see [`Signing`].
    #[serde(default)]
    pub signing: Option<Signing>,
    /// Bounds on unpacking the images' layers; see [`Limits`].
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// A Containerfile (relative to the recipe) that makes the enclave's
    /// root filesystem and command: lowered into `images`, `sources` and
    /// `steps` when the recipe is loaded ([`crate::containerfile::lower`]);
    /// the recipe itself gives the kernel, init and enclave settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerfile: Option<PathBuf>,
    /// `--build-arg`s for the Containerfile (`ARG` values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// The Containerfile's build context, a directory relative to the
    /// recipe; default the Containerfile's own directory. (A Procfile's
    /// Containerfile is built with the repository root as context.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerfile_context: Option<PathBuf>,
    /// Only these paths of the Containerfile's final stage go into the
    /// enclave (a Procfile's `binary`): a last root step copies them from
    /// the final stage into an empty root; default the whole stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containerfile_only: Vec<String>,
    /// Deployment settings that mean nothing to a build (a Procfile's
    /// `domain`, `ports`, …): recorded in the manifest's
    /// `origin.deployment`, never measured, so they never change a PCR.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployment: BTreeMap<String, String>,
    /// Signatures an image must carry before it is used; see [`Trust`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
}

/// `[trust]`: the OpenPGP signatures ("simple signing", as skopeo and
/// podman write them) an image must carry before `lock`, `fetch`, `build`
/// or `verify` use it ([`crate::trust`]). The keys of `[trust]` are the
/// default of every image; `[trust.images.NAME]` overrides them, key by key,
/// for one image. An image is checked when any of the three is set for it,
/// and then all three must be:
///
/// - `keyring`: an armored or binary OpenPGP keyring (`gpg --export
///   --armor`), relative to the recipe; its sha256 is pinned in the lock;
/// - `threshold`: how many distinct keys of the keyring must have signed
///   the pinned manifest (a key signing twice counts once);
/// - `lookaside`: where the signatures are, in the containers lookaside
///   layout: an `https://` or `http://` URL, or a directory (relative to
///   the recipe, or absolute).
///
/// Read by hand ([`Trust`]'s `Deserialize`): serde's `flatten` of the defaults
/// would lose an unknown key's position and the list of known keys in errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Trust {
    /// The keys every image has unless its own table overrides them.
    #[serde(flatten)]
    pub defaults: TrustKeys,
    /// Per image (a key of `[images]`): overrides of the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, TrustKeys>,
}

/// The three keys of `[trust]` and of `[trust.images.NAME]` (one image's own
/// keyring, threshold or lookaside), each optional until resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookaside: Option<String>,
}

impl<'de> Deserialize<'de> for Trust {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Trust, D::Error> {
        /// The keys of `[trust]`; another is refused with this list, at its line.
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Keyring,
            Threshold,
            Lookaside,
            Images,
        }
        struct Table;
        impl<'de> serde::de::Visitor<'de> for Table {
            type Value = Trust;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the [trust] table")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Trust, M::Error> {
                let mut t = Trust::default();
                while let Some(key) = map.next_key()? {
                    match key {
                        Key::Keyring => t.defaults.keyring = Some(map.next_value()?),
                        Key::Threshold => t.defaults.threshold = Some(map.next_value()?),
                        Key::Lookaside => t.defaults.lookaside = Some(map.next_value()?),
                        Key::Images => t.images = map.next_value()?,
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_struct("Trust", &["keyring", "threshold", "lookaside", "images"], Table)
    }
}

/// The signature policy of one image, resolved from `[trust]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTrust {
    /// Relative to the recipe.
    pub keyring: PathBuf,
    pub threshold: u32,
    pub lookaside: String,
}

impl Trust {
    /// The policy of image `name`, `None` when none of its keys is set;
    /// an error naming the missing key when only some are.
    fn resolve(&self, name: &str) -> Result<Option<ImageTrust>> {
        let (o, d) = (self.images.get(name).cloned().unwrap_or_default(), &self.defaults);
        let keyring = o.keyring.or_else(|| d.keyring.clone());
        let threshold = o.threshold.or(d.threshold);
        let lookaside = o.lookaside.or_else(|| d.lookaside.clone());
        if keyring.is_none() && threshold.is_none() && lookaside.is_none() {
            return Ok(None);
        }
        let missing = |key: &str| {
            anyhow::anyhow!(
                "trust: image {name:?} has a signature policy without `{key}`; set trust.{key} \
                 (or trust.images.{name}.{key}): keyring, threshold and lookaside go together"
            )
        };
        let keyring = keyring.ok_or_else(|| missing("keyring"))?;
        let threshold = threshold.ok_or_else(|| missing("threshold"))?;
        let lookaside = lookaside.ok_or_else(|| missing("lookaside"))?;
        relative_file(&format!("trust (image {name:?}) keyring"), &keyring)?;
        if threshold == 0 {
            bail!("trust (image {name:?}): threshold = 0: expected at least 1 (leave [trust] out to check no signatures)");
        }
        if lookaside.trim().is_empty() {
            bail!("trust (image {name:?}): lookaside = \"\": expected an https:// URL or a directory");
        }
        Ok(Some(ImageTrust { keyring, threshold, lookaside }))
    }
}

/// One `[images]` entry: a reference (`busybox = "…"`, pinned for the
/// recipe's `arch`), or a table `{ ref = "…", platform = "linux/amd64" }`
/// pinning it for its own platform: a step image that runs natively on the
/// build host while the enclave is for the other arch (a cross-compiler).
/// Only steps may use an image of another platform than the recipe's: what
/// becomes the enclave (`enclave.rootfs`, `kernel`, `init`, `nsm`) must be
/// for `arch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ImageEntry {
    Reference(String),
    Table(ImageTable),
}

/// `[images.NAME]` as a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTable {
    /// The OCI reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `linux/amd64` or `linux/arm64`; the recipe's arch when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::platform::Platform>,
}

impl ImageEntry {
    /// The OCI reference, as the recipe writes it.
    pub fn reference(&self) -> &str {
        match self {
            ImageEntry::Reference(r) => r,
            ImageEntry::Table(t) => &t.reference,
        }
    }
}

/// A string, or a table read with [`ImageTable`]'s own (unknown-key naming) errors.
impl<'de> Deserialize<'de> for ImageEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ImageEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an OCI reference, or a table { ref = \"…\", platform = \"linux/amd64\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<ImageEntry, E> {
                Ok(ImageEntry::Reference(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> std::result::Result<ImageEntry, A::Error> {
                ImageTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(ImageEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[limits]`: bounds on what unpacking an image's layers may produce, so a
/// hostile or broken layer (a decompression bomb, millions of entries,
/// absurd paths) is stopped early rather than filling the disk. Every key is
/// optional; the defaults ([`crate::oci::layer`]'s `DEFAULT_*`) suit real
/// images, and a recipe raises one only for an image that needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// What a layer may expand to, as a multiple of its blob's size
    /// (default 100; any layer may reach 256 MiB), 1 to 100000.
    pub max_layer_expansion: Option<u64>,
    /// Bytes all of an image's layers may expand to together (default
    /// 16 GiB), 1 MiB to 1 TiB.
    pub max_image_bytes: Option<u64>,
    /// Entries in all of an image's layers together (default one million), 1 to 100 million.
    pub max_entries: Option<u64>,
    /// Bytes of an entry's path or a link's target (default 4096), 64 to 65536.
    pub max_path_length: Option<u64>,
}

impl Limits {
    fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    /// The layer-application options these limits give (the rest default).
    pub fn apply_options(&self) -> crate::oci::layer::ApplyOptions {
        let mut o = crate::oci::layer::ApplyOptions::default();
        if let Some(v) = self.max_layer_expansion {
            o.max_layer_expansion = v;
        }
        if let Some(v) = self.max_image_bytes {
            o.max_total_bytes = v;
        }
        if let Some(v) = self.max_entries {
            o.max_entries = v;
        }
        if let Some(v) = self.max_path_length {
            o.max_path_length = v as usize;
        }
        o
    }

    fn validate(&self) -> Result<()> {
        let ranges: [(&str, Option<u64>, u64, u64); 4] = [
            ("max_layer_expansion", self.max_layer_expansion, 1, 100_000),
            ("max_image_bytes", self.max_image_bytes, 1 << 20, 1 << 40),
            ("max_entries", self.max_entries, 1, 100_000_000),
            ("max_path_length", self.max_path_length, 64, 65_536),
        ];
        for (key, value, lo, hi) in ranges {
            if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
                bail!("limits.{key} = {v}: expected an integer from {lo} to {hi}");
            }
        }
        Ok(())
    }
}

/// `[signing]`: sign the EIF with an X.509 certificate and its ECDSA P-384
/// key, as nitro-cli does, but deterministically (RFC 6979), so a rebuild
/// with the same key gives the same file. PCR8 measures the certificate.
///
/// Nothing here is measured in PCR0/1/2: the measured inputs hold what
/// determines the EIF's bytes (see [`crate::manifest::Inputs`]), not the
/// recipe's text, and signing never changes PCR0/1/2. The certificate is
/// measured in PCR8. Paths are relative to the recipe's
/// directory. `eifbake build --signing-certificate/--private-key` override
/// this table, and `$EIFBAKE_SIGNING_KEY` gives the key when `key` is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// The signing certificate, PEM.
    pub certificate: PathBuf,
    /// The private key: a PEM file (PKCS#8 or SEC1). Optional here: release
    /// keys usually live outside the project and come from the command line.
    #[serde(default)]
    pub key: Option<String>,
}

fn default_version() -> String {
    "0.0.0".to_string()
}

/// Where a source comes from: exactly one of `git`, `path`, `url` or `cargo_lock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A git repository URL; `rev` names the branch, tag or commit to lock.
    pub git: Option<String>,
    pub rev: Option<String>,
    /// A local directory, relative to the recipe file.
    pub path: Option<PathBuf>,
    /// Glob-free names ignored under `path` (`target`, `.git`, …): any path
    /// component equal to one of these is skipped.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// A file or tarball by URL, with its expected sha256.
    pub url: Option<String>,
    pub sha256: Option<Digest>,
    /// Unpack an archive `url` (`.tar`, `.tar.gz`, `.zip`) instead of mounting the file.
    #[serde(default)]
    pub unpack: bool,
    /// A `Cargo.lock` (relative to the recipe) whose crates.io packages are
    /// vendored ([`crate::cargo_vendor`]).
    pub cargo_lock: Option<PathBuf>,
    /// Listed in the manifest's `app_sources` (Procfile semantics).
    #[serde(default)]
    pub app_source: bool,
}

/// What kind of source a [`Source`] is, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind<'a> {
    Git { url: &'a str, rev: &'a str },
    Path { path: &'a Path, ignore: &'a [String] },
    Url { url: &'a str, sha256: Digest, unpack: bool },
    CargoLock { path: &'a Path },
}

impl Source {
    /// The validated kind; the recipe loader has already checked it is well formed.
    pub fn kind(&self) -> SourceKind<'_> {
        match (&self.git, &self.path, &self.url, &self.cargo_lock) {
            (Some(url), None, None, None) => {
                SourceKind::Git { url, rev: self.rev.as_deref().unwrap_or("HEAD") }
            }
            (None, Some(path), None, None) => SourceKind::Path { path, ignore: &self.ignore },
            (None, None, Some(url), None) => SourceKind::Url {
                url,
                sha256: self.sha256.expect("validated: url sources carry sha256"),
                unpack: self.unpack,
            },
            (None, None, None, Some(path)) => SourceKind::CargoLock { path },
            _ => unreachable!("validated: exactly one of git, path, url, cargo_lock"),
        }
    }
}

/// One build step, run in a sandbox made from `image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// A key of `[images]`. May be empty only for a root step whose `root`
    /// is `scratch` or `step:NAME` (it runs the recipe's arch).
    #[serde(default)]
    pub image: String,
    /// Mount point in the sandbox -> source name (read-only), or `step:NAME`
    /// for the `/out` of an earlier step.
    #[serde(default)]
    pub mounts: BTreeMap<String, String>,
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Shell script run with `/bin/sh -euc`; a root step may have none
    /// (it only copies).
    #[serde(default)]
    pub run: String,
    /// Extra environment, on top of the fixed one (SOURCE_DATE_EPOCH, TZ=UTC, LC_ALL=C, …).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Path under `/out` -> path in the enclave root filesystem.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// A fetch step: the only kind that reaches a network (the outside
    /// world, never the host's loopback). `eifbake lock` runs it once and
    /// pins the hash of its `/out`; builds take that tree from the store or
    /// run it again and refuse any other result.
    #[serde(default, skip_serializing_if = "is_false")]
    pub network: bool,
    /// A root step (what a Containerfile instruction becomes): the step
    /// runs in this root filesystem, writable, and what it leaves there is
    /// its output (its `/out` for `outputs`, mounts and later steps):
    /// `image` (a fresh copy of its image), `scratch` (empty) or
    /// `step:NAME` (a copy of an earlier root step's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Root steps only: files copied into the root before `run`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<CopyOp>,
    /// Root steps only: `UID:GID` the script runs as (default 0:0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One copy into a root step's root filesystem, done by eifbake (not by a
/// program of the image) before the step's script runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOp {
    /// `source:NAME`, `step:NAME` (an earlier root step's output) or
    /// `image:NAME`; absent: make the directory `dst` (WORKDIR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Paths inside `from`, resolved inside it (symlinks never leave it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<String>,
    /// Absolute path in the root; ending in `/` (or with several `src`):
    /// the directory the sources go into.
    pub dst: String,
    /// Octal mode of everything copied; absent: as in `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Refuse a source that is an archive (a Containerfile's local `ADD`
    /// would unpack it; eifbake does not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_archives: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_workdir() -> String {
    "/".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One ramdisk, init at `/init`, the root filesystem at `/` (nit, QuorumOS).
    /// PCR0 and PCR1 measure it; PCR2 (the ramdisks after the first) is then a
    /// constant, the same for every single-ramdisk EIF: pinning it pins nothing.
    #[default]
    Single,
    /// nitro-cli's two ramdisks: boot (`init`, `nsm.ko`, `dev/`) and user (`rootfs/`, `cmd`, `env`).
    /// PCR1 measures the boot ramdisk, PCR2 the user ramdisk (with the measured inputs).
    NitroCli,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// A file taken from a pinned image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// A key of `[images]`.
    pub image: String,
    /// Absolute path inside that image.
    pub path: String,
    /// The kernel's config (e.g. StageX's `/linux.config`), for the EIF metadata.
    #[serde(default)]
    pub config: Option<String>,
}

/// The enclave image to assemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enclave {
    #[serde(default)]
    pub layout: Layout,
    /// A key of `[images]` whose filesystem becomes the enclave's root (optional).
    #[serde(default)]
    pub rootfs: Option<String>,
    pub kernel: ImageFile,
    pub init: ImageFile,
    /// nitro-cli layout only: the NSM driver module for the boot ramdisk.
    #[serde(default)]
    pub nsm: Option<ImageFile>,
    pub cmdline: String,
    /// The program the init runs, as argv.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free-form labels (a Containerfile's `LABEL`s), measured with the settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_cpus")]
    pub cpus: u64,
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// vsock ports the application listens on (recorded in the manifest).
    #[serde(default)]
    pub ports: Vec<u32>,
    #[serde(default)]
    pub compression: Compression,
    /// Enclave path -> octal mode (`"4755"`), overriding the canonical 0755/0644.
    #[serde(default)]
    pub modes: BTreeMap<String, String>,
    /// `app_sources` URLs: measured in `inputs.enclave`, and listed with the
    /// URLs of sources marked `app_source` in the manifest's `origin`.
    #[serde(default)]
    pub app_sources: Vec<String>,
    /// Where the enclave's own platform code comes from (a Procfile's
    /// `enclave_sources`): measured, in the manifest's `inputs.enclave`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enclave_sources: Vec<String>,
    /// A free string (a Procfile's `metadata`), measured in `inputs.enclave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

fn default_cpus() -> u64 {
    2
}

fn default_memory() -> u64 {
    512
}

/// Where a recipe sits in its project: the one rule every command uses to
/// find the project root.
///
/// The recipe file is [`Recipe::resolve_path`] of the path given. The
/// project root is the parent of the nearest ancestor directory of that file
/// named `recipes`; a recipe under no `recipes/` directory has its own
/// directory as root. The rule is lexical: it reads the path as given,
/// follows no symlinks and makes nothing absolute, so `recipes/a.toml` has
/// the root `""` (the current directory, which joins as a relative prefix).
/// The default lockfile (`ROOT/lockfiles/NAME.lock`), the recipe path a
/// manifest records (relative to the root) and what `check` copies
/// (`ROOT/recipes/`) all follow from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The recipe file ([`Recipe::resolve_path`]).
    pub recipe_file: PathBuf,
    /// The project root (see above).
    pub root: PathBuf,
    /// Whether the recipe is under a `recipes/` directory (else `root` is
    /// the recipe's own directory).
    pub has_recipes_dir: bool,
}

impl Project {
    /// The project of the recipe at `recipe_path` (a file or a directory holding `recipe.toml`).
    pub fn of(recipe_path: &Path) -> Project {
        let recipe_file = Recipe::resolve_path(recipe_path);
        let recipes = recipe_file.ancestors().skip(1).find(|a| a.file_name().is_some_and(|n| n == "recipes"));
        let (dir, has_recipes_dir) = match recipes {
            Some(recipes) => (recipes.parent(), true),
            None => (recipe_file.parent(), false),
        };
        let root = dir.map(Path::to_path_buf).unwrap_or_default();
        Project { recipe_file, root, has_recipes_dir }
    }

    /// The recipe file relative to the root, `/`-separated (`recipes/a.toml`):
    /// the path a manifest records, never absolute, so the build path does not leak.
    pub fn recipe_relative(&self) -> String {
        let rel = self.recipe_file.strip_prefix(&self.root).unwrap_or(&self.recipe_file);
        let parts: Vec<String> =
            rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        parts.join("/")
    }
}

impl Recipe {
    /// Find the recipe file for a path: a `.toml` file, a directory holding
    /// `recipe.toml`, or a Containerfile ([`is_containerfile`]): the
    /// `recipe.toml` beside it (which names it with `containerfile`).
    pub fn resolve_path(path: &Path) -> PathBuf {
        if path.is_dir() {
            path.join("recipe.toml")
        } else if is_containerfile(path) {
            path.parent().unwrap_or(Path::new("")).join("recipe.toml")
        } else {
            path.to_path_buf()
        }
    }

    /// Read, parse and validate a recipe file (lowering the Containerfile it
    /// names, if any); returns it with the sha256 that pins it: of its
    /// bytes, or, with a Containerfile, of both files ([`pinned_digest`]).
    pub fn load(path: &Path) -> Result<(Recipe, Digest)> {
        let path = Self::resolve_path(path);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read recipe {}", path.display()))?;
        let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8", path.display()))?;
        let cf = Self::containerfile_of(text, &path)?;
        let recipe = Self::parse_with(text, cf.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
            .with_context(|| format!("invalid recipe {}", path.display()))?;
        Ok((recipe, pinned_digest(&bytes, cf.as_ref().map(|(_, t)| t.as_str()))))
    }

    /// The Containerfile a recipe's text names (its path as given, joined
    /// to the recipe's directory, and its text); `None` when it names none.
    pub fn containerfile_of(text: &str, recipe_file: &Path) -> Result<Option<(PathBuf, String)>> {
        #[derive(Deserialize)]
        struct Named {
            containerfile: Option<PathBuf>,
        }
        let Ok(Named { containerfile: Some(rel) }) = toml::from_str::<Named>(text) else { return Ok(None) };
        relative_file("containerfile", &rel)?;
        let file = Self::base_dir(recipe_file).join(&rel);
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "recipe {}: containerfile = {:?}: cannot read {}",
                recipe_file.display(),
                rel,
                file.display()
            )
        })?;
        Ok(Some((file, text)))
    }

    /// Parse and validate recipe text.
    pub fn parse(text: &str) -> Result<Recipe> {
        Self::parse_with(text, None)
    }

    /// Parse recipe text, lower the Containerfile it names (`containerfile`:
    /// its path, for errors, and its text), and validate the result.
    pub fn parse_with(text: &str, containerfile: Option<(&Path, &str)>) -> Result<Recipe> {
        let mut recipe: Recipe =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        match (&recipe.containerfile, containerfile) {
            (Some(rel), Some((file, cf_text))) => {
                relative_file("containerfile", rel)?;
                if let Some(ctx) = &recipe.containerfile_context {
                    context_dir(ctx)?;
                }
                for (i, p) in recipe.containerfile_only.iter().enumerate() {
                    abs(&format!("containerfile_only[{i}]"), p)?;
                }
                let name = file.display().to_string();
                let cf = crate::containerfile::Containerfile::parse(cf_text, &name)?;
                let rel = rel.clone();
                crate::containerfile::lower::lower(&mut recipe, &cf, &rel, &name)?;
            }
            (Some(rel), None) => {
                bail!("containerfile = {rel:?}: the Containerfile's text is needed to read this recipe")
            }
            (None, _) if !recipe.build_args.is_empty() => {
                bail!("build_args: only a recipe with `containerfile` takes build arguments")
            }
            (None, _) if recipe.containerfile_context.is_some() || !recipe.containerfile_only.is_empty() => {
                bail!(
                    "containerfile_context and containerfile_only: only a recipe with `containerfile` takes them"
                )
            }
            (None, _) => {}
        }
        recipe.validate()?;
        Ok(recipe)
    }

    /// The directory relative paths in the recipe are resolved against.
    pub fn base_dir(recipe_path: &Path) -> PathBuf {
        let p = Self::resolve_path(recipe_path);
        p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    /// The reference of image `name` (a key of `[images]`).
    pub fn image_reference(&self, name: &str) -> &str {
        self.images[name].reference()
    }

    /// The platform image `name` is pinned for: its own `platform`, else
    /// `linux/<arch>` of the recipe.
    pub fn image_platform(&self, name: &str) -> crate::platform::Platform {
        match &self.images[name] {
            ImageEntry::Table(ImageTable { platform: Some(p), .. }) => p.clone(),
            _ => crate::platform::Platform::linux(self.arch),
        }
    }

    /// The signature policy of image `name` ([`Trust`]), `None` when it has none.
    pub fn image_trust(&self, name: &str) -> Option<ImageTrust> {
        self.trust.as_ref().and_then(|t| t.resolve(name).expect("validated: complete trust policies"))
    }

    /// Mode overrides parsed to numbers.
    pub fn mode_overrides(&self) -> BTreeMap<String, u32> {
        self.enclave
            .modes
            .iter()
            .map(|(p, m)| (p.clone(), u32::from_str_radix(m, 8).expect("validated octal mode")))
            .collect()
    }

    /// Check what parsing cannot: one function per table, in this order.
    fn validate(&self) -> Result<()> {
        self.limits.validate()?;
        self.validate_signing()?;
        self.validate_names_and_images()?;
        self.validate_trust()?;
        self.validate_sources()?;
        self.validate_steps()?;
        self.validate_enclave()?;
        self.validate_report()
    }

    /// `report`: normal absolute paths other than `/`, each named once.
    fn validate_report(&self) -> Result<()> {
        for (i, path) in self.report.iter().enumerate() {
            abs(&format!("report[{i}]"), path)?;
            if path == "/" {
                bail!(
                    "report[{i}] = \"/\": name files in the enclave's root filesystem, not the root itself"
                );
            }
            if self.report[..i].contains(path) {
                bail!("report[{i}] = {path:?}: named twice; remove one");
            }
        }
        Ok(())
    }

    /// `[trust]`: per-image tables name images, every image's policy is complete.
    fn validate_trust(&self) -> Result<()> {
        let Some(t) = &self.trust else { return Ok(()) };
        for name in t.images.keys() {
            self.require_image(&format!("trust.images key {name:?}"), name)?;
        }
        for name in self.images.keys() {
            t.resolve(name)?;
        }
        Ok(())
    }

    /// `[signing]`: non-empty paths.
    fn validate_signing(&self) -> Result<()> {
        if let Some(sg) = &self.signing {
            if sg.certificate.as_os_str().is_empty() {
                bail!("signing.certificate: expected the path of a PEM certificate, relative to the recipe");
            }
            if sg.key.as_deref().is_some_and(str::is_empty) {
                bail!("signing.key: expected the path of a PEM private key; leave it out to give it with --private-key");
            }
            // The recipe's text goes into the manifest, which is published.
            if sg.key.as_deref().is_some_and(|k| k.starts_with("pkcs11:") && k.contains("pin-value=")) {
                bail!(
                    "signing.key: a pkcs11: URI with pin-value would publish the PIN (the recipe's text is \
                     recorded in the manifest); remove pin-value and give the PIN with --pin-file or \
                     $EIFBAKE_PKCS11_PIN"
                );
            }
        }
        Ok(())
    }

    /// `name`, the `[images]` and `[sources]` keys (they become file names),
    /// and the image references.
    fn validate_names_and_images(&self) -> Result<()> {
        path_name("name", &self.name)?;
        for key in self.images.keys() {
            path_name("images key", key)?;
        }
        for key in self.sources.keys() {
            path_name("sources key", key)?;
        }
        for (key, entry) in &self.images {
            let reference = entry.reference();
            if reference.trim().is_empty() || reference.contains(char::is_whitespace) {
                bail!("images.{key} = {reference:?}: expected an OCI reference such as \"stagex/core-busybox:sx2026.03.0\"");
            }
            if let ImageEntry::Table(ImageTable { platform: Some(p), .. }) = entry {
                if *p != crate::platform::Platform::linux(p.arch) {
                    bail!("images.{key}.platform = \"{p}\": expected \"linux/amd64\" or \"linux/arm64\"");
                }
            }
        }
        Ok(())
    }

    /// `field` names an image of `[images]` whose files go into the enclave,
    /// so it must be for the recipe's `arch`.
    fn require_enclave_image(&self, field: &str, name: &str) -> Result<()> {
        self.require_image(field, name)?;
        let (platform, want) = (self.image_platform(name), crate::platform::Platform::linux(self.arch));
        if platform != want {
            bail!(
                "{field} = {name:?}: images.{name} is for {platform}, but the enclave is {want} \
                 (arch = \"{}\"); only steps may use an image of another platform",
                self.arch
            );
        }
        Ok(())
    }

    /// `field` names an image of `[images]`.
    fn require_image(&self, field: &str, name: &str) -> Result<()> {
        if !self.images.contains_key(name) {
            bail!(
                "{field} = {name:?}: no image of that name in [images] (defined: {})",
                names(self.images.keys())
            );
        }
        Ok(())
    }

    /// `[sources]`: exactly one kind each, with only that kind's keys.
    fn validate_sources(&self) -> Result<()> {
        for (key, src) in &self.sources {
            let kinds = [src.git.is_some(), src.path.is_some(), src.url.is_some(), src.cargo_lock.is_some()];
            if kinds.iter().filter(|b| **b).count() != 1 {
                bail!("sources.{key}: give exactly one of `git`, `path`, `url` or `cargo_lock`");
            }
            if let Some(p) = &src.cargo_lock {
                relative_file(&format!("sources.{key}.cargo_lock"), p)?;
            }
            if src.rev.is_some() && src.git.is_none() {
                bail!("sources.{key}.rev: only git sources take a rev");
            }
            if src.url.is_some() && src.sha256.is_none() {
                bail!("sources.{key}: a url source needs `sha256 = \"sha256:…\"` so the download is pinned");
            }
            if src.url.is_none() && (src.sha256.is_some() || src.unpack) {
                bail!("sources.{key}: `sha256` and `unpack` belong to url sources");
            }
            if !src.ignore.is_empty() && src.path.is_none() {
                bail!("sources.{key}.ignore: only path sources take an ignore list");
            }
        }
        Ok(())
    }

    /// `[[steps]]`: each step ([`Recipe::validate_step`], against the names of
    /// the steps before it), then that each reaches the enclave.
    fn validate_steps(&self) -> Result<()> {
        let mut step_names: Vec<&str> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            self.validate_step(i, step, &step_names)?;
            step_names.push(&step.name);
        }
        for (i, step) in self.steps.iter().enumerate() {
            let named = |m: &str| m.strip_prefix("step:") == Some(&step.name);
            let used_later = self.steps[i + 1..].iter().any(|s| {
                s.mounts.values().any(|m| named(m))
                    || s.root.as_deref().is_some_and(named)
                    || s.copy.iter().any(|c| c.from.as_deref().is_some_and(named))
            });
            if step.outputs.is_empty() && !used_later {
                bail!(
                    "steps[{i}] ({:?}): has no outputs and no later step mounts it, so nothing it builds reaches the enclave; \
                     add outputs = {{ \"/out/FILE\" = \"/PATH/IN/ENCLAVE\" }}",
                    step.name
                );
            }
        }
        Ok(())
    }

    /// One step: a unique file-name-safe name, a known image, mounts of
    /// sources or earlier steps (never over /out), absolute paths, outputs
    /// under /out.
    fn validate_step(&self, i: usize, step: &Step, step_names: &[&str]) -> Result<()> {
        let at = format!("steps[{i}] ({:?})", step.name);
        path_name(&format!("steps[{i}].name"), &step.name)?;
        if step_names.contains(&step.name.as_str()) {
            bail!("{at}.name: step names must be unique");
        }
        match step.root.as_deref() {
            Some("image") | None => self.require_image(&format!("{at}.image"), &step.image)?,
            Some(_) if step.image.is_empty() => {}
            Some(_) => self.require_enclave_image(&format!("{at}.image"), &step.image)?,
        }
        self.validate_root_step(&at, step, step_names)?;
        for (mount, what) in &step.mounts {
            abs(&format!("{at}.mounts key"), mount)?;
            if mount == "/out" || mount.starts_with("/out/") {
                bail!("{at}.mounts.{mount:?}: /out is the step's fresh output directory and cannot be mounted over");
            }
            if let Some(prev) = what.strip_prefix("step:") {
                if !step_names.contains(&prev) {
                    bail!("{at}.mounts.{mount:?} = {what:?}: no earlier step named {prev:?}");
                }
            } else if !self.sources.contains_key(what) {
                bail!(
                    "{at}.mounts.{mount:?} = {what:?}: no source of that name in [sources] (defined: {})",
                    names(self.sources.keys())
                );
            }
        }
        abs(&format!("{at}.workdir"), &step.workdir)?;
        step_env(&at, &step.env)?;
        for (from, to) in &step.outputs {
            if from != "/out" && !from.starts_with("/out/") {
                bail!("{at}.outputs key {from:?}: outputs are paths under /out");
            }
            abs(&format!("{at}.outputs key"), from)?;
            abs(&format!("{at}.outputs.{from:?}"), to)?;
        }
        Ok(())
    }

    /// A root step's `root`, `copy` and `user` (and that other steps have none).
    fn validate_root_step(&self, at: &str, step: &Step, step_names: &[&str]) -> Result<()> {
        let Some(root) = &step.root else {
            if !step.copy.is_empty() || step.user.is_some() {
                bail!("{at}: `copy` and `user` belong to root steps (with `root = …`)");
            }
            if step.run.trim().is_empty() {
                bail!("{at}.run: give the script the step runs");
            }
            return Ok(());
        };
        let earlier_root_step = |name: &str| {
            step_names.contains(&name) && self.steps.iter().any(|s| s.name == name && s.root.is_some())
        };
        match root.strip_prefix("step:") {
            Some(prev) if earlier_root_step(prev) => {}
            Some(prev) => bail!("{at}.root = {root:?}: no earlier root step named {prev:?}"),
            None if root == "scratch" || root == "image" => {}
            None => bail!("{at}.root = {root:?}: expected \"image\", \"scratch\" or \"step:NAME\""),
        }
        if step.network && step.run.trim().is_empty() {
            bail!("{at}: a fetch step (network = true) needs a script");
        }
        for (j, c) in step.copy.iter().enumerate() {
            let cat = format!("{at}.copy[{j}]");
            let dst = c.dst.trim_end_matches('/');
            abs(&format!("{cat}.dst"), if dst.is_empty() { "/" } else { dst })?;
            if let Some(m) = &c.mode {
                if !matches!(u32::from_str_radix(m, 8), Ok(v) if v <= 0o7777) {
                    bail!("{cat}.mode = {m:?}: expected an octal mode such as \"0755\"");
                }
            }
            let Some(from) = &c.from else {
                if !c.src.is_empty() {
                    bail!("{cat}: `src` needs `from`");
                }
                continue;
            };
            if c.src.is_empty() {
                bail!("{cat}.src: name what to copy from {from:?}");
            }
            match from.split_once(':') {
                Some(("source", n)) if self.sources.contains_key(n) => {}
                Some(("image", n)) if self.images.contains_key(n) => {}
                Some(("step", n)) if earlier_root_step(n) => {}
                _ => bail!(
                    "{cat}.from = {from:?}: expected source:NAME, image:NAME or step:NAME (an earlier root step) \
                     naming one the recipe has"
                ),
            }
        }
        if let Some(u) = &step.user {
            let ok =
                u.split_once(':').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            if !ok {
                bail!("{at}.user = {u:?}: expected numeric \"UID:GID\"");
            }
        }
        Ok(())
    }

    /// `[enclave]`: known images, absolute paths, nsm only for nitro-cli, a
    /// command, a one-line cmdline, positive sizes, env and modes.
    fn validate_enclave(&self) -> Result<()> {
        let e = &self.enclave;
        self.require_enclave_image("enclave.kernel.image", &e.kernel.image)?;
        abs("enclave.kernel.path", &e.kernel.path)?;
        if let Some(c) = &e.kernel.config {
            abs("enclave.kernel.config", c)?;
        }
        self.require_enclave_image("enclave.init.image", &e.init.image)?;
        abs("enclave.init.path", &e.init.path)?;
        if let Some(r) = &e.rootfs {
            self.require_enclave_image("enclave.rootfs", r)?;
        }
        match (&e.nsm, e.layout) {
            (Some(nsm), Layout::NitroCli) => {
                self.require_enclave_image("enclave.nsm.image", &nsm.image)?;
                abs("enclave.nsm.path", &nsm.path)?;
            }
            (Some(_), Layout::Single) => {
                bail!("enclave.nsm: only the nitro-cli layout has a boot ramdisk for nsm.ko")
            }
            (None, _) => {}
        }
        if e.command.is_empty() {
            bail!("enclave.command: give the program to run, e.g. command = [\"/usr/bin/hello\"]");
        }
        if e.cmdline.contains('\0') || e.cmdline.contains('\n') {
            bail!("enclave.cmdline: must be one line without NUL bytes");
        }
        if e.cpus == 0 || e.memory_mib == 0 {
            bail!("enclave.cpus and enclave.memory_mib must be positive");
        }
        for (k, v) in &e.env {
            if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
                bail!("enclave.env.{k}: names cannot be empty or contain '=' or newlines; values cannot contain newlines");
            }
        }
        for (path, mode) in &e.modes {
            abs(&format!("enclave.modes key {path:?}"), path)?;
            match u32::from_str_radix(mode, 8) {
                Ok(m) if m <= 0o7777 && !mode.is_empty() => {}
                _ => bail!("enclave.modes.{path:?} = {mode:?}: expected an octal mode such as \"0755\""),
            }
        }
        Ok(())
    }
}

/// Whether `path` names a Containerfile rather than a recipe: a file called
/// `Containerfile` or `Dockerfile`, or ending in `.Containerfile` or `.Dockerfile`.
pub fn is_containerfile(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ["Containerfile", "Dockerfile"].iter().any(|c| name == *c || name.ends_with(&format!(".{c}")))
}

/// The sha256 a lock pins a recipe by: of its bytes alone, or, for a
/// recipe with a Containerfile, of both (an edit of either needs `lock`).
pub fn pinned_digest(recipe: &[u8], containerfile: Option<&str>) -> Digest {
    match containerfile {
        None => Digest::of(recipe),
        Some(cf) => {
            let mut b = recipe.to_vec();
            b.extend_from_slice(b"\0eifbake-containerfile\0");
            b.extend_from_slice(cf.as_bytes());
            Digest::of(&b)
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The longest name [`path_name`] accepts.
pub const NAME_MAX: usize = 64;

/// A recipe-given name that becomes one host path component (the recipe's
/// `name`, image, source and step names: `out/NAME.eif`, scratch and log
/// directories): 1 to [`NAME_MAX`] of `[A-Za-z0-9._-]`, starting with a
/// letter or digit, so never `.`, `..`, empty, absolute or hidden.
fn path_name(field: &str, name: &str) -> Result<()> {
    let ok = (1..=NAME_MAX).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!(
            "{field} = {name:?}: names become file names; use 1 to {NAME_MAX} letters, digits, \
             '.', '_' and '-', starting with a letter or digit"
        );
    }
    Ok(())
}

/// The path of a file relative to the recipe's directory (`..` allowed:
/// a project's `Cargo.lock` often sits above its recipes): non-empty, not
/// absolute, without NUL bytes or a trailing `/`.
fn relative_file(field: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() || text.ends_with('/') || text.contains('\0') || path.is_absolute() {
        bail!("{field} = {text:?}: expected the path of a file, relative to the recipe's directory");
    }
    Ok(())
}

/// `containerfile_context`: a directory relative to the recipe's
/// directory (`.` for the recipe's own), without NUL bytes.
fn context_dir(path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() || text.contains('\0') || path.is_absolute() {
        bail!(
            "containerfile_context = {text:?}: expected a directory relative to the recipe's directory \
             (\".\" for its own)"
        );
    }
    Ok(())
}

/// A normal absolute path: `/`, or `/` followed by non-empty components
/// that are neither `.` nor `..`, without NUL bytes (no trailing `/`).
fn abs(field: &str, path: &str) -> Result<()> {
    let normal = match path.strip_prefix('/') {
        Some("") => true,
        Some(rest) => rest.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        None => false,
    };
    if !normal || path.contains('\0') {
        bail!("{field} = {path:?}: expected a normal absolute path (no '.', '..' or empty components)");
    }
    Ok(())
}

/// A step's `env`: well-formed names, none of the variables every step gets
/// fixed ([`crate::sandbox::fixed_env`]).
fn step_env(at: &str, env: &BTreeMap<String, String>) -> Result<()> {
    let fixed = crate::sandbox::fixed_env(Epoch(0));
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            bail!("{at}.env.{k}: names cannot be empty or contain '=' or NUL; values cannot contain NUL");
        }
        if fixed.contains_key(k) {
            bail!(
                "{at}.env.{k}: {k} is fixed by eifbake in every step ({}); remove it, or set it \
                 inside the step's run script",
                names(fixed.keys())
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_project_root_rule_for_lockfiles_manifests_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("recipes/hello")).unwrap();
        std::fs::write(p.join("recipes/hello/recipe.toml"), "").unwrap();
        // (path given, root, under recipes/, what a manifest records)
        let abs = p.join("recipes/hello");
        let cases: Vec<(PathBuf, PathBuf, bool, &str)> = vec![
            ("recipes/a.toml".into(), "".into(), true, "recipes/a.toml"),
            ("./recipes/a.toml".into(), ".".into(), true, "recipes/a.toml"),
            ("proj/recipes/sub/a.toml".into(), "proj".into(), true, "recipes/sub/a.toml"),
            // The nearest `recipes` wins.
            ("recipes/x/recipes/a.toml".into(), "recipes/x".into(), true, "recipes/a.toml"),
            // A directory is its recipe.toml.
            (abs.clone(), p.to_path_buf(), true, "recipes/hello/recipe.toml"),
            // Outside recipes/: the recipe's own directory.
            ("elsewhere/a.toml".into(), "elsewhere".into(), false, "a.toml"),
            ("a.toml".into(), "".into(), false, "a.toml"),
            // A file named `recipes` is not a directory of recipes.
            ("x/recipes".into(), "x".into(), false, "recipes"),
        ];
        for (given, root, under, recorded) in cases {
            let pr = Project::of(&given);
            assert_eq!((&pr.root, pr.has_recipes_dir), (&root, under), "{}", given.display());
            assert_eq!(pr.recipe_relative(), recorded, "{}", given.display());
            assert_eq!(
                crate::lock::Lock::default_path(&given, "n"),
                root.join("lockfiles/n.lock"),
                "{}",
                given.display()
            );
        }
        assert_eq!(Project::of(&abs).recipe_file, abs.join("recipe.toml"));
    }

    pub(crate) const HELLO: &str = r#"
name = "hello"
version = "0.1.0"
source_date_epoch = 1

[images]
busybox = "stagex/core-busybox:sx2026.03.0"
kernel  = "stagex/user-linux-nitro:sx2026.03.0"
init    = "stagex/user-nit:sx2026.03.0"

[sources.app]
path = "app"
app_source = true

[[steps]]
name = "compile"
image = "busybox"
mounts = { "/src/app" = "app" }
workdir = "/src/app"
run = "cp hello.sh /out/hello"
outputs = { "/out/hello" = "/usr/bin/hello" }

[enclave]
rootfs = "busybox"
kernel = { image = "kernel", path = "/bzImage", config = "/linux.config" }
init = { image = "init", path = "/usr/bin/init" }
cmdline = "console=ttyS0"
command = ["/usr/bin/hello"]
env = { RUST_LOG = "info" }
"#;

    /// `[trust]` and `[trust.images.NAME]`: what they accept, how an image's
    /// policy is resolved key by key, the exact errors for keys they do not
    /// know, and the TOML a parsed `[trust]` writes back.
    #[test]
    fn trust_tables_resolve_key_by_key_and_refuse_unknown_keys() {
        let with = |trust: &str| format!("{HELLO}\n{trust}");
        let r = Recipe::parse(&with(
            "[trust]\nkeyring = \"k.asc\"\nthreshold = 2\nlookaside = \"https://sigs.example\"\n\
             [trust.images.kernel]\nthreshold = 1\nlookaside = \"sigs\"\n",
        ))
        .unwrap();
        let policy = |keyring: &str, threshold, lookaside: &str| {
            Some(ImageTrust { keyring: keyring.into(), threshold, lookaside: lookaside.into() })
        };
        assert_eq!(r.image_trust("busybox"), policy("k.asc", 2, "https://sigs.example"));
        assert_eq!(r.image_trust("kernel"), policy("k.asc", 1, "sigs"));
        let written = toml::to_string(r.trust.as_ref().unwrap()).unwrap();
        assert_eq!(
            written,
            "keyring = \"k.asc\"\nthreshold = 2\nlookaside = \"https://sigs.example\"\n\n\
             [images.kernel]\nthreshold = 1\nlookaside = \"sigs\"\n"
        );
        // Only one image checked: the others have no policy.
        let r = Recipe::parse(&with(
            "[trust.images.init]\nkeyring = \"k.asc\"\nthreshold = 1\nlookaside = \"sigs\"\n",
        ))
        .unwrap();
        assert_eq!((r.image_trust("init"), r.image_trust("busybox")), (policy("k.asc", 1, "sigs"), None));
        let err = |t: &str| format!("{:#}", Recipe::parse(&with(t)).unwrap_err());
        // The parse errors, to the caret (the line numbers depend on HELLO).
        let caret = |line: &str, at: usize, n: usize, why: &str| {
            format!("| {line}\n   | {}{}\n{why}", " ".repeat(at), "^".repeat(n))
        };
        let known = "expected one of `keyring`, `threshold`, `lookaside`";
        for (bad, want) in [
            (
                "[trust]\nkeyring = \"k.asc\"\nthreshold = 1\nlookasid = \"x\"\n",
                caret("lookasid = \"x\"", 0, 8, &format!("unknown field `lookasid`, {known}, `images`")),
            ),
            (
                "[trust.images.init]\nthreshhold = 1\n",
                caret("threshhold = 1", 0, 10, &format!("unknown field `threshhold`, {known}")),
            ),
            (
                "[trust]\nthreshold = \"2\"\n",
                caret("threshold = \"2\"", 12, 3, "invalid type: string \"2\", expected u32"),
            ),
            (
                "[trust.images.init]\nthreshold = -1\n",
                caret("threshold = -1", 12, 2, "invalid value: integer `-1`, expected u32"),
            ),
            (
                "[trust]\nthreshold = 1\n",
                "trust: image \"busybox\" has a signature policy without `keyring`; set trust.keyring \
                 (or trust.images.busybox.keyring): keyring, threshold and lookaside go together"
                    .into(),
            ),
            (
                "[trust.images.nope]\nthreshold = 1\n",
                "trust.images key \"nope\" = \"nope\": no image of that name in [images] \
                 (defined: busybox, init, kernel)"
                    .into(),
            ),
        ] {
            let e = err(bad);
            assert!(e.ends_with(&want), "{bad:?}:\n{e}\nwant the end:\n{want}");
        }
    }

    #[test]
    fn root_steps_are_checked_when_read() {
        let with = |step: &str| HELLO.replace("[enclave]", &format!("{step}\n[enclave]"));
        let ok = with(
            "[[steps]]\nname = \"r1\"\nimage = \"busybox\"\nroot = \"image\"\nrun = \"true\"\n\
             [[steps]]\nname = \"r2\"\nroot = \"step:r1\"\nuser = \"5:0\"\noutputs = { \"/out\" = \"/\" }\n\
             copy = [{ from = \"source:app\", src = [\"a\"], dst = \"/x/\", mode = \"0644\" }, { dst = \"/w\" }]\n",
        );
        Recipe::parse(&ok).unwrap();
        for (bad, want) in [
            (ok.replace("root = \"step:r1\"", "root = \"step:compile\""), "no earlier root step named \"compile\""),
            (ok.replace("root = \"step:r1\"", "root = \"host\""), "expected \"image\", \"scratch\" or \"step:NAME\""),
            (ok.replace("source:app", "source:nope"), "copy[0].from = \"source:nope\""),
            (ok.replace("user = \"5:0\"", "user = \"root\""), "expected numeric \"UID:GID\""),
            (ok.replace("mode = \"0644\"", "mode = \"rwx\""), "copy[0].mode"),
            (ok.replace("dst = \"/w\"", "dst = \"w/../..\""), "copy[1].dst"),
            (with("[[steps]]\nname = \"r\"\nimage = \"busybox\"\nrun = \"true\"\nuser = \"1:1\"\noutputs = { \"/out\" = \"/\" }\n"), "belong to root steps"),
            (with("[[steps]]\nname = \"r\"\nimage = \"busybox\"\noutputs = { \"/out\" = \"/\" }\n"), "run: give the script"),
        ] {
            let e = err(&bad);
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn parses_the_sketch() {
        let r = Recipe::parse(HELLO).unwrap();
        assert_eq!(r.name, "hello");
        assert_eq!(r.source_date_epoch, Some(Epoch(1)));
        assert_eq!(r.enclave.layout, Layout::Single);
        assert_eq!(r.steps[0].outputs["/out/hello"], "/usr/bin/hello");
        assert!(matches!(r.sources["app"].kind(), SourceKind::Path { .. }));
    }

    fn err(text: &str) -> String {
        format!("{:#}", Recipe::parse(text).unwrap_err())
    }

    #[test]
    fn network_is_off_unless_a_step_asks_and_only_as_a_bool() {
        assert!(!Recipe::parse(HELLO).unwrap().steps[0].network);
        let fetch = HELLO.replace("workdir = \"/src/app\"", "workdir = \"/src/app\"\nnetwork = true");
        assert!(Recipe::parse(&fetch).unwrap().steps[0].network);
        let e = err(&HELLO.replace("workdir = \"/src/app\"", "workdir = \"/src/app\"\nnetwork = \"host\""));
        assert!(e.contains("network"), "{e}");
        // An ordinary step serialises as before (no `network` key).
        let r = Recipe::parse(HELLO).unwrap();
        assert!(!toml::to_string(&r.steps[0]).unwrap().contains("network"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = err(&HELLO.replace("cpus_typo", "").replace("cmdline = ", "cpu = 2\ncmdline = "));
        assert!(e.contains("unknown field `cpu`"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn missing_and_mistyped_keys() {
        let e = err(&HELLO.replace("command = [\"/usr/bin/hello\"]\n", ""));
        // Optional in TOML (a Containerfile's ENTRYPOINT/CMD can give it), required after.
        assert!(e.contains("enclave.command: give the program to run"), "{e}");
        let e = err(&HELLO.replace("source_date_epoch = 1", "source_date_epoch = \"yesterday\""));
        assert!(e.contains("source_date_epoch"), "{e}");
    }

    #[test]
    fn dangling_names() {
        let e = err(&HELLO.replace("image = \"busybox\"", "image = \"rustc\""));
        assert!(e.contains("steps[0] (\"compile\").image = \"rustc\""), "{e}");
        let e = err(&HELLO.replace("\"/src/app\" = \"app\"", "\"/src/app\" = \"nope\""));
        assert!(e.contains("no source of that name"), "{e}");
        let e =
            err(&HELLO.replace("\"/out/hello\" = \"/usr/bin/hello\"", "\"/tmp/hello\" = \"/usr/bin/hello\""));
        assert!(e.contains("outputs are paths under /out"), "{e}");
    }

    #[test]
    fn a_step_whose_work_reaches_nothing_is_refused() {
        let e = err(&HELLO.replace("outputs = { \"/out/hello\" = \"/usr/bin/hello\" }", ""));
        assert!(e.contains("steps[0] (\"compile\"): has no outputs"), "{e}");
        let chained = HELLO.replace(
            "outputs = { \"/out/hello\" = \"/usr/bin/hello\" }",
            "\n[[steps]]\nname = \"pack\"\nimage = \"busybox\"\nmounts = { \"/in\" = \"step:compile\" }\nrun = \"cp /in/hello /out/\"\noutputs = { \"/out/hello\" = \"/usr/bin/hello\" }",
        );
        Recipe::parse(&chained).unwrap();
    }

    #[test]
    fn bad_modes_and_sources() {
        let e =
            err(&HELLO.replace("env = { RUST_LOG = \"info\" }", "modes = { \"/usr/bin/hello\" = \"rwx\" }"));
        assert!(e.contains("octal mode"), "{e}");
        let e = err(&HELLO.replace("path = \"app\"", "path = \"app\"\ngit = \"https://x\""));
        assert!(e.contains("exactly one of"), "{e}");
        let e = err(&HELLO.replace("path = \"app\"", "path = \"app\"\ncargo_lock = \"Cargo.lock\""));
        assert!(e.contains("exactly one of `git`, `path`, `url` or `cargo_lock`"), "{e}");
        for bad in ["", "/abs/Cargo.lock", "dir/"] {
            let e = err(&HELLO.replace("path = \"app\"", &format!("cargo_lock = {bad:?}")));
            assert!(
                e.contains(&format!("sources.app.cargo_lock = {bad:?}: expected the path of a file")),
                "{e}"
            );
        }
        let sha = Digest::of(b"");
        let e = err(
            &HELLO.replace("path = \"app\"", &format!("cargo_lock = \"Cargo.lock\"\nsha256 = \"{sha}\""))
        );
        assert!(e.contains("sources.app: `sha256` and `unpack` belong to url sources"), "{e}");
        let r = Recipe::parse(&HELLO.replace("path = \"app\"", "cargo_lock = \"../../Cargo.lock\"")).unwrap();
        assert_eq!(r.sources["app"].kind(), SourceKind::CargoLock { path: Path::new("../../Cargo.lock") });
    }

    /// Names become host path components (scratch, logs, `out/NAME.eif`):
    /// anything that could climb out or hide is refused, naming the key.
    #[test]
    fn names_used_as_paths_are_refused_at_parse_time() {
        for bad in ["../../x", "/abs", "..", ".", "", ".hidden", "a/b", "-opt", &"x".repeat(65)] {
            let e = err(&HELLO.replace("name = \"compile\"", &format!("name = {bad:?}")));
            assert!(e.contains(&format!("steps[0].name = {bad:?}")), "{bad:?}: {e}");
            let e = err(&HELLO.replace("name = \"hello\"", &format!("name = {bad:?}")));
            assert!(e.contains(&format!("name = {bad:?}: names become file names")), "{bad:?}: {e}");
        }
        let e = err(&HELLO.replace("init    = \"stagex", "\"../img\" = \"stagex"));
        assert!(e.contains("images key = \"../img\""), "{e}");
        let e = err(&HELLO.replace("[sources.app]", "[sources.\"..\"]"));
        assert!(e.contains("sources key = \"..\""), "{e}");
        Recipe::parse(&HELLO.replace("name = \"compile\"", "name = \"Compile-2.x_y\"")).unwrap();
    }

    /// Output keys are normal paths under /out, and enclave targets normal
    /// absolute paths: no `..`, `.` or empty components.
    #[test]
    fn output_paths_must_be_normal() {
        let out = "\"/out/hello\" = \"/usr/bin/hello\"";
        for bad in ["/out/../../../etc/hostname", "/out/./hello", "/out//hello", "/out/hello/", "/out/.."] {
            let e = err(&HELLO.replace(out, &format!("{bad:?} = \"/usr/bin/hello\"")));
            assert!(e.contains(&format!("outputs key = {bad:?}: expected a normal absolute path")), "{e}");
        }
        for bad in ["/usr/../etc/passwd", "/usr/./bin/hello", "usr/bin/hello", "/usr//bin"] {
            let e = err(&HELLO.replace(out, &format!("\"/out/hello\" = {bad:?}")));
            assert!(e.contains(&format!("outputs.\"/out/hello\" = {bad:?}")), "{e}");
        }
        let r = Recipe::parse(&HELLO.replace(out, "\"/out\" = \"/\"")).unwrap();
        assert_eq!(r.steps[0].outputs["/out"], "/");
    }

    /// The variables every step gets fixed are refused when the recipe is
    /// read, not when the step is about to run.
    #[test]
    fn fixed_step_env_is_refused_at_parse_time() {
        for key in crate::sandbox::fixed_env(Epoch(0)).keys() {
            let e = err(&HELLO.replace("run = ", &format!("env = {{ {key} = \"x\" }}\nrun = ")));
            assert!(e.contains(&format!("steps[0] (\"compile\").env.{key}: {key} is fixed")), "{e}");
        }
        let r = Recipe::parse(&HELLO.replace("run = ", "env = { CARGO_HOME = \"/tmp\" }\nrun = ")).unwrap();
        assert_eq!(r.steps[0].env["CARGO_HOME"], "/tmp");
        let e = err(&HELLO.replace("run = ", "env = { \"A=B\" = \"x\" }\nrun = "));
        assert!(e.contains("cannot be empty or contain '='"), "{e}");
    }

    #[test]
    fn report_paths_are_normal_absolute_and_unique() {
        assert!(Recipe::parse(HELLO).unwrap().report.is_empty());
        let with = |list: &str| format!("report = {list}\n{HELLO}");
        let r = Recipe::parse(&with("[\"/srv/www/index.html\", \"/usr/bin/hello\"]")).unwrap();
        assert_eq!(r.report, ["/srv/www/index.html", "/usr/bin/hello"]);
        for bad in ["srv/x", "/srv/../etc/passwd", "/srv//x", "/srv/./x", "/srv/x/"] {
            let e = err(&with(&format!("[{bad:?}]")));
            assert!(e.contains(&format!("report[0] = {bad:?}: expected a normal absolute path")), "{e}");
        }
        let e = err(&with("[\"/\"]"));
        assert!(e.contains("report[0] = \"/\": name files"), "{e}");
        let e = err(&with("[\"/a\", \"/a\"]"));
        assert!(e.contains("report[1] = \"/a\": named twice"), "{e}");
        let e = err(&with("\"/a\""));
        assert!(e.contains("report"), "{e}");
    }

    #[test]
    fn an_image_may_give_its_own_platform_for_steps_only() {
        use crate::platform::Platform;
        let r = Recipe::parse(HELLO).unwrap();
        assert_eq!(r.image_platform("busybox"), Platform::linux(Arch::X86_64));
        let cross = HELLO
            .replace("source_date_epoch = 1", "source_date_epoch = 1\narch = \"aarch64\"")
            .replace("image = \"busybox\"", "image = \"builder\"")
            .replace(
                "[sources.app]",
                "[images.builder]\nref = \"stagex/core-busybox:sx2026.03.0\"\nplatform = \"linux/amd64\"\n\n[sources.app]",
            );
        let r = Recipe::parse(&cross).unwrap();
        assert_eq!(r.image_platform("builder"), Platform::linux(Arch::X86_64));
        assert_eq!(r.image_platform("busybox"), Platform::linux(Arch::Aarch64));
        assert_eq!(r.image_reference("builder"), "stagex/core-busybox:sx2026.03.0");
        // Only steps: what becomes the enclave must be for the recipe's arch.
        let e = err(&cross.replace("rootfs = \"busybox\"", "rootfs = \"builder\""));
        assert!(
            e.contains("enclave.rootfs = \"builder\": images.builder is for linux/amd64, but the enclave is linux/arm64"),
            "{e}"
        );
        let e = err(&cross.replace("\"linux/amd64\"", "\"linux/arm64/v8\""));
        assert!(e.contains("images.builder.platform = \"linux/arm64/v8\": expected"), "{e}");
        let e = err(&cross.replace("\"linux/amd64\"", "\"linux/s390x\""));
        assert!(e.contains("platform") && e.contains("s390x"), "{e}");
        let e = err(&cross.replace("platform = ", "platfrom = "));
        assert!(e.contains("unknown field `platfrom`") && e.contains("line"), "{e}");
        let e = err(&cross.replace("ref = ", "reference = "));
        assert!(e.contains("reference"), "{e}");
        let e = err(&HELLO.replace("busybox = \"stagex/core-busybox:sx2026.03.0\"", "busybox = 3"));
        assert!(e.contains("an OCI reference, or a table"), "{e}");
    }

    #[test]
    fn limits_table() {
        assert_eq!(Recipe::parse(HELLO).unwrap().limits, Limits::default());
        let r = Recipe::parse(&format!(
            "{HELLO}\n[limits]\nmax_layer_expansion = 1000\nmax_image_bytes = 2147483648\n\
             max_entries = 5000\nmax_path_length = 1024\n"
        ))
        .unwrap();
        let o = r.limits.apply_options();
        assert_eq!(
            (o.max_layer_expansion, o.max_total_bytes, o.max_entries, o.max_path_length),
            (1000, 2 << 30, 5000, 1024)
        );
        let d = Limits::default().apply_options();
        assert_eq!(d.max_layer_expansion, crate::oci::layer::DEFAULT_MAX_LAYER_EXPANSION);
        let e = err(&format!("{HELLO}\n[limits]\nmax_layer_expansions = 10\n"));
        assert!(e.contains("unknown field `max_layer_expansions`") && e.contains("line"), "{e}");
        let e = err(&format!("{HELLO}\n[limits]\nmax_entries = \"lots\"\n"));
        assert!(e.contains("max_entries"), "{e}");
        let e = err(&format!("{HELLO}\n[limits]\nmax_image_bytes = -1\n"));
        assert!(e.contains("max_image_bytes"), "{e}");
        let e = err(&format!("{HELLO}\n[limits]\nmax_layer_expansion = 0\n"));
        assert!(e.contains("limits.max_layer_expansion = 0: expected an integer from 1 to 100000"), "{e}");
        let e = err(&format!("{HELLO}\n[limits]\nmax_image_bytes = 1000\n"));
        assert!(e.contains("limits.max_image_bytes = 1000"), "{e}");
    }

    #[test]
    fn containerfile_context_and_only_are_checked() {
        let base = "name = \"a\"\n[images]\nk = \"k@sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\
                    [enclave]\nkernel = { image = \"k\", path = \"/k\" }\ninit = { image = \"k\", path = \"/i\" }\ncmdline = \"c\"\n";
        let with = |top: &str| format!("{top}\n{base}");
        let cf = "FROM scratch\nCOPY x /\nCMD [\"/x\"]\n";
        let parse = |text: &str| {
            Recipe::parse_with(text, Some((Path::new("Containerfile"), cf))).map_err(|e| format!("{e:#}"))
        };
        let e =
            parse(&with("containerfile = \"Containerfile\"\ncontainerfile_context = \"/etc\"")).unwrap_err();
        assert!(e.contains("containerfile_context = \"/etc\": expected a directory relative"), "{e}");
        let e =
            parse(&with("containerfile = \"Containerfile\"\ncontainerfile_only = [\"app/x\"]")).unwrap_err();
        assert!(e.contains("containerfile_only[0] = \"app/x\": expected a normal absolute path"), "{e}");
        let e = parse(&with("containerfile = \"Containerfile\"\ncontainerfile_only = [\"/a/../../x\"]"))
            .unwrap_err();
        assert!(e.contains("containerfile_only[0]"), "{e}");
        let e = err(&with("containerfile_only = [\"/x\"]"));
        assert!(e.contains("only a recipe with `containerfile` takes them"), "{e}");
        let r = parse(&with("containerfile = \"Containerfile\"\ncontainerfile_context = \"..\"")).unwrap();
        assert_eq!(r.sources["context"].path.as_deref(), Some(Path::new("..")));
        let r = parse(&with("containerfile = \"sub/Containerfile\"")).unwrap();
        assert_eq!(r.sources["context"].path.as_deref(), Some(Path::new("sub")), "default: its directory");
    }

    #[test]
    fn signing_table() {
        let r = Recipe::parse(&format!("{HELLO}\n[signing]\ncertificate = \"keys/cert.pem\"\n")).unwrap();
        let sg = r.signing.unwrap();
        assert_eq!(sg.certificate, Path::new("keys/cert.pem"));
        assert_eq!(sg.key, None);
        assert!(Recipe::parse(HELLO).unwrap().signing.is_none());
        let e = err(&format!("{HELLO}\n[signing]\ncertificate = \"c.pem\"\nkey_file = \"k.pem\"\n"));
        assert!(e.contains("unknown field `key_file`"), "{e}");
        let e = err(&format!("{HELLO}\n[signing]\ncertificate = \"\"\n"));
        assert!(e.contains("signing.certificate"), "{e}");
        let e = err(&format!("{HELLO}\n[signing]\nkey = \"k.pem\"\n"));
        assert!(e.contains("missing field `certificate`"), "{e}");
    }
}
