#!/usr/bin/env bash
# oci-index.sh OUTDIR TAG LAYOUT...
#
# A multi-platform image: an OCI image layout at OUTDIR (created; must not
# exist) whose tag TAG names an image index over the one manifest of each
# LAYOUT (as oci-layout-from-dir.sh writes them: one manifest with its
# platform in index.json), in the order given. The blobs are copied; the
# index is written by this script with fixed key order, so the same layouts
# give the same index digest. Push it whole with `skopeo copy --all`.
# Prints the index digest.
set -euo pipefail
export LC_ALL=C

usage="usage: oci-index.sh OUTDIR TAG LAYOUT..."
out=${1:?$usage}
tag=${2:?$usage}
shift 2
if [ "$#" -eq 0 ]; then
  echo "oci-index: give at least one layout" >&2
  exit 2
fi
if [ -e "$out" ]; then
  echo "oci-index: $out already exists" >&2
  exit 2
fi

tmp=$(mktemp -d "$(dirname "$out")/.oci-index.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/blobs/sha256"
entries=""
sep=""
for layout in "$@"; do
  # The layout's one manifest descriptor, without its ref-name annotation.
  desc=$(sed -n 's/^{"schemaVersion":2,"mediaType":"application\/vnd.oci.image.index.v1+json","manifests":\[\({"mediaType":"application\/vnd.oci.image.manifest.v1+json","digest":"sha256:[0-9a-f]*","size":[0-9]*,"platform":{"architecture":"[a-z0-9]*","os":"linux"}\),"annotations":{[^}]*}}\]}$/\1}/p' "$layout/index.json")
  if [ -z "$desc" ]; then
    echo "oci-index: $layout/index.json is not a one-manifest layout written by oci-layout-from-dir.sh" >&2
    exit 2
  fi
  cp -n "$layout"/blobs/sha256/* "$tmp/blobs/sha256/"
  entries+="$sep$desc"
  sep=","
done

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
  "$entries" > "$tmp/index.blob"
hex=$(sha256sum "$tmp/index.blob" | cut -d' ' -f1)
size=$(stat -c %s "$tmp/index.blob")
mv "$tmp/index.blob" "$tmp/blobs/sha256/$hex"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$hex" "$size" "$tag" > "$tmp/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci-layout"

mv "$tmp" "$out"
trap - EXIT
echo "sha256:$hex"
