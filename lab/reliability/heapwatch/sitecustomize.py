"""A heap sampler for a soak's server process (not a test): put this folder on the server's
PYTHONPATH (`soak_ops --server-env PYTHONPATH=.../heapwatch --server-env HEAPWATCH=/tmp/x.jsonl`)
and every HEAPWATCH_EVERY seconds (30) a line goes to HEAPWATCH with what the RSS is made of:
its mappings' resident sizes by kind ([heap]: glibc's main arena; anon: Python's 1 MiB arenas,
glibc's big mmaps and thread arenas; file: code and data of the .so files and the interpreter),
glibc's mallinfo2, Python's allocated blocks, the number of modules and of live objects per type
(the collector's), and, with HEAPWATCH_TRACE=1, tracemalloc's top differences since the last line
and, from HEAPWATCH_REF seconds on (300), since the first line at or after it (`since_ref`: what the
run kept after its warm-up, summed by line -- a slow creep is a few bytes a minute, lost in the
last minute's noise but not in twenty minutes'). With HEAPWATCH_TRIM=K, every K-th line also
says what glibc's malloc_trim(0) gave back right after it (`trim`: RSS and [heap] after): pages
the allocator holds free, as against memory in use -- a creep that a trim takes back is free space
touched, not something kept.
So that an RSS step can be put down to objects kept, a module loaded, pages of a library first
touched, or an allocator's arena -- each shows in a different column."""
from __future__ import annotations

import os
import sys

_OUT = os.environ.get("HEAPWATCH")


def _mappings() -> tuple[dict[str, int], dict[str, list[int]]]:
    """Resident kB per kind of mapping (/proc/self/smaps), and each resident anonymous mapping's
    size and resident kB by its start address (which one grew: Python's arenas, 1 MiB each and
    merged when adjacent; a thread's stack, 8 MiB; a glibc thread arena, inside 64 MiB)."""
    out = {"heap": 0, "anon": 0, "file": 0, "stack": 0, "other": 0}
    anon: dict[str, list[int]] = {}
    kind, start, size = "other", "", 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                name = head[5].strip() if len(head) > 5 else ""
                kind = ("heap" if name == "[heap]" else "stack" if name.startswith("[stack") else
                        "anon" if not name else "file" if name.startswith("/") else "other")
                lo, hi = head[0].split("-")
                start, size = lo, (int(hi, 16) - int(lo, 16)) // 1024
            elif head[0] == "Rss:":
                out[kind] += int(head[1])
                if kind == "heap":      # its size too: resident pages can grow only up to it
                    out["heap_size"] = out.get("heap_size", 0) + size
                if kind == "anon" and int(head[1]):
                    anon[start] = [size, int(head[1])]
    return out, anon


def _mallinfo() -> dict[str, int]:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return {"arena_kb": m.arena // 1024, "mmap_kb": m.hblkhd // 1024, "used_kb": m.uordblks // 1024,
            "free_kb": m.fordblks // 1024}


def _loop(out) -> None:
    import gc
    import json
    import threading
    import time
    import tracemalloc
    from collections import Counter

    every = float(os.environ.get("HEAPWATCH_EVERY", "30"))
    trace = tracemalloc.is_tracing()
    prev = tracemalloc.take_snapshot() if trace else None
    ref, ref_at = None, float(os.environ.get("HEAPWATCH_REF", "300"))
    t0 = time.monotonic()
    _mallinfo()                 # ctypes imported now, not counted as the server's new module later
    known_mods = set(sys.modules)
    trim_every, n = int(os.environ.get("HEAPWATCH_TRIM", "0")), 0
    while True:
        time.sleep(every)
        try:
            types = Counter(type(o).__qualname__ for o in gc.get_objects())
            with open("/proc/self/status") as f:
                rss = int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1])
            mods = set(sys.modules)
            maps, anon = _mappings()
            rec = {"t": round(time.monotonic() - t0), "rss_kb": rss, "maps_kb": maps, "anon_maps": anon,
                   "malloc": _mallinfo(), "py_blocks": sys.getallocatedblocks(), "modules": len(mods),
                   "new_modules": sorted(mods - known_mods), "threads": threading.active_count(),
                   "gc_objects": sum(types.values()),
                   "types": {k: v for k, v in types.items() if v >= 20}}
            known_mods = mods
            if trace:
                snap = tracemalloc.take_snapshot()
                rec["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
                rec["trace_top"] = [str(s) for s in snap.compare_to(prev, "lineno")[:15]]
                prev = snap
                if ref is None and rec["t"] >= ref_at:
                    ref = snap
                    rec["ref"] = True
                elif ref is not None:
                    rec["since_ref"] = [str(s) for s in snap.compare_to(ref, "lineno")[:25]]
            n += 1
            if trim_every and n % trim_every == 0:
                import ctypes
                ctypes.CDLL("libc.so.6").malloc_trim(0)
                with open("/proc/self/status") as f:
                    after = int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1])
                rec["trim"] = {"rss_after_kb": after, "heap_after_kb": _mappings()[0]["heap"]}
            out.write(json.dumps(rec) + "\n")
        except Exception as e:  # noqa: BLE001 - a sampler's fault must not touch the server
            out.write(json.dumps({"error": repr(e)}) + "\n")
        out.flush()


def _start() -> None:
    # our server only: `vpn-appliance run CONF` (the scripts it runs get the same environment)
    if not _OUT or "vpn-appliance" not in sys.argv[0] or "run" not in sys.argv[1:2]:
        return
    if os.environ.get("HEAPWATCH_TRACE") == "1":
        import tracemalloc
        tracemalloc.start(1)
    import threading
    out = open(_OUT, "a")       # opened now: the server may drop its privileges later
    threading.Thread(target=_loop, args=(out,), name="heapwatch", daemon=True).start()


_start()
