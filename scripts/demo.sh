#!/usr/bin/env bash
# `make demo`: eifbake's main job, end to end, with no internet.
#
#  1. make the fixture images from Debian packages (busybox-static, the cloud
#     kernel) and the demo's init, and serve them from a loopback registry
#     (Debian's docker-registry) on 127.0.0.1:5055, the address
#     recipes/hello/recipe.toml names;
#  2. eifbake lock, then eifbake build in two directories, with two fresh
#     stores, different umask, TZ and locale, the second without the step cache;
#  3. show the two EIF sha256 and PCRs are equal, and that `eifbake verify`
#     rebuilds the same from the manifest alone;
#  4. boot the EIF's own kernel and ramdisks under QEMU (TCG) and print the
#     line the enclave's program writes to the console.
#
# Everything goes under out/demo/ (removed first). Exits non-zero on any
# failure, including two builds that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=$root/target/release/eifbake
[ -x "$bin" ] || cargo build --release --locked
work=$root/out/demo
rm -rf "$work"
mkdir -p "$work/images"
port=5055
reg=127.0.0.1:$port
say() { printf '\n== %s\n' "$*"; }

say "fixture images (from Debian's busybox-static and cloud kernel)"
export EIFBAKE_KERNEL_DIR=${EIFBAKE_KERNEL_DIR:-$root/target/fixtures/kernel}
scripts/make-busybox-image.sh "$work/images/busybox" 1.35
scripts/make-kernel-image.sh "$work/images/kernel" 6.1
init_root=$work/init-rootfs
mkdir -p "$init_root"
cp recipes/hello/init/init "$init_root/init"
chmod 0755 "$init_root" "$init_root/init"
scripts/oci-layout-from-dir.sh "$init_root" "$work/images/init" 1

say "loopback registry on $reg"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: port $port is in use; the demo recipe names 127.0.0.1:$port, stop what listens there" >&2
  exit 2
fi
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry/data } }
http: { addr: $reg }
YAML
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "http://$reg/v2/" > /dev/null && break
  sleep 0.1
done
for img in busybox:1.35 kernel:6.1 init:1; do
  name=${img%%:*} tag=${img##*:}
  repo=$name
  [ "$name" = kernel ] && repo=linux-cloud
  skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$work/images/$name:$tag" "docker://$reg/eifbake-demo/$repo:$tag"
done
echo "pushed busybox, linux-cloud and init"

say "eifbake lock"
lock=$work/hello.lock
"$bin" lock recipes/hello --lockfile "$lock"
cat "$lock"

say "build A (umask 022, TZ=UTC, LC_ALL=C, store $work/store-a)"
(umask 022; cd "$root" && TZ=UTC LC_ALL=C EIFBAKE_STORE=$work/store-a \
  "$bin" build recipes/hello --lockfile "$lock" --out "$work/a")

say "build B (another directory, umask 077, TZ=Asia/Kathmandu, LC_ALL=C.UTF-8, fresh store, no cache)"
other=$work/elsewhere/checkout
mkdir -p "$other"
cp -r recipes "$other/recipes"
(umask 077; cd "$other" && TZ=Asia/Kathmandu LC_ALL=C.UTF-8 LANG=C.UTF-8 EIFBAKE_STORE=$work/store-b \
  "$bin" build recipes/hello --lockfile "$lock" --out "$work/b" --no-cache)

say "compare"
a=$(sha256sum < "$work/a/hello.eif" | cut -d' ' -f1)
b=$(sha256sum < "$work/b/hello.eif" | cut -d' ' -f1)
echo "A  sha256:$a"
echo "B  sha256:$b"
sed 's/^/A  /' "$work/a/hello.pcrs"
sed 's/^/B  /' "$work/b/hello.pcrs"
if [ "$a" != "$b" ] || ! cmp -s "$work/a/hello.pcrs" "$work/b/hello.pcrs"; then
  echo "demo: the two builds differ:" >&2
  "$bin" diff "$work/a/hello.eif" "$work/b/hello.eif" >&2 || true
  exit 1
fi
"$bin" diff "$work/a/hello.eif" "$work/b/hello.eif"
echo "identical: same EIF bytes, same PCRs"

say "eifbake verify: a rebuilder's view, from the manifest alone (fresh store and directory)"
"$bin" verify "$work/a/hello.manifest.json" --source app=recipes/hello/app --pcrs "$work/a/hello.pcrs" \
  --eif "$work/a/hello.eif"

say "eifbake describe"
"$bin" describe "$work/a/hello.eif" --extract "$work/sections"

say "boot under QEMU (TCG): the EIF's kernel, cmdline and ramdisks"
cmdline=$(cat "$work/sections/cmdline")
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180} scripts/boot-qemu.sh "$work/sections/kernel" "$cmdline" \
  "$work"/sections/ramdisk* > "$work/console.log" 2>&1 || true
if grep -a "hello from the enclave" "$work/console.log"; then
  echo "demo: done. Outputs in $work/a: hello.eif, hello.pcrs, hello.manifest.json, hello.provenance.json"
else
  echo "demo: the enclave did not print its line; console log:" >&2
  tail -40 "$work/console.log" >&2
  exit 1
fi
