"""What a reconnect leaves in memory: nothing, at once -- not a session waiting for Python's cyclic
garbage collector. Why: a Session and its role refer to each other (session.role, role.s), so our
client's session of each connection (its TLS objects, key states, replay windows, buffers) stayed
in memory after every reconnect until a full collection, which comes rarer as the heap grows --
the same cycle the server's departed clients made (tests/gateway/test_departed_client_memory.py,
README "Reliability"). Here the cyclic collector is off while the client reconnects, so a session
kept alive only by a cycle is still there at the end. The server's side of handshakes that never
complete (abandoned, refused) is checked the same way: those records go by the same forget."""
from __future__ import annotations

import gc
import logging

import pytest

from appliance.openvpn.passdb import hash_password
from appliance.openvpn.server_model import ClientRecord
from appliance.openvpn.session import Session
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def _garbage() -> list[str]:
    """Sessions and client records that only the cyclic collector would free: what a full
    collection finds unreachable (DEBUG_SAVEALL keeps it in gc.garbage to look at)."""
    for h in logging.getLogger().handlers:
        # pytest's log capture keeps its records, and a record's arguments (an exception, its
        # traceback's frames) can hold a connection: not ours to count.
        if hasattr(h, "records"):
            h.records.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    found = [("client " if o.is_client else "server ") + "Session" if type(o) is Session else type(o).__name__
             for o in gc.garbage if type(o) in (Session, ClientRecord)]
    gc.garbage.clear()
    return sorted(found)


@pytest.fixture
def no_cyclic_gc():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _reconnected(w: World, c, before) -> bool:
    return w.run(lambda: c.conn is not None and c.conn.session is not before and c.conn.was_up
                 and _up(w, 0), max_time=300)


def _sigusr1(w: World, c) -> None:
    c.user_restart()


def _ping_restart(w: World, c) -> None:
    w.net.loss = 1.0                    # the server goes silent: ping-restart (60 s, pushed)
    s = c.conn.session
    assert w.run(lambda: c.conn is None or c.conn.session is not s, max_time=200)
    w.net.loss = 0.0


def _killed_restart(w: World, c) -> None:
    inf = next(i for i in w.server.ops.info.values() if i.rec.alive)
    assert w.server.ops.client_kill(inf.cid, "RESTART")       # the server tells it to reconnect


@pytest.mark.parametrize("restart", [_sigusr1, _ping_restart, _killed_restart],
                         ids=["sigusr1", "ping-restart", "server-restart"])
def test_each_reconnect_frees_the_last_connections_session_without_the_cyclic_collector(pki, no_cyclic_gc, restart):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w, 0), max_time=30)
    _garbage()                          # what bringing it up made and dropped: not the reconnects'
    for _ in range(3):
        s = c.conn.session
        restart(w, c)
        assert _reconnected(w, c, s)
        w.run_for(3)
    assert _garbage() == []


def test_handshakes_the_server_never_completes_leave_nothing_for_the_cyclic_collector(pki, no_cyclic_gc):
    """Refused (a wrong password) and abandoned mid-handshake (the client goes silent): each
    server record and session goes at the server's forget (found clean: this guards it), and
    each refused client of ours, which exits, lets go of its session too (it did not)."""
    w = World()
    w.add_server(server_conf(pki, extra="hand-window 5\nauth-user-pass-verify /mem/passdb passdb\n"),
                 f"alice:{hash_password('right')}\n")
    gone = []                               # our clients, kept: their own objects are not the server's

    def fresh() -> None:
        gone.extend(w.clients)
        w.clients.clear()
        w.client_nets.clear()
        w.client_ports.clear()
    for i in range(3):
        c = w.add_client(client_conf(pki, f"client{i}", extra="auth-user-pass\n"), username="alice", password="wrong")
        assert w.run(lambda: c.result is not None, max_time=60) and c.result == 1
        fresh()
    for i in range(3):
        c = w.add_client(client_conf(pki, f"client{i}", extra="auth-user-pass\n"), username="alice", password="right")
        assert w.run(lambda: any(not r.session.established for r in w.server.d._records()), max_time=10)
        fresh()                             # gone mid-handshake: it says nothing more
        assert w.run(lambda: not w.server.d._records(), max_time=120)
    w.run_for(70)
    assert _garbage() == []
