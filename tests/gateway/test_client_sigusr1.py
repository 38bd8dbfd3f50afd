"""SIGUSR1 and SIGHUP on our client, on in-memory ports (against OpenVPN 2.6:
tests/interop/test_client_signals_vs_openvpn.py).

OpenVPN 2.6's client restarts its connection on a hard SIGUSR1 ("SIGUSR1[hard,] received,
process restarting"), to the same server once its tunnel was up there (no_advance, set in
init.c initialization_sequence_completed; next_connection_entry keeps the remote once), after
connect-retry's pause. Ours did not handle SIGUSR1 at all: the signal's default action killed
the process without its clean-up (routes, TUN, exit status).
"""
from __future__ import annotations

import signal

from appliance.gateway.loop import Signals
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

DEAD_FIRST = [(SERVER_IP, 1195), (SERVER_IP, 1194)]       # nothing listens on 1195


def _up_on_second(pki) -> tuple[World, list[int]]:
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, remotes=DEAD_FIRST, extra="server-poll-timeout 2"))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=60)
    assert c.conn.addr == (SERVER_IP, 1194)
    tried: list[int] = []
    udp = c.ports.udp

    def recording(local, remote):
        tried.append(remote[1])
        return udp(local, remote)
    c.ports.udp = recording
    return w, tried


def _signal(c, signum: int) -> None:
    c.signals = sig = Signals((signal.SIGUSR1,))    # not installed: the handler's effect by hand
    sig.pending.append(signum)
    c._on_signal()


def test_sigusr1_reconnects_to_the_server_it_was_up_on(pki):
    w, tried = _up_on_second(pki)
    c = w.clients[0]
    before = c.connections
    _signal(c, signal.SIGUSR1)
    assert c.result is None and (c.conn is None or not c.conn.was_up)
    assert w.run(lambda: c.connections == before + 1, max_time=30), f"not up again; tried {tried}"
    assert tried == [1194], "SIGUSR1 moved on from the server the tunnel was up on"
    assert len(w.server.d.clients) == 1


def test_sigusr1_during_the_exit_notification_wait_is_ignored(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, extra="explicit-exit-notify 3"))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    c.request_stop()
    conn = c.conn
    _signal(c, signal.SIGUSR1)
    assert c.conn is conn and c.result is None
    assert w.run(lambda: c.result == 0, max_time=5)


def test_sighup_is_refused_and_the_tunnel_stays(pki, caplog):
    w, tried = _up_on_second(pki)
    c = w.clients[0]
    conn = c.conn
    _signal(c, signal.SIGHUP)
    w.run_for(3)
    assert c.conn is conn and c.result is None and tried == []
    assert "SIGHUP: re-reading the profile is not supported" in caplog.text
