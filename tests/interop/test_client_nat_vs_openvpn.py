"""`client-nat` against Debian's OpenVPN 2.6 server, our client beside Debian's client with the
same profile: the server pushes `client-nat snat 198.18.50.0/24 -> 198.19.50.0` (the client's
"LAN" 198.18.50.1 shows as 198.19.50.1 on the far side, which routes it back by iroute), and the
profile's own `client-nat dnat 198.18.60.0/24 -> 198.18.101.0` reaches a host behind the server
(198.18.101.1) as 198.18.60.1.

What is checked is what the far side sees: an echo service behind the server answers each TCP
connection and UDP datagram with the source address it saw, and the reply comes back through the
tunnel to the untranslated address; ping (ICMP) works both ways too. Each client must give the
same answers as Debian's."""
from __future__ import annotations

import sys

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab

LAN, ALIAS = "198.18.50.1", "198.19.50.1"       # the client's LAN host, and how the far side sees it
FAR, FAR_ALIAS = "198.18.101.1", "198.18.60.1"   # another host behind the server, and the client's name for it
PORT = 7007

_ECHO = """
import select, socket, sys
port, tcps, udps = int(sys.argv[1]), [], []
for addr in sys.argv[2:]:
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((addr, port)); t.listen(8)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, port))
    tcps.append(t); udps.append(u)
print("listening", flush=True)
for _ in range(200):
    r, _w, _x = select.select(tcps + udps, [], [], 60)
    if not r:
        break
    for s in r:
        if s in udps:
            d, a = s.recvfrom(2048); s.sendto(b"seen " + a[0].encode(), a)
        else:
            c, a = s.accept(); c.settimeout(10); c.recv(100)
            c.sendall(b"seen " + a[0].encode() + b" " + b"x" * 3000); c.close()
"""

_ASK = """
import socket, sys
src, dst, port, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.bind((src, 0))
    for _ in range(5):
        s.sendto(b"hi", (dst, port))
        try:
            print(s.recv(2048).decode()); break
        except socket.timeout:
            pass
else:
    s = socket.socket(); s.settimeout(10); s.bind((src, 0)); s.connect((dst, port)); s.sendall(b"hi")
    b = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        b += d
    print(b[:20].decode().strip("x").strip(), len(b))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("labcnat")) as lab:
        lab.cli.run(f"ip addr add {LAN}/32 dev lo")
        lab.srv.run(f"ip addr add {FAR}/32 dev lo")
        ccd = lab.tmp / "ccd"
        ccd.mkdir()
        (ccd / "client1").write_text("iroute 198.19.50.0 255.255.255.0\n")
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=(
            f"client-config-dir {ccd}\nroute 198.19.50.0 255.255.255.0\n"
            'push "client-nat snat 198.18.50.0 255.255.255.0 198.19.50.0"\n')), "srvcnat")
        echo = lab.start(lab.srv, [sys.executable, "-c", _ECHO, str(PORT), BEHIND_IP, FAR], "echo")
        assert echo.wait_for("listening", 30), echo.log()
        yield lab
        echo.stop(3)
        srv.stop(5)


PROFILE_EXTRA = "client-nat dnat 198.18.60.0 255.255.255.0 198.18.101.0\nroute 198.18.60.0 255.255.255.0\n"


def _observe(lab) -> dict[str, str]:
    """What the far side saw and whether the replies came back, for one connected client."""
    def ask(dst: str, kind: str, src: str = LAN) -> str:
        r = lab.cli.run(f"{sys.executable} -c '{_ASK}' {src} {dst} {PORT} {kind}", check=False, timeout=30)
        return r.stdout.strip() or r.stderr.strip()[-200:]
    return {
        "udp": ask(BEHIND_IP, "udp"),
        "tcp": ask(BEHIND_IP, "tcp"),
        "udp dnat": ask(FAR_ALIAS, "udp"),
        "tcp dnat": ask(FAR_ALIAS, "tcp"),
        "ping": str(lab.ping(lab.cli, f"-I {LAN} {BEHIND_IP}", 2)),
        "ping dnat": str(lab.ping(lab.cli, f"-I {LAN} {FAR_ALIAS}", 2)),
        # Not in client-nat's network (the tunnel address as source): not rewritten.
        "plain udp": str(ask(BEHIND_IP, "udp", "0.0.0.0").startswith("seen 198.19.0.")),
    }


def test_client_nat_as_debians_client(lab):
    expect = {"udp": f"seen {ALIAS}", "tcp": f"seen {ALIAS} 3017", "udp dnat": f"seen {ALIAS}",
              "tcp dnat": f"seen {ALIAS} 3017", "ping": "2", "ping dnat": "2",
              "plain udp": "True"}
    theirs = lab.openvpn(lab.cli, client_profile(lab.pki, extra=PROFILE_EXTRA), "ovpncnat", wait=30)
    try:
        seen_theirs = _observe(lab)
    finally:
        theirs.stop(5)
    ours = lab.ours(lab.cli, client_profile(lab.pki, extra=PROFILE_EXTRA), "ourscnat", wait=30)
    try:
        seen_ours = _observe(lab)
        log = ours.log()
    finally:
        ours.stop(8)
    want = {k: seen_theirs[k] for k in expect}
    assert want == expect, seen_theirs
    assert seen_ours == seen_theirs, (seen_ours, seen_theirs)
    assert "client-nat: dnat 198.18.60.0 255.255.255.0 198.18.101.0; snat 198.18.50.0" in log, log[-2000:]
