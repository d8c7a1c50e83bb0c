//! Deterministic parallel gzip against independent readers: GNU gzip, pigz
//! and flate2's decoders accept the output and give the input back, and the
//! bytes are the same for any rayon thread count.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use eifbake::gzip::{self, GzipWriter, BLOCK_SIZE};

/// Mixed data: text-like runs, repeats longer than the 32 KiB window, and
/// incompressible stretches, so blocks compress very differently.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match next() % 3 {
            0 => {
                (0..next() % 50_000).for_each(|_| out.push(b"the quick brown fox\n"[(next() % 20) as usize]))
            }
            1 if out.len() > 70_000 => {
                let start = out.len() - 70_000;
                out.extend_from_within(start..start + (next() % 60_000) as usize);
            }
            _ => (0..next() % 30_000).for_each(|_| out.push(next() as u8)),
        }
    }
    out.truncate(len);
    out
}

fn compress_with_threads(input: &[u8], threads: usize) -> Vec<u8> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut w = GzipWriter::new(Vec::new());
        // Uneven writes, as the cpio writer makes them.
        for chunk in input.chunks(100_003) {
            w.write_all(chunk).unwrap();
        }
        let (out, summary) = w.finish().unwrap();
        assert_eq!(summary.input_bytes, input.len() as u64);
        assert_eq!(summary.output_bytes, out.len() as u64);
        out
    })
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

#[test]
fn same_bytes_for_1_2_3_8_threads_and_readers_agree() {
    let input = data(21 * BLOCK_SIZE + 4321);
    let reference = compress_with_threads(&input, 1);
    for threads in [2, 3, 8] {
        let out = compress_with_threads(&input, threads);
        assert!(out == reference, "{threads} threads gave different bytes than 1");
    }
    assert!(reference.len() < input.len() * 9 / 10, "did not compress: {}", reference.len());

    let t = run_with_stdin(Command::new("gzip").arg("-t"), &reference);
    assert!(t.status.success(), "gzip -t: {}", String::from_utf8_lossy(&t.stderr));
    for reader in ["gzip", "pigz"] {
        let d = run_with_stdin(Command::new(reader).arg("-dc"), &reference);
        assert!(d.status.success(), "{reader} -dc: {}", String::from_utf8_lossy(&d.stderr));
        assert!(d.stdout == input, "{reader} -dc gave other bytes");
    }
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&reference[..]).read_to_end(&mut back).unwrap();
    assert!(back == input);
    back.clear();
    flate2::read::MultiGzDecoder::new(&reference[..]).read_to_end(&mut back).unwrap();
    assert!(back == input);
}

#[test]
fn gzip_lists_the_right_sizes_and_no_name() {
    let input = data(BLOCK_SIZE + 1);
    let (out, _) = gzip::compress(&input[..], Vec::new()).unwrap();
    let l = run_with_stdin(Command::new("gzip").args(["-l", "-N", "--verbose"]), &out);
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    let text = String::from_utf8_lossy(&l.stdout);
    assert!(text.contains(&(BLOCK_SIZE + 1).to_string()), "{text}");
    // FNAME flag clear, mtime 0: the header is exactly the ten fixed bytes.
    assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
}

#[test]
fn empty_input_is_valid_gzip() {
    let (out, summary) = gzip::compress(&b""[..], Vec::new()).unwrap();
    assert_eq!(summary.input_bytes, 0);
    let d = run_with_stdin(Command::new("gzip").arg("-dc"), &out);
    assert!(d.status.success() && d.stdout.is_empty());
}
