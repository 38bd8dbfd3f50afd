#!/usr/bin/env bash
# Prints "kvm" if a short KVM boot of the image reaches PID 1 within the time limit, else "tcg".
# Why: on these build machines nested KVM exists but hangs or aborts in early boot.
set -u
out=${1:-image/out}
cache="$out/accel"
[ -f "$cache" ] && { cat "$cache"; exit 0; }
accel=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  if timeout 20 qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 256 -nographic -no-reboot \
      -kernel "$out/vmlinuz" -initrd "$out/initramfs.img" -nic none \
      -append "console=ttyS0 panic=-1 quiet no_timer_check appliance.selftest=1" 2>/dev/null | grep -q "PID 1"; then
    accel=kvm
  fi
fi
echo "$accel" | tee "$cache"
