"""A client's exit notification on the server, Debian's OpenVPN 2.6 server beside ours, with
Debian's clients (in-memory cases: tests/gateway/test_client_exit_hold.py).

2.6's server (push.c receive_exit_message -> schedule_exit) ends a client that says EXIT ~5 s
later ("Delayed exit in 5 seconds"); measured here: the packets the client still sends in its
explicit-exit-notify wait reach the server's TUN and the answers reach the client, and its pool
address is given to no client connecting meanwhile: 2.6 lets that one in with no address ("no
free --ifconfig-pool addresses are available"; Debian's client completes its initialization
without one), and so does ours since compat42 (it refused it TEMP before). Ours released the
client at the EXIT: its later packets were counted as drops and its address went to the next
client at once.
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

HELD = {"openvpn": "CC-EEN exit message received by peer", "ours": r"client1/\S+: exit notification \(EXIT\)"}
ENDED = {"openvpn": r"client1/\S+ SIGTERM\[soft,delayed-exit\]", "ours": r"client1/\S+: disconnected: client exited"}
SPURIOUS = ("source the client does not own", "unknown peer-id", "failed authentication")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2", "client3"], tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.c2, lab.c3 = lab.add_client_ns(2), lab.add_client_ns(3)
        yield lab


def _replies_after(ping_log: str, t: float) -> int:
    """Echo replies ping -D stamped after wall time `t`."""
    return sum(1 for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", ping_log, re.M) if float(m.group(1)) > t)


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_after_its_exit_a_clients_packets_pass_and_its_address_waits(lab, procs, kind):
    # The pool's two addresses: client1 (leaving) and client3 (staying) hold them.
    srv = lab.udp_server(kind, server_config(lab.pki, "udp", nopool=True, extra="ifconfig-pool 198.19.0.2 198.19.0.3\n"),
                         f"srv-{kind}")
    procs.append(srv)
    a = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra="explicit-exit-notify 4\n"), f"a-{kind}")
    procs.append(a)
    procs.append(lab.openvpn(lab.c3, client_profile(lab.pki, "udp", client="client3",
                                                    remotes=[("198.18.4.1", 1194, "udp")]), f"c-{kind}"))
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no tunnel before the exit"
    ping = lab.start(lab.cli, ["ping", "-D", "-n", "-i", "0.2", "-w", "30", TUN_SERVER_IP], f"ping-{kind}")
    procs.append(ping)
    os.killpg(a.p.pid, signal.SIGTERM)
    assert srv.wait_for(HELD[kind], 15), srv.log()[-2000:]
    seen, t_seen = time.time(), time.monotonic()
    b = lab.openvpn(lab.c2, client_profile(lab.pki, "udp", client="client2", remotes=[("198.18.3.1", 1194, "udp")]),
                    f"b-{kind}", wait=0)
    procs.append(b)
    assert srv.wait_for(ENDED[kind], 20), srv.log()[-2000:]
    held = time.monotonic() - t_seen
    ping.stop()
    after = _replies_after(ping.log(), seen + 0.3)
    log = srv.log()
    end_at = re.search(ENDED[kind], log).start()
    given = [m.start() for m in re.finditer(r"^.*client2.*198\.19\.0\.2.*$", log, re.M)]
    print(f"{kind}: held {held:.1f} s after the EXIT was logged; {after} echo replies after it; "
          f"client2 given client1's address {'never' if not given else 'after the end' if min(given) > end_at else 'BEFORE the end'}")
    assert after >= 3, ping.log()[-1500:]
    assert 3.0 <= held <= 9.0
    assert not given or min(given) > end_at, log[-3000:]
    # the newcomer to the full pool: let in with no address, by both servers
    assert "no free --ifconfig-pool addresses are available" in log, log[-3000:]
    assert b.wait_for("Initialization Sequence Completed", 15), b.log()[-2000:]
    assert "AUTH_FAILED" not in b.log(), b.log()[-2000:]
    if kind == "ours":
        assert not [s for s in SPURIOUS if s in log], log[-2000:]
