//! Benchmark helper (used by `bench/run.sh`, not part of eifbake): one
//! SHA-384 pass over a file on one core, reading with 4 MiB buffers. This is
//! the floor for measuring an EIF: PCR0 alone needs a SHA-384 over almost
//! every byte, so no reader can be faster on one core.
//!
//! ```text
//! cargo run --release --example sha384_pass -- FILE
//! ```
//!
//! Prints `<hex>  FILE` like `sha384sum`. It uses the same `sha2` crate as
//! eifbake, so the comparison measures the reader's overhead, not a different
//! hash implementation.
//!
//! Not for: anything but benchmarks.

use std::fs::File;
use std::io::Read;

use anyhow::{Context, Result};
use sha2::{Digest, Sha384};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: sha384_pass FILE")?;
    let mut f = File::open(&path).with_context(|| format!("open {path}"))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut h = Sha384::new();
    loop {
        let n = f.read(&mut buf).with_context(|| format!("read {path}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    println!("{}  {path}", hex::encode(h.finalize()));
    Ok(())
}
