"""atk42: Debian's 2.6.14 client under one certificate connecting, stopping with its EXIT
(explicit-exit-notify 1) and connecting again inside the hold our server gives each EXIT (5 s, as
2.6's schedule_exit), against our server with duplicate-cn: every held session and the newcomers
live side by side, so this is where two sessions could share an address or a peer-id, or where a
held one could be left behind. Another client pings through it all. In memory, with and without
duplicate-cn and from the same address and port: tests/gateway/test_client_exit_hold.py and
`python -m lab.reliability.exit_storm`."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from tests.interop.test_ops_vs_openvpn import Mgmt

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

CYCLES = 6
DROPS = ("source the client does not own", "unknown peer-id", "failed authentication", "internal error", "Traceback")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("exitstorm")) as lab:
        lab.c2 = lab.add_client_ns(2)
        yield lab


def _rows(m: Mgmt) -> list[list[str]]:
    """status 2's client rows with a virtual address: [name, real address, virtual address]."""
    return [ln.split(",")[1:4] for ln in m.cmd("status 2") if ln.startswith("CLIENT_LIST,") and ln.split(",")[3]]


def test_an_exit_and_reconnect_storm_from_one_certificate_leaves_one_session_per_address(lab, procs):
    sock = str(lab.tmp / "mgmt-storm.sock")
    srv = lab.udp_server("ours", server_config(lab.pki, extra=f"duplicate-cn\nmanagement {sock} unix\n"), "storm-srv")
    procs.append(srv)
    m = Mgmt(sock)
    procs.append(lab.openvpn(lab.c2, client_profile(lab.pki, client="client2", remotes=[("198.18.3.1", 1194, "udp")]),
                             "storm-c2"))
    assert lab.wait_ping(lab.c2, TUN_SERVER_IP), "no tunnel for the bystander"
    shared: list = []
    most = 0
    for i in range(CYCLES):
        a = lab.openvpn(lab.cli, client_profile(lab.pki, extra="explicit-exit-notify 1\n"), f"storm-a{i}")
        procs.append(a)
        os.killpg(a.p.pid, signal.SIGTERM)          # its EXIT: the server holds it 5 s
        assert srv.wait_count(": exit notification (EXIT)", i + 1, 15), srv.log()[-2000:]
        rows = _rows(m)
        most = max(most, sum(1 for r in rows if r[0] == "client1"))
        vaddrs = [r[2] for r in rows]
        if len(vaddrs) != len(set(vaddrs)):
            shared.append(rows)
    ended = srv.wait_count("disconnected: client exited (EXIT)", CYCLES, 20)
    rows = _rows(m)
    m.close()
    log = srv.log()
    print(f"{CYCLES} EXITs; at most {most} held sessions of client1 at once; rows after: {rows}")
    assert ended, log[-3000:]
    assert most >= 2, "no two held sessions at once: the case is not made"
    assert shared == []
    assert [r[0] for r in rows] == ["client2"], rows
    assert not [d for d in DROPS if d in log], log[-3000:]
    assert lab.ping(lab.c2, TUN_SERVER_IP, count=3) >= 1
    assert len(re.findall(r"client2/\S+: disconnected", log)) == 0
