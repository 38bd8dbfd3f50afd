"""A hostile server cannot make the appliance claim an address on its WAN's segment
(lab/router_lab.py, Debian's OpenVPN server giving the address by its ccd file).

Linux answers ARP for each of its addresses on every interface (arp_ignore 0). A pushed tunnel
address inside the WAN's network (`ifconfig-push 198.18.0.77 255.255.255.0`) went onto the TUN,
and the appliance then answered ARP and pings for 198.18.0.77 on the WAN: the server chose which
of the WAN segment's addresses (the home router's, a neighbour's) the appliance took over. Now the
appliance's NICs answer ARP for their own addresses only (router/nics.py, arp_ignore 1); the
address itself is taken, as OpenVPN 2.6 takes it (a VPN range inside a campus WAN's 10.0.0.0/8
works). The server's own address as the tunnel's made every packet to the server local, and as
the TUN keeps its address while the client reconnects, no reconnect reached it again; that, and
the appliance's own WAN address, are refused (gateway/tunnel.py
TunnelNetwork._address_not_claimed) and the client starts over.
"""
from __future__ import annotations

import pytest

from lab.router_lab import LAN_APP, WAN_APP, WAN_SRV, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

NEIGHBOUR = "198.18.0.77"           # an address on the WAN's segment, nobody's yet


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        yield lab


def _server_pushing(lab, address: str):
    ccd = lab.tmp / f"ccd-{address}"
    ccd.mkdir()
    (ccd / "client1").write_text(f"ifconfig-push {address} 255.255.255.0\n")
    return lab.openvpn_server(server_config(lab.pki, ipv6=False, push_dns=False, extra=f"client-config-dir {ccd}\n"))


def test_a_pushed_tunnel_address_on_the_wan_segment_is_not_claimed_there(lab):
    srv = _server_pushing(lab, NEIGHBOUR)
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)))
        try:
            assert f"inet {NEIGHBOUR}/" in lab.app.run("ip -4 addr show").stdout   # taken, as OpenVPN
            lab.wan.run(f"ip neigh flush to {NEIGHBOUR}", check=False)
            # Nobody answers for the neighbour's address on the WAN (ARP included: no reply).
            assert lab.wan.run(f"ping -c 2 -i 0.3 -W 2 {NEIGHBOUR}", check=False).returncode != 0
            neigh = lab.wan.run(f"ip neigh show to {NEIGHBOUR}", check=False).stdout
            assert "lladdr" not in neigh, neigh
            # The appliance still answers for its own WAN address, and the LAN side is intact.
            assert lab.wan.run(f"ping -c 1 -W 2 {WAN_APP}", check=False).returncode == 0
            assert lab.app.run(f"ping -c 1 -W 2 {LAN_APP}", check=False).returncode == 0
            assert app.alive(), app.log()[-3000:]
        finally:
            app.stop(10)
    finally:
        srv.stop(5)


@pytest.mark.parametrize("address", [WAN_SRV, WAN_APP])      # the server's own; the appliance's WAN address
def test_a_pushed_tunnel_address_that_cannot_be_meant_is_refused(lab, address):
    srv = _server_pushing(lab, address)
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), pattern=f"pushed tunnel address {address}")
        try:
            out = lab.app.run("ip -4 -o addr show").stdout
            assert sum(f"inet {address}/" in line for line in out.splitlines()) == (address == WAN_APP), out
            assert lab.wan.run(f"ping -c 1 -W 2 {WAN_APP}", check=False).returncode == 0
            assert lab.app.run(f"ping -c 1 -W 2 {LAN_APP}", check=False).returncode == 0
            assert app.alive(), app.log()[-3000:]
            assert "tunnel up" not in app.log(), app.log()[-3000:]
        finally:
            app.stop(10)
    finally:
        srv.stop(5)
