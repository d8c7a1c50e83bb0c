//! eifbake: hermetic, reproducible builds of AWS Nitro Enclave images.
//!
//! The pipeline, one module per job, data flowing one way:
//!
//! ```text
//! recipe ──lock──▶ lockfile ──fetch──▶ store ──layers──▶ rootfs ──sandbox──▶ step outputs
//!        ──▶ enclave tree ──cpio/gzip──▶ ramdisks ──eif──▶ EIF + PCRs + manifest
//! ```
//!
//! Format modules ([`cpio`], [`gzip`], [`eif`], [`oci`]) parse and write
//! bytes and do no I/O policy; [`commands`] turns the command line into calls.

// Inputs: what a build is made of, and how it is pinned.
pub mod cargo_vendor;
pub mod config;
pub mod containerfile;
pub mod download;
pub mod fetch;
pub mod lock;
pub mod platform;
pub mod procfile;
pub mod recipe;
pub mod sources;
pub mod trust;

// Images: OCI references, registries, the store, layers.
pub mod oci;

// Steps: the sandbox and what it keeps.
pub mod cache;
pub mod elf;
pub mod sandbox;
pub mod userns;

// Formats: bytes in, bytes out, no policy.
pub mod cpio;
pub mod digest;
pub mod eif;
pub mod epoch;
pub mod gzip;
pub mod manifest;
pub mod pcr;
pub mod signing;

// The pipeline and its audits.
pub mod attestation;
pub mod build;
pub mod check;
pub mod verify;

// Releases on registries: push, pull, signed rebuild attestations.
pub mod release;

// The command line, and what serves every layer.
pub mod args;
pub mod commands;
pub mod fsutil;
pub mod progress;
