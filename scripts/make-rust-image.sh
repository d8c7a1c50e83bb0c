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
# Not for: foreign architectures, or a general Debian rootfs (no maintainer
# scripts run, no dpkg database).
#
# The package set is the dependency closure apt resolves from an empty dpkg
# status (`apt-get -s -o Dir::State::status=/dev/null install`, no
# recommends): nothing the host has installed changes it. The same package
# versions and busybox give the same bytes on every run and machine: modes
# are set explicitly (directories 0755, files 0755 if any exec bit else
# 0644), and scripts/oci-layout-from-dir.sh normalises mtimes, owners and
# order.
#
# Cached: the .debs in $EIFBAKE_RUST_DEBS (default target/fixtures/rust-debs)
# and the finished layout in $EIFBAKE_RUST_IMAGE_DIR (default
# target/fixtures/rust-image)/KEY, KEY being the sha256 of this script, the
# busybox binary and the "name version" package list; OUTDIR is a copy. A
# second run with the same versions takes seconds; a build for new versions
# removes the older layouts of the same TAG and the .debs no longer used. Needs `apt-get update`
# done (scripts/deps.sh) the first time.
set -euo pipefail
export LC_ALL=C TZ=UTC

usage="usage: make-rust-image.sh OUTDIR [TAG]"
out=${1:?$usage}
tag=${2:-1.96}
here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$here/.." && pwd)
debs=${EIFBAKE_RUST_DEBS:-$root_dir/target/fixtures/rust-debs}
cache=${EIFBAKE_RUST_IMAGE_DIR:-$root_dir/target/fixtures/rust-image}
if [ -e "$out" ]; then
  echo "make-rust-image: $out already exists" >&2
  exit 2
fi

# closure -> "name version" lines, sorted: what `apt-get install` would unpack
# on a system with no package installed.
closure() {
  apt-get -s -q -o Dir::State::status=/dev/null -o APT::Install-Recommends=false \
    install rustc-web cargo-web gcc 2>/dev/null |
    awk '$1 == "Inst" { v = $3; gsub(/[()]/, "", v); print $2, v }' | sort
}

# download PKGLIST: every package of the list into $debs (kept between runs).
download() {
  mkdir -p "$debs"
  chmod 0755 "$debs" # apt-get download drops privileges to _apt, which must write here
  local missing=()
  local name version
  while read -r name version; do
    [ -s "$debs/$(deb_file "$name" "$version")" ] || missing+=("$name=$version")
  done < "$1"
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "make-rust-image: downloading ${#missing[@]} Debian packages into $debs" >&2
  if ! (cd "$debs" && apt-get download -q "${missing[@]}" >&2); then
    echo "make-rust-image: apt-get download failed (run scripts/deps.sh, or apt-get update)" >&2
    exit 2
  fi
}

# deb_file NAME VERSION: the file name apt-get download gives the package.
deb_file() {
  local file
  file=$(printf '%s_%s_' "$1" "${2//:/%3a}")
  for a in amd64 all; do
    if [ -e "$debs/$file$a.deb" ] || [ "$a" = all ]; then
      echo "$file$a.deb"
      return
    fi
  done
}

# build DEST PKGLIST: the rootfs (busybox fixture + every package) and its
# layout at DEST (written aside, then renamed: an interrupted run leaves none).
build() {
  local dest=$1 stage name version
  stage=$(mktemp -d "$(dirname "$dest")/.rust-image.XXXXXX")
  trap 'rm -rf "$stage"' RETURN
  "$here/make-busybox-image.sh" "$stage/busybox" > /dev/null
  local layer
  layer=$(grep -o '"layers":\[{[^]]*' "$stage/busybox/blobs/sha256/$(
    grep -o '"digest":"sha256:[0-9a-f]*' "$stage/busybox/index.json" | cut -d: -f3
  )" | grep -o 'sha256:[0-9a-f]*' | cut -d: -f2)
  mkdir "$stage/rootfs"
  tar -xzf "$stage/busybox/blobs/sha256/$layer" -C "$stage/rootfs"
  while read -r name version; do
    dpkg-deb -x "$debs/$(deb_file "$name" "$version")" "$stage/rootfs"
  done < "$2"
  ln -sf gcc "$stage/rootfs/usr/bin/cc"
  # Modes set explicitly (the debs' own, normalised), so no umask matters;
  # the busybox skeleton's special directories keep theirs.
  find "$stage/rootfs" -type d -exec chmod 0755 {} +
  find "$stage/rootfs" -type f -perm /111 -exec chmod 0755 {} +
  find "$stage/rootfs" -type f ! -perm /111 -exec chmod 0644 {} +
  chmod 0700 "$stage/rootfs/root"
  chmod 1777 "$stage/rootfs/tmp"
  "$here/oci-layout-from-dir.sh" "$stage/rootfs" "$stage/layout" "$tag" /bin/sh > /dev/null
  rm -rf "$dest"
  mv "$stage/layout" "$dest"
}

# prune PKGLIST: drop the layouts of older package versions (same TAG) and
# the .debs no longer in the list, so the cache under target/ does not grow
# with every Debian update.
prune() {
  local d f keep
  for d in "$cache"/*-"${key#*-}"; do
    [ "$d" = "$cache/$key" ] || rm -rf "$d"
  done
  keep=$(while read -r name version; do deb_file "$name" "$version"; done < "$1")
  for f in "$debs"/*.deb; do
    grep -qxF "$(basename "$f")" <<< "$keep" || rm -f "$f"
  done
}

pkgs=$(mktemp)
trap 'rm -f "$pkgs"' EXIT
closure > "$pkgs"
if ! grep -q '^rustc-web ' "$pkgs"; then
  echo "make-rust-image: apt cannot resolve rustc-web (is bookworm-security in the apt" \
    "sources? run apt-get update)" >&2
  exit 2
fi
key=$(cat "$0" "${BUSYBOX:-/bin/busybox}" "$pkgs" | sha256sum | cut -c1-32)
key=$key-$(printf '%s' "$tag" | tr -c 'A-Za-z0-9._-' _)
if [ ! -e "$cache/$key/index.json" ]; then
  download "$pkgs"
  mkdir -p "$cache"
  echo "make-rust-image: building the toolchain image ($(wc -l < "$pkgs") packages) into $cache/$key" >&2
  build "$cache/$key" "$pkgs"
  prune "$pkgs"
fi
cp -r "$cache/$key" "$out"
echo "sha256:$(grep -o '"digest":"sha256:[0-9a-f]*' "$out/index.json" | cut -d: -f3)"
