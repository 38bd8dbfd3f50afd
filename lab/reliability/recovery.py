"""Restart and recovery.

1. kill -9 of the server with many clients connected, then the server started again at once: the
   time each client takes to bring its tunnel up again (its log's second `tunnel up`), against the
   bound keepalive (ping-restart pushed by the server) + the client's backoff (connect-retry) +
   slack for every handshake arriving at once. Ours as the server, or Debian's (`--server openvpn`)
   for comparison; the clients are ours.
2. A client restarted in the middle of a transfer (a paced TCP stream with a deterministic
   pattern, checked with SHA-256 on arrival): how long until its tunnel is back, whether it got the
   same tunnel address, whether the TCP stream survived, and that a fresh transfer checks out.
(The WAN outage on the router VM needs QEMU: not run here.)

    python -m lab.reliability.recovery --clients 50 [--server ours|openvpn]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import time

from ..netns import _RECEIVER, TUN_SERVER_IP, _pattern_digest
from .fleet import Fleet

PING_RESTART, CONNECT_RETRY = 30, 1

PACED_SENDER = r"""
import socket, sys, time
dst, port, n, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
b = bytes(range(256)) * 4096
c = socket.create_connection((dst, port), timeout=10); c.settimeout(120)
t0 = time.monotonic(); i = 0
try:
    while i < n:
        ahead = i / rate - (time.monotonic() - t0)
        if ahead > 0: time.sleep(ahead)
        k = min(65536, n - i, len(b) - (i % len(b)))
        c.sendall(b[i % len(b):i % len(b) + k]); i += k
    c.close(); print("sent", i, flush=True)
except OSError as e:
    print("send failed after", i, "bytes:", e, flush=True); sys.exit(1)
"""


def tun_addr(fleet: Fleet, i: int) -> str:
    return fleet.lab._tun_ip(fleet.ns[i])


def kill9(fleet: Fleet, n: int, server_kind: str = "ours", out=print,
          keepalive: tuple[int, int] = (5, PING_RESTART)) -> dict:
    """`keepalive`: the server's (ping, ping-restart), the latter pushed to the clients: it is
    how long a client takes to notice the server is gone, so most of this run's time, and the
    bound is taken from it. The suite's short run gives a shorter one than the long run's."""
    ping, ping_restart = keepalive
    res: dict = {"server": server_kind, "clients": n}
    ka = f"{ping} {ping_restart}"
    srv = fleet.start_server(kind=server_kind, name=f"srv-{server_kind}", keepalive=ka)
    for i in range(n):
        fleet.start_client(i)
    up = fleet.wait_all_up(list(range(n)), 180)
    res["up_before"] = len(up)
    out(f"kill -9: {len(up)}/{n} clients up (last after {max(up.values(), default=0):.1f} s)", flush=True)
    assert len(up) == n, "not every client came up"
    time.sleep(ping + 1)   # a keepalive ping or two
    os.kill(srv.p.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    srv.p.wait(10)
    srv2 = fleet.start_server(kind=server_kind, name=f"srv2-{server_kind}", keepalive=ka)
    res["server_restart_s"] = round(time.monotonic() - t_kill, 1)
    bound = ping_restart + 2 * CONNECT_RETRY + 15
    back: dict[int, float] = {}
    while time.monotonic() - t_kill < bound + 30 and len(back) < n:
        for i in range(n):
            if i not in back and fleet.clients[i].log().count("tunnel up") >= 2:
                back[i] = time.monotonic() - t_kill
        time.sleep(0.2)
    times = sorted(back.values())
    res.update({"back": len(back), "bound_s": bound,
                "back_min_s": round(times[0], 1) if times else None,
                "back_median_s": round(statistics.median(times), 1) if times else None,
                "back_max_s": round(times[-1], 1) if times else None,
                "within_bound": sum(1 for t in times if t <= bound)})
    time.sleep(2)
    res["ping_ok"] = sum(fleet.lab.ping(fleet.ns[i], TUN_SERVER_IP, 1, timeout=5) for i in range(n))
    res["server_alive"] = srv2.alive()
    for i in range(n):
        fleet.stop_client(i)
    srv2.stop(8)
    return res


def restart_mid_transfer(fleet: Fleet, server_kind: str = "ours", nbytes: int = 24_000_000, rate_mbit: float = 16,
                         restart_at: float = 4, stall_s: int = 90, out=print) -> dict:
    lab = fleet.lab
    res: dict = {"server": server_kind}
    srv = fleet.start_server(kind=server_kind, name=f"srvmt-{server_kind}")
    p = fleet.start_client(0, wait=40)
    assert lab.wait_ping(fleet.ns[0], TUN_SERVER_IP, 15)
    res["addr_before"] = tun_addr(fleet, 0)
    recv = lab.start(lab.srv, [sys.executable, "-c", _RECEIVER.replace("settimeout(60)", f"settimeout({stall_s})"),
                               TUN_SERVER_IP, "5210", str(nbytes)], "mt-recv")
    assert recv.wait_for("listening", 60)
    send = lab.start(fleet.ns[0], [sys.executable, "-c", PACED_SENDER, TUN_SERVER_IP, "5210", str(nbytes),
                                   str(rate_mbit * 1e6 / 8)], "mt-send")
    time.sleep(restart_at)
    fleet.stop_client(0)
    t0 = time.monotonic()
    p = fleet.start_client(0, wait=60)
    res["tunnel_back_s"] = round(time.monotonic() - t0, 1)
    res["addr_after"] = tun_addr(fleet, 0)
    res["same_address"] = res["addr_after"] == res["addr_before"]
    recv.wait_for(r"(?m)^(ok|short) ", stall_s + 60)
    m = re.search(r"^(ok|short) (\S+)", recv.log(), re.M)
    res["stream_survived"] = bool(m and m.group(1) == "ok" and m.group(2) == _pattern_digest(nbytes))
    res["sender"] = send.log().strip()[-200:]
    res["receiver"] = (m.group(0)[:20] if m else recv.log().strip()[-200:])
    recv.stop(3)
    send.stop(3)
    res["fresh_transfer_mbps"] = lab.tcp_transfer(lab.srv, TUN_SERVER_IP, fleet.ns[0], 5_000_000, port=5211)
    res["server_sessions_note"] = re.findall(r"c0/\S+: (disconnected: [^\n]*|connected, address \S+)", srv.log())
    fleet.stop_client(0)
    srv.stop(8)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--server", default="ours", choices=["ours", "openvpn", "both"])
    ap.add_argument("--skip-kill", action="store_true")
    a = ap.parse_args(argv)
    kinds = ["ours", "openvpn"] if a.server == "both" else [a.server]
    ok = True
    with Fleet(a.clients) as fleet:
        for kind in kinds:
            if not a.skip_kill:
                r = kill9(fleet, a.clients, kind, out=lambda *x, **k: print(*x, flush=True))
                print(f"kill -9 of the {kind} server:", flush=True)
                for k, v in r.items():
                    print(f"  {k}: {v}", flush=True)
                ok &= r["within_bound"] == a.clients
            r = restart_mid_transfer(fleet, kind)
            print(f"client restarted mid-transfer ({kind} server):", flush=True)
            for k, v in r.items():
                print(f"  {k}: {v}", flush=True)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
