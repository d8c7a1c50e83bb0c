#!/usr/bin/env bash
# `make demo-apps` (scripts/demo-apps.sh): two real applications built
# reproducibly with no internet: recipes/rust-server (Rust, crates.io
# dependencies) and recipes/go-www (Go, files embedded with //go:embed and
# reported by sha256 in the manifest). Steps 3 to 5 run for each.
#
#  1. make the fixture images from Debian packages: busybox, the cloud
#     kernel, the demo's init, the Rust 1.96 toolchain
#     (scripts/make-rust-image.sh: rustc-web, cargo-web, gcc...) and the Go
#     1.19 toolchain (scripts/make-go-image.sh: golang-go), both cached under
#     target/fixtures/, and serve them from a loopback registry
#     (docker-registry) on 127.0.0.1:5055, the address the recipes name;
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
#     5057 forwarded to the server's 8080; fetch the app's pages with curl
#     and check they are its static files, byte for byte (for go-www, also
#     the sha256 the manifest reports for them).
#
# Everything goes under out/demo-apps/ (removed first). Exits non-zero on any
# failure, including two builds that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$root/out/demo-apps
bin=$root/target/release/eifbake
[ -x "$bin" ] || cargo build --release --locked
rm -rf "$work"
mkdir -p "$work/images"
reg=127.0.0.1:5055
crates_addr=127.0.0.1:5056
say() { printf '\n== %s\n' "$*"; }
# shellcheck source=scripts/demo-common.sh
. scripts/demo-common.sh
for port in 5055 5056 5057; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo-apps: port $port is in use; stop what listens there" >&2
    exit 2
  fi
done

say "fixture images (Debian's busybox-static, cloud kernel, rustc-web and cargo-web, golang-go)"
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
printf 'go toolchain image '
time scripts/make-go-image.sh "$work/images/golang" 1.19

say "loopback registry on $reg, crates on $crates_addr"
mkdir -p "$work/crates"
start_registry
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
  "recipes/rust-server/app/Cargo.lock")
busybox httpd -f -p "$crates_addr" -h "$work/crates" &
httpd_pid=$!
trap 'kill $registry_pid $httpd_pid 2>/dev/null || true' EXIT
printf '[cargo]\ndownload = "http://%s/{crate}/{crate}-{version}.crate"\n' "$crates_addr" > "$work/eifbake.toml"
export EIFBAKE_CONFIG=$work/eifbake.toml
push_demo_images busybox:1.35 kernel:6.1 init:1 rust:1.96 golang:1.19
echo "pushed busybox, linux-cloud, init, rust and golang; serving $(ls "$work/crates" | tr '\n' ' ')"


# demo RECIPE SERVED: steps 3 to 5 for recipes/RECIPE, its outputs under
# $work/RECIPE/. SERVED lists "URL FILE [REPORTED]" lines: what the enclave
# must serve (FILE under recipes/RECIPE/app), and the enclave path whose
# sha256 the manifest must report for it.
demo() {
  local recipe=$1 served=$2 w=$work/$1
  mkdir -p "$w"
  say "$recipe: eifbake lock"
  local lock=$w/$recipe.lock
  "$bin" lock "recipes/$recipe" --lockfile "$lock"
  grep -E '^\[|^(name|version|checksum|tree|manifest) =' "$lock"

  say "$recipe: build A (umask 022, TZ=UTC, LC_ALL=C, store $w/store-a)"
  (umask 022; TZ=UTC LC_ALL=C EIFBAKE_STORE=$w/store-a \
    "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$w/a")

  say "$recipe: build B (another directory, umask 077, TZ=Asia/Kathmandu, LC_ALL=C.UTF-8, fresh store, no cache)"
  local other=$w/elsewhere/checkout
  mkdir -p "$other"
  cp -r "recipes" "$other/recipes"
  rm -rf "$other/recipes/$recipe/app/target"
  (umask 077; cd "$other" && TZ=Asia/Kathmandu LC_ALL=C.UTF-8 LANG=C.UTF-8 EIFBAKE_STORE=$w/store-b \
    "$bin" build "recipes/$recipe" --lockfile "$lock" --out "$w/b" --no-cache)
  compare "$recipe" "$w"

  say "$recipe: eifbake verify: from the manifest alone (fresh store and directory)"
  "$bin" verify "$w/a/$recipe.manifest.json" --source "app=recipes/$recipe/app" \
    --pcrs "$w/a/$recipe.pcrs" --eif "$w/a/$recipe.eif"

  say "$recipe: the server in the enclave's ramdisk"
  "$bin" describe "$w/a/$recipe.eif" --extract "$w/sections" > /dev/null
  mkdir -p "$w/ramdisk"
  (cd "$w/ramdisk" && cat "$w"/sections/ramdisk* | cpio -id --quiet "usr/bin/$recipe")
  file "$w/ramdisk/usr/bin/$recipe" 2>/dev/null || ls -l "$w/ramdisk/usr/bin/$recipe"
  boot_and_fetch "$recipe" "$w" "$served"
}

