"""A FAT file system in a plain file, built without mounting and byte-reproducibly.

Shared by the disk image's boot partition (image/disk.py) and the config volume
(`vpn-appliance config-disk`). Debian's tools do the FAT work: mkfs.fat (dosfstools) with --invariant
(no random ID, no clock), then our fixed volume ID written into the boot sector(s), mmd/mcopy (mtools) with SOURCE_DATE_EPOCH (mtools
stamps new directory entries with it) and each file's mtime set to the epoch (`mcopy -m` keeps it),
files written in sorted order so the clusters are allocated the same way each time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Host tools (Debian packages) that write FAT volumes and disks; their versions go into the MANIFEST.
TOOL_PKGS = {"mkfs.fat": "dosfstools", "mcopy": "mtools", "mmd": "mtools", "syslinux": "syslinux",
             "qemu-img": "qemu-utils"}


class DiskError(RuntimeError):
    """A tool the FAT or disk build needs is missing or failed."""


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    if shutil.which(cmd[0]) is None:
        raise DiskError(f"{cmd[0]} is missing: install Debian package {TOOL_PKGS.get(cmd[0], cmd[0])} "
                        "(`make setup` does)")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise DiskError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def make_fat(path: Path, files: dict[str, bytes], label: str, volid: str, epoch: int,
             size_bytes: int | None = None, hidden_sectors: int = 0, syslinux: bool = False) -> None:
    """A FAT file system in the file `path` holding `files` (posix relative path -> bytes), built
    without mounting and byte-reproducibly (see the module docstring). FAT32 when it is large
    enough (>= 33 MiB: an ESP), else FAT12/16 (mkfs.fat's choice; a small config volume)."""
    payload = sum(-(-len(b) // 4096) * 4096 for b in files.values())
    if size_bytes is None:
        size_bytes = max(2 << 20, payload + payload // 8 + (1 << 20))
    size_bytes = -(-size_bytes // (1 << 20)) << 20
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    path.unlink(missing_ok=True)
    fat32 = size_bytes >= 33 << 20
    run(["mkfs.fat", "-C", *(["-F", "32", "-s", "1"] if fat32 else []), "-n", label, "--invariant", "-h", str(hidden_sectors), str(path), str(size_bytes // 1024)], env)
    _set_volume_id(path, int(volid, 16), fat32)
    if syslinux:
        run(["syslinux", "--install", str(path)], env)
    with tempfile.TemporaryDirectory() as td:
        made: set[str] = set()
        for rel in sorted(files):
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    run(["mmd", "-i", str(path), f"::/{d}"], env)
                    made.add(d)
            src = Path(td) / "f"
            src.write_bytes(files[rel])
            os.utime(src, (epoch, epoch))
            run(["mcopy", "-m", "-i", str(path), str(src), f"::/{rel}"], env)
            src.unlink()


def _set_volume_id(path: Path, volid: int, fat32: bool) -> None:
    """Write the volume ID into the boot sector (and FAT32's backup at sector 6). mkfs.fat's -i
    cannot be used: without --invariant it stamps the label's directory entry with the clock."""
    off = 0x43 if fat32 else 0x27
    with open(path, "r+b") as f:
        for sector in ((0, 6) if fat32 else (0,)):
            f.seek(sector * 512 + off)
            f.write(volid.to_bytes(4, "little"))
