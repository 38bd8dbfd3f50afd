"""auth-user-pass-verify with a command that defers and never answers, on Debian's OpenVPN 2.6
server and ours, OpenVPN's client (hand-window 5 on both ends): on both the client is never let
in, gets no AUTH_FAILED in time (so `auth-retry none` does not stop it) and starts again after
hand-window, for ever; on ours no file of the checks stays in tmp-dir. (hand-window 5, not 10:
what is asserted follows hand-window's length, whatever it is, and each case waits two of them:
with 10 each case took ~24 s.)

Seen, not pinned (a difference a user may notice in the client's log): OpenVPN's server answers
the key exchange at once and defers only the push ("promoted to trusted", then "SIGUSR1[soft,
no-push-reply]" after hand-window); ours holds its key-method message until the verdict, so the
client says "TLS key negotiation failed to occur within 5 seconds (check your network
connectivity)" and "SIGUSR1[soft,tls-error]" -- a network problem named where a login waits.
(In memory, the other attacks: tests/gateway/test_auth_script_attacks.py.)"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

SILENT = """#!/bin/sh
# defers and never writes a verdict
exit 2
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_deferred_check_that_never_answers(lab, procs, kind):
    script = lab.write(f"silent-{kind}.sh", SILENT)
    script.chmod(0o755)
    conf = server_config(lab.pki, "udp", extra=f"auth-user-pass-verify {script} via-file\nscript-security 2\n"
                                                f"tmp-dir {lab.tmp}\nhand-window 5\n")
    srv = (lab.openvpn(lab.srv, conf, f"aus-srv-silent-{kind}") if kind == "openvpn"
           else lab.ours(lab.srv, conf, f"aus-srv-silent-{kind}", pattern=r"listening on UDP"))
    procs.append(srv)
    creds = lab.write(f"aus-silent-{kind}-creds.txt", "alice\npw\n")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nauth-retry none\n"
                                                                  "hand-window 5\n"),
                      f"aus-cli-silent-{kind}", wait=0)
    procs.append(cli)
    # Two hand-windows over and the client starting again (a fixed 25 s wait before).
    assert cli.wait_count("process restarting", 2, 45), cli.log()[-3000:]          # it retries
    log = cli.log()
    assert "Initialization Sequence Completed" not in log and "AUTH_FAILED" not in log, log[-3000:]
    assert cli.exit_within(0.1) is None, "the client stopped"
    for p in reversed(procs):
        p.stop_promptly(8)
    procs.clear()
    left = sorted(p.name for p in lab.tmp.glob("openvpn_*"))
    if kind == "ours":
        assert left == [], left
    for p in lab.tmp.glob("openvpn_*"):
        p.unlink()
