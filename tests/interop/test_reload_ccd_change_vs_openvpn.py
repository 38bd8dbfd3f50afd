"""A SIGHUP after an edit of one client's ccd `ifconfig-push`, our server against Debian's OpenVPN
2.6 clients in namespaces: the client whose file changed is told RESTART, reconnects at once and has
the new address (as after 2.6's SIGHUP, where every client reconnects through its file); the
client whose file did not change keeps its tunnel, without a reconnect (ours keeps what a reload
does not change; 2.6 would have restarted it too)."""
from __future__ import annotations

import re
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab, until

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("hupccd")) as lab:
        yield lab


def _addr(ns) -> str | None:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else None


def test_an_edited_ifconfig_push_reconnects_that_client_into_it_and_keeps_the_other(lab, procs):
    ccd = lab.tmp / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("ifconfig-push 198.19.0.50 255.255.255.0\n")
    (ccd / "client2").write_text("ifconfig-push 198.19.0.60 255.255.255.0\n")
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"), "hupccd-srv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), "hupccd-c1")
    procs.append(c1)
    ns2 = lab.add_client_ns(6)
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.7.1", 1194, "udp")]),
                     "hupccd-c2")
    procs.append(c2)
    assert _addr(lab.cli) == "198.19.0.50" and _addr(ns2) == "198.19.0.60"
    (ccd / "client1").write_text("ifconfig-push 198.19.0.70 255.255.255.0\n")
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"client1/\S+: its client-config-dir file changed: told RESTART", 20, after=mark), \
        srv.log()[mark:][-2000:]
    assert srv.wait_for(r"re-read; 1 clients kept, 0 revoked ones disconnected, 1 told RESTART", 20, after=mark)
    # Debian's client takes the RESTART at once (2.6: SIGUSR1 server-pushed-connection-reset) and
    # comes back with its file's new address.
    assert c1.wait_for("server-pushed-connection-reset", 20), c1.log()[-2000:]
    assert c1.wait_count("Initialization Sequence Completed", 2, 30), c1.log()[-2000:]
    assert until(lambda: _addr(lab.cli) == "198.19.0.70", within=20), (_addr(lab.cli), c1.log()[-2000:])
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3, timeout=20) >= 1, c1.log()[-2000:]
    # client2's file said the same: its tunnel kept, never told anything.
    assert lab.ping(ns2, TUN_SERVER_IP, 3, timeout=20) >= 1
    log2 = c2.log()
    assert log2.count("Initialization Sequence Completed") == 1 and "process restarting" not in log2, log2[-2000:]
    assert _addr(ns2) == "198.19.0.60"
    assert srv.alive() and "Traceback" not in srv.log() and "internal error" not in srv.log()
