#!/usr/bin/env bash
# boot-qemu.sh KERNEL CMDLINE RAMDISK... : boot a kernel with the given
# ramdisks (concatenated into one initrd, as Linux allows) under QEMU with
# TCG, print the serial console on stdout, and stop when the guest powers off
# or after $BOOT_TIMEOUT seconds (default 120; exit 124 then).
# `console=ttyS0 panic=-1` is appended to CMDLINE so a panic ends the boot.
# KVM is not used: on the machines this project is built on it stalls.
set -euo pipefail

kernel=${1:?usage: boot-qemu.sh KERNEL CMDLINE RAMDISK...}
cmdline=${2?usage: boot-qemu.sh KERNEL CMDLINE RAMDISK...}
shift 2
if [ "$#" -eq 0 ]; then
  echo "boot-qemu: give at least one ramdisk" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$@" > "$work/initrd"
timeout --kill-after=5 "${BOOT_TIMEOUT:-120}" \
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nodefaults \
  -serial stdio -monitor none \
  -kernel "$kernel" -initrd "$work/initrd" -append "$cmdline console=ttyS0 panic=-1" </dev/null
