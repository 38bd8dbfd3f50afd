"""Time to tunnel up for each way of booting the image, interleaved in one run: QEMU's -kernel/-initrd,
the disk image under BIOS (SeaBIOS + syslinux) and under UEFI (OVMF + systemd-boot), the latter
as the lab and qemu/run-disk.sh boot it (`uefi`: qemu/ovmf-rom.sh's `-bios` ROM, which answers
OVMF's TPM probe at once; variables in RAM), with Debian's OVMF as stock pflash and the store
read-only (`uefi-stock`: the ~1.5 s TPM wait included), and with a fresh writable copy of the
store (`uefi-fresh`: a new libvirt domain's first boot).

    python -m lab.boot_compare [--rounds 2] [--kinds kernel,bios,uefi,uefi-stock,uefi-fresh]
                                                 (root; builds nothing: run `make image` first)

Each boot is the `make run` lab (Debian's OpenVPN server behind the WAN, the embedded default
config), timed from QEMU start to the appliance's `tunnel up` line; prints each boot with QEMU's
CPU seconds at that moment (the emulation is CPU-bound: CPU seconds are what a loaded machine
distorts least), then the medians and the spread. Where the UEFI time goes: lab/boot_profile.py --disk uefi
(stages to tunnel up) and lab/firmware_probe.py (OVMF's TPM probe; CPU s at BdsDxe and /init against -kernel).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .boot_profile import cpu_seconds, load
from .netns import Netns, Proc
from .router_lab import start_far_side
from .vm import OUT, boot, boot_disk, lab_pki, vm_topology

KINDS = ("kernel", "bios", "uefi", "uefi-stock", "uefi-fresh")


def one(kind: str) -> tuple[float | None, float]:
    """One boot of `kind`; -> (wall seconds from QEMU start to `tunnel up` or None, QEMU CPU seconds then)."""
    with tempfile.TemporaryDirectory(prefix="bootcmp-") as td, vm_topology(Path(td)) as t:
        tmp = Path(td)
        def start(ns: Netns, argv: list[str], name: str) -> Proc:
            p = Proc(ns, argv, tmp / f"{name}.log")
            t["procs"].append(p)
            return p
        start_far_side(t["wan"], tmp, start, lab_pki())
        t0 = time.monotonic()
        if kind == "kernel":
            q = boot(t, OUT)
        else:
            q = boot_disk(t, OUT, kind.split("-")[0], fresh_vars=kind == "uefi-fresh",
                          stock_firmware=kind == "uefi-stock")
        up = q.wait_for("tunnel up", 120)
        wall = round(time.monotonic() - t0, 2)
        return (wall if up else None), cpu_seconds(q.p.pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, from " + ", ".join(KINDS))
    a = ap.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    res: dict[str, list[float | None]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    print(f"load average before: {load()}", flush=True)
    for _ in range(a.rounds):
        for kind in kinds:
            wall, c = one(kind)
            res[kind].append(wall)
            cpu[kind].append(c)
            print(f"{kind}: tunnel up {wall} s after QEMU start, QEMU CPU {c:.2f} s, load {load()}", flush=True)
    for kind in kinds:
        ok = [x for x in res[kind] if x is not None]
        spread = f", spread {max(ok) - min(ok):.2f} s" if len(ok) > 1 else ""
        med = f"{statistics.median(ok):.2f}" if ok else "-"
        print(f"{kind:>10}: median {med} s ({', '.join(map(str, res[kind]))}{spread});"
              f" QEMU CPU median {statistics.median(cpu[kind]):.2f} s")
    return 0 if all(None not in r for r in res.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
