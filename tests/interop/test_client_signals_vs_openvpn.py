"""SIGUSR1 to a client whose tunnel is up, ours beside Debian's OpenVPN 2.6, in namespaces: an
OpenVPN 2.6 server on the profile's second remote (nothing listens on the first), so the client
is up on the second one when the signal comes.

OpenVPN 2.6 ("SIGUSR1[hard,] received, process restarting"; init.c
initialization_sequence_completed sets no_advance, next_connection_entry keeps the remote
once): after connect-retry's pause it connects to the same, second, remote again, and the
tunnel comes back. Ours did not handle SIGUSR1: the default action killed it without its
clean-up. SIGHUP (2.6 re-reads its config and starts over) is refused by ours, logged, and the
tunnel stays.
"""
from __future__ import annotations

import os
import re
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab

DEAD, LIVE = 1190, 1194
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
ATTEMPT = {"ours": r"connecting to {ip}:(\d+) over", "openvpn": r"link remote: \[AF_INET\]{ip}:(\d+)"}
RESTART_LINE = {"ours": "SIGUSR1: restarting the connection", "openvpn": r"SIGUSR1\[hard,\] received, process restarting"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _attempts(kind: str, text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(ATTEMPT[kind].format(ip=re.escape(SRV_IP)), text)]


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_sigusr1_brings_the_tunnel_back_on_the_same_remote(lab, procs, kind):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", port=LIVE), f"srv-usr1-{kind}")
    procs.append(srv)
    profile = client_profile(lab.pki, "udp", remotes=[(SRV_IP, DEAD, "udp"), (SRV_IP, LIVE, "udp")],
                             extra="connect-retry 1\nserver-poll-timeout 2\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"cli-usr1-{kind}", wait=40)
    procs.append(cli)
    assert _attempts(kind, cli.log()) == [DEAD, LIVE], cli.log()[-3000:]
    mark = len(cli.log())
    os.killpg(cli.p.pid, signal.SIGUSR1)
    assert cli.wait_for(UP[kind], 30, after=mark), cli.log()[mark:][-3000:]
    after = cli.log()[mark:]
    print(f"{kind}: ports tried after SIGUSR1: {_attempts(kind, after)}")
    assert re.search(RESTART_LINE[kind], after), after[-3000:]
    assert _attempts(kind, after) == [LIVE], after[-3000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel after SIGUSR1"
    if kind == "ours":
        # SIGHUP: refused, said so; the tunnel stays, no new connection
        mark = len(cli.log())
        os.killpg(cli.p.pid, signal.SIGHUP)
        assert cli.wait_for("SIGHUP: re-reading the profile is not supported", 10, after=mark), cli.log()[-2000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2 and _attempts(kind, cli.log()[mark:]) == []
    cli.stop(8)
    assert cli.p.returncode == 0
