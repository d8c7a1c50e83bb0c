#!/usr/bin/env bash
# Install the Debian packages eifbake's tests, demo and benchmarks use.
# Idempotent: installs only what is missing; uses sudo when not root.
set -euo pipefail

PACKAGES=(
  # build
  build-essential pkg-config libssl-dev git ca-certificates
  # sources: url downloads (src/sources.rs)
  curl
  # formats' independent readers and writers
  cpio gzip pigz
  # OCI: registry, reference clients, runtimes
  docker-registry skopeo umoci crun runc
  # fixtures and boot tests
  busybox-static qemu-system-x86
  # benchmarks
  hyperfine time
)

# AWS's eif_build, the other EIF writer tests/verify.rs compares against
# (not in Debian; without --locked it does not compile against today's
# crates). Installed on a successful exit, after the Debian packages it
# builds with.
eif_build_after_packages() {
  local rc=$?
  [ "$rc" -eq 0 ] || exit "$rc"
  if ! command -v eif_build > /dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/eif_build" ]; then
    cargo install --locked eif_build
  fi
}
trap eif_build_after_packages EXIT

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all Debian packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
