"""Whether memory outside Python's objects (OpenSSL's, through malloc) creeps with renegotiations
(not a test): the real server gateway and clients on lab/gateway_world's fake network and clock,
`reneg-sec` short, a packet through each tunnel between samples; at each sample, after a full
collection, glibc's bytes in use (mallinfo2: every malloc, OpenSSL's included), what tracemalloc
traces of Python's (its objects and buffers) and tracemalloc's own bookkeeping (itself malloc'd).
What malloc holds beyond the last two is the C libraries' -- OpenSSL's SSL objects, BIOs,
certificates and keys -- and should stay level while the number of renegotiations climbs.

Why: the soaks renegotiate every 30 s per client and the main heap grew around OpenSSL's
allocations (RESULTS.md, soak44); a session cache, tickets, or SSL objects kept per key would
grow with renegotiations, not with clients. OpenVPN turns the cache and tickets off, as we do
(openvpn/tls.py); this checks that nothing else of OpenSSL's stays behind.

    .venv/bin/python -m lab.reliability.reneg_heap [--proto tcp|udp] [--clients 4] [--reneg 4] [--samples 8]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import time
import tracemalloc

from lab.gateway_world import World, client_conf, client_up, ipv4_udp, make_pki, server_conf

SERVER_TUN = "198.19.0.1"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def malloc_in_use() -> int:
    """glibc's bytes in use, all arenas and mmapped blocks."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


class _Count(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle, self.n = needle, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.n += 1


def run(proto: str, nclients: int, reneg: float, samples: int, seconds: float, top: int = 12) -> list[dict]:
    pki = make_pki([f"client{i}" for i in range(nclients)])
    w = World()
    sp, cp = ("tcp-server", "tcp-client") if proto == "tcp" else ("udp", "udp")
    w.add_server(server_conf(pki, proto=sp, extra=f"reneg-sec {reneg:g}\n"))
    for i in range(nclients):
        w.add_client(client_conf(pki, f"client{i}", proto=cp, extra="reneg-sec 0\n"))
    log = logging.getLogger("vpn-appliance")
    count = _Count(": key renegotiated")     # the server's line (eventlog.py), one per client key
    log.addHandler(count)
    log.setLevel(logging.INFO)
    assert w.run(lambda: all(client_up(w, i) for i in range(nclients)), max_time=120), "not all up"
    tracemalloc.start()
    rows: list[dict] = []
    ref = None
    t0 = time.monotonic()
    for s in range(samples + 1):
        if s:
            end = w.clock.t + seconds
            while w.clock.t < end:
                for i in range(nclients):
                    if client_up(w, i):
                        w.client_nets[i].tun.inject(ipv4_udp(w.client_addr(i), SERVER_TUN, b"x" * 200))
                w.run_for(min(1.0, end - w.clock.t))
                # the fake TUNs keep what they were given (lab/fakes.py): not the server's memory
                for net in (w.server_net, *w.client_nets):
                    if net.tun is not None:
                        net.tun.written.clear()
        gc.collect()
        used = malloc_in_use()
        py = tracemalloc.get_traced_memory()[0]
        own = tracemalloc.get_tracemalloc_memory()
        rows.append({"fake_s": round(w.clock.t), "renegotiations": count.n, "up": sum(client_up(w, i) for i in range(nclients)),
                     "malloc_kb": used // 1024, "python_kb": py // 1024, "tracemalloc_kb": own // 1024,
                     "outside_python_kb": (used - py - own) // 1024, "wall_s": round(time.monotonic() - t0)})
        print(rows[-1], flush=True)
        if s == 1:
            ref = tracemalloc.take_snapshot()
    if ref is not None and samples > 1:
        print("Python's growth from the first sample on, by line:")
        for d in tracemalloc.take_snapshot().compare_to(ref, "lineno")[:top]:
            print("  ", d)
    tracemalloc.stop()
    log.removeHandler(count)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proto", choices=("udp", "tcp"), default="tcp")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--reneg", type=float, default=4, help="the server's reneg-sec (fake seconds)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120, help="fake seconds between samples")
    a = ap.parse_args(argv)
    run(a.proto, a.clients, a.reneg, a.samples, a.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
