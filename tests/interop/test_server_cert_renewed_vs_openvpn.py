"""Our server reloads with its own certificate renewed (same name, new key and serial), keeping its
clients: at their next renegotiation Debian's OpenVPN 2.6 client and ours see the new certificate.

OpenVPN 2.6's client verifies the server's chain at each handshake and locks nothing across them
(its locks are the server's, multi.c): it carries on. Ours held the server to the whole chain of
its first handshake and dropped the tunnel ("certs unexpectedly changed during mid-session
reauth"), then reconnected: every one of our clients, at each renewal of the server's
certificate. Now it keeps the tunnel as Debian's does (it still refuses another name)."""
from __future__ import annotations

import shutil
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.pki import add_cert

LOCKED = "unexpectedly changed"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("certrenew")) as lab:
        yield lab


def test_a_renewed_server_certificate_keeps_both_clients_tunnels(lab, procs):
    crt, key = lab.tmp / "srv.crt", lab.tmp / "srv.key"
    shutil.copy(lab.pki.server_cert, crt)
    shutil.copy(lab.pki.server_key, key)
    cfg = server_config(lab.pki).replace(f"cert {lab.pki.server_cert}", f"cert {crt}") \
                                .replace(f"key {lab.pki.server_key}", f"key {key}")
    assert f"cert {crt}" in cfg and f"key {key}" in cfg
    srv = lab.ours(lab.srv, cfg, "certrenew-srv", pattern=r"listening on UDP")
    procs.append(srv)
    theirs = lab.openvpn(lab.cli, client_profile(lab.pki, extra="reneg-sec 8\n"), "certrenew-theirs")
    procs.append(theirs)
    c2 = lab.add_client_ns(2)
    ours = lab.ours(c2, client_profile(lab.pki, client="client2", extra="reneg-sec 8\n",
                                       remotes=[("198.18.3.1", 1194, "udp")]), "certrenew-ours")
    procs.append(ours)
    new_crt, new_key = add_cert(lab.pki, "server-renewed", "/CN=server", server=True)
    shutil.copy(new_crt, crt)
    shutil.copy(new_key, key)
    mark, mark_t, mark_o = len(srv.log()), len(theirs.log()), len(ours.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"reload: config .* re-read; 2 clients kept", 30, after=mark), srv.log()[-2000:]
    # Each client's own renegotiations (reneg-sec 8) under the reloaded certificate; two each, so
    # at least one handshake is wholly after the reload whatever the timing. Two take up to ~16 s
    # and a handshake each: polled up to 60 s (40 was 2.5x, thin beside VM builds).
    assert ours.wait_for(r"(?s)key renegotiated.*key renegotiated|" + LOCKED, 60, after=mark_o), ours.log()[-2000:]
    assert theirs.wait_for(r"(?s)(Control Channel: .*){2}", 60, after=mark_t), theirs.log()[-2000:]
    assert LOCKED not in ours.log()[mark_o:], ours.log()[-2000:]
    assert "connecting to" not in ours.log()[mark_o:], "our client reconnected"
    assert "Initialization Sequence Completed" not in theirs.log()[mark_t:], "Debian's client reconnected"
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3
    assert lab.ping(c2, TUN_SERVER_IP, 3) == 3
