"""A TCP SYN with two MSS options through our client and through Debian's OpenVPN 2.6 client, in
namespaces: what Debian's server's tun sees.

Why: a receiver takes the last MSS option it reads (Linux's tcp_parse_options), and 2.6's
mss_fixup_dowork lowers every MSS option above the bound. Ours stopped at the first, so
`[MSS 536][MSS 9000]` crossed the tunnel with 9000 (found by the session-31 fuzz review). The
server's own clamping is off (`mssfix 0`): what it sees is each client's doing.
"""
from __future__ import annotations

import re
import sys

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

SEND_SYN = ("from scapy.all import IP, TCP, send; "
            "send(IP(dst='{dst}')/TCP(sport=40000, dport=9, flags='S', options=[('MSS', 536), ('MSS', 9000)]), "
            "verbose=0)")


def _mss_seen(lab, ns, src: str) -> list[int]:
    """The MSS options of the crafted SYN from `src` as the server's tun0 receives it (tcpdump)."""
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-v", "-i", "tun0", "-c", "1",
                               f"tcp[tcpflags] & tcp-syn != 0 and src host {src}"], f"syn-{src}")
    try:
        assert dump.wait_for("listening on", 20), dump.log()
        for _ in range(3):                       # bounded: a lost datagram is sent again
            ns.run(f"{sys.executable} -c \"{SEND_SYN.format(dst=TUN_SERVER_IP)}\"", timeout=30)
            if dump.wait_for(r"mss \d+", 5):
                break
        return [int(m) for m in re.findall(r"mss (\d+)", dump.log())]
    finally:
        dump.stop(3)


def _tun_addr(ns) -> str:
    out = ns.run("ip -4 -o addr show dev tun0").stdout
    return re.search(r"inet ([\d.]+)/", out).group(1)


def test_every_mss_option_is_clamped_as_debians_client_clamps_it(tmp_path):
    with Lab(clients=["client1", "client2"], tmp=tmp_path) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki, extra="mssfix 0\n"), "srv")
        other = lab.add_client_ns(1)
        lab.openvpn(other, client_profile(lab.pki, client="client2", remotes=[("198.18.2.1", 1194, "udp")]), "theirs")
        lab.ours(lab.cli, client_profile(lab.pki), "ours")
        theirs = _mss_seen(lab, other, _tun_addr(other))
        ours = _mss_seen(lab, lab.cli, _tun_addr(lab.cli))
        assert len(theirs) == 2 and theirs[0] == 536 and theirs[1] < 9000, theirs     # 2.6 clamps the second
        assert ours == theirs
