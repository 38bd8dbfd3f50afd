"""A socket left watched after its connection was forgotten (our bug midway through closing it)
must not spin the loop: the pump's readiness is level-triggered, and a handler that finds no
connection for the ready socket and returns without reading it was called again at once, for
ever -- 100% CPU on a host (lab/reliability/fault_sweep.py, `--proto tcp --phase restart`).
Such a socket is now closed at its first wake-up, counted."""
from __future__ import annotations

from lab.reliability.fault_sweep import spinning
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_faults import served
from tests.gateway.test_tunnel import _up

LATE = "internal error: a finished connection's socket closed late"


def _tcp_world(pki) -> World:
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, "client0", proto="tcp-client"))
    w.add_client(client_conf(pki, "client1", proto="tcp-client"))
    served(w, 0)
    served(w, 1)
    return w


def test_a_server_connection_forgotten_but_still_watched_is_closed_not_spun_on(pki):
    w = _tcp_world(pki)
    key, link = next((k, v) for k, v in w.server.conns.items() if k.ip == w.client_ports[0].ip)
    w.server.conns.pop(key)            # as a fault midway through _close_conn left it, before unwatch
    srv_end = w.client_ports[0].streams[-1].peer
    w.clients[0].user_restart()
    w.run_for(0.5)                      # the client's restart closes its end: the server's is readable
    assert not spinning(w), "the server's loop woke for ever for a socket nobody reads"
    assert srv_end.closed
    assert w.server.faults.counts.get(LATE) == 1
    assert w.run(lambda: _up(w, 0) and w.clients[0].connections >= 2, max_time=60), "client0 did not come back"
    served(w, 0)
    served(w, 1)


def test_a_clients_old_link_left_watched_is_closed_not_spun_on(pki, monkeypatch):
    w = _tcp_world(pki)
    c = w.clients[0]
    old = c.conn.link
    old_sock = w.client_ports[0].streams[-1]
    real = c.pump.unwatch
    skipped = []

    def unwatch_fails_once(port) -> None:
        if port is old and not skipped:
            skipped.append(port)
            raise RuntimeError("injected: a bug on the way out of the connection")
        real(port)
    monkeypatch.setattr(c.pump, "unwatch", unwatch_fails_once)
    c.pump.timers.arm("test-restart", w.clock(), c.user_restart)      # the fault through the loop's guard
    w.run_for(0.5)
    assert skipped
    # The old socket becomes readable when the server ends that connection (its ping-restart):
    # the client's loop must then close it, not wake for it for ever.
    for _ in range(60):
        assert not spinning(w, seconds=5), "the client's loop woke for ever for its old socket"
        if old_sock.peer.closed:
            break
    assert old_sock.peer.closed, "the server never ended the abandoned connection"
    assert not spinning(w, seconds=5), "the client's loop woke for ever for its old socket"
    assert old_sock.closed
    assert c.faults.counts.get(LATE) == 1
    assert w.run(lambda: _up(w, 0) and c.connections >= 2, max_time=60), "client0 did not come back"
    served(w, 0)
    served(w, 1)
