"""Large management `client-auth` blocks, parsed off the loop with a bound (helpers compat47, authq48).

Why off the loop: a block's lines go through parse_ccd (~15-45 us a line, load-dependent); a block
at its 1 MiB bound (management.py BLOCK_LIMIT) took 0.5-2.5 s, every client's packets waiting
(compat47). So a block over AUTH_BLOCK_INLINE_MAX is handed to one worker thread here while its
client waits for its connect verdict, as for a client-connect script's.

Why bounded: the worker's queue was the executor's own, unbounded, and held every block's text
until its turn -- also for clients that had left meanwhile, each still parsed in its turn. A
management client answering many logins with large blocks (each within BLOCK_LIMIT, one per login)
grew it without limit, and each block waited behind all the others. OpenVPN 2.6.14 bounds nothing
here either (manage.c keeps the block in a buffer_list; multi.c imports it on its one thread), so
there is nothing of 2.6's to copy. Now:
- QUEUED_MAX bytes of block text at most wait for, or are in, the parse (4 MiB: ~2 s of parsing
  on a quiet machine, ~10 s under load -- within hand-window's default 60 s; a login's own wait is
  bounded by what is ahead of it). A block that would pass it is not queued: `submit` says False
  and the caller refuses that client for now (AUTH_FAILED,TEMP: a 2.6 client tries again after its
  pause, and the management client is asked again), counted. Why not parse it on the loop (the old
  cost) or let it wait: the first stalls every client, the second is the unbounded queue again;
  a refusal for now ends only that login, as a full password-check queue does (auth.py).
- A block whose session is gone (its client left, was refused, or restarted in place: a new
  session, whose own login has its own (CID, KID)) is dropped from the queue (`drop`) and its text
  freed at once; one being parsed then is thrown away when done. Jobs are keyed by the login they
  answer -- (CID, KID), never reused: CIDs only grow (ops.py next_cid, as 2.6's cid_counter) and a
  client's KIDs only grow while its CID lives (mgmt_auth.py) -- and carry the session they were
  asked for, which is what `drop` matches: a CID goes on across a restart in place, a session does
  not.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Callable

from .offloop import OffLoopWorkers

QUEUED_MAX = 4 << 20        # bytes of block text waiting for or in the parse, all clients together
# The counter a refused block adds to (the gateway's drop counters).
REFUSED = "login refused for now: too many client-auth blocks waiting to be parsed"


class BlockJob:
    """One block to parse: the login it answers, the session it is for, its text and what to do
    with the result (on the loop)."""
    __slots__ = ("key", "rec", "text", "size", "then", "dropped")

    def __init__(self, key: tuple[int, int], rec: object, text: str, then: Callable[[object], None]) -> None:
        self.key, self.rec, self.text, self.size, self.then = key, rec, text, len(text), then
        self.dropped = False


class AuthBlockParser(OffLoopWorkers):
    """One worker; our own queue (oldest first) so that a gone client's block leaves it at once.
    `queued` (bytes, kept on the loop) counts the text of every job submitted and not yet taken
    or dropped."""

    def __init__(self, parse: Callable[[str], object], limit: int | None = None) -> None:
        super().__init__(False, 1, "auth-block")
        self._parse = parse
        self.limit = QUEUED_MAX if limit is None else limit
        self._lock = threading.Lock()
        self._waiting: OrderedDict[tuple[int, int], BlockJob] = OrderedDict()
        self._running: BlockJob | None = None
        self._done: deque = deque()
        self.queued = 0
        self.parsed = 0             # blocks parsed (tests: a dropped one is not)

    def submit(self, key: tuple[int, int], rec: object, text: str, then: Callable[[object], None]) -> bool:
        """Queue `text` for the login `key` of session `rec`; False (nothing queued) when that
        would pass the bound."""
        if self.queued + len(text) > self.limit:
            return False
        job = BlockJob(key, rec, text, then)
        with self._lock:
            old = self._waiting.pop(key, None)
            self._waiting[key] = job
        if old is not None:
            self.queued -= old.size
        self.queued += job.size
        assert self._pool is not None
        self._pool.submit(self._work)
        return True

    def _work(self) -> None:
        """In the worker: the oldest waiting block, if any is left (a dropped one is gone)."""
        with self._lock:
            if not self._waiting:
                return
            _, job = self._waiting.popitem(last=False)
            self._running = job
        got: object = None
        try:
            got = self._parse(job.text)
        except Exception as e:  # noqa: BLE001 - the parse function's own bug: handed on, as its result
            got = e
        finally:
            with self._lock:
                self._running = None
                self._done.append((job, got if not job.dropped else None))
                job.text = ""
        self._ring()

    def drop(self, rec: object) -> int:
        """Session `rec` is gone: its blocks leave the queue (their text freed now); one being
        parsed is thrown away when done. How many were waiting."""
        with self._lock:
            gone = [k for k, j in self._waiting.items() if j.rec is rec]
            jobs = [self._waiting.pop(k) for k in gone]
            if self._running is not None and self._running.rec is rec:
                self._running.dropped = True
        for j in jobs:
            self.queued -= j.size
            j.text = ""
        return len(jobs)

    def take(self) -> list:
        """The finished jobs' (then, result), in the order they finished; dropped ones left out."""
        with self._lock:
            got = list(self._done)
            self._done.clear()
        out = []
        for job, result in got:
            self.queued -= job.size
            self.parsed += 1
            if not job.dropped:
                out.append((job.then, result))
        return out

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def close(self) -> None:
        self._shutdown()
