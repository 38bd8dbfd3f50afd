"""`vlan-tagging` on our layer-2 server against Debian's OpenVPN 2.6 tap clients, in namespaces:
client2's ccd says `vlan-pvid 5`, client1 has none (the server's VLAN 1).

The lab's kernel has no 802.1Q module, so the server's side of VLAN 5 is watched and played on the
TAP device itself: tcpdump shows the tags, a raw socket sends a tagged frame. What a user checks
(each the same with Debian's own 2.6 server on this config, run by hand): client1 reaches the
server's untagged address; client2's frames leave the TAP tagged with VLAN 5; client2 cannot reach
client1 though client-to-client is on (another VLAN); a VLAN-5 ARP request from the TAP reaches
client2, whose reply goes back tagged 5; the status file lists each MAC with its VLAN (MAC@VID).
"""
from __future__ import annotations

import json
import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until

SERVER_TAP, CLIENT2_IP, VLAN5_HOST = "198.19.0.1", "198.19.5.2", "198.19.5.1"
INJECTOR_MAC = "02:00:5e:00:aa:05"

# One 802.1Q-tagged ARP request out of the TAP device (to the VPN process): who-has TARGET tell
# SENDER on VLAN, from INJECTOR_MAC.
INJECT = """import socket, struct, sys
dev, vid, sender, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
mac = bytes.fromhex(sys.argv[5].replace(":", ""))
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(sender), bytes(6), socket.inet_aton(target))
f = b"\\xff" * 6 + mac + struct.pack("!HHH", 0x8100, vid, 0x0806) + arp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
s.send(f.ljust(64, b"\\0"))
"""


def _mac(ns) -> str:
    return json.loads(ns.run("ip -j link show dev tap0").stdout)[0]["address"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("tapvlan")) as lab:
        yield lab


def test_vlan_tagging_keeps_vlans_apart_and_tags_them_on_the_tap(lab, procs):
    cli2 = lab.add_client_ns(1)
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client2").write_text(f"vlan-pvid 5\nifconfig-push {CLIENT2_IP} 255.255.255.0\n")
    status = lab.tmp / "vlan-status.log"
    conf = (server_config(lab.pki, extra=f"client-config-dir {ccd}\nvlan-tagging\nclient-to-client\n"
                                         f"status {status} 1\n")
            .replace("dev tun", "dev tap0").replace("topology subnet\n", ""))
    srv = lab.ours(lab.srv, conf, "vlansrv", pattern=r"listening on UDP")
    procs.append(srv)
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-e", "-i", "tap0", "arp or vlan"], "vlandump")
    procs.append(dump)
    assert dump.wait_for("listening on", 20), dump.log()
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1").replace("dev tun", "dev tap"), "vlancli1")
    procs.append(c1)
    c2 = lab.openvpn(cli2, client_profile(lab.pki, client="client2", remotes=[("198.18.2.1", 1194, "udp")])
                     .replace("dev tun", "dev tap"), "vlancli2")
    procs.append(c2)
    mac1, mac2 = _mac(lab.cli), _mac(cli2)
    assert lab.ping(lab.cli, SERVER_TAP, 2) == 2, "client1 (the server's VLAN) cannot reach the TAP's address"
    # client2 on client1's subnet too: client-to-client would carry its ARP to client1 -- not
    # across VLANs.
    cli2.run("ip addr add 198.19.0.60/24 dev tap0")
    assert lab.ping(cli2, "198.19.0.2", 2) == 0, "client2 (VLAN 5) reached client1 (VLAN 1)"
    # A VLAN-5 host on the TAP side asks for client2's address: the request reaches client2
    # untagged, its reply comes back tagged 5.
    inject = lab.write("inject.py", INJECT)
    lab.srv.run(f"python3 {inject} tap0 5 {VLAN5_HOST} {CLIENT2_IP} {INJECTOR_MAC}")
    assert until(lambda: INJECTOR_MAC in cli2.run("ip neigh show dev tap0").stdout, 5), \
        cli2.run("ip neigh show dev tap0").stdout
    assert until(lambda: re.search(rf"{mac2} > {INJECTOR_MAC}, ethertype 802\.1Q \(0x8100\), length \d+: vlan 5, "
                                   rf".*Reply {re.escape(CLIENT2_IP)} is-at {mac2}", dump.log()), 5), dump.log()[-2000:]
    # Every frame of client2's on the TAP was tagged 5; client1's were not tagged at all.
    lines = dump.log().splitlines()
    from2 = [ln for ln in lines if re.search(rf"\S+ {mac2} > ", ln)]
    from1 = [ln for ln in lines if re.search(rf"\S+ {mac1} > ", ln)]
    assert from2 and all("vlan 5," in ln for ln in from2), from2
    assert from1 and not any("802.1Q" in ln for ln in from1), from1
    assert until(lambda: status.exists() and f"{mac2}@5,client2," in status.read_text()
                 and f"{mac1}@1,client1," in status.read_text(), 15), status.read_text() if status.exists() else ""
