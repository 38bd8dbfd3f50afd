"""A bug of ours while a gateway acts on SIGTERM does not lose the stop.

It did: the signal port was drained, `_on_stop` raised (arming explicit-exit-notify's wait, the
notification, the final counters), the loop's guard counted it -- and the gateway ran on until
systemd's SIGKILL, which skips the clean-up that gives back the host's routes, DNS and TUN. Now
the stop happens at once (without what it would have sent first), counted as an internal error;
run_gateway's clean-up then runs as for any stop (lab/reliability/fault_sweep.py's exit phase)."""
from __future__ import annotations

import pytest

from appliance.gateway.loop import Signals

from .conftest import client_conf, server_conf


def _up(world, pki, proto: str = "udp"):
    sproto, cproto = ("udp", "udp") if proto == "udp" else ("tcp-server", "tcp-client")
    world.add_server(server_conf(pki, sproto, extra="explicit-exit-notify 1\n" if proto == "udp" else ""))
    world.add_client(client_conf(pki, "client0", proto=cproto,
                                 extra="explicit-exit-notify 1\n" if proto == "udp" else ""))
    assert world.run(lambda: world.client_addr(0) is not None, max_time=30)


def _sigterm(gw) -> None:
    """What the installed handler and the signal port do for SIGTERM (run_gateway's watch)."""
    gw.signals = gw.signals or Signals()
    gw.signals.stops += 1
    gw._on_signal()                     # noqa: SLF001


def _broken(*_a, **_k):
    raise RuntimeError("our bug on the way to stopping")


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_client_whose_stop_raises_stops_all_the_same(world, pki, proto, monkeypatch):
    _up(world, pki, proto)
    c = world.clients[0]
    monkeypatch.setattr(c, "request_stop", _broken)
    _sigterm(c)
    world.run_for(1)
    assert c.result == 0
    assert c.faults.counts.get("internal error") == 1


@pytest.mark.parametrize("where", ["exit_notify_timer", "final_counters"])
def test_a_client_told_to_stop_ends_when_its_exit_notification_wait_cannot_be_armed(world, pki, where,
                                                                                     monkeypatch):
    """explicit-exit-notify: a bug arming the wait's timers (or logging the final counters at
    once, over TCP) left it running, its stop already taken."""
    _up(world, pki, "udp" if where == "exit_notify_timer" else "tcp")
    c = world.clients[0]
    if where == "exit_notify_timer":
        real = c.pump.timers.arm

        def arm(key, at, fn):  # noqa: ANN001
            if key == "exit-notify":
                raise RuntimeError("our bug arming the wait")
            return real(key, at, fn)
        monkeypatch.setattr(c.pump.timers, "arm", arm)
    else:
        monkeypatch.setattr(c, "_log_drops", _broken)
        monkeypatch.setattr(c.pump.timers, "cancel", _broken)
    _sigterm(c)
    world.run_for(4)
    assert c.result == 0
    assert c.faults.counts.get("internal error", 0) >= 1


def test_a_server_whose_stop_raises_stops_all_the_same(world, pki, monkeypatch):
    _up(world, pki, "udp")
    s = world.server
    monkeypatch.setattr(s, "request_stop", _broken)
    _sigterm(s)
    world.run_for(1)
    assert s.result == 0
    assert s.faults.counts.get("internal error") == 1


def test_a_bug_on_a_noted_signal_does_not_lose_a_stop_that_came_with_it(world, pki, monkeypatch):
    """SIGUSR2 and SIGTERM in one wake-up: the SIGUSR2 handler's bug went up before the stop."""
    _up(world, pki, "udp")
    c = world.clients[0]
    monkeypatch.setattr(c, "_on_noted", _broken)
    c.signals = Signals()
    c.signals.pending.append(12)
    c.signals.stops += 1
    c.pump.timers.arm("test-signal", world.clock(), c._on_signal)     # noqa: SLF001 - through the loop's guard
    world.run_for(4)
    assert c.result == 0
