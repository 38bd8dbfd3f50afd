"""Signals while a host run sets up or restores, outside the gateway's loop (run_toml.py).

Why: from configure_nic until the gateway's loop takes the signals (gateway/loop.py Signals),
and again after the loop gave them back while the undo list restores the host, Python's default
actions applied: SIGHUP, SIGUSR1 and SIGUSR2 ended the process on the spot and SIGINT raised
KeyboardInterrupt wherever it landed -- the NICs' addresses, the ICMP redirect switches,
forwarding and the kill switch's nft tables stayed as set-up left them (review44c fixed SIGTERM
alone; host44 the rest).

What OpenVPN 2.6 does, read from its sig.c/init.c: while an instance initialises
(init_instance_handle_signals: pre_init_signal_catch ... post_init_signal_catch) SIGINT and
SIGTERM are caught and end the run once initialisation returns, through its normal clean-up;
SIGHUP, SIGUSR1 and SIGUSR2 are set to SIG_IGN and any already pending is reset, so they are
lost, not deferred -- no restart after the start completes. Here the same: a stop signal stops
the run with the host restored (status 0), a restart or status signal during set-up is ignored
(and said so in the log, which SIG_IGN could not), and while the undo list runs every one of them
is ignored so the restore runs whole. ONE place for that decision: `decision()`.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator, Literal

STOPS = (signal.SIGTERM, signal.SIGINT)
IGNORED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
Decision = Literal["stop", "ignore"]


class StoppedInSetUp(BaseException):
    """A SIGTERM/SIGINT before the gateway's loop took the signals (or after it gave them back):
    the run stops, and the caller's `finally` restores what it set. A BaseException so that no
    `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name


def decision(signum: int, restoring: bool) -> Decision:
    """What a signal does outside the loop: while restoring, nothing (the undo list runs whole);
    during set-up, SIGTERM/SIGINT stop (as 2.6's pre-init handler), the rest are ignored (2.6's
    SIG_IGN until post_init_signal_catch)."""
    if restoring or signum not in STOPS:
        return "ignore"
    return "stop"


class SetUpSignals:
    """Installed by run_toml before its first change to the host; the gateway's Signals replaces
    and then restores these handlers around the loop. `restoring()` before the undo list,
    `uninstall()` after it."""

    def __init__(self) -> None:
        self._old: dict[int, object] = {}
        self.restoring_now = False
        self.ignored: dict[str, int] = {}     # name -> how many (at most the 3 names: bounded)
        self._holding = 0                     # depth of step()s under way
        self._held: int | None = None         # a stop signal that came during one

    @contextmanager
    def step(self) -> Iterator[None]:
        """A change to the host and the undo step that reverts it, as one: a stop signal during
        it is held and raised once it is over (at most the change's own few system calls). Why
        (atk45): every set-up change is made, then its undo pushed -- a SIGTERM between the two
        raised past the push, and the undo list ran without it: `ip_forward` left at 1 with the
        kill switch flushed (the host forwarding LAN to WAN in clear after the run), a sysctl,
        an address, a route or the nft tables left as set. A flag here, not a signal mask: a
        process signal goes to any thread that does not block it (the DHCP client's relink
        thread), and CPython runs its handler on the main thread all the same."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._held is not None:
                signum, self._held = self._held, None
                self.restoring()
                raise StoppedInSetUp(signum)

    def install(self) -> None:
        for s in (*STOPS, *IGNORED):
            self._old[s] = signal.signal(s, self._handler)

    def _handler(self, signum: int, frame) -> None:  # noqa: ANN001
        if decision(signum, self.restoring_now) == "stop":
            if self._holding:
                self._held = signum     # raised as the step ends, its undo pushed (step)
                return
            self.restoring()        # a second signal must not cut the undo list short
            raise StoppedInSetUp(signum)
        name = signal.Signals(signum).name
        self.ignored[name] = self.ignored.get(name, 0) + 1      # logged by take_ignored, not here

    def restoring(self) -> None:
        """From now on every one of them is ignored (the undo list runs whole) -- by our handler,
        not SIG_IGN: a signal that came during a blocking call (getaddrinfo) runs its Python
        handler only when the call returns, and CPython reports one whose handler became SIG_IGN
        meanwhile as an error with a traceback ("ignored due to race condition")."""
        self.restoring_now = True
        for s in (*STOPS, *IGNORED):
            signal.signal(s, self._handler)

    def take_ignored(self) -> str:
        """The ignored signals since the last call, for one log line ('' when none). Not logged
        from the handler: a handler interrupting a log write to the same stream could fail."""
        out = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(self.ignored.items()))
        self.ignored = {}
        return out

    def uninstall(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)     # type: ignore[arg-type]
        self._old = {}
