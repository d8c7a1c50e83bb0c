//! OCI images: references, the registry client and the content-addressed store.
//!
//! - [`reference`]: parse and print image references (`stagex/core-busybox:sx2026.03.0`).
//! - [`registry`]: resolve references to digests and download verified blobs.
//! - [`store`]: the OCI image layout on disk where every verified blob lives.
//!
//! Not for: unpacking layers into a root filesystem (the layer module) or
//! deciding what a recipe pins ([`crate::lock`]).

pub mod reference;
pub mod registry;
pub mod store;

pub use reference::Reference;
pub use store::Store;
