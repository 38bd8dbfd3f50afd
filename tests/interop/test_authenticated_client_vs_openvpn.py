"""An authenticated client against another client of our server, both Debian's OpenVPN 2.6 in
namespaces (helper atk48; the cases in memory: tests/gateway/test_authenticated_client_attacks.py).

client1's ccd gives it `iroute 0.0.0.0 0.0.0.0` (a site that is the others' way out), with
client-to-client on. client2, the victim, pings the server's tunnel address: its packets used to
be looked up as any client-to-client destination, found in client1's iroute and sent to client1,
so the victim's DNS and gateway pings went to the other client (Debian's 2.6.14 server, on the
same config, answers them itself). And client1 writes packets with sources no host sends from
(multicast, broadcast, loopback) into its own tunnel, straight into its TUN device with a packet
socket: inside its iroute, they reached client2 -- through our server and through Debian's (run
once on this file's steps, not kept: 2.6 checks a source against its routes alone). Now the
victim's pings are the server's, and only client1's own packets reach client2.
"""
from __future__ import annotations

import re
import shlex
import sys

import pytest

from lab.configs import client_profile, server_config
from lab.gateway_world import ipv4_udp
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

SERVER_TUN = "198.19.0.1"
NON_HOST = ["224.0.0.1", "239.255.255.250", "127.0.0.1", "255.255.255.255"]

