//! The fuzz harnesses: one function per target, taking the fuzzer's bytes,
//! and the shared pieces they need (a scratch directory per process, a way
//! to hand bytes to readers that take a path).
//!
//! For: the binaries in `src/bin`, one per fuzz target, each a thin
//! `afl::fuzz!` around [`run`], and `replay`, which runs a target over a
//! corpus without AFL (a regression check and a speed measurement). Not for:
//! anything the main crate uses. Invariant: every harness runs its input
//! through eifbake's public API only, and treats every `Err` as a correct
//! answer; only a panic, an abort (overflow, out of memory) or a hang is a
//! finding.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use eifbake::eif::kernel::KernelKind;
use eifbake::eif::{diff, Eif, SectionKind};
use eifbake::lock::Lock;
use eifbake::oci::layer::{apply_layers, ApplyOptions, DevicePolicy, LayerSource};
use eifbake::progress::Progress;

/// Every target, by the name `run` and the corpus directories use.
pub const TARGETS: [&str; 8] =
    ["eif", "cpio", "layers", "recipe", "lock", "attestation", "containerfile", "signature"];

/// Run target `name` on one input. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "eif" => eif(data),
        "cpio" => cpio(data),
        "layers" => layers(data),
        "recipe" => recipe(data),
        "lock" => lock(data),
        "attestation" => attestation(data),
        "containerfile" => containerfile(data),
        "signature" => signature(data),
        _ => panic!("no fuzz target {name}; the targets are {TARGETS:?}"),
    }
}

/// A directory that lives as long as the fuzzing process. It is made under
/// `$TMPDIR`; `run.sh` points that at a tmpfs so file-based readers do not
/// wait on a disk.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new().prefix("eifbake-fuzz-").tempdir().expect("a scratch directory")
    })
    .path()
}

/// Write `data` to `name` in the scratch directory and return its path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("writing the fuzz input to the scratch directory");
    p
}

/// The image `eif` diffs every input against, opened once per process.
const EIF_REFERENCE: &[u8] = include_bytes!("../corpus/eif/basic.eif");

/// Target `eif`: the EIF reader on arbitrary bytes (header, section table,
/// CRC, PCRs, metadata, signature, kernel kind), then `diff` against the seed
/// image `corpus/eif/basic.eif`, which compares ramdisk entries.
pub fn eif(data: &[u8]) {
    static REFERENCE: OnceLock<Eif> = OnceLock::new();
    let reference = REFERENCE.get_or_init(|| {
        Eif::open(&file("reference.eif", EIF_REFERENCE)).expect("the reference EIF opens")
    });
    let progress = Progress::hidden();
    let path = file("input.eif", data);
    let Ok(eif) = Eif::open(&path) else { return };
    let _ = eif.verify(&progress);
    let _ = eif.metadata_json();
    let _ = eif.signature_section();
    if let Some(k) = eif.section(SectionKind::Kernel) {
        let _ = KernelKind::read(eif.section_reader(k)).map(|k| k.summary(eif.header.arch()));
    }
    let _ = diff::compare(&eif, reference, &progress);
}

/// Target `cpio`: the newc reader (plain and gzip) on arbitrary bytes,
/// reading each entry's data in each of the reader's ways.
pub fn cpio(data: &[u8]) {
    use eifbake::cpio;
    let Ok(mut r) = cpio::Reader::with_buffer(data, data.len()) else { return };
    let mut i = 0u32;
    loop {
        let Ok(Some(e)) = r.next_entry() else { break };
        let _ = (e.kind(), e.permissions(), e.name_lossy());
        let ok = match i % 3 {
            0 => r.data_sha256().is_ok(),
            1 => r.data_to_vec(4096).is_ok(),
            _ => true, // left for next_entry to skip
        };
        if !ok {
            break;
        }
        i = i.wrapping_add(1);
    }
    let _ = cpio::list(data);
}

