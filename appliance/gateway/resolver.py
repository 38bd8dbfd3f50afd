"""Remote names resolved off the client's loop.

getaddrinfo blocks for as long as the host's resolver takes: seconds per server tried when it
does not answer, which is the case while a reconnect keeps the last push's routes and the DNS
server sits behind the dead tunnel (a server's RESTART, a ping-restart). Called on the loop (as
OpenVPN 2.6 does), it froze everything else meanwhile: the management interface did not answer
and SIGTERM waited. Here worker threads resolve; the loop learns of the result through a Wake and
takes it in drain(). A newer request makes an older one's result stale (ignored), and a
resolution that never returns only holds its thread, never the loop.

Why daemon threads of our own, not a ThreadPoolExecutor: the interpreter joins an executor's
workers when the process exits, so a lookup stuck in a silent resolver (5 s x 2 attempts x 3
servers with glibc's defaults) held the exit after SIGTERM for as long, the loop long gone. A
daemon thread is left behind at exit. At most WORKERS run at once; while they are all busy only
the newest request waits for one (any older waiting one is stale already).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from .loop import Wake

Result = "list[tuple[str, int]] | BaseException"
# Two: a lookup stuck in a resolver that never answers does not hold the next.
WORKERS = 2


class BackgroundResolver:
    """submit(args, then) resolves `resolve(*args)` in a thread; then(result) runs on the loop
    from drain() with the address list or the exception it raised."""

    def __init__(self, resolve: Callable[..., list[tuple[str, int]]]) -> None:
        self._resolve = resolve
        self._wake = Wake()
        self._done: deque = deque()
        self._lock = threading.Lock()
        self._current = 0
        self._running = 0
        self._waiting: tuple | None = None      # (token, args, then): the newest, no worker free
        self._closed = False

    def fileno(self) -> int:
        return self._wake.fileno()

    def submit(self, args: tuple, then: Callable[[object], None]) -> None:
        with self._lock:
            self._current += 1
            job = (self._current, args, then)
            if self._running >= WORKERS:
                self._waiting = job              # replaces an older one: stale by now
                return
            self._running += 1
        threading.Thread(target=self._work, args=(job,), name="resolve", daemon=True).start()

    def _work(self, job: tuple | None) -> None:
        while job is not None:
            token, args, then = job
            try:
                result: object = self._resolve(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the loop as the answer
                result = e
            with self._lock:
                if self._closed:
                    return
                self._done.append((token, then, result))
                job, self._waiting = self._waiting, None
                if job is None:
                    self._running -= 1
                self._wake.ring()               # (under the lock: close() cannot close it meanwhile)

    def cancel(self) -> None:
        """Whatever is under way now: its result is dropped when it comes."""
        with self._lock:
            self._current += 1
            self._waiting = None

    def drain(self) -> None:
        self._wake.drain()
        while self._done:
            token, then, result = self._done.popleft()
            if token == self._current:
                then(result)

    def close(self) -> None:
        """Nothing more is taken or told; a thread still in a lookup ends with it, or with the
        process (a daemon thread: the exit does not wait for it)."""
        with self._lock:
            self._closed = True
            self._current += 1
            self._waiting = None
        self._wake.close()
