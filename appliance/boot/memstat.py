"""One console line on the VM's memory: `mem: MemTotal=.. MemAvailable=.. Cached=.. Shmem=.. ...
VmRSS=.. VmHWM=..` (kB), from /proc/meminfo and /proc/self/status.

Why: the image must run in `-m 128`, where the unpacked initramfs (rootfs, counted as Shmem), the
squashfs page cache (Cached, reclaimable) and Python's heap (RssAnon) compete; these fields are what
tells which one grew. Printed once after the modules load, and every N seconds with
`appliance.memstat=N` on the kernel command line (a daemon thread: it only reads two small proc
files and never touches the appliance's state, so it does not belong on the event loop)."""
from __future__ import annotations

import threading
import time
from typing import Callable

MEMINFO = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Shmem", "AnonPages", "Slab", "KernelStack",
           "PageTables")
STATUS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")


def _fields(path: str, names: tuple[str, ...]) -> list[str]:
    out = []
    try:
        with open(path) as f:
            for ln in f:
                key, _, rest = ln.partition(":")
                if key in names:
                    out.append(f"{key}={rest.split()[0]}")
    except OSError:
        pass
    return out


def line() -> str:
    return "mem: " + " ".join(_fields("/proc/meminfo", MEMINFO) + _fields("/proc/self/status", STATUS))


def start_from_cmdline(cmdline: list[str], say: Callable[[str], None]) -> None:
    """`appliance.memstat=N` (seconds, 1..3600): a daemon thread saying line() every N seconds."""
    for arg in cmdline:
        if arg.startswith("appliance.memstat="):
            try:
                every = min(max(int(arg.partition("=")[2]), 1), 3600)
            except ValueError:
                say(f"ignoring {arg}: not a number of seconds")
                return

            def loop() -> None:
                while True:
                    time.sleep(every)
                    say(line())
            threading.Thread(target=loop, name="memstat", daemon=True).start()
            return
