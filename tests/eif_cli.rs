//! `eifbake describe` and `eifbake diff` on good and bad EIFs: exit codes
//! (0 same/ok, 1 different, 2 error) and the messages users see.

mod common;
mod eif_common;

use std::fs;
use std::path::{Path, PathBuf};

use eif_common::*;

/// Build an EIF from the standard inputs in a subdirectory of `root`.
fn build(root: &Path, name: &str, motd: &[u8], cmd_mode: u32) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    write_inputs(&dir, motd, cmd_mode);
    let o = run(eifbake().args(build_args(&dir, "image.eif")).env("SOURCE_DATE_EPOCH", "1"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    dir.join("image.eif")
}

fn describe(p: &Path) -> std::process::Output {
    run(eifbake().arg("describe").arg(p))
}

fn diff(a: &Path, b: &Path, json: bool) -> std::process::Output {
    let mut c = eifbake();
    c.arg("diff").arg(a).arg(b);
    if json {
        c.arg("--json");
    }
    run(&mut c)
}

/// Write a mutated copy of `good` and check describe and diff both fail with `msg`.
fn rejects(good: &Path, name: &str, msg: &str, mutate: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(good).unwrap();
    mutate(&mut bytes);
    let bad = good.with_file_name(name);
    fs::write(&bad, &bytes).unwrap();
    for (what, o) in [
        ("describe", describe(&bad)),
        ("diff", diff(good, &bad, false)),
        ("diff b a", diff(&bad, good, true)),
    ] {
        assert_eq!(
            o.status.code(),
            Some(2),
            "{what} {name}: stdout {} stderr {}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let err = text(&o.stderr);
        assert!(err.contains(msg), "{what} {name}: expected {msg:?} in: {err}");
        assert!(err.contains(name), "{what} {name}: the error does not name the file: {err}");
    }
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Offset of section `i`'s header, from the header table.
fn section_offset(b: &[u8], i: usize) -> usize {
    get_u64(b, 28 + 8 * i) as usize
}

#[test]
fn describe_shows_a_good_eif() {
    let root = tempfile::tempdir().unwrap();
    let eif = build(root.path(), "a", b"hello\n", 0o100644);
    let o = describe(&eif);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "version       4",
        "x86_64",
        "kernel",
        "metadata",
        "ramdisk",
        "OK",
        "PCR0",
        "PCR2",
        "\"BuildTool\": \"eifbake\"",
        "Embedded manifest",
        "\"recipe\": \"hello\"",
        "\"KernelVersion\": \"6.12.20\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let o = run(eifbake().arg("describe").arg(&eif).arg("--json"));
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["Measurements"]["HashAlgorithm"], "Sha384 { ... }");
    let pcrs = fs::read_to_string(eif.with_file_name("image.eif.pcrs")).unwrap();
    assert!(pcrs.starts_with(&format!("{} PCR0\n", j["Measurements"]["PCR0"].as_str().unwrap())));
    assert_eq!(j["sections"].as_array().unwrap().len(), 5);
    assert_eq!(j["crc32"]["ok"], true);
    assert_eq!(j["Metadata"]["ImageVersion"], "0.1.0");
}

#[test]
fn bad_input_is_rejected_with_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let good = build(root.path(), "a", b"hello\n", 0o100644);
    let len = fs::metadata(&good).unwrap().len() as usize;

    rejects(&good, "truncated.eif", "truncated", |b| b.truncate(len - 100));
    rejects(&good, "short.eif", "truncated", |b| b.truncate(300));
    rejects(&good, "magic.eif", "not an EIF: magic", |b| b[0..4].copy_from_slice(b"EIF."));
    rejects(&good, "v3.eif", "version is 3, expected 4", |b| put_u16(b, 4, 3));
    rejects(&good, "n33.eif", "num_sections is 33", |b| put_u16(b, 26, 33));
    rejects(&good, "n0.eif", "num_sections is 0", |b| put_u16(b, 26, 0));
    rejects(&good, "past-end.eif", "runs past the end of the file", |b| {
        // The last ramdisk claims 1 MiB more in both the table and its header.
        let off = section_offset(b, 4);
        let size = get_u64(b, 284 + 8 * 4) + (1 << 20);
        put_u64(b, 284 + 8 * 4, size);
        put_u64(b, off + 4, size);
    });
    rejects(&good, "type9.eif", "unknown section type 9", |b| {
        let off = section_offset(b, 2);
        put_u16(b, off, 9);
    });
    rejects(&good, "disagree.eif", "its header says", |b| {
        let off = section_offset(b, 1);
        let size = get_u64(b, off + 4);
        put_u64(b, off + 4, size - 1);
    });
    rejects(&good, "gap.eif", "section_offsets[1]", |b| {
        let v = get_u64(b, 36);
        put_u64(b, 36, v + 4);
    });
    rejects(&good, "trailing.eif", "unexpected bytes after the last section", |b| {
        b.extend_from_slice(b"junk")
    });
    rejects(&good, "no-ramdisk.eif", "0 ramdisk sections", |b| {
        // Retype both ramdisks as metadata: no ramdisk is left.
        for i in [3, 4] {
            let off = section_offset(b, i);
            put_u16(b, off, 5);
        }
    });

    let missing = root.path().join("missing.eif");
    let o = describe(&missing);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("missing.eif"));
}

