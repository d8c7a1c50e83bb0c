# debian-image.sh: sourced, never run. The body of the toolchain image
# scripts (scripts/make-rust-image.sh, scripts/make-go-image.sh): an OCI
# image layout for linux/amd64 made of the busybox fixture rootfs
# (scripts/make-busybox-image.sh) with Debian bookworm packages unpacked on
# top by `dpkg-deb -x`. The caller sets, then calls `debian_image OUTDIR TAG`:
#
#   image_name  short name: messages, the stage directory, the default
#               cache directories target/fixtures/NAME-debs and NAME-image
#   packages    what to install (apt resolves their dependency closure)
#   required    one package the closure must contain, else stop
#   hint        what to tell the user when it does not
#   debs_dir, image_dir   the two cache directories
#   customise   a function called with the rootfs after unpacking (what a
#               maintainer script would have done that the image needs)
#
# Prints the manifest digest of OUTDIR's image.
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
# Cached: the .debs in debs_dir and the finished layout in image_dir/KEY,
# KEY being the sha256 of the calling script, this file, the busybox binary
# and the "name version" package list, then the TAG; OUTDIR is a copy. A
# second run with the same versions takes seconds; a build for new versions
# removes the older layouts of the same TAG and the .debs no longer used
# (so each image needs its own debs_dir). Needs `apt-get update` done
# (scripts/deps.sh) the first time.

debian_image_lib=${BASH_SOURCE[0]}
debian_image_here=$(cd "$(dirname "$debian_image_lib")" && pwd)
# Temporary files and directories, removed on exit whatever happens.
debian_image_scratch=()
trap 'rm -rf "${debian_image_scratch[@]}"' EXIT

# closure -> "name version" lines, sorted: what `apt-get install` would unpack
# on a system with no package installed.
closure() {
  # shellcheck disable=SC2086 # $packages is a list of names
  apt-get -s -q -o Dir::State::status=/dev/null -o APT::Install-Recommends=false \
    install $packages 2>/dev/null |
    awk '$1 == "Inst" { v = $3; gsub(/[()]/, "", v); print $2, v }' | sort
}

# download PKGLIST: every package of the list into $debs_dir (kept between runs).
download() {
  mkdir -p "$debs_dir"
  chmod 0755 "$debs_dir" # apt-get download drops privileges to _apt, which must write here
  local missing=()
  local name version
  while read -r name version; do
    [ -s "$debs_dir/$(deb_file "$name" "$version")" ] || missing+=("$name=$version")
  done < "$1"
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "make-$image_name-image: downloading ${#missing[@]} Debian packages into $debs_dir" >&2
  if ! (cd "$debs_dir" && apt-get download -q "${missing[@]}" >&2); then
    echo "make-$image_name-image: apt-get download failed (run scripts/deps.sh, or apt-get update)" >&2
    exit 2
  fi
}

# deb_file NAME VERSION: the file name apt-get download gives the package.
deb_file() {
  local file
  file=$(printf '%s_%s_' "$1" "${2//:/%3a}")
  for a in amd64 all; do
    if [ -e "$debs_dir/$file$a.deb" ] || [ "$a" = all ]; then
      echo "$file$a.deb"
      return
    fi
  done
}

# build DEST PKGLIST TAG: the rootfs (busybox fixture + every package) and
# its layout at DEST (written aside, then renamed: an interrupted run leaves
# none).
build() {
  local dest=$1 stage name version
  stage=$(mktemp -d "$(dirname "$dest")/.$image_name-image.XXXXXX")
  debian_image_scratch+=("$stage")
  "$debian_image_here/make-busybox-image.sh" "$stage/busybox" > /dev/null
  local layer
  layer=$(grep -o '"layers":\[{[^]]*' "$stage/busybox/blobs/sha256/$(
    grep -o '"digest":"sha256:[0-9a-f]*' "$stage/busybox/index.json" | cut -d: -f3
  )" | grep -o 'sha256:[0-9a-f]*' | cut -d: -f2)
  mkdir "$stage/rootfs"
  tar -xzf "$stage/busybox/blobs/sha256/$layer" -C "$stage/rootfs"
  while read -r name version; do
    dpkg-deb -x "$debs_dir/$(deb_file "$name" "$version")" "$stage/rootfs"
  done < "$2"
  customise "$stage/rootfs"
  # Modes set explicitly (the debs' own, normalised), so no umask matters;
  # the busybox skeleton's special directories keep theirs.
  find "$stage/rootfs" -type d -exec chmod 0755 {} +
  find "$stage/rootfs" -type f -perm /111 -exec chmod 0755 {} +
  find "$stage/rootfs" -type f ! -perm /111 -exec chmod 0644 {} +
  chmod 0700 "$stage/rootfs/root"
  chmod 1777 "$stage/rootfs/tmp"
  "$debian_image_here/oci-layout-from-dir.sh" "$stage/rootfs" "$stage/layout" "$3" /bin/sh > /dev/null
  rm -rf "$dest"
  mv "$stage/layout" "$dest"
}

# prune PKGLIST KEY: drop the layouts of older package versions (same TAG)
# and the .debs no longer in the list, so the cache under target/ does not
# grow with every Debian update.
prune() {
  local d f keep key=$2
  for d in "$image_dir"/*-"${key#*-}"; do
    [ "$d" = "$image_dir/$key" ] || rm -rf "$d"
  done
  keep=$(while read -r name version; do deb_file "$name" "$version"; done < "$1")
  for f in "$debs_dir"/*.deb; do
    grep -qxF "$(basename "$f")" <<< "$keep" || rm -f "$f"
  done
}

# debian_image OUTDIR TAG: the cached layout for the current package
# versions (built when missing), copied to OUTDIR; prints its digest.
debian_image() {
  local out=$1 tag=$2 pkgs key
  export LC_ALL=C TZ=UTC
  if [ -e "$out" ]; then
    echo "make-$image_name-image: $out already exists" >&2
    exit 2
  fi
  pkgs=$(mktemp)
  debian_image_scratch+=("$pkgs")
  closure > "$pkgs"
  if ! grep -q "^$required " "$pkgs"; then
    echo "make-$image_name-image: apt cannot resolve $required ($hint)" >&2
    exit 2
  fi
  key=$(cat "$0" "$debian_image_lib" "${BUSYBOX:-/bin/busybox}" "$pkgs" | sha256sum | cut -c1-32)
  key=$key-$(printf '%s' "$tag" | tr -c 'A-Za-z0-9._-' _)
  if [ ! -e "$image_dir/$key/index.json" ]; then
    download "$pkgs"
    mkdir -p "$image_dir"
    echo "make-$image_name-image: building the toolchain image ($(wc -l < "$pkgs") packages) into $image_dir/$key" >&2
    build "$image_dir/$key" "$pkgs" "$tag"
    prune "$pkgs" "$key"
  fi
  cp -r "$image_dir/$key" "$out"
  echo "sha256:$(grep -o '"digest":"sha256:[0-9a-f]*' "$out/index.json" | cut -d: -f3)"
}
