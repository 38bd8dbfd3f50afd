"""`route-delay` on a tap client with `route-gateway dhcp`: when the routes go in, as OpenVPN 2.6
does it on Linux (init.c do_open_tun / forward.c check_add_routes, read in 2.6.14 and run beside
Debian's client).

What 2.6 does there: its route list is made as the tunnel comes up, before any DHCP reply can give
the gateway, so a route with no gateway of its own (or `vpn_gateway`) is dropped then ("needs a
gateway parameter", "vpn_gateway undefined") and the per-route variables are left out of the
environment. With `route-delay N`, do_route -- redirect-gateway, the routes left, route-up,
"Initialization Sequence Completed" -- waits N seconds (on Linux its test_routes is always true:
the window W never delays it further); redirect-gateway then goes via the router the server
side's DHCP ACK gave by then (route_vpn_gateway in route-up's environment, redirect_gateway=1),
or is not done ("VPN gateway parameter ... is missing") when none came yet. Without route-delay
do_route runs at once, and nothing can use the router.

Why a module of its own: the client (its timer and route-up) and the tunnel's routes (which wait)
take the same decision; it is made here once.
"""
from __future__ import annotations

import ipaddress


def routes_wait_for_dhcp(opts, pushed) -> bool:
    """Whether this tunnel's routes and route-up wait `route-delay` seconds for the router of a
    DHCP reply: a tap client with route-delay and route-gateway dhcp in effect (the profile's,
    or pushed: a plain server-bridge pushes it)."""
    if opts.route_delay is None or opts.dev_type != "tap" or opts.role == "server":
        return False
    return "dhcp" in (opts.route_gateway, getattr(pushed, "route_gateway", None))


def delay_of(opts) -> int:
    """route-delay's N, in seconds."""
    return opts.route_delay[0] if opts.route_delay is not None else 0


def usable_router(router: str | None) -> str | None:
    """The learned router if routes can go via it: a unicast address (a server's reply may name
    0.0.0.0, a broadcast, multicast or loopback address -- the kernel refuses a route via those;
    the redirect is then not done, as with no router, rather than the tunnel ending)."""
    if router is None:
        return None
    a = ipaddress.IPv4Address(router)
    if a.is_unspecified or a.is_multicast or a.is_loopback or a == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return router
