"""SelectorWaiter (epoll, used directly): what the pump relies on from it with real sockets --
readiness with each port's own data, writability only when asked, a hang-up seen by the reader,
a closed port forgotten, the timeout honoured and never cut short."""
from __future__ import annotations

import socket
import time

from appliance.gateway.loop import SelectorWaiter


def test_ready_ports_come_with_their_own_data_and_writability_only_when_asked():
    w = SelectorWaiter()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        w.register(a, "A")
        w.register(c, "C")
        assert w.wait(0) == []                           # nothing to read; writable but not asked
        b.send(b"x")
        assert w.wait(0) == [("A", True, False)]
        w.modify(c, "C2", write=True)
        assert sorted(w.wait(0)) == [("A", True, False), ("C2", False, True)]
        w.modify(c, "C3", write=False)
        a.recv(10)
        assert w.wait(0) == []
    finally:
        w.close()
        for s in (a, b, c, d):
            s.close()


def test_a_hang_up_is_seen_by_the_reader_and_a_closed_port_is_forgotten():
    w = SelectorWaiter()
    a, b = socket.socketpair()
    try:
        w.register(a, "A")
        b.close()
        assert w.wait(0) == [("A", True, True)]          # as selectors: the handler meets the EOF
        w.unregister(a)
        a.close()
        w.unregister(a)                                  # twice, and after close: no error
        assert w.wait(0) == []
    finally:
        w.close()
        a.close()


def test_the_timeout_is_waited_out_not_cut_short():
    w = SelectorWaiter()
    a, b = socket.socketpair()
    try:
        w.register(a, "A")
        t = time.monotonic()
        assert w.wait(0.0125) == []
        assert time.monotonic() - t >= 0.0125            # epoll's ms granularity rounds up, not down
    finally:
        w.close()
        a.close()
        b.close()


def test_a_timer_years_away_waits_without_overflow():
    """A timer a peer sets (a pushed `route-delay 2147483647`, `inactive` as long) is 68 years
    out; were it the loop's nearest, the wait's timeout would not fit epoll's int of
    milliseconds and poll raised OverflowError out of the loop. Today both roles re-arm a 5 s
    drop-log timer, so it never is; the wait is capped anyway (waking early only waits again)."""
    from appliance.gateway.loop import Pump

    w = SelectorWaiter()
    a, b = socket.socketpair()
    try:
        pump = Pump(time.monotonic, w)
        fired = []
        pump.timers.arm("far", time.monotonic() + 2147483647, lambda: fired.append(1))
        pump.watch(a, lambda: fired.append(a.recv(10)))
        b.send(b"x")
        assert pump.step() is True and fired == [b"x"]
        b.send(b"y")
        assert len(w.wait(2147483647.0)) == 1            # the waiter itself, asked directly
    finally:
        w.close()
        for s in (a, b):
            s.close()
