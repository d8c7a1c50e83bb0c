#!/usr/bin/env bash
# fetch-kernel.sh DESTDIR: put Debian's cloud kernel at DESTDIR/vmlinuz and
# its build config at DESTDIR/config, for boot tests and the demo's kernel
# fixture image. Uses only the Debian archive (apt-get download), no other
# network. Cached: does nothing when DESTDIR/vmlinuz already exists.
#
# The concrete package is resolved from the linux-image-cloud-amd64
# metapackage's Depends, so the script follows Debian's current kernel.
set -euo pipefail

dest=${1:?usage: fetch-kernel.sh DESTDIR}
if [ -s "$dest/vmlinuz" ] && [ -s "$dest/config" ]; then
  exit 0
fi
mkdir -p "$dest"

meta=linux-image-cloud-amd64
resolve() { apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
pkg=$(resolve)
if [ -z "$pkg" ]; then
  # A fresh machine may have no package lists yet.
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q >&2
  pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
  echo "fetch-kernel: cannot resolve $meta to a kernel package (run apt-get update?)" >&2
  exit 2
fi

work=$(mktemp -d)
chmod 0755 "$work" # apt-get download drops privileges to _apt, which must read it
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >&2)
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/x"
vmlinuz=$(ls "$work"/x/boot/vmlinuz-* | head -n1)
config=$(ls "$work"/x/boot/config-* | head -n1)
# Write under temporary names and rename, so an interrupted run leaves no half file.
cp "$vmlinuz" "$dest/.vmlinuz.$$" && mv "$dest/.vmlinuz.$$" "$dest/vmlinuz"
cp "$config" "$dest/.config.$$" && mv "$dest/.config.$$" "$dest/config"
echo "$pkg" > "$dest/.package.$$" && mv "$dest/.package.$$" "$dest/package"
echo "fetch-kernel: $pkg -> $dest/vmlinuz" >&2
