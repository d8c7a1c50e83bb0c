#!/usr/bin/env bash
# make-busybox-image.sh OUTDIR [TAG]
#
# A busybox OCI image layout (tag TAG, default "latest") built from Debian's
# busybox-static: /bin/busybox, one symlink per applet in /bin, a minimal
# /etc/passwd and /etc/group, and the usual empty directories. Prints the
# manifest digest. The same busybox binary always gives the same digests.
set -euo pipefail
export LC_ALL=C

out=${1:?usage: make-busybox-image.sh OUTDIR [TAG]}
tag=${2:-latest}
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
if ! "$busybox" --list >/dev/null 2>&1; then
  echo "make-busybox-image: $busybox is not a working busybox (install busybox-static)" >&2
  exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
for d in bin sbin usr usr/bin usr/sbin etc root tmp proc sys dev var run; do
  mkdir -p "$root/$d"
done
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list | sort); do
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

"$here/oci-layout-from-dir.sh" "$root" "$out" "$tag" /bin/sh
