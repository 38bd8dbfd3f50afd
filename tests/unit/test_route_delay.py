"""route-delay on a tap client with route-gateway dhcp (gateway/route_delay.py), as OpenVPN 2.6
on Linux: what is read from the line, when the routes wait, and the environment route-up gets."""
from __future__ import annotations

import pytest

from appliance.gateway.route_delay import delay_of, routes_wait_for_dhcp
from appliance.gateway.updown_env import route_env
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.keymethod import PushedOptions

BASE = "client\nremote 198.18.0.1\n<ca>\nX\n</ca>\n"


def _parse(text: str):
    return parse_config(text, "/p/c.ovpn", read_file=lambda p: b"x")


@pytest.mark.parametrize("line, want", [("route-delay", (0, 30)), ("route-delay 8", (8, 30)),
                                        ("route-delay 8 60", (8, 60))])
def test_the_line_as_26_reads_it(line, want):
    o = _parse(BASE + "dev tap\n" + line + "\n")
    assert o.route_delay == want and delay_of(o) == want[0]


@pytest.mark.parametrize("line", ["route-delay x", "route-delay -1", "route-delay 1 2 3"])
def test_a_bad_line_is_an_error_at_it(line):
    with pytest.raises(ConfigError) as ei:
        _parse(BASE + "dev tap\n" + line + "\n")
    assert "route-delay" in str(ei.value) and ":7:" in str(ei.value)


@pytest.mark.parametrize("profile, pushed_gw, waits", [
    ("dev tap\nroute-delay 5\n", "dhcp", True),                         # pushed by a plain server-bridge
    ("dev tap\nroute-delay 5\nroute-gateway dhcp\n", None, True),       # the profile's
    ("dev tap\nroute-gateway dhcp\n", "dhcp", False),                   # no route-delay: routes at once
    ("dev tap\nroute-delay 5\n", "198.19.1.1", False),                  # a gateway known at once
    ("dev tun\nroute-delay 5\n", "dhcp", False),                        # tun: nothing reads DHCP
])
def test_when_the_routes_wait_for_the_dhcp_router(profile, pushed_gw, waits):
    o = _parse(BASE + profile)
    assert routes_wait_for_dhcp(o, PushedOptions(route_gateway=pushed_gw)) is waits


def test_route_up_env_has_no_per_route_variables_when_a_route_had_no_gateway():
    """2.6's init_route_list fails on a route without a gateway (route-gateway dhcp: none yet)
    and then sets no route_*_N; with a gateway known they are there."""
    from appliance.gateway.updown_env import up_env
    o = _parse(BASE + "dev tap\nroute-delay 5\n")
    kw = dict(remote=("198.18.0.1", 1194), chain=[], common_name="s", dev="tap0", net_gateway=None, started=0.0)
    routes = [("198.18.100.0", "255.255.255.0", None, None)]
    e = up_env(o, PushedOptions(route_gateway="dhcp", routes=routes), **kw)
    assert not any(k.startswith("route_network_") for k in e) and "route_vpn_gateway" not in e
    e = up_env(o, PushedOptions(route_gateway="198.19.1.1", routes=routes), **kw)
    assert e["route_network_1"] == "198.18.100.0" and e["route_gateway_1"] == "198.19.1.1"
    assert route_env(routes, [], "198.19.1.1", None, "", None, None)["route_vpn_gateway"] == "198.19.1.1"


@pytest.mark.parametrize("router, used", [("198.19.1.1", True), ("0.0.0.0", False), ("255.255.255.255", False),
                                          ("224.0.0.1", False), ("127.0.0.1", False)])
def test_a_hostile_router_is_not_routed_via(router, used):
    """A server side's ACK names any 4 bytes: routes go only via a unicast address."""
    from appliance.gateway.route_delay import usable_router
    assert usable_router(router) == (router if used else None)
    assert usable_router(None) is None


@pytest.mark.parametrize("item, want", [("route-delay", (0, None)), ("route-delay 5", (5, None)),
                                        ("route-delay 5 9", (5, 9)), ("route-delay x", (0, None)),
                                        ("route-delay -4", (0, None)), ("route-delay 7x", (7, None)),
                                        ("route-delay 4294967300", (4, None))])
def test_a_pushed_route_delay_as_26_reads_it(item, want):
    """options.c: positive_atoi for each number (anything else 0, a negative one 0, C's int)."""
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    p = parse_push_reply_untrusted(f"PUSH_REPLY,{item},ifconfig 198.19.0.2 255.255.255.0")
    assert p.route_delay == want and p.ifconfig is not None and not p.unrecognized


def test_a_pushed_route_delay_with_three_numbers_is_left_out_as_26_does(caplog):
    """2.6: "Options error: Unrecognized option or missing or extra parameter(s) in
    [PUSH-OPTIONS]:1: route-delay", the rest of the push applied."""
    from appliance.gateway.eventlog import log_unrecognized
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    p = parse_push_reply_untrusted("PUSH_REPLY,route-delay 1 2 3,ifconfig 198.19.0.2 255.255.255.0")
    assert p.route_delay is None and p.unrecognized == ["[PUSH-OPTIONS]:1: route-delay"] and p.ifconfig
    with caplog.at_level("ERROR", logger="vpn-appliance"):
        log_unrecognized(p)
    assert "missing or extra parameter(s) in [PUSH-OPTIONS]:1: route-delay (extra parameters" in caplog.text


def test_route_nopull_takes_a_pushed_route_delay_and_pull_filter_can_drop_it():
    """Its class (OPT_P_ROUTE_EXTRAS) is in 2.6's pull mask with route-nopull too."""
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    assert parse_push_reply_untrusted("PUSH_REPLY,route-delay 3", route_nopull=True).route_delay == (3, None)
    p = parse_push_reply_untrusted("PUSH_REPLY,route-delay 3", filters=[("ignore", "route-delay")])
    assert p.route_delay is None and p.filtered == ["route-delay 3"]


@pytest.mark.parametrize("profile, pushed, want", [
    ("dev tun\n", None, None),
    ("dev tun\nroute-delay 8\n", None, (8, 30)),
    ("dev tun\nroute-delay 8 60\n", (2, None), (2, 60)),       # the pushed N, the profile's W
    ("dev tun\n", (2, 5), (2, 5)),
    ("dev tap\nroute-delay 0\n", None, (0, 30)),               # 0: defined, do_route on the next pass
])
def test_the_delay_in_effect(profile, pushed, want):
    from appliance.gateway.route_delay import delay_in_effect
    o = _parse(BASE + profile)
    assert delay_in_effect(o, PushedOptions(route_delay=pushed)) == want
    assert delay_of(o, PushedOptions(route_delay=pushed)) == (want[0] if want else 0)


def test_a_tun_client_with_route_delay_does_not_wait_for_a_dhcp_router():
    o = _parse(BASE + "dev tun\nroute-delay 5\n")
    assert not routes_wait_for_dhcp(o, PushedOptions(route_gateway="dhcp", route_delay=(3, None)))
    o = _parse(BASE + "dev tap\n")
    assert routes_wait_for_dhcp(o, PushedOptions(route_gateway="dhcp", route_delay=(3, None)))
