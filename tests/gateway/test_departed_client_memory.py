"""What a departed client leaves in the server's memory: nothing, at once -- not a record waiting
for Python's cyclic garbage collector. Why: a client's ClientRecord and Session referred to each
other (the record's session, the session's owner; the session's role and the role's session), so
each client that left stayed in memory with its key contexts, replay windows and buffers until a
full collection, which comes rarer as the heap grows. A soak of the tap server (Debian's clients
churning) found ~100 such records pending at any time and the RSS growing with the churn
(README, Reliability). Here the cyclic collector is off while clients come and go, so a record
kept alive only by a cycle is still there at the end."""
from __future__ import annotations

import gc

import pytest

from appliance.openvpn.server_model import ClientRecord
from appliance.openvpn.session import Session
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tap_server import CLIENT_MAC, frame, inline, tap_conf  # noqa: F401 - inline: a fixture
from tests.gateway.test_tunnel import _up, ping_both_ways


def _server_objects() -> set[int]:
    """ClientRecords and server-side Sessions alive or awaiting the cyclic collector (by id)."""
    return {id(o) for o in gc.get_objects()
            if type(o) is ClientRecord or (type(o) is Session and not o.is_client)}


def _left(before: set[int]) -> str:
    """What this test's departed clients left: '' when nothing."""
    ids = _server_objects() - before
    kinds = [type(o).__name__ for o in gc.get_objects() if id(o) in ids]
    return ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))


@pytest.fixture
def no_cyclic_gc():
    """The cyclic collector off; yields the server objects alive before (other tests' worlds
    may still be referenced in this process: those are not this test's)."""
    gc.collect()
    gc.disable()
    try:
        yield _server_objects()
    finally:
        gc.enable()


def _churn(w: World, conf_of, rounds: int, leave: str, traffic) -> None:
    """`rounds` clients, one after another: up, traffic, one renegotiation, then gone (`leave`:
    "exit" -- explicit-exit-notify; "silent" -- the server's keepalive ends it)."""
    for i in range(rounds):
        c = w.add_client(conf_of(i))
        assert w.run(lambda: _up(w, 0), max_time=30)
        traffic(w, i)
        w.run_for(12)                                   # reneg-sec 10 on the server
        if leave == "exit":
            c.request_stop()
            assert w.run(lambda: c.result is not None, max_time=10)
        else:
            w.clients.clear()                           # its pump stops: it says nothing more
        assert w.run(lambda: not w.server.d.clients, max_time=150)
        w.clients.clear()
        w.client_nets.clear()
        w.client_ports.clear()
    w.run_for(70)                                       # any stale timer entry of theirs has come due


@pytest.mark.parametrize("leave", ["exit", "silent"])
def test_a_departed_tap_client_is_freed_without_the_cyclic_collector(pki, tmp_path, inline, no_cyclic_gc, leave):
    la = tmp_path / "la.sh"
    la.write_text("#!/bin/sh\nexit 0\n")
    la.chmod(0o755)
    w = World()
    w.add_server(tap_conf(pki, f"script-security 2\nlearn-address {la}\ncomp-lzo yes\nreneg-sec 10\n"))

    def conf_of(i: int) -> str:
        return client_conf(pki, f"client{i % 4}", extra="explicit-exit-notify 1\ncomp-lzo yes\n").replace(
            "dev tun\n", "dev tap\n")

    def traffic(w: World, i: int) -> None:
        stun = w.server_net.tun
        for n in range(2):                               # the first waits for learn-address's yes
            f = frame(b"\xff" * 6, CLIENT_MAC[:5] + bytes([i]), b"hello %d" % n)
            w.client_nets[0].tun.inject(f)
            w.run_for(1)
        assert f in stun.written

    _churn(w, conf_of, 3, leave, traffic)
    assert _left(no_cyclic_gc) == ""


def test_a_departed_tun_client_is_freed_without_the_cyclic_collector(pki, no_cyclic_gc):
    w = World()
    w.add_server(server_conf(pki, extra="reneg-sec 10\n"))
    _churn(w, lambda i: client_conf(pki, f"client{i % 4}", extra="explicit-exit-notify 1\n"), 3, "exit",
           lambda w, i: ping_both_ways(w))
    assert _left(no_cyclic_gc) == ""
