"""The MSS clamp with a tun-mtu other than 1500, against Debian's OpenVPN 2.6 (settings.mssfix_in_force).

2.6's default there is `mssfix <tun-mtu> fixed`: a TCP SYN through the tunnel leaves with MSS
tun-mtu - 40, not the figure `1492 mtu` gives. What a user checks: the MSS a SYN carries when it
reaches the server's TUN, from Debian's client and from ours, each with `tun-mtu 1400`, then 1300,
against one Debian server (`mssfix 0`: what it sees is the client's doing). The server pushes its
own tun-mtu 1500 to both: the clamp stays the config's, in 2.6 as here.
"""
from __future__ import annotations

import json
import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


def _syn_mss(lab, client_ns, name: str) -> str:
    """The MSS option of a TCP SYN from `client_ns`'s tunnel address as the server's tun0 receives it."""
    ip = lab._tun_ip(client_ns)
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-v", "-i", "tun0", "-c", "1",
                               f"tcp[tcpflags] & tcp-syn != 0 and src host {ip}"], f"syn-{name}")
    try:
        assert dump.wait_for("listening on", 20), dump.log()
        for _ in range(5):                     # a SYN lost on a loaded machine: connect again
            client_ns.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{TUN_SERVER_IP}/9'", check=False)
            if dump.wait_for(r"mss \d+", 4):
                break
        m = re.search(r"mss (\d+)", dump.log())
        return m.group(1) if m else f"none in {dump.log()[-500:]!r}"
    finally:
        dump.stop(3)


def _tun_mtu(ns) -> int:
    return json.loads(ns.run("ip -j link show dev tun0").stdout)[0]["mtu"]


def test_syn_mss_with_tun_mtu_as_debians_client(tmp_path):
    with Lab(clients=["client1", "client2"], tmp=tmp_path) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki, extra="mssfix 0\n"), "srv")
        other = lab.add_client_ns(1)
        seen, tun_mtus = {}, {}
        for mtu in (1400, 1300):
            theirs = lab.openvpn(other, client_profile(lab.pki, client="client2", remotes=[("198.18.2.1", 1194, "udp")],
                                                       extra=f"tun-mtu {mtu}\n"), f"theirs{mtu}")
            ours = lab.ours(lab.cli, client_profile(lab.pki, extra=f"tun-mtu {mtu}\n"), f"ours{mtu}")
            try:
                seen[mtu] = (_syn_mss(lab, other, f"theirs{mtu}"), _syn_mss(lab, lab.cli, f"ours{mtu}"))
                tun_mtus[mtu] = (_tun_mtu(other), _tun_mtu(lab.cli))
            finally:
                ours.stop(5)
                theirs.stop(5)
        print(f"SYN MSS at the server (Debian's client, ours): {seen}; their TUN MTUs: {tun_mtus}")
        assert seen == {1400: ("1360", "1360"), 1300: ("1260", "1260")}, seen
        assert all(a == b for a, b in tun_mtus.values()), tun_mtus     # the pushed tun-mtu taken alike


def test_a_server_with_tun_mtu_1400_clamps_its_clients_syns_as_debians(tmp_path):
    """The server side of the same default: Debian's server and ours, each with `tun-mtu 1400`,
    and one Debian client that clamps nothing itself (`mssfix 0`) and keeps its TUN at 1500
    (`pull-filter ignore "tun-mtu"`: its kernel's SYN says MSS 1460). The SYN reaches each
    server's TUN at MSS 1360 (tun-mtu - 40): the server clamps what comes out of the tunnel as
    2.6's does (mss_fixup on the link-to-TUN way too). Before mss41 ours let 1400 through."""
    with Lab(clients=["client1"], tmp=tmp_path) as lab:
        seen = {}
        for kind in ("openvpn", "ours"):
            srv = lab.udp_server(kind, server_config(lab.pki, extra="tun-mtu 1400\n"), f"srv-{kind}")
            cli = None
            try:
                cli = lab.openvpn(lab.cli, client_profile(lab.pki, extra='mssfix 0\npull-filter ignore "tun-mtu"\n'),
                                  f"cli-{kind}")
                assert _tun_mtu(lab.cli) == 1500
                seen[kind] = _syn_mss(lab, lab.cli, f"to-{kind}")
            finally:
                if cli is not None:
                    cli.stop(5)
                srv.stop(5)
        print(f"SYN MSS at the server's TUN from Debian's client (mssfix 0, its TUN at 1500), the servers' tun-mtu 1400: {seen}")
        assert seen == {"openvpn": "1360", "ours": "1360"}, seen
