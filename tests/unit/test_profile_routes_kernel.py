"""The profile's route-ipv6 / route-metric / block-ipv6 through gateway/tunnel.py against the kernel,
merged with the push as the client does (openvpn/profile_push.py): installed beside the pushed
routes with their metrics, kept under route-nopull, removed with the tunnel. Runs in
test_rtnl.py's namespace (its fixtures)."""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.openvpn.profile_push import with_profile
from tests.unit.test_rtnl import _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = "198.18.60.9"
PUSH = ("PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0,ifconfig-ipv6 fd00:70::2/64 fd00:70::1,"
        "route 198.18.71.0 255.255.255.0,route-ipv6 fd00:72::/48")


def _opts(extra: str):
    return parse_config(f"client\ndev tun\nremote {SERVER}\n<ca>\n</ca>\n{extra}", "/mem/p.ovpn", read_file=lambda p: b"")


def _apply(net: TunnelNetwork, extra_push: str = "", nopull: bool = False) -> None:
    pushed = parse_push_reply_untrusted(PUSH + extra_push, route_nopull=nopull)
    net.apply(with_profile(net.opts, pushed), SERVER)


def test_profile_route_ipv6_and_route_metric_go_in_with_the_pushed_routes_and_out_with_the_tunnel(inside):
    net = TunnelNetwork(_opts("route-ipv6 fd00:73::/48\nroute-ipv6 fd00:74::/48 default 7\nroute-metric 50\n"
                              "route 198.18.75.0 255.255.255.0\n"))
    try:
        _apply(net)
        dev = net.tun.name
        v6 = {r[0]: r[4] for r in _routes(dev, v6=True)}
        assert {k: v6.get(k) for k in ("fd00:72::/48", "fd00:73::/48", "fd00:74::/48")} == \
            {"fd00:72::/48": 50, "fd00:73::/48": 50, "fd00:74::/48": 7}, v6
        v4 = {r[0]: r[4] for r in _routes(dev)}
        assert v4.get("198.18.71.0/24") == 50 and v4.get("198.18.75.0/24") == 50, v4
        _apply(net, ",route-metric 9")                       # a pushed route-metric replaces the profile's
        v6 = {r[0]: r[4] for r in _routes(dev, v6=True)}
        assert (v6.get("fd00:72::/48"), v6.get("fd00:73::/48"), v6.get("fd00:74::/48")) == (9, 9, 7), v6
    finally:
        net.close()
    assert not [r for r in _routes("wan", v6=True) if r[0].startswith("fd00:7")]


def test_route_nopull_keeps_the_profiles_routes_and_block_ipv6(inside):
    net = TunnelNetwork(_opts("route-nopull\nroute-ipv6 fd00:73::/48\nblock-ipv6\n"))
    try:
        _apply(net, nopull=True)
        dev = net.tun.name
        v6 = {r[0] for r in _routes(dev, v6=True)}
        assert {"fd00:73::/48", "::/1", "8000::/1"} <= v6 and "fd00:72::/48" not in v6, v6
        assert net.block_ipv6
        assert "198.18.71.0/24" not in {r[0] for r in _routes(dev)}
    finally:
        net.close()


def test_profile_net_gateway_and_remote_host_routes_go_the_pre_tunnel_way(inside):
    """Sophos UTM's `route remote_host 255.255.255.255 net_gateway` (the server's own address
    kept out of the tunnel) and a profile's `route X Y net_gateway` (an exclusion): both via the
    host's default gateway on the WAN, as OpenVPN 2.6 adds them, not into the TUN (a profile's
    net_gateway route went into the TUN before; remote_host was refused)."""
    from tests.unit.test_rtnl import GW
    net = TunnelNetwork(_opts("route remote_host 255.255.255.255 net_gateway\n"
                              "route 198.18.76.0 255.255.255.0 net_gateway\nroute 198.18.77.0 255.255.255.0\n"))
    try:
        _apply(net)
        wan = {r[0]: r[1] for r in _routes("wan")}
        assert wan.get(SERVER) == GW and wan.get("198.18.76.0/24") == GW, wan
        on_tun = {r[0] for r in _routes(net.tun.name)}
        assert "198.18.77.0/24" in on_tun and "198.18.76.0/24" not in on_tun and SERVER not in on_tun, on_tun
    finally:
        net.close()
    assert not [r for r in _routes("wan") if r[0] in (SERVER, "198.18.76.0/24")]


def test_a_pushed_remote_host_route_goes_the_pre_tunnel_way_as_the_profiles_does(inside):
    """OpenVPN 2.6 reads `remote_host` in any route's network (route.c get_special_addr), a pushed
    one's as a profile's: `push "route remote_host 255.255.255.255 net_gateway"` keeps the server
    out of the tunnel. Only the profile's was resolved (profiles41); the pushed one was skipped
    with a warning ("remote_host" is no IPv4 address) where 2.6 adds it."""
    from tests.unit.test_rtnl import GW
    net = TunnelNetwork(_opts(""))
    try:
        _apply(net, ",route remote_host 255.255.255.255 net_gateway")
        wan = {r[0]: r[1] for r in _routes("wan")}
        assert wan.get(SERVER) == GW, wan
        assert SERVER not in {r[0] for r in _routes(net.tun.name)}
    finally:
        net.close()
    assert not [r for r in _routes("wan") if r[0] == SERVER]


def test_sophos_remote_host_route_beside_a_pushed_redirect_is_no_warning(inside, caplog):
    """Sophos UTM's profile line `route remote_host 255.255.255.255 net_gateway` beside a pushed
    `redirect-gateway def1`: the redirect's own host route to the server (the same destination,
    gateway and NIC) is already there, which is what the line asks. It was a WARNING at every
    connect saying the route there "may be the tunnel's" and the server's was "not the
    pre-tunnel way" -- false, and the operator could do nothing about it."""
    from tests.unit.test_rtnl import GW
    caplog.set_level("INFO")
    net = TunnelNetwork(_opts("route remote_host 255.255.255.255 net_gateway\n"))
    try:
        _apply(net, ",redirect-gateway def1")
        assert {r[0]: r[1] for r in _routes("wan")}.get(SERVER) == GW
        assert "not the pre-tunnel way" not in caplog.text, caplog.text
        assert f"route {SERVER}/32 net_gateway: the pre-tunnel way already" in caplog.text, caplog.text
    finally:
        net.close()
    assert not [r for r in _routes("wan") if r[0] == SERVER]


@pytest.mark.parametrize("network", ["remote_host", SERVER])
@pytest.mark.parametrize("where", ["pushed", "profile"])
def test_a_route_of_the_servers_own_address_into_the_tunnel_keeps_its_host_route(inside, network, where):
    """A push or a profile line routing the server's own address into the TUN (`route remote_host
    255.255.255.255`, or the address written out): the server keeps its host route along the
    pre-tunnel path (_server_needs_host_route), or the tunnel's own packets went into the TUN --
    dropped there as recursive routing, the tunnel dead until ping-restart. The keyword, and a
    profile's line at all, counted for nothing there while the route itself went in (review43a)."""
    from tests.unit.test_rtnl import GW
    line = f"route {network} 255.255.255.255"
    net = TunnelNetwork(_opts(line + "\n" if where == "profile" else ""))
    try:
        _apply(net, "," + line if where == "pushed" else "")
        assert {r[0]: r[1] for r in _routes("wan")}.get(SERVER) == GW
        assert SERVER not in {r[0] for r in _routes(net.tun.name)}
    finally:
        net.close()
