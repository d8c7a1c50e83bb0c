//! Benchmark helper (used by `bench/run.sh`, not part of eifbake): measure an
//! EIF with AWS's own reader, the `aws-nitro-enclaves-image-format` crate
//! (a dev-dependency, kept out of the eifbake binary), as nitro-cli's
//! `describe-eif` does.
//!
//! ```text
//! cargo run --release --example aws_measure -- EIF
//! ```
//!
//! Prints `<hex> PCRn` lines (the same shape as eifbake's `.pcrs` files) so
//! the script can check that both readers agree; exits 2 when the reader
//! fails or the CRC does not match.
//!
//! Not for: anything but benchmarks and cross-checks.

use std::process::ExitCode;

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: aws_measure EIF");
        return ExitCode::from(2);
    };
    let mut reader = match EifReader::from_eif(path.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: AWS EifReader failed: {e}");
            return ExitCode::from(2);
        }
    };
    if !reader.check_crc() {
        eprintln!("{path}: AWS EifReader: CRC-32 mismatch");
        return ExitCode::from(2);
    }
    let pcrs = match reader.get_measurements() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{path}: AWS EifReader: measurements failed: {e}");
            return ExitCode::from(2);
        }
    };
    for n in ["PCR0", "PCR1", "PCR2", "PCR8"] {
        if let Some(hex) = pcrs.get(n) {
            println!("{hex} {n}");
        }
    }
    ExitCode::SUCCESS
}
