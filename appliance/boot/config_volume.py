"""The config volume: a small FAT volume labelled VPNCONFIG (a second disk, as cloud config drives
are, or a partition) holding appliance.toml and the files it names. When present it wins over the
TOML baked into the image.

Why the kernel's vfat and not a FAT reader in Python: the kernel's FAT code is the well-kept one,
and the cost is a few options built into the kernel (virtio_blk, vfat, NLS cp437/ascii:
image/kernel.config); a Python reader would be ~200 lines of our own parsing of operator-supplied bytes. What
is ours is only the label probe: read the first sector of each block device and compare the FAT
boot sector's volume label, so no udev or blkid is needed. The volume is mounted read-only,
nosuid/nodev/noexec, files owned by root and readable by root only.
"""
from __future__ import annotations

import ctypes
import os

LABEL = "VPNCONFIG"
MOUNT_POINT = "/run/vpnconfig"
TOML = "appliance.toml"
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8


def fat_label(sector: bytes) -> str | None:
    """The volume label of a FAT12/16/32 boot sector, or None if this is not one."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa" or sector[0] not in (0xEB, 0xE9):
        return None
    bytes_per_sector = int.from_bytes(sector[11:13], "little")
    if bytes_per_sector not in (512, 1024, 2048, 4096):
        return None
    fat16_size = int.from_bytes(sector[22:24], "little")
    off = 43 if fat16_size else 71            # extended BPB: FAT12/16 at 0x26, FAT32 at 0x42
    if sector[off - 5] != 0x29:               # extended boot signature: the label field is valid
        return None
    return sector[off:off + 11].decode("ascii", "replace").rstrip(" \0")


def find(sys_block: str = "/sys/class/block", dev: str = "/dev") -> str | None:
    """The device node of the first block device (disk or partition, by name) labelled VPNCONFIG."""
    try:
        names = sorted(os.listdir(sys_block))
    except OSError:
        return None
    for name in names:
        if name.startswith(("loop", "ram", "zram", "sr")):
            continue
        path = os.path.join(dev, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sector = os.pread(fd, 512, 0)
            finally:
                os.close(fd)
        except OSError:
            continue
        if fat_label(sector) == LABEL:
            return path
    return None


def mount(device: str, target: str = MOUNT_POINT) -> str:
    """Mount the volume read-only; -> the path of its appliance.toml."""
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(target, exist_ok=True)
    opts = b"uid=0,gid=0,fmask=0177,dmask=0077,shortname=mixed,errors=remount-ro"
    if libc.mount(device.encode(), target.encode(), b"vfat", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {device} (label {LABEL}) on {target}: {os.strerror(e)}")
    return os.path.join(target, TOML)
