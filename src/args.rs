//! The command line, as clap derive types. Nothing here does any work: every
//! subcommand is turned into a call in [`crate::commands`].

use std::path::PathBuf;

use crate::platform::Arch;
use crate::sandbox::Runtime;

use clap::{Args, Parser, Subcommand};

/// Hermetic, reproducible builds of AWS Nitro Enclave images.
///
/// eifbake pins StageX OCI images by digest, builds in a sandbox with no
/// network, and writes bit-for-bit identical EIFs with their PCRs and a
/// manifest anyone can rebuild from.
///
/// Exit codes: 0 ok / same, 1 differs / not reproducible, 2 error.
/// SOURCE_DATE_EPOCH (integer seconds) fixes every timestamp written;
/// a malformed value is an error.
#[derive(Debug, Parser)]
#[command(name = "eifbake", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Content-addressed store (an OCI image layout). Default: $EIFBAKE_STORE,
    /// else the user cache directory (~/.cache/eifbake/store).
    #[arg(long, global = true, env = "EIFBAKE_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Never touch the network; fail naming any blob missing from the store.
    /// `lock --offline` resolves references from the store (see `store import --name`).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Ask registry TO before FROM for images of FROM (e.g. docker.io=127.0.0.1:5000;
    /// TO may end in /a/repository/prefix). Repeatable; tried in order, before those
    /// of the config file ($EIFBAKE_CONFIG, else ~/.config/eifbake/config.toml,
    /// `[[registry.mirror]] from = "…" to = "…"`), then FROM itself. Used by lock,
    /// fetch, build and verify. Content is verified by digest whoever serves it.
    #[arg(long, global = true, value_name = "FROM=TO")]
    pub registry_mirror: Vec<crate::config::Mirror>,
}