# Writes each hex argument as one IP packet into tun0 (a packet socket: no routing, no checks).
INJECT = ("import socket, sys\n"
          "s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))\n"
          "for h in sys.argv[1:]:\n"
          "    s.sendto(bytes.fromhex(h), ('tun0', 0x0800))\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("authclientlab")) as lab:
        yield lab


def _tun_addr(ns) -> str:
    m = re.search(r"inet (198\.19\.0\.\d+)/", ns.run("ip -o -4 addr show dev tun0").stdout)
    assert m, ns.run("ip -o addr", check=False).stdout
    return m.group(1)


def test_a_client_with_a_wide_iroute_gets_neither_the_servers_address_nor_non_host_sources_through(lab, procs):
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("iroute 0.0.0.0 0.0.0.0\n")
    procs.append(lab.udp_server("ours", server_config(lab.pki, extra=f"client-config-dir {ccd}\nclient-to-client\n"),
                                "acsrv"))
    attacker, victim = lab.cli, lab.add_client_ns(4)
    procs.append(lab.openvpn(attacker, client_profile(lab.pki, "udp", client="client1"), "accli1"))
    procs.append(lab.openvpn(victim, client_profile(lab.pki, "udp", client="client2",
                                                    remotes=[("198.18.5.1", 1194, "udp")]), "accli2"))
    a_addr, v_addr = _tun_addr(attacker), _tun_addr(victim)
    # The victim's pings of the server's tunnel address are answered by the server: before,
    # they went to the attacker (whose kernel, not forwarding, dropped them).
    assert lab.wait_ping(victim, SERVER_TUN, within=20), "the victim cannot reach the server's tunnel address"
    assert lab.ping(victim, SERVER_TUN, count=5) == 5
    cap = lab.start(victim, ["tcpdump", "-l", "-n", "-i", "tun0", "udp"], "accap")
    procs.append(cap)
    assert cap.wait_for("listening on tun0", 30), cap.log()
    forged = [ipv4_udp(src, v_addr, b"non-host-" + src.encode(), dport=7001) for src in NON_HOST]
    marker = ipv4_udp(a_addr, v_addr, b"own-address", dport=7002)
    # Marker after the forged ones (one datagram each, in order), sent again until it is seen.
    seen = False
    for _ in range(10):
        attacker.run(f"{sys.executable} -c {shlex.quote(INJECT)} " + " ".join(p.hex() for p in forged + [marker]))
        if cap.wait_for(rf"{re.escape(a_addr)}\.5000 > {re.escape(v_addr)}\.7002", 2):
            seen = True
            break
    assert seen, "the attacker's own packets do not reach the victim (client-to-client):\n" + cap.log()
    leaked = [ln for ln in cap.log().splitlines() if ".7001:" in ln]
    assert leaked == [], "packets from non-host sources reached the victim:\n" + "\n".join(leaked)
    assert lab.ping(victim, SERVER_TUN, count=3) == 3, "the victim lost its tunnel"
    assert all(p.alive() for p in procs[:3]), "a peer died"


_VICTIMS: dict = {}


@pytest.mark.parametrize("kind", ["ours", "openvpn"])
def test_a_client_pushed_the_servers_own_address_gets_neither_its_packets_nor_sends_as_it(lab, procs, kind):
    """review48a: client1's ccd pushes it the server's own tunnel address (`ifconfig-push
    198.19.0.1 255.255.255.0`, an operator's slip). Ours made client1 that address's holder: the
    victim's pings of the server went to client1 (whose kernel, owning the address, answered as
    the server), and client1's packets from it passed. Debian's 2.6.14 server (`openvpn`) admits
    client1, answers the pings itself, and lets nothing client1 sends from the address reach the
    victim -- its iroute'd network's packets still do. Ours (reneg49) refuses client1's connect
    with the reason in its log (AUTH_FAILED at the client), as it refuses `ifconfig-ipv6-push` of
    its IPv6 address; the victim reaches the server. (The data path's own checks for an address
    pushed so stand: tests/gateway/test_authenticated_client_attacks.py.)"""
    ccd = lab.tmp / f"ccd-pushed-{kind}"
    ccd.mkdir()
    (ccd / "client1").write_text(f"ifconfig-push {SERVER_TUN} 255.255.255.0\niroute 198.51.100.0 255.255.255.0\n")
    procs.append(lab.udp_server(kind, server_config(lab.pki, extra=f"client-config-dir {ccd}\nclient-to-client\n"),
                                f"pushsrv-{kind}"))
    attacker = lab.cli
    victim = _VICTIMS.get("ns") or _VICTIMS.setdefault("ns", lab.add_client_ns(5))
    if kind == "ours":
        # reneg49: ours refuses client1's connect, saying why, as it refuses an
        # ifconfig-ipv6-push of its IPv6 address; client2 is served as ever.
        cli1 = lab.openvpn(attacker, client_profile(lab.pki, "udp", client="client1"), "pushcli1-ours", wait=0)
        procs.append(cli1)
        procs.append(lab.openvpn(victim, client_profile(lab.pki, "udp", client="client2",
                                                        remotes=[("198.18.6.1", 1194, "udp")]), "pushcli2-ours"))
        assert procs[0].wait_for(r"ifconfig-push 198\.19\.0\.1 for 'client1' is the server's own address", 30), \
            procs[0].log()[-3000:]
        assert cli1.wait_for("AUTH_FAILED", 30), cli1.log()[-3000:]
        assert "Initialization Sequence Completed" not in cli1.log()
        assert lab.wait_ping(victim, SERVER_TUN, within=20), "the victim cannot reach the server's tunnel address"
        return
    procs.append(lab.openvpn(attacker, client_profile(lab.pki, "udp", client="client1"), f"pushcli1-{kind}"))
    procs.append(lab.openvpn(victim, client_profile(lab.pki, "udp", client="client2",
                                                    remotes=[("198.18.6.1", 1194, "udp")]), f"pushcli2-{kind}"))
    assert _tun_addr(attacker) == SERVER_TUN
    v_addr = _tun_addr(victim)
    acap = lab.start(attacker, ["tcpdump", "-l", "-n", "-i", "tun0", "icmp or udp"], f"pushacap-{kind}")
    vcap = lab.start(victim, ["tcpdump", "-l", "-n", "-i", "tun0", "udp"], f"pushvcap-{kind}")
    procs += [acap, vcap]
    assert acap.wait_for("listening on tun0", 30) and vcap.wait_for("listening on tun0", 30)
    assert lab.wait_ping(victim, SERVER_TUN, within=20), "the victim cannot reach the server's tunnel address"
    assert lab.ping(victim, SERVER_TUN, count=3) == 3
    forged = ipv4_udp(SERVER_TUN, v_addr, b"as-the-server", dport=7001)
    marker = ipv4_udp("198.51.100.7", v_addr, b"its-own-network", dport=7002)
    seen = False
    for _ in range(10):
        attacker.run(f"{sys.executable} -c {shlex.quote(INJECT)} {forged.hex()} {marker.hex()}")
        if vcap.wait_for(r"198\.51\.100\.7\.5000 > " + re.escape(v_addr) + r"\.7002", 2):
            seen = True
            break
    assert seen, "client1's iroute'd network does not reach the victim (client-to-client):\n" + vcap.log()
    assert [ln for ln in vcap.log().splitlines() if ".7001:" in ln] == [], "client1 sent as the server"
    pings = [ln for ln in acap.log().splitlines() if f"{v_addr} > {SERVER_TUN}" in ln]
    assert pings == [], "the victim's pings of the server went to client1:\n" + "\n".join(pings)
    assert all(p.alive() for p in procs[:3]), "a peer died"
