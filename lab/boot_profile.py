"""Where the time to tunnel up goes: boot the appliance VM as a router N times and print a table.

    python -m lab.boot_profile [--boots 3] [--accel tcg] [--mem 128] [--image image/out]
                               [--disk bios|uefi [--fresh-vars]]

With --disk the VM boots image/out/disk.qcow2 instead of -kernel (lab/vm.py boot_disk); under UEFI
OVMF's `BdsDxe: starting` line ends the firmware's own start-up (SEC, PEI, DXE, boot manager) and
the kernel's `EFI stub:` line (printed when the command line lacks `quiet`) ends systemd-boot's
work (loader.conf, entry, reading vmlinuz + initramfs.img through OVMF's FAT and virtio-blk drivers). Beside the wall clock, each row gets
QEMU's CPU time (user + system, from /proc) at its marks: the emulation is CPU-bound, so CPU seconds
tell firmware variants apart on a machine that other VMs load, where wall seconds do not.
(lab/firmware_probe.py splits OVMF's part further: its TPM probe, then the rest to BdsDxe.)

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
from .vm import OUT, boot, boot_disk, lab_pki, vm_topology

# (row label, start mark, end mark); marks are names in the per-boot dict of times.
ROWS = [
    ("QEMU start + firmware (SeaBIOS, option ROMs)", "qemu", "bios-done"),
    ("QEMU start + UEFI firmware (OVMF SEC/PEI/DXE to BdsDxe)", "qemu", "uefi-bds"),
    ("systemd-boot + reading kernel/initramfs (to `EFI stub:`; without `quiet`)", "uefi-bds", "efi-stub"),
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (QEMU): /proc/PID/stat fields 14 and 15."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one_boot(image: Path, accel_name: str, mem: int, timeout: float = 240, disk: str | None = None,
             fresh_vars: bool = False) -> tuple[dict[str, float], str, dict[str, float]]:
    """Boot once; -> (mark -> seconds after QEMU start, the VmRSS the appliance logged,
    mark -> QEMU CPU seconds when the host saw the mark's console line)."""
    arrivals: list[tuple[float, str]] = []
    cpu_at: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bootprof-") as td, vm_topology(Path(td)) as t:
        tmp = Path(td)
        cfg = tmp / "server.conf"
        cfg.write_text(server_config(lab_pki(), "udp", None, "tls-crypt"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp / "server.log")
        t["procs"].append(srv)
        if not srv.wait_for("Initialization Sequence Completed", 30):
            raise SystemExit("the OpenVPN server did not start: " + srv.log()[-2000:])
        t0 = time.monotonic()
        if disk:
            q = boot_disk(t, image, disk, accel_name=accel_name, mem=mem, fresh_vars=fresh_vars)
        else:
            q = boot(t, image, accel_name=accel_name, mem=mem)
        pos = 0
        end = t0 + timeout
        while time.monotonic() < end:
            text = q.log()
            cut = text.rfind("\n") + 1
            now = time.monotonic() - t0
            new = text[pos:cut]
            arrivals += [(now, ln) for ln in new.splitlines()]
            pos = max(pos, cut)
            for name, needle in CPU_MARKS.items():
                if name not in cpu_at and needle in new:
                    cpu_at[name] = cpu_seconds(q.p.pid)
            if "tunnel up: " in text[:cut] or not q.alive():
                break
            time.sleep(0.02)
    return (*marks(arrivals), cpu_at)


# console lines at which QEMU's CPU time is read
CPU_MARKS = {"firmware done": "BdsDxe: starting", "EFI stub": "EFI stub: ", "/init": "boot: init ",
             "tunnel up": "tunnel up: "}


def marks(arrivals: list[tuple[float, str]]) -> tuple[dict[str, float], str]:
    m: dict[str, float] = {"qemu": 0.0}
    mono: dict[str, float] = {}
    offset_wall = None   # VM wall clock - monotonic
    rss = "?"
    for host_t, ln in arrivals:
        ln = ln.replace("\x1b", "")
        if "Booting from ROM" in ln and "bios-done" not in m:
            m["bios-done"] = host_t
        if "BdsDxe: starting" in ln and "uefi-bds" not in m:
            m["uefi-bds"] = host_t
        if "EFI stub: " in ln and "efi-stub" not in m:
            m["efi-stub"] = host_t
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
    ap.add_argument("--disk", choices=("bios", "uefi"), help="boot disk.qcow2 under this firmware, not -kernel")
    ap.add_argument("--fresh-vars", action="store_true",
                    help="UEFI: a writable copy of OVMF's variable template (a new libvirt domain's first boot)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, TAP devices)")
    sizes = {n: (a.image / n).stat().st_size for n in ("vmlinuz", "initramfs.img")}
    print(f"image: vmlinuz {sizes['vmlinuz'] / 1e6:.1f} MB + initramfs {sizes['initramfs.img'] / 1e6:.1f} MB "
          f"= {sum(sizes.values()) / 1e6:.1f} MB; accel {a.accel}, -m {a.mem}; "
          f"boot: {'disk under ' + a.disk + (' (fresh writable vars)' if a.fresh_vars else '') if a.disk else '-kernel'}",
          flush=True)
    runs: list[dict[str, float]] = []
    rsss: list[str] = []
    cpus: list[dict[str, float]] = []
    loads = [load()]
    for i in range(a.boots):
        m, rss, cpu = one_boot(a.image, a.accel, a.mem, disk=a.disk, fresh_vars=a.fresh_vars)
        loads.append(load())
        runs.append(m)
        rsss.append(rss)
        cpus.append(cpu)
        print(f"boot {i + 1}: tunnel up {m.get('tunnel-up-host', float('nan')):.2f} s after QEMU start, "
              f"VmRSS {rss}, load {loads[-1]}; QEMU CPU s at " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
              flush=True)
    print(f"\n| stage | median s | boots (s) |\n|---|---:|---|")
    for label, start, stop in ROWS:
        vals = [r[stop] - r[start] for r in runs if start in r and stop in r]
        if vals:
            print(f"| {label} | {statistics.median(vals):.2f} | {' '.join(f'{v:.2f}' for v in vals)} |")
    tot = [r["tunnel-up-host"] for r in runs if "tunnel-up-host" in r]
    if tot:
        print(f"| **QEMU start to tunnel up** | **{statistics.median(tot):.2f}** | {' '.join(f'{v:.2f}' for v in tot)} |")
    for name in CPU_MARKS:
        vals = [c[name] for c in cpus if name in c]
        if vals:
            print(f"| QEMU CPU seconds at {name} | {statistics.median(vals):.2f} | {' '.join(f'{v:.2f}' for v in vals)} |")
    print(f"\nVmRSS at tunnel up: {', '.join(rsss)}; load average (1, 5, 15 min) before and after each boot: "
          + " / ".join(loads))
    return 0 if len(tot) == a.boots else 1


if __name__ == "__main__":
    raise SystemExit(main())
