"""review11c: two sessions of one certificate while a slow client-connect script decides, against
Debian's OpenVPN 2.6 and ours (duplicate-cn off): one client of the name is left. Ours let both
in (each reached its push before the other was established); the engine test is
tests/engine/test_deferred_connect_duplicates.py."""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from tests.interop.test_ops_vs_openvpn import Mgmt

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("dupcn")) as lab:
        yield lab


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_one_name_is_left_after_two_sessions_wait_for_client_connect(lab, procs, server):
    seen = lab.tmp / f"connect-dup-{server}.log"
    script = lab.write(f"slow-connect-{server}.sh", f"#!/bin/sh\nsleep 3\necho \"$common_name\" >> {seen}\n")
    script.chmod(0o755)
    sock = str(lab.tmp / f"mgmt-dup-{server}.sock")
    cfg = server_config(lab.pki, extra=f"script-security 2\nclient-connect {script}\nmanagement {sock} unix\n")
    procs.append(lab.udp_server(server, cfg, f"dupsrv-{len(lab.procs)}"))
    m = Mgmt(sock)
    m.lines(0.3)
    clients = [lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"dupcli-{len(lab.procs)}-{i}", wait=0)
               for i in range(2)]
    procs.extend(clients)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and len(seen.read_text().splitlines() if seen.exists() else []) < 2:
        m.lines(0.5)                                # both verdicts given (yes, both times)
    m.lines(1.0)
    # Clients in the tunnel (a virtual address): a handshake under way (the other one trying
    # again) is a row of its own in both servers' lists, UNDEF or named, without one (2.6's
    # multi_print_status lists every instance).
    listed = [ln for ln in m.cmd("status 2") if ln.startswith("CLIENT_LIST,") and ln.split(",")[3]]
    m.close()
    assert len(listed) == 1, (listed, procs[0].log()[-3000:])
