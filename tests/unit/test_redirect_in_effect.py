"""Which redirect flags a push is applied with, and do_route's `redirect_gateway` variable in the
up environment (init.c: 1 when route.c's redirect ran, RG_ENABLE -- redirect-gateway or
redirect-private, unless `!ipv4` took it back), as OpenVPN 2.6 (options.c, route.c)."""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import did_redirect, redirect_in_effect
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted

BASE = "PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0"


def _opts(extra: str = ""):
    return parse_config(f"client\ndev tun\nremote 198.18.60.9\n<ca>\n</ca>\n{extra}", "/mem/p.ovpn",
                        read_file=lambda p: b"")


@pytest.mark.parametrize("profile, push, rg, rp, did", [
    ("", "", None, None, False),
    ("", ",redirect-gateway", set(), None, True),                 # no flags: still a redirect
    ("", ",redirect-gateway def1", {"def1"}, None, True),
    ("", ",redirect-gateway ipv6 !ipv4", {"ipv6", "!ipv4"}, None, False),
    ("redirect-gateway def1\n", "", {"def1"}, None, True),        # the profile's own
    # the server's line adds its flags to the profile's, as 2.6 ORs them (atk45: it replaced them)
    ("redirect-gateway def1\n", ",redirect-gateway local", {"def1", "local"}, None, True),
    ("redirect-gateway def1 ipv6\n", ",redirect-gateway def1", {"def1", "ipv6"}, None, True),
    ("redirect-gateway def1 block-local\n", ",redirect-gateway", {"def1", "block-local"}, None, True),
    # `!ipv4` turns the IPv4 side off until a later redirect-gateway line turns it on again
    ("redirect-gateway ipv6 !ipv4\n", ",redirect-gateway def1", {"def1", "ipv6"}, None, True),
    ("redirect-gateway def1\n", ",redirect-gateway ipv6 !ipv4", {"def1", "ipv6", "!ipv4"}, None, False),
    ("redirect-private ipv6\n", ",redirect-gateway def1", {"def1", "ipv6"}, None, True),
    ("redirect-gateway def1\n", ",redirect-private local", {"def1", "local"}, None, True),
    ("redirect-private !ipv4\n", ",redirect-private local", None, {"local"}, True),
    ("", ",redirect-private", None, set(), True),
    ("redirect-private ipv6\n", ",redirect-private local", None, {"ipv6", "local"}, True),
    ("redirect-private\n", ",redirect-gateway def1", {"def1"}, None, True),
    ("", ",redirect-private !ipv4", None, {"!ipv4"}, False),
    # a profile's repeated lines add up as well (review46d: the later replaced the earlier, so
    # `ipv6` then `def1` left IPv6 outside the tunnel; Debian's 2.6.14 routes it in)
    ("redirect-gateway ipv6\nredirect-gateway def1\n", "", {"def1", "ipv6"}, None, True),
    ("redirect-gateway ipv6 !ipv4\nredirect-gateway def1\n", "", {"def1", "ipv6"}, None, True),
    ("redirect-gateway def1\nredirect-gateway ipv6 !ipv4\n", "", {"def1", "ipv6", "!ipv4"}, None, False),
    ("redirect-private local\nredirect-private ipv6\n", "", None, {"local", "ipv6"}, True),
    # compat47: the two directives' lines folded in their order, profile then push, word by word
    # (options.c): `!ipv4` clears RG_ENABLE and RG_REROUTE_GW, a later line of either name sets
    # RG_ENABLE again (redirect-private's without the reroute). Ours read every redirect-gateway
    # line before any redirect-private one.
    ("redirect-gateway def1 !ipv4\n", ",redirect-private local", None, {"def1", "local"}, True),
    ("redirect-gateway !ipv4\nredirect-private local\n", "", None, {"local"}, True),
    ("", ",redirect-gateway def1 !ipv4,redirect-private", None, {"def1"}, True),
    ("", ",redirect-private local,redirect-gateway def1 !ipv4", {"local", "def1", "!ipv4"}, None, False),
    ("redirect-private local\nredirect-gateway !ipv4 def1\n", "", {"local", "def1", "!ipv4"}, None, False),
    ("redirect-gateway !ipv4 ipv6\n", ",redirect-private", None, {"ipv6"}, True),
])
def test_flags_in_effect_and_the_up_variable(profile, push, rg, rp, did):
    opts, pushed = _opts(profile), parse_push_reply_untrusted(BASE + push)
    assert redirect_in_effect(opts, pushed) == (rg, rp)
    assert did_redirect(opts, pushed) is did