#[test]
fn crc_mismatch_is_reported_not_hidden() {
    let root = tempfile::tempdir().unwrap();
    let good = build(root.path(), "a", b"hello\n", 0o100644);
    let mut bytes = fs::read(&good).unwrap();
    let kernel_data = section_offset(&bytes, 0) + 12;
    bytes[kernel_data + 1000] ^= 0x40;
    let bad = good.with_file_name("flipped.eif");
    fs::write(&bad, &bytes).unwrap();

    let o = describe(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stdout).contains("CRC-32        MISMATCH"), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("PCR0"), "describe still shows the measurements");
    let err = text(&o.stderr);
    assert!(err.contains("CRC-32 mismatch") && err.contains("flipped.eif"), "{err}");

    // diff still works: the kernel differs, and the CRC problem is shown.
    let o = diff(&good, &bad, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("CRC-32 MISMATCH in") && out.contains("section 0"), "{out}");
    assert!(out.contains("PCR0:") && out.contains("PCR1:") && !out.contains("PCR2:"), "{out}");
}

#[test]
fn diff_reports_ramdisk_entries_and_exit_codes() {
    let root = tempfile::tempdir().unwrap();
    let a = build(root.path(), "a", b"hello\n", 0o100644);
    let same = build(root.path(), "same", b"hello\n", 0o100644);
    let b = build(root.path(), "b", b"HELLO\n", 0o100755);

    let o = diff(&a, &same, false);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("identical"));

    let o = diff(&a, &b, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "section 4",
        "changed cmd",
        "mode: 100644 -> 100755",
        "changed rootfs/etc/motd",
        "content sha256:",
        "PCR2:",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("section 3"), "the boot ramdisk is the same:\n{out}");
    assert!(!out.contains("PCR1:"), "PCR1 covers only the unchanged boot ramdisk:\n{out}");

    let o = diff(&a, &b, true);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["same"], false);
    let sections = j["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 1);
    let entries = &sections[0]["entries"];
    assert!(entries["added"].as_array().unwrap().is_empty());
    assert!(entries["removed"].as_array().unwrap().is_empty());
    let changed: Vec<(String, Vec<String>)> = entries["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let fields =
                c["changes"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap().to_string());
            (c["path"].as_str().unwrap().to_string(), fields.collect())
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            ("cmd".to_string(), vec!["mode".to_string()]),
            ("rootfs/etc/motd".to_string(), vec!["content sha256".to_string()])
        ]
    );

    let o = diff(&a, &root.path().join("nope.eif"), false);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("nope.eif"));
}