impl Global {
    /// The registry mirrors: `--registry-mirror` flags, then the config file's.
    pub fn mirrors(&self) -> anyhow::Result<Vec<crate::config::Mirror>> {
        crate::config::mirrors(&self.registry_mirror)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve every image of a recipe to digests and write lockfiles/NAME.lock.
    Lock(LockArgs),
    /// Pull every pinned manifest, config and layer into the store, verifying digests,
    /// and run the fetch steps (network = true) whose pinned output the store lacks.
    Fetch(RecipeLockArgs),
    /// Build a recipe into out/NAME.eif, .pcrs, .manifest.json and .provenance.json.
    ///
    /// Refuses inputs that are not pinned by the lock or that drifted from it
    /// (an edited recipe, a changed source). Steps run in crun (or runc) with
    /// no network; an unchanged step is taken from the step cache.
    Build(BuildArgs),
    /// Show an EIF's header, sections, CRC, PCRs, metadata and embedded manifest.
    ///
    /// EIF may be a release on a registry (REGISTRY/REPO:TAG or …@sha256:…),
    /// pulled and verified first (see `eifbake pull`).
    Describe(DescribeArgs),
    /// Show what differs between two EIFs: header, sections, ramdisk entries.
    ///
    /// Exit 0 when identical, 1 when they differ, 2 on error. Either side may
    /// be a release on a registry (its EIF is compared).
    Diff(DiffArgs),
    /// Print the bytes an external ES384 signer signs for an EIF (detached signing).
    ///
    /// They are the COSE Sig_structure over PCR0 that the signature section
    /// holds a signature of. Sign them with ES384 (SHA-384, ECDSA P-384), e.g.
    /// `openssl dgst -sha384 -sign key.pem -out sig.der payload`, then run
    /// `eifbake attach-signature`.
    SignPayload(SignPayloadArgs),
    /// Sign an unsigned EIF with a detached signature of its `sign-payload` bytes.
    ///
    /// The signature (DER or raw r‖s) must verify over this EIF's PCR0 with the
    /// certificate's key, or nothing is written (exit 2).
    AttachSignature(AttachSignatureArgs),
    /// Publish a release (out/NAME: its .eif, .manifest.json, .provenance.json
    /// and .pcrs) as one OCI artifact at REF (REGISTRY/REPO:TAG); print its digest.
    Push(PushArgs),
    /// Download a release from a registry, verifying every digest, and write
    /// its four files into --out.
    Pull(PullArgs),
    /// List the signed rebuild attestations attached to a release: who rebuilt it,
    /// with what verdict, tool version and date, each signature checked.
    ///
    /// Exit 0 when no attestation is bad (unknown keys are shown, not believed),
    /// 1 when one is damaged, tampered with or about another release, 2 on error.
    Attestations(AttestationsArgs),
    /// Write an EIF from a kernel, a command line and ramdisks (low level, like eif_build).
    #[command(disable_version_flag = true)] // `--version` is the image version here
    Eif(EifArgs),
    /// Pack a directory into a normalised newc cpio ramdisk (low level).
    ///
    /// Entries are sorted bytewise by path, parents first; owners are 0:0,
    /// inodes sequential, mtimes SOURCE_DATE_EPOCH (default 0), modes
    /// canonical (0755 for directories and executables, 0644 otherwise).
    Ramdisk(RamdiskArgs),
    /// Move images in and out of the store (OCI layouts, oci-archive tarballs).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Rebuild from a manifest and compare: GOOD or BAD.
    ///
    /// Exit 0 GOOD (also when only unmeasured metadata differs from a published
    /// EIF: PCRs equal), 1 BAD, 2 could not rebuild.
    ///
    /// The rebuild uses a fresh temporary store unless --store (or
    /// $EIFBAKE_STORE) names one; then the pinned blobs already in it are
    /// reused after re-hashing each against its digest. Step outputs are
    /// never reused. SOURCE_DATE_EPOCH comes from the manifest;
    /// in the environment it only sets the attestation's timeVerified.
    Verify(VerifyArgs),
    /// Check a running enclave's attestation document against a build.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Build a recipe several times under varied conditions and compare the bytes.
    ///
    /// Exit 0 when all runs agree, 1 with the differences and the variation
    /// that causes them, 2 on error.
    Check(CheckArgs),
    /// Write a commented starter recipe (and a tiny app) into DIR.
    ///
    /// The recipe names the demo's fixture images (served by `make demo` on
    /// 127.0.0.1:5055); existing files are never overwritten.
    Init(InitArgs),
    /// Write an eifbake recipe from a Caution `Procfile` or `caution.hcl`.
    ///
    /// The recipe (default: recipe.toml beside the file) is what `lock` pins
    /// and `build` builds; it adds the kernel, init and command line the file
    /// has no words for. Existing recipes are kept unless --force.
    Import(ImportArgs),
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// E.g. `eifbake completions bash > /usr/local/share/bash-completion/completions/eifbake`
    /// (`make install` does this).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the manual page (roff), e.g. `eifbake man | man -l -`.
    ///
    /// With --dir, write eifbake.1 and one page per subcommand
    /// (eifbake-build.1, …) into DIR instead (`make install` does this).
    Man {
        /// Write every page into this directory (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// A shell `eifbake completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// What the enclave runs: `static` (a file of the project, installed as is),
    /// `rust` (a Cargo crate) or `go` (a Go module), compiled in a step.
    #[arg(long, value_enum, default_value_t = Template::Static)]
    pub template: Template,
    /// The directory to write into (created if missing); the recipe is DIR/recipe.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Procfile or caution.hcl, at the repository's root.
    pub file: PathBuf,
    /// The recipe to write (beside FILE); default FILE's directory/recipe.toml.
    #[arg(short = 'o', long = "output", value_name = "RECIPE")]
    pub output: Option<PathBuf>,
    /// Replace an existing recipe.
    #[arg(long)]
    pub force: bool,
    /// The recipe's name (out/NAME.eif); default the name of FILE's directory.
    #[arg(long)]
    pub name: Option<String>,
    /// The image holding the enclave's kernel.
    #[arg(long, value_name = "REF", default_value = "stagex/user-linux-nitro:sx2026.03.0")]
    pub kernel_image: String,
    /// The kernel's path in that image.
    #[arg(long, value_name = "PATH", default_value = "/bzImage")]
    pub kernel_path: String,
    /// The kernel's config in that image (for the EIF metadata); "" for none.
    #[arg(long, value_name = "PATH", default_value = "/linux.config")]
    pub kernel_config: String,
    /// The image holding the enclave's init.
    #[arg(long, value_name = "REF", default_value = "stagex/user-nit:sx2026.03.0")]
    pub init_image: String,
    /// The init's path in that image.
    #[arg(long, value_name = "PATH", default_value = "/init")]
    pub init_path: String,
    /// The kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=k panic=30 pci=off nomodules random.trust_cpu=on")]
    pub cmdline: String,
}

/// A starter project `eifbake init` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    Static,
    Rust,
    Go,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// out/NAME (or the path of any of its four files).
    pub release: PathBuf,
    /// REGISTRY/REPO:TAG to publish to.
    pub reference: String,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:….
    pub reference: String,
    /// Where to write NAME.eif, .manifest.json, .provenance.json and .pcrs (created if missing).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttestationsArgs {
    /// The release: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:….
    pub reference: String,
    /// A rebuilder's public key or certificate (PEM, P-384) whose signatures to
    /// believe. Repeatable.
    #[arg(long = "key", value_name = "PUB.pem")]
    pub keys: Vec<PathBuf>,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// NAME.manifest.json, or releases on a registry (REGISTRY/REPO:TAG or
    /// …@sha256:…; a path that exists is a file). A release is pulled and verified,
    /// and its EIF and .pcrs are compared too. (An EIF embeds only its measured
    /// inputs, not the recipe and lock or where images came from: give its
    /// manifest, and the EIF with --eif.) Several releases: one JSON line each.
    #[arg(required = true, num_args = 1..)]
    pub subjects: Vec<PathBuf>,
    /// A published .pcrs file (`<hex> PCRn` lines) to compare with, or a release
    /// on a registry (its .pcrs).
    #[arg(long, value_name = "FILE")]
    pub pcrs: Option<PathBuf>,
    /// A published EIF to compare with (and diff against on BAD), or a release on
    /// a registry (its EIF).
    #[arg(long, value_name = "PUBLISHED.eif")]
    pub eif: Option<PathBuf>,
    /// The directory of a path source (checked against its pinned tree hash).
    #[arg(long = "source", value_name = "NAME=DIR")]
    pub sources: Vec<String>,
    /// Rebuild even when the manifest was written by another eifbake version.
    #[arg(long)]
    pub allow_tool_mismatch: bool,
    /// Write an in-toto Statement (SLSA verification summary) of the result to
    /// FILE; with --push, FILE may be left out (`--attest --push`, or `--attest=FILE`).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub attest: Option<Option<PathBuf>>,
    /// Sign the summary (a DSSE envelope, --key and --cert) and attach it to each
    /// release as a referrer; releases already carrying this key's attestation are
    /// skipped (a batch resumes where it stopped).
    #[arg(long, requires_all = ["attest", "key", "cert"])]
    pub push: bool,
    /// The rebuilder's P-384 private key (PEM) that signs pushed attestations.
    #[arg(long, value_name = "KEY.pem")]
    pub key: Option<PathBuf>,
    /// The rebuilder's certificate for --key (names the rebuilder).
    #[arg(long, value_name = "CERT.pem")]
    pub cert: Option<PathBuf>,
    /// How many releases to rebuild at once.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    #[arg(long, value_enum, default_value_t = Runtime::Crun)]
    pub runtime: Runtime,
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub step_timeout: u64,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Keep the rebuild directory and print where.
    #[arg(long)]
    pub keep: bool,
    /// Let the recipe's fetch steps (network = true) run with a network: they reach
    /// whatever this machine reaches. Without it such a rebuild is refused.
    #[arg(long)]
    pub allow_network: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `eifbake attestation …`
#[derive(Debug, Subcommand)]
pub enum AttestationCommand {
    /// Verify an NSM attestation document and compare its PCRs with a build's: GOOD or BAD.
    ///
    /// Checks the certificate chain up to the AWS Nitro Enclaves root (pinned by
    /// its SHA-256), each certificate's dates at --at, ECDSA P-384/SHA-384
    /// throughout, the document's ES384 signature, the nonce when --nonce is
    /// given, and PCR0, PCR1, PCR2 (and PCR8 when expected) against the
    /// manifest's or the .pcrs file's, or a release's on a registry (RELEASE,
    /// pulled and its digests verified first, as `eifbake pull` does).
    ///
    /// Exit 0 GOOD, 1 BAD (every reason printed), 2 unreadable document or inputs.
    Verify(AttestationVerifyArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("expected").required(true).args(["release", "manifest", "pcrs"])))]
pub struct AttestationVerifyArgs {
    /// The attestation document: COSE_Sign1 bytes, or their base64 or hex.
    pub document: PathBuf,
    /// A release on a registry (REGISTRY/REPO:TAG or …@sha256:…, see `eifbake
    /// push`) whose PCRs the enclave must have.
    #[arg(value_name = "RELEASE")]
    pub release: Option<PathBuf>,
    /// The build's NAME.manifest.json, whose PCRs the enclave must have (or a
    /// release on a registry: its manifest).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// A .pcrs file (`<hex> PCRn` lines), whose PCRs the enclave must have (or
    /// a release on a registry: its .pcrs).
    #[arg(long, value_name = "FILE")]
    pub pcrs: Option<PathBuf>,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// The nonce the document must carry, in hex (the one you sent the enclave).
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// Check the certificates' dates at this time instead of now: RFC 3339 in UTC
    /// (2024-09-07T14:37:39Z) or seconds since 1970. The enclave's certificate
    /// lives about three hours, so an archived document needs its own time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Accept an unsigned document (QEMU's nitro-enclave machine writes them) and
    /// compare its PCRs: the verdict is UNAUTHENTICATED, since anyone can write one.
    #[arg(long)]
    pub insecure_unsigned: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// recipes/NAME.toml or recipes/NAME/recipe.toml.
    pub recipe: PathBuf,
    /// Number of runs in the first round: one control, the rest with every variation.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..))]
    pub runs: u32,
    /// Comma-separated variations (default all): path, umask, tz, locale, user, env, cpus, dirorder, time.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub vary: Vec<String>,
    /// Keep the differing outputs and print where.
    #[arg(long)]
    pub keep: bool,
    /// Hand the two differing EIFs to diffoscope when it is installed.
    #[arg(long)]
    pub diffoscope: bool,
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Runtime::Crun)]
    pub runtime: Runtime,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Every run signs as `build` would (signed runs must agree byte for byte too).
    #[command(flatten)]
    pub signing: BuildSigningArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RamdiskArgs {
    /// Directory to pack.
    pub dir: PathBuf,
    /// Where to write the ramdisk (written atomically).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Compress with deterministic gzip (same bytes for any thread count).
    #[arg(long)]
    pub gzip: bool,
    /// Prefix every entry with this directory (e.g. `rootfs` for nitro-cli's user ramdisk).
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<String>,
    /// Print a summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EifArgs {
    /// Kernel image (bzImage for x86_64, Image for aarch64).
    #[arg(long)]
    pub kernel: PathBuf,
    /// Kernel config; the OS and kernel version in the metadata are read from it.
    #[arg(long, value_name = "FILE")]
    pub kernel_config: Option<PathBuf>,
    /// Kernel command line (written without a trailing NUL).
    #[arg(long)]
    pub cmdline: String,
    /// Ramdisks, in order; give the flag once per ramdisk. A ramdisk file
    /// is copied as it is; a directory is packed on the way into a plain
    /// newc archive (the bytes `eifbake ramdisk DIR` writes, mtimes from
    /// SOURCE_DATE_EPOCH), in the same pass as the EIF: no intermediate file.
    #[arg(long, required = true, value_name = "FILE|DIR")]
    pub ramdisk: Vec<PathBuf>,
    /// Where to write the EIF (written atomically).
    #[arg(long, short)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
    /// Image name for the metadata (default: the output file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Image version for the metadata.
    #[arg(long, default_value = "0.0.0")]
    pub version: String,
    /// A JSON object stored as the metadata's CustomMetadata.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Also write the PCRs to this file, lines `<hex> PCRn`.
    #[arg(long, value_name = "FILE")]
    pub pcrs: Option<PathBuf>,
    /// Sign the image with this certificate (PEM, exactly one certificate, ECDSA P-384);
    /// adds PCR8. Unlike nitro-cli, the signature is deterministic (RFC 6979): the same
    /// inputs and key give the same file. Needs --private-key.
    #[arg(long, value_name = "CERT.pem", requires = "private_key")]
    pub signing_certificate: Option<PathBuf>,
    /// The certificate's private key: a PEM file, PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1
    /// (`BEGIN EC PRIVATE KEY`), unencrypted; or a key on a PKCS#11 token, named by an
    /// RFC 7512 URI (`pkcs11:token=LABEL;object=KEYLABEL`, PIN as `?pin-value=`,
    /// --pin-file or $EIFBAKE_PKCS11_PIN).
    #[arg(long, value_name = "KEY.pem|pkcs11:URI", requires = "signing_certificate")]
    pub private_key: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Sign even when the signing certificate is expired or not yet valid. Without this
    /// flag that is an error (checked against the current time, not SOURCE_DATE_EPOCH).
    #[arg(long, requires = "signing_certificate")]
    pub ignore_certificate_validity: bool,
    /// Print the result as JSON (nitro-cli's Measurements shape included).
    #[arg(long)]
    pub json: bool,
}

