"""What the server pushed about DNS, as a resolver takes it: servers, search and routing domains.

One place for the reading of PushedOptions (both backends use it): `dhcp-option DNS/DNS6` and the
2.6 `dns server` form land in `pushed.dns`; `dhcp-option DOMAIN` (the connection's domain) and
`DOMAIN-SEARCH` (search list) and the 2.6 `dns search-domains` (`pushed.search_domains`, added by
the dns work; read with a default) give the search list; `DOMAIN-ROUTE` routing-only domains.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ..lan.pushed_dns import not_through_the_tunnel
from ..openvpn.profile_push import redirect_defaults

# A DNS name as resolv.conf and resolved accept it (no spaces or control bytes from the server).
_NAME = re.compile(r"^(?=.{1,253}\.?\Z)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                   r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?\Z")   # \Z: `$` passes a final newline
MAX_SERVERS = 8        # bounds on what a server can make us write
MAX_DOMAINS = 32


@dataclass(frozen=True)
class DnsSettings:
    servers: tuple[str, ...]             # addresses, in the order pushed
    search: tuple[str, ...]              # search domains (also routing domains for resolved)
    routing: tuple[str, ...]             # routing-only domains (DOMAIN-ROUTE)
    default_route: bool                  # redirect-gateway: all names go to these servers
    skipped: tuple[str, ...] = ()        # servers pushed with a port other than 53 (`addr:port`)
    refused: tuple[str, ...] = ()        # servers not through the tunnel (`addr (why)`): not used

    @property
    def empty(self) -> bool:
        return not self.servers and not self.search and not self.routing


def _addr(a: str) -> str | None:
    try:
        return str(ipaddress.ip_address(a.strip()))
    except ValueError:
        return None


def _domain(d: str) -> str | None:
    return d.rstrip(".") if d and _NAME.match(d) and d != "." else None


def from_pushed(pushed, redirect_local: list[str] | None = None, private_local: list[str] | None = None,
                redirect_lines: "list[tuple[bool, list[str]]] | None" = None) -> DnsSettings:
    """Validated settings from a PushedOptions (bad entries dropped, counts bounded);
    `redirect_local` / `private_local`: the profile's own redirect-gateway / redirect-private,
    whose flags the pushed ones add to (profile_push.redirect_in_effect, as the routes);
    `redirect_lines`: the profile's lines of both in their order, when known (Options.redirect_lines:
    the order decides the redirect, and the routes are made from it)."""
    servers: list[str] = []
    skipped: list[str] = []
    # With their ports (`dns server N address A:PORT`): resolv.conf has no port, and asking port
    # 53 of a server pushed on another one asks a service nobody pushed, so those are left out.
    # dns_endpoints is `dns` with the ports (keymethod.update_dns keeps them in step); a pushed
    # object that sets `dns` alone means port 53.
    dns = list(getattr(pushed, "dns", []) or [])
    endpoints = list(getattr(pushed, "dns_endpoints", []) or [])
    if len(endpoints) != len(dns):
        endpoints = [(a, 53) for a in dns]
    # As the LAN's DHCP, RA and DNS forwarder (lan/pushed_dns.py): not this host's own address
    # (the tunnel's, loopback, ...), not multicast or broadcast. A hostile server's `dhcp-option
    # DNS 224.0.0.251` sent every name the host looked up to its whole local network in clear.
    ifc6 = getattr(pushed, "ifconfig_ipv6", None)
    ours = [*(getattr(pushed, "ifconfig", None) or ())[:1], *([ifc6[0].partition("/")[0]] if ifc6 else [])]
    refused: dict[str, str] = {}
    for a, port in endpoints:
        x = _addr(a)
        if x is None:
            continue
        if port != 53:
            if len(skipped) < MAX_SERVERS:
                skipped.append(f"[{x}]:{port}" if ":" in x else f"{x}:{port}")
        elif x not in servers and x not in refused and len(servers) < MAX_SERVERS:
            why = not_through_the_tunnel(x, ours)
            if why is None:
                servers.append(x)
            else:
                refused[x] = why
    search: list[str] = []
    routing: list[str] = []

    def add(lst: list[str], d: str) -> None:
        x = _domain(d)
        if x is not None and x not in search and x not in routing and len(search) + len(routing) < MAX_DOMAINS:
            lst.append(x)

    for kind, val in getattr(pushed, "dhcp_options", []) or []:
        k = kind.upper()
        if k in ("DOMAIN", "DOMAIN-SEARCH"):      # one name per option; anything else is dropped
            add(search, val)
        elif k == "DOMAIN-ROUTE":
            add(routing, val)
    for d in getattr(pushed, "search_domains", []) or []:
        add(search, d)
    # The redirect the routes are made with (review46d: the server's line alone decided here, so
    # a profile's `redirect-gateway def1 ipv6` under a pushed `redirect-gateway !ipv4` sent all
    # IPv6 into the tunnel while names were asked outside it, the tunnel's DNS not the default).
    # review47d: the profile's lines in their order, as the routes read them (a profile's
    # `redirect-private` then `redirect-gateway def1 ipv6 !ipv4` routes all IPv6 into the tunnel;
    # read as "redirect-gateway's line, then redirect-private's" it was redirect-private's, no
    # default here); and redirect-private's `ipv6` redirects IPv6 as redirect-gateway's does
    # (2.6's options.c sets the same routes_ipv6 flag; gateway/tunnel.py routes it so).
    default_route = any(redirect_defaults(_Profile(redirect_local, private_local, list(redirect_lines or ())), pushed))
    return DnsSettings(tuple(servers), tuple(search), tuple(routing), default_route, tuple(skipped),
                       tuple(f"{x} ({why})" for x, why in list(refused.items())[:MAX_SERVERS]))


@dataclass(frozen=True)
class _Profile:
    """The profile's own redirect lines, as redirect_in_effect reads an Options."""
    redirect_gateway: list[str] | None
    redirect_private: list[str] | None
    redirect_lines: "list[tuple[bool, list[str]]]" = field(default_factory=list)   # both, in order
