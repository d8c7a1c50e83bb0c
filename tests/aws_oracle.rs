//! Cross-check eifbake's EIF writer and reader against AWS's own
//! `aws-nitro-enclaves-image-format` crate (a dev-dependency only):
//! - AWS's `EifReader` accepts the EIFs eifbake writes and agrees on the CRC,
//!   every PCR, the arch flag and the metadata;
//! - AWS's `EifBuilder`, given the same inputs and metadata, writes the very
//!   same bytes, and eifbake's reader measures them as AWS does;
//! - AWS's `EifReader` confirms the checked-in aarch64 golden EIF
//!   (`tests/golden/eif-aarch64.json`, rebuilt here by `eifbake eif`): its
//!   CRC, its PCRs and its aarch64 flag.
//! - signed images: AWS's reader verifies eifbake's signature and agrees on
//!   PCR8; eifbake verifies AWS's (OpenSSL, random nonce) signature, agrees on
//!   PCR8, and rebuilds AWS's signed file byte for byte from its signature
//!   section.

mod common;
mod eif_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use aws_nitro_enclaves_image_format::utils::{EifBuilder, SignKeyData};
use eif_common::{bytes, golden_build, golden_path};
use eifbake::eif::{self, Eif, EifInputs, Metadata, SectionKind, Signing};
use eifbake::epoch::Epoch;
use eifbake::pcr::Measurements;
use eifbake::platform::Arch;
use eifbake::progress::Progress;
use eifbake::signing::{self, Validity};
use sha2::{Digest as _, Sha384};

struct Inputs {
    _dir: tempfile::TempDir,
    root: PathBuf,
    kernel: PathBuf,
    ramdisks: Vec<PathBuf>,
}

fn inputs(ramdisk_sizes: &[usize]) -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let kernel = root.join("bzImage");
    fs::write(&kernel, bytes(1, 3 << 20)).unwrap();
    let ramdisks = ramdisk_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let p = root.join(format!("ramdisk{i}"));
            fs::write(&p, bytes(100 + i as u64, n)).unwrap();
            p
        })
        .collect();
    Inputs { _dir: dir, root, kernel, ramdisks }
}

const CMDLINE: &str = "console=ttyS0 reboot=k panic=30 pci=off nomodules random.trust_cpu=on";

fn metadata() -> Metadata {
    let custom = serde_json::json!({"name": "oracle", "inputs": {"b": 1, "a": [1, 2]}});
    Metadata::new("oracle", "1.2.3", Epoch(1_774_569_600), None, Some(custom)).unwrap()
}

fn write_ours(inp: &Inputs, arch: Arch, out: &Path) -> Measurements {
    write_ours_signed(inp, arch, out, None)
}

fn signing_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing").join(name)
}

fn signer1() -> Signing {
    let cert = signing_data("signer1.pem");
    let key = signing_data("signer1.key");
    Signing::Key(signing::load_signer(&cert, key.to_str().unwrap(), Validity::Enforce).unwrap())
}

fn write_ours_signed(inp: &Inputs, arch: Arch, out: &Path, signing: Option<Signing>) -> Measurements {
    let e = EifInputs {
        kernel: inp.kernel.clone(),
        cmdline: CMDLINE.into(),
        ramdisks: inp.ramdisks.clone(),
        arch,
        default_mem: eif::DEFAULT_MEM,
        default_cpus: eif::DEFAULT_CPUS,
        epoch: Epoch(0),
        metadata: metadata(),
        signing,
    };
    eif::write_eif(&e, out, &Progress::hidden()).unwrap().measurements
}

/// AWS's metadata struct for our metadata, so AWS's builder writes the same section.
fn aws_info() -> EifIdentityInfo {
    let m = metadata();
    EifIdentityInfo {
        img_name: m.image_name.clone(),
        img_version: m.image_version.clone(),
        build_info: EifBuildInfo {
            build_time: m.build.build_time.clone(),
            build_tool: m.build.build_tool.clone(),
            build_tool_version: m.build.build_tool_version.clone(),
            img_os: m.build.operating_system.clone(),
            img_kernel: m.build.kernel_version.clone(),
        },
        docker_info: m.docker_info.clone(),
        custom_info: m.custom.clone(),
    }
}

fn ours_as_map(m: &Measurements) -> BTreeMap<String, String> {
    m.registers().into_iter().map(|(n, p)| (format!("PCR{n}"), p.hex())).collect()
}

fn aws_read(path: &Path) -> (EifReader, BTreeMap<String, String>) {
    let mut r = EifReader::from_eif(path.display().to_string()).expect("AWS EifReader accepts the file");
    let mut m = r.get_measurements().unwrap();
    m.remove("HashAlgorithm");
    (r, m)
}

