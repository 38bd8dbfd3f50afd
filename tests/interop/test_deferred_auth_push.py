"""Our client against Debian's OpenVPN 2.6 server whose password check takes a while (a script that
answers after ~1 s, synchronously or deferred through auth_control_file) and hands out auth-gen-token.

Why: the client asks for the push only PUSH_REQUEST_FIRST after the server's key-method message
(openvpn/roles.py), relying on a 2.6 server to push unasked once the client is authenticated. With a
slow or deferred check the push must still come, and the token renegotiations after it too.
"""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


SYNC = "#!/bin/sh\nsleep 1\n" 'u=$(sed -n 1p "$1"); p=$(sed -n 2p "$1")\n' \
       '[ "$u" = alice ] && [ "$p" = secret ] && exit 0\nexit 1\n'
DEFERRED = "#!/bin/sh\n" 'u=$(sed -n 1p "$1"); p=$(sed -n 2p "$1")\n' \
           'ok=0; [ "$u" = alice ] && [ "$p" = secret ] && ok=1\n' \
           '( sleep 1; echo $ok > "$auth_control_file" ) </dev/null >/dev/null 2>&1 &\nexit 2\n'


# Each kind of check and each transport once, not every pair (helper trim44b; the four pairs
# took ~40 s): the client's choice of when to ask for the push does not look at the transport,
# and a server that never pushes unasked still gets its PUSH_REQUEST, PUSH_REQUEST_FIRST after
# its key-method message (in memory: tests/engine/test_batch_acks.py).
@pytest.mark.parametrize("kind,proto", [("deferred", "udp"), ("sync", "tcp")])
def test_a_slow_password_check_still_brings_the_push_and_token_renegotiations(lab, proto, kind):
    script = lab.write(f"check-{kind}-{proto}.sh", SYNC if kind == "sync" else DEFERRED)
    script.chmod(0o755)
    creds = lab.write("creds.txt", "alice\nsecret\n")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, proto, None, "tls-crypt", 4, extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\nauth-gen-token 0 120\n")),
        f"server-{kind}-{proto}")
    cli = None
    try:
        t0 = time.monotonic()
        cli = lab.ours(lab.cli, client_profile(lab.pki, proto, None, "tls-crypt", extra=f"auth-user-pass {creds}\n"),
                       f"ours-{kind}-{proto}", wait=30)
        up = time.monotonic() - t0
        print(f"{kind}/{proto}: tunnel up after {up:.2f} s")
        received = lab.ping(lab.cli, TUN_SERVER_IP, count=40, interval=0.2, timeout=30)   # ~8 s: 2 renegotiations
        assert received >= 38, f"lost {40 - received} of 40 pings:\n{cli.log()[-2000:]}"
        assert len(re.findall(r"data channel key renegotiated", cli.log())) >= 1, cli.log()[-2000:]
        assert "AUTH_FAILED" not in cli.log()
    finally:
        if cli is not None:
            cli.stop(5)
        srv.stop_promptly(5)


def test_the_auth_token_renewed_at_each_renegotiation_is_the_one_sent_next(lab):
    # auth-gen-token refuses a token older than twice its renewal time and renews it with a push
    # of the token alone at each renegotiation (renewal 6 s here, the least hand-window 3 allows;
    # by default twice reneg-sec, 2 h). With a one-time password nothing else can log in again.
    script, calls, used = lab.one_time_password_script("check-otp-once", "alice", "otp-482913")
    creds = lab.write("otp-creds.txt", "alice\notp-482913\n")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", None, "tls-crypt", 3, extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\nhand-window 3\nauth-gen-token 0 6\n")),
        "server-renewal")
    cli = None
    try:
        cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", None, "tls-crypt", extra=f"auth-user-pass {creds}\n"),
                       "ours-renewal", wait=30)
        # ~18 s: the renegotiations at ~15 and ~18 s (reneg-sec 3) come past the first token's 12 s
        received = lab.ping(lab.cli, TUN_SERVER_IP, count=90, interval=0.2, timeout=60)
        assert "AUTH_FAILED" not in cli.log(), cli.log()[-2000:]
        assert received >= 86, f"lost {90 - received} of 90 pings:\n{cli.log()[-2000:]}"
        assert "auth-token from client expired" not in srv.log()
        assert calls.read_text().split() == ["alice"], "the password was sent more than once"
    finally:
        if cli is not None:
            cli.stop(5)
        srv.stop_promptly(5)
