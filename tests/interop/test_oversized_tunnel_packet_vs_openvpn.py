"""Tunnel packets larger than the tun-mtu, between our client and Debian's OpenVPN 2.6 server.

OpenVPN 2.6 sizes its buffers from its frame (init.c frame_finalize_options: the largest of
tun-mtu, tun-mtu-max and 1600, plus 32 and 136 bytes of headroom: 1768 with the defaults). It
writes a decrypted packet up to that size to its TUN even over tun-mtu; a bigger one it drops
("tun packet too large on write"), and a datagram past its read buffer is cut and fails
authentication ("AEAD Decrypt error"). Ours now drops what 2.6 drops (counted, logged once per
session; tests/engine/test_oversized_tunnel_packet.py) and passes what 2.6 passes: checked here
both ways with each side's TUN MTU raised past the profile's, and with tun-mtu 9000 on both.
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _tun_addr(ns) -> str:
    out = ns.run("ip -4 -o addr show dev tun0").stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert m, out
    return m.group(1)


def _replies(lab, ns, addr: str, size: int, count: int = 3) -> int:
    r = ns.run(f"ping -n -q -c {count} -i 0.2 -W 2 -M dont -s {size} {addr}", check=False, timeout=30)
    m = re.search(r"(\d+) received", r.stdout)
    return int(m.group(1)) if m else 0


def test_what_2_6_passes_passes_and_what_it_drops_is_dropped(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "srv-big")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp"), "cli-big", wait=40)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel"
    mine = _tun_addr(lab.cli)
    # 2.6 sends the largest its frame holds once sealed (1744 bytes: -s 1716): ours takes it.
    lab.srv.run("ip link set dev tun0 mtu 4000")
    assert _replies(lab, lab.srv, mine, 1716) >= 2, cli.log()[-2000:] + srv.log()[-2000:]
    assert "dropped a" not in cli.log()
    # Ours sends 2.6 its frame's worth (1768 bytes: 2.6 writes it to its TUN, past tun-mtu), then
    # more: 2.6 drops those. (Its TUN back at 1500, so its reply goes out in fragments.)
    lab.srv.run("ip link set dev tun0 mtu 1500")
    lab.cli.run("ip link set dev tun0 mtu 4000")
    assert _replies(lab, lab.cli, TUN_SERVER_IP, 1740) >= 2, srv.log()[-2000:]
    before = len(srv.log())
    assert _replies(lab, lab.cli, TUN_SERVER_IP, 1760, count=2) == 0       # 1788 bytes
    assert _replies(lab, lab.cli, TUN_SERVER_IP, 3000, count=2) == 0
    said = srv.log()[before:]
    # (2.6's frame here: 1768 bytes, our TUN_WRITE_FLOOR + TUN_WRITE_SLACK)
    assert "tun packet too large on write (tried=1788,max=1768)" in said, said
    assert "AEAD Decrypt error" in said, said                               # 3028: cut by its read
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "the tunnel did not live on"
    cli.stop(8)


def test_a_tun_mtu_of_9000_on_both_passes_jumbo_packets_both_ways(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra="tun-mtu 9000\n"), "srv-jumbo")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra="tun-mtu 9000\n"), "cli-jumbo", wait=40)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel"
    assert _replies(lab, lab.cli, TUN_SERVER_IP, 8900) >= 2, srv.log()[-2000:]
    assert _replies(lab, lab.srv, _tun_addr(lab.cli), 8900) >= 2, cli.log()[-2000:]
    assert "dropped a" not in cli.log()
    cli.stop(8)
