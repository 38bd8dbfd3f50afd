"""`mgmt-throttle`: the management login throttle's tables (gateway/mgmt_throttle.py) under as
many sources as an attacker on the LAN or WAN can bring: sweeps of thousands of IPv4 addresses,
IPv6 /64s and `::ffff:` forms, each guessing once, then the sources of interest again, a right
password now and then, time.

Why: mgmt-login reaches the throttle through a real Management with 6 addresses, so the table
trimming at MAX_SOURCES (4,096) sources -- what keeps a botnet's addresses from growing memory
without bound -- was never taken (fuzz49's measure: the two trimming branches untaken). Here the
throttle is driven as management.py drives it (`may_try` before the prompt and before each
password, `failed` / `succeeded` after it, `refused_connection` when turned away), on a fake
clock, with its tables' bound made TABLE (64) while an input runs.

Input: steps of 4 bytes: kind, a source, an argument. Checks after every step, against a model
written here (the source unit -- an IPv4 address, the IPv4 of a mapped address, an IPv6 /64 --
computed here too, not by the module):
- at most MAX_SOURCES (TABLE) sources and as many trusted sources kept;
- a table that is full forgets the source touched longest ago (by a miss), none other;
- misses let through per source at most SOURCE_BURST + t / SOURCE_REFILL since the source was
  (re)entered into the table, and from never-trusted sources at most GLOBAL_BURST + t x
  GLOBAL_RATE in all;
- the refused-connection warning at most once per LOG_EVERY;
- `is_trusted` of any text (not an address) is False, never an exception.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict

from appliance.gateway import mgmt_throttle as mt

# The tables' bound while an input runs: the module's MAX_SOURCES (4,096) made 64 here, so that a
# sweep past it costs ~200 attempts, not ~4,100 (1.4 s an input before instrumentation): the same
# branches, a fuzzer that can afford to take them often. tests/unit/test_mgmt_lan.py holds the real
# bound (3 x 4,096 sources).
TABLE = 64
SWEEP_MAX = 200


def _source(kind: int, n: int) -> str:
    """Source number `n` of 3 address families: IPv4, IPv6 (a host of /64 number n), ::ffff: IPv4."""
    if kind % 3 == 0:
        return str(ipaddress.IPv4Address(0xC6120000 + n % 0x20000))            # 198.18.0.0/15
    if kind % 3 == 1:
        return str(ipaddress.IPv6Address((0x20010DB8 << 96) | ((n % 0x10000) << 64) | (kind * 7919 % 0xFFFF)))
    return "::ffff:" + str(ipaddress.IPv4Address(0xC6120000 + n % 0x20000))


def _unit(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def make_mgmt_throttle():
    def one(data: bytes) -> None:
        saved, mt.MAX_SOURCES = mt.MAX_SOURCES, TABLE
        try:
            _one(data)
        finally:
            mt.MAX_SOURCES = saved

    def _one(data: bytes) -> None:
        now = [0.0]
        logs: list[float] = []
        th = mt.LoginThrottle(lambda: now[0], lambda _msg: logs.append(now[0]))
        entered: dict[str, tuple[float, int]] = {}    # unit -> (when (re)entered, misses since)
        lru: OrderedDict[str, None] = OrderedDict()   # units by their last miss, oldest first
        ever_trusted: set[str] = set()
        untrusted_misses = [0]

        def miss(addr: str) -> None:
            u = _unit(addr)
            new = u not in th.sources
            oldest = next(iter(lru)) if new and len(th.sources) >= mt.MAX_SOURCES else None
            if new:
                entered[u] = (now[0], 0)
            th.failed(addr)
            if oldest is not None:
                assert oldest not in th.sources and len(th.sources) == mt.MAX_SOURCES, \
                    f"a full table took {u} and kept its least recently missed source {oldest}"
                del lru[oldest]
                entered.pop(oldest, None)
            assert u in th.sources, f"{u}'s miss not recorded"
            lru[u] = None
            lru.move_to_end(u)
            t0, n = entered[u]
            entered[u] = (t0, n + 1)
            assert n + 1 <= mt.SOURCE_BURST + (now[0] - t0) / mt.SOURCE_REFILL + 1e-6, \
                f"{n + 1} misses let through from {u} in {now[0] - t0:.1f} s"
            if u not in ever_trusted:
                untrusted_misses[0] += 1
                assert untrusted_misses[0] <= mt.GLOBAL_BURST + now[0] * mt.GLOBAL_RATE + 1e-6, \
                    f"{untrusted_misses[0]} misses from untrusted sources in {now[0]:.1f} s"

        def attempt(addr: str, outcome: int) -> None:
            if not th.may_try(addr):
                th.refused_connection(addr)
                return
            if outcome % 4 == 3:
                th.succeeded(addr)
                ever_trusted.add(_unit(addr))
            else:
                miss(addr)

        for i in range(0, len(data) - 3, 4):
            kind, a, b, c = data[i], data[i + 1], data[i + 2], data[i + 3]
            op = kind % 5
            if op == 0:                                   # one attempt from source (a, b)
                attempt(_source(a, b), c)
            elif op == 1:                                 # a sweep of many sources, `c` x 10 ms apart
                count = min(SWEEP_MAX, (a << 8 | b) * 2)    # each guessing (or, kind's top bit, logging in)
                for n in range(count):
                    now[0] += c / 100
                    attempt(_source(kind >> 3, 256 + n), 3 if kind & 0x80 else 0)
            elif op == 2:                                 # time
                now[0] += (a << 8 | b) * (1 + c % 8)
            elif op == 3:                                 # a trusted source's monitor logs in
                addr = _source(a, b)
                th.succeeded(addr)
                ever_trusted.add(_unit(addr))
            else:                                         # any text to is_trusted
                text = bytes(data[i + 1:i + 4]).decode("latin-1")
                assert th.is_trusted(text) in (False, True)
                try:
                    ipaddress.ip_address(text)
                except ValueError:
                    assert th.is_trusted(text) is False
            assert len(th.sources) <= mt.MAX_SOURCES and len(th.trusted) <= mt.MAX_SOURCES, \
                (len(th.sources), len(th.trusted))
            for x, y in zip(logs, logs[1:]):
                assert y - x >= mt.LOG_EVERY - 1e-9, f"refused-connection warnings {y - x:.1f} s apart"
    return one


def seeds() -> list[bytes]:
    return [
        bytes((0, 1, 1, 0)) * 8,                                          # one source, past its burst
        bytes((1, 0x08, 0x01, 0)) + bytes((0, 1, 1, 0)),                  # 200 at once: the global cap
        bytes((2, 0, 40, 0)) + bytes((1, 0x08, 0x01, 100)) + bytes((0, 0, 0, 0)) * 3,    # 1 s apart: trimmed
        bytes((3, 0, 9, 0)) + bytes((6, 0x08, 0x02, 100)) + bytes((0, 0, 9, 3)) + bytes((0, 0, 9, 0)),
        bytes((1, 0x08, 0x01, 200)) + bytes((11, 0x08, 0x01, 200)) + bytes((16, 0x08, 0x01, 100)),
        bytes((4,)) + b"::g" + bytes((4,)) + b"1.2" + bytes((4,)) + b"%%1",
        bytes((0, 2, 5, 0)) * 3 + bytes((2, 0, 20, 0)) + bytes((0, 2, 5, 0)) * 3,
        # the trusted table trimmed: 200 logins, then a source of the start guesses
        bytes((0x83, 0x08, 0x01, 0)) + bytes((0, 0, 0, 0)),
        # review50f: a miss moves its source to the table's young end -- A misses, 62 others 1 s
        # apart, A again, then two new sources fill and overflow the table: the first of the 62
        # goes, not A (a throttle that did not move A forgot it here; no other seed told)
        bytes((0, 1, 1, 0)) + bytes((1, 0, 31, 100)) + bytes((0, 1, 1, 0)) + bytes((0, 2, 2, 0)) + bytes((0, 3, 3, 0)),
    ]


def dict_entries() -> list[bytes]:
    return [bytes((1, 0x08, 0x01)), bytes((2, 0x10, 0x00)), b"\x00\x00\x00\x03", b"::ffff:", b"fe80::1%eth0"]