fn check_against_aws(ramdisk_sizes: &[usize], arch: Arch) {
    let inp = inputs(ramdisk_sizes);
    let out = inp.root.join("ours.eif");
    let ours = write_ours(&inp, arch, &out);
    let (r, aws) = aws_read(&out);
    assert!(r.check_crc(), "AWS computes a different CRC than the one eifbake wrote");
    assert_eq!(ours_as_map(&ours), aws, "PCRs differ from AWS's");
    assert_eq!(r.get_header().flags & 1 == 1, arch == Arch::Aarch64);
    assert_eq!(r.get_header().num_sections as usize, 3 + ramdisk_sizes.len());
    let md = r.get_metadata().expect("AWS parses eifbake's metadata");
    assert_eq!(md.img_name, "oracle");
    assert_eq!(md.img_version, "1.2.3");
    assert_eq!(md.build_info.build_tool, "eifbake");
    assert_eq!(md.build_info.build_time, "2026-03-27T00:00:00+00:00");
    assert_eq!(md.custom_info["inputs"]["a"][1], 2);

    // eifbake's own reader agrees with its writer and with AWS.
    let e = Eif::open(&out).unwrap();
    let v = e.verify(&Progress::hidden()).unwrap();
    assert!(v.crc_ok());
    assert_eq!(v.measurements, ours);
    assert_eq!(v.stored_crc, r.get_header().eif_crc32);
}

#[test]
fn aws_reader_agrees_one_ramdisk() {
    check_against_aws(&[5 << 20], Arch::X86_64);
}

#[test]
fn aws_reader_agrees_three_ramdisks() {
    // Sizes straddle the 2 MiB streaming chunk to exercise partial chunks.
    check_against_aws(&[1 << 20, (4 << 20) + 17, 3], Arch::X86_64);
}

#[test]
fn aws_reader_agrees_aarch64() {
    check_against_aws(&[70_000, 1_000], Arch::Aarch64);
}

#[test]
fn aws_builder_writes_the_same_bytes() {
    for sizes in [&[2_000_000usize][..], &[300_000, 2_500_000, 10][..]] {
        let inp = inputs(sizes);
        let ours_path = inp.root.join("ours.eif");
        let ours = write_ours(&inp, Arch::X86_64, &ours_path);

        let info = aws_info();
        let mut b = EifBuilder::new(&inp.kernel, CMDLINE.to_string(), None, Sha384::new(), 0, info);
        for r in &inp.ramdisks {
            b.add_ramdisk(r);
        }
        let aws_path = inp.root.join("aws.eif");
        let mut f = fs::File::create(&aws_path).unwrap();
        let mut aws_pcrs = b.write_to(&mut f);
        drop(f);
        aws_pcrs.remove("HashAlgorithm");
        assert_eq!(ours_as_map(&ours), aws_pcrs);
        let (a, o) = (fs::read(&aws_path).unwrap(), fs::read(&ours_path).unwrap());
        assert_eq!(a.len(), o.len());
        assert!(a == o, "AWS's EifBuilder and eifbake wrote different bytes for the same inputs");

        let v = Eif::open(&aws_path).unwrap().verify(&Progress::hidden()).unwrap();
        assert!(v.crc_ok());
        assert_eq!(ours_as_map(&v.measurements), aws_pcrs);
    }
}

#[test]
fn aws_reader_confirms_the_aarch64_golden() {
    let dir = tempfile::tempdir().unwrap();
    let (json, eif, _) = golden_build(dir.path(), "aarch64", &[("TZ", "UTC"), ("LC_ALL", "C")], "022", &[]);
    let golden: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(golden_path("aarch64")).unwrap()).unwrap();
    // The very EIF the golden file describes (tests/eif_golden.rs checks the rest).
    assert_eq!(eifbake::digest::Digest::of(&eif).to_string(), golden["eif_sha256"]);
    assert_eq!(json["Measurements"]["PCR0"], golden["PCR0"]);

    let (r, aws) = aws_read(&dir.path().join("hello.eif"));
    assert!(r.check_crc(), "AWS computes another CRC for the aarch64 golden EIF");
    assert_eq!(r.get_header().eif_crc32, u32::from_str_radix(json["crc32"].as_str().unwrap(), 16).unwrap());
    assert_eq!(r.get_header().flags, 1, "AWS does not see the aarch64 flag");
    for n in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(aws[n], golden[n].as_str().unwrap(), "{n}: AWS disagrees with the golden value");
    }
    assert_eq!(r.get_metadata().unwrap().build_info.img_kernel, "6.12.20");
}

