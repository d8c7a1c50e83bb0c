#!/usr/bin/env bash
# `make demo-apps` (scripts/demo-apps.sh): a real Rust application with
# crates.io dependencies, recipes/rust-server, built reproducibly with no
# internet.
#
#  1. make the fixture images from Debian packages: busybox, the cloud
#     kernel, the demo's init, and the Rust 1.96 toolchain
#     (scripts/make-rust-image.sh: rustc-web, cargo-web, gcc...; cached under
#     target/fixtures/), and serve them from a loopback registry
#     (docker-registry) on 127.0.0.1:5055, the address the recipe names;
#  2. serve the app's crates (httparse, itoa: eifbake's own dependencies, so
#     in ~/.cargo/registry/cache after building eifbake) from a loopback HTTP
#     server (busybox httpd) on 127.0.0.1:5056, named by the eifbake config
#     file's `[cargo] download`;
#  3. eifbake lock, then eifbake build in two directories with two fresh
#     stores, different umask, TZ and locale, the second without the step
#     cache; compare the EIFs and PCRs;
#  4. eifbake verify from the manifest alone; show that the server binary is
#     statically linked;
#  5. boot the EIF's kernel and ramdisk under QEMU (TCG) with user-mode
#     networking, a test-only overlay that loads virtio-net and sets up eth0
#     (scripts/qemu-net-overlay.sh: an enclave has no network), and port
#     5057 forwarded to the server's 8080; fetch / with curl and check it is
#     the app's static/index.html.
#
# Everything goes under out/demo-apps/ (removed first). Exits non-zero on any
# failure, including two builds that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
recipe=rust-server
work=$root/out/demo-apps
bin=$root/target/release/eifbake
[ -x "$bin" ] || cargo build --release --locked
rm -rf "$work"
mkdir -p "$work/images"
reg=127.0.0.1:5055
crates_addr=127.0.0.1:5056
say() { printf '\n== %s\n' "$*"; }
for port in 5055 5056 5057; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo-apps: port $port is in use; stop what listens there" >&2
    exit 2
  fi
done

say "fixture images (Debian's busybox-static, cloud kernel, rustc-web and cargo-web)"
export EIFBAKE_KERNEL_DIR=${EIFBAKE_KERNEL_DIR:-$root/target/fixtures/kernel}
init_root=$work/init-rootfs
mkdir -p "$init_root"
cp recipes/hello/init/init "$init_root/init"
chmod 0755 "$init_root" "$init_root/init"
scripts/make-busybox-image.sh "$work/images/busybox" 1.35 > /dev/null
scripts/make-kernel-image.sh "$work/images/kernel" 6.1 > /dev/null
scripts/oci-layout-from-dir.sh "$init_root" "$work/images/init" 1 > /dev/null
printf 'rust toolchain image '
time scripts/make-rust-image.sh "$work/images/rust" 1.96

