"""A server's `session-timeout N`: each client is disconnected N seconds after its tunnel came up.

As OpenVPN 2.6's server, whose client instance takes the option from the server config and ends
itself N seconds on ("Session timeout, exiting": forward.c check_session_timeout, a SIGTERM for
that instance only); its other clients stay. OpenVPN counts from the instance's creation (the
client's first packet); here from its tunnel coming up, so the end never comes earlier than
there, and later by at most the handshake's time. A reload that changes N applies the new N to
every kept client, from when its tunnel came up.

One timer for all clients (the earliest deadline), not one each: a server with 1,000 clients
keeps one entry in the pump's timer heap. The clients are kept in the order their tunnels came
up (the clock never goes back), so the earliest deadline is the first entry and a timer only
looks at those due: no scan of every client at each start or end.

Unlike OpenVPN's server, which ends the instance without a word (its client finds out at
ping-restart), the client is told (explicit-exit-notify's RESTART, as for any kick): it
reconnects, and authenticates again, at once.
"""
from __future__ import annotations

from typing import Callable

SESSION_TIMEOUT_LOG = "Session timeout (--session-timeout)"


class SessionLimit:
    def __init__(self, seconds: int, clock: Callable[[], float], arm: Callable[[float | None], None],
                 kick: Callable[[object, str], None]) -> None:
        self.seconds = seconds
        self.clock = clock
        self._arm = arm               # (when or None): the one timer, calling due() then
        self._kick = kick
        self.up: dict[int, tuple[object, float]] = {}     # id(rec) -> (rec, when its tunnel came up)

    def started(self, rec: object) -> None:
        """Its tunnel is up. Once per session: a second call (none comes now) must not move the
        start, or a client could push its end out for ever."""
        known = self.up.get(id(rec))
        if known is not None and known[0] is rec:
            return
        self.up[id(rec)] = (rec, self.clock())
        self._rearm()

    def gone(self, rec: object) -> None:
        known = self.up.get(id(rec))
        if known is not None and known[0] is rec:
            del self.up[id(rec)]

    def set_seconds(self, seconds: int) -> None:
        """A reload's N: the kept clients' deadlines counted from their start with it."""
        self.seconds = seconds
        self._rearm()

    def due(self) -> None:
        """Each client whose N seconds are over is disconnected (the kick's own line logs it,
        with the reason); the earliest first, stopping at the first not yet due."""
        now = self.clock()
        while self.seconds > 0 and self.up:
            key, (rec, since) = next(iter(self.up.items()))
            if now < since + self.seconds:
                break
            del self.up[key]
            self._kick(rec, SESSION_TIMEOUT_LOG)
        self._rearm()

    def _rearm(self) -> None:
        if self.seconds <= 0 or not self.up:
            self._arm(None)
            return
        self._arm(next(iter(self.up.values()))[1] + self.seconds)
