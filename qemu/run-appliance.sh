#!/usr/bin/env bash
# Boot the appliance image: serial console on stdio, two virtio NICs (WAN, LAN) on TAP devices.
#   WAN_TAP=tapw0 LAN_TAP=tapl0 qemu/run-appliance.sh [image/out]
# Env: WAN_MAC, LAN_MAC, MEM (MB, default 128), APPEND (extra kernel command line), ACCEL (kvm|tcg).
# -nodefaults/-no-user-config: no devices nobody uses (VGA, default NIC, CD); `romfile=` on the
# NICs: SeaBIOS does not run their iPXE option ROMs before the kernel (same options as lab/vm.py).
set -eu
out=${1:-image/out}
accel=${ACCEL:-$("$(dirname "$0")/probe-kvm.sh" "$out")}
cpu=max; [ "$accel" = kvm ] && cpu=host
nics=()
if [ -n "${WAN_TAP:-}" ]; then
  nics+=(-netdev "tap,id=wan,ifname=$WAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=wan,mac=${WAN_MAC:-52:54:00:00:00:01},romfile=")
fi
if [ -n "${LAN_TAP:-}" ]; then
  nics+=(-netdev "tap,id=lan,ifname=$LAN_TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=lan,mac=${LAN_MAC:-52:54:00:00:00:02},romfile=")
fi
exec qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -M q35 -m "${MEM:-128}" -nodefaults -no-user-config \
  -display none -serial mon:stdio -no-reboot \
  -kernel "$out/vmlinuz" -initrd "$out/initramfs.img" "${nics[@]}" \
  -append "console=ttyS0 panic=-1 quiet no_timer_check ${APPEND:-}"
