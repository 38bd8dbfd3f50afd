"""How often a line that repeats with what the network does is said: one place for the keepers
that put state back after a link flap (the WAN's DHCP lease and a static WAN -- boot/dhcp_client.py,
router/static_wan.py --, the LAN's address and `[lan] routes` -- router/lan_routes.py --, the
client's tunnel routes -- gateway/route_keeper.py) and the client's recursive-routing drop
(gateway/recursive_routing.py).

Why: an occasional flap is worth a line each; a link flapping many times a second (a bad cable, a
modem resetting in a loop, a hostile neighbour toggling a switch port, anyone with `ip link` in a
storm) made each keeper say one line per check -- up to ten a second each, without end while it
lasted -- and filled the journal with the same sentence (flap40, atk40). Now a few are said at once,
then one per `every` seconds; the ones held meanwhile are counted, and the count is said with the
next line, or alone by `summary` once one may be said again, so the log still tells that, and how
often, it happened -- also when the storm is over and nothing else would be said.
"""
from __future__ import annotations

LOG_EVERY = 30.0        # s: past the burst, a line said at most this often (the ones between counted)
# A token is in when the bucket holds this much: `next_summary` computes the time a token is
# whole, and the refill at exactly that time came out at 0.9999999999999998 for a third of random
# storms on a clock of days (floating point): `summary` then found nothing to say at the time it
# named, and a caller arming one timer there (the route keeper) never said the count (review41).
_WHOLE = 1.0 - 1e-9


class NoteLimit:
    """When to say a repeated line (pure: the caller's clock, tested without one): up to BURST at
    once, then one more per `every` s (a token bucket); the ones held meanwhile are counted."""
    BURST = 3

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self.tokens = float(self.BURST)
        self.at: float | None = None
        self.held = 0

    def _refill(self, now: float) -> None:
        if self.at is not None:         # a clock going back refills nothing
            self.tokens = min(float(self.BURST), self.tokens + max(0.0, now - self.at) / self.every)
        self.at = now if self.at is None else max(self.at, now)

    def due(self, now: float) -> int | None:
        """A repeat at `now`: None (held, counted), or how many were held before this one, to be
        said with it."""
        self._refill(now)
        if self.tokens < _WHOLE:
            self.held += 1
            return None
        self.tokens -= 1.0
        held, self.held = self.held, 0
        return held

    def summary(self, now: float) -> int:
        """Repeats held that may be said now in a line of their own (0: none held, or not yet)."""
        if not self.held:
            return 0
        self._refill(now)
        if self.tokens < _WHOLE:
            return 0
        self.tokens -= 1.0
        held, self.held = self.held, 0
        return held

    def next_summary(self) -> float | None:
        """When `summary` will have something to say (None: nothing held): at that time, not
        after it (_WHOLE)."""
        if not self.held or self.at is None:
            return None
        return self.at + max(0.0, 1.0 - self.tokens) * self.every


def times(held: int) -> str:
    """The suffix of a said line that held `held` repeats before it."""
    return f" ({held} more time{'s' if held != 1 else ''} since the last such line)" if held else ""