#[test]
fn signed_image_shows_pcr8() {
    // A signature section in AWS's encoding (the vector AWS's crate tests its
    // CBOR with): one entry whose certificate is PEM "MIIB", i.e. DER 30 82 01.
    const SIGNATURE: &str = "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e182018431845185218541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d21884184418a1011838182218a018401840";
    let root = tempfile::tempdir().unwrap();
    let good = build(root.path(), "a", b"hello\n", 0o100644);
    let mut b = fs::read(&good).unwrap();
    let sig = hex::decode(SIGNATURE).unwrap();
    let end = b.len() as u64;
    put_u16(&mut b, 26, 6);
    put_u64(&mut b, 28 + 8 * 5, end);
    put_u64(&mut b, 284 + 8 * 5, sig.len() as u64);
    b.extend_from_slice(&4u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(sig.len() as u64).to_be_bytes());
    b.extend_from_slice(&sig);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..544]);
    crc.update(&b[548..]);
    let crc = crc.finalize();
    b[544..548].copy_from_slice(&crc.to_be_bytes());
    let signed = good.with_file_name("signed.eif");
    fs::write(&signed, &b).unwrap();

    // PCR8 measures the certificate's DER whatever it holds; the signature
    // itself (no real certificate, no real COSE) does not check: exit 2.
    let o = run(eifbake().arg("describe").arg("--json").arg(&signed));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("signed.eif: section 5 (signature): the signature does not check")
            && err.contains("not a valid X.509 certificate"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["Measurements"]["PCR8"], eifbake::pcr::Pcr::of(&[0x30, 0x82, 0x01]).hex());
    assert_eq!(j["signature"]["valid"], false);
    assert_eq!(j["crc32"]["ok"], true);
    // Signing does not change PCR0..2.
    let o = run(eifbake().arg("describe").arg("--json").arg(&good));
    let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["Measurements"]["PCR0"], g["Measurements"]["PCR0"]);
    assert!(g["Measurements"].get("PCR8").is_none());
    let o = diff(&good, &signed, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("PCR8: (unsigned) ->"), "{}", text(&o.stdout));
}

#[test]
fn memory_stays_flat_with_large_ramdisks() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_inputs(dir, b"x", 0o100644);
    // Sparse inputs: large, cheap to make, read back as zeros.
    for (name, size) in [("big0", 24u64 << 20), ("big1", 200 << 20)] {
        fs::File::create(dir.join(name)).unwrap().set_len(size).unwrap();
    }
    let out = dir.join("big.eif");
    let (code, rss) = peak_rss(
        eifbake()
            .arg("eif")
            .arg("--kernel")
            .arg(dir.join("bzImage"))
            .args(["--cmdline", "console=ttyS0", "--ramdisk"])
            .arg(dir.join("big0"))
            .arg("--ramdisk")
            .arg(dir.join("big1"))
            .arg("--output")
            .arg(&out),
    );
    assert_eq!(code, 0);
    assert!(rss < 48 * 1024, "eif peak RSS {rss} KiB for a 224 MiB image");
    let (code, rss) = peak_rss(eifbake().arg("describe").arg(&out));
    assert_eq!(code, 0);
    assert!(rss < 48 * 1024, "describe peak RSS {rss} KiB for a 224 MiB image");
}

#[test]
fn eif_errors_leave_no_output() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_inputs(dir, b"x", 0o100644);
    let listing = || {
        let mut v: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = listing();
    let base = |c: &mut std::process::Command| {
        c.arg("eif")
            .arg("--kernel")
            .arg(dir.join("bzImage"))
            .args(["--cmdline", "x"])
            .arg("--output")
            .arg(dir.join("out.eif"));
    };

    let mut c = eifbake();
    base(&mut c);
    let o = run(c.arg("--ramdisk").arg(dir.join("boot.cpio")).arg("--ramdisk").arg(dir.join("absent.cpio")));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("absent.cpio"), "{}", text(&o.stderr));

    let mut c = eifbake();
    base(&mut c);
    let o = run(c.arg("--ramdisk").arg(dir.join("boot.cpio")).args(["--metadata", "[1, 2]"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("must be a JSON object, found an array"), "{}", text(&o.stderr));

    let mut c = eifbake();
    base(&mut c);
    let o = run(c.arg("--ramdisk").arg(dir.join("boot.cpio")).env("SOURCE_DATE_EPOCH", "yesterday"));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("SOURCE_DATE_EPOCH"), "{}", text(&o.stderr));

    let mut c = eifbake();
    base(&mut c);
    let o = run(c.arg("--ramdisk").arg(dir));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("lies inside the ramdisk directory"), "{}", text(&o.stderr));

    let mut c = eifbake();
    base(&mut c);
    let o = run(c.arg("--ramdisk").arg("/dev/null"));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is not a regular file or a directory"), "{}", text(&o.stderr));

    assert_eq!(listing(), before, "a failed eif run left files behind");
}

