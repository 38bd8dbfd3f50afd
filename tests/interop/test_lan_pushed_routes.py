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


FAR = "198.18.200.7"          # "somewhere on the Internet", beyond the WAN gateway


def test_pushed_net_gateway_routes_send_no_lan_traffic_out_of_the_wan(lab):
    # The server tries to send the LAN's traffic around the tunnel: routes via the pre-tunnel
    # gateway (OpenVPN's net_gateway) over everything and over one far network, beside
    # redirect-gateway block-local. The kill switch drops LAN → WAN by interface whatever the
    # routes say: nothing of the LAN's reaches the WAN, and the far address sees nothing at all.
    push = "".join(f'push "{o}"\n' for o in ("redirect-gateway def1 block-local",
                                              "route 0.0.0.0 128.0.0.0 net_gateway",
                                              "route 128.0.0.0 128.0.0.0 net_gateway",
                                              f"route {FAR} 255.255.255.255 net_gateway"))
    srv = lab.openvpn_server(server_config(lab.pki, ipv6=False, push_dns=False, extra=push))
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)))
        try:
            routes = lab.app.run("ip route show").stdout
            assert f"{FAR} via" in routes, routes          # the server's routes did go in
            cap = lab.capture("netgw")
            lab.lan.run(f"ping -c 3 -i 0.2 -W 1 -p 6c65616b {FAR}", check=False)
            lab.lan.run(f"timeout 3 bash -c 'echo leak > /dev/tcp/{FAR}/80'", check=False)
            pcap = lab.stop_capture(cap)
            from scapy.all import IP, rdpcap
            assert [p.summary() for p in rdpcap(str(pcap)) if IP in p and FAR in (p[IP].src, p[IP].dst)] == []
            assert lab.wan_leaks(pcap) == []
            assert "LAN never leaves the WAN in clear" in lab.app.run("nft list chain inet vpnappliance forward").stdout
        finally:
            app.stop(10)
    finally:
        srv.stop(5)
