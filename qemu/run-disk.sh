#!/usr/bin/env bash
# Boot the appliance's disk image with no -kernel: BIOS (SeaBIOS) or UEFI (OVMF, Debian's ovmf).
#   FIRMWARE=uefi CONFIG_DISK=config.img WAN_TAP=tapw0 LAN_TAP=tapl0 qemu/run-disk.sh [image/out/disk.qcow2]
# Env: FIRMWARE (bios|uefi, default bios), CONFIG_DISK (a config volume from `vpn-appliance config-disk`),
#      WAN_TAP/LAN_TAP, WAN_MAC/LAN_MAC, MEM (MB, default 512), ACCEL (kvm|tcg), SNAPSHOT=1 (discard writes).
# Serial console on stdio; the VM powers off by itself on a fatal error (-no-reboot).
set -eu
disk=${1:-image/out/disk.qcow2}
accel=${ACCEL:-$("$(dirname "$0")/probe-kvm.sh" "$(dirname "$disk")")}
cpu=max; [ "$accel" = kvm ] && cpu=host
fmt=qcow2; case "$disk" in *.raw|*.img) fmt=raw ;; esac
args=(-drive "file=$disk,format=$fmt,if=virtio${SNAPSHOT:+,snapshot=on}")
[ -n "${CONFIG_DISK:-}" ] && args+=(-drive "file=$CONFIG_DISK,format=raw,if=virtio,readonly=on")
if [ "${FIRMWARE:-bios}" = uefi ]; then
  vars=$(mktemp --suffix=.fd); trap 'rm -f "$vars"' EXIT
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
  args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
         -drive "if=pflash,format=raw,unit=1,file=$vars")
fi
nics=()
[ -n "${WAN_TAP:-}" ] && nics+=(-netdev "tap,id=wan,ifname=$WAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=wan,mac=${WAN_MAC:-52:54:00:00:00:01},romfile=")
[ -n "${LAN_TAP:-}" ] && nics+=(-netdev "tap,id=lan,ifname=$LAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=lan,mac=${LAN_MAC:-52:54:00:00:00:02},romfile=")
[ ${#nics[@]} -eq 0 ] && nics=(-nic none)
qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -M q35 -m "${MEM:-512}" -nographic -no-reboot "${args[@]}" "${nics[@]}"
