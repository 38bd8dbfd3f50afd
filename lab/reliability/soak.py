"""Soak: clients churning against our server for a while (connect, transfer a checked file, stay,
leave; the server renegotiates every `--reneg` seconds), with the server's RSS, open fds and pool
accounting sampled throughout.

    python -m lab.reliability.soak --minutes 30 --clients 20

Prints samples as it goes and, at the end: RSS at the end of the warm-up and at the end, the
largest RSS after warm-up, fds before the first client and after the last left, connections made,
renegotiations, transfers checked (SHA-256), and the sessions the server still holds after every
client left (must be 0: no address leaked from the pool). Then all clients connect at once, a last
check that the pool still has an address for each.
"""
from __future__ import annotations

import argparse
import random
import re
import threading
import time

from ..netns import TUN_SERVER_IP
from .fleet import Fleet, proc_stats, server_sessions


def run(minutes: float, nclients: int = 20, reneg: int = 60, warmup: float | None = None, seed: int = 8,
        stay: tuple[float, float] = (10, 150), server_env: dict | None = None, out=print,
        keepalive: str | None = None) -> dict:
    duration = minutes * 60
    warmup = warmup if warmup is not None else min(300.0, duration / 5)
    res: dict = {"clients": nclients, "minutes": minutes, "warmup_s": warmup}
    with Fleet(nclients) as fleet:
        extra = f"reneg-sec {reneg}\n"
        srv = fleet.start_server(extra=extra, env=server_env, keepalive=keepalive)
        pid = srv.p.pid
        time.sleep(1)
        base = proc_stats(pid)
        res["fds_before"] = base["fds"]
        out(f"soak: {nclients} clients, {minutes} min, reneg-sec {reneg}, warm-up {warmup:.0f} s; "
            f"server pid {pid} RSS {base['rss_kb'] / 1024:.1f} MB fds {base['fds']}")
        stop = threading.Event()
        counts = {"connects": 0, "connect_failures": 0, "transfers_ok": 0, "transfers_bad": 0, "transfers_retried": 0}
        lock = threading.Lock()
        failures: list[str] = []
        t0 = time.monotonic()
        t_end = t0 + duration

        def slot(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            time.sleep(rng.uniform(0, 5))
            while not stop.is_set() and time.monotonic() < t_end - 5:
                p = fleet.start_client(i)
                up = p.wait_for("tunnel up", 40)
                with lock:
                    counts["connects" if up else "connect_failures"] += 1
                if up:
                    t_start = time.monotonic() - t0
                    reverse = bool(rng.getrandbits(1))
                    mbps, why = fleet.lab.tcp_transfer_why(fleet.lab.srv, TUN_SERVER_IP, fleet.ns[i], 1_000_000,
                                                           port=5400 + i, reverse=reverse)
                    retried = not mbps
                    if retried:
                        # What a reader of a failed run needs: which client, when, why, and both
                        # logs. Then once more: a second failure is a broken tunnel, a first one
                        # alone is counted and shown (one failed once in a project CI under
                        # heavy load, and passed in every run here, so its cause is still open).
                        with lock:
                            failures.append(f"c{i} transfer begun at t={t_start:.1f}s failed at "
                                            f"t={time.monotonic() - t0:.1f}s: {why}\n--- client log:\n"
                                            f"{p.log()[-3000:]}")
                        mbps, why = fleet.lab.tcp_transfer_why(fleet.lab.srv, TUN_SERVER_IP, fleet.ns[i],
                                                               1_000_000, port=5400 + i, reverse=reverse)
                    with lock:
                        counts["transfers_ok" if mbps > 0 else "transfers_bad"] += 1
                        counts["transfers_retried"] += retried
                    stop.wait(min(rng.uniform(*stay), max(0.0, t_end - time.monotonic() - 3)))
                fleet.stop_client(i)
                stop.wait(rng.uniform(0.5, 3))

        threads = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(nclients)]
        for t in threads:
            t.start()
        samples = []
        rss_warm = None
        try:
            while time.monotonic() < t_end:
                time.sleep(min(15, max(0.1, t_end - time.monotonic())))
                s = proc_stats(pid)
                el = time.monotonic() - t0
                c, d = server_sessions(srv.log())
                samples.append((el, s["rss_kb"], s["fds"]))
                if rss_warm is None and el >= warmup:
                    rss_warm = s["rss_kb"]
                out(f"  t={el:6.0f}s RSS {s['rss_kb'] / 1024:6.1f} MB fds {s['fds']:3d} sessions {c - d:3d} "
                    f"connects {counts['connects']} transfers {counts['transfers_ok']}", flush=True)
                if not srv.alive():
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            for i in range(nclients):
                fleet.stop_client(i)
        res["server_alive"] = srv.alive()
        # Wait for the server to note every departure (exit notify; keepalive at worst).
        end = time.monotonic() + 70
        while time.monotonic() < end:
            c, d = server_sessions(srv.log())
            if c == d:
                break
            time.sleep(1)
        time.sleep(2)
        last = proc_stats(pid)
        log = srv.log()
        c, d = server_sessions(log)
        res.update(counts)
        res["renegotiations"] = len(re.findall(r": key renegotiated", log))
        res["sessions_left"] = c - d
        res["rss_before_mb"] = base["rss_kb"] / 1024
        res["rss_warm_mb"] = (rss_warm or samples[0][1]) / 1024
        res["rss_end_mb"] = last["rss_kb"] / 1024
        res["rss_max_after_warm_mb"] = max([s[1] for s in samples if s[0] >= warmup] or [last["rss_kb"]]) / 1024
        res["rss_growth_mb"] = res["rss_end_mb"] - res["rss_warm_mb"]
        res["fds_after"] = last["fds"]
        # Last check: every client connects at once, so the pool still has an address for each.
        for i in range(nclients):
            fleet.start_client(i)
        up = fleet.wait_all_up(list(range(nclients)), 90)
        res["final_all_connected"] = len(up)
        addrs = re.findall(r": connected, address (\S+)", srv.log()[len(log):])
        res["final_addresses_distinct"] = len(set(addrs))
        res["errors_in_log"] = len(re.findall(r"Traceback|ERROR|CRITICAL", srv.log()))
        if failures:
            out("failed transfers:\n" + "\n".join(failures) + "\n--- server log (last 6000 characters):\n"
                + srv.log()[-6000:])
    out("soak results:")
    for k, v in res.items():
        out(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--reneg", type=int, default=60)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: a fifth of the run, at most 300)")
    ap.add_argument("--stay", type=float, nargs=2, default=(10, 150), help="a client stays this long (s), uniform")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of the server process, e.g. MALLOC_MMAP_THRESHOLD_=131072")
    a = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in a.server_env) or None
    r = run(a.minutes, a.clients, a.reneg, a.warmup, stay=tuple(a.stay), server_env=env, out=lambda *x, **k: print(*x, flush=True))
    ok = (r["server_alive"] and r["rss_growth_mb"] <= 5 and r["sessions_left"] == 0
          and r["fds_after"] <= r["fds_before"] and r["final_all_connected"] == a.clients)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
