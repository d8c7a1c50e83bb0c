#!/usr/bin/env bash
# boot-qemu.sh [--arch ARCH] KERNEL CMDLINE RAMDISK... : boot a kernel with
# the given ramdisks (concatenated into one initrd, as Linux allows) under
# QEMU with TCG, print the serial console on stdout, and stop when the guest
# powers off or after $BOOT_TIMEOUT seconds (default 120; exit 124 then).
#
# ARCH is amd64 (the default: qemu-system-x86_64, a bzImage, console ttyS0)
# or arm64 (qemu-system-aarch64 -M virt -cpu cortex-a72: an arm64 Image,
# console ttyAMA0). `console=<that> panic=-1` is appended to CMDLINE, so the
# console is QEMU's serial port whatever CMDLINE says and a panic ends the
# boot. KVM is not used: on the machines this project is built on it stalls.
set -euo pipefail

usage="usage: boot-qemu.sh [--arch amd64|arm64] KERNEL CMDLINE RAMDISK..."
arch=amd64
if [ "${1:-}" = --arch ]; then
  arch=${2:?$usage}
  shift 2
fi
kernel=${1:?$usage}
cmdline=${2?$usage}
shift 2
if [ "$#" -eq 0 ]; then
  echo "boot-qemu: give at least one ramdisk" >&2
  exit 2
fi
case "$arch" in
  amd64) qemu=(qemu-system-x86_64) console=ttyS0 ;;
  arm64) qemu=(qemu-system-aarch64 -M virt -cpu cortex-a72) console=ttyAMA0 ;;
  *)
    echo "boot-qemu: --arch $arch: expected amd64 or arm64" >&2
    exit 2
    ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$@" > "$work/initrd"
timeout --kill-after=5 "${BOOT_TIMEOUT:-120}" \
  "${qemu[@]}" -accel tcg -m 512 -smp 1 -nographic -no-reboot -nodefaults \
  -serial stdio -monitor none \
  -kernel "$kernel" -initrd "$work/initrd" -append "$cmdline console=$console panic=-1" </dev/null