/// Target `layers`: `apply_layers` of arbitrary bytes as a layer blob (tar,
/// gzip or zstd, sniffed) onto a fresh directory; an odd first byte applies
/// the same blob twice, as two layers, to exercise replacement and whiteouts
/// of existing paths. The default limits apply except smaller totals, and
/// devices and owners are skipped: the harness runs as root and must not make
/// device nodes. Pax xattrs are applied, as in a real build.
pub fn layers(data: &[u8]) {
    let opts = ApplyOptions {
        max_total_bytes: 64 << 20,
        max_entries: 10_000,
        same_owner: false,
        devices: DevicePolicy::Skip,
        ..ApplyOptions::default()
    };
    let blob = file("layer.blob", data);
    let target = scratch().join("rootfs");
    let layer = LayerSource::new(&blob, "application/octet-stream", "fuzz");
    let layers = if data.first().is_some_and(|b| b & 1 == 1) { vec![layer.clone(), layer] } else { vec![layer] };
    let _ = apply_layers(&layers, &target, &opts);
    // A refused layer may have left part of a tree: every input starts empty.
    if target.exists() {
        std::fs::remove_dir_all(&target).expect("removing the applied tree");
    }
}

/// Target `recipe`: the recipe parser on arbitrary text, then what the build
/// asks of a parsed recipe.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = eifbake::recipe::Recipe::parse(text) {
        let _ = r.mode_overrides();
    }
}

/// Target `lock`: the lockfile parser on arbitrary text; a lockfile it
/// accepts must survive writing and reading back unchanged.
pub fn lock(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.lock");
    if let Ok(lock) = Lock::parse(text, path) {
        let written = lock.to_toml();
        let again = Lock::parse(&written, path).expect("a lockfile eifbake wrote must parse");
        assert_eq!(again.to_toml(), written, "writing a lockfile is not stable");
    }
}

/// Target `attestation`: the attestation-document parser on arbitrary bytes;
/// a document it accepts is verified (against the AWS root and zero PCRs,
/// unsigned ones allowed on an odd first byte) and must survive re-encoding
/// its payload and parsing it back unchanged.
pub fn attestation(data: &[u8]) {
    use eifbake::attestation::{self, Document, Policy, TrustAnchor};
    use eifbake::pcr::{Measurements, Pcr};
    let Ok(doc) = attestation::parse(data) else { return };
    let zero = Pcr([0; 48]);
    let policy = Policy {
        anchor: TrustAnchor::aws_nitro(),
        at: eifbake::epoch::Epoch(1_725_719_859),
        nonce: Some(vec![1; 1024]),
        expected: Measurements { pcr0: zero, pcr1: zero, pcr2: zero, pcr8: Some(zero) },
        allow_unsigned: data.first().is_some_and(|b| b & 1 == 1),
    };
    let _ = attestation::verify(&doc, &policy);
    let again = Document::from_cbor(&doc.document.to_cbor()).expect("a payload eifbake wrote must parse");
    assert_eq!(again, doc.document, "re-encoding an attestation document's payload is not stable");
}

/// Target `containerfile`: the Containerfile parser on arbitrary text (logical
/// lines, continuations, directives, flags, exec and shell forms).
pub fn containerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = eifbake::containerfile::Containerfile::parse(text, "Containerfile");
}

/// The keyring and the manifest `make-seeds.sh` signed the `signature` seeds
/// with (a throwaway gpg key; the image is named [`SIGNED_REFERENCE`]).
const SIGNATURE_KEYRING: &[u8] = include_bytes!("../signature-key/keyring.asc");
const SIGNED_MANIFEST: &[u8] = include_bytes!("../signature-key/manifest.json");
const SIGNED_REFERENCE: &str = "registry.example/fuzz/image:1";

/// Target `signature`: a signature file as a lookaside serves it, through
/// `trust::check_signature` (OpenPGP message parsing, decompression, the
/// verification against the seeds' keyring, key validity, and, for a message
/// the key signed, the simple-signing payload).
pub fn signature(data: &[u8]) {
    use eifbake::digest::Digest;
    use eifbake::trust::{check_signature, Keyring};
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    let keyring = KEYRING.get_or_init(|| {
        Keyring::load(&file("keyring.asc", SIGNATURE_KEYRING)).expect("the seeds' keyring loads")
    });
    let reference = SIGNED_REFERENCE.parse().expect("the signed reference parses");
    let _ = check_signature(data, keyring, &Digest::of(SIGNED_MANIFEST), &reference);
}
