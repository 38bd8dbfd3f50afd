"""`inactive N` on the real client and server pumps (fake clock, in-memory ports): the end comes N
to N + max(1 s, N/8) seconds after the last tunnel traffic (gateway/inactivity.py), keepalive
pings flowing all the while (they are not traffic), wherever in the check's cycle the traffic
stopped. (Against OpenVPN 2.6, with real time: tests/interop/test_inactive.py.)"""
from __future__ import annotations

import pytest

from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"
N = 16                              # looked at every second (N/16)
LATE = max(1.0, N / 8)              # the most the end may come after N


def _up(w: World) -> bool:
    return w.clients[0].conn is not None and w.clients[0].conn.was_up


def _traffic_then_idle(w: World, pause: float) -> float:
    """A tunnel packet from the client every 5 s for 20 s, then one after `pause` s more (where
    the last one falls in the check's cycle); returns the time of the last one."""
    cli = w.client_addr()
    for i in range(5):
        w.client_nets[0].tun.inject(ipv4_udp(cli, SERVER_TUN, b"%d" % i))
        w.run_for(5.0)
    w.run_for(pause)
    last = w.clock.t
    w.client_nets[0].tun.inject(ipv4_udp(cli, SERVER_TUN, b"last"))
    assert w.run(lambda: ipv4_udp(cli, SERVER_TUN, b"last") in w.server_net.tun.written, max_time=1)
    return last


@pytest.mark.parametrize("pause", [0.0, 0.45, 3.3, 8.7])
def test_server_ends_an_idle_client_n_to_n_plus_late_after_its_last_traffic(pki, pause):
    w = World()
    w.add_server(server_conf(pki, extra=f"inactive {N}\n"))        # keepalive 10 60: pings both ways
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    last = _traffic_then_idle(w, pause)
    assert w.server.d.clients, "ended while traffic flowed"
    assert w.run(lambda: not w.server.d.clients, max_time=3 * N), "the idle client was never disconnected"
    assert N <= w.clock.t - last <= N + LATE, w.clock.t - last


@pytest.mark.parametrize("pause", [0.0, 0.45, 8.7])
def test_client_exits_n_to_n_plus_late_after_its_last_traffic(pki, pause):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, extra=f"inactive {N}\n"))
    assert w.run(lambda: _up(w), max_time=30)
    last = _traffic_then_idle(w, pause)
    assert w.clients[0].result is None, "exited while traffic flowed"
    assert w.run(lambda: w.clients[0].result is not None, max_time=3 * N), "the idle client never exited"
    assert w.clients[0].result == 0 and N <= w.clock.t - last <= N + LATE, w.clock.t - last


def test_a_pushed_inactive_replaces_the_clients_own(pki):
    w = World()
    w.add_server(server_conf(pki, extra=f'push "inactive {N}"\n'))
    w.add_client(client_conf(pki, extra="inactive 600\n"))
    assert w.run(lambda: _up(w), max_time=30)
    last = _traffic_then_idle(w, 2.5)
    assert w.run(lambda: w.clients[0].result is not None, max_time=3 * N), "the pushed value was not used"
    assert N <= w.clock.t - last <= N + LATE, w.clock.t - last
