"""A holder of the shared tls-crypt key forges a control packet into Debian's 2.6.14 client's session
with our server: the client's tunnel goes on, and renegotiations after it succeed (fuzz45's
finding, forge48's fix: Session._contain_tls_failure; the cases in memory:
tests/gateway/test_tls_crypt_holder_forgery.py).

The forger (lab/control_forger.py, our own wrapping module) runs in the client's namespace, as anyone on
the client's path or LAN: it reads the client's datagrams to the server off the wire from the
start (AF_PACKET), and when told, wraps one P_CONTROL_V1 in the client's session -- the ids
read through the key, the next message id of the newest key, the packet id after the client's
newest -- whose payload is no TLS record, and sends it from the client's address and port (a
raw socket). Before, our server's TLS failed on it and the session ended: the client's pings
went unanswered until its ping-restart (30 s here) brought it back with a new connection.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from lab import control_forger
from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab



@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _pings_answered(lab, count: int = 3, within: float = 15) -> bool:
    """`count` pings through the tunnel answered in one round (rounds retried until `within`)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if lab.ping(lab.cli, TUN_SERVER_IP, count=count, interval=0.2, timeout=5) == count:
            return True
    return False


def test_a_forged_control_packet_leaves_debians_client_connected(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", protection="tls-crypt"), "oursrv-forge",
                   pattern=r"listening on UDP")
    procs.append(srv)
    trigger = lab.tmp / "forge-now"
    forger = subprocess.Popen(control_forger.netns_argv(lab, lab.cli, trigger, 40), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert forger.stdout.readline().strip() == "listening"
        # reneg-sec 8 (2.6's client: a random 70-100% of it): its own renegotiation after ours.
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", protection="tls-crypt", extra="reneg-sec 8\n"),
                          "ovpncli-forge", wait=30)
        procs.append(cli)
        assert _pings_answered(lab), "no tunnel before the forgery"
        trigger.write_text("")
        out, _ = forger.communicate(timeout=45)
        assert forger.returncode == 0 and "forged key" in out, out
    finally:
        if forger.poll() is None:
            forger.kill()
            forger.wait(5)
    # The tunnel goes on; the forgery did reach TLS (ours said so).
    assert _pings_answered(lab, within=10), "the client's tunnel ended with the forgery:\n" + srv.log()[-3000:]
    assert srv.wait_for("TLS error on key", timeout=10), srv.log()[-3000:]
    # Our server's renegotiation replacing the broken key, then the client's own at its reneg-sec.
    assert srv.wait_count("key renegotiated", 2, timeout=20), srv.log()[-3000:]
    assert _pings_answered(lab), srv.log()[-3000:]
    assert cli.alive() and cli.log().count("Initialization Sequence Completed") == 1, cli.log()[-3000:]
    assert "disconnected" not in srv.log(), srv.log()[-3000:]
