"""`pull-filter` texts written with two spaces or a tab, our client beside Debian's OpenVPN 2.6
client, against a 2.6 server pushing routes spaced the same way or with one space.

OpenVPN 2.6 (options.c apply_pull_filter) compares the option as pushed (leading white space
skipped) with the filter's text as written, strncmp: `ignore "route  198.18.5.0"` (two spaces)
drops a route pushed with two spaces. Ours compared only the option's words one space apart and
such a filter never matched: the route the user filtered out was installed. Ours now matches
both ways, so the same filter also drops the route pushed with one space, which 2.6 lets past
(a server cannot slip an option past a filter by spacing it otherwise); a filter with a tab
likewise. (A push with a tab never reaches a 2.6 client: it drops the whole control message,
"Received control with invalid characters".)
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
PUSHES = ('push "route  198.18.5.0 255.255.255.0"\n'        # two spaces, as the filter
          'push "route 198.18.7.0 255.255.255.0"\n'         # one space; the filter has a tab
          'push "route 198.18.6.0 255.255.255.0"\n')        # one space; the filter has two
FILTERS = ('pull-filter ignore "route  198.18.5.0"\n'
           'pull-filter ignore "route\t198.18.7.0"\n'
           'pull-filter ignore "route  198.18.6.0"\n')


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_filter_spelled_with_two_spaces_or_a_tab_drops_the_route(lab, procs, kind):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=PUSHES), f"srv-pf-{kind}")
    procs.append(srv)
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=FILTERS), f"cli-pf-{kind}", wait=40)
    procs.append(cli)
    routes = lab.cli.run("ip route show").stdout
    print(f"{kind}: {routes}")
    assert "198.18.100.0/24" in routes, routes                 # the server's other push is taken
    assert "198.18.5.0/24" not in routes, routes
    # one space pushed, two or a tab in the filter: 2.6 installs them, ours drops them
    assert ("198.18.6.0/24" in routes) == (kind == "openvpn"), routes
    assert ("198.18.7.0/24" in routes) == (kind == "openvpn"), routes
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP), "no traffic through the tunnel"
    cli.stop(8)
