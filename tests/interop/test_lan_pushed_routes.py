"""What a hostile VPN server pushes cannot take the appliance's own LAN (lab/router_lab.py).

A pushed route inside the LAN's network (here its lower half, a /25, more specific than the LAN's
connected /24), or a tunnel address in it, sent the appliance's traffic for those LAN hosts into
the tunnel: the answers from behind the VPN to a LAN host went back into the TUN and were lost,
and the appliance's own answers to it (an echo reply to a ping of the LAN address) went to the
server. OpenVPN's client knows no LAN; the appliance does, and installs no pushed route there.
"""
from __future__ import annotations

import pytest

from lab.router_lab import BEHIND, LAN_APP, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

LAN_HOST = "198.18.50.10"


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        yield lab


def _ping(lab, addr: str) -> bool:
    return lab.lan.run(f"ping -c 2 -i 0.3 -W 3 {addr}", check=False).returncode == 0


def test_a_pushed_route_inside_the_lan_is_not_installed(lab):
    srv = lab.openvpn_server(server_config(lab.pki, ipv6=False, push_dns=False,
                                           extra='push "route 198.18.50.0 255.255.255.128"\n'))
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)))
        try:
            assert _ping(lab, LAN_APP)              # the appliance answers its LAN host on the LAN
            assert _ping(lab, BEHIND)               # and the host behind the VPN's answers get back
            routes = lab.app.run("ip route show").stdout
            assert "198.18.50.0/25" not in routes, routes
            assert "inside the LAN's network 198.18.50.0/24" in app.log(), app.log()[-3000:]
        finally:
            app.stop(10)
    finally:
        srv.stop(5)


def test_a_pushed_tunnel_address_inside_the_lan_is_refused(lab):
    conf = server_config(lab.pki, ipv6=False, push_dns=False).replace(
        "server 198.19.0.0 255.255.255.0", "server 198.18.50.128 255.255.255.128")
    srv = lab.openvpn_server(conf)
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)),
                            pattern="pushed tunnel address inside the LAN's network")
        try:
            assert _ping(lab, LAN_APP)
            assert "198.18.50.128/25" not in lab.app.run("ip route show").stdout
        finally:
            app.stop(10)
    finally:
        srv.stop(5)
