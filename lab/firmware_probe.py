"""Where the UEFI disk boot's extra time goes before the kernel runs, without the network lab: boot
image/out/disk.qcow2 under OVMF (lab/vm.py disk_argv, no NICs) both as the lab boots it (`uefi`:
qemu/ovmf-rom.sh's `-bios` ROM) and as stock pflash (`uefi-stock`), and the -kernel path beside
them, and read QEMU's CPU seconds at each mark.

    python -m lab.firmware_probe [--boots 3]          (builds nothing: run `make image` first)

Marks (QEMU CPU seconds, user + system; TCG is CPU-bound):
- `tpm first` / `tpm last`: OVMF's probe for a TPM at 0xFED40000. Debian's OVMF is built with TPM
  support and, when no TPM answers, waits out the TIS timeouts (750 ms, twice: TPM 1.2, then 2.0)
  polling the access register every 30 us. QEMU reads unassigned MMIO as 0, not 0xFF, so the probe
  cannot tell "absent" early (the `uefi` ROM maps 0xFF there, so it can); `-d guest_errors` logs
  each of those reads, which is how they are seen
  here (about 50,000 per boot).
- `BdsDxe`: OVMF's boot manager starts the boot loader (end of SEC/PEI/DXE);
- `/init`: the appliance's PID 1 prints `boot: init` (the kernel has unpacked the initramfs).
The -kernel row is the same image through QEMU's -kernel/-initrd (SeaBIOS), for the difference.
Logging the probe's reads costs QEMU a little, so the UEFI figures here run up to ~0.5 s above an
unlogged boot's (lab/boot_compare.py).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .boot_profile import cpu_seconds, load
from .vm import OUT, UEFI_MEM_MB, disk_argv, qemu_argv

MARKS = {"BdsDxe": "BdsDxe: starting", "/init": "boot: init "}


def one(argv: list[str], tmp: Path, timeout: float = 120) -> dict[str, float]:
    """Boot `argv` (its console on stdout) until `boot: init`; -> mark -> QEMU CPU seconds, plus
    `tpm reads` (how many accesses to the TPM's registers QEMU rejected)."""
    console, errors = tmp / "console.log", tmp / "guest-errors.log"
    argv = [*argv, "-d", "guest_errors", "-D", str(errors)]
    got: dict[str, float] = {}
    with open(console, "wb") as out:
        q = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        seen = 0
        end = time.monotonic() + timeout
        while time.monotonic() < end and q.poll() is None and "/init" not in got:
            size = errors.stat().st_size if errors.exists() else 0
            if size != seen:        # the probe is running: its reads are being logged
                got.setdefault("tpm first", cpu_seconds(q.pid))
                got["tpm last"] = cpu_seconds(q.pid)
                seen = size
            text = console.read_bytes().decode("latin-1")
            for name, needle in MARKS.items():
                if name not in got and needle in text:
                    got[name] = cpu_seconds(q.pid)
            time.sleep(0.005)
    finally:
        q.kill()
        q.wait()
    if errors.exists():
        got["tpm reads"] = sum(1 for ln in errors.read_text(errors="replace").splitlines()
                               if "Invalid read at addr 0xFED4" in ln)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--image", type=Path, default=OUT)
    a = ap.parse_args(argv)
    kinds = {
        "uefi": lambda tmp: disk_argv(a.image, "uefi", "tcg", tmp, [], mem=UEFI_MEM_MB),
        "uefi-stock": lambda tmp: disk_argv(a.image, "uefi", "tcg", tmp, [], mem=UEFI_MEM_MB,
                                            stock_firmware=True),
        "-kernel": lambda tmp: qemu_argv(a.image, "tcg", []),
    }
    res: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    print(f"load average before: {load()}", flush=True)
    for _ in range(a.boots):
        for kind, make in kinds.items():
            with tempfile.TemporaryDirectory(prefix="fwprobe-") as td:
                g = one(make(Path(td)), Path(td))
            res[kind].append(g)
            print(f"{kind}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in g.items()), flush=True)
    print("\nmedian QEMU CPU seconds:")
    for kind, runs in res.items():
        def med(key: str) -> float:
            vals = [r[key] for r in runs if key in r]
            return statistics.median(vals) if vals else float("nan")
        line = f"  {kind:>8}: /init {med('/init'):.2f}"
        if kind.startswith("uefi"):
            line += (f"; BdsDxe {med('BdsDxe'):.2f}, of which the TPM probe {med('tpm last') - med('tpm first'):.2f}"
                     f" ({med('tpm first'):.2f} to {med('tpm last'):.2f}, {med('tpm reads'):.0f} reads of 0xFED4xxxx)")
        print(line)
    print(f"load average after: {load()}")
    ok = all("/init" in r for runs in res.values() for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
