"""Sliding replay window over 32-bit packet ids (control-channel wrapping and data channel).

Why a window and not "strictly increasing": UDP reorders, so a packet slightly older than the
newest one seen must still be accepted once. Like OpenVPN's packet_id.c we keep a bitmap of the
`size` ids ending at the newest one; an id `size` or more behind the newest is refused as too old.

Why a time limit too (`replay-window N T`, OpenVPN's default T = 15 s): the bitmap alone would let
an attacker who recorded a packet replay it much later as long as few packets flowed since. OpenVPN
(packet_id_reap) expires every id older than one received more than T seconds ago; we do the same:
an out-of-order id at or below the newest id that arrived more than T seconds before `now` is
refused. Ids above the newest are always accepted, as in OpenVPN. The engine reads no clock: the
caller passes `now`; without `now` (or with T None/0) there is no time limit.

How, cheaply: the newest id and its arrival time are kept, plus a sample of both about once per
second (at most T+1 samples). The expired floor is the newest id of the newest sample older than
T. Expiry is therefore conservative by at most the sampling interval (OpenVPN reaps every 5 s).

Why check() and update() are separate: the caller authenticates between the two. Recording an id
before the MAC/tag is verified would let a forger burn ids and make real packets look replayed.

Window 0 (`replay-window 0`) is OpenVPN's other mode, not a window of no width: packet_id.c's
packet_id_test without a backtrack list (its TCP mode) takes the first id whatever it is and then
only the next one, `newest + 1` -- no gap, no reordering, so on UDP one lost packet stops the
stream until the next key (checked in 2.6.14's source and with Debian's 2.6 as the peer). Ours
took any id above the newest (gaps allowed), looser than what the user asked 2.6 for.

The bitmap is a plain Python int (bit i set = id `highest - i` was seen), so the hot path does a
few integer operations and allocates nothing beyond small ints.
"""
from __future__ import annotations

import math
from collections import deque

DEFAULT_SIZE = 64              # OpenVPN DEFAULT_SEQ_BACKTRACK
DEFAULT_TIME_LIMIT = 15.0      # OpenVPN DEFAULT_TIME_BACKTRACK (seconds)
MAX_SIZE = 65536               # OpenVPN MAX_SEQ_BACKTRACK
MAX_TIME_LIMIT = 600           # OpenVPN MAX_TIME_BACKTRACK
SAMPLE_INTERVAL = 1.0


class ReplayWindow:
    __slots__ = ("size", "highest", "bits", "_mask", "time_limit", "floor", "_t_high", "_samples",
                 "_next_sample")

    def __init__(self, size: int = DEFAULT_SIZE, time_limit: float | None = None) -> None:
        """`size` 0: strictly consecutive ids (the first any, then only newest + 1), as OpenVPN's
        window 0; `time_limit` None or 0: none."""
        if size < 0:
            raise ValueError("replay window size must be >= 0")
        self.size = size
        self.highest = 0          # newest id recorded so far (0: none yet; 0 is never valid)
        self.bits = 0             # bit i: id highest - i seen (bit 0 is `highest` itself)
        self._mask = (1 << size) - 1
        self.time_limit = time_limit or None
        self.floor = 0            # ids <= floor have expired (time limit)
        self._t_high = -math.inf  # when `highest` arrived
        self._samples: deque[tuple[float, int]] = deque()
        self._next_sample = -math.inf if self.time_limit else math.inf

    # -- time limit
    def _expired_floor(self, now: float) -> int:
        """Ids at or below the returned one arrived too long before `now` (or are older still)."""
        limit = self.time_limit
        if limit is None:
            return 0
        samples = self._samples
        while samples and samples[0][0] + limit < now:
            self.floor = max(self.floor, samples.popleft()[1])
        if self._t_high + limit < now:
            self.floor = max(self.floor, self.highest)
        return self.floor

    def _note_newest(self, pid: int, now: float) -> None:
        self._t_high = now
        if now >= self._next_sample:
            # Samples older than T are folded into the floor here too, not only when an
            # out-of-order id asks (_expired_floor): a key whose packets all came in order kept
            # one sample a second for its whole life (~410 KB an hour per key, without bound
            # with reneg-sec 0), and an authenticated peer chooses to send in order.
            samples = self._samples
            limit = self.time_limit
            while samples and samples[0][0] + limit < now:
                self.floor = max(self.floor, samples.popleft()[1])
            samples.append((now, pid))
            self._next_sample = now + SAMPLE_INTERVAL

    # -- the window
    def check(self, pid: int, now: float | None = None) -> bool:
        """True if `pid` would be accepted: positive, not seen, not older than the window, not
        expired by the time limit."""
        if pid <= 0:
            return False
        highest = self.highest
        if pid > highest:
            return self.size > 0 or highest == 0 or pid == highest + 1
        diff = highest - pid
        if diff >= self.size or (self.bits >> diff) & 1:
            return False
        return now is None or self.time_limit is None or pid > self._expired_floor(now)

    def update(self, pid: int, now: float | None = None) -> None:
        """Record `pid` as seen. Call only after the packet authenticated."""
        highest = self.highest
        if pid > highest:
            shift = pid - highest
            if shift >= self.size:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & self._mask
            self.highest = pid
            if now is not None and self.time_limit is not None:
                self._t_high = now                      # inlined _note_newest: once per packet
                if now >= self._next_sample:
                    self._note_newest(pid, now)
        else:
            diff = highest - pid
            if diff < self.size:
                self.bits |= 1 << diff

    def accept(self, pid: int, now: float | None = None) -> bool:
        """check() then update() when new; True if the id was new (and is now recorded).
        Inlined rather than calling the two methods: it runs once per data packet."""
        highest = self.highest
        if pid > highest:
            shift = pid - highest
            if shift >= self.size:
                if shift != 1 and highest and not self.size:
                    return False                        # window 0: only the next id (a gap)
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & self._mask
            self.highest = pid
            if now is not None and self.time_limit is not None:
                self._t_high = now                      # inlined _note_newest: once per packet
                if now >= self._next_sample:
                    self._note_newest(pid, now)
            return True
        if pid <= 0:
            return False
        diff = highest - pid
        if diff >= self.size or (self.bits >> diff) & 1:
            return False
        if now is not None and self.time_limit is not None and pid <= self._expired_floor(now):
            return False
        self.bits |= 1 << diff
        return True
