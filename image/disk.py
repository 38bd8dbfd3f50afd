"""The bootable disk image: `disk.raw` and `disk.qcow2` from the same vmlinuz + initramfs.img.

Layout (why this one):

    MBR (syslinux mbr.bin, fixed disk signature)
    partition 1 at 1 MiB, type 0xEF (EFI system partition), active, FAT32 label VPN-BOOT:
        vmlinuz, initramfs.img          <- the ONE kernel + initramfs both firmware paths load
        ldlinux.sys, ldlinux.c32, syslinux.cfg            BIOS: SeaBIOS -> mbr.bin -> syslinux
        EFI/BOOT/BOOTX64.EFI (systemd-boot), loader/...    UEFI: OVMF -> systemd-boot (Type #1 entry)

- BIOS and UEFI share one kernel and one initramfs on one FAT partition. A unified kernel image
  (systemd's stub with the kernel and initramfs glued in) would be a second 28 MB copy, since
  syslinux cannot load a UKI; systemd-boot reading a Boot Loader Specification entry loads the same
  two files syslinux loads, so the disk is the image plus ~0.5 MB of boot loaders.
- MBR, not GPT: the disk is far below 2 TiB and has one partition; SeaBIOS boots the active MBR
  partition through syslinux's mbr.bin, and OVMF treats an MBR partition of type 0xEF as an ESP
  (and any FAT volume's \\EFI\\BOOT\\BOOTX64.EFI as the removable-media default). A GPT would need a
  protective MBR plus gptmbr.bin and two more fixed GUIDs for nothing.
- Every boot file comes from a Debian .deb downloaded and unpacked like the userland
  (systemd-boot-efi, syslinux-common); the tools that write the disk are Debian's too (mkfs.fat
  from dosfstools, mcopy/mmd from mtools, syslinux's installer, qemu-img), and the MANIFEST records
  all their exact versions.
- The FAT is built in a plain file, never mounted: mkfs.fat with a fixed volume ID and --invariant,
  then syslinux --install and mcopy with SOURCE_DATE_EPOCH (mtools stamps directory entries with
  it), files copied in sorted order with their mtime set to the epoch. The MBR is written here. So
  the same inputs give the same bytes; `qemu-img convert` to qcow2 (uncompressed, one coroutine,
  in-order writes) is deterministic as well (tests/vm/test_disk_image.py compares two builds).
"""
from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from appliance.fatimage import TOOL_PKGS, DiskError, run as _run, make_fat  # noqa: E402

# The kernel command line, the same as the -kernel path (lab/vm.py, qemu/run-appliance.sh):
# the serial console is /dev/console (PID 1 prints there); tty0 shows the kernel's messages on a
# hypervisor's graphical console too. no_timer_check: the kernel's early check that the IO-APIC timer
# ticks is a delay loop that counts jiffies; under emulation (TCG) on a busy host the loop can end
# before the emulated timer's first interrupt, and the kernel panics "IO-APIC + timer doesn't work!"
# (seen once in the forty-third session's CI, tests/vm/test_modes.py); a VM's timer is QEMU's and
# works, so the check only ever fails falsely here (cloud images pass it for the same reason).
CMDLINE = "console=tty0 console=ttyS0 panic=-1 quiet no_timer_check"
BOOT_LABEL = "VPN-BOOT"
BOOT_VOLID = "5650424f"          # FAT volume ID ("VPBO"), fixed for reproducibility
DISK_SIGNATURE = 0x56504E41      # MBR disk identifier ("VPNA")
PART_START = 2048                # sectors: the usual 1 MiB alignment
SECTOR = 512
# The Debian packages the boot files come from (downloaded next to the image's packages).
BOOT_PKGS = ["systemd-boot-efi", "syslinux-common"]

