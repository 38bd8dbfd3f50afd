"""`replay-window 0` against Debian's OpenVPN 2.6, in namespaces: 2.6's strict mode (the first
packet id, then only newest + 1) on the data channel and the tls-crypt ids. On a clean link
nothing is lost or reordered, so a tunnel must come up and carry traffic both ways with one end
ours and the other Debian's, each with window 0 (what ours refuses as 2.6 would:
tests/unit/test_replay.py, test_replay_session.py).

Over TCP both directions. Over UDP only with our server: Debian's 2.6.14 server refuses its own
client's third control packet as a replay there (its session's window starts after the
stateless cookie exchange, and strict mode wants id 1 of a new epoch: "tls-crypt unwrap error:
packet replay" for #3, seen Debian to Debian), so no UDP setup with replay-window 0 works with
its server; ours takes the first id of an epoch whatever it is and lets Debian's client in.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

EXTRA = "replay-window 0\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("rw0")) as lab:
        yield lab


@pytest.mark.parametrize("proto, server", [("tcp", "openvpn"), ("tcp", "ours"), ("udp", "ours")])
def test_window_zero_tunnel_carries_traffic(lab, proto, server):
    tag = f"{proto}-{server}"
    cfg = server_config(lab.pki, proto=proto, extra=EXTRA)
    s = lab.ours(lab.srv, cfg, f"rw0srv-{tag}", pattern="listening on") if server == "ours" else \
        lab.openvpn(lab.srv, cfg, f"rw0srv-{tag}")
    prof = client_profile(lab.pki, proto=proto, extra=EXTRA)
    c = lab.openvpn(lab.cli, prof, f"rw0cli-{tag}") if server == "ours" else lab.ours(lab.cli, prof, f"rw0cli-{tag}")
    try:
        # Up first (polled: the last route or address may land just after the log line), then
        # five in a row with none lost: with window 0 a reordered or replayed one would be.
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP), (c.log()[-2000:], s.log()[-2000:])
        assert lab.ping(lab.cli, TUN_SERVER_IP, 5, interval=0.05) == 5, (c.log()[-2000:], s.log()[-2000:])
        ours = s if server == "ours" else c
        assert "replayed" not in ours.log(), ours.log()[-2000:]
    finally:
        c.stop_promptly(8)
        s.stop_promptly(8)
