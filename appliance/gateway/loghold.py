"""Hold log lines made while a packet is being answered; write them when the loop has time.

Why: formatting a line (its timestamp above all) and writing it to stderr costs 30-60 us each,
and the client's rare events come exactly where a peer waits for us: the TLS handshake done, the
push applied, the tunnel up (README "Handshake to first packet"). Held lines are LogRecords made
at the time (their timestamps say when it happened); only the formatting and the write wait.

Holding covers only the stretch between `begin()` and `end()` (synchronous: one handler's work),
so nothing else in the process is ever held by it; the caller writes what was held (`write()`)
a little later (the client: a timer), and always on the way out.
"""
from __future__ import annotations

import logging

MAX_HELD = 256          # more lines than this in one stretch: written at once, not buffered


class LogHold(logging.Filter):
    """A filter on one logger that keeps its records back between begin() and end()."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.held: list[logging.LogRecord] = []

    def begin(self) -> None:
        self.logger.addFilter(self)

    def end(self) -> None:
        self.logger.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        self.held.append(record)
        if len(self.held) >= MAX_HELD:
            self.write()
        return False

    def write(self) -> None:
        """Write what was held, in order. callHandlers is what Logger.handle does once the
        filters passed (the level was checked when the record was made)."""
        held, self.held = self.held, []
        for r in held:
            self.logger.callHandlers(r)
