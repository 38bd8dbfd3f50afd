"""Pump.later (gateway/loop.py) and LogHold (gateway/loghold.py): work that must not delay an answer
runs when a wake-up finds nothing ready, and log lines made meanwhile are written then, in order."""
from __future__ import annotations

import logging

from appliance.gateway.loghold import MAX_HELD, LogHold
from appliance.gateway.loop import LATER_MAX_TURNS, Faults, Pump


class Waiter:
    """Readiness by hand: `ready` holds the ports a wait reports (each one report)."""

    def __init__(self) -> None:
        self.ports: dict[int, tuple] = {}
        self.ready: list[int] = []
        self.timeouts: list[float | None] = []

    def register(self, port, data, write=False):
        self.ports[port] = data

    def modify(self, port, data, write):
        self.ports[port] = data

    def unregister(self, port):
        self.ports.pop(port, None)

    def wait(self, timeout):
        self.timeouts.append(timeout)
        out = [(self.ports[p], True, False) for p in self.ready]
        self.ready = []
        return out

    def close(self):
        pass


class Port(int):
    def fileno(self) -> int:
        return int(self)


def _pump() -> tuple[Pump, Waiter, list[str]]:
    w = Waiter()
    p = Pump(lambda: 0.0, w, Faults())
    order: list[str] = []
    p.watch(Port(3), lambda: order.append("read"))
    return p, w, order


def test_deferred_work_waits_for_a_wake_up_with_nothing_ready():
    p, w, order = _pump()
    p.later(lambda: order.append("later 1"))
    p.later(lambda: order.append("later 2"))
    w.ready = [3]                              # a packet is waiting: it is served first
    p.step()
    assert order == ["read"]
    p.step()                                   # nothing ready: now the deferred work, in order
    assert order == ["read", "later 1", "later 2"]
    assert w.timeouts[-2] == 0.0, "with deferred work queued, the first look does not wait"
    p.step()
    assert order == ["read", "later 1", "later 2"] and w.timeouts[-1] is None, "then the pump blocks again"


def test_deferred_work_runs_at_the_latest_after_a_bounded_number_of_busy_wake_ups():
    p, w, order = _pump()
    p.later(lambda: order.append("later"))
    for _ in range(LATER_MAX_TURNS):
        w.ready = [3]                          # never idle (a transfer)
        p.step(block=False)
    assert order == ["read"] * LATER_MAX_TURNS
    w.ready = [3]
    p.step(block=False)
    assert order == ["read"] * LATER_MAX_TURNS + ["later", "read"]


def test_deferred_work_that_raises_is_counted_and_the_rest_still_runs():
    p, w, order = _pump()
    p.later(lambda: 1 / 0)
    p.later(lambda: order.append("after"))
    p.step(block=False)
    assert order == ["after"] and p.faults.counts["internal error"] == 1


def test_held_lines_are_written_later_in_order_with_their_own_time(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    log.info("before")
    h.begin()
    log.info("held %d", 1)
    log.warning("held %d", 2)
    h.end()
    log.info("after")                          # a line outside the held stretch is written at once
    assert [r.getMessage() for r in caplog.records] == ["before", "after"]
    h.write()
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["before", "after", "held 1", "held 2"]
    held = [r for r in caplog.records if r.getMessage().startswith("held")]
    after = next(r for r in caplog.records if r.getMessage() == "after")
    assert all(r.created <= after.created for r in held), "a held line keeps the time it was made"
    h.write()
    assert len(caplog.records) == 4, "written once"


def test_a_flood_while_held_is_written_not_buffered(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    h.begin()
    for i in range(MAX_HELD * 3):
        log.info("line %d", i)
    h.end()
    assert len(h.held) < MAX_HELD and len(caplog.records) >= MAX_HELD * 2
    h.write()
    assert [r.getMessage() for r in caplog.records] == [f"line {i}" for i in range(MAX_HELD * 3)]
