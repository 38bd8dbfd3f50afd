"""force-tls-key-material-export beside Debian's OpenVPN 2.6, the same server config for both:
Debian's client (TLS-EKM) gets in; our client told to derive keys the pre-2.6 way
(VPN_APPLIANCE_KEY_DERIVATION=prf, standing in for a 2.5 client) is refused by both servers with
OpenVPN's AUTH_FAILED reason, shown in the client's log. Before, our config refused the directive
as unknown."""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = "Initialization Sequence Completed"
REASON = "Keying Material Exporters (RFC 5705) support missing"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("fekm")) as lab:
        yield lab


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_force_ekm_admits_openvpns_client_and_refuses_a_prf_one(lab, procs, kind):
    conf = server_config(lab.pki, "udp", extra="force-tls-key-material-export\n")
    srv = (lab.openvpn(lab.srv, conf, f"fekm-srv-{kind}") if kind == "openvpn"
           else lab.ours(lab.srv, conf, f"fekm-srv-{kind}", pattern=r"listening on UDP"))
    procs.append(srv)
    old = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra="connect-retry-max 1\n"), f"fekm-prf-{kind}",
                   wait=0, env={"VPN_APPLIANCE_KEY_DERIVATION": "prf"})
    procs.append(old)
    assert old.wait_for(re.escape(REASON), 30), (old.log()[-2000:], srv.log()[-2000:])
    assert "tunnel up" not in old.log()
    old.stop()
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"fekm-cli-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP, 60), (cli.log()[-2000:], srv.log()[-2000:])
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) > 0
