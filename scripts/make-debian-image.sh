#!/usr/bin/env bash
# make-debian-image.sh [--link PATH=TARGET]... NAME OUTDIR TAG PACKAGE...
#
# A toolchain OCI image layout (tag TAG) for linux/amd64 made from Debian
# bookworm packages only: PACKAGE... and the dependency closure apt resolves
# for them, extracted with `dpkg-deb -x` on top of the busybox fixture rootfs
# (scripts/make-busybox-image.sh). Each --link makes PATH (relative to the
# root) a symlink to TARGET, for what Debian sets with update-alternatives,
# which never runs here (e.g. usr/bin/cc=gcc). Prints the manifest digest.
# scripts/make-rust-image.sh (the Rust toolchain) and the cross-compiler
# image of tests/aarch64.rs are made by it.
#
# Not for: images of another architecture than amd64, or a general Debian
# rootfs (no maintainer scripts run, no dpkg database).
#
# The package set is the dependency closure apt resolves from an empty dpkg
# status (`apt-get -s -o Dir::State::status=/dev/null install`, no
# recommends): nothing the host has installed changes it. The same package
# versions and busybox give the same bytes on every run and machine: modes
# are set explicitly (directories 0755, files 0755 if any exec bit else
# 0644), and scripts/oci-layout-from-dir.sh normalises mtimes, owners and
# order.
#
# Cached, per NAME: the .debs in $EIFBAKE_FIXTURES/NAME-debs and the
# finished layout in $EIFBAKE_FIXTURES/NAME-image/KEY ($EIFBAKE_FIXTURES
# defaults to target/fixtures), KEY being the sha256 of this script, the
# busybox binary, the links and the "name version" package list; OUTDIR is a
# copy. A second run with the same versions takes seconds; a build for new
# versions removes the older layouts of the same NAME and TAG and the .debs
# no longer used. Needs `apt-get update` done (scripts/deps.sh) the first
# time.
set -euo pipefail
export LC_ALL=C TZ=UTC

usage="usage: make-debian-image.sh [--link PATH=TARGET]... NAME OUTDIR TAG PACKAGE..."
links=()
while [ "${1:-}" = --link ]; do
  case "${2:-}" in
    ?*=?*) links+=("$2") ;;
    *)
      echo "make-debian-image: --link ${2:-}: expected PATH=TARGET" >&2
      exit 2
      ;;
  esac
  shift 2
done
cache_name=${1:?$usage}
out=${2:?$usage}
tag=${3:?$usage}
shift 3
[ "$#" -gt 0 ] || { echo "$usage" >&2; exit 2; }
packages=("$@")
case "$cache_name" in
  *[!A-Za-z0-9._-]*)
    echo "make-debian-image: NAME $cache_name: expected letters, digits, . _ -" >&2
    exit 2
    ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$here/.." && pwd)
fixtures=${EIFBAKE_FIXTURES:-$root_dir/target/fixtures}
debs=$fixtures/$cache_name-debs
cache=$fixtures/$cache_name-image
if [ -e "$out" ]; then
  echo "make-debian-image: $out already exists" >&2
  exit 2
fi

# closure -> "name version" lines, sorted: what `apt-get install` would unpack
# on a system with no package installed.
closure() {
  apt-get -s -q -o Dir::State::status=/dev/null -o APT::Install-Recommends=false \
    install "${packages[@]}" 2>/dev/null |
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
  echo "make-debian-image: downloading ${#missing[@]} Debian packages into $debs" >&2
  if ! (cd "$debs" && apt-get download -q "${missing[@]}" >&2); then
    echo "make-debian-image: apt-get download failed (run scripts/deps.sh, or apt-get update)" >&2
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
  stage=$(mktemp -d "$(dirname "$dest")/.$cache_name-image.XXXXXX")
  # Removed when build returns; the trap then unsets itself, or it would fire
  # again on the next function's return, where $stage is no longer set.
  trap 'rm -rf "$stage"; trap - RETURN' RETURN
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
  local link
  for link in "${links[@]}"; do
    ln -sfn "${link#*=}" "$stage/rootfs/${link%%=*}"
  done
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
for p in "${packages[@]}"; do
  if ! grep -q "^${p%%=*} " "$pkgs"; then
    echo "make-debian-image: apt cannot resolve $p (is the suite that has it in the apt" \
      "sources? run scripts/deps.sh, or apt-get update)" >&2
    exit 2
  fi
done
key=$( (cat "$0" "${BUSYBOX:-/bin/busybox}" "$pkgs" && printf '%s\n' "${links[@]}") | sha256sum | cut -c1-32)
key=$key-$(printf '%s' "$tag" | tr -c 'A-Za-z0-9._-' _)
if [ ! -e "$cache/$key/index.json" ]; then
  download "$pkgs"
  mkdir -p "$cache"
  echo "make-debian-image: building the $cache_name image ($(wc -l < "$pkgs") packages) into $cache/$key" >&2
  build "$cache/$key" "$pkgs"
  prune "$pkgs"
fi
cp -r "$cache/$key" "$out"
echo "sha256:$(grep -o '"digest":"sha256:[0-9a-f]*' "$out/index.json" | cut -d: -f3)"
