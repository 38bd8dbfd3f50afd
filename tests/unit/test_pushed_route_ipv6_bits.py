"""A pushed route-ipv6's `address/bits`, read once (gateway/tunnel.py _net6) for the route, its
default-route test and the test for the server's host route: what is installed and what is
checked against the server's address must be the same network. The route had read its bits with
int() (`6_4`, `٦٤` as 64) while the check (ipaddress) refused them, so the route went in without
the server's host route (tests/unit/test_tunnel_push_attacks.py shows it against the kernel)."""
from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from hypothesis import given, settings, strategies as st

from appliance.gateway.tunnel import _covers6, _net6


@pytest.mark.parametrize("text, want", [
    ("fd00:60::/64", ("fd00:60::", 64)), ("fd00:60::/+64", ("fd00:60::", 64)),   # strtoul takes a +
    ("fd00:60::/0064", ("fd00:60::", 64)), ("fd00:60::9", ("fd00:60::9", 64)), ("::/0", ("::", 0)),
    # checked against Debian's OpenVPN 2.6.14 (tests/interop/test_route_ipv6_bits_vs_openvpn.py):
    ("fd00:60::/", ("fd00:60::", 0)), ("fd00:60::/-0", ("fd00:60::", 0)), ("fd00:60::/-00", ("fd00:60::", 0)),
])
def test_bits_as_openvpn_reads_them(text, want):
    assert _net6(text) == want


@pytest.mark.parametrize("text", ["fd00:60::/6_4", "fd00:60::/\u0666\u0664", "fd00:60::/-", "fd00:60::/+",
                                  "fd00:60::/-1", "fd00:60::/+-0", "fd00:60::/129", "fe80::1%eth0/64", "198.18.0.0/16", "fd00:60::/64/1"])
def test_bits_openvpn_refuses_are_refused(text):
    with pytest.raises(ValueError):
        _net6(text)


ADDRESSES = ["fd00:60::", "::", "fd00:60::9", "1.2.3.4"]
ALPHABET = "0123456789+-_ \u0666\u0664"


# 200 Hypothesis examples (2000 before: ~3.5 ms each of Hypothesis's own, 7 s here), beside the
# sweep below, which puts every text of up to three characters over the alphabet and 3,000
# seeded draws of four or five, after each address with and without the slash, to the same
# check (~48,000 cases, ~30 us each; helper trim47).
@settings(max_examples=200, deadline=None)
@given(st.builds(lambda a, s, b: f"{a}{s}{b}", st.sampled_from(ADDRESSES),
                 st.sampled_from(["/", ""]), st.text(alphabet=ALPHABET, max_size=5)))
def test_the_cover_test_reads_every_route_as_the_route_is_installed(text):
    _cover_reads_as_installed(text)


def test_the_cover_test_reads_every_short_route_as_the_route_is_installed():
    rng = random.Random(47)
    short = ["".join(c) for n in range(4) for c in itertools.product(ALPHABET, repeat=n)]
    drawn = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(4, 5))) for _ in range(3_000)]
    for bits in short + drawn:
        for a in ADDRESSES:
            for sep in ("/", ""):
                _cover_reads_as_installed(f"{a}{sep}{bits}")


def _cover_reads_as_installed(text: str) -> None:
    try:
        n6, plen = _net6(text)
    except ValueError:
        assert not _covers6(text, "fd00:60::9")
        return
    inside = str(ipaddress.IPv6Network(f"{n6}/{plen}", strict=False).network_address)
    assert _covers6(text, inside)
