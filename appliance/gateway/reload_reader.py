"""A reload's reading, off the loop: the config parsed, its keys, certificates and files read and
checked (ops.py _prepare_reload), and the kept clients' client-config-dir files read for the
reload's pass over them (ops.py _recheck). On the loop these held every client's packets: ~25 ms
of parsing and key material per reload (back to back in a SIGHUP storm), and one file read per
kept client.

One worker thread (the pool of gateway/offloop.py, as the script, ccd and verify workers): jobs
run one at a time, in the order given, so a reload's reading and its ccd reads never overlap a
later one's. A job's outcome is handed back to the loop, which runs its `then` at the next
after-wake (Operations.after_wake): everything a reload changes is changed there, at once.
`inline` (tests on a fake clock): the job and its `then` run at submit, in the caller."""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from .offloop import OffLoopWorkers


class Outcome:
    """A job's result, or the exception it raised (re-raised by `value()` on the loop)."""
    __slots__ = ("result", "error")

    def __init__(self, result: object = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error

    def value(self) -> object:
        if self.error is not None:
            raise self.error
        return self.result


def _run(job: Callable[[], object]) -> Outcome:
    try:
        return Outcome(job())
    except Exception as e:  # noqa: BLE001 - handed to the loop, which decides (a ConfigError refuses the reload)
        return Outcome(error=e)


class ReloadReader(OffLoopWorkers):
    def __init__(self, inline: bool = False, name: str = "reload") -> None:
        super().__init__(inline, 1, name)
        self.inline = inline
        self._done: deque = deque()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object], then: Callable[[Outcome], None]) -> None:
        if self._pool is None:
            then(_run(job))
            return
        fut = self._pool.submit(_run, job)
        fut.add_done_callback(lambda f: self._finished(then, f))

    def _finished(self, then, fut) -> None:
        if fut.cancelled():
            return
        with self._lock:
            self._done.append((then, fut.result()))
        self._ring()

    def take(self) -> list:
        """The finished jobs' (then, outcome), in the order they finished (= submitted)."""
        with self._lock:
            got = list(self._done)
            self._done.clear()
        return got

    def close(self) -> None:
        self._shutdown()
