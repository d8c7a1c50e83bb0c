#!/usr/bin/env bash
# qemu-net-overlay.sh KERNELDIR OUT.cpio [COMMAND]
#
# A newc cpio to append to an EIF's ramdisks when booting it under QEMU
# (pc machine, TCG) with user-mode networking and a virtio-net-pci device:
# Debian's cloud kernel has virtio-net as modules and an enclave has no
# network, so the overlay brings the modules (from the kernel package
# KERNELDIR/package names, as scripts/fetch-kernel.sh left it; cached in
# KERNELDIR/net-modules), /qemu/net-up (insmod them, eth0 = 10.0.2.15/24,
# QEMU's user-mode address, then exec COMMAND, default
# /usr/bin/rust-server), and a /cmd naming /qemu/net-up, which replaces the
# EIF's /cmd (the later archive wins). The kernel command line also needs
# `pci=conf1` appended: enclave command lines say `pci=off`.
#
# For boot tests and demos only: it changes what runs, so the measured EIF
# is untouched and nothing of this goes into it.
set -euo pipefail
export LC_ALL=C
usage="usage: qemu-net-overlay.sh KERNELDIR OUT.cpio [COMMAND]"
kdir=${1:?$usage}
out=${2:?$usage}
command=${3:-/usr/bin/rust-server}
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"
pkg=$(cat "$kdir/package")
mdir=$kdir/net-modules
if [ "$(cat "$mdir/package" 2>/dev/null)" != "$pkg" ]; then
  work=$(mktemp -d)
  chmod 0755 "$work" # apt-get download drops privileges to _apt
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -q "$pkg" >&2)
  dpkg-deb -x "$work"/*.deb "$work/x"
  rm -rf "$mdir.new"
  mkdir -p "$mdir.new"
  for m in $modules; do
    found=$(find "$work/x/lib/modules" -name "$m.ko")
    [ -n "$found" ] || { echo "qemu-net-overlay: $pkg has no $m.ko" >&2; exit 2; }
    cp "$found" "$mdir.new/"
  done
  echo "$pkg" > "$mdir.new/package"
  rm -rf "$mdir"
  mv "$mdir.new" "$mdir"
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/qemu"
for m in $modules; do cp "$mdir/$m.ko" "$stage/qemu/"; done
cat > "$stage/qemu/net-up" <<SH
#!/bin/sh
for m in $modules; do
  insmod /qemu/\$m.ko
done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "net-up: eth0 10.0.2.15/24, starting $command"
exec $command
SH
echo /qemu/net-up > "$stage/cmd"
chmod 0755 "$stage/qemu" "$stage/qemu/net-up"
chmod 0644 "$stage/cmd" "$stage"/qemu/*.ko
(cd "$stage" && find . -mindepth 1 | sort | cpio -o -H newc --quiet --reproducible) > "$out"
