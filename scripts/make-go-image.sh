#!/usr/bin/env bash
# make-go-image.sh OUTDIR [TAG]
#
# A Go toolchain OCI image layout (tag TAG, default "1.19") for linux/amd64,
# made from Debian bookworm packages by scripts/make-debian-image.sh (which
# says how, and how it is cached: under target/fixtures/go-image/):
# golang-go (Go 1.19, golang-1.19-go and its standard library sources) and
# the closure apt resolves for it without recommends (libc6 for the go
# command itself; no gcc, so only CGO_ENABLED=0 builds work, which is what a
# static enclave binary wants). /usr/bin/go comes from golang-go's own
# symlinks. Prints the manifest digest.
#
# Not for: cgo.
set -euo pipefail
usage="usage: make-go-image.sh OUTDIR [TAG]"
out=${1:?$usage}
tag=${2:-1.19}
exec "$(dirname "$0")/make-debian-image.sh" go "$out" "$tag" golang-go
