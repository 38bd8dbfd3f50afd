"""What arrives through the tunnel cannot make the appliance itself talk on the WAN either
(lab/router_lab.py; the LAN's side is tests/interop/test_lan_spoofed_source.py).

The kill switch lets the WAN carry replies on established connections. A packet that comes in
on the TUN -- sent by the VPN server, or by any host whose packets it routes to us -- with a
source the tunnel does not carry (the server pushes routes to a few networks only: a split
tunnel) makes the appliance's kernel answer that source by its default route, the WAN: an echo
reply carrying the sender's payload, a TCP reset, an ICMP port unreachable, each "established"
or "related" to the packet that came in. So whoever can put packets into our tunnel could make
the appliance send packets in clear out of its WAN, to any address. Checked with scapy from the
server's side (into Debian's OpenVPN server's TUN, towards our tunnel address), IPv4 and IPv6,
against a capture of the WAN.
"""
from __future__ import annotations

import ipaddress
import re

import pytest

from lab.attacks import forged_probes_from
from lab.router_lab import RouterLab, client_profile

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

FORGED, FORGED6 = "198.18.200.7", "2001:db8:200::7"     # "somewhere on the Internet", not in the tunnel
MARK = b"sent-out-of-the-wan-by-the-tunnel"


def wan_packets_to_forged(pcap) -> list[str]:
    from scapy.all import IP, IPv6, rdpcap
    out = []
    for i, pkt in enumerate(rdpcap(str(pcap))):
        for layer in (IP, IPv6):
            if layer in pkt and pkt[layer].dst in (FORGED, FORGED6):
                out.append(f"#{i} {pkt.summary()}")
    return out


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        yield lab


def _tun_addresses(lab) -> tuple[str, str]:
    out = lab.app.run("ip -o addr show dev tun0").stdout
    v4 = re.search(r"inet (198\.19\.0\.\d+)/", out)
    v6 = re.search(r"inet6 (2001:db8:19::[0-9a-f:]+)/", out)
    assert v4 and v6, out
    return v4.group(1), v6.group(1)


def test_forged_sources_from_the_tunnel_get_nothing_out_of_the_wan(lab):
    lab.openvpn_server()
    app = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), wait=60)
    tun4, tun6 = _tun_addresses(lab)
    # the server's side reaches our tunnel address (the check below is not vacuous)
    assert lab.wan.run(f"ping -c 1 -W 3 {tun4}", check=False).returncode == 0
    for a in (FORGED, FORGED6):          # the WAN routes the forged addresses (towards the server)
        assert ipaddress.ip_address(a)
    cap = lab.capture("tunnel-forged")
    forged_probes_from(lab.wan, FORGED, FORGED6, tun4, tun6, MARK, 0x4343)
    pcap = lab.stop_capture(cap)
    assert wan_packets_to_forged(pcap) == []
    assert app.alive(), app.log()[-3000:]