/// Where a `pkcs11:` signing key's module and PIN come from.
#[derive(Debug, Clone, Default, Args)]
pub struct TokenArgs {
    /// The PKCS#11 module for a `pkcs11:` key (else the URI's module-path,
    /// $EIFBAKE_PKCS11_MODULE, or Debian's SoftHSM2, /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, value_name = "MODULE.so")]
    pub pkcs11_module: Option<PathBuf>,
    /// A file whose first line is the token's user PIN, for a `pkcs11:` key whose URI
    /// has no pin-value or pin-source (else $EIFBAKE_PKCS11_PIN).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

impl TokenArgs {
    pub fn options(&self) -> crate::signing::TokenOptions {
        crate::signing::TokenOptions { module: self.pkcs11_module.clone(), pin_file: self.pin_file.clone() }
    }
}

/// `sign-payload`: the bytes a detached signer signs.
#[derive(Debug, Args)]
pub struct SignPayloadArgs {
    /// The EIF to sign (unsigned, or signed: the payload depends only on PCR0).
    pub eif: PathBuf,
    /// Write the bytes to FILE (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `attach-signature`: put a detached signature on an unsigned EIF.
#[derive(Debug, Args)]
pub struct AttachSignatureArgs {
    /// The unsigned EIF the signature was made for.
    pub eif: PathBuf,
    /// The signing certificate (PEM, one ECDSA P-384 certificate); PCR8 measures it.
    #[arg(long, value_name = "CERT.pem")]
    pub certificate: PathBuf,
    /// The ES384 signature of the `sign-payload` bytes: DER (`openssl dgst -sha384 -sign`,
    /// AWS KMS) or raw 96-byte r‖s, binary.
    #[arg(long, value_name = "SIG")]
    pub signature: PathBuf,
    /// Write the signed EIF here (default: replace EIF). Written under a temporary
    /// name and renamed; nothing is written when the signature is refused.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Attach even when the certificate is expired or not yet valid (an error otherwise).
    #[arg(long)]
    pub ignore_certificate_validity: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// An EIF file, or a release on a registry (a path that exists is a file;
    /// otherwise HOST/REPO:TAG or HOST/REPO@sha256:… whose HOST has a `.` or `:`
    /// or is `localhost` is a reference).
    pub eif: PathBuf,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Also write every section to DIR: `kernel`, `cmdline`, `metadata.json`,
    /// `ramdisk0`, `ramdisk1`, ... (e.g. to boot them under QEMU).
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    /// Machine-readable output, with nitro-cli's `Measurements` object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// EIF files or releases on registries (as for `describe`).
    pub a: PathBuf,
    pub b: PathBuf,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// recipes/NAME.toml or recipes/NAME/recipe.toml.
    pub recipe: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// The lockfile (default: lockfiles/NAME.lock beside recipes/).
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    /// OCI runtime that runs the steps.
    #[arg(long, value_enum, default_value_t = Runtime::Crun)]
    pub runtime: Runtime,
    /// Run every step even when the step cache has its output, each from a
    /// fresh extraction of its image (not the root cache).
    #[arg(long)]
    pub no_cache: bool,
    /// Time limit of one step, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub step_timeout: u64,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Keep the scratch directory (root filesystems, ramdisks, step logs) and print where.
    #[arg(long)]
    pub keep_work: bool,
    #[command(flatten)]
    pub signing: BuildSigningArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Signing options of `build` and `check`; they override the recipe's `[signing]` table.
#[derive(Debug, Clone, Default, Args)]
pub struct BuildSigningArgs {
    /// Sign with this certificate (PEM, one ECDSA P-384 certificate) instead of the
    /// recipe's signing.certificate; adds PCR8, deterministically (RFC 6979).
    #[arg(long, value_name = "CERT.pem")]
    pub signing_certificate: Option<PathBuf>,
    /// The signing key: a PEM file (PKCS#8 or SEC1, unencrypted) or a `pkcs11:` URI (a key
    /// on a PKCS#11 token). Wins over the recipe's signing.key and over $EIFBAKE_SIGNING_KEY,
    /// which is used when neither names one.
    #[arg(long, value_name = "KEY.pem|pkcs11:URI")]
    pub private_key: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Sign even when the certificate is expired or not yet valid (an error otherwise;
    /// checked against the current time).
    #[arg(long)]
    pub ignore_certificate_validity: bool,
    /// Do not sign, even when the recipe has a [signing] table (PCR0/1/2 are the same
    /// either way; PCR8 is absent).
    #[arg(long, conflicts_with_all = ["signing_certificate", "private_key"])]
    pub unsigned: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub target: RecipeLockArgs,
    /// Re-resolve tags even when the lock already pins them. (With the global --offline,
    /// references are resolved from the store: see `store import --name`.)
    #[arg(long)]
    pub update: bool,
}

/// How `lock` and `fetch` run a recipe's fetch steps (`network = true`).
#[derive(Debug, Args)]
pub struct FetchStepArgs {
    /// OCI runtime for fetch steps (and the steps they need).
    #[arg(long, value_enum, default_value_t = Runtime::Crun)]
    pub runtime: Runtime,
    /// Time limit of one step.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub step_timeout: u64,
    /// Where step logs go (DIR/logs/RECIPE.STEP.log), as for build.
    #[arg(long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
}

/// What `lock` and `fetch` both take: a recipe, its lockfile and the registries to reach.
#[derive(Debug, Args)]
pub struct RecipeLockArgs {
    /// recipes/NAME.toml or recipes/NAME/recipe.toml.
    pub recipe: PathBuf,
    /// Registries reachable over plain HTTP (loopback ones always are).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// The lockfile `lock` writes and `fetch` reads (default: lockfiles/NAME.lock beside
    /// recipes/).
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub steps: FetchStepArgs,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Import an OCI image layout directory or an oci-archive tarball.
    ///
    /// Fetched trees an export carries (`store export --fetched`) are imported too,
    /// each checked against its tree hash.
    ///
    /// With --name REF the image is recorded as that reference, so that
    /// `eifbake lock --offline` resolves REF from the store (no registry needed).
    Import {
        /// Directory (OCI layout) or .tar (oci-archive).
        path: PathBuf,
        /// Record the imported image as this image reference (e.g.
        /// `stagex/core-busybox:sx2026.03.0`, meaning docker.io's, or `quay.io/x/y:1`);
        /// the layout must then hold one image, or --image picks it.
        #[arg(long, value_name = "REF")]
        name: Option<String>,
        /// Only the image with this ref name in the layout (org.opencontainers.image.ref.name);
        /// default all.
        #[arg(long, value_name = "REF_NAME")]
        image: Option<String>,
    },
    /// Export an image from the store as an OCI layout directory or oci-archive tarball.
    Export {
        /// Reference or digest of the image in the store.
        image: String,
        /// Destination: a directory, or a path ending in .tar for an oci-archive.
        output: PathBuf,
        /// Also carry the pinned outputs of LOCKFILE's fetch steps (`network = true`),
        /// so that a store importing the export can `build --offline` (repeatable).
        #[arg(long, value_name = "LOCKFILE")]
        fetched: Vec<PathBuf>,
    },
    /// List the images in the store.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs that no index entry or given lockfile references.
    ///
    /// Waits for builds and fetches using the store to finish first.
    Gc {
        /// Lockfiles whose images must be kept.
        #[arg(long = "keep-lock", value_name = "FILE")]
        keep: Vec<PathBuf>,
        /// Also empty the step-output and source caches and fetch steps' outputs
        /// (STORE/eifbake/steps, STORE/eifbake/sources, STORE/eifbake/fetched); later
        /// builds run their steps and fetch their sources again.
        #[arg(long)]
        caches: bool,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}
