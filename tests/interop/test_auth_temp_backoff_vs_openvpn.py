"""AUTH_FAILED,TEMP[backoff N] from Debian's OpenVPN 2.6 server, our client beside OpenVPN 2.6's,
in namespaces. The server's password check (a deferred auth-user-pass-verify script) refuses the
first login with the reason `TEMP[backoff 6]: busy` in $auth_failed_reason_file, which 2.6 sends
as `AUTH_FAILED,TEMP[backoff 6]: busy`, and accepts the next.

OpenVPN 2.6's client (options_util.c parse_auth_failed_temp reads `backoff N` into
server_backoff_time; init.c socket_restart_pause waits max(connect-retry's pause, N), at most
connect-retry's maximum, and forgets N after that restart): "Restart pause, 6 second(s)", then
the same server again. Ours honoured the flags' `advance` but not `backoff`: it asked again
after its own pause, one second here, of a server that had said "not before 6 s".
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

BACKOFF = 6
WAIT_LINE = {"ours": r"restarting in (\d+) s", "openvpn": r"Restart pause, (\d+) second"}
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _script(lab, name: str):
    """Deferred check: each call's time (s since the epoch) appended to `calls`; the first refused
    with the TEMP reason, later ones accepted."""
    calls = lab.tmp / f"{name}-calls.log"
    script = lab.write(f"{name}.sh", "#!/bin/sh\n"
                       f'date +%s.%N >> {calls}\n'
                       f'if [ "$(wc -l < {calls})" -eq 1 ]; then\n'
                       f'  echo "TEMP[backoff {BACKOFF}]: busy" > "$auth_failed_reason_file"; echo 0 > "$auth_control_file"\n'
                       'else\n  echo 1 > "$auth_control_file"\nfi\nexit 2\n')
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_auth_failed_temp_backoff_is_waited_before_the_next_attempt(lab, procs, kind):
    script, calls = _script(lab, f"temp-{kind}")
    creds = lab.write("creds.txt", "alice\nsecret\n")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\n")), f"srv-temp-{kind}")
    procs.append(srv)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nconnect-retry 1\n"),
                f"cli-temp-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[kind], 40), cli.log()[-3000:]
    log = cli.log()
    assert f"TEMP[backoff {BACKOFF}]" in log, log[-3000:]
    waits = [int(w) for w in re.findall(WAIT_LINE[kind], log)]
    stamps = [float(t) for t in calls.read_text().split()]
    gap = stamps[1] - stamps[0]
    print(f"{kind}: restart pauses {waits}, {gap:.1f} s between the two password checks")
    assert waits == [BACKOFF], log[-3000:]
    assert len(stamps) == 2 and gap >= BACKOFF - 0.5, f"asked again {gap:.1f} s after the refusal"
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel after the retry"
