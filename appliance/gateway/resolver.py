"""Remote names resolved off the client's loop.

getaddrinfo blocks for as long as the host's resolver takes: seconds per server tried when it
does not answer, which is the case while a reconnect keeps the last push's routes and the DNS
server sits behind the dead tunnel (a server's RESTART, a ping-restart). Called on the loop (as
OpenVPN 2.6 does), it froze everything else meanwhile: the management interface did not answer
and SIGTERM waited. Here one worker thread resolves; the loop learns of the result through a
Wake and takes it in drain(). A newer request makes an older one's result stale (ignored), and a
resolution that never returns only holds the thread, never the loop.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from .loop import Wake

Result = "list[tuple[str, int]] | BaseException"


class BackgroundResolver:
    """submit(args, then) resolves `resolve(*args)` in a thread; then(result) runs on the loop
    from drain() with the address list or the exception it raised."""

    def __init__(self, resolve: Callable[..., list[tuple[str, int]]]) -> None:
        self._resolve = resolve
        # Two workers: a lookup stuck in a resolver that never answers does not hold the next.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="resolve")
        self._wake = Wake()
        self._done: deque = deque()
        self._lock = threading.Lock()
        self._current = 0

    def fileno(self) -> int:
        return self._wake.fileno()

    def submit(self, args: tuple, then: Callable[[object], None]) -> None:
        with self._lock:
            self._current += 1
            token = self._current
        fut = self._pool.submit(self._resolve, *args)
        fut.add_done_callback(lambda f: self._finished(token, then, f))

    def _finished(self, token: int, then: Callable[[object], None], fut: Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        self._done.append((token, then, exc if exc is not None else fut.result()))
        self._wake.ring()

    def cancel(self) -> None:
        """Whatever is under way now: its result is dropped when it comes."""
        with self._lock:
            self._current += 1

    def drain(self) -> None:
        self._wake.drain()
        while self._done:
            token, then, result = self._done.popleft()
            if token == self._current:
                then(result)

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake.close()
