#!/usr/bin/env bash
# make-go-image.sh OUTDIR [TAG]
#
# A Go toolchain OCI image layout (tag TAG, default "1.19") for linux/amd64,
# made from Debian bookworm packages only: golang-go (Go 1.19,
# golang-1.19-go and its standard library sources) and the dependency
# closure apt resolves for it without recommends (libc6 for the go command
# itself; no gcc, so only CGO_ENABLED=0 builds work, which is what a static
# enclave binary wants), extracted with `dpkg-deb -x` on top of the busybox
# fixture rootfs (scripts/make-busybox-image.sh). /usr/bin/go comes from
# golang-go's own symlinks. Prints the manifest digest.
#
# How the package set is resolved, why the bytes are reproducible, and the
# cache: scripts/debian-image.sh, shared with scripts/make-rust-image.sh. The
# .debs are kept in $EIFBAKE_GO_DEBS (default target/fixtures/go-debs), the
# finished layout in $EIFBAKE_GO_IMAGE_DIR (default
# target/fixtures/go-image)/KEY.
#
# Not for: foreign architectures, cgo, or a general Debian rootfs (no
# maintainer scripts run, no dpkg database).
set -euo pipefail

usage="usage: make-go-image.sh OUTDIR [TAG]"
root_dir=$(cd "$(dirname "$0")/.." && pwd)
image_name=go
packages="golang-go"
required=golang-1.19-go
hint="run apt-get update (scripts/deps.sh)"
debs_dir=${EIFBAKE_GO_DEBS:-$root_dir/target/fixtures/go-debs}
image_dir=${EIFBAKE_GO_IMAGE_DIR:-$root_dir/target/fixtures/go-image}
customise() {
  [ -x "$1/usr/bin/go" ] || {
    echo "make-go-image: golang-go left no /usr/bin/go" >&2
    exit 2
  }
}
# shellcheck source=scripts/debian-image.sh
. "$root_dir/scripts/debian-image.sh"
debian_image "${1:?$usage}" "${2:-1.19}"
