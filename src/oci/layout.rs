//! The store's directory layout: every path under a store root, spelled once.
//!
//! ```text
//! STORE/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! STORE/index.json            the images the store names
//! STORE/blobs/sha256/<hex>    verified blobs
//! STORE/ingest/               blobs being written and verified
//! STORE/index.lock            flock serialising index.json updates
//! STORE/gc.lock               flock: builds and fetches shared, gc exclusive
//! STORE/eifbake/sources/<tree hex>/        the source cache
//! STORE/eifbake/steps/<key hex>/{out/,tree} the step cache
//! STORE/eifbake/fetched/<tree hex>/{out/,tree} fetch steps' pinned outputs
//! STORE/eifbake/roots/<key hex>/{root/,tree} image root filesystems steps start from
//! STORE/eifbake/signatures/<manifest hex>/<sha256 hex>  image signatures kept
//! ```
//!
//! Image signatures ([`crate::trust`]) are kept by the manifest digest they
//! sign, each file named by the sha256 of its bytes: added, never replaced,
//! and not a cache (`gc --caches` leaves them), since an offline build needs
//! them to check the recipe's threshold.
//!
//! The first four are the OCI image layout (what skopeo and umoci read, and
//! what `store export` writes); the rest is eifbake's own (`store export
//! --fetched` adds `eifbake/fetched/<tree hex>/out/` beside the layout).
//!
//! What it is for: answering "where is X" for the store ([`super::Store`]),
//! the caches ([`crate::cache`], [`crate::sources::SourceCache`]), `check`
//! (which assembles run stores) and the tests. Not for: what is in those
//! files or directories, or their locking rules (the store and
//! [`crate::cache`] say). The inside of a step entry (`out/`, `tree`) belongs
//! to [`crate::cache`].

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// The layout marker file.
pub const OCI_LAYOUT: &str = "oci-layout";
/// Its content, the only version eifbake reads or writes.
pub const OCI_LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";
/// The layout's index of named images.
pub const INDEX: &str = "index.json";
/// The directory of sha256 blobs, and (for archives) its parents in order.
pub const BLOBS: &str = "blobs/sha256";
pub const BLOB_DIRS: [&str; 2] = ["blobs/", "blobs/sha256/"];
/// The files of an OCI layout that name images (what a copy of a store's
/// images needs besides [`BLOBS`]).
pub const LAYOUT_FILES: [&str; 2] = [OCI_LAYOUT, INDEX];

/// The name of a blob relative to a layout's root (`blobs/sha256/<hex>`).
pub fn blob_name(digest: &Digest) -> String {
    format!("{BLOBS}/{}", digest.hex())
}

/// The caches eifbake keeps beside the layout, by the name `gc --caches` reports.
pub const CACHES: [&str; 4] = ["steps", "sources", "fetched", "roots"];

/// The paths of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn oci_layout(&self) -> PathBuf {
        self.root.join(OCI_LAYOUT)
    }

    pub fn index(&self) -> PathBuf {
        self.root.join(INDEX)
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join(BLOBS)
    }

    /// The top directory of the blobs (`blobs/`): what copying a store's blobs copies.
    pub fn blob_tree(&self) -> PathBuf {
        self.root.join(BLOB_DIRS[0])
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_name(digest))
    }

    pub fn ingest(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub fn index_lock(&self) -> PathBuf {
        self.root.join("index.lock")
    }

    pub fn gc_lock(&self) -> PathBuf {
        self.root.join("gc.lock")
    }

    /// The directory holding eifbake's caches.
    pub fn caches(&self) -> PathBuf {
        self.root.join("eifbake")
    }

    /// The cache named `name` (one of [`CACHES`]).
    pub fn cache(&self, name: &str) -> PathBuf {
        debug_assert!(CACHES.contains(&name), "{name} is not a cache");
        self.caches().join(name)
    }

    /// The source cache: `<tree hex>/` per materialised source tree.
    pub fn sources(&self) -> PathBuf {
        self.cache("sources")
    }

    /// The step cache: `<key hex>/` per step output.
    pub fn steps(&self) -> PathBuf {
        self.cache("steps")
    }

    /// Fetch steps' outputs: `<tree hex>/` per pinned tree, kept by hash.
    pub fn fetched(&self) -> PathBuf {
        self.cache("fetched")
    }

    /// Extracted image root filesystems, read-only lower layers of steps:
    /// `<key hex>/` per image and extraction (see [`crate::cache::RootCache`]).
    pub fn roots(&self) -> PathBuf {
        self.cache("roots")
    }

    /// The image signatures kept, `<manifest hex>/` per signed manifest.
    pub fn signatures_root(&self) -> PathBuf {
        self.caches().join("signatures")
    }

    /// The signatures kept for the manifest `digest`: one file per
    /// signature, named by the sha256 of its bytes.
    pub fn signatures(&self, digest: &Digest) -> PathBuf {
        self.signatures_root().join(digest.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores written by earlier versions must stay readable: the paths are fixed.
    #[test]
    fn paths_are_the_documented_ones() {
        let l = Layout::new("/s");
        let d = Digest::of(b"x");
        assert_eq!(l.blob(&d), PathBuf::from(format!("/s/blobs/sha256/{}", d.hex())));
        assert_eq!(blob_name(&d), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(l.blobs(), Path::new("/s/blobs/sha256"));
        assert_eq!((l.index(), l.oci_layout()), ("/s/index.json".into(), "/s/oci-layout".into()));
        assert_eq!(
            (l.ingest(), l.index_lock(), l.gc_lock()),
            ("/s/ingest".into(), "/s/index.lock".into(), "/s/gc.lock".into())
        );
        assert_eq!((l.sources(), l.steps()), ("/s/eifbake/sources".into(), "/s/eifbake/steps".into()));
        assert_eq!(l.fetched(), Path::new("/s/eifbake/fetched"));
        assert_eq!(l.roots(), Path::new("/s/eifbake/roots"));
        assert_eq!(l.signatures(&d), PathBuf::from(format!("/s/eifbake/signatures/{}", d.hex())));
        assert_eq!(BLOB_DIRS.concat(), "blobs/blobs/sha256/");
        assert_eq!(l.blob_tree(), Path::new("/s/blobs"));
    }
}
