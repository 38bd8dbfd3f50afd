"""Per-client lines read as OpenVPN 2.6.14 reads them (compat45), Debian's client against
Debian's server and ours with the same client-config-dir file: 2.6 applies `comp-lzo no` and
`ping-restart` to that client (multi.c CLIENT_CONNECT_OPT_MASK, init.c do_deferred_options),
takes `cipher` and `echo`, and skips an unknown line and a server-only one (`route`) with a
warning naming the file and line -- the client connects and pings through the tunnel, framed
with the LZO stub, and is dropped at its own ping-restart (4 s; the server's is 60) once it
falls silent. Ours refused the client at the first of those lines. (A line we apply only to the
whole server, `inactive`, refusing the client: tests/engine/test_ccd_session_lines.py.)
"""
from __future__ import annotations

import os
import signal

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

CCD = ('comp-lzo no\npush "comp-lzo no"\nping-restart 4\nfrobnicate 1\nroute 198.18.9.0 255.255.255.0\n'
       'cipher AES-128-CBC\necho msg hello\nifconfig-push 198.19.0.74 255.255.255.0\n')
SKIPPED = {"openvpn": (r"Unrecognized option or missing or extra parameter\(s\) in {f}:4: frobnicate",
                       r"option 'route' cannot be used in this context \({f}\)"),
           "ours": (r"{f}:4: frobnicate: skipped", r"{f}:5: route: not a per-client option: skipped")}
DROPPED = {"openvpn": r"Inactivity timeout \(--ping-restart\)", "ours": r"ping-restart 4"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("ccdlines")) as lab:
        yield lab


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_ccd_file_of_such_lines_admits_and_applies_as_26(lab, procs, server):
    ccd = lab.tmp / f"ccd-lines-{server}"
    ccd.mkdir()
    (ccd / "client1").write_text(CCD)
    srv = lab.udp_server(server, server_config(lab.pki, extra=f"client-config-dir {ccd}\n"),
                         f"linesrv-{server}")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1"), f"linecli-{server}", wait=30)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), (server, srv.log()[-3000:])
    f = str(ccd / "client1")
    for rx in SKIPPED[server]:
        assert srv.wait_for(rx.format(f=f), 10), (server, rx, srv.log()[-3000:])
    assert "198.19.0.74" in cli.log() and "comp-lzo no" in cli.log(), cli.log()[-2000:]
    # The client falls silent: its own ping-restart (4 s), not the server's 60 s, drops it.
    mark = len(srv.log())
    os.kill(cli.p.pid, signal.SIGSTOP)
    try:
        assert srv.wait_for(DROPPED[server], 20, after=mark), (server, srv.log()[mark:][-3000:])
    finally:
        os.kill(cli.p.pid, signal.SIGCONT)

