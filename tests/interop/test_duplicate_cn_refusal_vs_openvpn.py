"""duplicate-cn off, our server, Debian's OpenVPN 2.6 clients (README, helper batch50): a second
connect under a connected client's name that our server refuses for its address -- here the
client's ccd file, edited since, gives it the server's own tunnel address (refused since
review49a) -- no longer ends the connected client's session first. OpenVPN 2.6.14 has no such
refusal (it admits the address) and ends the name's other sessions before reading the file
(multi.c multi_client_connect_early_setup -> multi_delete_dup); in the gateway tests
(tests/gateway/test_duplicate_cn_refusal_order.py) this failed before the change."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("dupcnlab")) as lab:
        yield lab


def test_a_refused_second_connect_of_a_name_leaves_the_connected_client_up(lab, procs):
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("push \"setenv-safe FIRST 1\"\n")
    srv = lab.udp_server("ours", server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "dupcn-srv")
    procs.append(srv)
    first = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), "dupcn-first")
    procs.append(first)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) >= 2, first.log()[-2000:]
    (ccd / "client1").write_text(f"ifconfig-push {TUN_SERVER_IP} 255.255.255.0\n")     # the operator's slip
    second_ns = lab.add_client_ns(4)
    second = lab.openvpn(second_ns, client_profile(lab.pki, "udp", client="client1",
                                                   remotes=[("198.18.5.1", 1194, "udp")]), "dupcn-second", wait=0)
    procs.append(second)
    assert second.wait_for("AUTH_FAILED", 30), second.log()[-2000:]
    assert srv.wait_for("is the server's own address", 10), srv.log()[-3000:]
    assert "another client connected with common name" not in srv.log(), srv.log()[-3000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) >= 2, (first.log()[-2000:], srv.log()[-2000:])
    assert first.alive() and first.log().count("Initialization Sequence Completed") == 1, first.log()[-2000:]
