//! The decompression side of layer application: picking the compression,
//! and the thread that reads the blob once, hashing it, and hands
//! decompressed chunks to the extractor through a bounded channel.
//!
//! Not for: bounding the stream (see [`super::limits::Budget`]) or parsing it.
//! Invariant: whatever happens to the extractor, the thread reads every byte
//! of the blob exactly once, so the digest it returns covers the whole file.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender};

use super::error::ErrorKind;
use super::Compression;
use crate::digest::{Digest, HashingReader};

/// How many bytes of compressed input are read at once, and the size of the
/// decompressed chunks handed from the decompression thread to the extractor.
pub(super) const CHUNK: usize = 1 << 20;
/// Chunks in flight between the decompression thread and the extractor.
pub(super) const CHUNKS_IN_FLIGHT: usize = 4;

/// The compression to decompress with: what the media type declares, checked
/// against the magic bytes, or the magic bytes for a generic type.
pub(super) fn pick_compression(
    declared: Option<Compression>,
    media_type: &str,
    magic: &[u8],
) -> std::result::Result<Compression, ErrorKind> {
    let sniffed = Compression::sniff(magic);
    match declared {
        // A declared plain tar that carries a compression magic is still
        // decompressed: registries mislabel layers.
        Some(Compression::None) | None => Ok(sniffed),
        Some(c) if c == sniffed => Ok(c),
        Some(c) => Err(ErrorKind::MediaType(format!(
            "media type {media_type} says {c:?} but the blob starts with {magic:02x?}"
        ))),
    }
}

/// The decompression thread: decompresses the blob (`prefix` already read
/// from `src`) into the channel until done, an error, or the extractor hangs
/// up; then reads whatever the decompressor left (trailing bytes, or all the
/// rest after an early stop) so that the digest returned covers the whole
/// blob, every byte of it read exactly once.
pub(super) fn pump(
    prefix: Vec<u8>,
    mut src: HashingReader<File>,
    compression: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<(Digest, u64)> {
    {
        let input = io::Cursor::new(prefix).chain(BufReader::with_capacity(CHUNK, &mut src));
        decompress(input, compression, &tx);
    }
    drop(tx);
    io::copy(&mut src, &mut io::sink())?;
    Ok(src.finish())
}

/// Decompress `input` into `tx` in chunks; errors are sent, not returned.
pub(super) fn decompress(input: impl Read, compression: Compression, tx: &SyncSender<io::Result<Vec<u8>>>) {
    let mut reader: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            match zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, input)) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    };
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let (n, res) = fill(&mut reader, &mut chunk);
        chunk.truncate(n);
        // What was read before an error is still sent: the extractor then
        // fails at the entry the stream broke in.
        if n > 0 && tx.send(Ok(chunk)).is_err() {
            return;
        }
        match res {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Read into `buf` until it is full (`Ok(false)`), the end (`Ok(true)`) or
/// an error; returns how many bytes were read either way.
pub(super) fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, io::Result<bool>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return (n, Ok(true)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(false))
}

/// The extractor's end of the decompression pipeline.
pub(super) struct ChannelReader {
    pub(super) rx: Receiver<io::Result<Vec<u8>>>,
    pub(super) cur: Vec<u8>,
    pub(super) pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
