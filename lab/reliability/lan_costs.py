"""What one hostile message costs the pump's LAN services, in memory (no sockets, no other
process), so the figures do not depend on a shared machine's load as the lab runs of
tests/interop/test_lan_attacks.py do. Why: the LAN services run on the one pump every tunnel
packet goes through; a flood's reach is the cost per message times the rate the service lets in.

    python -m lab.reliability.lan_costs [--n 300]

Prints microseconds per message (best of 3 runs) for: the DNS forwarder's core taking a query
and an upstream answer of each size (the DNS rebinding check walks its records), the DHCP
server's core taking a DISCOVER from a new MAC into an empty or a full pool, a REQUEST, an
INFORM, messages of many options or PAD bytes and a rate-limited drop, and the RA service taking a
router solicitation. The socket calls around them (recvfrom, sendto; a new upstream socket per
forwarded DNS query) are not in these figures."""
from __future__ import annotations

import argparse
import ipaddress
import itertools
import struct
import time
from typing import Callable

from appliance.lan import dhcp_codec as c
from appliance.lan import dns_rebind as rb
from appliance.lan import dns_wire as w
from appliance.lan.dhcp_server import DhcpServer
from appliance.lan.dns_core import ForwarderCore, Limits, Send
from appliance.lan.icmpv6 import build_rs

LAN4 = ipaddress.ip_network("198.18.50.0/24")
SERVER = ("198.19.0.1", 53)
UNLIMITED = Limits(rate=1e12, burst=1e12, lan_rate=1e12, quiet_rate=1e12, quiet_burst=1e12,
                   max_per_source=10 ** 6, max_outstanding=10 ** 6)


def best(fn: Callable[[int], float], n: int) -> float:
    """The best of 3 runs of `fn(n)` (seconds spent on the measured part), in us per message."""
    return min(fn(n) for _ in range(3)) / n * 1e6


# ---------------------------------------------------------------- DNS
def dns_core() -> ForwarderCore:
    f = rb.RebindFilter([LAN4])
    f.set_own(["198.19.0.2"])
    ids = itertools.count(1000)
    core = ForwarderCore(UNLIMITED, random_id=lambda: next(ids) & 0xFFFF, rebind=f)
    core.set_servers([SERVER])
    return core


def dns_answer(query: bytes, upstream: bytes, records: int, size: int, lan_last: bool) -> bytes:
    """An answer to `upstream` (the attempt's query) of `records` A records (fewer if `size`
    bytes do not hold them), the last a LAN address when `lan_last`."""
    m = w.parse_untrusted(query)
    rec = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4)
    n = min(records, (size - m.question_end) // (len(rec) + 4))
    body = [rec + bytes((8, 8, 8, 8))] * n
    if lan_last and n:
        body[-1] = rec + ipaddress.ip_address("198.18.50.5").packed
    head = struct.pack("!HHHHHH", struct.unpack_from("!H", upstream)[0], 0x8180, 1, n, 0, 0)
    return head + query[12:m.question_end] + b"".join(body)


def dns_answer_cost(records: int, size: int, tcp: bool, lan_last: bool) -> Callable[[int], float]:
    def run(n: int) -> float:
        core, spent = dns_core(), 0.0
        for i in range(n):
            q = w.encode_query(7, f"x{i}.attacker.example")
            (s,) = [a for a in core.query("c", "198.18.50.10", q, float(i), tcp=tcp) if isinstance(a, Send)]
            a = dns_answer(q, s.data, records, size, lan_last)
            t = time.perf_counter()
            core.answer(s.token, s.server, a, float(i))
            spent += time.perf_counter() - t
        return spent
    return run


def dns_query_cost(big: bool) -> Callable[[int], float]:
    """Unique names from one LAN address (no answers: the pending table fills and jostles)."""
    def run(n: int) -> float:
        core = dns_core()
        queries = []
        for i in range(n):
            q = w.encode_query(i & 0xFFFF, f"u{i}.flood.example")
            if big:     # 4 KiB: records before the OPT, which the EDNS size is looked for behind
                rec = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 0)
                k = (4096 - len(q) - 11) // len(rec)
                q = q[:6] + struct.pack("!HHH", 0, 0, k + 1) + q[12:] + rec * k + b"\0" + struct.pack(
                    "!HHIH", w.T_OPT, 1232, 0, 0)
            queries.append(q)
        t = time.perf_counter()
        for i, q in enumerate(queries):
            core.query("c", "198.18.50.10", q, i * 0.001)
        return time.perf_counter() - t
    return run


