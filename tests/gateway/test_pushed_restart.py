"""Stopping with explicit-exit-notify, and RESTART on the client, on in-memory ports (against
OpenVPN 2.6: tests/interop/test_restart_vs_openvpn.py).

OpenVPN 2.6's UDP server with `explicit-exit-notify N` tells every client RESTART (N = 1) or
RESTART,[N] (N = 2) at SIGTERM and stays up 2 s meanwhile, ignoring new clients; its client
goes to the next remote on [N] and otherwise retries the server it was connected to. Ours used
to send only an OCC exit, after which a client with two remotes had nothing to tell it where to
go, and our client treated every RESTART alike (next remote).
"""
from __future__ import annotations

import pytest

from appliance.gateway.ops import CLIENT_KILL_WAIT
from appliance.gateway.server import RESTART_WAIT
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

TWO_REMOTES = [(SERVER_IP, 1194), (SERVER_IP, 1195)]      # nothing listens on the second


def _up(w: World, i: int = 0) -> bool:
    c = w.clients[i]
    return c.conn is not None and c.conn.was_up


def _stopped_server(pki, n: int, clients: int = 1) -> World:
    w = World()
    w.add_server(server_conf(pki, extra=f"explicit-exit-notify {n}"))
    for i in range(clients):
        w.add_client(client_conf(pki, f"client{i}", remotes=TWO_REMOTES))
    assert w.run(lambda: all(_up(w, i) for i in range(clients)), max_time=30)
    return w


def _next_ports(w: World, before: list) -> list[int]:
    """The port of each client's next connection attempt after the one in `before`."""
    cs = w.clients[:len(before)]
    assert w.run(lambda: all(c.conn is not None and c.conn is not b for c, b in zip(cs, before)),
                 max_time=20), "a client did not reconnect"
    return [c.conn.addr[1] for c in cs]


def _next_port(w: World, first) -> int:
    return _next_ports(w, [first])[0]


@pytest.mark.parametrize("n, port", [(2, 1195), (1, 1194)])
def test_stopping_server_sends_restart_and_the_client_goes_where_it_says(pki, n, port):
    w = _stopped_server(pki, n)
    srv, first = w.server, w.clients[0].conn
    srv.request_stop()
    assert srv.result is None, "the server did not wait for its RESTART to be acknowledged"
    assert w.run(lambda: srv.result is not None, max_time=RESTART_WAIT + 1)
    assert first.session.closed
    assert _next_port(w, first) == port


def test_the_wait_ends_once_every_client_acknowledged(pki):
    w = _stopped_server(pki, 2, clients=2)
    t0, before = w.clock.t, [c.conn for c in w.clients]
    w.server.request_stop()
    assert w.run(lambda: w.server.result is not None, max_time=RESTART_WAIT + 1)
    assert w.clock.t - t0 < RESTART_WAIT / 2, "the server waited although both clients acknowledged"
    assert _next_ports(w, before) == [1195, 1195]


def test_new_clients_are_ignored_while_the_server_waits(pki):
    w = _stopped_server(pki, 2)
    w.server.request_stop()
    late = w.add_client(client_conf(pki, "client3"))
    w.run_for(RESTART_WAIT + 1)
    assert w.server.result == 0
    assert late.conn is None or not late.conn.was_up
    assert w.server.d.drop_counters().get("connection attempt while stopping", 0) >= 1


def test_a_second_stop_ends_the_wait(pki):
    """A second SIGTERM while the server waits for acknowledgements stops it at once (as OpenVPN)."""
    w = _stopped_server(pki, 2)
    srv = w.server
    srv.request_stop()
    assert srv.result is None
    srv.request_stop()
    assert srv.result == 0


def test_without_explicit_exit_notify_the_server_stops_at_once(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, remotes=TWO_REMOTES))
    assert w.run(lambda: _up(w), max_time=30)
    first = w.clients[0].conn
    w.server.request_stop()
    assert w.server.result == 0
    # The exit notification (OCC exit, or EXIT): OpenVPN 2.6's client takes it as a SIGUSR1
    # (occ.c process_received_occ_msg, push.c receive_exit_message) and, its tunnel having
    # been up, tries the same server first (init.c next_connection_entry's no_advance).
    assert _next_port(w, first) == 1194


def test_tcp_server_stops_at_once(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="explicit-exit-notify 2"))
    w.add_client(client_conf(pki, proto="tcp-client"))
    assert w.run(lambda: _up(w), max_time=30)
    w.server.request_stop()
    assert w.server.result == 0


@pytest.mark.parametrize("message, port", [("RESTART", 1194), ("RESTART,[N]", 1195), ("", 1194)])
def test_client_kill_sends_its_message(pki, message, port):
    """Management `client-kill CID [MSG]`, as OpenVPN 2.6: MSG (default RESTART) to the client,
    whose session ends once it acknowledged (OpenVPN: after 5 s). It used to send an OCC exit
    whatever MSG said."""
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, remotes=TWO_REMOTES))
    assert w.run(lambda: _up(w), max_time=30)
    first = w.clients[0].conn
    inf = next(iter(gw.ops.info.values()))
    t0 = w.clock.t
    assert gw.ops.client_kill(inf.cid, message)
    assert w.run(lambda: not inf.rec.alive, max_time=CLIENT_KILL_WAIT + 1)
    assert w.clock.t - t0 < CLIENT_KILL_WAIT / 2, "the session outlived the client's acknowledgement"
    assert _next_port(w, first) == port
