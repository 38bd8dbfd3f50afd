"""Another certificate restarting from a connected client's address and port (a NAT port given
to another user, a second profile on the same `lport`): 2.6 hands that reset to the address's
instance, whose common name is locked, and refuses it ("TLS object CN attempted to change").
What the refused client hears, with Debian's OpenVPN 2.6 client against our server: AUTH_FAILED,
on which it stops, as against Debian's own server (seen in the lab: "AUTH: Received control
message: AUTH_FAILED", then "SIGTERM[soft,auth-failure]").

Before: ours sent AUTH_FAILED in its key-method message's place; 2.6's client read it as one
("TLS ERROR: Unknown key_method/flags=95"), took a TLS error and came back after each restart
pause, a handshake and a refusal each time.
"""
from __future__ import annotations

import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("restartlock")) as lab:
        yield lab


def test_another_certificate_from_a_clients_port_hears_auth_failed_and_stops(lab):
    procs = []
    try:
        # hand-window 6: a handshake left behind would end (and say so) within the test
        srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra="hand-window 6\n"), "rl-srv",
                       pattern=r"listening on UDP")
        procs.append(srv)
        first = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1").replace("nobind\n", "lport 40001\n"),
                            "rl-c1", wait=60)
        procs.append(first)
        first.p.send_signal(signal.SIGKILL)      # gone without a word: the server still holds it
        first.p.wait(10)
        other = lab.openvpn(lab.cli, client_profile(lab.pki, client="client2").replace("nobind\n", "lport 40001\n"),
                            "rl-c2", wait=0)
        procs.append(other)
        rc = other.exit_within(60)
        assert rc is not None and "AUTH: Received control message: AUTH_FAILED" in other.log(), other.log()[-3000:]
        assert "auth-failure" in other.log() and "Unknown key_method" not in other.log(), other.log()[-3000:]
        assert srv.log().count("CN attempted to change from 'client1' to 'client2'") == 1, srv.log()[-3000:]
        # Its late ACK of our messages [2, 1, 0], cookie and all, started no handshake of its own
        # (518e122b; one waited there until hand-window, then ended with a line of its own).
        assert not srv.wait_for(r"\?/198\.18\.0\.2:40001: disconnected", 9), srv.log()[-3000:]
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