def dns_dropped_cost(n: int) -> float:
    core = ForwarderCore(Limits(), rebind=None)
    core.set_servers([SERVER])
    q = w.encode_query(1, "x.flood.example")
    for _ in range(1000):
        core.query("c", "198.18.50.10", q, 0.0)       # its buckets emptied
    t = time.perf_counter()
    for _ in range(n):
        core.query("c", "198.18.50.10", q, 0.0)
    return time.perf_counter() - t


# ---------------------------------------------------------------- DHCP
def dhcp_msg(kind: int, mac: bytes, ciaddr: str = "0.0.0.0", requested: str | None = None,
             server: str | None = None, extra: bytes = b"") -> bytes:
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, 0x1234, 0, 0, ipaddress.ip_address(ciaddr).packed,
                      bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\0"))
    opts = bytes((53, 1, kind))
    if requested:
        opts += bytes((50, 4)) + ipaddress.ip_address(requested).packed
    if server:
        opts += bytes((54, 4)) + ipaddress.ip_address(server).packed
    return hdr + bytes(192) + c.MAGIC + opts + bytes((55, 5, 1, 3, 6, 15, 51)) + extra + b"\xff"


def dhcp_server(full: bool) -> DhcpServer:
    s = DhcpServer(ipaddress.IPv4Interface("198.18.48.1/20"), ipaddress.IPv4Address("198.18.48.2"),
                   ipaddress.IPv4Address("198.18.63.254"), 3600)
    s._tokens = float("inf")                            # the rate limit measured apart
    if full:
        for i in range(s.size):
            mac = b"\x02\0" + i.to_bytes(4, "big")
            offer = s.handle(dhcp_msg(c.DISCOVER, mac), 0.0, port=68)
            if offer:
                yiaddr = str(ipaddress.IPv4Address(offer[0].data[16:20]))
                s.handle(dhcp_msg(c.REQUEST, mac, requested=yiaddr, server="198.18.48.1"), 0.0, port=68)
    return s


def dhcp_cost(make: Callable[[int], bytes], full: bool = False, source: str | None = None) -> Callable[[int], float]:
    def run(n: int) -> float:
        s = dhcp_server(full)
        msgs = [make(i) for i in range(n)]
        src = ipaddress.IPv4Address(source) if source else None
        t = time.perf_counter()
        for m in msgs:
            s.handle(m, 1.0, src, 68)
        return time.perf_counter() - t
    return run


def dhcp_limited_cost(n: int) -> float:
    s = dhcp_server(False)
    s._tokens, s._refilled = 0.0, 1.0
    m = dhcp_msg(c.DISCOVER, b"\x02\xff\0\0\0\1")
    t = time.perf_counter()
    for _ in range(n):
        s.handle(m, 1.0, None, 68)
    return time.perf_counter() - t


def dhcp_known_flood() -> tuple[int, int]:
    """A DISCOVER flood of 4,000 random MACs at the shared rate fills the table; then 8 DISCOVERs
    from each of those MACs at once, and one from each a second later: (handled at once, after)."""
    s = DhcpServer(ipaddress.IPv4Interface("198.18.48.1/20"), ipaddress.IPv4Address("198.18.48.2"),
                   ipaddress.IPv4Address("198.18.63.254"), 3600)
    macs = [b"\x02\4" + i.to_bytes(4, "big") for i in range(4000)]
    t = 100.0
    for m in macs:
        t += 1 / 200
        s.handle(dhcp_msg(c.DISCOVER, m), t, ipaddress.IPv4Address(0), 68)
    burst = sum(len(s.handle(dhcp_msg(c.DISCOVER, m), t, ipaddress.IPv4Address(0), 68)) for m in macs for _ in range(8))
    after = sum(len(s.handle(dhcp_msg(c.DISCOVER, m), t + 1, ipaddress.IPv4Address(0), 68)) for m in macs)
    return burst, after


