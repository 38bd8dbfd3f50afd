"""A pushed `shaper` and a reconnect, against Debian's OpenVPN 2.6 in namespaces: a server pushes
`shaper 200000`, then restarts without it (explicit-exit-notify sends the client back). Debian's client
starts the next connection shaped at that rate ("Output Traffic Shaping initialized" after the restart;
the second push has no shaper and changes nothing): 2.6 writes the pulled value into its options, which a
reconnect does not restore. Ours is stricter on purpose (README, helpers pull41 and compat41): a pushed
value lasts the connection whose server pushed it, so a first server's rate does not throttle the next
server's tunnel. While shaped, ours goes packet by packet, as 2.6 does: no 10 ms on the link carries more
than a few packets (a TUN read brought a TCP super-packet's segments, which left back to back: 38 KB in
one 10 ms at this rate, Debian's client 3 KB).
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.shaper_bursts import capture, datagrams, most_in

RATE = 200_000            # bytes a second
BURST_MAX = 12_000        # bytes in any 10 ms: 2,000 at the rate, a late wake-up's 2,000, a packet, slack
SHAPED_LINE = f"Output Traffic Shaping initialized at {RATE} bytes per second"

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("shaperkept")) as lab:
        yield lab


def _first_server(lab, procs, client, name: str):
    """`client` (lab.openvpn or lab.ours) connected to a server pushing the shaper; (client, server)."""
    first = lab.openvpn(lab.srv, server_config(lab.pki, extra=f'push "shaper {RATE}"'), f"srv-push-{name}")
    procs.append(first)
    cli = client(lab.cli, client_profile(lab.pki), name)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), cli.log()[-2000:]
    return cli, first


def _second_server(lab, procs, cli, first, name: str, up: str):
    """The first server stopped, its successor pushing none started; the server once `cli` is up again
    (its `up` line twice)."""
    first.stop()                                        # explicit-exit-notify: the client restarts
    second = lab.openvpn(lab.srv, server_config(lab.pki), f"srv-plain-{name}")
    procs.append(second)
    assert cli.wait_count(up, 2, 60), cli.log()[-3000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), cli.log()[-2000:]
    return second


def test_debians_client_keeps_the_pulled_shaper_ours_keeps_it_for_its_connection(lab, procs):
    theirs, first = _first_server(lab, procs, lab.openvpn, "theirs")
    srv = _second_server(lab, procs, theirs, first, "theirs", "Initialization Sequence Completed")
    log = theirs.log()
    after = log[log.index("Initialization Sequence Completed"):]
    replies = [line for line in log.splitlines() if "'PUSH_REPLY," in line]
    assert len(replies) == 2 and f"shaper {RATE}" in replies[0] and "shaper" not in replies[1], replies
    assert SHAPED_LINE in after and "OPTIONS IMPORT: traffic shaper enabled" not in after, log[-3000:]
    theirs.stop_promptly(5)
    srv.stop()
    ours, first = _first_server(lab, procs, lab.ours, "ours")
    cap = capture(lab, "shaper-cap")
    procs.append(cap)
    bytes_per_s = lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds=3) * 1e6 / 8
    assert RATE / 10 < bytes_per_s < 3 * RATE, (bytes_per_s, ours.log()[-3000:])
    cap.stop()
    sent = datagrams(cap.log())
    assert sum(n for _, n in sent) > RATE, len(sent)               # the stream went by the capture
    assert most_in(sent, 0.010) < BURST_MAX, most_in(sent, 0.010)
    _second_server(lab, procs, ours, first, "ours", "tunnel up")
    bytes_per_s = lab.iperf(lab.srv, TUN_SERVER_IP, lab.cli, seconds=2) * 1e6 / 8
    assert bytes_per_s > 5 * RATE, (bytes_per_s, ours.log()[-3000:])   # the first server's rate is gone
    assert ours.alive(), ours.log()[-2000:]
