//! Deterministic, parallel gzip as a streaming [`Write`] adapter.
//!
//! For: compressing ramdisks (or anything else eifbake writes) so that the
//! same input gives the same bytes on any machine with any number of threads.
//!
//! Not for: reading gzip (use `flate2::read::MultiGzDecoder`; the output here
//! is a single ordinary gzip member that every gzip reader accepts), nor for
//! choosing *whether* to compress (that is recipe policy).
//!
//! # Public API
//!
//! - [`GzipWriter::new`]`(inner)`: a `Write` that compresses into `inner`;
//!   [`GzipWriter::finish`] writes the trailer and returns `(inner, summary)`.
//!   Dropping it without `finish` leaves an incomplete stream (callers write
//!   into an [`crate::fsutil::AtomicFile`] and only commit after `finish`).
//! - [`compress`]`(reader, writer)`: the whole of a reader, compressed.
//! - [`LEVEL`], [`BLOCK_SIZE`], [`OS_BYTE`]: the fixed parameters.
//!
//! # Format and determinism rules
//!
//! - Header: `1f 8b 08`, no flags (no file name, no comment, no extra field),
//!   MTIME 0, XFL 0, OS byte [`OS_BYTE`] = 3 (Unix, what `gzip -n` writes on
//!   Linux), so the file looks like any other gzip file.
//! - Body: the input is cut into [`BLOCK_SIZE`] (1 MiB) blocks at fixed
//!   offsets, whatever the thread count. Each block is compressed on its own
//!   as raw deflate at [`LEVEL`], primed pigz-style with the last 32 KiB of
//!   the previous block as a preset dictionary (so the ratio barely suffers
//!   from the split), and ends with a sync flush (an empty stored block,
//!   which byte-aligns it); the final block (the bytes after the last full
//!   block, possibly none) ends with BFINAL set instead. The blocks are
//!   concatenated in order, so the stream is one valid deflate stream.
//! - Trailer: CRC-32 of the input (per-block CRCs computed in parallel and
//!   joined with `crc32fast::Hasher::combine`) and ISIZE (length mod 2^32).
//!
//! Each block's compressed bytes depend only on its own bytes and its
//! predecessor's tail, never on scheduling, so the output is identical for
//! 1, 2 or 64 threads. Each full block is handed to the *current* rayon
//! pool (the global one, or the pool of an enclosing `ThreadPool::install`)
//! as soon as it fills, while the caller goes on producing the next one, and
//! the results are written in input order. At most `2 × threads` (at least
//! 4) blocks are in flight at once, and their buffers are reused from block
//! to block (allocated at most once per block in flight),
//! so memory stays flat whatever the input size or number of cpio entries.
//!
//! One caveat, stated plainly: identical bytes across *machines* also rely on
//! the deflate implementation (flate2's zlib-rs backend, pinned by
//! Cargo.lock) choosing the same matches on every CPU. In zlib-rs 0.6 the
//! hash function depends only on the level; CPU features (AVX2, NEON) only
//! select faster code for match-length comparison and window sliding, which
//! compute the same values. The golden digests in `tests/golden/ramdisk.json`
//! check this on every machine that runs the tests.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Compression level, fixed. Measured on the 2-core build machine (shared,
/// load ~1.5) packing `/usr/bin` (320 MB of cpio): level 6 here took 4.1 s
/// and gave 120.8 MB, where `gzip -n -6` took 15.5 s for 117.5 MB, `gzip -n
/// -1` 5.5 s for 129.2 MB and `pigz -6 -p 2` 7.3 s for 117.3 MB: 3.8 times
/// GNU gzip's speed for a ratio within 3% of it. Changing it changes every
/// compressed output.
pub const LEVEL: u32 = 6;

/// Size of the independently compressed blocks. Fixed: changing it changes
/// every compressed output.
pub const BLOCK_SIZE: usize = 1 << 20;

/// The gzip header's OS byte: 3 = Unix.
pub const OS_BYTE: u8 = 3;

/// The deflate window, and the size of the dictionary carried between blocks.
const DICT_SIZE: usize = 32 * 1024;

