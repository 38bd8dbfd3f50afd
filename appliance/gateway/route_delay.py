"""`route-delay`: when a client's routes go in, as OpenVPN 2.6 does it on Linux (init.c do_open_tun /
do_up / initialization_sequence_completed, forward.c check_add_routes, read in 2.6.14 and run
beside Debian's client).

Everywhere (tun or tap, the profile's `route-delay [N [W]]` or a pushed one, which replaces it
for that connection: its option class, OPT_P_ROUTE_EXTRAS, is taken with route-nopull too):
2.6's do_open_tun makes the route list (route_* variables, the up script) but adds no route;
N seconds after the tunnel came up (on Linux test_routes is always true: W never delays it
further) do_route adds them, sets redirect_gateway, says >STATE:ADD_ROUTES and >UPDOWN:UP,
runs route-up (as root: the drop to `user` comes after), then "Initialization Sequence
Completed" and >STATE:CONNECTED. A device kept over a reconnect (persist-tun, the same push)
is not opened again: no delay, no route-up, no ASSIGN_IP or ADD_ROUTES, CONNECTED at once
(gateway/client.py `_tun_kept`). Unlike 2.6, a reconnect before the delay was over waits it again
and adds the routes: 2.6's restart drops its timer and never gives the kept device its routes. The pushed DNS does not wait: 2.6's
up script sets it at tunnel-up, so the DNS services hear of it then (gateway/observers.py
routes_wait), the rest at CONNECTED. Not on a server: its config
refuses the line (config/parser.py NOT_IN_SERVER, as 2.6's "--route-delay cannot be used with
--mode server"), and what it pushes is for its clients.

On a tap client with `route-gateway dhcp`, what 2.6 does: its route list is made as the tunnel
comes up, before any DHCP reply can give the gateway, so a route with no gateway of its own (or
`vpn_gateway`) is dropped then ("needs a gateway parameter", "vpn_gateway undefined") and the
per-route variables are left out of the environment. With `route-delay N`, do_route -- redirect-gateway, the routes left, route-up,
"Initialization Sequence Completed" -- waits N seconds (on Linux its test_routes is always true:
the window W never delays it further); redirect-gateway then goes via the router the server
side's DHCP ACK gave by then (route_vpn_gateway in route-up's environment, redirect_gateway=1),
or is not done ("VPN gateway parameter ... is missing") when none came yet. Without route-delay
do_route runs at once, and nothing can use the router. Ours differs where 2.6 runs on without a
redirect the user asked for (tapredir48): no ACK by the delay's end ends the connection (restart
pause, tunnel.py _redirect_without_gateway). Without route-delay, a redirect with route-gateway
dhcp waits for the router as if route-delay were given (waits_for_router_alone, tapredir49):
2.6's own wait for a device that is not ready yet (forward.c check_add_routes: test_routes
polled each second, the routes added anyway at route-delay's window, 30 s by default) is what
it follows, "ready" being a DHCP ACK's router on the tap's network -- the routes go in as soon as
one came and the DHCP client on the tap took the ACK's address (the router is read from the ACK on
its way to the tap, a moment before: a route via it then is refused), and with none by the
window's end the connection ends as at route-delay's end. While the routes wait for
a router -- or, since redirect50, for an explicit route-delay's N seconds -- the redirect's halves
(and block-local's network) refuse traffic (unreachable routes, router/routes.py hold_halves,
tunnel.py _hold_redirect) so nothing the user asked into the tunnel leaves outside it meanwhile;
2.6 sends it out the host's own routes until then.

Why a module of its own: the client (its timer and route-up) and the tunnel's routes (which wait)
take the same decision; it is made here once.
"""
from __future__ import annotations

import ipaddress

from ..openvpn.config.d_profile import ROUTE_DELAY_WINDOW


def delay_in_effect(opts, pushed) -> tuple[int, int] | None:
    """route-delay's (N, W) for this connection: a pushed one replaces the profile's (its W, when
    it gives none, the profile's or 2.6's default 30), None when neither gives one or on a server."""
    if opts.role == "server":
        return None
    p = getattr(pushed, "route_delay", None)
    if p is not None:
        if p[1] is not None:
            return p[0], p[1]
        return p[0], opts.route_delay[1] if opts.route_delay is not None else ROUTE_DELAY_WINDOW
    return opts.route_delay


def routes_wait_for_dhcp(opts, pushed) -> bool:
    """Whether this tunnel's routes and route-up wait `route-delay` seconds for the router of a
    DHCP reply: a tap client with route-delay and route-gateway dhcp in effect (the profile's,
    or pushed: a plain server-bridge pushes it)."""
    if delay_in_effect(opts, pushed) is None or opts.dev_type != "tap":
        return False
    return "dhcp" in (opts.route_gateway, getattr(pushed, "route_gateway", None))


ROUTER_WAIT = ROUTE_DELAY_WINDOW       # s: route-gateway dhcp's wait for a router without route-delay
ROUTER_ON_LINK_POLL = 0.1               # s: how often that wait looks for the tap's address on the router's network


def dhcp_gateway_only(opts, pushed) -> bool:
    """Whether `route-gateway dhcp` is the only route-gateway in effect (the pushed one or the
    profile's; an address beside it is used instead, tunnel.py _gateway4)."""
    gws = [g for g in (getattr(pushed, "route_gateway", None), opts.route_gateway) if g is not None]
    return bool(gws) and all(g == "dhcp" for g in gws)


def waits_for_router_alone(opts, pushed, redirect4: bool) -> bool:
    """Whether this tunnel's routes and route-up wait for a DHCP router without route-delay: a
    tap client whose only route-gateway is `dhcp` and whose routes redirect the IPv4 default
    route (`redirect4`). Such a bridged profile worked with OpenVPN 2.6 -- unredirected, all
    traffic outside the tunnel ("VPN gateway parameter ... is missing") --, so a config written
    for it must work unchanged here, and redirected: the routes wait for the router of the DHCP
    ACK on the tap, at most ROUTER_WAIT s (2.6's default route-delay window)."""
    return (redirect4 and opts.role != "server" and opts.dev_type == "tap" and not opts.route_noexec
            and delay_in_effect(opts, pushed) is None and dhcp_gateway_only(opts, pushed))


def delay_of(opts, pushed=None) -> int:
    """route-delay's N in effect, in seconds (0 without one)."""
    d = delay_in_effect(opts, pushed)
    return d[0] if d is not None else 0


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
