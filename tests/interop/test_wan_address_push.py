"""A hostile server cannot make the appliance claim an address on its WAN's segment
(lab/router_lab.py, Debian's OpenVPN server giving the address by its ccd file).

Linux answers ARP for each of its addresses on every interface (arp_ignore 0). A pushed tunnel
address inside the WAN's network (`ifconfig-push 198.18.0.77 255.255.255.0`) went onto the TUN,
and the appliance then answered ARP and pings for 198.18.0.77 on the WAN: the server chose which
of the WAN segment's addresses (the home router's, a neighbour's) the appliance took over. The
server's own address as the tunnel's made every packet to the server local, and as the TUN keeps
its address while the client reconnects, no reconnect reached it again. Such a push is now
refused (gateway/tunnel.py TunnelNetwork._address_not_claimed) and the client starts over.
"""
from __future__ import annotations

import pytest

from lab.router_lab import LAN_APP, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

NEIGHBOUR = "198.18.0.77"           # an address on the WAN's segment, nobody's yet


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        yield lab


@pytest.mark.parametrize("address", [NEIGHBOUR, "198.18.0.1"])      # a neighbour's; the server's own
def test_a_pushed_tunnel_address_on_the_wan_segment_is_refused(lab, address):
    ccd = lab.tmp / f"ccd-{address}"
    ccd.mkdir()
    (ccd / "client1").write_text(f"ifconfig-push {address} 255.255.255.0\n")
    srv = lab.openvpn_server(server_config(lab.pki, ipv6=False, push_dns=False, extra=f"client-config-dir {ccd}\n"))
    try:
        app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), pattern=f"pushed tunnel address {address}")
        try:
            assert f"inet {address}/" not in lab.app.run("ip -4 addr show").stdout
            # Nobody answers for the neighbour's address on the WAN (ARP included: no reply, no entry).
            assert lab.wan.run(f"ping -c 2 -i 0.3 -W 2 {NEIGHBOUR}", check=False).returncode != 0
            assert lab.app.run(f"ping -c 1 -W 2 {LAN_APP}", check=False).returncode == 0
            assert app.alive(), app.log()[-3000:]
            assert "tunnel up" not in app.log(), app.log()[-3000:]
        finally:
            app.stop(10)
    finally:
        srv.stop(5)