#[test]
fn a_kernel_for_the_other_arch_or_compressed_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_inputs_aarch64(dir, b"x", 0o100644);
    fs::write(dir.join("bzImage"), bzimage(7, 200_000)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &fs::read(dir.join("Image")).unwrap()).unwrap();
    fs::write(dir.join("Image.gz"), gz.finish().unwrap()).unwrap();
    // `eifbake eif` for `arch`, with `kernel` in place of that arch's own.
    let eif = |arch: &str, kernel: &str, out: &str| {
        let own = dir.join(if arch == "x86_64" { "bzImage" } else { "Image" }).display().to_string();
        let args: Vec<String> = build_args_for(dir, out, arch)
            .into_iter()
            .map(|a| if a == own { dir.join(kernel).display().to_string() } else { a })
            .collect();
        run(eifbake().args(args).env("SOURCE_DATE_EPOCH", "1"))
    };

    // Each kernel in an EIF for its own arch: written, and describe names its kind.
    for (arch, kernel, kind) in [
        ("x86_64", "bzImage", "an x86 bzImage (boot protocol 2.15)"),
        ("aarch64", "Image", "an arm64 Image (text_offset 0x0, image_size 200000, little-endian, 4K pages)"),
    ] {
        let out = format!("{arch}.eif");
        let o = eif(arch, kernel, &out);
        assert!(o.status.success(), "{arch}: {}", text(&o.stderr));
        let o = describe(&dir.join(&out));
        assert!(text(&o.stdout).contains(&format!("  kernel        {kind}\n")), "{}", text(&o.stdout));
        let o = run(eifbake().arg("describe").arg("--json").arg(dir.join(&out)));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!((j["arch"].as_str(), j["kernel"].as_str()), (Some(arch), Some(kind)));
    }

    // Crossed, both ways, and compressed: exit 2, the file and what to give instead named, nothing written.
    for (arch, kernel, want) in [
        (
            "aarch64",
            "bzImage",
            "bzImage is an x86 bzImage (boot protocol 2.15), but the EIF is for aarch64 (`--arch aarch64`, \
             or `arch = \"aarch64\"` in the recipe); give the uncompressed arm64 `Image`",
        ),
        (
            "x86_64",
            "Image",
            "Image is an arm64 Image (text_offset 0x0, image_size 200000, little-endian, 4K pages), but the \
             EIF is for x86_64 (`--arch x86_64`, or `arch = \"x86_64\"` in the recipe); give the x86 bzImage",
        ),
        ("aarch64", "Image.gz", "Image.gz is gzip-compressed, and Nitro boots only an uncompressed kernel"),
    ] {
        let o = eif(arch, kernel, "refused.eif");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{arch} with {kernel}: {err}");
        assert!(err.contains(want), "{arch} with {kernel}: expected {want:?} in: {err}");
        assert!(err.contains(&dir.join(kernel).display().to_string()), "the path is not named: {err}");
        assert!(!dir.join("refused.eif").exists() && !dir.join("refused.eif.pcrs").exists());
    }
}