/// What a finished [`GzipWriter`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GzipSummary {
    /// Uncompressed bytes consumed.
    pub input_bytes: u64,
    /// Compressed bytes written, header and trailer included.
    pub output_bytes: u64,
    /// CRC-32 of the input (as in the trailer).
    pub crc32: u32,
}

/// A block being compressed on the rayon pool; its job comes back on the channel.
type InFlight = mpsc::Receiver<io::Result<Job>>;

/// One block's compression: its input, the dictionary it is primed with
/// (the previous block's tail), its deflate output and CRC. A job goes to
/// the pool and comes back with its output; once written out, its buffers
/// serve a later block, so a stream of any length allocates at most
/// `batch + 1` of each instead of one per block (per-block allocations of
/// 1 MiB buffers made the allocator's footprint creep up with the input
/// size). The compressor itself is made fresh for every block: a reset
/// zlib-rs compressor does not give the same bytes as a new one (zlib-rs
/// 0.6.8: the first 300 files of `/usr/bin` concatenated, 200 MB, cut into
/// these blocks with these dictionaries and deflated by [`deflate_block`]
/// once with a new `Compress` and once with one `Compress::reset` between
/// blocks: 7 of the 195 blocks came out different),
/// and the bytes are fixed. Its state is freed with it; the `eifbake` binary
/// fixes glibc's mmap threshold so that those frees go back to the kernel
/// instead of piling up in per-thread arenas (see `main.rs`).
struct Job {
    block: Vec<u8>,
    dict: Vec<u8>,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl Job {
    fn new() -> Job {
        Job {
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::with_capacity(DICT_SIZE),
            out: Vec::new(),
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Compress `block` primed with `dict` into `out` (see [`compress_block`]).
    fn run(mut self, last: bool) -> io::Result<Job> {
        self.crc = crc32fast::Hasher::new();
        self.crc.update(&self.block);
        let mut c = Compress::new(Compression::new(LEVEL), false);
        deflate_block(&mut c, &self.block, &self.dict, last, &mut self.out)?;
        Ok(self)
    }
}

/// A streaming deterministic gzip compressor; see the module docs.
pub struct GzipWriter<W: Write> {
    inner: Option<W>,
    /// Full blocks being compressed, in input order.
    in_flight: VecDeque<InFlight>,
    /// The block being filled.
    current: Vec<u8>,
    /// The last `DICT_SIZE` bytes of the last full block handed out (empty at the start).
    dict: Vec<u8>,
    /// Jobs already written out, for the next blocks to reuse.
    spare: Vec<Job>,
    /// How many blocks may be in flight before `write` waits for the oldest.
    batch: usize,
    crc: crc32fast::Hasher,
    input_bytes: u64,
    output_bytes: u64,
    header_written: bool,
}

impl<W: Write> GzipWriter<W> {
    /// Compress into `inner`, using the current rayon pool's threads.
    pub fn new(inner: W) -> Self {
        let batch = (2 * rayon::current_num_threads()).max(4);
        GzipWriter {
            inner: Some(inner),
            in_flight: VecDeque::with_capacity(batch),
            current: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::with_capacity(DICT_SIZE),
            spare: Vec::with_capacity(batch),
            batch,
            crc: crc32fast::Hasher::new(),
            input_bytes: 0,
            output_bytes: 0,
            header_written: false,
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.as_mut().expect("inner present until finish").write_all(bytes)?;
        self.output_bytes += bytes.len() as u64;
        Ok(())
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, OS_BYTE];
            self.emit(&header)?;
        }
        Ok(())
    }

    /// A job holding the block filled so far (`current` gets the job's old,
    /// emptied buffer) primed with the previous block's tail; `dict` becomes
    /// this block's tail.
    fn take_block(&mut self) -> Job {
        let mut job = self.spare.pop().unwrap_or_else(Job::new);
        std::mem::swap(&mut job.block, &mut self.current);
        self.current.clear();
        job.dict.clear();
        job.dict.extend_from_slice(&self.dict);
        self.dict.clear();
        self.dict.extend_from_slice(tail(&job.block));
        job
    }

    /// Hand the full block to the rayon pool. The caller goes on filling the
    /// next block meanwhile, so reading and compressing overlap.
    fn submit(&mut self) {
        let job = self.take_block();
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let _ = tx.send(job.run(false));
        });
        self.in_flight.push_back(rx);
    }

