//! Helpers shared by integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod qemu;
pub mod rootfs;
