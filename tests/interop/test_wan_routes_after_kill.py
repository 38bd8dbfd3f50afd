"""The client's routes outside its TUN after a run killed without its clean-up, in namespaces:
the client namespace reaches the server's addresses (198.18.60.1 and .2, multihome OpenVPN 2.6)
through a default gateway (198.18.0.1, later 198.18.0.3), and the server pushes
redirect-gateway def1, so the client adds a host route to the server via that gateway.

SIGKILL leaves that host route (the TUN's own routes go with the device). The next run then
took the stale route for the way to the server (it is the most specific) and kept it
(EEXIST): once the gateway had changed, its packets went to a gateway that no longer answers
and the tunnel never came up; a route to a server the profile no longer names stayed for good.
OpenVPN 2.6 has the same gap (route.c add_route: an existing route is left, not its own).
Ours now keeps a record of those routes under /run and the next run of the profile removes them
before it looks up any path (appliance/router/route_record.py).
"""
from __future__ import annotations

import os
import signal

import pytest

from appliance.router.route_record import RouteRecord
from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, TUN_SERVER_IP, Lab

GW_A, GW_B = "198.18.0.1", "198.18.0.3"      # both on the server namespace's veth
SERVER_1, SERVER_2 = "198.18.60.1", "198.18.60.2"
NAME = "killed-client"                       # one profile path for every run (the record's key)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        veth = lab.srv.run(f"ip -o -4 addr show to {GW_A}/32").stdout.split()[1]
        lab.srv.run(f"ip addr add {SERVER_1}/32 dev lo && ip addr add {SERVER_2}/32 dev lo"
                    f" && ip addr add {GW_B}/24 dev {veth}"
                    f" && sysctl -qw net.ipv4.conf.{veth}.promote_secondaries=1")   # GW_B outlives GW_A
        lab.cli.run(f"ip route add default via {GW_A}")
        lab.srv_veth = veth
        yield lab


def _host_route(lab, ip: str) -> str:
    return lab.cli.run(f"ip -4 route show {ip}/32").stdout.strip()


def _kill(p) -> None:
    os.killpg(p.p.pid, signal.SIGKILL)
    p.p.wait(5)


def test_a_killed_runs_wan_routes_go_at_the_next_start(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra='multihome\npush "redirect-gateway def1"\n'),
                      "server")
    procs.append(srv)

    def run(remote: str):
        cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", remotes=[(remote, 1194, "udp")],
                                               extra="connect-retry 1\n"), NAME, wait=40)
        procs.append(cli)
        return cli

    first = run(SERVER_1)
    assert GW_A in _host_route(lab, SERVER_1), lab.cli.run("ip route show").stdout
    _kill(first)
    assert GW_A in _host_route(lab, SERVER_1), "SIGKILL took the host route away: nothing to test"

    # The WAN gateway changes: the old one is gone, the default route goes via the new one.
    lab.cli.run(f"ip route replace default via {GW_B}")
    lab.srv.run(f"ip addr del {GW_A}/24 dev {lab.srv_veth}")
    lab.cli.run("ip neigh flush all")      # GW_A's cached MAC would still reach the same box
    try:
        second = run(SERVER_1)             # did not come up before: its packets went to GW_A
        assert GW_B in _host_route(lab, SERVER_1), _host_route(lab, SERVER_1)
        assert f"removed route {SERVER_1}/32 via {GW_A}" in second.log(), second.log()[-3000:]
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), "no traffic through the tunnel"
        _kill(second)

        # The profile now names another server: the old server's host route must not stay.
        third = run(SERVER_2)
        assert _host_route(lab, SERVER_1) == "", "the old server's host route stayed"
        assert GW_B in _host_route(lab, SERVER_2)
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), "no traffic through the tunnel"
        assert third.stop(10) == 0
        assert _host_route(lab, SERVER_2) == "", "a clean stop left the host route"
        assert not os.path.exists(RouteRecord(str(lab.tmp / f"{NAME}.ovpn")).path), "a clean stop left the record"
    finally:
        lab.srv.run(f"ip addr add {GW_A}/24 dev {lab.srv_veth}", check=False)
