"""Our CLIENT against Debian's 2.6.14 server when its active key's TLS fails (review48e): a holder
of the shared tls-crypt key forges a control packet into the server's session with our client;
our client keeps its data keys and replaces the broken TLS with a soft reset of its own
(Session._contain_tls_failure, _recover) -- which Debian's server must accept as a client's
renegotiation, with no new connection. (Our server against Debian's client:
test_key_holder_forgery_vs_openvpn.py; the cases in memory: tests/gateway/test_tls_crypt_holder_forgery.py.)

The forger runs in the server's namespace (anyone on the server's path): it reads the server's
datagrams to our client off the wire and wraps one P_CONTROL_V1 whose payload is no TLS record
under the server's session, next message id, next packet id, sent from the server's address and
port (a raw socket).
"""
from __future__ import annotations

import subprocess

import pytest

from lab import control_forger
from lab.configs import client_profile, server_config
from lab.netns import Lab

from .test_key_holder_forgery_vs_openvpn import _pings_answered


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def test_debians_server_takes_our_clients_recovery_renegotiation(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", protection="tls-crypt"), "ovpnsrv-crec", wait=0)
    procs.append(srv)
    assert srv.wait_for("Initialization Sequence Completed", 30), srv.log()[-3000:]
    trigger = lab.tmp / "forge-client-now"
    forger = subprocess.Popen(control_forger.netns_argv(lab, lab.srv, trigger, 40, victim_is_server=True),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert forger.stdout.readline().strip() == "listening"
        cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", protection="tls-crypt"), "ourcli-crec", wait=30)
        procs.append(cli)
        assert _pings_answered(lab), "no tunnel before the forgery"
        trigger.write_text("")
        out, _ = forger.communicate(timeout=45)
        assert forger.returncode == 0 and "forged key" in out, out
    finally:
        if forger.poll() is None:
            forger.kill()
            forger.wait(5)
    # Our client's TLS failed on the forgery (it says so), its tunnel went on ...
    assert cli.wait_for("TLS error on key", timeout=10), cli.log()[-3000:]
    assert _pings_answered(lab, within=10), "the tunnel ended with the forgery:\n" + cli.log()[-3000:]
    # ... and its soft reset replaced the broken key: Debian's server renegotiated with it.
    assert cli.wait_for("data channel key renegotiated", timeout=20), cli.log()[-3000:] + srv.log()[-3000:]
    assert _pings_answered(lab), cli.log()[-3000:] + srv.log()[-3000:]
    assert cli.alive() and cli.log().count("tunnel up") == 1, cli.log()[-3000:]
    log = srv.log()
    # One connection (2.6 promotes each new one's session), two TLS handshakes, no TLS error.
    assert log.count("initial untrusted session promoted to trusted") == 1, log[-3000:]
    assert log.count("Control Channel: TLS") == 2 and "TLS Error" not in log, log[-3000:]
