"""A server pushing options with bad values, our client beside Debian's OpenVPN 2.6 client.

OpenVPN 2.6 (options.c apply_push_options -> add_option at D_PUSH_ERRORS) logs such an option
("Options error: ...") and goes on with the rest of the push; a number it reads with atoi
(`session-timeout -3`, `inactive abc`) is taken as atoi reads it. Ours ended the session at
the first one and reconnected: a loop against such a server, where 2.6 connects. The server
(Debian's 2.6.14) pushes these ahead of its own route, ifconfig, ping and cipher, which both
clients must still take. (What 2.6 refuses -- a `dns server` left without an address -- is in
tests/engine/test_session_security.py.)
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
BAD = ["explicit-exit-notify 99999", "dns server 1 address 198.18.9.9 bogus", "inactive abc",
       "topology bogus", "comp-lzo bogus", "route 1.2.3 255.255.255.0", "ifconfig-ipv6 bogus ::1",
       "session-timeout -3"]
PUSHES = "".join(f'push "{o}"\n' for o in BAD)
# What each client logs about them (2.6's words; ours names the option and its position)
LOGGED = {"openvpn": ["malformed address or maximum exceeded 'bogus'", "--topology must be net30, p2p, or subnet",
                      "bad comp-lzo option: bogus", "route parameter network/IP '1.2.3' must be a valid address",
                      "ifconfig-ipv6 parms 'bogus' and '::1' must be valid addresses"],
          "ours": ["explicit-exit-notify 99999: read as 100", "malformed address or maximum exceeded 'bogus'",
                   "inactive abc: read as 0", "--topology must be net30, p2p, or subnet",
                   "bad comp-lzo option: bogus", "ifconfig-ipv6 parms 'bogus' and '::1' must be valid addresses (left out)",
                   "session-timeout -3: read as 0"]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_bad_pushed_values_are_logged_and_the_tunnel_comes_up(lab, procs, kind):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=PUSHES), f"srv-bad-{kind}")
    procs.append(srv)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp"), f"cli-bad-{kind}", wait=40)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel"
    routes = lab.cli.run("ip route show").stdout
    assert "198.18.100.0/24" in routes, routes          # the server's own route, after the bad ones
    log = cli.log()
    for text in LOGGED[kind]:
        assert text in log, (text, log[-3000:])
    # no restart: one tunnel, the process still up
    assert cli.alive() and log.count(UP[kind]) == 1 and "process-push-msg-failed" not in log, log[-3000:]
    cli.stop(8)
