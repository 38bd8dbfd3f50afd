"""How often a relink keeper says what it put back (boot/dhcp_client.py keep_on_link's callers:
the WAN's DHCP lease, a static WAN, the LAN's address and `[lan] routes`; and the client's
route keeper, gateway/route_keeper.py).

Why: a flap's "added again" is worth a WARNING each time it happens now and then; a link
flapping many times a second (a bad cable, a hostile neighbour toggling a switch port) made
each keeper log one at every check -- up to 10 a second each (the route keeper: 1), without end while it lasted.
"""
from __future__ import annotations

LOG_EVERY = 30.0        # s: past the burst, a note said at most this often (the ones between counted)


class NoteLimit:
    """When to say a repeated note (pure): up to BURST at once, then one more per `every` s (a
    token bucket); the ones held meanwhile are counted, and the count said with the next one.
    Why: an occasional flap is worth a line each, a flapping link is not worth one per check."""
    BURST = 3

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self.tokens = float(self.BURST)
        self.at: float | None = None
        self.held = 0

    def due(self, now: float) -> int | None:
        """A note at `now`: None (held, counted), or how many were held before this one."""
        if self.at is not None:
            self.tokens = min(float(self.BURST), self.tokens + max(0.0, now - self.at) / self.every)
        self.at = now
        if self.tokens < 1.0:
            self.held += 1
            return None
        self.tokens -= 1.0
        held, self.held = self.held, 0
        return held