say "loopback registry on $reg, crates on $crates_addr"
mkdir -p "$work/registry" "$work/crates"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry/data } }
http: { addr: $reg }
YAML
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
# The app's crates, from the host's cargo cache, at /NAME/NAME-VERSION.crate.
cache=${CARGO_HOME:-$HOME/.cargo}/registry/cache
while read -r name version; do
  mkdir -p "$work/crates/$name"
  file=$(ls "$cache"/*/"$name-$version.crate" 2>/dev/null | head -1)
  if [ -z "$file" ]; then
    echo "demo-apps: $name-$version.crate is not in $cache/*/; build eifbake with cargo first" >&2
    exit 2
  fi
  cp "$file" "$work/crates/$name/"
done < <(awk -F'"' '/^name = /{n=$2} /^version = /{v=$2} /^source = "registry/{print n, v}' \
  "recipes/$recipe/app/Cargo.lock")
busybox httpd -f -p "$crates_addr" -h "$work/crates" &
httpd_pid=$!
trap 'kill $registry_pid $httpd_pid 2>/dev/null || true' EXIT
printf '[cargo]\ndownload = "http://%s/{crate}/{crate}-{version}.crate"\n' "$crates_addr" > "$work/eifbake.toml"
export EIFBAKE_CONFIG=$work/eifbake.toml
for _ in $(seq 100); do
  curl -fs "http://$reg/v2/" > /dev/null && break
  sleep 0.1
done
for img in busybox:1.35 kernel:6.1 init:1 rust:1.96; do
  name=${img%%:*} tag=${img##*:}
  repo=$name
  [ "$name" = kernel ] && repo=linux-cloud
  skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$work/images/$name:$tag" "docker://$reg/eifbake-demo/$repo:$tag"
done
echo "pushed busybox, linux-cloud, init and rust; serving $(ls "$work/crates" | tr '\n' ' ')"

say "eifbake lock"
lock=$work/$recipe.lock
"$bin" lock "recipes/$recipe" --lockfile "$lock"
grep -E '^\[|^(name|version|checksum|tree|manifest) =' "$lock"

say "build A (umask 022, TZ=UTC, LC_ALL=C, store $work/store-a)"
(umask 022; TZ=UTC LC_ALL=C EIFBAKE_STORE=$work/store-a \
  "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$work/a")

say "build B (another directory, umask 077, TZ=Asia/Kathmandu, LC_ALL=C.UTF-8, fresh store, no cache)"
other=$work/elsewhere/checkout
mkdir -p "$other"
cp -r "recipes" "$other/recipes"
rm -rf "$other/recipes/$recipe/app/target"
(umask 077; cd "$other" && TZ=Asia/Kathmandu LC_ALL=C.UTF-8 LANG=C.UTF-8 EIFBAKE_STORE=$work/store-b \
  "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$work/b" --no-cache)

say "compare"
a=$(sha256sum < "$work/a/$recipe.eif" | cut -d' ' -f1)
b=$(sha256sum < "$work/b/$recipe.eif" | cut -d' ' -f1)
echo "A  sha256:$a"
echo "B  sha256:$b"
sed 's/^/A  /' "$work/a/$recipe.pcrs"
sed 's/^/B  /' "$work/b/$recipe.pcrs"
if [ "$a" != "$b" ] || ! cmp -s "$work/a/$recipe.pcrs" "$work/b/$recipe.pcrs"; then
  echo "demo-apps: the two builds differ:" >&2
  "$bin" diff "$work/a/$recipe.eif" "$work/b/$recipe.eif" >&2 || true
  exit 1
fi
echo "identical: same EIF bytes, same PCRs"

say "eifbake verify: from the manifest alone (fresh store and directory; the crates downloaded again)"
"$bin" verify "$work/a/$recipe.manifest.json" --source "app=recipes/$recipe/app" \
  --pcrs "$work/a/$recipe.pcrs" --eif "$work/a/$recipe.eif"

say "the server in the enclave's ramdisk"
"$bin" describe "$work/a/$recipe.eif" --extract "$work/sections" > /dev/null
mkdir -p "$work/ramdisk"
(cd "$work/ramdisk" && cat "$work"/sections/ramdisk* | cpio -id --quiet usr/bin/rust-server)
file "$work/ramdisk/usr/bin/rust-server" 2>/dev/null || ls -l "$work/ramdisk/usr/bin/rust-server"

say "boot under QEMU (TCG) with a network, fetch the page through 127.0.0.1:5057"
scripts/qemu-net-overlay.sh "$EIFBAKE_KERNEL_DIR" "$work/qemu-net.cpio"
cat "$work"/sections/ramdisk* "$work/qemu-net.cpio" > "$work/initrd"
timeout 300 qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nodefaults \
  -serial stdio -monitor none -kernel "$work/sections/kernel" -initrd "$work/initrd" \
  -append "$(cat "$work/sections/cmdline") console=ttyS0 panic=-1 pci=conf1" \
  -netdev user,id=n0,hostfwd=tcp:127.0.0.1:5057-:8080 -device virtio-net-pci,netdev=n0 \
  < /dev/null > "$work/console.log" 2>&1 &
qemu_pid=$!
trap 'kill $registry_pid $httpd_pid $qemu_pid 2>/dev/null || true' EXIT
for _ in $(seq 240); do
  curl -fs -m 5 -o "$work/page.html" http://127.0.0.1:5057/ && break
  sleep 1
done
grep -a -E '^(net-up|rust-server):' "$work/console.log" || true
if ! cmp -s "$work/page.html" "recipes/$recipe/app/static/index.html"; then
  echo "demo-apps: the enclave did not serve recipes/$recipe/app/static/index.html; console log:" >&2
  tail -40 "$work/console.log" >&2
  exit 1
fi
echo "served: sha256:$(sha256sum < "$work/page.html" | cut -d' ' -f1), the same as recipes/$recipe/app/static/index.html"
echo "demo-apps: done. Outputs in $work/a: $recipe.eif, $recipe.pcrs, $recipe.manifest.json, $recipe.provenance.json"
