"""Which pushed options outlive a reconnect to a server that does not push them, against Debian's
OpenVPN 2.6 in namespaces: a first server pushes `route-metric`, `inactive` (with a minimum no
client reaches) and `session-timeout`, then restarts without them (explicit-exit-notify sends the
client back to its successor). 2.6 writes pulled values into its options and a reconnect puts back
only what pre_connect_save kept (routes, route-gateway, DNS/dhcp-options, client-nat, cipher,
ping, compression): its second connection still has the first server's metric on the pushed route
and prints the first server's timers ("Timers: ... inactive 3600 1000000000, session-timeout
7200"), which it arms at every start (init.c do_init_timers).

Ours is stricter on purpose (README, "Thirty-eighth session (helper pull41)"): a value only holds
for the connection whose server pushed it, so a hostile or outdated first server's metric and
timers do not reach an honest second one; through the same two servers its route has the
kernel's default metric. (The pulled `shaper` likewise:
test_shaper_after_reconnect_vs_openvpn.py.) Our timers are checked in tests/gateway/test_pull_reset.py.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, TUN_SERVER_IP, Lab

METRIC = 77
HOSTILE = ('push "route-metric 77"\npush "inactive 3600 1000000000"\npush "session-timeout 7200"\n')
BEHIND_NET = BEHIND_IP.rsplit(".", 1)[0] + ".0/24"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("pullreset")) as lab:
        yield lab


def _behind_route(lab) -> str:
    """The client namespace's route to the pushed network (both servers push it)."""
    return lab.cli.run(f"ip route show {BEHIND_NET}").stdout.strip()


def _through_two_servers(lab, procs, client, name: str, up: str):
    """`client` (lab.openvpn or lab.ours) connected to a server pushing HOSTILE, then to its
    successor pushing none of it; returns (client, second server, route before, route after)."""
    first = lab.openvpn(lab.srv, server_config(lab.pki, extra=HOSTILE), f"pull41-srv1-{name}")
    procs.append(first)
    cli = client(lab.cli, client_profile(lab.pki), f"pull41-{name}")
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), cli.log()[-2000:]
    before = _behind_route(lab)
    first.stop()                                        # explicit-exit-notify: the client restarts
    second = lab.openvpn(lab.srv, server_config(lab.pki), f"pull41-srv2-{name}")
    procs.append(second)
    assert cli.wait_count(up, 2, 60), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), cli.log()[-2000:]
    return cli, second, before, _behind_route(lab)


@pytest.fixture(scope="module")
def runs(lab):
    """Debian's client, then ours, through the same pair of servers (one run each for the module)."""
    procs: list = []
    try:
        theirs, srv, t_before, t_after = _through_two_servers(
            lab, procs, lab.openvpn, "theirs", "Initialization Sequence Completed")
        log = theirs.log()
        theirs.stop_promptly(5)
        srv.stop()
        ours, _, o_before, o_after = _through_two_servers(lab, procs, lab.ours, "ours", "tunnel up")
        assert ours.alive(), ours.log()[-2000:]
        yield {"theirs": (log, t_before, t_after), "ours": (ours.log(), o_before, o_after)}
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)


def _second_timers(log: str) -> str:
    """Debian's client's "Timers:" line printed after the second push (the options in force then)."""
    replies = [i for i, line in enumerate(log.splitlines()) if "'PUSH_REPLY," in line]
    assert len(replies) == 2, log[-3000:]
    lines = log.splitlines()
    assert "route-metric" in lines[replies[0]] and "route-metric" not in lines[replies[1]], replies
    timers = [line for line in lines[replies[1]:] if "Timers: " in line]
    assert timers, log[-3000:]
    return timers[0]


@pytest.mark.parametrize("option", ["route-metric", "inactive", "session-timeout"])
def test_a_pulled_option_after_a_reconnect_to_a_server_without_it(runs, option):
    log, before, after = runs["theirs"]
    _, ours_before, ours_after = runs["ours"]
    if option == "route-metric":
        # Both clients took the first server's metric on its route ...
        assert f"metric {METRIC}" in before and f"metric {METRIC}" in ours_before, (before, ours_before)
        # ... Debian's keeps it on the second server's route; ours does not (the second server's say).
        assert f"metric {METRIC}" in after, after
        assert ours_after and f"metric {METRIC}" not in ours_after, ours_after
    else:
        want = {"inactive": "inactive 3600 1000000000", "session-timeout": "session-timeout 7200"}[option]
        assert want in _second_timers(log), log[-3000:]
