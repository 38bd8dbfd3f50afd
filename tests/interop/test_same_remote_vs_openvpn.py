"""Which remote a client tries first after a tunnel that was up ends, ours beside Debian's
OpenVPN 2.6, in namespaces: two OpenVPN servers (ports 1194 and 1195), a profile listing both,
the first server killed (SIGKILL: no exit notification) once the client is up on it.

OpenVPN 2.6 (init.c initialization_sequence_completed sets no_advance; next_connection_entry
keeps the current remote once when it is set): after the ping-restart (UDP) or the reset stream
(TCP) its client tries the same server again first, and only after that attempt fails the
second. Ours went straight to the second.
"""
from __future__ import annotations

import os
import re
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab

FIRST, SECOND = 1194, 1195
# The server pushes ping 1 / ping-restart 4: a dead UDP server is noticed within seconds.
SERVER_EXTRA = "keepalive 1 4\n"
CLIENT_EXTRA = "connect-retry 1\nserver-poll-timeout 5\n"
ATTEMPT = {   # one line per connection attempt, with the port tried
    "ours": r"connecting to {ip}:(\d+) over",
    "openvpn-udp": r"link remote: \[AF_INET\]{ip}:(\d+)",
    "openvpn-tcp": r"Attempting to establish TCP connection with \[AF_INET\]{ip}:(\d+)",
}
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _server(lab, proto: str, port: int) -> str:
    text = server_config(lab.pki, proto, port=port, extra=SERVER_EXTRA)
    return text.replace("server 198.19.0.0", "server 198.19.2.0") if port == SECOND else text


def _attempts(kind: str, proto: str, text: str) -> list[int]:
    rx = ATTEMPT["ours" if kind == "ours" else f"openvpn-{proto}"].format(ip=re.escape(SRV_IP))
    return [int(m.group(1)) for m in re.finditer(rx, text)]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_after_the_first_server_dies_the_client_tries_it_again_first(lab, procs, kind, proto):
    first = lab.openvpn(lab.srv, _server(lab, proto, FIRST), f"first-{kind}-{proto}")
    procs.append(first)
    second = lab.openvpn(lab.srv, _server(lab, proto, SECOND), f"second-{kind}-{proto}")
    procs.append(second)
    profile = client_profile(lab.pki, proto, remotes=[(SRV_IP, FIRST, proto), (SRV_IP, SECOND, proto)],
                             extra=CLIENT_EXTRA)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"client-{kind}-{proto}", wait=40)
    procs.append(cli)
    assert _attempts(kind, proto, cli.log()) == [FIRST], cli.log()[-3000:]
    mark = len(cli.log())
    os.killpg(first.p.pid, signal.SIGKILL)
    first.p.wait(5)
    assert cli.wait_count(UP[kind], 2, timeout=60), cli.log()[-3000:]
    after = _attempts(kind, proto, cli.log()[mark:])
    print(f"{kind} over {proto}, ports tried after the first server died: {after}")
    assert after[:2] == [FIRST, SECOND], cli.log()[mark:][-3000:]
    assert "Peer Connection Initiated" in second.log()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_connect_retry_max_ends_the_run_after_each_remote_was_tried_that_often(lab, procs, kind):
    # Nothing answers on either remote: with `connect-retry-max 2` both clients try each twice and
    # exit ("All connections have been connect-retry-max (2) times unsuccessful, exiting"). Ours
    # accepted the directive and retried for ever.
    profile = client_profile(lab.pki, "udp", remotes=[(SRV_IP, 1190, "udp"), (SRV_IP, 1191, "udp")],
                             extra="connect-retry 1 1\nserver-poll-timeout 2\nconnect-retry-max 2\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, profile, f"retry-max-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for("connect-retry-max \\(2\\) times unsuccessful, exiting", 60), cli.log()[-3000:]
    cli.p.wait(timeout=20)
    assert cli.p.returncode != 0
    assert _attempts(kind, "udp", cli.log()) == [1190, 1191, 1190, 1191], cli.log()[-3000:]
