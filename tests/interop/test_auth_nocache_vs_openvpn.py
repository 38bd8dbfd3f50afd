"""`auth-nocache` against Debian's OpenVPN 2.6 server, our client beside OpenVPN's own, in
namespaces. The profile reads its credentials from a file; while the tunnel is up the password in
the file is changed, then the client restarts its connection (SIGUSR1). With auth-nocache
OpenVPN 2.6's client has purged the credentials after sending them and reads the file again
(ssl.c key_method_2_write: purge_user_pass, auth_user_pass_setup), so the server sees the new
password; without it, the old one again. Ours accepted auth-nocache with no effect and always
sent the old one. The server's verify script records each username/password it is given.
"""
from __future__ import annotations

import os
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.mark.parametrize("nocache", [True, False], ids=["auth-nocache", "cached"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_reconnect_sends_the_password_the_file_holds_then(lab, procs, kind, nocache):
    name = f"{kind}-{'nocache' if nocache else 'cached'}"
    calls = lab.tmp / f"{name}-calls.log"
    script = lab.write(f"{name}-verify.sh", "#!/bin/sh\n"           # via-file: $1 holds username, password
                       f'printf "%s %s\\n" "$(sed -n 1p "$1")" "$(sed -n 2p "$1")" >> {calls}\nexit 0\n')
    script.chmod(0o755)
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\n")), f"srv-{name}")
    procs.append(srv)
    creds = lab.write(f"{name}-creds.txt", "alice\nfirst-pw\n")
    extra = f"auth-user-pass {creds}\n" + ("auth-nocache\n" if nocache else "")
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=extra), f"cli-{name}", wait=0)
    procs.append(cli)
    assert cli.wait_count(UP[kind], 1, timeout=30), cli.log()[-3000:]
    creds.write_text("alice\nsecond-pw\n")            # rotated while the tunnel is up
    os.kill(cli.p.pid, signal.SIGUSR1)
    assert cli.wait_count(UP[kind], 2, timeout=40), cli.log()[-3000:]
    seen = calls.read_text().splitlines()
    print(f"{kind} ({'auth-nocache' if nocache else 'no auth-nocache'}): the server's script saw {seen}")
    assert seen == ["alice first-pw", "alice second-pw" if nocache else "alice first-pw"], seen
