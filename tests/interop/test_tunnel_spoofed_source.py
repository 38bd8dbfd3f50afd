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
import subprocess
import sys

import pytest

from lab.router_lab import RouterLab, client_profile
from lab.tools import REPO

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

FORGED, FORGED6 = "198.18.200.7", "2001:db8:200::7"     # "somewhere on the Internet", not in the tunnel
MARK = b"sent-out-of-the-wan-by-the-tunnel"


def send_forged(dst4: str, dst6: str) -> None:
    """Run on the server's side: echo requests carrying MARK, a TCP SYN and a UDP datagram to
    closed ports, each to the appliance's tunnel address from a forged source (IPv4 and IPv6)."""
    from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoRequest, IPv6, Raw, send

    pkts = []
    for net, src, dst in ((IP, FORGED, dst4), (IPv6, FORGED6, dst6)):
        echo = ICMP(type=8, id=0x4343, seq=1) if net is IP else ICMPv6EchoRequest(id=0x4343, seq=1)
        pkts += [net(src=src, dst=dst) / echo / Raw(MARK),
                 net(src=src, dst=dst) / TCP(sport=40001, dport=9, flags="S") / Raw(MARK),
                 net(src=src, dst=dst) / UDP(sport=40002, dport=9) / Raw(MARK)]
    send(pkts, count=3, inter=0.05, verbose=False)


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
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from tests.interop.test_tunnel_spoofed_source import send_forged; "
            f"send_forged({tun4!r}, {tun6!r})")
    r = subprocess.run(["ip", "netns", "exec", lab.wan.name, sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    pcap = lab.stop_capture(cap)
    assert wan_packets_to_forged(pcap) == []
    assert app.alive(), app.log()[-3000:]
