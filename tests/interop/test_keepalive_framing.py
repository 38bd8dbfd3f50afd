"""Keepalive pings under compression framing (`comp-lzo no`, `compress stub`), against Debian's
OpenVPN 2.6 in both roles. OpenVPN frames its pings and OCC messages like any payload and drops an
unframed one ("Bad compression stub decompression header byte"), so pings we sent bare never
counted: an idle tunnel to OpenVPN hit ping-restart every period. What a user checks: the tunnel
stays up through several ping-restart periods with no traffic, and OpenVPN logs no framing error.
"""
from __future__ import annotations

import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

# keepalive 1 3: a ping each second, a restart after 3 s without any (the server doubles it: 6).
SERVER = "keepalive 1 3\nallow-compression asym\n"
IDLE = 8.0          # idle seconds: more than two client ping-restart periods


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("kaframe")) as lab:
        yield lab


def _quiet_and_up(lab, openvpn, ours) -> None:
    time.sleep(IDLE)
    log = openvpn.log()
    assert "Bad compression stub" not in log, log[-2000:]
    assert "Inactivity timeout (--ping-restart)" not in log, log[-2000:]
    assert "inactivity timeout" not in ours.log().lower(), ours.log()[-2000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2


# One framing per role (each test idles 8 s): `comp-lzo no` puts 0xFA in front, `compress stub`
# moves the first byte to the end behind 0xFB; both went out bare before.
@pytest.mark.parametrize("comp", ["comp-lzo no"])
def test_our_client_pings_reach_openvpn_server_framed(lab, procs, comp):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra=f"{comp}\n{SERVER}"), "srv")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra=f"{comp}\n"), "ours")
    procs.append(cli)
    _quiet_and_up(lab, srv, cli)


@pytest.mark.parametrize("comp", ["compress stub"])
def test_our_server_pings_reach_openvpn_client_framed(lab, procs, comp):
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=f'{comp}\npush "{comp}"\n{SERVER}'), "oursrv",
                   pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, extra=f"{comp}\n"), "ovpncli")
    procs.append(cli)
    _quiet_and_up(lab, cli, srv)
