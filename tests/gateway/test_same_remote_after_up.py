"""Which remote a client tries after a tunnel that was up ends, on in-memory ports (against
OpenVPN 2.6: tests/interop/test_same_remote_vs_openvpn.py).

OpenVPN 2.6 sets no_advance when its initialization completes (init.c
initialization_sequence_completed) and next_connection_entry then keeps the current remote
for the next attempt, whatever ended the connection; only RESTART,[N] clears it (push.c
server_pushed_signal), and an attempt that never came up moves on. Ours moved on to the next
remote after a ping-restart or a lost TCP stream.
"""
from __future__ import annotations

import pytest

from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

TWO_REMOTES = [(SERVER_IP, 1194), (SERVER_IP, 1195)]      # nothing listens on the second


def _up_world(pki, proto: str = "udp") -> tuple[World, list[int]]:
    """A client up on the first remote, and the list of the ports it tries from then on."""
    w = World()
    w.add_server(server_conf(pki, proto=proto))
    c = w.add_client(client_conf(pki, proto=proto, remotes=TWO_REMOTES))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    tried: list[int] = []
    resolve = c.ports.resolve

    def recording(host, port, proto, family):
        tried.append(port)
        return resolve(host, port, proto, family)
    c.ports.resolve = recording
    return w, tried


def _tries(w: World, tried: list[int], n: int) -> list[int]:
    assert w.run(lambda: len(tried) >= n, max_time=120), f"tried only {tried}"  # ping-restart 60 pushed
    return tried[:n]


def test_ping_restart_tries_the_same_server_first(pki):
    w, tried = _up_world(pki)
    w.net.loss = 1.0                     # the server goes silent: ping-restart
    assert _tries(w, tried, 1) == [1194]


def test_after_the_same_server_failed_again_the_next_remote(pki):
    """no_advance is used once: the retry of the same server that gets no answer moves on."""
    w, tried = _up_world(pki)
    w.net.loss = 1.0
    assert _tries(w, tried, 2) == [1194, 1195]


def test_lost_tcp_stream_tries_the_same_server_first(pki):
    w, tried = _up_world(pki, "tcp")
    w.server.request_stop()              # closes its TCP connections: the client's stream ends
    assert _tries(w, tried, 1) == [1194]


@pytest.mark.parametrize("message, port", [("AUTH_FAILED,TEMP: busy", 1194),
                                           ("AUTH_FAILED,TEMP[advance remote]: elsewhere", 1195)])
def test_auth_failed_temp_keeps_the_server_unless_told_to_advance(pki, message, port):
    w, tried = _up_world(pki)
    gw = w.server
    inf = next(iter(gw.ops.info.values()))
    assert gw.ops.client_kill(inf.cid, message)
    assert _tries(w, tried, 1) == [port]