def rs_cost(with_options: bool, over_rate: bool = False) -> Callable[[int], float]:
    from appliance.lan.ra import RouterAdvertiser

    class Pump:
        def __init__(self) -> None:
            from appliance.gateway.loop import TimerHeap
            self.timers = TimerHeap()
            self.faults = type("F", (), {"count": lambda self, what: None})()

            self.now = 1.0

        def clock(self) -> float:
            if not over_rate:
                self.now += 1.0             # within the rate: a token each time (if it has a bucket)
            return self.now

    def run(n: int) -> float:
        ra = RouterAdvertiser("lan0", ipaddress.IPv6Interface("fd18:50::1/64"))
        ra.pump = Pump()
        ra.current = object()               # advertising: each RS moves the next RA's timer
        ra.schedule.up(1.0)
        ra.schedule.fire(1.0)
        data = build_rs(b"\x02\0\0\0\0\1")
        if with_options:                # 63 unknown 8-byte options after the SLLA (MAX_OPTIONS is 64)
            data += (bytes((200, 1)) + bytes(6)) * 63
        anc = [(41, 52, struct.pack("@i", 255))]        # IPPROTO_IPV6, IPV6_HOPLIMIT
        if over_rate:
            for _ in range(1000):
                ra.receive(data, anc, ("fe80::2%lan0", 0, 0, 2))
        t = time.perf_counter()
        for _ in range(n):
            ra.receive(data, anc, ("fe80::2%lan0", 0, 0, 2))
        return time.perf_counter() - t
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    n = ap.parse_args().n
    rows = [
        ("DNS query, unique name, forwarded (pending table full, jostling)", dns_query_cost(False)),
        ("DNS query of 4 KiB, 360 records before its OPT", dns_query_cost(True)),
        ("DNS query over its address's rate (dropped)", dns_dropped_cost),
        ("DNS answer, 1 A record, UDP client", dns_answer_cost(1, 512, False, False)),
        ("DNS answer, 110 A records (1,232 bytes: the most a UDP client takes)", dns_answer_cost(110, 1232, True, False)),
        ("DNS answer, 128 A records (the most checked), TCP client", dns_answer_cost(128, 65535, True, False)),
        ("DNS answer, 128 A records, the last a LAN address, TCP client", dns_answer_cost(128, 65535, True, True)),
        ("DNS answer, 256 A records, TCP client", dns_answer_cost(256, 65535, True, False)),
        ("DNS answer, 4,093 A records (64 KiB), TCP client", dns_answer_cost(5000, 65535, True, False)),
        ("DNS answer, 4,093 A records, the last a LAN address, TCP client", dns_answer_cost(5000, 65535, True, True)),
        ("DHCP DISCOVER, a new MAC, pool of 4,093 empty", dhcp_cost(lambda i: dhcp_msg(c.DISCOVER, b"\x02\1" + i.to_bytes(4, "big")))),
        ("DHCP DISCOVER, a new MAC, pool of 4,093 bound", dhcp_cost(lambda i: dhcp_msg(c.DISCOVER, b"\x02\1" + i.to_bytes(4, "big")), full=True)),
        ("DHCP REQUEST binding a new MAC", dhcp_cost(lambda i: dhcp_msg(
            c.REQUEST, b"\x02\1" + i.to_bytes(4, "big"), requested=str(ipaddress.IPv4Address("198.18.49.0") + i),
            server="198.18.48.1"))),
        ("DHCP INFORM from its own address", dhcp_cost(lambda i: dhcp_msg(c.INFORM, b"\x02\2\0\0\0\1", ciaddr="198.18.50.9"),
                                                       source="198.18.50.9")),
        ("DHCP DISCOVER of 3.9 KiB, 230 options", dhcp_cost(lambda i: dhcp_msg(
            c.DISCOVER, b"\x02\3" + i.to_bytes(4, "big"), extra=(bytes((224, 14)) + bytes(14)) * 228))),
        ("DHCP DISCOVER with 3,800 PAD bytes", dhcp_cost(lambda i: dhcp_msg(
            c.DISCOVER, b"\x02\5" + i.to_bytes(4, "big"), extra=bytes(3800)))),
        ("DHCP DISCOVER with 250 x (PAD, an empty option)", dhcp_cost(lambda i: dhcp_msg(
            c.DISCOVER, b"\x02\6" + i.to_bytes(4, "big"), extra=b"\0\xe0\0" * 250))),
        ("DHCP message over the rate (dropped unread)", dhcp_limited_cost),
        ("RS with a source link-layer address", rs_cost(False)),
        ("RS with 64 options (512 bytes)", rs_cost(True)),
        ("RS with 64 options, over the rate (if there is one)", rs_cost(True, over_rate=True)),
    ]
    for what, fn in rows:
        print(f"{best(fn, n):9.1f} us  {what}")
    burst, after = dhcp_known_flood()
    print(f"DHCP DISCOVERs from 4,000 MACs the table knows: {burst} handled of 32,000 at once, "
          f"{after} of 4,000 a second later")


if __name__ == "__main__":
    main()
