#!/usr/bin/env bash
# `make demo` (scripts/demo.sh) and `make demo-arm64` (scripts/demo.sh arm64):
# eifbake's main job, end to end, with no internet.
#
#  1. make the fixture images from Debian packages (busybox-static, the cloud
#     kernel) and the demo's init, and serve them from a loopback registry
#     (Debian's docker-registry) on 127.0.0.1:5055, the address
#     recipes/hello/recipe.toml and recipes/hello-arm64/recipe.toml name; for
#     arm64 each image is multi-platform (an index over an amd64 and an arm64
#     manifest) and the demo shows that the two recipes lock the same
#     references to different platforms;
#  2. eifbake lock, then eifbake build in two directories, with two fresh
#     stores, different umask, TZ and locale, the second without the step
#     cache, both signed with a throwaway P-384 key (PCR8);
#  3. show the two EIF sha256 and PCRs are equal (signing is deterministic),
#     and that `eifbake verify` rebuilds the same from the manifest alone,
#     with no key;
#  4. boot the EIF's own kernel and ramdisks under QEMU (TCG;
#     qemu-system-aarch64 -M virt for arm64) and print the line the enclave's
#     program writes to the console.
#
# Everything goes under out/demo/ (out/demo-arm64/ for arm64; removed first).
# Exits non-zero on any failure, including two builds that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
arch=${1:-amd64}
case "$arch" in
  amd64) recipe=hello work=$root/out/demo sources=(--source app=recipes/hello/app) ;;
  arm64) recipe=hello-arm64 work=$root/out/demo-arm64 sources=() ;;
  *)
    echo "usage: scripts/demo.sh [amd64|arm64]" >&2
    exit 2
    ;;
esac
bin=$root/target/release/eifbake
[ -x "$bin" ] || cargo build --release --locked
rm -rf "$work"
mkdir -p "$work/images"
port=5055
reg=127.0.0.1:$port
say() { printf '\n== %s\n' "$*"; }
# shellcheck source=scripts/demo-common.sh
. scripts/demo-common.sh

say "fixture images (from Debian's busybox-static and cloud kernel)"
export EIFBAKE_KERNEL_DIR=${EIFBAKE_KERNEL_DIR:-$root/target/fixtures/kernel}
export EIFBAKE_BUSYBOX_DIR=${EIFBAKE_BUSYBOX_DIR:-$root/target/fixtures/busybox}
init_root=$work/init-rootfs
mkdir -p "$init_root"
cp recipes/hello/init/init "$init_root/init"
chmod 0755 "$init_root" "$init_root/init"
if [ "$arch" = amd64 ]; then
  scripts/make-busybox-image.sh "$work/images/busybox" 1.35
  scripts/make-kernel-image.sh "$work/images/kernel" 6.1
  scripts/oci-layout-from-dir.sh "$init_root" "$work/images/init" 1
else
  # One image per platform, then an index over both, as multi-platform tags are published.
  for a in amd64 arm64; do
    scripts/make-busybox-image.sh --arch "$a" "$work/images/busybox-$a" 1.35 > /dev/null
    scripts/make-kernel-image.sh --arch "$a" "$work/images/kernel-$a" 6.1 > /dev/null
    scripts/oci-layout-from-dir.sh --arch "$a" "$init_root" "$work/images/init-$a" 1 > /dev/null
  done
  for img in busybox:1.35 kernel:6.1 init:1; do
    name=${img%%:*} tag=${img##*:}
    printf '%s index ' "$name"
    scripts/oci-index.sh "$work/images/$name" "$tag" "$work/images/$name-amd64" "$work/images/$name-arm64"
  done
fi

say "loopback registry on $reg"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: port $port is in use; the demo recipe names 127.0.0.1:$port, stop what listens there" >&2
  exit 2
fi
start_registry
push_demo_images --all busybox:1.35 kernel:6.1 init:1
echo "pushed busybox, linux-cloud and init"

say "eifbake lock"
lock=$work/$recipe.lock
"$bin" lock "recipes/$recipe" --lockfile "$lock"
cat "$lock"
if [ "$arch" = arm64 ]; then
  say "the same references, locked by recipes/hello (arch x86_64 by default)"
  "$bin" lock recipes/hello --lockfile "$work/hello.lock" > /dev/null
  grep -E '^\[images|^(index|manifest|platform) =' "$work/hello.lock"
fi

say "a throwaway signing key: ECDSA P-384, a self-signed certificate valid for a day"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/demo.key"
openssl req -x509 -new -key "$work/demo.key" -subj "/CN=eifbake demo signer" -days 1 -sha384 \
  -addext keyUsage=critical,digitalSignature -out "$work/demo.pem"
sign=(--signing-certificate "$work/demo.pem" --private-key "$work/demo.key")

say "build A, signed (umask 022, TZ=UTC, LC_ALL=C, store $work/store-a)"
(umask 022; cd "$root" && TZ=UTC LC_ALL=C EIFBAKE_STORE=$work/store-a \
  "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$work/a" "${sign[@]}")

say "build B, signed with the same key (another directory, umask 077, TZ=Asia/Kathmandu, LC_ALL=C.UTF-8, fresh store, no cache)"
other=$work/elsewhere/checkout
mkdir -p "$other"
cp -r recipes "$other/recipes"
(umask 077; cd "$other" && TZ=Asia/Kathmandu LC_ALL=C.UTF-8 LANG=C.UTF-8 EIFBAKE_STORE=$work/store-b \
  "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$work/b" --no-cache "${sign[@]}")

say "compare"
compare_builds demo "$recipe" "$work"
"$bin" diff "$work/a/$recipe.eif" "$work/b/$recipe.eif"
echo "identical: same signed EIF bytes, same PCRs (PCR8 included): the signature is deterministic"

say "eifbake verify: a rebuilder's view, from the manifest alone (fresh store and directory, no key)"
"$bin" verify "$work/a/$recipe.manifest.json" "${sources[@]}" --pcrs "$work/a/$recipe.pcrs" \
  --eif "$work/a/$recipe.eif"

say "eifbake describe"
"$bin" describe "$work/a/$recipe.eif" --extract "$work/sections"

say "boot under QEMU (TCG, $arch): the EIF's kernel, cmdline and ramdisks"
cmdline=$(cat "$work/sections/cmdline")
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180} scripts/boot-qemu.sh --arch "$arch" "$work/sections/kernel" "$cmdline" \
  "$work"/sections/ramdisk* > "$work/console.log" 2>&1 || true
if grep -a "hello from the enclave" "$work/console.log"; then
  echo "demo: done. Outputs in $work/a: $recipe.eif, $recipe.pcrs, $recipe.manifest.json, $recipe.provenance.json"
else
  echo "demo: the enclave did not print its line; console log:" >&2
  tail -40 "$work/console.log" >&2
  exit 1
fi
