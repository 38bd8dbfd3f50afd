"""Lines a user reads that said something untrue: the client's "server pushed:" summary named
topology net30 for a tap server (2.6's tap server pushes none; a tap device has no topology),
`vpn-appliance check` showed a point-to-point config's role as client, and a refused `capath`
(or `ca`) line was followed by a second error "no `ca`", as if the line had not been there."""
from __future__ import annotations

import pytest

from appliance.gateway.eventlog import push_summary
from appliance.openvpn.config import parse_config, render_options
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.keymethod import parse_push_reply_untrusted

TAP_PUSH = "PUSH_REPLY,route-gateway 198.19.0.1,ping 5,ifconfig 198.19.0.2 255.255.255.0"


def test_the_tap_push_summary_names_no_topology():
    p = parse_push_reply_untrusted(TAP_PUSH)
    assert "topology" not in push_summary(p, layer2=True)
    assert push_summary(p, layer2=True).startswith("ifconfig 198.19.0.2 255.255.255.0, ping 5")
    assert "topology net30" in push_summary(p)           # tun: the topology the address is read with


def _role(text: str) -> str:
    o = parse_config(text + "cert a\nkey b\ndh none\n<ca>\nx\n</ca>\n", "/p/x.conf", lambda p: b"x")
    return next(line for line in render_options(o).splitlines() if line.startswith("role = "))


@pytest.mark.parametrize("text, shown", [
    ("tls-server\ndev tun\nifconfig 198.19.5.1 198.19.5.2\n",
     "role = p2p (tls-server end of a point-to-point link, no pull)   # /p/x.conf:1"),
    ("dev tun\ntls-client\nremote 198.18.0.1\nifconfig 198.19.5.2 198.19.5.1\n",
     "role = p2p (tls-client end of a point-to-point link, no pull)   # /p/x.conf:2"),
    ("client\ndev tun\nremote 198.18.0.1\n", "role = client   # /p/x.conf:1"),
    ("tls-server\ndev tun\nserver 198.19.0.0 255.255.255.0\n", "role = server   # /p/x.conf:3"),
])
def test_check_shows_the_role_the_config_makes(text, shown):
    assert _role(text) == shown


@pytest.mark.parametrize("line", ["capath /nonexistent-dir", "ca /nonexistent.crt"])
def test_a_refused_ca_line_is_the_only_error(line):
    with pytest.raises(ConfigError) as ei:
        parse_config(f"client\ndev tun\nremote 198.18.0.1\n{line}\n", "/p/x.conf", lambda p: open(p, "rb").read())
    errs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    assert len(errs) == 1 and errs[0].startswith(f"/p/x.conf:4: {line.split()[0]}: "), errs


def test_no_ca_at_all_is_still_an_error():
    with pytest.raises(ConfigError, match="no `ca`"):
        parse_config("client\ndev tun\nremote 198.18.0.1\n", "/p/x.conf", lambda p: b"")


def test_the_push_summary_names_the_pushed_ipv6_address_and_routes():
    """host44: the "server pushed:" line said nothing of ifconfig-ipv6 (compat42 noticed), nor of
    route-ipv6, block-ipv6 or tun-mtu: a user reading it could not tell the IPv6 side was pushed."""
    from appliance.openvpn.keymethod import PushedOptions
    p = PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"), topology="subnet",
                      ifconfig_ipv6=("2001:db8:42::1000/64", "2001:db8:42::1"),
                      routes_ipv6=[("2001:db8:99::/48", None, None)] + [(f"2001:db8:{i}::/48", None, None) for i in range(20)],
                      tun_mtu=1400)
    line = push_summary(p)
    assert line.startswith("ifconfig 198.19.0.2 255.255.255.0, ifconfig-ipv6 2001:db8:42::1000/64 2001:db8:42::1, "
                           "topology subnet, route-ipv6 2001:db8:99::/48"), line
    assert "(21 IPv6 routes in all)" in line and line.count("route-ipv6") == 8 and "tun-mtu 1400" in line
    p2 = PushedOptions(ifconfig_ipv6=("2001:db8::2/64", ""), block_ipv6=False, routes_ipv6=[("x" * 300, None, None)])
    assert "ifconfig-ipv6 2001:db8::2/64," in push_summary(p2) and "x" * 65 not in push_summary(p2)
    assert push_summary(PushedOptions(block_ipv6=True)).endswith("block-ipv6")
