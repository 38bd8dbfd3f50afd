"""A SIGHUP after an edit that takes an `iroute` out of one client's ccd file and slips a typo into
it, our server against Debian's OpenVPN 2.6 clients in namespaces (reload44): the client whose file
no longer parses is not kept on the old file's options (its iroute) -- it is disconnected, as its
reconnect is refused on that file (AUTH_FAILED, the file and line in our log); the other client
keeps its tunnel, untouched. Before, the first client kept its session and the removed iroute
until it reconnected by itself."""
from __future__ import annotations

import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("hupbad")) as lab:
        yield lab


def test_a_ccd_file_broken_at_a_reload_disconnects_its_client_and_keeps_the_other(lab, procs):
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("iroute 198.18.90.0 255.255.255.0\n")
    (ccd / "client2").write_text("iroute 198.18.91.0 255.255.255.0\n")
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"
                                          "route 198.18.90.0 255.255.255.0\nroute 198.18.91.0 255.255.255.0\n"),
                   "hupbad-srv", pattern=r"listening on UDP")
    procs.append(srv)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), "hupbad-c1")
    procs.append(c1)
    ns2 = lab.add_client_ns(6)
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.7.1", 1194, "udp")]),
                     "hupbad-c2")
    procs.append(c2)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3, timeout=20) >= 1, c1.log()[-2000:]
    # The iroute taken out, and a typo in the same edit (a letter O in the netmask).
    (ccd / "client1").write_text("push \"route 198.18.92.0 255.255.255.0\"\nifconfig-push 198.19.0.9 255.255.255.O\n")
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    where = f"{ccd / 'client1'}:2"
    assert srv.wait_for(rf"client1/\S+: client-config-dir file for 'client1': {where}: .*disconnected", 20,
                        after=mark), srv.log()[mark:][-2000:]
    assert srv.wait_for(r"re-read; 1 clients kept, 1 revoked ones disconnected", 20, after=mark), \
        srv.log()[mark:][-2000:]
    # Debian's client comes back at once and is refused on the file, as a new connection is.
    assert c1.wait_for("AUTH_FAILED", 30), c1.log()[-2000:]
    # (the kept session's end, then the reconnect's refusal: the same words)
    assert srv.wait_count(f"disconnected: client-config-dir file for 'client1': {where}", 2, 20), \
        srv.log()[mark:][-2000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2, timeout=3) == 0, "client1 still has a tunnel"
    # client2's file did not change: its tunnel kept, never told anything.
    assert lab.ping(ns2, TUN_SERVER_IP, 3, timeout=20) >= 1
    log2 = c2.log()
    assert log2.count("Initialization Sequence Completed") == 1 and "process restarting" not in log2, log2[-2000:]
    assert srv.alive() and "Traceback" not in srv.log() and "internal error" not in srv.log()
