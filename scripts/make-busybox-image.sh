#!/usr/bin/env bash
# make-busybox-image.sh [--arch ARCH] OUTDIR [TAG]
#
# A busybox OCI image layout (tag TAG, default "latest") for linux/ARCH
# (amd64, the default, or arm64) built from Debian's busybox-static:
# /bin/busybox, one symlink per applet in /bin, a minimal /etc/passwd and
# /etc/group, and the usual empty directories. Prints the manifest digest.
# The same busybox binary always gives the same digests.
#
# amd64 uses the host's /bin/busybox (or $BUSYBOX). Another ARCH uses
# $BUSYBOX if set, else busybox-static:ARCH from the Debian archive
# (scripts/fetch-busybox.sh, cached in $EIFBAKE_BUSYBOX_DIR/ARCH, default
# ${TMPDIR:-/tmp}/eifbake-busybox/ARCH). A foreign busybox cannot run here to
# list its applets, so the host's busybox lists them: Debian builds
# busybox-static with one configuration for every architecture.
set -euo pipefail
export LC_ALL=C

usage="usage: make-busybox-image.sh [--arch ARCH] OUTDIR [TAG]"
arch=amd64
if [ "${1:-}" = --arch ]; then
  arch=${2:?$usage}
  shift 2
fi
out=${1:?$usage}
tag=${2:-latest}
here=$(cd "$(dirname "$0")" && pwd)
lister=/bin/busybox
if [ "$arch" = amd64 ]; then
  busybox=${BUSYBOX:-/bin/busybox}
  lister=$busybox
elif [ -n "${BUSYBOX:-}" ]; then
  busybox=$BUSYBOX
else
  bdir=${EIFBAKE_BUSYBOX_DIR:-${TMPDIR:-/tmp}/eifbake-busybox}/$arch
  "$here/fetch-busybox.sh" "$bdir" "$arch"
  busybox=$bdir/busybox
fi
if ! "$lister" --list >/dev/null 2>&1; then
  echo "make-busybox-image: $lister is not a working busybox (install busybox-static)" >&2
  exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
for d in bin sbin usr usr/bin usr/sbin etc root tmp proc sys dev var run; do
  mkdir -p "$root/$d"
done
cp "$busybox" "$root/bin/busybox"
for applet in $("$lister" --list | sort); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
# Modes set explicitly, so the caller's umask does not matter.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/bin/busybox"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"

"$here/oci-layout-from-dir.sh" --arch "$arch" "$root" "$out" "$tag" /bin/sh
