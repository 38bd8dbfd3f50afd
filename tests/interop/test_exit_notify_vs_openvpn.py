"""What a stopping client tells the server, ours beside Debian's OpenVPN 2.6, in namespaces
(an OpenVPN 2.6 server; SIGTERM to the client once its tunnel is up).

OpenVPN 2.6's client (sig.c process_sigterm, process_explicit_exit_notification_init and
_timer_wakeup; options.c options_postprocess_mutate_ce drops the directive over TCP): without
explicit-exit-notify it exits at once and the server hears nothing (it keeps the client until
its ping-restart); with `explicit-exit-notify N` on UDP it sends EXIT (the 2.6 server
negotiates cc-exit), the server ends that client at once, and the client exits N seconds after
the signal. Ours sent the notification at every stop and exited at once.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

N = 2
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
SERVER_HEARD = "exit message received by peer"   # OpenVPN's server: "CC-EEN exit ..." or "OCC exit ..."
CLIENT_SENT = {"ours": "exit notification sent", "openvpn": "sending exit notification to peer"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _least_wait(kind: str) -> float:
    """The shortest wait that still counts as explicit-exit-notify's N s. OpenVPN counts it on its
    one-second clock (now updated once a second), so it may end up to a second early; ours
    counts from the signal."""
    return N - (1.1 if kind == "openvpn" else 0.1)


def _stop_and_time(cli) -> float:
    """SIGTERM; seconds until the process is gone (bounded)."""
    t0 = time.monotonic()
    os.killpg(cli.p.pid, signal.SIGTERM)
    cli.p.wait(N + 15)
    return time.monotonic() - t0


@pytest.mark.parametrize("proto, notify", [("udp", 0), ("udp", N), ("tcp", N)])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_stopping_client_notifies_only_with_explicit_exit_notify_on_udp(lab, procs, kind, proto, notify):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, proto), f"srv-{kind}-{proto}-{notify}")
    procs.append(srv)
    extra = f"explicit-exit-notify {notify}\n" if notify else ""
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, proto, extra=extra), f"cli-{kind}-{proto}-{notify}", wait=40)
    procs.append(cli)
    assert srv.wait_for("Peer Connection Initiated", 20)
    took = _stop_and_time(cli)
    expected = proto == "udp" and notify > 0
    heard = srv.wait_for(SERVER_HEARD, 3)         # bounded; 3 s of nothing when none is expected
    print(f"{kind} {proto} explicit-exit-notify {notify}: exited after {took:.1f} s, server heard an exit: {heard}")
    assert heard == expected, srv.log()[-2000:]
    assert (CLIENT_SENT[kind] in cli.log()) == expected, cli.log()[-2000:]
    if expected:
        assert took >= _least_wait(kind), f"exited {took:.1f} s after SIGTERM, before explicit-exit-notify's {N} s"


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_before_any_key_the_client_still_waits_explicit_exit_notify(lab, procs, kind):
    # No server listens: SIGTERM while the first attempt is under way, no data channel key yet.
    # OpenVPN 2.6 (sig.c process_sigterm -> process_explicit_exit_notification_init) enters its
    # wait all the same ("SIGTERM received, sending exit notification to peer"; nothing can go)
    # and exits N seconds later. Ours exited at once.
    start = lab.ours if kind == "ours" else lab.openvpn
    profile = client_profile(lab.pki, "udp", remotes=[("198.18.0.1", 1190, "udp")],
                             extra=f"explicit-exit-notify {N}\nserver-poll-timeout 30\n")
    cli = start(lab.cli, profile, f"cli-nokey-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for({"ours": "connecting to", "openvpn": "link remote"}[kind], 20), cli.log()[-2000:]
    took = _stop_and_time(cli)
    print(f"{kind}: no key yet, exited {took:.1f} s after SIGTERM")
    assert took >= _least_wait(kind), f"exited {took:.1f} s after SIGTERM, before explicit-exit-notify's {N} s"
    assert cli.p.returncode == 0
