//! The byte bounds of layer application: the `DEFAULT_*` limits, the
//! per-layer expansion budget, and [`Budget`], the reader that cuts the
//! decompressed stream at whichever bound it reaches first.
//!
//! Not for: the bound on bytes written to files (the extractor counts those
//! itself) or on entries and path lengths (checked per entry).
//! Invariant: a read past a bound fails and records which bound in `hit`
//! before any byte beyond it is handed out.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Default bound on the bytes of all layers of an image (16 GiB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 16 << 30;
/// Default bound on a layer's expansion: 100 times its blob's size...
pub const DEFAULT_MAX_LAYER_EXPANSION: u64 = 100;
/// ...but at least 256 MiB, however small the blob.
pub const DEFAULT_LAYER_FLOOR: u64 = 256 << 20;
/// Default bound on the entries of all layers of an image.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default bound on an entry's path and a link's target, in bytes (Linux's `PATH_MAX`).
pub const DEFAULT_MAX_PATH_LENGTH: usize = 4096;

/// The per-layer expansion bound of the layer being applied.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LayerBudget {
    pub(super) compressed: u64,
    pub(super) allowance: u64,
    pub(super) file_bytes: u64,
}

/// Which bound a stream read ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LimitHit {
    /// `max_total_bytes`, over all layers.
    Image,
    /// The layer's allowance, after `reached` decompressed bytes.
    Layer { reached: u64 },
}

/// A reader that fails once more than `remaining` (the image's bound) or
/// `layer_remaining` (this layer's) bytes have been read, and says which
/// through `hit`.
pub(super) struct Budget<R> {
    pub(super) inner: R,
    pub(super) remaining: u64,
    pub(super) layer_remaining: u64,
    pub(super) read: u64,
    pub(super) hit: Rc<Cell<Option<LimitHit>>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)? as u64;
        if n > self.remaining {
            self.hit.set(Some(LimitHit::Image));
        } else if n > self.layer_remaining {
            self.hit.set(Some(LimitHit::Layer { reached: self.read + n }));
        } else {
            self.remaining -= n;
            self.layer_remaining -= n;
            self.read += n;
            return Ok(n as usize);
        }
        Err(io::Error::other("decompressed size limit reached"))
    }
}
