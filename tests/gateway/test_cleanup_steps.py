"""A bug of ours in one step of a gateway's clean-up does not skip the others.

The client's first steps (its held log lines, the resolver's, tls-verify's and the scripts'
workers) ran outside any guard: a bug in one -- or a MemoryError on a host out of memory, which
run_gateway ends the gateway for and then cleans up after -- skipped the rest, and the host kept
our routes (those to the server outlive the TUN) and DNS, and the down script never ran. Now
each step is counted as an internal error when it fails and the next one runs (Faults.each).
lab/reliability/fault_sweep.py runs the clean-up outside its injection, so it never saw this."""
from __future__ import annotations

import pytest

from .conftest import client_conf, server_conf


def _broken(*_a, **_k):
    raise RuntimeError("our bug in a clean-up step")


class _BrokenWorker:
    """A resolver whose close raises (our bug there)."""
    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        _broken()


def _break(c, step: str, monkeypatch) -> None:
    if step == "held log lines":
        monkeypatch.setattr(c._logs, "write", _broken)          # noqa: SLF001
    elif step == "resolver":
        monkeypatch.setattr(c, "_resolver", _BrokenWorker())
        monkeypatch.setattr(c.pump, "unwatch", lambda *_a: None)
    else:                                                       # the connection (guarded before too)
        monkeypatch.setattr(c, "_close_conn", _broken)


@pytest.mark.parametrize("step", ["held log lines", "resolver", "connection"])
def test_a_client_whose_clean_up_step_raises_still_gives_back_the_hosts_routes(world, pki, step, monkeypatch):
    world.add_server(server_conf(pki, "udp"))
    world.add_client(client_conf(pki, "client0"))
    assert world.run(lambda: world.client_addr(0) is not None, max_time=30)
    c, net = world.clients[0], world.client_nets[0]
    downs = []
    monkeypatch.setattr(c.updown, "down_run", lambda: downs.append(1))
    c.request_stop()
    assert world.run(lambda: c.result is not None, max_time=10)
    _break(c, step, monkeypatch)
    try:
        c._cleanup()                                        # noqa: SLF001 - what run_gateway runs at the end
    except RuntimeError:
        pass                                                # (before: out of run(); the process ended anyway)
    assert net.closed == 1, "the host's routes and DNS were kept"
    assert downs == [1], "the down script did not run"
    assert c.faults.counts.get("internal error") == 1


@pytest.fixture(autouse=True)
def _quiet_tracebacks(caplog):
    caplog.set_level("CRITICAL", logger="vpn-appliance")


def test_a_server_whose_clean_up_step_raises_still_closes_the_rest(world, pki, monkeypatch):
    """The management notices (>UPDOWN:DOWN, >STATE EXITING) raising skipped ops.close and
    every socket's close (the TUN's still ran)."""
    world.add_server(server_conf(pki, "udp"))
    world.add_client(client_conf(pki, "client0"))
    assert world.run(lambda: world.client_addr(0) is not None, max_time=30)
    s = world.server
    monkeypatch.setattr(s.ops, "stop_notices", _broken)
    closed = []
    real_close = s.ops.close
    monkeypatch.setattr(s.ops, "close", lambda: (closed.append("ops"), real_close()))
    s.request_stop()
    assert world.run(lambda: s.result is not None, max_time=10)
    try:
        s._cleanup()                                        # noqa: SLF001 - what run_gateway runs at the end
    except RuntimeError:
        pass                                                # (before: out of run(); the process ended anyway)
    assert closed == ["ops"]
    assert s.udp.sock.closed, "the server's socket was left open"
    assert s.faults.counts.get("internal error") == 1
