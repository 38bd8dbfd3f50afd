"""The pump core both roles share: wait, read a batch, call the engine, flush, re-arm timers.

One wake-up (`Pump.step`) fires the timers that are due, waits for readiness (no longer than the
next deadline), runs the handlers of the ready ports and then the role's `after_wake` hook, where
the role flushes what the batch produced (TUN writes merged, datagrams grouped per peer). The
client and the server differ only in their handlers and policy (gateway/client.py,
gateway/server.py); waiting, timers, signals and error accounting live here, once.

Faults (the rule the whole gateway keeps): handlers contain what a peer causes to that peer. What
escapes a handler anyway is our own bug: it is counted, logged with a traceback at a limited
rate, and the loop goes on. Only `PortGone` (our TUN or listening socket failed) ends the pump,
with one line saying why. A MemoryError in a handler or timer is contained as any other fault of
ours: Python raises it for one allocation too large (a size a peer's packet led us to), far more
often than for a host out of memory (the kernel's OOM killer acts there), and ending the server
for it ended every client's session for one peer's (lab/reliability/fault_sweep.py --exc memory).
Many in a row (MEMORY_ERRORS_FATAL within MEMORY_WINDOW seconds: the host is out of memory)
and out of the guards -- at start -- it still ends the gateway with one line, status 1.
"""
from __future__ import annotations

import gc
import heapq
import itertools
import logging
import math
import select
import signal
import socket
from typing import Callable, Protocol

from .ports import Clock, PortGone

log = logging.getLogger("vpn-appliance")

Handler = Callable[[], None]


class Waiter(Protocol):
    """Readiness of ports: a selector for real file descriptors, lab/fakes.py for memory ports."""

    def register(self, port, data, write: bool = False, read: bool = True) -> None: ...

    def modify(self, port, data, write: bool, read: bool = True) -> None: ...

    def unregister(self, port) -> None: ...

    def wait(self, timeout: float | None) -> list[tuple[object, bool, bool]]: ...

    def close(self) -> None: ...


MAX_WAIT = 86400.0      # seconds one wait lasts at most (SelectorWaiter.wait)