    /// Write out a compressed block and keep its job for reuse.
    fn emit_job(&mut self, job: Job) -> io::Result<()> {
        self.write_header()?;
        self.emit(&job.out)?;
        self.crc.combine(&job.crc);
        self.spare.push(job);
        Ok(())
    }

    /// Write out the oldest block in flight, waiting for it.
    fn emit_oldest(&mut self) -> io::Result<()> {
        let rx = self.in_flight.pop_front().expect("a block in flight");
        let job = wait(&rx)?;
        self.emit_job(job)
    }

    /// Write out every finished block at the front, and wait while too many are in flight.
    fn drain(&mut self, wait_until: usize) -> io::Result<()> {
        while self.in_flight.len() > wait_until {
            self.emit_oldest()?;
        }
        Ok(())
    }

    /// Compress what is left, write the trailer, and return the inner writer.
    pub fn finish(mut self) -> io::Result<(W, GzipSummary)> {
        self.drain(0)?;
        let last = self.take_block().run(true)?;
        self.emit_job(last)?;
        let crc32 = self.crc.clone().finalize();
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc32.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.input_bytes as u32).to_le_bytes());
        self.emit(&trailer)?;
        let mut inner = self.inner.take().expect("inner present until finish");
        inner.flush()?;
        Ok((inner, GzipSummary { input_bytes: self.input_bytes, output_bytes: self.output_bytes, crc32 }))
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = BLOCK_SIZE - self.current.len();
            let n = room.min(rest.len());
            self.current.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.current.len() == BLOCK_SIZE {
                self.submit();
                self.drain(self.batch - 1)?;
            }
        }
        self.input_bytes += buf.len() as u64;
        Ok(buf.len())
    }

    /// Passes the flush on to the inner writer. Buffered input stays
    /// buffered: cutting a block early would change the output bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("inner present until finish").flush()
    }
}

/// Wait for a block's result. On a rayon worker thread (the caller runs
/// inside `ThreadPool::install`), help the pool run queued jobs while
/// waiting, or a one-thread pool would wait for itself forever.
fn wait(rx: &InFlight) -> io::Result<Job> {
    let died = || io::Error::other("a gzip compression task died");
    loop {
        match rx.try_recv() {
            Ok(result) => return result,
            Err(mpsc::TryRecvError::Disconnected) => return Err(died()),
            Err(mpsc::TryRecvError::Empty) => match rayon::yield_now() {
                Some(rayon::Yield::Executed) => {}
                Some(rayon::Yield::Idle) => match rx.recv_timeout(std::time::Duration::from_millis(1)) {
                    Ok(result) => return result,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(died()),
                },
                None => return rx.recv().map_err(|_| died())?,
            },
        }
    }
}

/// The last `DICT_SIZE` bytes of a block (all of it if shorter).
fn tail(block: &[u8]) -> &[u8] {
    &block[block.len().saturating_sub(DICT_SIZE)..]
}

/// Raw-deflate one block, primed with `dict`, ending in a sync flush, or in
/// a final block when `last`. Returns the compressed bytes and the block's
/// CRC. (The writer reuses its buffers through [`Job`]; this is the same
/// work with fresh ones.)
#[cfg(test)]
fn compress_block(block: &[u8], dict: &[u8], last: bool) -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    let mut c = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::new();
    deflate_block(&mut c, block, dict, last, &mut out)?;
    Ok((out, crc))
}

