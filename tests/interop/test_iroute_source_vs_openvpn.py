"""A client may send only from addresses its server routes to it, with Debian's OpenVPN 2.6
clients in namespaces, against OpenVPN 2.6's server and ours (the same config and ccd files).

client1 routes 198.19.128.0/17 (`iroute`), client2 198.19.200.0/24 inside it. A packet client1
sends with a source in client2's network is a spoof: OpenVPN's server drops it ("bad source
address from client", its route lookup of the source must give the sender); ours let it through,
since it checked the source against the sender's own iroutes only. Seen from client2: the
server's echo replies to the spoofed source are routed to client2, so they arrive there exactly
when the server took the spoofed request.
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

SERVER_TUN = "198.19.0.1"
SPOOFED = "198.19.200.5"        # in client2's iroute (and in client1's wider one)
OWN = "198.19.130.5"            # in client1's iroute only


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("iroutelab")) as lab:
        yield lab


def _config(lab, tag: str) -> str:
    ccd = lab.tmp / f"ccd-{tag}"
    ccd.mkdir()
    (ccd / "client1").write_text("iroute 198.19.128.0 255.255.128.0\n")
    (ccd / "client2").write_text("iroute 198.19.200.0 255.255.255.0\n")
    return server_config(lab.pki, extra=f"client-config-dir {ccd}\nroute 198.19.128.0 255.255.128.0\n"
                                         "route 198.19.200.0 255.255.255.0\n")


def _ping_from(ns, src: str, size: int, count: int = 3) -> int:
    r = ns.run(f"ping -n -q -c {count} -i 0.2 -W 2 -s {size} -I {src} {SERVER_TUN}", check=False, timeout=30)
    m = re.search(r"(\d+) received", r.stdout)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_client_cannot_send_from_another_clients_narrower_iroute(lab, procs, server):
    cfg = _config(lab, server)
    procs.append(lab.udp_server(server, cfg, f"irsrv-{len(lab.procs)}"))
    c1 = lab.cli
    c2 = getattr(lab, "c2", None) or lab.add_client_ns(4)
    lab.c2 = c2
    procs.append(lab.openvpn(c1, client_profile(lab.pki, "udp", client="client1"), f"ircli1-{len(lab.procs)}"))
    procs.append(lab.openvpn(c2, client_profile(lab.pki, "udp", client="client2",
                                                remotes=[("198.18.5.1", 1194, "udp")]), f"ircli2-{len(lab.procs)}"))
    for ns, addrs in ((c1, (OWN, SPOOFED)), (c2, (SPOOFED,))):
        for a in addrs:
            ns.run(f"ip addr replace {a}/32 dev lo")
    # Each client's own network passes (the routes and iroutes work).
    assert _ping_from(c1, OWN, 56) == 3
    assert _ping_from(c2, SPOOFED, 56) == 3
    # What reaches client2's tunnel: client1's spoofed pings (size 111) first, then client2's own
    # (size 222) as the marker that everything before it had its chance.
    cap = lab.start(c2, ["tcpdump", "-l", "-n", "-i", "tun0", "icmp"], f"ircap-{len(lab.procs)}")
    procs.append(cap)
    assert cap.wait_for("listening on tun0", 60), cap.log()
    assert _ping_from(c1, SPOOFED, 111) == 0       # the replies, if any, go to client2
    assert _ping_from(c2, SPOOFED, 222) == 3
    assert cap.wait_for(r"length 230", 10), cap.log()
    replies = [ln for ln in cap.log().splitlines() if "echo reply" in ln and "length 119" in ln]
    assert replies == [], f"{server}'s server took client1's packets from client2's network:\n" + "\n".join(replies)
