"""`inactive N [BYTES]` against Debian's OpenVPN 2.6, in namespaces (gateway/inactivity.py).

What a user checks: an idle client exits with OpenVPN's log line while keepalive pings go on
(pings are not traffic); a server's pushed `inactive` is obeyed; a client passing traffic stays up;
our server disconnects the idle one of two OpenVPN clients and keeps the busy one.
The traffic is looked at every N/16 s (at least 0.5 s), so the end comes N to N + max(1, N/8)
seconds after the last traffic (tests/gateway/test_inactive.py holds it to that on a fake clock):
the bounds below allow more, for start-up on a loaded machine.
"""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

EXIT_LINE = "Inactivity timeout (--inactive), exiting"
PINGS = 'ping 1\npull-filter ignore "ping"\n'      # a keepalive every second, whatever the server pushes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("inactive")) as lab:
        yield lab



@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_idle_client_exits_although_pings_flow(lab, procs, proto):
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, proto), f"srv-idle-{proto}"))
    # `ping 1` (kept: the pushed ping is filtered out): a keepalive every second, not traffic.
    cli = lab.ours(lab.cli, client_profile(lab.pki, proto, extra=f"inactive 2\n{PINGS}"), f"ours-idle-{proto}")
    procs.append(cli)
    up = time.monotonic()
    rc = cli.exit_within(20)
    assert rc == 0, f"the idle client did not exit by itself (rc {rc}):\n{cli.log()[-2000:]}"
    assert time.monotonic() - up >= 1.5, "exited before N seconds had passed"
    assert EXIT_LINE in cli.log()
    assert "tun0" not in lab.cli.run("ip -o link show", check=False).stdout, "TUN device left behind"


def test_pushed_inactive_is_obeyed_and_traffic_keeps_the_tunnel(lab, procs):
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, extra='push "inactive 2"\n'), "srv-push"))
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra=PINGS), "ours-push")
    procs.append(cli)
    # Traffic for 6 s (three times N): the tunnel stays, every ping is answered.
    assert lab.ping(lab.cli, TUN_SERVER_IP, count=20, interval=0.3, timeout=30) == 20
    assert cli.alive(), "exited while traffic flowed:\n" + cli.log()[-2000:]
    rc = cli.exit_within(20)
    assert rc == 0 and EXIT_LINE in cli.log(), cli.log()[-2000:]


def test_server_disconnects_only_the_idle_client(lab, procs):
    srv = lab.ours(lab.srv, server_config(lab.pki, extra="inactive 2\n"), "oursrv-inactive",
                   pattern=r"listening on UDP")
    procs.append(srv)
    ns2 = lab.add_client_ns(3)
    busy = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), "busy")
    # OpenVPN's client pinging every second: the server must not take its pings for traffic.
    idle = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.4.1", 1194, "udp")],
                                           extra=PINGS), "idle")
    procs += [busy, idle]
    # The busy client pings through the tunnel for ~9 s (four times N and more).
    assert lab.ping(lab.cli, TUN_SERVER_IP, count=30, interval=0.3, timeout=40) == 30, srv.log()[-2000:]
    assert srv.wait_for(r"client2/\S+: Inactivity timeout \(--inactive\): disconnected", 10), srv.log()[-3000:]
    assert "client1/" not in "".join(ln for ln in srv.log().splitlines() if "Inactivity" in ln)
    assert lab.ping(lab.cli, TUN_SERVER_IP, count=2) == 2, "the busy client lost its tunnel"


def test_server_with_compression_framing_still_disconnects_an_idle_client(lab, procs):
    """`comp-lzo no`: OpenVPN frames its pings too (17 bytes counted in the data key); a ping must
    not pass for a byte of traffic, or the idle client never goes."""
    srv = lab.ours(lab.srv, server_config(lab.pki, extra="inactive 2\ncomp-lzo no\npush \"comp-lzo no\"\n"),
                   "oursrv-inactive-lzo", pattern=r"listening on UDP")
    procs.append(srv)
    idle = lab.openvpn(lab.cli, client_profile(lab.pki, extra="comp-lzo no\n" + PINGS), "idle-lzo")
    procs.append(idle)
    assert srv.wait_for(r"Inactivity timeout \(--inactive\): disconnected", 15), srv.log()[-3000:]