/// Write a gzip newc archive of `entries` (name, data) to `path`, streamed:
/// files with mode 0644, inodes 1.., then `TRAILER!!!`. Names are written
/// in the order given.
fn write_newc_gz(path: &Path, entries: impl Iterator<Item = (String, Vec<u8>)>) {
    use std::io::Write;
    let file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut w = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut put = |ino: u32, name: &str, mode: u32, data: &[u8]| {
        let fields = [ino, mode, 0, 0, 1, 1, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        let mut h = b"070701".to_vec();
        for f in fields {
            h.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        w.write_all(&h).unwrap();
        w.write_all(name.as_bytes()).unwrap();
        w.write_all(&[0u8; 4][..1 + (4 - (110 + name.len() + 1) % 4) % 4]).unwrap();
        w.write_all(data).unwrap();
        w.write_all(&[0u8; 3][..(4 - data.len() % 4) % 4]).unwrap();
    };
    for (i, (name, data)) in entries.enumerate() {
        put(i as u32 + 1, &name, 0o100644, &data);
    }
    put(0, "TRAILER!!!", 0, b"");
    w.finish().unwrap();
}

/// An EIF in `root/name` whose user ramdisk is the gzip newc of `entries`.
fn eif_with_ramdisk(root: &Path, name: &str, entries: impl Iterator<Item = (String, Vec<u8>)>) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    write_inputs(&dir, b"x", 0o100644);
    write_newc_gz(&dir.join("user.cpio"), entries);
    let o = run(eifbake().args(build_args(&dir, "image.eif")).env("SOURCE_DATE_EPOCH", "1"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    dir.join("image.eif")
}

/// The longest name the cpio reader accepts (64 KiB with its NUL), unique per `i`.
fn long_name(i: usize, fill: char) -> String {
    let mut n = format!("d{i:05}/");
    n.extend(std::iter::repeat_n(fill, 65535 - n.len()));
    n
}

const DIFF_RSS_LIMIT_KIB: i64 = 100 * 1024;

/// Thousands of entries with 64 KiB names on each side, half of them
/// renamed: `diff` streams both sorted archives, so its peak memory stays
/// under 100 MiB (it held every entry of both sides before, over 500 MiB
/// here), and the output is still right: a path-ordered listing within the
/// listing limit, the rest counted, the content detail of the changed file.
#[test]
fn diff_memory_is_bounded_with_many_long_names() {
    const N: usize = 4000;
    let root = tempfile::tempdir().unwrap();
    let side = |fill_odd: char, changed: &'static [u8]| {
        let first = std::iter::once(("a/changed".to_string(), changed.to_vec()));
        first.chain((0..N).map(move |i| (long_name(i, if i % 2 == 1 { fill_odd } else { 'x' }), Vec::new())))
    };
    let a = eif_with_ramdisk(root.path(), "a", side('x', b"one\n"));
    let b = eif_with_ramdisk(root.path(), "b", side('y', b"two\n"));
    assert!(fs::metadata(&a).unwrap().len() < 8 << 20, "the test EIFs are meant to be small");

    let (code, rss, out, err) = run_measured(eifbake().arg("diff").arg(&a).arg(&b));
    let (out, err) = (text(&out), text(&err));
    assert_eq!(code, 1, "{err}");
    assert!(rss < DIFF_RSS_LIMIT_KIB, "diff peak RSS {rss} KiB");
    assert!(out.contains("  changed a/changed\n"), "{}", &out[..out.len().min(2000)]);
    assert!(out.contains("\n    -one\n    +two\n"), "the changed file's detail is missing");
    let removed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("  removed ")).collect();
    let added: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("  added   ")).collect();
    assert!(!removed.is_empty() && !added.is_empty());
    assert!(removed[0].starts_with(&long_name(1, 'x')), "the listing starts with the first path");
    assert!(added[0].starts_with(&long_name(1, 'y')));
    assert!(removed.iter().all(|l| l.contains("xxxx")) && added.iter().all(|l| l.contains("yyyy")));
    let more: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("  ... and ")?.split(' ').next()?.parse().ok())
        .expect("a count of the entries not listed");
    assert_eq!(removed.len() + added.len() + 1 + more, N + 1, "every differing entry listed or counted");

    let (code, rss, out, err) = run_measured(eifbake().arg("diff").arg("--json").arg(&a).arg(&b));
    assert_eq!(code, 1, "{}", text(&err));
    assert!(rss < DIFF_RSS_LIMIT_KIB, "diff --json peak RSS {rss} KiB");
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let e = &j["sections"][0]["entries"];
    let len = |k: &str| e[k].as_array().unwrap().len();
    assert_eq!(
        len("removed") + len("added") + len("changed") + e["unlisted"].as_u64().unwrap() as usize,
        N + 1
    );
    assert_eq!(e["changed"][0]["path"], "a/changed");
}

/// An archive that is not sorted by path (another tool's) and too large to
/// sort in memory: `diff` says so for that section, in bounded memory, and
/// still reports everything else.
#[test]
fn diff_of_a_large_unsorted_ramdisk_is_refused_in_bounded_memory() {
    const N: usize = 1000;
    let root = tempfile::tempdir().unwrap();
    let a = eif_with_ramdisk(root.path(), "a", (0..N).rev().map(|i| (long_name(i, 'x'), Vec::new())));
    let b = eif_with_ramdisk(root.path(), "b", (0..N).map(|i| (long_name(i, 'x'), b"z".to_vec())));
    let (code, rss, out, err) = run_measured(eifbake().arg("diff").arg(&a).arg(&b));
    let out = text(&out);
    assert_eq!(code, 1, "{}", text(&err));
    assert!(rss < DIFF_RSS_LIMIT_KIB, "diff peak RSS {rss} KiB");
    assert!(out.contains("entries not compared: ") && out.contains("not sorted by path"), "{out}");
    assert!(out.contains("section 4") && out.contains("PCR2:"), "{out}");
}

