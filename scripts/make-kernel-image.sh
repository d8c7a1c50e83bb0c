#!/usr/bin/env bash
# make-kernel-image.sh [--arch ARCH] OUTDIR [TAG]
#
# A kernel OCI image layout for linux/ARCH (amd64, the default, or arm64),
# tag TAG (default "latest"), from Debian's cloud kernel for ARCH and its
# build config at /linux.config. Shaped like StageX's user-linux-nitro: the
# amd64 kernel (a bzImage) is /bzImage; the arm64 one (an uncompressed arm64
# Image, what Nitro boots on Graviton) is /Image. The kernel comes from
# scripts/fetch-kernel.sh, cached in $EIFBAKE_KERNEL_DIR (default
# ${TMPDIR:-/tmp}/eifbake-kernel) for amd64 and in its arm64/ subdirectory
# for arm64. Prints the manifest digest.
set -euo pipefail
export LC_ALL=C

usage="usage: make-kernel-image.sh [--arch ARCH] OUTDIR [TAG]"
arch=amd64
if [ "${1:-}" = --arch ]; then
  arch=${2:?$usage}
  shift 2
fi
out=${1:?$usage}
tag=${2:-latest}
here=$(cd "$(dirname "$0")" && pwd)
kdir=${EIFBAKE_KERNEL_DIR:-${TMPDIR:-/tmp}/eifbake-kernel}
case "$arch" in
  amd64) name=bzImage ;;
  arm64) name=Image kdir=$kdir/arm64 ;;
  *)
    echo "make-kernel-image: --arch $arch: expected amd64 or arm64" >&2
    exit 2
    ;;
esac
"$here/fetch-kernel.sh" "$kdir" "$arch"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root"
cp "$kdir/vmlinuz" "$root/$name"
cp "$kdir/config" "$root/linux.config"
chmod 0755 "$root"
chmod 0644 "$root/$name" "$root/linux.config"

"$here/oci-layout-from-dir.sh" --arch "$arch" "$root" "$out" "$tag"
