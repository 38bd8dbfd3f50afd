"""A pushed route-ipv6 read as Debian's OpenVPN 2.6 client reads it (socket.c get_addr_generic):
without `/bits` it is a /64, IPv6's default there -- ours installed a /128, so the rest of the /64
the server routes into the tunnel went outside it; `/` with nothing after it, or `/-0`, is /0
there (strtoul), a default route into the tunnel."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

SERVER6 = "server-ipv6 2001:db8:100::/64\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("r6lab")) as lab:
        yield lab


def _tun_routes(lab) -> list[str]:
    out = lab.cli.run("ip -6 route show dev tun0").stdout
    return sorted(line.split()[0] for line in out.splitlines() if not line.startswith("fe80"))


def _routes_of_both(lab, pushes: str) -> tuple[list[str], list[str]]:
    """The IPv6 routes on tun0 with Debian's client, then with ours, against Debian's server."""
    started = []
    try:
        started.append(lab.openvpn(lab.srv, server_config(lab.pki, extra=SERVER6 + pushes), f"r6srv-{len(lab.procs)}"))
        theirs = lab.openvpn(lab.cli, client_profile(lab.pki), f"r6ovpn-{len(lab.procs)}")
        started.append(theirs)
        want = _tun_routes(lab)
        theirs.stop(8)
        started.remove(theirs)
        started.append(lab.ours(lab.cli, client_profile(lab.pki), f"r6ours-{len(lab.procs)}"))
        return want, _tun_routes(lab)
    finally:
        for p in reversed(started):
            p.stop(8)


def test_route_ipv6_without_bits_is_a_64_as_with_openvpn(lab):
    theirs, ours = _routes_of_both(lab, 'push "route-ipv6 2001:db8:320::"\n')
    assert "2001:db8:320::/64" in theirs, theirs
    assert ours == theirs


@pytest.mark.parametrize("spelling", ["2001:db8:330::/", "2001:db8:340::/-0"])
def test_route_ipv6_with_empty_or_minus_zero_bits_is_a_default_route_as_with_openvpn(lab, spelling):
    theirs, ours = _routes_of_both(lab, f'push "route-ipv6 {spelling}"\n')
    assert "default" in theirs, theirs
    assert "::/1" in ours and "8000::/1" in ours, ours     # our default route into the tunnel: its halves
