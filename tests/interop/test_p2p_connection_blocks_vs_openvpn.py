"""A point-to-point tls-client profile (no `pull`) whose server is in a `<connection>` block and
whose tls-crypt key and remote-cert-tls come after the block, against Debian's OpenVPN 2.6 as the
p2p tls-server holding that key: Debian's client with the profile comes up (2.6 gives the global
key to a block without one of its own), and so does ours. Before review43b ours sent its resets
without the key (the block's raw copy had it emptied) and Debian's server dropped them
("tls-crypt unwrapping failed"). In-memory cases: tests/gateway/test_connection_entries_p2p.py."""
from __future__ import annotations

import pytest

from lab.netns import Lab

A_IP = "198.18.0.1"
TUN_A, TUN_B = "198.19.43.1", "198.19.43.2"

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("p2pblocks")) as lab:
        yield lab


def _server(lab) -> str:
    p = lab.pki
    return (f"dev tun\nproto udp\nifconfig {TUN_A} {TUN_B}\ntls-server\ndh none\nport 1194\nca {p.ca}\n"
            f"cert {p.server_cert}\nkey {p.server_key}\ntls-crypt {p.dir / 'static.key'}\nkeepalive 1 10\nverb 3\n")


def _peer(lab) -> str:
    p = lab.pki
    c, k = p.clients["client1"]
    return (f"dev tun\nproto udp\nifconfig {TUN_B} {TUN_A}\ntls-client\nnobind\nca {p.ca}\ncert {c}\nkey {k}\n"
            f"keepalive 1 10\nverb 3\n<connection>\nremote {A_IP} 1194\n</connection>\n"
            f"tls-crypt {p.dir / 'static.key'}\nremote-cert-tls server\n")


@pytest.mark.parametrize("who", ["openvpn", "ours"])
def test_a_block_without_its_own_key_runs_with_the_global_one(lab, procs, who):
    a = lab.openvpn(lab.srv, _server(lab), f"a-{who}", wait=0)
    procs.append(a)
    assert a.wait_for("link local", 20), a.log()[-2000:]
    b = (lab.openvpn(lab.cli, _peer(lab), "b-openvpn", wait=0) if who == "openvpn"
         else lab.ours(lab.cli, _peer(lab), "b-ours", wait=0))
    procs.append(b)
    assert a.wait_for("Initialization Sequence Completed", 30), (a.log()[-3000:], b.log()[-2000:])
    assert lab.wait_ping(lab.cli, TUN_A), b.log()[-2000:]
    assert "tls-crypt unwrapping failed" not in a.log()
