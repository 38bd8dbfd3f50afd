"""A client profile's `local ADDR` and `lport N` (without nobind) against Debian's OpenVPN 2.6
server, over UDP and TCP, our client beside OpenVPN's: the server must see the connection come
from that address and port, as OpenVPN 2.6's client binds its socket then (options.c: need_bind).
Before, ours accepted both lines and sent from an ephemeral port, so a firewall rule or NAT
mapping written for the profile's port did not match."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, SRV_IP, TUN_SERVER_IP, Lab

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


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_the_local_port_is_the_last_port_or_lport_line_rport_the_remotes_alone(lab, procs, kind):
    """compat50: OpenVPN 2.6's local port is the last `port` or `lport` line's, `rport` sets the
    remote's alone (options.c: ce.local_port, ce.remote_port). A server with `lport A`, `port B`,
    `rport C` listens on B; a client with `local`, `lport D`, `port E`, `rport F` sends from E.
    Ours listened on A (lport won whatever the order) and sent from D; a server with only `rport`
    listened there. The same lines in Debian's server and client, then in ours."""
    srv_cfg = server_config(lab.pki, "udp") + "lport 40131\nport 40132\nrport 40133\n"
    prof = (client_profile(lab.pki, "udp", remotes=[(SRV_IP, 40132, "udp")]).replace("nobind\n", "")
            + f"local {CLI_IP}\nlport 40141\nport 40142\nrport 40143\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    srv = (lab.ours(lab.srv, srv_cfg, f"lp-srv-{kind}", pattern=r"listening on UDP") if kind == "ours"
           else lab.openvpn(lab.srv, srv_cfg, f"lp-srv-{kind}"))
    procs.append(srv)
    listening = lab.srv.run("ss -Hlnu", check=False).stdout
    assert ":40132 " in listening and ":40131 " not in listening, listening
    cli = start(lab.cli, prof, f"lp-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for(UP[kind], 30), cli.log()[-3000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    assert srv.wait_for(rf"{CLI_IP}:40142\b", 10), srv.log()[-2000:]
    assert f"{CLI_IP}:40141" not in srv.log()
