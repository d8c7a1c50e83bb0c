//! Cross-check eifbake's EIF writer and reader against AWS's own
//! `aws-nitro-enclaves-image-format` crate (a dev-dependency only):
//! - AWS's `EifReader` accepts the EIFs eifbake writes and agrees on the CRC,
//!   every PCR, the arch flag and the metadata;
//! - AWS's `EifBuilder`, given the same inputs and metadata, writes the very
//!   same bytes, and eifbake's reader measures them as AWS does.

mod eif_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use eif_common::bytes;
use eifbake::eif::{self, Arch, Eif, EifInputs, Metadata};
use eifbake::epoch::Epoch;
use eifbake::pcr::Measurements;
use eifbake::progress::Progress;
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
    let e = EifInputs {
        kernel: inp.kernel.clone(),
        cmdline: CMDLINE.into(),
        ramdisks: inp.ramdisks.clone(),
        arch,
        default_mem: eif::DEFAULT_MEM,
        default_cpus: eif::DEFAULT_CPUS,
        metadata: metadata(),
        signing: None,
    };
    eif::write_eif(&e, out, &Progress::hidden()).unwrap().measurements
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

        let m = metadata();
        let info = EifIdentityInfo {
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
        };
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
