"""The thread pool and wake-up the off-loop workers share (auth checks, server scripts,
tls-verify, the client's scripts).

Why one place: each runs blocking work (a command, PAM, a file) in threads and hands the verdict
back through its own deque, ringing a Wake whose descriptor the pump watches; `inline` (tests, and
pumps built without threads) runs the job at submit, with neither pool nor Wake. The four had the
same lines for this; a change to how a worker wakes the loop now happens once."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .loop import Wake


class OffLoopWorkers:
    """Base of a worker port: `fileno()`/`drain()` for the pump, `_ring()` from a finished job,
    `_shutdown()` at close (queued jobs cancelled, running ones left to the subclass to stop)."""

    def __init__(self, inline: bool, workers: int, name: str) -> None:
        self._pool: ThreadPoolExecutor | None = (
            None if inline else ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name))
        self._wake: Wake | None = None if inline else Wake()

    def fileno(self) -> int:
        """Readable when a result is waiting (threads only)."""
        assert self._wake is not None
        return self._wake.fileno()

    def drain(self) -> None:
        if self._wake is not None:
            self._wake.drain()

    def _ring(self) -> None:
        """From a worker thread, after it queued its result: wake the loop."""
        if self._wake is not None:
            self._wake.ring()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._wake is not None:
            self._wake.close()
