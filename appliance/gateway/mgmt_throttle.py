"""Wrong management passwords across connections, for a management interface off loopback.

Each connection already hangs up after 3 misses (gateway/management.py), but a guesser just
reconnects: on a LAN or WAN address that is thousands of guesses a second. Two token buckets of
failures bound it:

- per source (an IPv4 address, or an IPv6 /64: one host holds a whole /64 and could otherwise
  rotate through it): SOURCE_BURST misses, then one more every SOURCE_REFILL seconds. A source
  with no token left is blocked: its new connections are closed at once, before the prompt, and
  a connection of its that misses again is closed.
- global: GLOBAL_BURST misses, then GLOBAL_RATE a second, whoever sends them, so a botnet of many
  sources cannot guess faster than that together. While it is empty every unauthenticated
  connection is closed at once, except from sources that gave the right password within
  TRUSTED_FOR seconds (the operator's monitor keeps working through an attack).

Memory stays bounded: at most MAX_SOURCES entries in each table, the least recently touched one
forgotten first (forgetting a source only gives it back its burst; the global bucket still caps
the total). Refused connections are logged at most once every LOG_EVERY seconds, with a count, so
a flood cannot fill the log either. Pure bookkeeping on a clock: the tests drive it with a fake one.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Callable

SOURCE_BURST = 6          # two connections' worth of 3 misses: a person mistyping is never blocked
SOURCE_REFILL = 20.0      # then one miss every 20 s per source
GLOBAL_BURST = 30
GLOBAL_RATE = 1.0         # misses a second from all sources together, sustained
MAX_SOURCES = 4096
TRUSTED_FOR = 24 * 3600.0
LOG_EVERY = 10.0


def source_key(addr: str) -> str:
    """The unit a source is counted in: an IPv4 address (also one mapped into IPv6, as a `::`
    listener sees it), or the /64 of an IPv6 address."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Bucket:
    """Tokens = misses still allowed; refilled with time up to `cap`."""
    __slots__ = ("tokens", "at")

    def __init__(self, cap: float, now: float) -> None:
        self.tokens = cap
        self.at = now

    def level(self, now: float, cap: float, rate: float) -> float:
        self.tokens = min(cap, self.tokens + (now - self.at) * rate)
        self.at = now
        return self.tokens


class LoginThrottle:
    """Decides whether a source may try a password now, and records misses and successes."""

    def __init__(self, clock: Callable[[], float], log: Callable[[str], None]) -> None:
        self.clock = clock
        self.log = log
        self.sources: OrderedDict[str, _Bucket] = OrderedDict()
        self.trusted: OrderedDict[str, float] = OrderedDict()     # source -> last good password
        self.glob = _Bucket(GLOBAL_BURST, clock())
        self.refused = 0            # connections closed at once since the last log line
        self.last_refused = ""
        self.logged_at: float | None = None

    def _source_level(self, key: str, now: float) -> float:
        b = self.sources.get(key)
        if b is None:
            return SOURCE_BURST
        return b.level(now, SOURCE_BURST, 1.0 / SOURCE_REFILL)

    def _is_trusted(self, key: str, now: float) -> bool:
        t = self.trusted.get(key)
        return t is not None and now - t < TRUSTED_FOR

    def is_trusted(self, addr: str) -> bool:
        """Did `addr`'s source give the right password within TRUSTED_FOR?"""
        try:
            key = source_key(addr)
        except ValueError:
            return False
        return self._is_trusted(key, self.clock())

    def may_try(self, addr: str) -> bool:
        """May a connection from `addr` be offered the password prompt (or try once more)? A
        source keeps its own allowance; the global one is waived for a recently trusted source."""
        now = self.clock()
        key = source_key(addr)
        if self._source_level(key, now) < 1:
            return False
        if self.glob.level(now, GLOBAL_BURST, GLOBAL_RATE) < 1 and not self._is_trusted(key, now):
            return False
        return True

    def refused_connection(self, addr: str, why: str = "too many wrong passwords") -> None:
        """A connection closed at once: counted, and logged at most every LOG_EVERY seconds."""
        now = self.clock()
        self.refused += 1
        self.last_refused = addr
        if self.logged_at is None or now - self.logged_at >= LOG_EVERY:
            self.log(f"management: {self.refused} connection(s) closed at once (last from {addr}: {why}; "
                     f"at most {SOURCE_BURST} wrong passwords per source, then one every {SOURCE_REFILL:g} s, "
                     f"and {GLOBAL_RATE:g}/s from all sources)")
            self.refused = 0
            self.logged_at = now

    def failed(self, addr: str) -> None:
        """A wrong password from `addr`: one token from its bucket and one from the global one."""
        now = self.clock()
        key = source_key(addr)
        b = self.sources.get(key)
        if b is None:
            if len(self.sources) >= MAX_SOURCES:
                self.sources.popitem(last=False)
            b = self.sources[key] = _Bucket(SOURCE_BURST, now)
        else:
            self.sources.move_to_end(key)
        b.level(now, SOURCE_BURST, 1.0 / SOURCE_REFILL)
        b.tokens = max(0.0, b.tokens - 1)
        self.glob.level(now, GLOBAL_BURST, GLOBAL_RATE)
        self.glob.tokens = max(0.0, self.glob.tokens - 1)

    def succeeded(self, addr: str) -> None:
        """The right password from `addr`: it is trusted past the global cap for TRUSTED_FOR."""
        key = source_key(addr)
        self.trusted[key] = self.clock()
        self.trusted.move_to_end(key)
        while len(self.trusted) > MAX_SOURCES:
            self.trusted.popitem(last=False)
