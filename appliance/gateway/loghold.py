"""Hold log lines made while a packet is being answered; write them when the loop has time.

Why: making a log record (LogRecord's attributes, its timestamp), formatting it and writing it to
stderr costs 30-60 us a line, and the client's rare events come exactly where a peer waits for
us: the TLS handshake done, the push applied, the tunnel up (README "Handshake to first
packet"). While held, a line is kept as what it was called with and when (a tuple); the record
is made, formatted and written later, with the time it happened.

Holding covers only the stretch between `begin()` and `end()` (synchronous: one handler's work),
so nothing else in the process is ever held by it; the caller writes what was held (`write()`)
a little later (the client: a timer), and always on the way out.
"""
from __future__ import annotations

import logging
import sys
import time

MAX_HELD = 256          # more lines than this in one stretch: written at once, not buffered


class LogHold:
    """Keeps back what one logger is asked to log between begin() and end().

    How: for that stretch the logger's `_log` (what info(), warning(), exception() ... call once
    the level is enabled) is this object's `_hold`, set on the instance; end() removes it, so
    the class's own `_log` applies again. Only lines logged on this logger itself are held, as a
    logging.Filter on it would hold them, not its children's."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.held: list[tuple] = []

    def begin(self) -> None:
        self.logger._log = self._hold          # type: ignore[method-assign]  # noqa: SLF001

    def end(self) -> None:
        self.logger.__dict__.pop("_log", None)

    def _hold(self, level: int, msg: object, args: tuple, exc_info: object = None, extra: dict | None = None,
              stack_info: bool = False, stacklevel: int = 1) -> None:
        if exc_info and not isinstance(exc_info, (tuple, BaseException)):
            exc_info = sys.exc_info()          # log.exception(): the exception being handled now
        self.held.append((time.time(), level, msg, args, exc_info, extra))
        if len(self.held) >= MAX_HELD:
            self.write()

    def write(self) -> None:
        """Make and write the records held, in order, with the time each line was logged.
        Through Logger.handle, as a line logged at once: the logger's filters apply (the level
        was checked when the line was logged). Why: logsetup.NameBytesFilter writes a peer name's
        bytes that are not UTF-8 as `\\xNN`; handed straight to the handlers, a held line with
        such a name reached a strictly encoding handler as lone surrogates, and that line was
        lost to its error (a file) or shown as `\\udcNN` (stderr)."""
        held, self.held = self.held, []
        lg = self.logger
        for t, level, msg, args, exc_info, extra in held:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            r = lg.makeRecord(lg.name, level, "(unknown file)", 0, msg, args, exc_info, None, extra)
            r.created = t
            r.msecs = int((t - int(t)) * 1000) + 0.0
            r.relativeCreated = (t - logging._startTime) * 1000      # noqa: SLF001 - as LogRecord does
            lg.handle(r)
