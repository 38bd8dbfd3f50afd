"""Where the time to tunnel up goes: boot the appliance VM as a router N times and print a table.

    python -m lab.boot_profile [--boots 3] [--accel tcg] [--mem 128] [--image image/out]

Each boot is the `make run` lab (Debian's OpenVPN server on the WAN, the VM on the embedded default
config). The stages come from three clocks, put on one scale (seconds after QEMU was started):
- host wall clock: when each console line reached the host (polled every 20 ms), from QEMU start;
  SeaBIOS's "Booting from ROM" (the -kernel loader) splits firmware from kernel decompression when
  SeaBIOS writes to the serial port (QEMU's -nographic; with -nodefaults -serial stdio it is silent);
- the kernel's CLOCK_MONOTONIC, which counts from the kernel's start: the `boot: <stage> <mono>
  <wall>` lines of appliance/boot/init.py (and the kernel's own printk times it copies from
  /dev/kmsg). The host time of `boot: init` minus its monotonic value is the kernel's zero;
- the appliance's log times (HH:MM:SS.mmm, the VM's UTC wall clock), mapped to the monotonic scale
  by the wall time `boot: init` printed.
Caveat: under TCG the guest's clock is not the host's (the kernel calibrates its TSC under emulation,
and a loaded host skews it), so the split between firmware and kernel start is an estimate; the rows
after it are guest-clock durations, and the total (host clock, QEMU start to the `tunnel up` line)
is exact. The figures are medians over the boots; the machine's load (uptime) is printed beside them, since
other VMs and tests share it.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .configs import server_config
from .netns import Proc
from .vm import OUT, boot, lab_pki, vm_topology

# (row label, start mark, end mark); marks are names in the per-boot dict of times.
ROWS = [
    ("QEMU start + firmware (SeaBIOS, option ROMs)", "qemu", "bios-done"),
    ("QEMU start to the guest clock's zero (estimate, see above)", "qemu", "kernel-zero"),
    ("kernel init until initramfs unpack", "kernel-zero", "kernel-initramfs"),
    ("initramfs unpack", "kernel-initramfs", "kernel-initramfs-done"),
    ("kernel, rest until /init runs", "kernel-initramfs-done", "kernel-run-init"),
    ("Python start + init module", "kernel-run-init", "init"),
    ("mounts + module loading", "init", "modules"),
    ("config: imports + parse + keys", "modules", "config"),
    ("appliance imports (run_toml)", "config", "imports"),
    ("network setup (NICs, routes, nft)", "imports", "connecting"),
    ("TLS handshake", "connecting", "tls"),
    ("push, TUN, routes", "tls", "tunnel-up"),
]
LOG_MARKS = {"connecting": " INFO connecting to ", "tls": " INFO TLS handshake done",
             "tunnel-up": " INFO tunnel up: "}


def one_boot(image: Path, accel_name: str, mem: int, timeout: float = 240) -> tuple[dict[str, float], str]:
    """Boot once; -> (mark -> seconds after QEMU start, the VmRSS the appliance logged)."""
    tmp = Path(tempfile.mkdtemp(prefix="bootprof-"))
    arrivals: list[tuple[float, str]] = []
    with vm_topology(tmp) as t:
        cfg = tmp / "server.conf"
        cfg.write_text(server_config(lab_pki(), "udp", None, "tls-crypt"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp / "server.log")
        t["procs"].append(srv)
        if not srv.wait_for("Initialization Sequence Completed", 30):
            raise SystemExit("the OpenVPN server did not start: " + srv.log()[-2000:])
        t0 = time.monotonic()
        q = boot(t, image, accel_name=accel_name, mem=mem)
        pos = 0
        end = t0 + timeout
        while time.monotonic() < end:
            text = q.log()
            cut = text.rfind("\n") + 1
            now = time.monotonic() - t0
            arrivals += [(now, ln) for ln in text[pos:cut].splitlines()]
            pos = max(pos, cut)
            if "tunnel up: " in text[:cut] or not q.alive():
                break
            time.sleep(0.02)
    return marks(arrivals)


def marks(arrivals: list[tuple[float, str]]) -> tuple[dict[str, float], str]:
    m: dict[str, float] = {"qemu": 0.0}
    mono: dict[str, float] = {}
    offset_wall = None   # VM wall clock - monotonic
    rss = "?"
    for host_t, ln in arrivals:
        ln = ln.replace("\x1b", "")
        if "Booting from ROM" in ln and "bios-done" not in m:
            m["bios-done"] = host_t
        b = re.search(r"boot: (\S+) ([\d.]+)(?: ([\d.]+))?", ln)
        if b:
            mono[b.group(1)] = float(b.group(2))
            if b.group(1) == "init":
                m["kernel-zero"] = host_t - float(b.group(2))
                offset_wall = float(b.group(3)) % 86400 - float(b.group(2))
            continue
        lm = re.match(r"\s*(\d\d):(\d\d):(\d\d\.\d+) ", ln)
        if lm and offset_wall is not None:
            wall = int(lm.group(1)) * 3600 + int(lm.group(2)) * 60 + float(lm.group(3))
            for name, needle in LOG_MARKS.items():
                if needle in ln and name not in mono:
                    mono[name] = wall - offset_wall
            r = re.search(r"VmRSS ([\d.]+ MB)", ln)
            if r:
                rss = r.group(1)
        if "tunnel up: " in ln:
            m["tunnel-up-host"] = host_t
    zero = m.get("kernel-zero")
    if zero is not None:
        for name, v in mono.items():
            m[name] = zero + v
    return m, rss


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--accel", default="tcg", help="tcg (the issue's figures) or kvm")
    ap.add_argument("--mem", type=int, default=128, help="guest RAM in MB")
    ap.add_argument("--image", type=Path, default=OUT, help="directory with vmlinuz and initramfs.img")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, TAP devices)")
    sizes = {n: (a.image / n).stat().st_size for n in ("vmlinuz", "initramfs.img")}
    print(f"image: vmlinuz {sizes['vmlinuz'] / 1e6:.1f} MB + initramfs {sizes['initramfs.img'] / 1e6:.1f} MB "
          f"= {sum(sizes.values()) / 1e6:.1f} MB; accel {a.accel}, -m {a.mem}", flush=True)
    runs: list[dict[str, float]] = []
    rsss: list[str] = []
    loads = [load()]
    for i in range(a.boots):
        m, rss = one_boot(a.image, a.accel, a.mem)
        loads.append(load())
        runs.append(m)
        rsss.append(rss)
        print(f"boot {i + 1}: tunnel up {m.get('tunnel-up-host', float('nan')):.2f} s after QEMU start, "
              f"VmRSS {rss}, load {loads[-1]}", flush=True)
    print(f"\n| stage | median s | boots (s) |\n|---|---:|---|")
    for label, start, stop in ROWS:
        vals = [r[stop] - r[start] for r in runs if start in r and stop in r]
        if vals:
            print(f"| {label} | {statistics.median(vals):.2f} | {' '.join(f'{v:.2f}' for v in vals)} |")
    tot = [r["tunnel-up-host"] for r in runs if "tunnel-up-host" in r]
    if tot:
        print(f"| **QEMU start to tunnel up** | **{statistics.median(tot):.2f}** | {' '.join(f'{v:.2f}' for v in tot)} |")
    print(f"\nVmRSS at tunnel up: {', '.join(rsss)}; load average (1, 5, 15 min) before and after each boot: "
          + " / ".join(loads))
    return 0 if len(tot) == a.boots else 1


if __name__ == "__main__":
    raise SystemExit(main())
