#!/usr/bin/env bash
# fetch-busybox.sh DESTDIR ARCH: put Debian's static busybox for ARCH (a
# Debian architecture, e.g. arm64) at DESTDIR/busybox, for fixture images of
# another architecture than the host's (the host's own is /bin/busybox from
# busybox-static). Uses only the Debian archive (apt-get download); a foreign
# ARCH needs `dpkg --add-architecture ARCH && apt-get update` first
# (scripts/deps.sh does it for arm64). Cached: does nothing when DESTDIR
# already holds it.
set -euo pipefail

dest=${1:?usage: fetch-busybox.sh DESTDIR ARCH}
arch=${2:?usage: fetch-busybox.sh DESTDIR ARCH}
if [ -s "$dest/busybox" ] && [ "$(cat "$dest/arch" 2>/dev/null)" = "$arch" ]; then
  exit 0
fi
if [ -e "$dest/arch" ]; then
  echo "fetch-busybox: $dest holds busybox for $(cat "$dest/arch"), not $arch; give another DESTDIR" >&2
  exit 2
fi
mkdir -p "$dest"
work=$(mktemp -d)
chmod 0755 "$work" # apt-get download drops privileges to _apt, which must read it
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -q "busybox-static:$arch" >&2); then
  echo "fetch-busybox: cannot download busybox-static:$arch (run scripts/deps.sh, or" \
    "dpkg --add-architecture $arch && apt-get update)" >&2
  exit 2
fi
dpkg-deb -x "$work"/*.deb "$work/x"
# Write under temporary names and rename, so an interrupted run leaves no half file.
cp "$work/x/bin/busybox" "$dest/.busybox.$$" && chmod 0755 "$dest/.busybox.$$" && mv "$dest/.busybox.$$" "$dest/busybox"
echo "$arch" > "$dest/.arch.$$" && mv "$dest/.arch.$$" "$dest/arch"
echo "fetch-busybox: busybox-static:$arch -> $dest/busybox" >&2