def test_route_nopull_and_pull_filter_keep_a_pushed_redirect_private_out():
    for kw in ({"route_nopull": True}, {"filters": [("ignore", "redirect-private")]}):
        pushed = parse_push_reply_untrusted(BASE + ",redirect-private", **kw)
        assert pushed.redirect_private is None, kw
        assert not did_redirect(_opts(), pushed)


@pytest.mark.parametrize("name", ["redirect-gateway", "redirect-private"])
def test_a_pushed_unknown_flag_ends_the_flags_not_the_redirect(name):
    """As OpenVPN 2.6 (options.c: RG_ENABLE is set before the flags are read; an unknown one is
    logged and ends the reading, at D_PUSH_ERRORS): the redirect is taken with the flags before
    the unknown one, the rest of the push taken, the flag logged. Debian's 2.6.14 client does so
    (tests/interop/test_client_vs_openvpn.py). audit44 left the whole line out: everything went
    outside the tunnel where 2.6 sends it in (review45a)."""
    pushed = parse_push_reply_untrusted(BASE + f",{name} def1 block-locl ipv6,route 198.18.71.0 255.255.255.0")
    assert getattr(pushed, name.replace("-", "_")) == ["def1"]
    assert did_redirect(_opts(), pushed)
    assert [m for m in pushed.malformed if f"unknown --{name} flag: block-locl" in m and "def1" in m]
    assert len(pushed.routes) == 1
    first = parse_push_reply_untrusted(BASE + f",{name} bogus def1")
    assert getattr(first, name.replace("-", "_")) == [] and did_redirect(_opts(), first)
    back = parse_push_reply_untrusted(BASE + f",{name} !ipv4 bogus")
    assert not did_redirect(_opts(), back)
    good = parse_push_reply_untrusted(BASE + f",{name} def1 block-local")
    assert did_redirect(_opts(), good) and not good.malformed


def test_two_pushed_lines_add_up_as_in_2_6():
    """A server pushing `redirect-gateway def1 ipv6` and then `redirect-gateway def1` (a ccd
    file's push after the config's): 2.6 ORs both; the second replaced the first here, IPv6 then
    outside the tunnel (atk45). A later line without `!ipv4` turns IPv4 on again."""
    pushed = parse_push_reply_untrusted(BASE + ",redirect-gateway def1 ipv6,redirect-gateway def1")
    assert redirect_in_effect(_opts(), pushed) == ({"def1", "ipv6"}, None)
    pushed = parse_push_reply_untrusted(BASE + ",redirect-gateway ipv6 !ipv4,redirect-gateway def1")
    assert redirect_in_effect(_opts(), pushed) == ({"def1", "ipv6"}, None) and did_redirect(_opts(), pushed)
    pushed = parse_push_reply_untrusted(BASE + ",redirect-gateway def1,redirect-gateway ipv6 !ipv4")
    assert redirect_in_effect(_opts(), pushed) == ({"def1", "ipv6", "!ipv4"}, None)


@pytest.mark.parametrize("profile, push, v4, v6", [
    ("", "", False, False),
    ("", ",redirect-gateway def1", True, False),
    ("", ",redirect-gateway ipv6 !ipv4", False, True),
    ("redirect-private ipv6\n", "", False, True),                  # redirect-private's ipv6 too (2.6: routes_ipv6)
    ("redirect-private\n", ",redirect-gateway def1 ipv6 !ipv4", False, True),
    ("redirect-gateway ipv6 !ipv4\n", ",redirect-gateway def1", True, True),
    ("redirect-gateway def1\n", ",redirect-private", True, False),
])
def test_routes_and_run_dns_read_one_answer(profile, push, v4, v6):
    """review47f: the default routes (tunnel.py) and run --dns's default domain (dns_settings) both
    read profile_push.redirect_defaults: the DNS is the default exactly when a default route is."""
    from appliance.host.dns_settings import from_pushed
    from appliance.openvpn.profile_push import redirect_defaults
    opts = _opts(profile)
    pushed = parse_push_reply_untrusted(BASE + push + ",dhcp-option DNS 198.18.70.1")
    assert redirect_defaults(opts, pushed) == (v4, v6)
    dns = from_pushed(pushed, opts.redirect_gateway, opts.redirect_private, opts.redirect_lines)
    assert dns.default_route == (v4 or v6)
