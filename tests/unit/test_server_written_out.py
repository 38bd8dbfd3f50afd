"""A TUN server written out in full (`mode server` + `tls-server` + `ifconfig` + `ifconfig-pool`)
instead of `server NET MASK`: the same pool, pushes and TUN set-up as OpenVPN 2.6 gives it
(helper.c, pool.c, multi.c), one decision with `server`'s (openvpn/serveraddressing.py), and
what 2.6 refuses failing at its line."""
from __future__ import annotations

import pytest

from appliance.gateway.server_net import ServerTunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.server_model import ServerSettings
from appliance.openvpn.serveraddressing import server_addressing

HEAD = "tls-server\ndh none\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\ndev tun\n"   # 12 lines


def _no_files(path: str) -> bytes:
    raise AssertionError(path)


def parse(text: str):
    return parse_config(HEAD + text, "/p/s.conf", _no_files)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse(text)
    return [str(e) for e in getattr(ei.value, "errors", [ei.value])]


def _leases(o, n: int) -> list[str]:
    pool = server_addressing(o).make_pool()
    return [pool.ifconfig_push(pool.lease()) for _ in range(n)]


def _pushes(o) -> tuple:
    a = server_addressing(o)
    st = ServerSettings(session_config=lambda i: None, protection="none", pool=a.make_pool(),
                        addressing_push=(a.push, a.push_after))
    return st.addressing_push


NET30 = "mode server\nifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.4 198.19.0.251\n"
SUBNET = ("mode server\ntopology subnet\nifconfig 198.19.0.1 255.255.255.0\n"
          "ifconfig-pool 198.19.0.2 198.19.0.254 255.255.255.0\n")


def test_net30_written_out_leases_as_server_does_and_pushes_only_its_own_lines():
    hand = parse(NET30 + "route 198.19.0.0 255.255.255.0\n")
    macro = parse("server 198.19.0.0 255.255.255.0\n")
    assert _leases(hand, 3) == _leases(macro, 3) == [
        "ifconfig 198.19.0.6 198.19.0.5", "ifconfig 198.19.0.10 198.19.0.9", "ifconfig 198.19.0.14 198.19.0.13"]
    assert server_addressing(hand).make_pool().size == server_addressing(macro).make_pool().size == 62
    assert _pushes(hand) == ((), ())                              # 2.6 adds nothing to a written-out server
    assert _pushes(macro) == (("topology net30",), ("route 198.19.0.1",))
    # the TUN: local with its peer; the route is the config's own line (`server`'s own otherwise)
    hs = ServerTunnelNetwork(hand, None, None).spec("tun0")
    ms = ServerTunnelNetwork(macro, None, None).spec("tun0")
    assert hs["addr"] == ms["addr"] == ["198.19.0.1", 32, "198.19.0.2"]
    assert hs["routes"] == ms["routes"] == [["198.19.0.0", 24, None]]


def test_subnet_written_out_pushes_the_pool_netmask_or_ifconfigs():
    o = parse(SUBNET)
    assert _leases(o, 2) == ["ifconfig 198.19.0.2 255.255.255.0", "ifconfig 198.19.0.3 255.255.255.0"]
    assert ServerTunnelNetwork(o, None, None).spec("tun0")["addr"] == ["198.19.0.1", 24, None]
    # without the pool's netmask, ifconfig's is pushed (multi.c: tuntap->remote_netmask)
    o = parse("mode server\ntopology subnet\nifconfig 198.19.0.1 255.255.255.0\nifconfig-pool 198.19.0.100 198.19.0.200\n")
    assert _leases(o, 1) == ["ifconfig 198.19.0.100 255.255.255.0"]
    pool = server_addressing(o).make_pool()
    assert pool.in_range("198.19.0.200") and not pool.in_range("198.19.0.201") and pool.size == 101


def test_p2p_leases_one_address_each_with_the_server_as_peer():
    o = parse("mode server\ntopology p2p\nifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.4 198.19.0.251\n")
    assert _leases(o, 2) == ["ifconfig 198.19.0.4 198.19.0.1", "ifconfig 198.19.0.5 198.19.0.1"]
    # `server` with topology p2p as 2.6: the same pool (not net30's /30s), no route pushed
    m = parse("topology p2p\nserver 198.19.0.0 255.255.255.0\n")
    assert _leases(m, 2) == ["ifconfig 198.19.0.4 198.19.0.1", "ifconfig 198.19.0.5 198.19.0.1"]
    assert _pushes(m) == (("topology p2p",), ())


def test_server_subnet_pool_ends_at_the_last_but_one_address_as_2_6():
    pool = server_addressing(parse("topology subnet\nserver 198.19.0.0 255.255.255.0\n")).make_pool()
    assert pool.size == 253 and pool.in_range("198.19.0.254") and not pool.in_range("198.19.0.255")


def test_mode_server_without_a_pool_and_server_nopool():
    o = parse("mode server\n")
    a = server_addressing(o)
    assert o.role == "server" and a.pool is None and a.local is None
    assert ServerTunnelNetwork(o, None, None).spec("tun0")["addr"] is None      # up without an address
    assert any("no address pool" in n for n in o.notes)
    o = parse("server 198.19.0.0 255.255.255.0 nopool\n")
    assert server_addressing(o).pool is None and _pushes(o) == (("topology net30",), ("route 198.19.0.1",))
    o = parse("server 198.19.0.0 255.255.255.0 nopool\nifconfig-pool 198.19.0.100 198.19.0.107\n")
    assert _leases(o, 1) == ["ifconfig 198.19.0.102 198.19.0.101"]              # /30s from .100


@pytest.mark.parametrize("text,line,words", [
    ("server 198.19.0.0 255.255.255.0 pool\n", 13, "not a recognized flag"),
    ("server 198.19.0.0 255.255.255.0\nifconfig 198.19.0.1 198.19.0.2\n", 14, "remove `ifconfig`"),
    ("mode server\nifconfig-pool 198.19.0.9 198.19.0.4\n", 14, "greater than end"),
    ("mode server\nifconfig-pool 10.0.0.0 10.1.0.0\n", 14, "too large"),
    (NET30 + "ifconfig-pool 198.19.0.4 198.19.0.251 255.255.255.0\n", 16, "only valid with dev tap or topology subnet"),
    ("mode server\nifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.4 198.19.0.7\n", 15, "at least 2"),
    ("mode server\ntopology subnet\nifconfig 198.19.0.1 198.19.0.2\n", 15, "is none"),
    ("mode server\nifconfig 198.19.0.1 198.19.0.1\n", 14, "must be different"),
    ("mode server\ntopology subnet\nifconfig-pool 198.19.0.4 198.19.0.251\n", 15, "no address"),
    ("mode server\ntopology p2p\nifconfig-pool 198.19.0.4 198.19.0.251\n", 15, "no address"),
    ("mode server\nifconfig 198.19.0.1 198.19.0.2\nifconfig-pool 198.19.0.0 198.19.0.251\n", 15, "own address"),
    (SUBNET.replace("198.19.0.2 198.19.0.254", "198.19.0.1 198.19.0.254"), 16, "own address"),
    ("mode server\nifconfig-pool-persist ipp.txt 0\n", 14, "must be used with ifconfig-pool"),
    ("client\nremote 198.18.0.1\nifconfig-pool 198.19.0.4 198.19.0.251\n", 15, "server directive"),
])
def test_what_2_6_refuses_fails_at_its_line(text, line, words):
    errs = errors(text)
    assert any(f"/p/s.conf:{line}:" in e and words in e for e in errs), errs
