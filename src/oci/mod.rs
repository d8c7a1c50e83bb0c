//! OCI images: references, the registry client and the content-addressed store.
//!
//! - [`layout`]: where everything lives under a store directory.
//! - [`model`]: the OCI types (oci-spec's) and media types every other module uses.
//! - [`reference`]: parse and print image references (`stagex/core-busybox:sx2026.03.0`).
//! - [`registry`]: resolve references to digests and download verified blobs;
//!   push and read the single artifacts of releases ([`crate::release`]).
//! - [`store`]: the OCI image layout on disk where every verified blob lives.
//! - [`layer`]: apply an image's layers to a directory, safely (no writes outside it).
//!
//! Not for: deciding what a recipe pins ([`crate::lock`]).

pub mod layer;
pub mod layout;
pub mod model;
pub mod reference;
pub mod registry;
pub mod store;

pub use reference::Reference;
pub use store::Store;
