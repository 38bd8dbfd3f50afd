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

import pytest

from lab.attacks import forged_probes_from
from lab.router_lab import (BEHIND, BEHIND6, LAN6_APP, LAN_APP, WAN6_APP, WAN6_SRV, RouterLab, client_profile,
                            server_config)

pytestmark = [pytest.mark.root, pytest.mark.netns]

LAN_HOST, LAN6_HOST = "198.18.50.10", "fd18:50::10"
FORGED, FORGED6 = "198.18.200.7", "2001:db8:200::7"     # "somewhere on the Internet", via the WAN
MARK = b"exfiltrated-through-the-kill-switch"


def wan_packets_from_the_appliance(pcap, to: tuple[str, ...] = (FORGED, FORGED6)) -> list[str]:
    """Packets on the WAN addressed to a forged source (any reply the appliance made for them)."""
    from scapy.all import IP, IPv6, rdpcap
    out = []
    for i, pkt in enumerate(rdpcap(str(pcap))):
        for layer in (IP, IPv6):
            if layer in pkt and pkt[layer].dst in to:
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
    forged_probes_from(lab.lan, FORGED, FORGED6, LAN_APP, LAN6_APP, MARK, 0x4242)
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


BEHIND_LAN, UNLISTED = "198.18.60.1", "198.18.61.1"    # a network behind a LAN router; one nobody declared


def test_a_network_declared_behind_the_lan_passes_and_an_undeclared_one_is_still_dropped(lab):
    """`[lan] routes`: the LAN host doubles as a router for 198.18.60.0/24 (an address of it on its
    lo). Packets from there reach the appliance and its answers go back through that router (the
    route the key installs); 198.18.61.1, not declared, is still dropped and nothing of it leaves
    the WAN. The route goes again on exit."""
    lab.lan.run(f"ip addr add {BEHIND_LAN}/32 dev lo && ip addr add {UNLISTED}/32 dev lo")
    toml = lab.appliance_toml(client_profile(lab.pki), nat=False,
                              lan_extra=f'routes = ["198.18.60.0/24 via {LAN_HOST}"]\n')
    app = lab.appliance(toml, pattern="kill switch installed")
    assert lab.app.run("ip -4 route show 198.18.60.0/24").stdout.split()[:3] == ["198.18.60.0/24", "via", LAN_HOST]
    cap = lab.capture("behind")
    ok = lab.lan.run(f"ping -c 2 -W 3 -I {BEHIND_LAN} {LAN_APP}", check=False)
    dropped = lab.lan.run(f"ping -c 3 -W 2 -I {UNLISTED} {LAN_APP}", check=False)
    pcap = lab.stop_capture(cap)
    assert ok.returncode == 0, f"the network behind the LAN router gets no answer:\n{ok.stdout}"
    assert dropped.returncode != 0 and " 0 received" in dropped.stdout, dropped.stdout
    assert lab.wan_leaks(pcap) == [] and wan_packets_from_the_appliance(pcap, (UNLISTED, BEHIND_LAN)) == []
    listed = lab.app.run("nft list chain inet vpnappliance prerouting").stdout
    m = re.search(r"ip saddr != \{ ([^}]*) \} counter packets (\d+)", listed)
    assert m and "198.18.60.0/24" in m.group(1) and int(m.group(2)) >= 3, listed
    assert app.alive(), app.log()[-3000:]
    app.stop(10)
    assert lab.app.run("ip -4 route show 198.18.60.0/24").stdout.strip() == "", "the route must go on exit"


def test_a_declared_network_routed_elsewhere_already_stops_the_start(lab):
    """A route to a `[lan] routes` network out of the WAN (there before us) would send the
    answers to sources the kill switch now takes from the LAN out of the WAN: the start fails
    (status 1, the network named) and nothing is left installed."""
    lab.app.run(f"ip link set {lab.wan_if} up && ip route add 198.18.62.0/24 dev {lab.wan_if}")
    try:
        toml = lab.appliance_toml(client_profile(lab.pki), nat=False,
                                  lan_extra=f'routes = ["198.18.62.0/24 via {LAN_HOST}"]\n')
        app = lab.appliance(toml, wait=0)
        assert app.wait_for(r"198\.18\.62\.0/24 is routed elsewhere already", 30), app.log()[-3000:]
        app.p.wait(30)                       # it exits by itself (bounded: 30 s)
        assert app.stop() == 1
        assert "vpnappliance" not in lab.app.run("nft list tables").stdout
    finally:
        lab.app.run(f"ip route del 198.18.62.0/24 dev {lab.wan_if}", check=False)


BEHIND_LAN6 = "fd18:60::1"      # the same LAN router's IPv6 network behind it


def test_networks_declared_behind_the_lan_reach_the_far_side_through_the_tunnel(lab):
    """`[lan] routes` with the tunnel up, IPv4 and IPv6, NAT on (the default): hosts behind a LAN
    router reach the host behind the VPN server (198.18.100.1, 2001:db8:100::1) and its answers
    come back to them; nothing of theirs leaves the WAN in clear."""
    lab.lan.run(f"ip addr replace {BEHIND_LAN}/32 dev lo && ip -6 addr replace {BEHIND_LAN6}/128 dev lo")
    server = lab.openvpn_server(server_config(lab.pki))
    try:
        toml = lab.appliance_toml(client_profile(lab.pki), lan_extra=(
            f'address6 = "{LAN6_APP}/64"\n'
            f'routes = ["198.18.60.0/24 via {LAN_HOST}", "fd18:60::/64 via {LAN6_HOST}"]\n'))
        app = lab.appliance(toml)
        cap = lab.capture("behind-tunnel")
        v4 = lab.lan.run(f"ping -c 3 -i 0.3 -W 3 -I {BEHIND_LAN} {BEHIND}", check=False, timeout=30)
        v6 = lab.lan.run(f"ping -6 -c 3 -i 0.3 -W 3 -I {BEHIND_LAN6} {BEHIND6}", check=False, timeout=30)
        pcap = lab.stop_capture(cap)
        assert v4.returncode == 0, f"IPv4 from behind the LAN router gets no answer through the tunnel:\n{v4.stdout}"
        assert v6.returncode == 0, f"IPv6 from behind the LAN router gets no answer through the tunnel:\n{v6.stdout}"
        assert lab.wan_leaks(pcap) == []
        assert wan_packets_from_the_appliance(pcap, (BEHIND_LAN, BEHIND_LAN6, BEHIND, BEHIND6)) == []
        assert app.alive(), app.log()[-3000:]
        app.stop(10)
    finally:
        server.stop(10)
