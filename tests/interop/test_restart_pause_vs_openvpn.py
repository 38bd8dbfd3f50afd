"""The pause before each connection attempt: our client beside Debian's OpenVPN 2.6 client, in
namespaces, on the same profile: two TCP remotes on the server's address where nothing listens
(each attempt refused at once), `connect-retry 1 3`.

OpenVPN 2.6 (init.c socket_restart_pause, before every attempt but the first): "Restart pause,
1 second(s)" between every two attempts, remotes of one round included; after five rounds in
vain (the 10th attempt) it doubles per round, up to connect-retry's maximum: 2, 2, 3, 3...
Ours went from the first remote to the second at once and doubled the pause after each round
(0, 1, 0, 2, 0, 3...). The sequence of pauses each logs is compared, not the time taken."""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile
from lab.netns import SRV_IP, Lab

PAUSES = 12
EXPECTED = [1] * 9 + [2, 2, 3]
PAUSE_LINE = {"ours": r"restarting in (\d+) s", "openvpn": r"Restart pause, (\d+) second"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def test_the_pauses_between_attempts_are_openvpns(lab, procs):
    profile = client_profile(lab.pki, "tcp", remotes=[(SRV_IP, 7001, "tcp"), (SRV_IP, 7002, "tcp")],
                             extra="connect-retry 1 3\n")
    clients = {"openvpn": lab.openvpn(lab.cli, profile, "pause-openvpn", wait=0),
               "ours": lab.ours(lab.cli, profile, "pause-ours", wait=0)}
    procs.extend(clients.values())
    seen = {}
    for kind, p in clients.items():
        text = PAUSE_LINE[kind].split(" (")[0]
        assert p.wait_count(text, PAUSES, 90), p.log()[-3000:]
        seen[kind] = [int(n) for n in re.findall(PAUSE_LINE[kind], p.log())][:PAUSES]
    assert seen["openvpn"] == EXPECTED, seen       # the premise: what 2.6.14 does
    assert seen["ours"] == seen["openvpn"], seen


POLL_LINE = {"ours": "(server-poll-timeout)", "openvpn": "Server poll timeout, restarting"}


def test_no_pause_after_a_server_poll_timeout(lab, procs):
    """Two silent UDP remotes, `server-poll-timeout 2`: 2.6 restarts at once after each poll
    timeout, round after round (its restart_sleep_seconds -1); ours paused after each round."""
    profile = client_profile(lab.pki, "udp", remotes=[(SRV_IP, 7001, "udp"), (SRV_IP, 7002, "udp")],
                             extra="connect-retry 3 10\nserver-poll-timeout 2\n")
    clients = {"openvpn": lab.openvpn(lab.cli, profile, "poll-openvpn", wait=0),
               "ours": lab.ours(lab.cli, profile, "poll-ours", wait=0)}
    procs.extend(clients.values())
    for kind, p in clients.items():
        assert p.wait_count(POLL_LINE[kind], 5, 60), p.log()[-3000:]
        assert not re.search(PAUSE_LINE[kind], p.log()), p.log()[-3000:]
