#!/usr/bin/env bash
# Install the Debian packages eifbake's tests, demo and benchmarks use.
# Idempotent: installs only what is missing; uses sudo when not root.
# Usage: scripts/deps.sh [--with-eif-build]
set -euo pipefail

PACKAGES=(
  # build
  build-essential pkg-config libssl-dev git ca-certificates
  # the demo and benchmarks poll their loopback registry (eifbake itself
  # downloads with its own HTTP client and needs no curl)
  curl
  # formats' independent readers and writers
  cpio gzip pigz
  # OCI: registry, reference clients, runtimes
  docker-registry skopeo umoci crun runc
  # the independent Containerfile builder tests/containerfile.rs compares
  # against, and the peer of the application benchmarks (bench/src/sections/apps.rs)
  buildah
  # rootless steps: newuidmap/newgidmap for subordinate ids (tests/rootless.rs)
  uidmap
  # fetch steps (network = true): pasta, the user-mode network (src/sandbox/network.rs)
  passt
  # fixtures and boot tests (qemu-system-arm has qemu-system-aarch64)
  busybox-static qemu-system-x86 qemu-system-arm
  # the demo's throwaway signing key; scripts/make-test-signing-keys.sh;
  # the external ES384 signer of the detached-signing tests (tests/key_custody.rs)
  openssl
  # a PKCS#11 token for the HSM signing tests (tests/key_custody.rs, tests/verify.rs)
  softhsm2
  # benchmarks
  hyperfine
)

# The tests and demos boot both architectures: they download Debian's amd64
# and arm64 kernels and busybox-static with apt-get download, which needs the
# package lists of the architecture that is not the host's. Nothing of it is
# installed.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need_update=0
for arch in amd64 arm64; do
  if [ "$(dpkg --print-architecture)" != "$arch" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "deps: dpkg --add-architecture $arch"
    $SUDO dpkg --add-architecture "$arch"
    need_update=1
  fi
done

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "$need_update" -eq 1 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all Debian packages present"
else
  echo "deps: installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --with-eif-build: also AWS's eif_build (crates.io, not Debian), the other
# EIF writer that tests/verify.rs and the benchmarks compare against. It goes
# to target/tools/bin; without --locked it does not compile against today's
# crates.
if [ "${1:-}" = "--with-eif-build" ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)/target/tools
  if [ ! -x "$root/bin/eif_build" ]; then
    echo "deps: cargo install --locked eif_build --version 0.2.1 --root $root"
    cargo install --quiet --locked eif_build --version 0.2.1 --root "$root"
  fi
fi
