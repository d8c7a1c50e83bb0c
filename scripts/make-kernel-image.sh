#!/usr/bin/env bash
# make-kernel-image.sh OUTDIR [TAG]
#
# A kernel OCI image layout shaped like StageX's user-linux-nitro: /bzImage
# (Debian's cloud kernel) and /linux.config (its build config), tag TAG
# (default "latest"). The kernel comes from scripts/fetch-kernel.sh, cached
# in $EIFBAKE_KERNEL_DIR (default ${TMPDIR:-/tmp}/eifbake-kernel). Prints the
# manifest digest.
set -euo pipefail
export LC_ALL=C

out=${1:?usage: make-kernel-image.sh OUTDIR [TAG]}
tag=${2:-latest}
here=$(cd "$(dirname "$0")" && pwd)
kdir=${EIFBAKE_KERNEL_DIR:-${TMPDIR:-/tmp}/eifbake-kernel}
"$here/fetch-kernel.sh" "$kdir"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root"
cp "$kdir/vmlinuz" "$root/bzImage"
cp "$kdir/config" "$root/linux.config"
chmod 0755 "$root"
chmod 0644 "$root/bzImage" "$root/linux.config"

"$here/oci-layout-from-dir.sh" "$root" "$out" "$tag"