class SelectorWaiter:
    """Waiter over file descriptors: epoll, used directly.

    Why not `selectors`: its select() builds a key object and an event mask per ready port in
    Python, and the loop then built its own tuples from those; this is one comprehension over
    epoll's list, a few microseconds less per wake-up, on the way to every packet. The mapping
    is selectors' own: an error or hang-up reads as both readable and writable, so the handler
    that reads or writes meets the error itself."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.data: dict[int, object] = {}

    def register(self, port, data, write: bool = False, read: bool = True) -> None:
        fd = port.fileno()
        self.ep.register(fd, _mask(read, write))
        self.data[fd] = data

    def modify(self, port, data, write: bool, read: bool = True) -> None:
        fd = port.fileno()
        self.ep.modify(fd, _mask(read, write))
        self.data[fd] = data

    def unregister(self, port) -> None:
        try:
            fd = port.fileno()
        except (OSError, ValueError):
            return
        if self.data.pop(fd, None) is None:
            return
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass                                 # closed already: epoll forgot it by itself

    def wait(self, timeout: float | None) -> list[tuple[object, bool, bool]]:
        if timeout is None:
            timeout = -1
        elif timeout > 0:
            # epoll counts in ms: never wake early; and in a C int: a wait for a timer years away
            # (a pushed route-delay 2147483647, were it the nearest -- the 5 s drop-log timer is
            # nearer today) raised OverflowError out of the loop. Capped: it wakes, waits again.
            timeout = math.ceil(min(timeout, MAX_WAIT) * 1e3) * 1e-3
        data = self.data
        return [(data[fd], bool(ev & _NOT_OUT), bool(ev & _NOT_IN))
                for fd, ev in self.ep.poll(timeout, max(len(data), 1)) if fd in data]

    def close(self) -> None:
        self.ep.close()


_EV_READ = select.EPOLLIN
_EV_WRITE_ONLY = select.EPOLLOUT    # a relay's stream whose reading waits for its counterpart (portshare.py)
_EV_WRITE = select.EPOLLIN | select.EPOLLOUT
_NOT_OUT = ~select.EPOLLOUT        # anything but writability (in, error, hang-up): readable
_NOT_IN = ~select.EPOLLIN          # anything but readability (out, error, hang-up): writable


def _mask(read: bool, write: bool) -> int:
    return (_EV_WRITE if read else _EV_WRITE_ONLY) if write else _EV_READ if read else 0


class TimerHeap:
    """Named deadlines in one heap; re-arming a name replaces its deadline (stale entries are
    skipped when they come up), so a wake-up costs O(log n), not a scan of every session."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._due: dict[object, tuple[float, Handler]] = {}
        self._seq = itertools.count()
        # Timers whose handler must run in the end (a client's next connection attempt): when
        # it raises (our bug), the pump arms it again after this many seconds, unless something
        # armed that timer meanwhile. Why here: a bug on the handler's very first line left it
        # no chance to re-arm itself -- the client alive with no connection and no attempt to
        # come, for ever (lab/reliability/fault_sweep.py). Looked up only when a handler raised.
        self.retry: dict[object, float] = {}

    def arm(self, key: object, when: float | None, fn: Handler) -> None:
        if when is None:
            self._due.pop(key, None)
            return
        cur = self._due.get(key)
        self._due[key] = (when, fn)
        if cur is None or cur[0] != when:
            heapq.heappush(self._heap, (when, next(self._seq), key))
            if len(self._heap) > 2 * len(self._due) + 64:
                self._compact()

    def cancel(self, key: object) -> None:
        self._due.pop(key, None)

    def armed(self, key: object) -> bool:
        return key in self._due

    def _compact(self) -> None:
        """Drop stale entries (re-armed or cancelled keys): the heap stays proportional to the
        live timers however often deadlines move."""
        due = self._due
        self._heap = [(w, q, k) for (w, q, k) in self._heap if (cur := due.get(k)) is not None and cur[0] == w]
        heapq.heapify(self._heap)

    def next_deadline(self) -> float | None:
        heap, due = self._heap, self._due
        while heap:
            when, _s, key = heap[0]
            cur = due.get(key)
            if cur is not None and cur[0] == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Handler]:
        """The handlers whose deadline has come, each disarmed (a handler re-arms if it wants)."""
        return [fn for _key, fn in self.pop_due_keyed(now)]

    def pop_due_keyed(self, now: float) -> list[tuple[object, Handler]]:
        """pop_due, each handler with its timer's name (for `retry`)."""
        out = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            when, _s, key = heapq.heappop(heap)
            cur = due.get(key)
            if cur is not None and cur[0] == when:
                del due[key]
                out.append((key, cur[1]))
        return out

    def __len__(self) -> int:
        return len(self._due)


def _loud(counts: dict[str, int], quiet: frozenset[str]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k not in quiet}


