"""A hostile LAN host cannot make the appliance itself talk on the WAN (lab/router_lab.py).

The kill switch lets the WAN carry replies on established connections. A LAN host that sends the
appliance's LAN address a packet with a forged source -- an Internet address -- makes the kernel
answer that address: an echo reply carrying the host's payload, a TCP reset, an ICMP port
unreachable. Routed by the default route over the WAN, each of those is "established" or
"related" to the forged packet, so without a source check on the LAN they leave the WAN in clear
while the tunnel is down: a channel out of the LAN around the kill switch (the payload of an echo
comes back verbatim). Checked with scapy from the LAN host, IPv4 and IPv6, the tunnel never up
(no OpenVPN server), against a capture of the WAN.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lab.router_lab import LAN6_APP, LAN_APP, WAN6_APP, WAN6_SRV, RouterLab, client_profile
from lab.tools import REPO

pytestmark = [pytest.mark.root, pytest.mark.netns]

LAN_HOST, LAN6_HOST = "198.18.50.10", "fd18:50::10"
FORGED, FORGED6 = "198.18.200.7", "2001:db8:200::7"     # "somewhere on the Internet", via the WAN
MARK = b"exfiltrated-through-the-kill-switch"


def send_forged() -> None:
    """Run on the LAN host: echo requests carrying MARK, a TCP SYN and a UDP datagram to closed
    ports, each to the appliance's LAN address from a forged Internet source (IPv4 and IPv6)."""
    from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoRequest, IPv6, Raw, send

    pkts = []
    for net, src, dst in ((IP, FORGED, LAN_APP), (IPv6, FORGED6, LAN6_APP)):
        echo = ICMP(type=8, id=0x4242, seq=1) if net is IP else ICMPv6EchoRequest(id=0x4242, seq=1)
        pkts += [net(src=src, dst=dst) / echo / Raw(MARK),
                 net(src=src, dst=dst) / TCP(sport=40001, dport=9, flags="S") / Raw(MARK),
                 net(src=src, dst=dst) / UDP(sport=40002, dport=9) / Raw(MARK)]
    send(pkts, count=3, inter=0.05, verbose=False)


def wan_packets_from_the_appliance(pcap) -> list[str]:
    """Packets on the WAN addressed to a forged source (any reply the appliance made for them)."""
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
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP} && "
                    f"ip -6 addr add {LAN6_HOST}/64 dev {lab.lan_host_if} nodad && "
                    f"ip -6 route add default via {LAN6_APP}")
        yield lab


def test_forged_sources_from_the_lan_get_nothing_out_of_the_wan(lab):
    # No OpenVPN server: the tunnel never comes up; the WAN has IPv4 and IPv6 default routes.
    toml = lab.appliance_toml(client_profile(lab.pki), lan_extra=f'address6 = "{LAN6_APP}/64"\n',
                              wan_extra=f'address6 = "{WAN6_APP}/64"\ngateway6 = "{WAN6_SRV}"\n')
    app = lab.appliance(toml, pattern="kill switch installed")
    # the LAN address answers its own LAN (the check below is not vacuous: replies do get made)
    assert lab.lan.run(f"ping -c 1 -W 3 {LAN_APP}", check=False).returncode == 0
    assert lab.lan.run(f"ping -6 -c 1 -W 3 {LAN6_APP}", check=False).returncode == 0
    cap = lab.capture("forged")
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from tests.interop.test_lan_spoofed_source import send_forged; send_forged()")
    r = subprocess.run(["ip", "netns", "exec", lab.lan.name, sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    pcap = lab.stop_capture(cap)
    assert wan_packets_from_the_appliance(pcap) == []
    assert lab.wan_leaks(pcap) == []
    # dropped where they came in, and counted (IPv4 and IPv6: 9 forged packets each)
    listed = lab.app.run("nft list chain inet vpnappliance prerouting").stdout
    counted = [int(n) for n in re.findall(r"counter packets (\d+)", listed)]
    assert len(counted) == 2 and all(n >= 9 for n in counted), listed
    assert app.alive(), app.log()[-3000:]
    # and on exit the appliance logs what its kill switch dropped
    app.stop(10)
    m = re.search(r"kill switch drops \(packets\):.*source not of the LAN: (\d+)", app.log())
    assert m and int(m.group(1)) >= 18, app.log()[-3000:]
