"""route-delay at a reconnect without persist-tun, against Debian's OpenVPN 2.6, in namespaces.

2.6 closes its device at every restart without persist-tun (SIGUSR1, ping-restart), so the next
connection opens it again and route-delay's timer starts anew (init.c do_up: did_open_tun):
`up` at tunnel-up, route-up N seconds later, on the first connection and on the reconnect alike.
The same profile (route-delay DELAY, up and route-up recording when they ran) runs in Debian's client
and in ours against Debian's server; both must run up, route-up, up, route-up, each route-up
about the delay after its up -- a lower bound only, FLOOR: 2.6 counts the delay on its
whole-second clock (`now`, cached before the up script ran), so its wait is between N-1 and N+1 s
from the timer's start (1.43 s seen for N = 2), and the up script's own time stamp comes after
that start by the script's start-up (a fork and two execs: tenths of a second on a loaded
machine). N = 3 and a 1 s floor leave 2.6 a whole second of that (ours, on a monotonic clock
armed as its up script is handed over, two); the old bug's gap was the two scripts back to back.
Ours used to run the reconnect's route-up at once (its TUN and routes kept, the same push).
"""
from __future__ import annotations

import os
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

DELAY = 3
FLOOR = 1.0      # s: the least gap between an up and its route-up counted as a wait (above)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("rdreconn")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "rdsrv")
        yield lab


def _runs(d) -> list[tuple[str, float]]:
    """(kind, when) of each script run, in order."""
    out = []
    for f in sorted(x for x in os.listdir(d) if not x.endswith(".tmp")):
        ns, kind = f.split("-", 1)
        out.append((kind, int(ns) / 1e9))
    return out


def _run(lab: Lab, which: str) -> tuple[list[tuple[str, float]], str]:
    d = lab.tmp / f"rec-{which}"
    d.mkdir()
    scripts = []
    for kind in ("up", "route-up"):
        s = lab.write(f"rd-{which}-{kind}.sh", f"#!/bin/sh\nf={d}/$(date +%s%N)-{kind}\n: > $f.tmp\nmv $f.tmp $f\n")
        s.chmod(0o755)
        scripts.append(f"{kind} {s}")
    prof = client_profile(lab.pki, extra=f"script-security 2\nroute-delay {DELAY}\n" + "\n".join(scripts) + "\n")
    p = lab.ours(lab.cli, prof, f"rdcli-{which}", wait=0) if which == "ours" else \
        lab.openvpn(lab.cli, prof, f"rdcli-{which}", wait=0)
    try:
        end = time.monotonic() + 40
        while time.monotonic() < end and [k for k, _t in _runs(d)].count("route-up") < 1 and p.alive():
            time.sleep(0.1)
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, p.log()[-3000:]
        p.p.send_signal(10)                 # after route-up: 2.6 ignores SIGUSR1 while it initialises
        end = time.monotonic() + 40
        while time.monotonic() < end and [k for k, _t in _runs(d)].count("route-up") < 2 and p.alive():
            time.sleep(0.1)
    finally:
        if p.alive():
            p.p.send_signal(15)
        p.exit_within(15)
    return _runs(d), p.log()


def test_a_reconnect_without_persist_tun_waits_route_delay_again_as_openvpns(lab):
    theirs, t_log = _run(lab, "openvpn")
    ours, o_log = _run(lab, "ours")
    for runs, log in ((theirs, t_log), (ours, o_log)):
        assert [k for k, _t in runs] == ["up", "route-up", "up", "route-up"], (runs, log[-3000:])
        gaps = [runs[i + 1][1] - runs[i][1] for i in (0, 2)]
        assert all(g >= FLOOR for g in gaps), (gaps, log[-3000:])