class Faults:
    """Counters by reason, logged at most every `every` seconds when they changed; tracebacks of
    internal errors for the first few and then every 1000th."""

    def __init__(self, every: float = 5.0) -> None:
        self.counts: dict[str, int] = {}
        self.every = every
        self._next_log = 0.0
        self._last: dict[str, int] = {}
        # Reasons that are shown in a drop line but never make one appear by themselves: routine
        # drops OpenVPN 2.6 makes without a word (a client's IPv6 link-local packets), which a
        # Windows client sends every few minutes -- a line each time where 2.6's log stays quiet.
        self.quiet: frozenset[str] = frozenset()

    def count(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n

    def count_warn(self, reason: str, text: str, n: int = 1) -> None:
        """count(), and `text` at WARNING the first five times this reason is counted, then
        every 1000th: a degradation an operator should hear of, at a bounded cost."""
        before = self.counts.get(reason, 0)
        self.count(reason, n)
        after = before + n
        if before < 5 or after // 1000 > before // 1000:
            log.warning("%s (%d so far)", text, after)

    def internal(self, where: str) -> None:
        """Call from an except block: our own bug on one packet or peer."""
        n = self.counts["internal error"] = self.counts.get("internal error", 0) + 1
        if n <= 5 or n % 1000 == 0:
            log.exception("internal error in %s (%d so far); the peer's packet was dropped", where, n)

    def internal_exc(self, where: str, exc: BaseException) -> None:
        """The same for an exception caught elsewhere (the engine hands those over)."""
        n = self.counts["internal error"] = self.counts.get("internal error", 0) + 1
        if n <= 5 or n % 1000 == 0:
            log.error("internal error in %s (%d so far)", where, n, exc_info=exc)

    def each(self, where: str, steps: "list[Callable[[], object]]") -> None:
        """Every step run, in order, each under its own guard: a bug of ours in one (even a
        MemoryError) is counted as an internal error and the others still run. For clean-ups
        whose later steps give back what the host lent (routes, DNS, the TUN): a bug in an
        early one must not keep them."""
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - our bug in one step; the others still run
                self.internal(where)

    def maybe_log(self, now: float, extra: dict[str, int] | None = None, final: bool = False,
                  title: str | None = None) -> None:
        if not final and now < self._next_log:
            return
        self._next_log = now + self.every
        merged = dict(self.counts)
        for k, v in (extra or {}).items():
            if v:
                merged[k] = merged.get(k, 0) + v
        quiet = self.quiet
        if final or (merged != self._last and (not quiet or _loud(merged, quiet) != _loud(self._last, quiet))):
            self._last = merged
            log.info("%s: %s", title or ("final drop counters" if final else "dropped packets"),
                     ", ".join(f"{k}={v}" for k, v in sorted(merged.items())) or "none")


class Signals:
    """SIGINT/SIGTERM (stop) and SIGHUP/SIGUSR2 (noted in `pending` for the gateway) wake the wait
    through a socketpair; none of them kills the process without its clean-up."""

    def __init__(self, noted: tuple = ()) -> None:
        self.stop = False
        self.stops = 0                      # how many stop signals came (a second may cut a wait short)
        self.pending: list[int] = []
        self.noted = noted                  # more signals queued in `pending` (the server: SIGUSR1)
        self.rsock: socket.socket | None = None
        self.wsock: socket.socket | None = None
        self._old: dict = {}

    def install(self) -> None:
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        signal.set_wakeup_fd(self.wsock.fileno())
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handler)
        for s in (signal.SIGHUP, signal.SIGUSR2, *self.noted):
            if s not in self._old:
                self._old[s] = signal.signal(s, self._note)

    def _handler(self, signum, frame) -> None:  # noqa: ANN001
        self.stop = True
        self.stops += 1

    def _note(self, signum, frame) -> None:  # noqa: ANN001
        self.pending.append(signum)

    def take(self) -> list[int]:
        out, self.pending = self.pending, []
        return out

    def fileno(self) -> int:
        assert self.rsock is not None
        return self.rsock.fileno()

    def drain(self) -> None:
        try:
            while self.rsock is not None and self.rsock.recv(512):
                pass
        except OSError:
            pass

    def uninstall(self) -> None:
        if self.rsock is None:
            return
        signal.set_wakeup_fd(-1)
        for s, h in self._old.items():
            signal.signal(s, h)
        for s in (self.rsock, self.wsock):
            if s is not None:
                s.close()
        self.rsock = self.wsock = None


class SignalWakes:
    """Both roles' handler of the signal port (`_on_signal`, watched by run_gateway): one place
    for draining it, handing each noted signal (SIGHUP, SIGUSR1, SIGUSR2) to `_on_noted`, and
    acting once on each new SIGTERM/SIGINT (`_on_stop`: a second one may end a wait)."""

    signals: Signals | None
    _stops_seen: int = 0
    result: int | None
    faults: Faults

    def _on_signal(self) -> None:
        assert self.signals is not None
        try:
            self.signals.drain()
            for signum in self.signals.take():
                self._on_noted(signum)
        finally:                        # a bug on a noted signal's way does not lose a stop
            if self.signals.stops > self._stops_seen:
                self._stops_seen = self.signals.stops
                try:
                    self._on_stop()
                except PortGone:
                    raise
                except Exception as e:  # noqa: BLE001 - our bug on the way to stopping
                    self._stop_failed(e)

    def _stop_failed(self, e: BaseException) -> None:
        """Our bug while acting on SIGTERM/SIGINT (arming explicit-exit-notify's wait, its
        notification, the final counters): the end now, without what the stop would have sent
        first; run_gateway's clean-up still gives back the host's routes, DNS and TUN. Why: the
        stop was lost -- the gateway ran on until systemd's SIGKILL, which skips that clean-up
        (lab/reliability/fault_sweep.py, the exit phase)."""
        self.faults.internal_exc("acting on a stop signal (stopping now)", e)
        if self.result is None:
            self.result = 0

    def _on_noted(self, signum: int) -> None:
        raise NotImplementedError

    def _on_stop(self) -> None:
        raise NotImplementedError


