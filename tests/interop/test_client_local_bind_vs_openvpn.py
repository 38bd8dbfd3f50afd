"""A client profile's `local ADDR` and `lport N` (without nobind) against Debian's OpenVPN 2.6
server, over UDP and TCP, our client beside OpenVPN's: the server must see the connection come
from that address and port, as OpenVPN 2.6's client binds its socket then (options.c: need_bind).
Before, ours accepted both lines and sent from an ephemeral port, so a firewall rule or NAT
mapping written for the profile's port did not match."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lbind")) as lab:
        yield lab


@pytest.mark.parametrize("proto,port", [("udp", 40123), ("tcp", 40124)])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_the_server_sees_the_profiles_local_address_and_port(lab, procs, kind, proto, port):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, proto), f"lb-srv-{kind}-{proto}")
    procs.append(srv)
    prof = client_profile(lab.pki, proto).replace("nobind\n", "") + f"local {CLI_IP}\nlport {port}\n"
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, prof, f"lb-{kind}-{proto}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[kind], 30), cli.log()[-3000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    assert f"{CLI_IP}:{port}" in srv.log(), srv.log()[-2000:]
    cli.stop(8)