SYSLINUX_CFG = f"""DEFAULT appliance
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL appliance
  LINUX /vmlinuz
  INITRD /initramfs.img
  APPEND {CMDLINE}
"""
LOADER_CONF = "timeout 0\ndefault appliance.conf\neditor no\n"
# UEFI adds efi=noruntime: the appliance calls no EFI runtime service (no EFI variables, power-off and
# reboot go through ACPI, the clock through the CMOS RTC), and without them the kernel reaches /init
# ~0.3 CPU s sooner under TCG (the initramfs unpack, which runs beside the boot-time calls into the
# firmware, took 1.1-1.3 CPU s with them and 0.9 without; lab/boot_profile.py --disk uefi).
ENTRY_CONF = f"title vpn-appliance\nlinux /vmlinuz\ninitrd /initramfs.img\noptions {CMDLINE} efi=noruntime\n"


def tool_versions() -> dict[str, str]:
    """Debian package -> installed version of each tool that writes the disk."""
    out = {}
    for pkg in sorted(set(TOOL_PKGS.values())):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "(not installed)"
    return out


def mbr(boot_code: bytes, start: int, sectors: int, ptype: int = 0xEF) -> bytes:
    """A classic MBR: 440 bytes of boot code, the disk signature, one active partition."""
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start, sectors)
    return (boot_code[:440].ljust(440, b"\0") + struct.pack("<IH", DISK_SIGNATURE, 0) + entry
            + b"\0" * 48 + b"\x55\xaa")


def boot_files(boot_root: Path) -> dict[str, bytes]:
    """The boot loaders' files from the unpacked Debian packages (BOOT_PKGS)."""
    sdboot = boot_root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    if not sdboot.exists():
        raise DiskError(f"{sdboot} missing: the systemd-boot-efi package did not unpack")
    return {"EFI/BOOT/BOOTX64.EFI": sdboot.read_bytes(), "loader/loader.conf": LOADER_CONF.encode(),
            "loader/entries/appliance.conf": ENTRY_CONF.encode(), "syslinux.cfg": SYSLINUX_CFG.encode()}


def build_disk(out: Path, boot_root: Path, epoch: int) -> list[str]:
    """Write out/disk.raw and out/disk.qcow2 from out/vmlinuz and out/initramfs.img; -> MANIFEST lines."""
    files = {"vmlinuz": (out / "vmlinuz").read_bytes(), "initramfs.img": (out / "initramfs.img").read_bytes(),
             **boot_files(boot_root)}
    mbr_bin = boot_root / "usr/lib/syslinux/mbr/mbr.bin"
    if not mbr_bin.exists():
        raise DiskError(f"{mbr_bin} missing: the syslinux-common package did not unpack")
    part = out / "disk.part.tmp"
    try:
        make_fat(part, files, BOOT_LABEL, BOOT_VOLID, epoch, hidden_sectors=PART_START, syslinux=True,
                 size_bytes=max(40 << 20, sum(map(len, files.values())) * 9 // 8 + (4 << 20)))
        psize = part.stat().st_size
        raw = out / "disk.raw"
        with open(raw, "wb") as f:
            f.write(mbr(mbr_bin.read_bytes(), PART_START, psize // SECTOR))
            f.write(b"\0" * (PART_START * SECTOR - SECTOR))
            with open(part, "rb") as p:
                shutil.copyfileobj(p, f, 1 << 20)
    finally:
        part.unlink(missing_ok=True)
    qcow = out / "disk.qcow2"
    qcow.unlink(missing_ok=True)
    _run(["qemu-img", "convert", "-m", "1", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)])
    lines = [f"disk.raw {raw.stat().st_size} bytes sha256 {_sha(raw)}",
             f"disk.qcow2 {qcow.stat().st_size} bytes sha256 {_sha(qcow)}",
             f"partition 1: start {PART_START} sectors, {psize} bytes, type 0xEF, FAT label {BOOT_LABEL} "
             f"volume id {BOOT_VOLID}, disk signature {DISK_SIGNATURE:08x}",
             "  ldlinux.sys, ldlinux.c32 (written by syslinux --install)"]
    lines += [f"  {rel} {len(b)} bytes sha256 {hashlib.sha256(b).hexdigest()}" for rel, b in sorted(files.items())]
    lines += [f"tool {pkg} {ver}" for pkg, ver in tool_versions().items()]
    return lines


def _sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
