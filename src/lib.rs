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

pub mod args;
pub mod build;
pub mod cache;
pub mod cargo_vendor;
pub mod check;
pub mod commands;
pub mod config;
pub mod cpio;
pub mod digest;
pub mod download;
pub mod eif;
pub mod elf;
pub mod epoch;
pub mod fetch;
pub mod fsutil;
pub mod gzip;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod pcr;
pub mod platform;
pub mod progress;
pub mod recipe;
pub mod sandbox;
pub mod signing;
pub mod sources;
pub mod userns;
pub mod verify;
