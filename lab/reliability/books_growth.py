"""Which of the server's containers grow with connections that came and went (not a test):
the real server gateway and clients on lab/gateway_world's fake network and clock, TCP or UDP,
clients restarting (SIGUSR1: a new connection, over TCP from a new source port each time) and
renegotiating (reneg-sec), a packet through each tunnel, the management interface's history and
status books in use; every container (dict, list, set, deque, bytearray) reachable from the server
gateway through our own objects is measured by where it sits (its attribute path) after a first
and after the last round. A path whose size grew with the rounds, with the same clients connected
at both, keeps something per connection that it should have let go.

Why: the long soaks (soak_ops) show an RSS creep of a few hundred kB over thousands of connections
(lab/reliability/RESULTS.md); heapwatch's object counts by type say whether objects are left
behind, not which book holds them; this says which.

    .venv/bin/python -m lab.reliability.books_growth [--proto tcp|udp] [--clients 6] [--rounds 40]
"""
from __future__ import annotations

import argparse
import collections
import time

from lab.gateway_world import World, client_conf, client_up, ipv4_udp, make_pki, server_conf

SERVER_TUN = "198.19.0.1"
CONTAINERS = (dict, list, set, frozenset, collections.deque, bytearray)


def measure(root: object, name: str = "gw", depth: int = 9) -> dict[str, int]:
    """Sizes of the containers reachable from `root` through objects of our own modules (appliance.*),
    by attribute path; items of a container are followed as `path[*]` (summed over the items)."""
    sizes: dict[str, int] = collections.Counter()
    seen: set[int] = set()

    def ours(o: object) -> bool:
        return type(o).__module__.startswith("appliance.")     # not the lab's fake network

    def walk(o: object, path: str, d: int) -> None:
        if id(o) in seen or d <= 0:
            return
        seen.add(id(o))
        if isinstance(o, CONTAINERS):
            sizes[path] += len(o)
            items = o.values() if isinstance(o, dict) else o if not isinstance(o, bytearray) else ()
            for v in list(items)[:5000]:
                if isinstance(v, CONTAINERS) or ours(v) or isinstance(v, tuple):
                    walk(v, path + "[*]", d - 1)
            return
        if isinstance(o, tuple):
            for i, v in enumerate(o):
                walk(v, f"{path}.{i}", d - 1)
            return
        if not ours(o):
            return
        attrs = dict(getattr(o, "__dict__", {}))
        for s in getattr(type(o), "__slots__", ()):
            if hasattr(o, s):
                attrs[s] = getattr(o, s)
        for k, v in attrs.items():
            walk(v, f"{path}.{k}", d - 1)

    walk(root, name, depth)
    return dict(sizes)


def churn(proto: str, nclients: int, rounds: int, seconds: float, pki: dict | None = None,
          server_extra: str = "") -> tuple[dict[str, int], dict[str, int], World]:
    """`rounds` rounds: every client up, a packet through each tunnel, `seconds` of fake time, then
    every client restarted (SIGUSR1); the server's containers measured after round 1 and after
    the last (all clients up again, `seconds` later). (first, last, the world)."""
    pki = pki or make_pki([f"client{i}" for i in range(nclients)])
    w = World()
    sp, cp = ("tcp-server", "tcp-client") if proto == "tcp" else ("udp", "udp")
    w.add_server(server_conf(pki, proto=sp, extra="reneg-sec 20\n" + server_extra))
    for i in range(nclients):
        w.add_client(client_conf(pki, f"client{i}", proto=cp, extra="reneg-sec 0\n"))
    gw = w.server
    first: dict[str, int] | None = None
    for r in range(rounds):
        assert w.run(lambda: all(client_up(w, i) for i in range(nclients)), max_time=120), f"round {r}: not all up"
        for i in range(nclients):
            w.client_nets[i].tun.inject(ipv4_udp(w.client_addr(i), SERVER_TUN, b"round %d" % r))
        w.run_for(seconds)
        if r == 1:
            first = measure(gw)
        for i in range(nclients):
            w.clients[i].user_restart()
        w.run_for(2)
    assert w.run(lambda: all(client_up(w, i) for i in range(nclients)), max_time=120)
    w.run_for(seconds)
    last = measure(gw)
    assert first is not None
    return first, last, w


def run(proto: str, nclients: int, rounds: int, seconds: float) -> None:
    t0 = time.monotonic()
    first, last, w = churn(proto, nclients, rounds, seconds)
    gw = w.server
    grew = sorted(((last.get(k, 0) - first.get(k, 0), k, first.get(k, 0), last.get(k, 0)) for k in last),
                  reverse=True)
    print(f"{proto}: {nclients} clients, {rounds} rounds of restarts ({rounds * nclients} connections), "
          f"{w.clock.t:.0f} s of fake time, {time.monotonic() - t0:.0f} s wall; "
          f"clients at the server: {len(gw.d.clients)}")
    for delta, k, a, b in grew:
        if delta > 0:
            print(f"  +{delta:6d}  {a:6d} -> {b:6d}  {k}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proto", choices=("udp", "tcp"), default="tcp")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=25.0, help="fake seconds each round stays up")
    a = ap.parse_args(argv)
    run(a.proto, a.clients, a.rounds, a.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
