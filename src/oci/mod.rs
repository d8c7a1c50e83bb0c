//! OCI images: references, the content-addressed store, registry pulls and safe layer application.

pub mod layer;
