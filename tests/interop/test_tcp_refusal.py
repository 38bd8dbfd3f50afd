"""A client our TCP server refuses in-band (ccd-exclusive without a ccd file for it) is told
AUTH_FAILED before its connection closes, and stops, with Debian's OpenVPN 2.6 client and ours.

Before: the server closed the connection while the AUTH_FAILED still waited to be written (the
refusal came inside its read of the client's packets), so both clients saw only a closed
connection and reconnected for ever; and our client, whose ACK of an AUTH_FAILED failed on the
closed connection, took that as a lost link even when the AUTH_FAILED had arrived.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("tcprefuse")) as lab:
        yield lab


@pytest.fixture
def server(lab):
    ccd = lab.tmp / "ccd-empty"
    ccd.mkdir(exist_ok=True)
    srv = lab.ours(lab.srv, server_config(lab.pki, "tcp", extra=f"client-config-dir {ccd}\nccd-exclusive\n"),
                   "tcprefuse-srv", pattern=r"listening on TCP")
    yield srv
    srv.stop(8)


def test_openvpn_client_over_tcp_hears_auth_failed(lab, server):
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "tcp", remotes=[(SRV_IP, 1194, "tcp")]),
                      "tcprefuse-ovpn", wait=0)
    try:
        assert cli.wait_for("AUTH_FAILED", 30), cli.log()[-3000:]
        assert "ccd-exclusive" in server.log(), server.log()[-2000:]
    finally:
        cli.stop(8)


def test_our_client_over_tcp_stops_on_auth_failed(lab, server):
    cli = lab.ours(lab.cli, client_profile(lab.pki, "tcp", remotes=[(SRV_IP, 1194, "tcp")]), "tcprefuse-ours",
                   wait=0)
    try:
        cli.p.wait(40)
    except Exception:  # noqa: BLE001 - still running: it reconnects instead of stopping
        pass
    rc = cli.stop(8)
    assert "AUTH_FAILED" in cli.log() and rc == 1, (rc, cli.log()[-3000:])
