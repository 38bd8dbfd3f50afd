"""A log line that repeats with what the network does, said at most once per interval.

Why: the threads and handlers that put the WAN's state back after a link flap (the route keeper,
the WAN's relink thread) said one line per repair. A link that flaps for minutes (a bad cable, a
modem resetting in a loop, anyone with `ip link` in a storm) then wrote one line per check --
every second for the route keeper, up to ten a second for the relink thread -- and filled the
journal with the same sentence. Now the first line is said at once, the repeats within `every`
seconds are counted, and the count is said with the next line (or by `summary` once the
interval is over), so the log still tells that, and how often, it happened.
"""
from __future__ import annotations


class RepeatedLine:
    """The decisions (pure: the caller's clock, tested without one)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.next_at = float("-inf")
        self.held = 0               # repeats not said yet

    def may_say(self, now: float) -> int | None:
        """A repeat happens at `now`: None to hold it (counted), or the number held before it,
        to be said with this line."""
        if now < self.next_at:
            self.held += 1
            return None
        held, self.held = self.held, 0
        self.next_at = now + self.every
        return held

    def summary(self, now: float) -> int:
        """Repeats held whose interval is over, to be said now in a line of their own (0: none)."""
        if not self.held or now < self.next_at:
            return 0
        held, self.held = self.held, 0
        self.next_at = now + self.every
        return held


def times(held: int) -> str:
    """The suffix of a said line that held `held` repeats."""
    return f" (and {held} more time{'s' if held != 1 else ''} since the last such line)" if held else ""
