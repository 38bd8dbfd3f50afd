"""Sliding replay window over 32-bit packet ids (control-channel wrapping and data channel).

Why a window and not "strictly increasing": UDP reorders, so a packet slightly older than the
newest one seen must still be accepted once. Like OpenVPN's packet_id.c we keep a bitmap of the
`size` ids ending at the newest one; an id `size` or more behind the newest is refused as too old.

Why check() and update() are separate: the caller authenticates between the two. Recording an id
before the MAC/tag is verified would let a forger burn ids and make real packets look replayed.

The bitmap is a plain Python int (bit i set = id `highest - i` was seen), so the hot path does a
few integer operations and allocates nothing beyond small ints.
"""
from __future__ import annotations


class ReplayWindow:
    __slots__ = ("size", "highest", "bits", "_mask")

    def __init__(self, size: int = 64) -> None:
        if size < 1:
            raise ValueError("replay window size must be >= 1")
        self.size = size
        self.highest = 0          # newest id recorded so far (0: none yet; 0 is never valid)
        self.bits = 0             # bit i: id highest - i seen (bit 0 is `highest` itself)
        self._mask = (1 << size) - 1

    def check(self, pid: int) -> bool:
        """True if `pid` would be accepted: positive, not seen, not older than the window."""
        if pid <= 0:
            return False
        highest = self.highest
        if pid > highest:
            return True
        diff = highest - pid
        if diff >= self.size:
            return False
        return not (self.bits >> diff) & 1

    def update(self, pid: int) -> None:
        """Record `pid` as seen. Call only after the packet authenticated."""
        highest = self.highest
        if pid > highest:
            shift = pid - highest
            if shift >= self.size:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & self._mask
            self.highest = pid
        else:
            diff = highest - pid
            if diff < self.size:
                self.bits |= 1 << diff

    def accept(self, pid: int) -> bool:
        """check() then update() when new; True if the id was new (and is now recorded).
        Inlined rather than calling the two methods: it runs once per data packet."""
        highest = self.highest
        if pid > highest:
            shift = pid - highest
            self.bits = 1 if shift >= self.size else ((self.bits << shift) | 1) & self._mask
            self.highest = pid
            return True
        if pid <= 0:
            return False
        diff = highest - pid
        if diff >= self.size or (self.bits >> diff) & 1:
            return False
        self.bits |= 1 << diff
        return True
