//! Fixture builders shared by eifbake's integration tests (`tests/common`)
//! and the benchmark harness (`bench/`), so both build OCI layouts and run
//! the loopback registry with one piece of code:
//!
//! - [`registry`]: a real `docker-registry serve` (CNCF distribution) on a
//!   free loopback port, stopped when dropped;
//! - [`referrers`]: a loopback proxy adding the OCI 1.1 referrers API to that
//!   registry (which lacks it);
//! - [`oci`]: layer tars, image configs, manifests and indexes written into an
//!   OCI layout ([`eifbake::oci::store::Store`]), pushed with `skopeo`.
//!
//! Not for: eifbake itself (no eifbake code depends on this crate), nor the
//! test-only helpers that the benchmark does not need (those stay in
//! `tests/common`).
//!
//! Invariants: every function that can fail has a `try_` form returning an
//! error that names what failed (the benchmark reports it and carries on);
//! the plain forms panic with that message (tests want a panic). Outputs are
//! deterministic: the same inputs give the same blobs and digests.

pub mod oci;
pub mod referrers;
pub mod registry;
