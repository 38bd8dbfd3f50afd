"""`shaper 100000` on our client against Debian's OpenVPN 2.6 server, in namespaces: an iperf3
stream from the client through the tunnel stays near 100,000 bytes a second (asserted with a wide
margin: under 3x, over a tenth), far below the same stream without it; the tunnel stays up through
it (keepalive pings and the control channel are not held back behind the data: no restart), and a
ping passes right after.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

RATE = 100_000            # bytes a second


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("shaper")) as lab:
        lab.openvpn(lab.srv, server_config(lab.pki), "srv")
        yield lab


def _stream(lab, extra: str, name: str) -> tuple[float, str]:
    """Mbit/s iperf3 measured through our client with `extra` in its profile, and its log."""
    ours = lab.ours(lab.cli, client_profile(lab.pki, extra=extra), name)
    try:
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP), ours.log()[-2000:]
        mbit = lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds=4)
        assert ours.alive() and lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), ours.log()[-2000:]
        return mbit, ours.log()
    finally:
        ours.stop_promptly(5)


def test_a_shaped_stream_stays_near_the_rate_and_the_tunnel_stays_up(lab):
    shaped, log = _stream(lab, f"shaper {RATE}\n", "ours-shaped")
    bytes_per_s = shaped * 1e6 / 8
    assert RATE / 10 < bytes_per_s < 3 * RATE, (shaped, log[-2000:])
    assert log.count("tunnel up") == 1, log[-3000:]            # no restart under the shaped load
    plain, _ = _stream(lab, "", "ours-plain")
    assert plain * 1e6 / 8 > 3 * RATE, plain                   # the shaper, not the lab, held it
