"""The push-merge fuzz target: a server's PUSH_REPLY read under a profile's pull-filter and
route-nopull, then merged with the profile's own network options (profile_push.with_profile),
as the client does at tunnel-up.

Why a target of its own: push-client drives the Session (one handshake per input, ~35/s) and
stops at PushedOptions; what the gateway installs is the merge, and the profile's side of it
(route-nopull, pull-filter, block-ipv6, route-ipv6, route-metric, dns, dhcp-option) is where a
server's text could get past the user's own settings. Model oracles (OpenVPN 2.6's rules, as
profile_push.py and keymethod.py state them):
  - only BadPacket escapes the parse, nothing escapes the merge;
  - under route-nopull nothing of NOPULL_OPTIONS comes from the server: no pushed route,
    route-ipv6, redirect, route-metric, block-ipv6, dhcp-option, dns, client-nat;
  - under `pull-filter ignore route` no route, route-ipv6, route-gateway or route-metric is taken;
  - the profile's route-ipv6 lines come first, in order; with its block-ipv6 the result blocks
    IPv6 and holds no net_gateway_ipv6 route but the profile's own;
  - every profile `dns server` priority the server did not push is kept as the profile has it;
  - a route's metric is its own or the merged route-metric;
  - a pushed route-delay replaces the profile's (route-nopull or not), its numbers within 0..2^31-1;
  - the merge changes neither the pushed options nor the profile (the client merges the same
    push again at each reconnect: an aliased list would grow), and gives the same twice.
First byte: the profile (PROFILES); the rest is the PUSH_REPLY's text after "PUSH_REPLY,".
"""
from __future__ import annotations

import copy

BASE = "client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\ncert client.crt\nkey client.key\n"
PROFILES = (
    "",                                                                           # the fast path
    "route-ipv6 2001:db8:1::/48\nroute-metric 50\nblock-ipv6\ndhcp-option DNS 198.18.0.53\n"
    "dns server 1 address 198.18.0.54\ndns search-domains a.example\n",
    "route-nopull\nroute-ipv6 2001:db8:2::/48 net_gateway_ipv6\ndns server 2 address 198.18.0.55\nroute-delay 3 20\n",
    "pull-filter ignore route\npull-filter accept dhcp-option\npull-filter ignore \"dhcp-option DNS\"\n"
    "route-metric 7\ndhcp-option DOMAIN b.example\n",
    "block-ipv6\nroute-ipv6 2001:db8:3::/48 net_gateway_ipv6\npull-filter reject redirect-gateway\n",
)


def make_push_merge():
    from appliance.openvpn import config as options
    from appliance.openvpn.errors import BadPacket
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    from appliance.gateway.route_delay import delay_in_effect
    from appliance.openvpn.config.d_profile import ROUTE_DELAY_WINDOW
    from appliance.openvpn.profile_push import with_profile

    from .targets import _fake_files
    files = _fake_files()

    def read_file(path: str) -> bytes:
        return files[path.rsplit("/", 1)[-1]]
    profiles = [options.parse_config(BASE + p, "/fuzz/profile.ovpn", read_file=read_file) for p in PROFILES]

    def one(data: bytes) -> None:
        if not data:
            return
        opts = profiles[data[0] % len(profiles)]
        text = "PUSH_REPLY," + data[1:].decode("utf-8", "replace")
        try:
            pushed = parse_push_reply_untrusted(text, None, opts.pull_filter, opts.route_nopull)
        except BadPacket:
            return
        before, opts_before = copy.deepcopy(pushed), copy.deepcopy(opts)
        merged = with_profile(opts, pushed)
        assert pushed == before, "the merge changed the pushed options"
        assert opts == opts_before, "the merge changed the profile"
        assert with_profile(opts, pushed) == merged, "a second merge gives something else"
        if opts.route_nopull:
            assert not (pushed.routes or pushed.routes_ipv6 or pushed.redirect_gateway is not None
                        or pushed.redirect_private is not None or pushed.route_metric is not None
                        or pushed.block_ipv6 or pushed.dhcp_options or pushed.dns_servers or pushed.dns
                        or pushed.client_nat), "route-nopull let a pushed network option in"
        if ("ignore", "route") in opts.pull_filter:
            assert not (pushed.routes or pushed.routes_ipv6 or pushed.route_gateway is not None
                        or pushed.route_metric is not None), "pull-filter ignore route let a route option in"
        own6 = [(str(n), g) for n, g, _x in opts.route_ipv6]
        got6 = [(str(n), g) for n, g, _m in merged.routes_ipv6]
        assert got6[:len(own6)] == own6, "the profile's route-ipv6 lines are not first"
        if opts.block_ipv6:
            assert merged.block_ipv6, "the profile's block-ipv6 was lost"
            assert all(g != "net_gateway_ipv6" for _n, g in got6[len(own6):]), \
                "a pushed net_gateway_ipv6 route under the profile's block-ipv6"
        for prio, srv in opts.dns_servers.items():
            if prio not in pushed.dns_servers:
                assert merged.dns_servers.get(prio) == srv, f"the profile's dns server {prio} was lost"
        # route-delay (gateway/route_delay.py): a pushed one replaces the profile's, route-nopull or
        # not (2.6's OPT_P_ROUTE_EXTRAS); each number as positive_atoi reads it; W, when the push
        # gives none, the profile's or 2.6's 30.
        if pushed.route_delay is not None:
            n, w = pushed.route_delay
            assert 0 <= n <= 2**31 - 1 and (w is None or 0 <= w <= 2**31 - 1), f"route-delay {pushed.route_delay}"
            want = (n, w if w is not None else (opts.route_delay[1] if opts.route_delay else ROUTE_DELAY_WINDOW))
            assert delay_in_effect(opts, merged) == want, f"route-delay in effect {delay_in_effect(opts, merged)}"
        else:
            assert delay_in_effect(opts, merged) == opts.route_delay, "the profile's route-delay was lost"
        for n, m, g, x in merged.routes:
            assert x is None or x == merged.route_metric or any(
                r[0] == n and r[1] == m and r[3] == x for r in pushed.routes), f"route {n} got metric {x}"
    return one


def seeds() -> list[bytes]:
    push = ("route-gateway 198.19.0.1,topology subnet,ifconfig 198.19.0.2 255.255.255.0,"
            "route 198.18.100.0 255.255.255.0,route 10.0.0.0 255.0.0.0 net_gateway 5,route-ipv6 2001:db8::/32,"
            "route-ipv6 2000::/3 net_gateway_ipv6,redirect-gateway def1 ipv6 block-local,route-metric 20,"
            "dhcp-option DNS 198.19.0.1,dhcp-option DOMAIN example.org,dns server 1 address 198.19.0.9,"
            "dns search-domains c.example,block-ipv6,client-nat snat 198.18.5.0 255.255.255.0 198.18.9.0,"
            "peer-id 3,cipher AES-256-GCM")
    return [bytes((i,)) + push.encode() for i in range(len(PROFILES))] + [b"\x01route-metric 0,route-ipv6 ::/0"]
