"""VLAN hopping through a `vlan-tagging` tap server, against Debian's OpenVPN 2.6 as the client
and, for comparison, as the server on the same config (atk31a).

client1 has no vlan-pvid: it is on the server's VLAN 1, whose frames reach the TAP device untagged
(vlan-accept all). From inside its tap it sends three ARP requests: one plain (the control), one
with a priority tag (VID 0) around an 802.1Q tag of VLAN 5, one with an 802.1ad tag of VLAN 5.
Linux's receive path takes a VID-0 tag off and hands the frame to the inner tag's VLAN device
(tap0.5, a VLAN-aware bridge's port) -- as it does with an 802.1ad tag -- so a frame reaching the
TAP that way is on VLAN 5. Debian's 2.6 server passes both as they are (vlan_is_tagged looks at
one 0x8100 tag); ours drops them as a client's tagged frames. tcpdump on the server's TAP shows
what arrived (the lab's kernel has no 802.1Q module for a real tap0.5).
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until

INJ_MAC = "02:00:5e:00:31:0a"
CONTROL, PRIO_HOP, STAG_HOP = "198.19.0.1", "198.19.5.11", "198.19.5.12"

# Three ARP requests from INJ_MAC into the client's tap (so through its tunnel to the server).
INJECT = """import socket, struct, sys
dev, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
def arp(target):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton("198.19.0.99"), bytes(6),
                       socket.inet_aton(target))
head = b"\\xff" * 6 + mac
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
s.send((head + struct.pack("!HHHHH", 0x8100, 0, 0x8100, 5, 0x0806) + arp(sys.argv[3])).ljust(64, b"\\0"))
s.send((head + struct.pack("!HHH", 0x88A8, 5, 0x0806) + arp(sys.argv[4])).ljust(64, b"\\0"))
s.send((head + struct.pack("!H", 0x0806) + arp(sys.argv[5])).ljust(64, b"\\0"))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("vlanhop")) as lab:
        yield lab


@pytest.mark.parametrize("server", ["ours", "debian"])
def test_a_server_vlan_client_cannot_hop_with_a_second_tag(lab, procs, server):
    conf = (server_config(lab.pki, extra="vlan-tagging\nclient-to-client\n")
            .replace("dev tun", "dev tap0").replace("topology subnet\n", ""))
    name = f"hop{server}"
    srv = (lab.ours(lab.srv, conf, name, pattern=r"listening on UDP") if server == "ours"
           else lab.openvpn(lab.srv, conf, name))
    procs.append(srv)
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-e", "-i", "tap0", f"ether src {INJ_MAC}"], f"{name}dump")
    procs.append(dump)
    assert dump.wait_for("listening on", 20), dump.log()
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1").replace("dev tun", "dev tap"), f"{name}cli")
    procs.append(cli)
    assert lab.ping(lab.cli, CONTROL, 2) == 2, "client1 cannot reach the TAP's address"
    inject = lab.write("hop-inject.py", INJECT)
    for _ in range(3):                    # (a few times: one lost frame must not decide)
        lab.cli.run(f"python3 {inject} tap0 {INJ_MAC} {PRIO_HOP} {STAG_HOP} {CONTROL}")
    assert until(lambda: dump.log().count(f"who-has {CONTROL}") >= 3, 10), dump.log()[-2000:]
    assert until(lambda: srv.alive() and cli.alive(), 1)
    log = dump.log()
    hopped = [t for t in (PRIO_HOP, STAG_HOP) if f"who-has {t}" in log]
    if server == "ours":
        assert hopped == [], log[-2000:]
    else:                                 # 2.6 lets both through, their inner VLAN 5 as sent
        assert hopped == [PRIO_HOP, STAG_HOP], log[-2000:]
        assert "vlan 0," in log and "vlan 5," in log and "0x88a8" in log, log[-2000:]
    for p in (cli, dump, srv):
        p.stop(8)
