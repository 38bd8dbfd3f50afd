"""Time to tunnel up for each way of booting the image, interleaved in one run: QEMU's -kernel/-initrd,
the disk image under BIOS (SeaBIOS + syslinux) and under UEFI (OVMF + systemd-boot).

    python -m lab.boot_compare [--rounds 2]      (root; builds nothing: run `make image` first)

Each boot is the `make run` lab (Debian's OpenVPN server behind the WAN, the embedded default
config), timed from QEMU start to the appliance's `tunnel up` line; prints each boot and the medians.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .netns import Netns, Proc
from .router_lab import start_far_side
from .vm import OUT, boot, boot_disk, lab_pki, vm_topology

KINDS = ("kernel", "bios", "uefi")


def one(kind: str) -> float | None:
    tmp = Path(tempfile.mkdtemp(prefix="bootcmp-"))
    with vm_topology(tmp) as t:
        def start(ns: Netns, argv: list[str], name: str) -> Proc:
            p = Proc(ns, argv, tmp / f"{name}.log")
            t["procs"].append(p)
            return p
        start_far_side(t["wan"], tmp, start, lab_pki())
        t0 = time.monotonic()
        q = boot(t, OUT) if kind == "kernel" else boot_disk(t, OUT, kind)
        return round(time.monotonic() - t0, 2) if q.wait_for("tunnel up", 120) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    res: dict[str, list[float | None]] = {k: [] for k in KINDS}
    for _ in range(a.rounds):
        for kind in KINDS:
            res[kind].append(one(kind))
            print(f"{kind}: tunnel up {res[kind][-1]} s after QEMU start", flush=True)
    for kind in KINDS:
        ok = [x for x in res[kind] if x is not None]
        print(f"{kind:>6}: median {statistics.median(ok) if ok else '-'} s  ({', '.join(map(str, res[kind]))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