class Wake:
    """A worker thread's way to wake the loop: it calls `ring()`; the loop watches `fileno()` and
    calls `drain()` (the verdicts themselves travel through the worker's own deque)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def ring(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:
            pass                         # a full socketpair still wakes the loop

    def drain(self) -> None:
        try:
            while self._r.recv(512):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Once per process, when start-up is done: put what it allocated (modules, config, keys:
    ~26,000 objects in a client) out of the cyclic garbage collector's reach (gc.freeze).

    Why: every full collection walked them again, for nothing (they live as long as the
    process), and the first handshake's allocations met a collection on the way to the first
    packet (0.13-0.2 ms, seen at ~2 ms into it with tls-auth); freezing also starts the count
    to the next collection afresh. Start-up leaves no unreachable cycles behind (a gc.collect()
    at that point finds none, and costs 6.7 ms), so nothing that should be freed is kept. Once:
    a second gateway in the same process (tests) would otherwise freeze the first one's garbage."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.freeze()


def run_gateway(pump: "Pump", signals: Signals | None, on_signal: Handler, start: Handler,
                done: Callable[[], int | None], cleanup: Handler) -> int:
    """Both roles' `run()`: signals in, start, step until `done()` gives a status; PortGone or
    a MemoryError out of the pump's guards (at start) end it with one line and status 1; `cleanup` and the signal handlers always run."""
    if signals is not None:
        signals.install()
        pump.watch(signals, on_signal)
    try:
        start()
        pump.run(lambda: done() is not None)
        return done() or 0
    except PortGone as e:
        log.error("fatal: %s", e)
        return 1
    except MemoryError:
        log.error("fatal: out of memory")
        return 1
    finally:
        try:
            cleanup()
        finally:
            if signals is not None:
                signals.uninstall()


MEMORY_ERRORS_FATAL = 50       # MemoryErrors contained within MEMORY_WINDOW s, past which the loop ends
MEMORY_WINDOW = 10.0


