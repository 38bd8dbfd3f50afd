"""Peer IDs as OpenVPN 2.6 hands them out (multi.c multi_assign_peer_id): the lowest number no
client holds, so a number freed is the next one given (seen in the lab: clients 0 and 1, 0
leaves, the next client is 0 again).

Why reusing a number at once is safe here: a late data packet of the client that left names a
peer-id that now leads to the new client's session, whose keys do not authenticate it; it is
dropped as any forged packet, and only an authenticated packet may move a client (float), so it
can neither reach the new client's tunnel nor redirect its traffic (server.py receive).

A number may be held by two records of one client at once: a restart from an established
client's address keeps that client's peer-id, as 2.6 keeps it per instance (server.py _create);
it is free again when the last of them is gone.
"""
from __future__ import annotations

import heapq

from .opcodes import NO_PEER_ID


class PeerIds:
    """The peer-ids in use, each with how many records hold it; O(log n) per take and release."""

    def __init__(self) -> None:
        self.holders: dict[int, int] = {}
        self._freed: list[int] = []      # a heap of numbers below _fresh that nobody holds
        self._fresh = 0                  # every number from here on is free

    def take(self) -> int:
        """The lowest free peer-id, now held once."""
        while self._freed:
            pid = heapq.heappop(self._freed)
            if pid not in self.holders:
                self.holders[pid] = 1
                return pid
        if self._fresh >= NO_PEER_ID:
            raise RuntimeError("no free peer-id")
        pid, self._fresh = self._fresh, self._fresh + 1
        self.holders[pid] = 1
        return pid

    def share(self, pid: int) -> None:
        """One more record holds `pid` (a restart of the client holding it)."""
        self.holders[pid] = self.holders.get(pid, 0) + 1

    def release(self, pid: int) -> None:
        """A record holding `pid` is gone; the number is free once no record holds it."""
        n = self.holders.get(pid, 0) - 1
        if n > 0:
            self.holders[pid] = n
            return
        if self.holders.pop(pid, None) is not None:
            heapq.heappush(self._freed, pid)

    def reconcile(self, held: dict[int, int]) -> int:
        """Make the books say what the live sessions hold (`held`: peer-id -> how many records
        hold it): a number nobody holds is free again, a count is corrected. After our bug in a
        release (ServerDispatcher.reconcile); returns how many numbers were corrected."""
        fixed = 0
        for pid, n in list(self.holders.items()):
            want = held.get(pid, 0)
            if want == 0:
                del self.holders[pid]
                heapq.heappush(self._freed, pid)
                fixed += 1
            elif n != want:
                self.holders[pid] = want
                fixed += 1
        for pid, n in held.items():
            if pid not in self.holders:          # a live session's number, never to be handed out twice
                self.holders[pid] = n
                fixed += 1
        return fixed

    def __len__(self) -> int:
        return len(self.holders)
