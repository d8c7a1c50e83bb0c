#!/usr/bin/env bash
# fetch-kernel.sh DESTDIR [ARCH]: put Debian's cloud kernel for ARCH (a
# Debian architecture: amd64, the default, or arm64) at DESTDIR/vmlinuz and
# its build config at DESTDIR/config, for boot tests and the demo's kernel
# fixture image. Uses only the Debian archive (apt-get download), no other
# network. Cached: does nothing when DESTDIR already holds that ARCH's kernel.
#
# amd64's vmlinuz is an x86 bzImage; arm64's is an uncompressed arm64 `Image`
# (Debian 12 builds it without EFI zboot), which is what Nitro boots. A
# foreign ARCH needs `dpkg --add-architecture ARCH && apt-get update` first
# (scripts/deps.sh does it for arm64).
#
# The concrete package is resolved from the linux-image-cloud-ARCH
# metapackage's Depends, so the script follows Debian's current kernel.
set -euo pipefail

dest=${1:?usage: fetch-kernel.sh DESTDIR [amd64|arm64]}
arch=${2:-amd64}
case "$arch" in
  amd64 | arm64) ;;
  *)
    echo "fetch-kernel: ARCH $arch: expected amd64 or arm64 (Debian's names)" >&2
    exit 2
    ;;
esac
if [ -s "$dest/vmlinuz" ] && [ -s "$dest/config" ] && [ -s "$dest/package" ]; then
  # The package name ends in -cloud-ARCH (possibly with :ARCH): one DESTDIR holds one arch.
  have=$(cat "$dest/package")
  have=${have%:*}
  if [ "${have##*-}" = "$arch" ]; then
    exit 0
  fi
  echo "fetch-kernel: $dest holds $have, not a kernel for $arch; give another DESTDIR" >&2
  exit 2
fi
mkdir -p "$dest"

meta=linux-image-cloud-$arch:$arch
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
  hint="run apt-get update?"
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    hint="run scripts/deps.sh, or dpkg --add-architecture $arch && apt-get update"
  fi
  echo "fetch-kernel: cannot resolve $meta to a kernel package ($hint)" >&2
  exit 2
fi
# apt-cache names a foreign package with its :ARCH, a native one without; download it as ARCH either way.
pkg=${pkg%:*}:$arch

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
echo "${pkg%:*}" > "$dest/.package.$$" && mv "$dest/.package.$$" "$dest/package"
echo "fetch-kernel: $pkg -> $dest/vmlinuz" >&2