# compare RECIPE DIR: builds A and B are the same bytes, or stop.
compare() {
  say "$1: compare"
  compare_builds demo-apps "$1" "$2"
  echo "identical: same EIF bytes, same PCRs"
}

# boot_and_fetch RECIPE DIR SERVED: boot build A under QEMU, fetch SERVED.
boot_and_fetch() {
  local recipe=$1 w=$2 url file reported sha want
  say "$recipe: boot under QEMU (TCG) with a network, fetch through 127.0.0.1:5057"
  scripts/qemu-net-overlay.sh "$EIFBAKE_KERNEL_DIR" "$w/qemu-net.cpio" "/usr/bin/$recipe"
  cat "$w"/sections/ramdisk* "$w/qemu-net.cpio" > "$w/initrd"
  # no_timer_check: a loaded host can make TCG too slow for the kernel's IO-APIC timer check.
  timeout 300 qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nodefaults \
    -serial stdio -monitor none -kernel "$w/sections/kernel" -initrd "$w/initrd" \
    -append "$(cat "$w/sections/cmdline") console=ttyS0 panic=-1 pci=conf1 no_timer_check" \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:5057-:8080 -device virtio-net-pci,netdev=n0 \
    < /dev/null > "$w/console.log" 2>&1 &
  qemu_pid=$!
  for _ in $(seq 240); do
    curl -fs -m 5 -o /dev/null http://127.0.0.1:5057/ && break
    sleep 1
  done
  grep -a -E "^(net-up|$recipe):" "$w/console.log" || true
  while read -r url file reported; do
    curl -fs -m 5 -o "$w/page" "http://127.0.0.1:5057$url" || true
    if ! cmp -s "$w/page" "recipes/$recipe/app/$file"; then
      echo "demo-apps: the enclave did not serve recipes/$recipe/app/$file at $url; console log:" >&2
      tail -40 "$w/console.log" >&2
      exit 1
    fi
    sha=sha256:$(sha256sum < "$w/page" | cut -d' ' -f1)
    echo "served $url: $sha, the same as recipes/$recipe/app/$file"
    [ -n "$reported" ] || continue
    want=$(grep -A1 "\"path\": \"$reported\"" "$w/a/$recipe.manifest.json" | grep -o 'sha256:[0-9a-f]*' || true)
    if [ "$want" != "$sha" ]; then
      echo "demo-apps: the manifest reports ${want:-nothing} for $reported, not $sha" >&2
      exit 1
    fi
    echo "  and the manifest reports $reported as $want"
  done <<< "$served"
  kill "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
}

qemu_pid=
trap 'kill $registry_pid $httpd_pid $qemu_pid 2>/dev/null || true' EXIT
demo rust-server "/ static/index.html"
demo go-www "/ static/index.html /usr/share/www/index.html
/style.css static/style.css /usr/share/www/style.css"
echo "demo-apps: done. Outputs in $work/rust-server/a and $work/go-www/a: NAME.eif, NAME.pcrs, NAME.manifest.json, NAME.provenance.json"
