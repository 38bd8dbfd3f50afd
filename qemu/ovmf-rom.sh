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
# Run as root (run-disk.sh), the ROM is firmware QEMU runs: only a file we made counts. Every
# directory on the way to OUT, as written and with symlinks resolved, must be ours, root's (or
# sudo's caller's) and, if others may write it, sticky (as /tmp); a symlink on the way must be
# ours too (its owner may replace it even in a sticky directory). Otherwise someone else could
# swap the ROM, or a directory above it, after it is written. Checked before making missing
# directories (mkdir -p as root through someone's symlink) and again after. In a sticky directory
# they may still have put a file or a symlink at OUT first: only a regular file of ours (or
# root's) is taken as current, and the new one is renamed over whatever is there (mv -T: never
# into a directory a symlink points to).
trusted=" $(id -u) 0 ${SUDO_UID:-} "
check_dirs() {                  # $1 and each directory above it, as written
  local d=$1 owner mode
  while :; do
    read -r owner mode < <(stat -L -c '%u %a' -- "$d")
    if [ -L "$d" ] && [[ $trusted != *" $(stat -c %u -- "$d") "* ]]; then
      owner="$(stat -c %u -- "$d") (of the symlink)"
    fi
    if [[ $trusted != *" $owner "* ]] || { [ $((8#$mode & 8#0002)) -ne 0 ] && [ $((8#$mode & 8#1000)) -eq 0 ]; }; then
      echo "$0: $d (owner uid $owner, mode $mode): another user could swap the ROM there; choose another OUT" >&2
      exit 1
    fi
    [ "$d" = / ] && return
    d=$(dirname -- "$d")
  done
}
check_path() {                  # as written (made absolute) and with symlinks resolved
  case $1 in /*) check_dirs "$1" ;; *) check_dirs "$PWD/$1" ;; esac
  check_dirs "$(cd -- "$1" && pwd -P)"
}
dir=$(dirname -- "$out")
have_dir=$dir
while [ ! -e "$have_dir" ] && [ ! -L "$have_dir" ]; do have_dir=$(dirname -- "$have_dir"); done
check_path "$have_dir"
mkdir -p -- "$dir"
check_path "$dir"
# Up to date: ours (or root's), newer than its source and of the padded size.
if [ -f "$out" ] && [ ! -L "$out" ] && { [ -O "$out" ] || [ "$(stat -c %u -- "$out")" -eq 0 ]; } \
    && [ "$out" -nt "$src" ] && [ "$(stat -c %s -- "$out")" -eq "$span" ]; then exit 0; fi
tmp=$(mktemp -- "$out.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
{ head -c $((span - have)) /dev/zero | tr '\0' '\377'; cat -- "$src"; } > "$tmp"
chmod 0644 -- "$tmp"
mv -fT -- "$tmp" "$out"
trap - EXIT
