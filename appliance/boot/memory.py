"""The VM's memory: settings made once at boot (tune), and one console line that shows where it
went (line: `mem: MemTotal=.. MemAvailable=.. ... VmRSS=.. ... workingset_refault_file=..`).

Why: the image must run in `-m 128`, where the kernel keeps ~34 MB for itself, and the unpacked
initramfs (rootfs, Shmem, never reclaimable), the page cache of /ro (reclaimable, but decompressed
again on every refault) and Python's heap (RssAnon) share the rest. The line is printed once after
the modules load and every N seconds with `appliance.memstat=N` on the kernel command line; with
`appliance.importlog=1` too, each tick also prints `imported: a b c` for the modules loaded since the
last (the evidence for image/build.py's trim lists: what a VM test run never imports). The ticks run
on a daemon thread: it only reads small proc files and never touches the appliance's state, so it
does not belong on the event loop, and it is off unless asked for.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable

MEMINFO = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Shmem", "AnonPages", "SReclaimable", "SUnreclaim",
           "KernelStack", "PageTables")
STATUS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
# Thrash shows here: pages read again after eviction (from /ro: decompressed again), direct reclaim.
VMSTAT = ("pgmajfault", "workingset_refault_file", "allocstall_normal", "allocstall_dma32", "pgscan_kswapd")

# glibc's mallopt(M_ARENA_MAX): each thread that allocates otherwise gets its own arena (up to 8 per
# core), each keeping the pages it touched; the appliance's few helper threads (auth worker, DHCP
# renewal, this reporter) allocate little, so two arenas are plenty and what they free is reused.
M_ARENA_MAX = -8
ARENAS = 2
# Tried and measured at -m 128, then left out: vm.min_free_kbytes 4 MB (for atomic allocations of
# forwarded packets) cost 8 MB of MemAvailable (the kernel keeps its watermarks free) with no drop
# seen; malloc_trim(0) 15 s after start gave back 24 kB of 24.9 MB RssAnon (Python's heap has few
# free glibc pages: pymalloc returns its arenas itself).


def tune() -> None:
    """Once, early in PID 1 (before any thread starts)."""
    ctypes.CDLL(None).mallopt(M_ARENA_MAX, ARENAS)


def _fields(path: str, names: tuple[str, ...], sep: str = ":") -> list[str]:
    out = []
    try:
        with open(path) as f:
            for ln in f:
                key, _, rest = ln.partition(sep)
                if key in names:
                    out.append(f"{key}={rest.split()[0]}")
    except OSError:
        pass
    return out


def line() -> str:
    return "mem: " + " ".join(_fields("/proc/meminfo", MEMINFO) + _fields("/proc/self/status", STATUS)
                              + _fields("/proc/vmstat", VMSTAT, " "))


def start_reporter(cmdline: list[str], say: Callable[[str], None]) -> None:
    """`appliance.memstat=N` (seconds, 1..3600): a daemon thread saying line() every N seconds."""
    imports = "appliance.importlog=1" in cmdline
    seen: set[str] = set()
    for arg in cmdline:
        if arg.startswith("appliance.memstat="):
            try:
                every = min(max(int(arg.partition("=")[2]), 1), 3600)
            except ValueError:
                say(f"ignoring {arg}: not a number of seconds")
                return

            def loop() -> None:
                while True:
                    if imports:
                        new = sorted(set(sys.modules.copy()) - seen)   # copy(): atomic under the GIL
                        seen.update(new)
                        if new:
                            say("imported: " + " ".join(new))
                    time.sleep(every)
                    say(line())
            threading.Thread(target=loop, name="memstat", daemon=True).start()
            return
