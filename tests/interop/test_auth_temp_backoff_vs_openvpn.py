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
import shutil
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab

BACKOFF = 6
WAIT_LINE = {"ours": r"restarting in (\d+) s", "openvpn": r"Restart pause, (\d+) second"}
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _script(lab, name: str, reason: str = f"TEMP[backoff {BACKOFF}]: busy"):
    """Deferred check: each call's time (s since the epoch) appended to `calls`; the first refused
    with `reason`, later ones accepted."""
    calls = lab.tmp / f"{name}-calls.log"
    script = lab.write(f"{name}.sh", "#!/bin/sh\n"
                       f'date +%s.%N >> {calls}\n'
                       f'if [ "$(wc -l < {calls})" -eq 1 ]; then\n'
                       f'  echo "{reason}" > "$auth_failed_reason_file"; echo 0 > "$auth_control_file"\n'
                       'else\n  echo 1 > "$auth_control_file"\nfi\nexit 2\n')
    script.chmod(0o755)
    return script, calls


# fuzz50: a flag with a space before it is unknown to 2.6 (strtok splits at `,` only), so
# `advance no, backoff 6` asks for no backoff: connect-retry's 1 s. Ours trimmed and waited 6.
@pytest.mark.parametrize("reason, wait", [(f"TEMP[backoff {BACKOFF}]: busy", BACKOFF),
                                          (f"TEMP[advance no, backoff {BACKOFF}]: busy", 1)],
                         ids=["backoff", "spaced-flag"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_auth_failed_temp_backoff_is_waited_before_the_next_attempt(lab, procs, kind, reason, wait):
    script, calls = _script(lab, f"temp-{kind}-{wait}", reason)
    creds = lab.write("creds.txt", "alice\nsecret\n")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\n")), f"srv-temp-{kind}-{wait}")
    procs.append(srv)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nconnect-retry 1\n"),
                f"cli-temp-{kind}-{wait}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[kind], 40), cli.log()[-3000:]
    log = cli.log()
    assert reason.split(":")[0] in log, log[-3000:]
    waits = [int(w) for w in re.findall(WAIT_LINE[kind], log)]
    stamps = [float(t) for t in calls.read_text().split()]
    gap = stamps[1] - stamps[0]
    print(f"{kind}: restart pauses {waits}, {gap:.1f} s between the two password checks")
    assert waits == [wait], log[-3000:]
    assert len(stamps) == 2 and gap >= wait - 0.5, f"asked again {gap:.1f} s after the refusal"
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel after the retry"


SECOND_ADDR, NEXT_REMOTE = "198.18.0.3", "198.18.0.4"     # more addresses of the server's namespace
ATTEMPT = {"ours": r"connecting to ([\d.]+):1194 over", "openvpn": r"link remote: \[AF_INET\]([\d.]+):1194"}


@pytest.fixture
def two_address_name(lab):
    """`vpn.lab` resolving to the server's address and a second one in the client's namespace
    (/etc/netns/NAME/hosts, which `ip netns exec` puts over /etc/hosts), and a third address
    of the server for the profile's next remote."""
    d = Path("/etc/netns") / lab.cli.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts").write_text(f"127.0.0.1 localhost\n{SRV_IP} vpn.lab\n{SECOND_ADDR} vpn.lab\n")
    for a in (SECOND_ADDR, NEXT_REMOTE):
        lab.srv.run(f"ip addr add {a}/32 dev lo")
    try:
        yield "vpn.lab"
    finally:
        shutil.rmtree(d, ignore_errors=True)
        for a in (SECOND_ADDR, NEXT_REMOTE):
            lab.srv.run(f"ip addr del {a}/32 dev lo", check=False)


@pytest.mark.parametrize("flag", ["advance addr", "advance remote"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_auth_failed_temp_advance_remote_skips_the_names_other_addresses(lab, procs, two_address_name, kind, flag):
    # OpenVPN 2.6: `advance addr` goes on to the name's next address, `advance remote` to the
    # next remote (options_util.c parse_auth_failed_temp sets advance_next_remote; init.c
    # next_connection_entry skips the name's other addresses). Ours took the next address for both.
    script, calls = _script(lab, f"adv-{kind}-{flag[8:]}", reason=f"TEMP[{flag}]: elsewhere")
    creds = lab.write("creds.txt", "alice\nsecret\n")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(   # multihome: replies from the address asked
        f"script-security 2\nauth-user-pass-verify {script} via-file\nmultihome\n")), f"srv-adv-{kind}")
    procs.append(srv)
    profile = client_profile(lab.pki, "udp", remotes=[(two_address_name, 1194, "udp"), (NEXT_REMOTE, 1194, "udp")],
                             extra=f"auth-user-pass {creds}\nconnect-retry 1\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"cli-adv-{kind}-{flag[8:]}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[kind], 40), cli.log()[-3000:]
    tried = re.findall(ATTEMPT[kind], cli.log())
    print(f"{kind} {flag}: addresses tried {tried}")
    # the name's first address as the resolver sorts them (RFC 6724: not always the hosts file's order)
    first, other = (SRV_IP, SECOND_ADDR) if tried[:1] == [SRV_IP] else (SECOND_ADDR, SRV_IP)
    assert tried == [first, other if flag == "advance addr" else NEXT_REMOTE], cli.log()[-3000:]
    cli.stop(8)
