"""Two of tests/real_profiles.py's client profiles, as their sources write them (the lab PKI's keys
and addresses put in), bring our client up behind Debian's OpenVPN 2.6 server set up as that
source's server is: traffic passes, and what their own lines ask for is in place.

- Sophos UTM 9's user-portal profile: `route remote_host 255.255.255.255 net_gateway` (check
  refused it before) -- the server's own address stays on the pre-tunnel gateway, not the TUN;
  over TCP to port 443, `comp-lzo yes`, `route-delay 4`, `verify-x509-name "CN=server"` (a
  subject), username and password.
- Synology's VPNConfig.ovpn: no client certificate (the NAS checks a password), `tls-client` +
  `pull` instead of `client`, `verify-x509-name 'synology' name` in single quotes,
  `redirect-gateway def1` and `comp-lzo`.

The credentials come as OpenVPN's own command line gives them (`--config FILE --auth-user-pass
FILE`), the profile unchanged."""
from __future__ import annotations

import json
import time

import pytest

from lab.netns import SRV_IP, TUN_SERVER_IP, Lab
from lab.configs import server_config
from lab.pki import add_cert
from lab.tools import OUR_BIN
from tests.real_profiles import SHAPES_BY_NAME, fill


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("realprofiles")) as lab:
        yield lab


def _profile(lab, name: str, with_cert: bool = True):
    cert, key = lab.pki.clients["client1"]
    v = {"HOST": SRV_IP, "CA": f"<ca>\n{lab.pki.ca.read_text()}</ca>",
         "CERT": f"<cert>\n{cert.read_text()}</cert>" if with_cert else "",
         "KEY": f"<key>\n{key.read_text()}</key>" if with_cert else ""}
    p = lab.write(f"{name}.ovpn", fill(SHAPES_BY_NAME[name].text, v))
    p.chmod(0o600)
    creds = lab.write(f"{name}-creds.txt", "alice\ns3cret\n")
    creds.chmod(0o600)
    return lab.start(lab.cli, [OUR_BIN, "--config", str(p), "--auth-user-pass", str(creds)], f"{name}-cli")


def _route(lab, dst: str) -> list[dict]:
    return json.loads(lab.cli.run(f"ip -j -4 route show {dst}").stdout or "[]")


def test_sophos_utm_profile_keeps_the_server_on_the_pre_tunnel_gateway(lab):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, proto="tcp", protection="none", port=443,
                                             extra="comp-lzo\n"), "sophos-srv")
    # The client's pre-tunnel default route (net_gateway): via the server's side of the link.
    lab.cli.run(f"ip route add default via {SRV_IP}")
    try:
        cli = _profile(lab, "sophos-utm-client")
        try:
            assert cli.wait_for("tunnel up", 30), cli.log()[-3000:] + srv.log()[-1500:]
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), cli.log()[-2000:]
            # route-delay 4: the routes follow the tunnel by 4 s (polled, bounded)
            end, host = time.monotonic() + 20, []
            while time.monotonic() < end and not host:
                host = _route(lab, f"{SRV_IP}/32")
                time.sleep(0.3)
            assert host and host[0].get("gateway") == SRV_IP and not host[0]["dev"].startswith("tun"), \
                (host, cli.log()[-2000:])
            assert "route 198.18.0.1/32 via the pre-tunnel gateway 198.18.0.1" in cli.log(), cli.log()[-2000:]
            assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 200_000) > 0
        finally:
            cli.stop(5)
        assert _route(lab, f"{SRV_IP}/32") == []                 # taken out with the tunnel
    finally:
        srv.stop(5)
        lab.cli.run("ip route del default", check=False)


def test_synology_profile_password_only_with_its_quoted_server_name(lab):
    add_cert(lab.pki, "synology", "/CN=synology", server=True)
    script, calls, _used = lab.one_time_password_script("synology", "alice", "s3cret")
    text = (server_config(lab.pki, protection="none",
                          extra=f"comp-lzo\nverify-client-cert none\nusername-as-common-name\n"
                                f"script-security 2\nauth-user-pass-verify {script} via-file\n")
            .replace(f"cert {lab.pki.server_cert}", f"cert {lab.pki.dir / 'synology.crt'}")
            .replace(f"key {lab.pki.server_key}", f"key {lab.pki.dir / 'synology.key'}")
            .replace("remote-cert-tls client\n", ""))
    srv = lab.openvpn(lab.srv, text, "synology-srv")
    try:
        cli = _profile(lab, "synology-client", with_cert=False)
        try:
            assert cli.wait_for("tunnel up", 30), cli.log()[-3000:] + srv.log()[-1500:]
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=20), cli.log()[-2000:]
            assert calls.read_text().split() == ["alice"]
            half = _route(lab, "0.0.0.0/1")                     # redirect-gateway def1
            assert half and half[0]["dev"].startswith("tun"), half
        finally:
            cli.stop(5)
    finally:
        srv.stop(5)
