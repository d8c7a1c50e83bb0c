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
pub mod commands;
pub mod digest;
pub mod epoch;
pub mod fsutil;
pub mod oci;
pub mod progress;
pub mod recipe;
