"""Multicast through a `dev tun` server with `client-to-client`, Debian's OpenVPN 2.6 clients, the
same config on Debian's server and on ours (the routing-daemon case: OSPF, RIP, mDNS relays).

What a user checks, both servers in turn:
- a UDP socket in the server's namespace sends to 224.0.0.251 (joined by each client on its tun0)
  and to ff02::1 out of the server's TUN: each client's socket gets it;
- a client sends to 224.0.0.251 out of its tun0 (its own loopback off): the other client and the
  server's namespace get it, the sender does not get it back.
Ours sent the first to no client and the second to the server's TUN only
(tests/gateway/test_multicast_tun.py)."""
from __future__ import annotations

import sys
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

GROUP4, GROUP6, PORT = "224.0.0.251", "ff02::1", 5354

# argv: port, IPv4 group to join, device. Prints "listening", then "got <payload>" per datagram;
# exits after 60 s without one (bounded even if the test is killed before stopping it).
_LISTENER = r"""
import select, socket, struct, sys
port, grp, dev = int(sys.argv[1]), sys.argv[2], sys.argv[3]
idx = socket.if_nametoindex(dev)
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s4.bind(("", port))
s4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              socket.inet_aton(grp) + socket.inet_aton("0.0.0.0") + struct.pack("i", idx))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s6.bind(("::", port))
print("listening", flush=True)
while True:
    r, _, _ = select.select([s4, s6], [], [], 60)
    if not r:
        break
    for s in r:
        d, a = s.recvfrom(4096)
        print("got", d.decode(errors="replace"), a[0], flush=True)
"""

# argv: device, group, port, payload: one datagram to the group out of `device`, not looped back.
_SENDER = r"""
import socket, struct, sys
dev, grp, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
idx = socket.if_nametoindex(dev)
if ":" in grp:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    s.sendto(msg, (grp, port, 0, idx))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("4s4si", bytes(4), bytes(4), idx))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    s.sendto(msg, (grp, port))
"""

EXTRA = "client-to-client\nserver-ipv6 fd00:198:19::/64\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("mcast")) as lab:
        lab.c2 = lab.add_client_ns(2)                  # 198.18.3.2 -> the server at 198.18.3.1
        yield lab


def _listen(lab, ns, name: str):
    p = lab.start(ns, [sys.executable, "-c", _LISTENER, str(PORT), GROUP4, "tun0"], name)
    assert p.wait_for("listening", 30), p.log()
    return p


def _send_until(lab, ns, group: str, payload: str, heard, tries: int = 15) -> bool:
    """Send `payload` to `group` out of ns's tun0 until `heard()` (an address may still be in DAD,
    a route still being set: a first datagram can go nowhere); at most `tries` times, 1 s apart."""
    for _ in range(tries):
        ns.run(f"{sys.executable} -c '{_SENDER}' tun0 {group} {PORT} {payload}", check=False)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if heard():
                return True
            time.sleep(0.1)
    return False


def _heard(p, payload: str):
    return lambda: f"got {payload} " in p.log()


def _run(lab, procs, kind: str) -> dict[str, bool]:
    """What each end heard, with `kind`'s server."""
    n = len(lab.procs)
    procs.append(lab.udp_server(kind, server_config(lab.pki, extra=EXTRA), f"mc-srv-{kind}-{n}"))
    procs.append(lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"mc-c1-{kind}-{n}"))
    procs.append(lab.openvpn(lab.c2, client_profile(lab.pki, "udp", client="client2",
                                                    remotes=[("198.18.3.1", 1194, "udp")]), f"mc-c2-{kind}-{n}"))
    srv_l, c1_l, c2_l = (_listen(lab, ns, f"mc-l{i}-{kind}-{n}") for i, ns in enumerate((lab.srv, lab.cli, lab.c2)))
    procs += [srv_l, c1_l, c2_l]
    out: dict[str, bool] = {}
    tag = f"{kind}{n}"
    # From the server's TUN: each client, v4 then v6 (both must hear one send).
    v4 = f"from-tun-v4-{tag}"
    out["TUN v4 -> both clients"] = _send_until(lab, lab.srv, GROUP4, v4,
                                                lambda: _heard(c1_l, v4)() and _heard(c2_l, v4)())
    v6 = f"from-tun-v6-{tag}"
    out["TUN v6 -> both clients"] = _send_until(lab, lab.srv, GROUP6, v6,
                                                lambda: _heard(c1_l, v6)() and _heard(c2_l, v6)())
    # client-to-client: client1's multicast reaches client2 and the server's namespace.
    c2c = f"from-client1-{tag}"
    out["client1 -> client2"] = _send_until(lab, lab.cli, GROUP4, c2c, _heard(c2_l, c2c))
    out["client1 -> server's TUN"] = _heard(srv_l, c2c)() or srv_l.wait_for(f"got {c2c} ", 5)
    time.sleep(1.0)                               # (a copy back to the sender would be here by now)
    out["client1 -> client1 (must be False)"] = _heard(c1_l, c2c)()
    for p in reversed(procs):
        p.stop_promptly(8)
    procs.clear()
    return out


def test_multicast_reaches_debians_clients_through_ours_as_through_debians(lab, procs):
    theirs = _run(lab, procs, "openvpn")
    ours = _run(lab, procs, "ours")
    expected = {"TUN v4 -> both clients": True, "TUN v6 -> both clients": True, "client1 -> client2": True,
                "client1 -> server's TUN": True, "client1 -> client1 (must be False)": False}
    assert theirs == expected, f"Debian's server: {theirs}"
    assert ours == theirs, f"ours: {ours}\nDebian's: {theirs}"
