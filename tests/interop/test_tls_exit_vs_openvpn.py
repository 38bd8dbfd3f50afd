"""`tls-exit` against Debian's OpenVPN 2.6 server, our client beside OpenVPN's own, in
namespaces: the profile pins a server name the server's certificate does not have
(verify-x509-name), so every handshake ends in a TLS error. With tls-exit OpenVPN 2.6's client
exits after the first one (init.c do_signal_on_tls_errors: SIGTERM instead of SIGUSR1); ours
accepted the directive with no effect and reconnected for ever. Without it, both reconnect.
"""
from __future__ import annotations

import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab

ATTEMPT = {"ours": r"connecting to {ip}:1194 over", "openvpn": r"link remote: \[AF_INET\]{ip}:1194"}
PROFILE_EXTRA = "verify-x509-name not-the-server name\nconnect-retry 1\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "srv-tlsexit")
        try:
            yield lab
        finally:
            srv.stop(5)


def _attempts(kind: str, text: str) -> int:
    return len(re.findall(ATTEMPT[kind].format(ip=re.escape(SRV_IP)), text))



@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_tls_error_ends_the_run_with_tls_exit(lab, procs, kind):
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=PROFILE_EXTRA + "tls-exit\n"), f"cli-tlsexit-{kind}",
                wait=0)
    procs.append(cli)
    rc = cli.exit_within(20)
    log = cli.log()
    print(f"{kind} with tls-exit: exit status {rc}, {_attempts(kind, log)} attempt(s)")
    assert rc is not None, f"{kind} still running 20 s after the TLS error:\n{log[-3000:]}"
    assert _attempts(kind, log) == 1, log[-3000:]
    if kind == "ours":
        assert rc == 1 and "TLS error, exiting (tls-exit)" in log, log[-3000:]


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_without_tls_exit_the_client_tries_again(lab, procs, kind):
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=PROFILE_EXTRA), f"cli-notlsexit-{kind}", wait=0)
    procs.append(cli)
    end = time.monotonic() + 20
    while time.monotonic() < end and _attempts(kind, cli.log()) < 2:
        time.sleep(0.2)
    assert cli.alive() and _attempts(kind, cli.log()) >= 2, cli.log()[-3000:]
    cli.stop(5)
