"""remap-usr1 (OpenVPN 2.6, sig.c remap_signal): with `remap-usr1 SIGTERM`, SIGUSR1 -- sent to the
process, or one of the client's own restarts (a server that kicks it, ping-restart, a failed
attempt) -- ends the run instead of reconnecting, for a supervisor to restart it; on a server,
SIGUSR1 stops it. `remap-usr1 SIGHUP` is a server's reload (what SIGUSR1 does there already) and
is refused on our client, which cannot re-read its profile. Before, the line failed the start as
an unknown directive."""
from __future__ import annotations

import signal

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_sigusr1 import _signal


def _up(pki, client_extra: str, server_extra: str = ""):
    w = World()
    w.add_server(server_conf(pki, extra=server_extra))
    c = w.add_client(client_conf(pki, extra=client_extra))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    return w, c


def test_a_restart_of_the_clients_own_ends_the_run(pki):
    w, c = _up(pki, "remap-usr1 SIGTERM\n")
    assert w.server.ops.kill_cn("client0") == 1          # the server ends the session: a restart
    assert w.run(lambda: c.result is not None, max_time=30), "the client reconnected"
    assert c.result == 1 and c.connections == 1


def test_without_it_the_same_kick_reconnects(pki):
    w, c = _up(pki, "")
    assert w.server.ops.kill_cn("client0") == 1
    assert w.run(lambda: c.connections == 2, max_time=60) and c.result is None


def test_sigusr1_stops_the_client_as_sigterm(pki):
    w, c = _up(pki, "remap-usr1 SIGTERM\n")
    _signal(c, signal.SIGUSR1)
    assert w.run(lambda: c.result is not None, max_time=10)
    assert c.result == 0 and c.connections == 1


def test_sigusr1_stops_the_server(pki):
    w, c = _up(pki, "", "remap-usr1 SIGTERM\n")
    w.server.ops.on_signal(signal.SIGUSR1)
    assert w.run(lambda: w.server.result is not None, max_time=10)


def test_refused_forms(pki):
    with pytest.raises(ConfigError, match=r"c\.ovpn:\d+: remap-usr1: 'SIGINT': must be SIGHUP or SIGTERM"):
        parse_config(client_conf(pki, extra="remap-usr1 SIGINT\n"), "/mem/c.ovpn")
    with pytest.raises(ConfigError, match=r"c\.ovpn:\d+: remap-usr1: SIGHUP: this client cannot re-read"):
        parse_config(client_conf(pki, extra="remap-usr1 SIGHUP\n"), "/mem/c.ovpn")
    assert parse_config(server_conf(pki, extra="remap-usr1 SIGHUP\n"), "/mem/s.conf").remap_usr1 == "SIGHUP"
