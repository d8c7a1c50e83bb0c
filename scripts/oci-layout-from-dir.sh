#!/usr/bin/env bash
# oci-layout-from-dir.sh [--arch ARCH] ROOTFS OUTDIR TAG [CMD...]
#
# Write a one-layer OCI image layout to OUTDIR (created; must not exist) whose
# layer holds the tree ROOTFS, tagged TAG (index annotation
# org.opencontainers.image.ref.name), for linux/ARCH (an OCI architecture:
# amd64, the default, or arm64; the config and the index entry say it). Deterministic: entries
# sorted by name, mtime 0, owner and group 0, GNU tar format (no pax times),
# `gzip -n`, JSON written by this script with fixed key order and no creation
# time, so the same ROOTFS gives the same digests on every run. The modes in
# ROOTFS are kept as they are: callers set them explicitly.
set -euo pipefail
export LC_ALL=C TZ=UTC

usage="usage: oci-layout-from-dir.sh [--arch ARCH] ROOTFS OUTDIR TAG [CMD...]"
arch=amd64
if [ "${1:-}" = --arch ]; then
  arch=${2:?$usage}
  shift 2
fi
case "$arch" in
  amd64 | arm64) ;;
  *)
    echo "oci-layout-from-dir: --arch $arch: expected amd64 or arm64" >&2
    exit 2
    ;;
esac
rootfs=${1:?$usage}
out=${2:?$usage}
tag=${3:?$usage}
shift 3
if [ -e "$out" ]; then
  echo "oci-layout-from-dir: $out already exists" >&2
  exit 2
fi

tmp=$(mktemp -d "$(dirname "$out")/.oci-layout.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/blobs/sha256"

# blob FILE -> moves FILE into blobs/sha256/<hex>, prints "<hex> <size>"
blob() {
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$tmp/blobs/sha256/$hex"
  echo "$hex $size"
}

json_str() { # a JSON string literal (names here are plain ASCII paths)
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

tar --create --file="$tmp/layer.tar" --directory="$rootfs" \
  --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu .
diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$tmp/layer.tar"
read -r layer_hex layer_size < <(blob "$tmp/layer.tar.gz")

cmd_json="[]"
if [ "$#" -gt 0 ]; then
  cmd_json="["
  sep=""
  for a in "$@"; do cmd_json+="$sep$(json_str "$a")"; sep=","; done
  cmd_json+="]"
fi
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$arch" "$cmd_json" "$diff_id" > "$tmp/config.json"
read -r config_hex config_size < <(blob "$tmp/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_hex" "$config_size" "$layer_hex" "$layer_size" > "$tmp/manifest.json"
read -r manifest_hex manifest_size < <(blob "$tmp/manifest.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":%s}}]}' \
  "$manifest_hex" "$manifest_size" "$arch" "$(json_str "$tag")" > "$tmp/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci-layout"

mv "$tmp" "$out"
trap - EXIT
echo "sha256:$manifest_hex"