#[test]
fn aws_reader_verifies_our_signature() {
    let inp = inputs(&[300_000, 70_000]);
    let out = inp.root.join("signed.eif");
    let ours = write_ours_signed(&inp, Arch::X86_64, &out, Some(signer1()));
    let (mut r, aws) = aws_read(&out);
    assert!(r.check_crc(), "AWS computes a different CRC than the one eifbake wrote");
    assert!(aws.contains_key("PCR8"), "AWS sees no signature: {aws:?}");
    assert_eq!(ours_as_map(&ours), aws, "PCRs (PCR8 included) differ from AWS's");
    let info = r
        .get_certificate_info(aws.clone())
        .expect("AWS reads the certificate and verifies the COSE signature");
    assert_eq!(r.sign_check, Some(true), "AWS's reader: the signed payload is not this image's PCR0");
    assert!(info.issuer_name.values().any(|v| v.contains("eifbake test CA")), "{:?}", info.issuer_name);

    // Signed for another PCR0 (the section of an image with other ramdisks), AWS says false.
    let other = inputs(&[300_001, 70_000]);
    let other_out = other.root.join("other.eif");
    write_ours_signed(&other, Arch::X86_64, &other_out, Some(signer1()));
    let graft = inp.root.join("graft.eif");
    let section = Eif::open(&other_out).unwrap().signature_section().unwrap().unwrap();
    let e = Eif::open(&out).unwrap();
    let sig = e.section(SectionKind::Signature).unwrap();
    let mut bytes = fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, sig.data_offset() + sig.size, "the signature section comes last");
    bytes.truncate(sig.data_offset() as usize);
    bytes.extend_from_slice(&section);
    let (i, size) = (sig.index, section.len() as u64);
    bytes[284 + 8 * i..292 + 8 * i].copy_from_slice(&size.to_be_bytes());
    bytes[sig.offset as usize + 4..sig.offset as usize + 12].copy_from_slice(&size.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..544]);
    crc.update(&bytes[548..]);
    let crc = crc.finalize();
    bytes[544..548].copy_from_slice(&crc.to_be_bytes());
    fs::write(&graft, &bytes).unwrap();
    let (mut r, aws) = aws_read(&graft);
    assert!(r.check_crc());
    r.get_certificate_info(aws).unwrap();
    assert_eq!(r.sign_check, Some(false), "the oracle would not notice a wrong PCR0");
    let v = Eif::open(&graft).unwrap().verify(&Progress::hidden()).unwrap();
    let report = v.signature.unwrap();
    assert!(!report.valid && report.problem.unwrap().contains("is for PCR0"));
}

#[test]
fn we_verify_and_rebuild_an_aws_signed_image() {
    let inp = inputs(&[200_000, 1_000]);
    let key = signing_data("signer1.key");
    let sign = SignKeyData::new(key.to_str().unwrap(), &signing_data("signer1.pem")).unwrap();
    let mut b = EifBuilder::new(&inp.kernel, CMDLINE.to_string(), Some(sign), Sha384::new(), 0, aws_info());
    for r in &inp.ramdisks {
        b.add_ramdisk(r);
    }
    let aws_path = inp.root.join("aws-signed.eif");
    let mut f = fs::File::create(&aws_path).unwrap();
    let mut aws_pcrs = b.write_to(&mut f);
    drop(f);
    aws_pcrs.remove("HashAlgorithm");
    assert!(aws_pcrs.contains_key("PCR8"));

    let e = Eif::open(&aws_path).unwrap();
    let v = e.verify(&Progress::hidden()).unwrap();
    assert!(v.crc_ok());
    assert_eq!(ours_as_map(&v.measurements), aws_pcrs, "PCR8 (or another PCR) differs from AWS's");
    let report = v.signature.clone().expect("a signature report");
    assert!(report.valid, "eifbake rejects AWS's signature: {:?}", report.problem);
    assert_eq!(report.algorithm.as_deref(), Some("ES384"));
    assert_eq!(report.signed_pcr0, Some(v.measurements.pcr0));

    // describe agrees, exit 0.
    let o = eif_common::run(eif_common::eifbake().arg("describe").arg("--json").arg(&aws_path));
    assert_eq!(o.status.code(), Some(0), "{}", eif_common::text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["signature"]["valid"], true);
    assert_eq!(j["Measurements"]["PCR8"], aws_pcrs["PCR8"]);

    // With AWS's section, eifbake's writer rebuilds AWS's file byte for byte (no key needed).
    let section = e.signature_section().unwrap().unwrap();
    let rebuilt = inp.root.join("rebuilt.eif");
    let m = write_ours_signed(&inp, Arch::X86_64, &rebuilt, Some(Signing::Section(section.clone())));
    assert_eq!(ours_as_map(&m), aws_pcrs);
    assert!(
        fs::read(&rebuilt).unwrap() == fs::read(&aws_path).unwrap(),
        "the rebuild differs from AWS's file"
    );

    // eifbake's own signature of the same image differs only in the COSE bytes (random nonce vs RFC 6979):
    // same certificate (openssl's PEM is canonical), same PCR8, same bytes up to the section.
    let ours_path = inp.root.join("ours-signed.eif");
    let ours = write_ours_signed(&inp, Arch::X86_64, &ours_path, Some(signer1()));
    assert_eq!(ours_as_map(&ours), aws_pcrs);
    let (a, o) = (fs::read(&aws_path).unwrap(), fs::read(&ours_path).unwrap());
    let sig = e.section(SectionKind::Signature).unwrap();
    let (header_at, data_at) = (sig.offset as usize, sig.data_offset() as usize);
    assert!(a[548..header_at] == o[548..header_at], "sections before the signature differ");
    assert!(
        a[..284 + 8 * sig.index] == o[..284 + 8 * sig.index],
        "headers differ before the signature's size"
    );
    let decoded_aws = eif::signature::decode(&section).unwrap();
    let decoded_ours = eif::signature::decode(&o[data_at..]).unwrap();
    assert_eq!(decoded_aws.certificate_pem, decoded_ours.certificate_pem);
    assert_ne!(decoded_aws.cose, decoded_ours.cose);
}