/// Deflate `block` with the fresh compressor `c` primed with `dict` into `out`
/// (cleared first), ending in a sync flush, or in a final block when `last`.
fn deflate_block(
    c: &mut Compress,
    block: &[u8],
    dict: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    out.clear();
    // Deflate's worst case is a few bytes per 16 KiB stored block; leave room for it.
    out.reserve(block.len() + block.len() / 64 + 64);
    loop {
        let consumed = c.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let status = c.compress_vec(&block[consumed..], out, flush).map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == block.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output space was left over.
            Status::Ok | Status::BufError if !last && done_input && out.len() < out.capacity() => break,
            Status::Ok | Status::BufError => {}
        }
    }
    Ok(())
}

/// Compress everything `reader` yields into `writer`; returns the summary.
pub fn compress<R: Read, W: Write>(mut reader: R, writer: W) -> io::Result<(W, GzipSummary)> {
    let mut gz = GzipWriter::new(writer);
    io::copy(&mut reader, &mut gz)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, MultiGzDecoder};

    /// Bytes that compress somewhat but not trivially: a small PRNG over a small alphabet.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefghij \n"[(x % 12) as usize]
            })
            .collect()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        compress(data, Vec::new()).unwrap().0
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn header_is_fixed() {
        let out = gz(b"hello");
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(gunzip(&out), b"hello");
        let n = out.len();
        assert_eq!(&out[n - 4..], &5u32.to_le_bytes());
        assert_eq!(&out[n - 8..n - 4], &crc32fast::hash(b"hello").to_le_bytes());
    }

    #[test]
    fn round_trips_at_block_edges() {
        for len in [0, 1, DICT_SIZE, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE] {
            let data = sample(len, len as u64);
            let out = gz(&data);
            assert_eq!(gunzip(&out), data, "len {len}");
            let mut multi = Vec::new();
            MultiGzDecoder::new(&out[..]).read_to_end(&mut multi).unwrap();
            assert_eq!(multi, data, "len {len}");
        }
    }

    #[test]
    fn write_pattern_does_not_matter() {
        let data = sample(2 * BLOCK_SIZE + 12345, 7);
        let whole = gz(&data);
        let mut w = GzipWriter::new(Vec::new());
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
            w.flush().unwrap();
        }
        let (bytes, summary) = w.finish().unwrap();
        assert_eq!(bytes, whole);
        assert_eq!(summary.input_bytes, data.len() as u64);
        assert_eq!(summary.output_bytes, bytes.len() as u64);
        assert_eq!(summary.crc32, crc32fast::hash(&data));
    }

    #[test]
    fn same_bytes_for_any_thread_count() {
        // More blocks than any batch, so batching boundaries vary with the thread count.
        let data = sample(11 * BLOCK_SIZE + 999, 42);
        let outputs: Vec<Vec<u8>> = [1, 2, 3, 8]
            .iter()
            .map(|&t| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
                pool.install(|| gz(&data))
            })
            .collect();
        for o in &outputs[1..] {
            assert!(o == &outputs[0], "output differs between thread counts");
        }
        assert_eq!(gunzip(&outputs[0]), data);
    }

    #[test]
    fn reused_buffers_give_the_bytes_of_fresh_ones() {
        // More blocks than the writer keeps in flight, so buffers are reused;
        // the reference compresses every block with fresh buffers.
        let data = sample(9 * BLOCK_SIZE + 4321, 11);
        let mut want = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, OS_BYTE];
        let blocks: Vec<&[u8]> = data.chunks(BLOCK_SIZE).collect();
        let mut dict: &[u8] = b"";
        for (i, b) in blocks.iter().enumerate() {
            let last = i + 1 == blocks.len();
            want.extend(compress_block(b, dict, last).unwrap().0);
            dict = tail(b);
        }
        want.extend(crc32fast::hash(&data).to_le_bytes());
        want.extend((data.len() as u32).to_le_bytes());
        assert!(gz(&data) == want, "the writer's bytes differ from block-by-block fresh compression");
    }

    #[test]
    fn dictionary_carries_matches_across_blocks() {
        let prev = sample(30_000, 3);
        let (with, _) = compress_block(&prev, &prev, false).unwrap();
        let (without, _) = compress_block(&prev, b"", false).unwrap();
        assert!(with.len() * 10 < without.len(), "dictionary unused: {} vs {}", with.len(), without.len());
    }
}
