"""The DHCP pool's taken addresses, kept sorted, so the first free address after any point is found
in O(log n) however the taken ones cluster.

Why: the server offered a new MAC the first free address probing from the MAC's hash, one
address at a time. With the pool full (a LAN host's DISCOVER flood with random MACs fills any
pool; with option 50 it fills a run of its choice) every DISCOVER probed the whole pool: 2.4 ms
each with a 4,096-address pool, so the 200 messages a second the server handles took half a core
of the pump the tunnel shares, and a burst of 400 held it for a second. The taken addresses
(leases, offers, resting DECLINEs, static leases, our own address) are at most some thousands;
sorted, the run of taken addresses from a point ends where `taken[j] - j` first exceeds its value
at the run's start (it never decreases in a sorted list of distinct integers), which bisect finds.
"""
from __future__ import annotations

from bisect import bisect_left, insort


class TakenAddresses:
    """Addresses (ints) someone holds, each counted (a lease and a static entry may name one)."""

    def __init__(self) -> None:
        self._sorted: list[int] = []
        self._count: dict[int, int] = {}

    def add(self, a: int) -> None:
        n = self._count.get(a, 0)
        self._count[a] = n + 1
        if n == 0:
            insort(self._sorted, a)

    def discard(self, a: int) -> None:
        n = self._count.get(a, 0)
        if n > 1:
            self._count[a] = n - 1
        elif n == 1:
            del self._count[a]
            del self._sorted[bisect_left(self._sorted, a)]

    def __contains__(self, a: int) -> bool:
        return a in self._count

    def __len__(self) -> int:
        return len(self._sorted)

    def first_free(self, lo: int, hi: int) -> int | None:
        """The smallest address in [lo, hi] not taken, or None."""
        if lo > hi:
            return None
        s = self._sorted
        i = bisect_left(s, lo)
        if i == len(s) or s[i] != lo:
            return lo
        a = s[self._run_end(i, lo - i)] + 1        # just past the run lo, lo+1, ... of taken ones
        return a if a <= hi else None

    def _run_end(self, i: int, d: int) -> int:
        """The last index j >= i with s[j] - j == d (s[i] - i == d; s[k] - k never decreases)."""
        s = self._sorted
        lo, hi = i, len(s) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if s[mid] - mid == d:
                lo = mid
            else:
                hi = mid - 1
        return lo
