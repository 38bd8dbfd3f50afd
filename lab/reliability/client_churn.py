"""Our client reconnecting many times against Debian's OpenVPN 2.6 server (not a test): does the
client keep anything per connection -- memory, descriptors, threads -- once it has moved on?

Why: the soaks watch the server; a client on a flaky link (a phone's hotspot, a router's WAN that
drops every night) restarts its connection thousands of times over its life without being
restarted itself. Here one of our client processes is told SIGUSR1 (restart the connection, as
2.6's client takes it) `--restarts` times per protocol; after each restart it must be back
(`tunnel up` again within 60 s) and pass a ping through the tunnel to the server's tunnel address.
Its RSS, open fds and threads are sampled after every restart; printed: the first sample after
`--warmup` restarts, the largest after it, and the last.

    .venv/bin/python -m lab.reliability.client_churn --restarts 200 --proto udp tcp
        [--client-env PYTHONPATH=lab/reliability/heapwatch --client-env HEAPWATCH=/tmp/hw-cli.jsonl]
"""
from __future__ import annotations

import argparse
import json
import signal
import time

from ..netns import TUN_SERVER_IP
from .fleet import Fleet, proc_stats


def threads_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(ln for ln in f if ln.startswith("Threads:")).split()[1])
    except (OSError, StopIteration):
        return 0


def churn(proto: str, restarts: int, warmup: int, env: dict | None) -> dict:
    with Fleet(1) as fl:
        fl.start_server(proto=proto, kind="openvpn", name=f"dsrv-{proto}")
        cli = fl.lab.ours(fl.ns[0], fl.profile(0, proto), f"cli-{proto}", env=env)
        pid = cli.p.pid
        samples: list[dict] = []
        failures: list[str] = []
        pings_ok = 0
        t0 = time.monotonic()
        for n in range(restarts):
            mark = cli.log().count("tunnel up")
            cli.p.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and cli.log().count("tunnel up") <= mark:
                time.sleep(0.1)
            if cli.log().count("tunnel up") <= mark:
                failures.append(f"restart {n}: not back within 60 s")
                break
            for _ in range(20):         # the first ping may meet the route being set: retry, bounded
                if fl.ns[0].run(f"ping -c1 -W1 {TUN_SERVER_IP}", check=False, timeout=5).returncode == 0:
                    pings_ok += 1
                    break
                time.sleep(0.2)
            else:
                failures.append(f"restart {n}: no ping through the tunnel")
            s = proc_stats(pid)
            samples.append({"n": n + 1, "rss_kb": s["rss_kb"], "fds": s["fds"], "threads": threads_of(pid)})
        after = samples[warmup - 1:] if len(samples) >= warmup else samples
        res = {"proto": proto, "restarts": len(samples), "pings": pings_ok, "failures": failures,
               "seconds": round(time.monotonic() - t0),
               "first": samples[0] if samples else None, "after_warmup": after[0] if after else None,
               "max_after_warmup": max(after, key=lambda s: s["rss_kb"]) if after else None,
               "last": samples[-1] if samples else None,
               "fds_range": [min(s["fds"] for s in after), max(s["fds"] for s in after)] if after else None,
               "threads_range": [min(s["threads"] for s in after), max(s["threads"] for s in after)] if after else None,
               "server_sessions_line": [ln for ln in fl.server.log().splitlines() if "MULTI" in ln][-1:]
               if fl.server else None}
        cli.stop(8)
        return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restarts", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="restarts before the reference sample")
    ap.add_argument("--proto", nargs="+", choices=("udp", "tcp"), default=["udp", "tcp"])
    ap.add_argument("--client-env", action="append", default=[], metavar="NAME=VALUE")
    a = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in a.client_env) or None
    for proto in a.proto:
        print(json.dumps(churn(proto, a.restarts, a.warmup, env)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
