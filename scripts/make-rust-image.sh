#!/usr/bin/env bash
# make-rust-image.sh OUTDIR [TAG]
#
# A Rust toolchain OCI image layout (tag TAG, default "1.96") for linux/amd64,
# made from Debian bookworm packages by scripts/make-debian-image.sh (which
# says how, and how it is cached: under target/fixtures/rust-image/):
# rustc-web and cargo-web (Rust 1.96; bookworm's plain rustc is too old for
# current crates) and what they need to run and link (gcc, binutils,
# libc6-dev, libllvm, ...). /usr/bin/cc is a symlink to gcc (Debian sets it
# with update-alternatives, which never runs here). Prints the manifest
# digest.
set -euo pipefail
usage="usage: make-rust-image.sh OUTDIR [TAG]"
out=${1:?$usage}
tag=${2:-1.96}
exec "$(dirname "$0")/make-debian-image.sh" --link usr/bin/cc=gcc rust "$out" "$tag" rustc-web cargo-web gcc
