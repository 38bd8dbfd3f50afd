"""The profile's `redirect-private` through gateway/tunnel.py against the kernel, as OpenVPN 2.6 does it
on Linux (route.c redirect_default_route_to_vpn without RG_REROUTE_GW): the server's host route along
the pre-tunnel default gateway, the default route left alone; `local` adds none; `ipv6` redirects
IPv6; a pushed redirect-gateway takes over. Runs in test_rtnl.py's namespace (its fixtures)."""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import PushedOptions, parse_push_reply_untrusted
from appliance.openvpn.profile_push import with_profile
from tests.unit.test_rtnl import GW, _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = "198.18.60.9"
PUSH = "PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0,ifconfig-ipv6 fd00:70::2/64 fd00:70::1"


def _net(flags: str) -> TunnelNetwork:
    return TunnelNetwork(parse_config(f"client\ndev tun\nremote {SERVER}\n<ca>\n</ca>\nredirect-private {flags}\n",
                                      "/mem/p.ovpn", read_file=lambda p: b""))


def _apply(net: TunnelNetwork, extra_push: str = "") -> None:
    net.apply(with_profile(net.opts, parse_push_reply_untrusted(PUSH + extra_push)), SERVER)


def _host_route() -> list[tuple]:
    return [r for r in _routes("wan") if r[0] == SERVER]


def test_redirect_private_keeps_the_server_on_the_old_gateway_and_redirects_nothing(inside):
    net = _net("")
    try:
        _apply(net)
        assert [r[:2] for r in _host_route()] == [(SERVER, GW)], _routes("wan")
        tun4 = {r[0] for r in _routes(net.tun.name)}
        assert not {"0.0.0.0/1", "128.0.0.0/1"} & tun4, tun4
        assert not {"::/1", "8000::/1"} & {r[0] for r in _routes(net.tun.name, v6=True)}
    finally:
        net.close()
    assert _host_route() == []                      # removed with the tunnel


def test_local_adds_no_host_route_and_ipv6_redirects_ipv6(inside):
    net = _net("local ipv6")
    try:
        _apply(net)
        assert _host_route() == []
        assert {"::/1", "8000::/1"} <= {r[0] for r in _routes(net.tun.name, v6=True)}
        assert not {"0.0.0.0/1", "128.0.0.0/1"} & {r[0] for r in _routes(net.tun.name)}
    finally:
        net.close()


def test_a_pushed_redirect_gateway_takes_over(inside):
    net = _net("local")
    try:
        _apply(net, ",redirect-gateway def1")
        assert {"0.0.0.0/1", "128.0.0.0/1"} <= {r[0] for r in _routes(net.tun.name)}
        assert [r[:2] for r in _host_route()] == [(SERVER, GW)]     # redirect-gateway's own host route
    finally:
        net.close()


def test_which_flags_need_the_host_route():
    def needs(flags: str, server: str = SERVER) -> bool:
        return _net(flags)._server_needs_host_route(PushedOptions(ifconfig=("198.18.70.2", "255.255.255.0"),
                                                                  topology="subnet"), server)
    assert needs("") and needs("autolocal") and needs("def1 bypass-dns")
    assert not needs("local") and not needs("!ipv4")
    assert not needs("", "2001:db8::9")             # OpenVPN 2.6 adds the IPv4 server's route only
    assert needs("ipv6", "2001:db8::9")             # ... and keeps an IPv6 one as redirect-gateway ipv6


def _plain() -> TunnelNetwork:
    return TunnelNetwork(parse_config(f"client\ndev tun\nremote {SERVER}\n<ca>\n</ca>\n", "/mem/p.ovpn",
                                      read_file=lambda p: b""))


def test_a_pushed_redirect_private_keeps_the_server_on_the_old_gateway(inside):
    net = _plain()
    try:
        _apply(net, ",redirect-private")
        assert [r[:2] for r in _host_route()] == [(SERVER, GW)], _routes("wan")
        assert not {"0.0.0.0/1", "128.0.0.0/1"} & {r[0] for r in _routes(net.tun.name)}
    finally:
        net.close()
    assert _host_route() == []


def test_pushed_and_profile_redirect_private_flags_add_up(inside):
    net = _net("ipv6")                              # the profile's ipv6 with the server's local
    try:
        _apply(net, ",redirect-private local")
        assert _host_route() == []
        assert {"::/1", "8000::/1"} <= {r[0] for r in _routes(net.tun.name, v6=True)}
    finally:
        net.close()