class Pump:
    """One event loop: ports with read/write handlers, a timer heap, and an after-wake hook."""

    def __init__(self, clock: Clock, waiter: Waiter, faults: Faults | None = None) -> None:
        self.clock = clock
        self.waiter = waiter
        self.timers = TimerHeap()
        self.faults = faults or Faults()
        self.stopping = False
        self.after_wake: Handler = lambda: None
        self._writing: set[int] = set()
        self._again: dict[object, Handler] = {}
        self._interest: dict[int, tuple[bool, bool]] = {}     # ports watched through interest()
        self._oom_since = -math.inf     # the MemoryErrors contained since then (_contain_memory_error)
        self._oom_n = 0

    # ---------------------------------------------------------------- ports
    def watch(self, port, on_read: Handler, on_write: Handler | None = None) -> None:
        self.waiter.register(port, (on_read, on_write))

    def want_write(self, port, on: bool, on_read: Handler, on_write: Handler) -> None:
        """Ask for (or stop asking for) writability of a stream with queued bytes."""
        key = id(port)
        if on == (key in self._writing):
            return
        if on:
            self._writing.add(key)
        else:
            self._writing.discard(key)
        self.waiter.modify(port, (on_read, on_write), on)

    def interest(self, port, on_read: Handler, on_write: Handler, read: bool, write: bool) -> None:
        """Watch `port` for exactly what it wants now: reading, writing, both or neither.

        Why beside watch/want_write (which always read): a relay (portshare.py) stops reading a
        side whose bytes the other side does not take yet -- that is its back-pressure -- while
        it may still wait to write to it; a readable port whose handler does not read would wake
        the (level-triggered) loop for ever. Neither: unwatched. The port's first call registers it."""
        key = id(port)
        want = (read, write)
        cur = self._interest.get(key)
        if cur == want:
            return
        if not read and not write:
            self.unwatch(port)
            return
        if cur is None:
            self.waiter.register(port, (on_read, on_write), write=write, read=read)
        else:
            self.waiter.modify(port, (on_read, on_write), write, read=read)
        self._interest[key] = want

    def reading(self, port, on_read: Handler, on: bool) -> None:
        """Stop (or resume) reading a port registered with watch() that wants no writability
        (the TUN while `shaper` says wait): it stays registered, so resuming costs one call, and
        the loop no longer wakes for it meanwhile."""
        self.waiter.modify(port, (on_read, None), False, read=on)

    def unwatch(self, port) -> None:
        self._interest.pop(id(port), None)
        self._writing.discard(id(port))
        self._again.pop(id(port), None)
        self.waiter.unregister(port)

    def again(self, port, handler: Handler) -> None:
        """Run `handler` at the next wake-up without waiting: a port that still holds input it
        did not take this time (its share of a wake-up is bounded), which readiness will not report."""
        self._again[id(port)] = handler

    # ---------------------------------------------------------------- one wake-up
    def step(self, block: bool = True) -> bool:
        """Fire due timers, wait (up to the next deadline if `block`), run ready handlers, then
        the after-wake hook. Returns whether anything happened. PortGone propagates."""
        now = self.clock()          # one reading: the wait's timeout matters only if no timer fired
        did = self._fire_timers(now)
        timeout: float | None = 0.0
        if block and not did and not self.stopping and not self._again:
            dl = self.timers.next_deadline()
            timeout = None if dl is None else max(0.0, dl - now)
        ready = self.waiter.wait(timeout)
        if self._again:
            again, self._again = self._again, {}
            ready = ready + [((fn, None), True, False) for fn in again.values()]
        for (on_read, on_write), readable, writable in ready:
            did = True
            try:
                if writable and on_write is not None:
                    on_write()
                if readable:
                    on_read()
            except PortGone:
                raise
            except MemoryError:
                self._contain_memory_error("a port handler")
            except Exception:  # noqa: BLE001 - our bug; a handler contains what a peer causes
                self.faults.internal("a port handler")
        try:
            self.after_wake()
        except PortGone:
            raise
        except MemoryError:
            self._contain_memory_error("flushing a batch")
        except Exception:  # noqa: BLE001
            self.faults.internal("flushing a batch")
        return did

    def _contain_memory_error(self, where: str) -> None:
        """Call from an `except MemoryError` block: one peer's work dropped, as any fault of
        ours (an allocation too large, whose size a packet led to) -- unless they keep coming
        (MEMORY_ERRORS_FATAL within MEMORY_WINDOW s): then the host is out of memory, and the
        error goes on to end the gateway (run_gateway: one line, status 1; the service manager
        restarts it) rather than loop on failing."""
        now = self.clock()
        if now - self._oom_since > MEMORY_WINDOW:
            self._oom_since, self._oom_n = now, 0
        self._oom_n += 1
        if self._oom_n >= MEMORY_ERRORS_FATAL:
            raise                       # noqa: PLE0704 - the MemoryError being handled
        self.faults.internal(where)

    def _fire_timers(self, now: float) -> bool:
        timers = self.timers
        due = timers.pop_due_keyed(now)
        for key, fn in due:
            try:
                fn()
            except PortGone:
                raise
            except Exception as e:  # noqa: BLE001
                if isinstance(e, MemoryError):
                    self._contain_memory_error("a timer")
                else:
                    self.faults.internal("a timer")
                after = timers.retry.get(key)
                if after is not None and not timers.armed(key):
                    timers.arm(key, self.clock() + after, fn)      # its work must still be done
        return bool(due)

    def run(self, until: Callable[[], bool]) -> None:
        """Step until `until()` says so; PortGone (and a MemoryError out of `until`) propagate to the caller."""
        while not until():
            self.step()
