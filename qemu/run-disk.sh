#!/usr/bin/env bash
# Boot the appliance's disk image with no -kernel: BIOS (SeaBIOS) or UEFI (OVMF, Debian's ovmf).
#   FIRMWARE=uefi CONFIG_DISK=config.img WAN_TAP=tapw0 LAN_TAP=tapl0 qemu/run-disk.sh [image/out/disk.qcow2]
# Env: FIRMWARE (bios|uefi, default bios), CONFIG_DISK (a config volume from `vpn-appliance config-disk`),
#      WAN_TAP/LAN_TAP, WAN_MAC/LAN_MAC, MEM (MB, default 512), ACCEL (kvm|tcg), SNAPSHOT=1 (discard writes),
#      UEFI_VARS (a writable copy of /usr/share/OVMF/OVMF_VARS.fd to keep; default: none, see below),
#      OVMF_ROM (where qemu/ovmf-rom.sh's firmware ROM is kept; default ~/.cache/vpn-appliance/ovmf-rom.fd),
#      QEMU_EXTRA (more QEMU arguments, split at spaces; e.g. "-d guest_errors -D qemu.log").
# Serial console on stdio; the VM powers off by itself on a fatal error (-no-reboot).
# Why these options (the same as lab/vm.py's disk_qemu_args; README "Deploying the disk image"):
#  -nodefaults, and q35 without PS/2 controller, SATA, SMM, vmport: no VGA, CD-ROM, default NIC or
#    legacy device for the firmware to set up and try (OVMF polls a PS/2 controller ~0.35 s under TCG);
#  bootindex=0 + -boot strict=on: the firmware gets a boot order naming only the system disk, so OVMF
#    connects that one device (its own virtio-net driver and network stack stay off the NICs) and
#    tries no PXE/CD-ROM first;
#  UEFI: Debian's OVMF as a `-bios` ROM padded down to the TPM's registers (qemu/ovmf-rom.sh says
#    why): its TPM probe then reads "absent" at once instead of waiting ~1.5 s. The ROM's variable
#    store is read-only: OVMF keeps its variables in RAM (the disk boots by the removable-media path
#    \EFI\BOOT\BOOTX64.EFI and needs none), which also spares the ~1 s of byte-wise flash writes a
#    fresh writable store costs under emulation. With UEFI_VARS, the stock pflash layout instead;
#  UEFI: the 2 MB build of Debian's OVMF (no Secure Boot, no SMM): ~0.45 s sooner to its boot manager
#    under TCG than the 4 MB build (OVMF_CODE_4M.fd), which carries more drivers.
#  TCG: -cpu max without ERMS/FSRM: the guest then copies with 8/16-byte moves instead of `rep movsb`,
#    which TCG runs a byte at a time -- slowest into pages where OVMF's code ran (QEMU's self-modifying
#    code check on every store); ~0.5 CPU s to /init after OVMF (lab/vm.py DISK_TCG_CPU).
set -eu
disk=${1:-image/out/disk.qcow2}
accel=${ACCEL:-$("$(dirname "$0")/probe-kvm.sh" "$(dirname "$disk")")}
cpu=max,-erms,-fsrm; [ "$accel" = kvm ] && cpu=host
fmt=qcow2; case "$disk" in *.raw|*.img) fmt=raw ;; esac
args=(-drive "file=$disk,format=$fmt,if=none,id=sys${SNAPSHOT:+,snapshot=on}" -device virtio-blk-pci,drive=sys,bootindex=0
      -boot strict=on)
[ -n "${CONFIG_DISK:-}" ] && args+=(-drive "file=$CONFIG_DISK,format=raw,if=virtio,readonly=on")
if [ "${FIRMWARE:-bios}" = uefi ]; then
  if [ -n "${UEFI_VARS:-}" ]; then
    args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd"
           -drive "if=pflash,format=raw,unit=1,file=$UEFI_VARS")
  else
    rom=${OVMF_ROM:-${XDG_CACHE_HOME:-$HOME/.cache}/vpn-appliance/ovmf-rom.fd}
    "$(dirname "$0")/ovmf-rom.sh" "$rom"
    args+=(-bios "$rom")
  fi
fi
nics=()
[ -n "${WAN_TAP:-}" ] && nics+=(-netdev "tap,id=wan,ifname=$WAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=wan,mac=${WAN_MAC:-52:54:00:00:00:01},romfile=")
[ -n "${LAN_TAP:-}" ] && nics+=(-netdev "tap,id=lan,ifname=$LAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=lan,mac=${LAN_MAC:-52:54:00:00:00:02},romfile=")
exec qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -M q35,i8042=off,sata=off,smm=off,vmport=off -m "${MEM:-512}" -nodefaults -no-user-config \
  -display none -serial mon:stdio -no-reboot "${args[@]}" "${nics[@]}" ${QEMU_EXTRA:-}
