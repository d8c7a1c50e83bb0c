//! The errors of layer application: [`ErrorKind`] says what went wrong,
//! [`LayerError`] adds the layer and the entry at fault.
//!
//! Not for: errors of the store or the recipe (their modules have their own).
//! Invariant: no variant has an error source, so that a chain printed with
//! `{:#}` shows each message once.

use std::io;

use crate::oci::store::BlobError;

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("absolute path; entries must be relative to the image root")]
    AbsolutePath,
    #[error("path has a `..` component; entries must stay inside the image root")]
    DotDot,
    /// A parent directory of the entry is a symlink (the path given).
    #[error("parent {0:?} is a symlink; extraction never follows symlinks")]
    SymlinkParent(String),
    /// A parent directory of the entry exists and is not a directory.
    #[error("parent {0:?} exists and is not a directory")]
    NotADirectory(String),
    #[error("hard link target {target:?}: {reason}")]
    HardLinkTarget { target: String, reason: String },
    #[error("whiteout names {0:?}; expected the name of an entry in its directory")]
    BadWhiteout(String),
    #[error("device node not permitted by the device policy")]
    DeviceNotPermitted,
    #[error("unsupported tar entry type {0}")]
    UnsupportedType(String),
    #[error("more than {limit} entries in all layers (raise `max_entries` in the recipe's [limits] table)")]
    TooManyEntries { limit: u64 },
    #[error(
        "uncompressed size exceeds the limit of {limit} bytes for all layers (raise \
         `max_image_bytes` in the recipe's [limits] table)"
    )]
    TooLarge { limit: u64 },
    /// One layer expanded past `max(compressed * ratio, floor)` bytes.
    #[error(
        "expanded to {reached} bytes, past this layer's limit of {limit} ({ratio} times its \
         {compressed} compressed bytes, or a fixed minimum): a decompression bomb, or a layer that \
         really compresses this well (raise `max_layer_expansion` in the recipe's [limits] table)"
    )]
    LayerTooLarge { limit: u64, reached: u64, compressed: u64, ratio: u64 },
    /// An entry's path or link target is longer than the limit.
    #[error(
        "path or link target of {len} bytes is longer than the limit of {limit} (raise \
         `max_path_length` in the recipe's [limits] table)"
    )]
    PathTooLong { limit: usize, len: usize },
    /// The blob is not what its descriptor says (digest or size).
    #[error("{0}")]
    Blob(BlobError),
    /// Decompression or tar framing failed (truncated, corrupt).
    #[error("malformed layer: {0}")]
    Malformed(String),
    #[error("{0}")]
    MediaType(String),
    #[error("{op}: {err}")]
    Io { op: &'static str, err: io::Error },
}

/// An error naming the layer and, when one is at fault, the entry.
#[derive(Debug, thiserror::Error)]
#[error("layer {layer}: {}{kind}", entry_prefix(.entry))]
pub struct LayerError {
    pub layer: String,
    pub entry: Option<String>,
    pub kind: ErrorKind,
}

fn entry_prefix(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!("entry {e:?}: "),
        None => String::new(),
    }
}

pub(super) fn io_kind(op: &'static str) -> impl FnOnce(io::Error) -> ErrorKind {
    move |err| ErrorKind::Io { op, err }
}

/// An entry's failure: the entry path when one is at fault, and why.
pub(super) type EntryResult<T> = std::result::Result<T, (Option<String>, ErrorKind)>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages are the ones the hand-written `Display` gave: callers
    /// and users match on them.
    #[test]
    fn messages_name_the_layer_and_the_entry() {
        let e = LayerError {
            layer: "sha256:ab".into(),
            entry: Some("etc/x".into()),
            kind: ErrorKind::SymlinkParent("etc".into()),
        };
        assert_eq!(
            e.to_string(),
            "layer sha256:ab: entry \"etc/x\": parent \"etc\" is a symlink; extraction never follows symlinks"
        );
        let e = LayerError { layer: "l".into(), entry: None, kind: ErrorKind::TooManyEntries { limit: 3 } };
        assert_eq!(
            e.to_string(),
            "layer l: more than 3 entries in all layers (raise `max_entries` in the recipe's [limits] table)"
        );
        let io = ErrorKind::Io { op: "setting the mode", err: io::Error::from_raw_os_error(1) };
        assert!(io.to_string().starts_with("setting the mode: Operation not permitted"), "{io}");
        assert!(std::error::Error::source(&io).is_none(), "no source: the chain would repeat the message");
    }
}
