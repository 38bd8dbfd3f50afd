"""Our client's auth-token across reconnects, against Debian's OpenVPN 2.6 server (auth-gen-token)
with a verify script that takes a one-time password once.

OpenVPN 2.6's client keeps the pushed token for the whole run: after a connection restart (here
the server restarting, which tells UDP clients RESTART) it logs in again with the token, so the
one-time password is not needed twice. A token the server no longer takes (restarted with another
token key) brings AUTH_FAILED: the client drops the token and reconnects to the same server with
its password. Before, our client forgot the token with each connection: the reconnect sent the
spent one-time password, got AUTH_FAILED and exited.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OPENVPN

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _otp_script(lab, name: str):
    """Accepts alice/otp-482913 while the `used` marker is absent, then never again; logs each call."""
    return lab.one_time_password_script(name, "alice", "otp-482913")


def _server(lab, script, name: str, secret=None):
    extra = f"script-security 2\nauth-user-pass-verify {script} via-file\nauth-gen-token 0\n"
    if secret is not None:
        extra += f"auth-gen-token-secret {secret}\n"
    return lab.openvpn(lab.srv, server_config(lab.pki, "udp", None, "tls-crypt", extra=extra), name)


def _client(lab, name: str):
    creds = lab.write(f"{name}-creds.txt", "alice\notp-482913\n")
    return lab.ours(lab.cli, client_profile(lab.pki, "udp", None, "tls-crypt", extra=f"auth-user-pass {creds}\n"),
                    name, wait=30)


def test_a_reconnect_logs_in_with_the_token_not_the_spent_one_time_password(lab):
    script, calls, _ = _otp_script(lab, "otp-reconnect")
    secret = lab.tmp / "token.key"           # kept across the restart: the token stays valid
    lab.srv.run(f"{OPENVPN} --genkey auth-token {secret}")
    srv = _server(lab, script, "srv-token-1", secret)
    cli = None
    try:
        cli = _client(lab, "ours-token-reconnect")
        assert lab.ping(lab.cli, TUN_SERVER_IP, count=3, timeout=20) == 3
        srv.stop(5)                          # the server restarts: RESTART to its UDP clients
        srv = _server(lab, script, "srv-token-2", secret)
        assert cli.wait_count("tunnel up", 2, timeout=40), cli.log()[-3000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, count=3, timeout=20) == 3
        assert "AUTH_FAILED" not in cli.log(), cli.log()[-3000:]
        assert cli.alive()
        assert calls.read_text().split() == ["alice"], "the password was sent again instead of the token"
    finally:
        if cli is not None:
            cli.stop(5)
        srv.stop(5)


def test_a_refused_token_is_dropped_and_the_password_sent_again(lab):
    script, calls, used = _otp_script(lab, "otp-fallback")
    srv = _server(lab, script, "srv-fallback-1")   # a random token key per start: old tokens fail
    cli = None
    try:
        cli = _client(lab, "ours-token-fallback")
        assert lab.ping(lab.cli, TUN_SERVER_IP, count=3, timeout=20) == 3
        srv.stop(5)
        used.unlink()                        # the password is good once more (a new code, say)
        srv = _server(lab, script, "srv-fallback-2")
        assert cli.wait_count("tunnel up", 2, timeout=60), cli.log()[-3000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, count=3, timeout=20) == 3
        assert "auth-token dropped" in cli.log(), "the restarted server was not offered the old token first"
        assert calls.read_text().split() == ["alice", "alice"], "the password went only once each time"
    finally:
        if cli is not None:
            cli.stop(5)
        srv.stop(5)