/// Small unsorted archives, with a duplicate name, are compared in memory
/// with the same answers as sorted ones: the last of duplicate names wins,
/// and the same entries in another order are reported as such.
#[test]
fn diff_of_small_unsorted_ramdisks_is_exact() {
    let root = tempfile::tempdir().unwrap();
    let e = |list: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(n, d)| (n.to_string(), d.as_bytes().to_vec())).collect()
    };
    let a = eif_with_ramdisk(root.path(), "a", e(&[("b", "1"), ("a", "1"), ("c", "1")]).into_iter());
    let b =
        eif_with_ramdisk(root.path(), "b", e(&[("a", "2"), ("c", "9"), ("d", "1"), ("c", "1")]).into_iter());
    let o = diff(&a, &b, true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = &j["sections"][0]["entries"];
    let paths = |k: &str| -> Vec<String> {
        entries[k].as_array().unwrap().iter().map(|x| x["path"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(paths("removed"), ["b"]);
    assert_eq!(paths("added"), ["d"]);
    assert_eq!(paths("changed"), ["a"], "c's last copy equals a's c");
    assert_eq!(entries["order_differs"], false);

    let c = eif_with_ramdisk(root.path(), "c", e(&[("c", "1"), ("b", "1"), ("a", "1")]).into_iter());
    let o = diff(&a, &c, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("same entries in a different order"), "{}", text(&o.stdout));
}

/// A tree with what a root filesystem holds: directories, a file, an
/// executable, a symlink and a hard link.
fn rootfs_tree(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let t = root.join("tree");
    fs::create_dir_all(t.join("usr/bin")).unwrap();
    fs::create_dir_all(t.join("etc")).unwrap();
    fs::write(t.join("etc/motd"), b"hello\n").unwrap();
    fs::write(t.join("usr/bin/hello"), bytes(3, 300_000)).unwrap();
    fs::set_permissions(t.join("usr/bin/hello"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("hello", t.join("usr/bin/hi")).unwrap();
    fs::hard_link(t.join("etc/motd"), t.join("etc/issue")).unwrap();
    t
}

/// `eif --ramdisk DIR` packs the directory in the same pass: the same bytes
/// as `ramdisk DIR -o R` then `eif --ramdisk R`, as the first ramdisk (PCR1)
/// or a later one (PCR2); a tree that cannot be packed leaves no output.
#[test]
fn a_directory_ramdisk_is_packed_in_the_same_pass() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_inputs(dir, b"x", 0o100644);
    let tree = rootfs_tree(dir);
    let packed = dir.join("tree.cpio");
    let o = run(eifbake().arg("ramdisk").arg(&tree).arg("-o").arg(&packed).env("SOURCE_DATE_EPOCH", "7"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let eif = |name: &str, ramdisks: [&Path; 2]| {
        let out = dir.join(name);
        let mut c = eifbake();
        c.arg("eif").arg("--kernel").arg(dir.join("bzImage")).args(["--cmdline", "console=ttyS0"]);
        for r in ramdisks {
            c.arg("--ramdisk").arg(r);
        }
        let o = run(c.arg("--output").arg(&out).args(["--name", "img"]).env("SOURCE_DATE_EPOCH", "7"));
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        fs::read(out).unwrap()
    };
    let boot = dir.join("boot.cpio");
    let later = (eif("a.eif", [&boot, &packed]), eif("b.eif", [&boot, &tree]));
    assert!(later.0 == later.1, "a directory as the second ramdisk gave other bytes than its packed file");
    let first = (eif("c.eif", [&packed, &boot]), eif("d.eif", [&tree, &boot]));
    assert!(first.0 == first.1, "a directory as the first ramdisk gave other bytes than its packed file");
    assert!(later.0 != first.0, "the two orders should differ");
    let o = describe(&dir.join("d.eif"));
    assert!(o.status.success(), "{}", text(&o.stderr));

    // A file over newc's 4 GiB limit (sparse: no disk used) cannot go into
    // a ramdisk: exit 2, the file named, no output, no temporary file left.
    fs::File::create(tree.join("etc/huge")).unwrap().set_len(1 << 32).unwrap();
    let out = dir.join("e.eif");
    let o = run(eifbake()
        .arg("eif")
        .arg("--kernel")
        .arg(dir.join("bzImage"))
        .args(["--cmdline", "x", "--ramdisk"])
        .arg(&tree)
        .arg("--output")
        .arg(&out));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("etc/huge") && text(&o.stderr).contains("too large"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists(), "a failed pack left {}", out.display());
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
