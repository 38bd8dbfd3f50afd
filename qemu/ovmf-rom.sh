#!/usr/bin/env bash
# Write Debian's OVMF as a QEMU `-bios` ROM that answers "no TPM here" at once.
#   qemu/ovmf-rom.sh OUT            (OVMF_FD=/usr/share/ovmf/OVMF.fd by default: code + variable template)
# Why: Debian's OVMF probes for a TPM at 0xFED40000 and takes a read of 0xFF there as "absent". QEMU
# returns 0 for an address nothing maps, so with no TPM the firmware waits out two 750 ms timeouts
# (TPM 1.2, then 2.0; wall time, KVM pays it too): ~1.5 s of every UEFI boot. A `-bios` image is
# mapped so that it ends at 4 GiB, and QEMU puts no size cap on it (the pflash path's is 16 MiB),
# so the firmware padded at its front with 0xFF to 18.75 MiB reaches down to 0xFED40000: the probe
# reads 0xFF and moves on. The firmware's own bytes stay where they were (the top 2 MiB), and the
# padding covers only addresses no q35 device uses (the local APIC at 0xFEE00000 takes precedence
# for the CPU). As a ROM the variable store is read-only, so OVMF keeps its variables in RAM, as
# with the read-only pflash store this replaces (the disk boots by \EFI\BOOT\BOOTX64.EFI).
# lab/vm.py and qemu/run-disk.sh use it; README "Boot time of the disk image" has the figures.
set -eu
out=${1:?usage: $0 OUT}
src=${OVMF_FD:-/usr/share/ovmf/OVMF.fd}
[ -r "$src" ] || { echo "$0: $src is missing: install Debian's ovmf (make setup does)" >&2; exit 1; }
span=$((0x100000000 - 0xFED40000))          # from the TPM's registers to the top of 4 GiB
have=$(stat -c %s "$src")
if [ "$have" -gt "$span" ] || [ $((have % 65536)) -ne 0 ]; then
  echo "$0: $src is $have bytes; expected a multiple of 64 KiB up to $span" >&2; exit 1
fi
# Up to date: newer than its source and of the padded size.
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$(stat -c %s "$out")" -eq "$span" ]; then exit 0; fi
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{ head -c $((span - have)) /dev/zero | tr '\0' '\377'; cat "$src"; } > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
