"""A loop-step timer for a soak's server process (not a test): put this folder on the server's
PYTHONPATH (`soak_ops --server-env PYTHONPATH=.../loopwatch --server-env LOOPWATCH=/tmp/x.jsonl`)
and every LOOPWATCH_EVERY seconds (10) a line goes to LOOPWATCH with the longest loop step of
that window: the time a `Pump.step` spent working (timers, handlers, the after-wake flush), its
wait in epoll left out -- so a SIGHUP's reload or a handshake done on the loop shows as the time
every other client's packets waited. Also the steps over 20, 50, 100 and 500 ms, and the step
count. Why outside the product: it wraps two methods of the running process, which the product
need not pay for; the soak reads the window's maximum as "the longest loop step"."""
from __future__ import annotations

import os
import sys

_OUT = os.environ.get("LOOPWATCH")


def _install(out) -> None:
    import json
    import threading
    import time

    from appliance.gateway import loop

    state = {"wait": 0.0, "max": 0.0, "max_cpu": 0.0, "n": 0, "over": [0, 0, 0, 0]}
    limits = (0.02, 0.05, 0.1, 0.5)
    perf, cpu = time.perf_counter, time.thread_time
    wait0, step0 = loop.SelectorWaiter.wait, loop.Pump.step

    def wait(self, timeout):  # noqa: ANN001, ANN202
        t = perf()
        try:
            return wait0(self, timeout)
        finally:
            state["wait"] += perf() - t

    def step(self, block: bool = True) -> bool:
        state["wait"] = 0.0
        t, c = perf(), cpu()
        try:
            return step0(self, block)
        finally:
            work = perf() - t - state["wait"]
            state["n"] += 1
            if work > state["max"]:
                # with the loop thread's CPU time: far below the wall time, the step waited for a
                # CPU (a loaded machine), not for its own work
                state["max"], state["max_cpu"] = work, cpu() - c
            for i, lim in enumerate(limits):
                if work > lim:
                    state["over"][i] += 1

    loop.SelectorWaiter.wait, loop.Pump.step = wait, step
    every = float(os.environ.get("LOOPWATCH_EVERY", "10"))

    def writer() -> None:
        while True:
            time.sleep(every)
            # a window's figures swapped out in one go (the loop's thread may be mid-step: one
            # step's count lands in either window, never lost)
            mx, mc, n, over = state["max"], state["max_cpu"], state["n"], list(state["over"])
            state["max"], state["max_cpu"], state["n"], state["over"] = 0.0, 0.0, 0, [0, 0, 0, 0]
            out.write(json.dumps({"t": round(time.time(), 1), "max_ms": round(mx * 1000, 2),
                                  "max_cpu_ms": round(mc * 1000, 2), "steps": n,
                                  "over_20_50_100_500ms": over}) + "\n")
            out.flush()

    threading.Thread(target=writer, name="loopwatch", daemon=True).start()


def _start() -> None:
    # our server only: `vpn-appliance run CONF` (the scripts it runs get the same environment)
    if not _OUT or "vpn-appliance" not in sys.argv[0] or "run" not in sys.argv[1:2]:
        return
    _install(open(_OUT, "a"))       # opened now: the server may drop its privileges later


_start()
