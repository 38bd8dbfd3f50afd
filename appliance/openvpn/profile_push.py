"""The client's network options: what the server pushed together with the profile's own lines.

OpenVPN 2.6 keeps one set of options: the profile's lines, then each pushed option added on top
(options.c). At a reconnect it puts back only what pre_connect_save kept (routes, route-gateway,
DNS/dhcp-options, client-nat, cipher, ping, compression); a pulled route-metric or block-ipv6 stays
there into the next connection. Ours merges the profile with each connection's own push (the
shaper too, gateway/client.py _set_shaper): README, "Thirty-eighth session (helper pull41)", says
why. So a profile's
`route-ipv6` is installed beside the pushed ones (the profile's first), its `route-metric` holds
for routes without a metric until a push gives another, its `block-ipv6` holds whatever the
server says, and its `dns` servers stay but for a priority the server also pushes (dns.c
dns_options_postprocess_pull: "Pulled server overrides static one"); search domains add up.
`route-nopull` refuses only what is pushed (keymethod.NOPULL_OPTIONS), never the profile's own.

Why one merged PushedOptions and not two lists everywhere: the tunnel, the DNS services and the
management interface each read PushedOptions; merged once at tunnel-up, each reads both as one.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .keymethod import PushedOptions, update_dns

if TYPE_CHECKING:
    from .config import Options

MAX_NOTED = 8           # pushed routes named in `ignored` (the push may hold hundreds)


def device_mtu(opts: "Options", pushed: PushedOptions | None) -> int:
    """The TUN's MTU for this push: the pushed tun-mtu, else `opts`' (the connection entry's: its
    <connection> block's tun-mtu, or link-mtu over its protocol). The one place it is decided: the
    device (TunnelNetwork._device_at), the scripts' `tun_mtu` (updown_env.py) and what the push
    cannot have on it (push_fatal.py) read it here."""
    return pushed.tun_mtu if pushed is not None and pushed.tun_mtu else opts.tun_mtu


def outside_ipv6_dropped(opts: "Options", pushed: PushedOptions | None) -> list[str]:
    """The pushed `route-ipv6 ... net_gateway_ipv6` networks the profile's block-ipv6 keeps out
    (with_profile), for the gateway's warning."""
    if pushed is None or not opts.block_ipv6:
        return []
    return [n for n, g, _x in pushed.routes_ipv6 if g == "net_gateway_ipv6"]


def redirect_in_effect(opts, pushed) -> "tuple[set[str] | None, set[str] | None]":
    # (opts: anything with the profile's redirect_gateway / redirect_private lists, as HostDns
    # keeps them; pushed: a PushedOptions, or the DNS tests' stand-in without one of them.)
    """The redirect-gateway and redirect-private flags this push is applied with (None: not in
    effect), as OpenVPN 2.6 keeps them (options.c): one flag set for both directives, into which
    every line -- the profile's, then the server's (2.6 restores the profile's before each push
    and reads the pushed lines onto it) -- ORs its flags; each line turns the redirect on, and
    `!ipv4` turns its IPv4 side off until a later redirect-gateway line turns it on again.
    (rg, None) when any redirect-gateway line is in, `!ipv4` in rg when its IPv4 side ended off;
    else (None, rp) for redirect-private alone. The one place every route decision
    reads them, and the host DNS's default route (host/dns_settings.py: review46d).
    Before (helper atk45), the server's redirect-gateway replaced the profile's: a profile's
    `redirect-gateway def1 ipv6` under a server's plain `redirect-gateway def1` sent all IPv6
    outside the tunnel, where Debian's 2.6.14 client routes it in (its `block-local` likewise)."""
    lines = _in_order(opts) + _in_order(pushed)
    if not lines:
        return None, None
    # 2.6's fold, line by line and word by word (options.c add_option): each line sets RG_ENABLE
    # (redirect-gateway RG_REROUTE_GW too), each flag its bit, `!ipv4` clears both -- so the order
    # of the two directives' lines counts: `redirect-gateway !ipv4` then `redirect-private` is
    # redirect-private's (enabled, no reroute), the reverse is nothing on IPv4 (compat47: ours
    # read the profile's redirect-gateway, its redirect-private, then the server's likewise).
    # `ipv6` is another flag set (routes_ipv6), never cleared by `!ipv4`.
    enable = reroute = False
    flags: set[str] = set()
    for gw, words in lines:
        enable, reroute = True, reroute or gw
        for w in words:
            if w == "!ipv4":
                enable = reroute = False
            else:
                flags.add(w)
    if reroute:
        return flags, None
    if enable:
        return None, flags
    if any(gw for gw, _words in lines):
        return flags | {"!ipv4"}, None
    return None, flags | {"!ipv4"}


def redirect_defaults(opts, pushed) -> "tuple[bool, bool]":
    """Whether the redirect lines in effect (redirect_in_effect) send the IPv4 / the IPv6 default
    route into the tunnel: redirect-gateway without `!ipv4`; `ipv6` of either directive (2.6's
    one routes_ipv6 flag). The one reading of the flags for the routes (gateway/tunnel.py) and run
    --dns's default-route domain (host/dns_settings.py) -- review47f: each wrote it out apart.
    Pushed default routes and block-ipv6 are the tunnel's own additions, not redirect lines."""
    rg, rp = redirect_in_effect(opts, pushed)
    return ((rg is not None and "!ipv4" not in rg),
            (rg is not None and "ipv6" in rg) or (rp is not None and "ipv6" in rp))


def _in_order(o) -> "list[tuple[bool, list[str]]]":
    """`o`'s redirect lines in reading order: its redirect_lines, or -- a stand-in without
    them (the DNS tests', HostDns) -- its merged redirect-gateway line, then redirect-private's."""
    if o is None:
        return []
    lines = getattr(o, "redirect_lines", None)
    if lines:
        return list(lines)
    return [(gw, flags) for gw, flags in ((True, getattr(o, "redirect_gateway", None)),
                                          (False, getattr(o, "redirect_private", None))) if flags is not None]


def with_profile(opts: "Options", pushed: PushedOptions | None) -> PushedOptions | None:
    """`pushed` with the profile's route-ipv6, route-metric, block-ipv6, dhcp-option and dns;
    `pushed` itself when the profile has none of them (the common case costs nothing)."""
    if pushed is None:
        return None
    if not (opts.route_ipv6 or opts.route_metric or opts.block_ipv6 or opts.dns_servers
            or opts.dns_search_domains or opts.dhcp_options or pushed.route_metric):
        # (A pushed route-metric alone still needs the pass: it is the metric of the pushed
        # routes without one, as 2.6 gives it at init_route_list. Ours left those routes at the
        # kernel's default when the profile had no route-metric of its own.)
        return pushed
    p = copy.copy(pushed)
    # route-metric: the pushed one replaces the profile's; 0 means none (options.c positive_atoi).
    metric = pushed.route_metric if pushed.route_metric is not None else opts.route_metric
    p.route_metric = metric or None
    p.routes = [(n, m, g, x if x is not None else p.route_metric) for n, m, g, x in pushed.routes]
    theirs = pushed.routes_ipv6
    if opts.block_ipv6:
        # The profile's block-ipv6: no IPv6 leaves outside the tunnel, whatever the server says.
        # A pushed `route-ipv6 2000::/3 net_gateway_ipv6` (more specific than the ::/1 halves)
        # sent all global IPv6 out the pre-tunnel way; OpenVPN 2.6 takes no net_gateway_ipv6
        # gateway (its route goes into the TUN). The profile's own such lines stay its choice.
        outside = [r for r in theirs if r[1] == "net_gateway_ipv6"]
        if outside:
            theirs = [r for r in theirs if r[1] != "net_gateway_ipv6"]
            p.ignored = [*pushed.ignored, *(f"route-ipv6 {n} net_gateway_ipv6 (the profile's block-ipv6)"
                                            for n, _g, _x in outside[:MAX_NOTED])]
    p.routes_ipv6 = [(n, g, x if x is not None else p.route_metric)
                     for n, g, x in [*opts.route_ipv6, *theirs]]
    p.block_ipv6 = pushed.block_ipv6 or opts.block_ipv6
    if opts.dhcp_options:
        # OpenVPN numbers foreign_option_N over the profile's lines, then the pushed ones.
        p.dhcp_options = [*opts.dhcp_options, *pushed.dhcp_options]
        update_dns(p)
    if opts.dns_servers or opts.dns_search_domains:
        servers = {n: copy.deepcopy(s) for n, s in opts.dns_servers.items()}
        servers.update(pushed.dns_servers)              # a pushed server N replaces the profile's N
        p.dns_servers = dict(sorted(servers.items()))
        p.search_domains = list(dict.fromkeys([*opts.dns_search_domains, *pushed.search_domains]))
        update_dns(p)
    return p
