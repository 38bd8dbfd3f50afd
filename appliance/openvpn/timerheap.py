"""A deadline heap for many sessions with lazy invalidation.

Why: a server with a thousand clients must not ask every session for its deadline on every
wake-up. Each record has at most one *live* entry, the one whose deadline equals `rec.armed`;
pushing an earlier deadline makes the older entry stale (skipped when it surfaces). A deadline
that moved later (data flowing keeps pings away) is not pushed at all: the old entry fires early,
the owner finds nothing due and arms the real deadline. So the data path never touches the heap,
and a wake-up costs O(log n) per record that surfaced, not O(n).

Records need two attributes: `armed` (float | None) and `alive` (bool).
"""
from __future__ import annotations

import heapq
import itertools


class TimerHeap:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()      # ties never compare the records themselves

    def arm(self, rec, deadline: float | None) -> None:
        """Wake for `rec` no later than `deadline` (a later deadline keeps the earlier entry)."""
        if deadline is not None and rec.alive and (rec.armed is None or deadline < rec.armed):
            rec.armed = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), rec))

    def peek(self) -> float | None:
        """The earliest live entry (stale ones are dropped on the way)."""
        h = self._heap
        while h and (not h[0][2].alive or h[0][2].armed != h[0][0]):
            heapq.heappop(h)
        return h[0][0] if h else None

    def pop_due(self, now: float) -> list:
        """Records whose live entry is due; they are disarmed (the caller re-arms them)."""
        h = self._heap
        due = []
        while h and h[0][0] <= now:
            d, _seq, rec = heapq.heappop(h)
            if rec.alive and rec.armed == d:
                rec.armed = None
                due.append(rec)
        return due

    def __len__(self) -> int:
        return len(self._heap)
