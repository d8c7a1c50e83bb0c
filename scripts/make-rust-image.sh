#!/usr/bin/env bash
# make-rust-image.sh OUTDIR [TAG]
#
# A Rust toolchain OCI image layout (tag TAG, default "1.96") for linux/amd64,
# made from Debian bookworm packages only: rustc-web and cargo-web (Rust
# 1.96; bookworm's plain rustc is too old for current crates) and what they
# need to run and link (gcc, binutils, libc6-dev, libllvm, ...), extracted
# with `dpkg-deb -x` on top of the busybox fixture rootfs
# (scripts/make-busybox-image.sh). /usr/bin/cc is a symlink to gcc (Debian
# sets it with update-alternatives, which never runs here). Prints the
# manifest digest.
#
# How the package set is resolved, why the bytes are reproducible, and the
# cache: scripts/debian-image.sh, shared with scripts/make-go-image.sh. The
# .debs are kept in $EIFBAKE_RUST_DEBS (default target/fixtures/rust-debs),
# the finished layout in $EIFBAKE_RUST_IMAGE_DIR (default
# target/fixtures/rust-image)/KEY. The first run takes several minutes, later
# ones seconds.
#
# Not for: foreign architectures, or a general Debian rootfs (no maintainer
# scripts run, no dpkg database).
set -euo pipefail

usage="usage: make-rust-image.sh OUTDIR [TAG]"
root_dir=$(cd "$(dirname "$0")/.." && pwd)
image_name=rust
packages="rustc-web cargo-web gcc"
required=rustc-web
hint="is bookworm-security in the apt sources? run apt-get update"
debs_dir=${EIFBAKE_RUST_DEBS:-$root_dir/target/fixtures/rust-debs}
image_dir=${EIFBAKE_RUST_IMAGE_DIR:-$root_dir/target/fixtures/rust-image}
customise() {
  ln -sf gcc "$1/usr/bin/cc"
}
# shellcheck source=scripts/debian-image.sh
. "$root_dir/scripts/debian-image.sh"
debian_image "${1:?$usage}" "${2:-1.96}"
