"""The server's iroute table (openvpn/iroutes.py): longest prefix first, a newer client's route
to the same network replaces the older's, and leaving removes only one's own routes."""
from __future__ import annotations

import ipaddress

from appliance.openvpn.iroutes import IrouteTable


def _a(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def _n(s: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(s)


def test_longest_prefix_first_and_only_own_routes_removed():
    t = IrouteTable()
    head, branch, host, newer = "head", "branch", "host", "newer"
    assert not t and t.lookup(_a("198.19.200.5")) is None
    t.add(_n("198.19.128.0/17"), head)
    t.add(_n("198.19.200.0/24"), branch)
    t.add(_n("198.19.200.7/32"), host)
    assert [t.lookup(_a(x)) for x in ("198.19.130.1", "198.19.200.5", "198.19.200.7", "198.19.0.1")] == \
        [head, branch, host, None]
    t.add(_n("198.19.200.0/24"), newer)             # the same network again: the newer client's
    assert t.lookup(_a("198.19.200.5")) == newer
    t.remove(_n("198.19.200.0/24"), branch)         # the older one leaving takes nothing away
    assert t.lookup(_a("198.19.200.5")) == newer
    t.remove(_n("198.19.200.0/24"), newer)
    assert t.lookup(_a("198.19.200.5")) == head
    t.remove(_n("198.19.200.7/32"), host)
    t.remove(_n("198.19.128.0/17"), head)
    assert not t and list(t) == []


def test_a_default_route_behind_a_client():
    t = IrouteTable()
    t.add(_n("0.0.0.0/0"), "gw")
    assert t.lookup(_a("203.0.113.9")) == "gw"
    assert list(t) == [(_n("0.0.0.0/0"), "gw")]
