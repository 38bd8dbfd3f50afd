"""Which pushes make the client keep a host route to the server along the pre-tunnel path
(gateway/tunnel.py): any that would otherwise send the server's own address into the TUN. The
lab proof is tests/interop/test_client_vs_openvpn.py (a pushed route over the server's address);
this covers the forms of push the lab does not build."""
import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import Options
from appliance.openvpn.keymethod import PushedOptions

SERVER = "203.0.113.10"
SERVER6 = "2001:db8:5::10"


def _push(**kw) -> PushedOptions:
    kw.setdefault("ifconfig", ("198.19.0.2", "255.255.255.0"))
    kw.setdefault("topology", "subnet")
    return PushedOptions(**kw)


@pytest.mark.parametrize("push", [
    _push(routes=[(SERVER, "255.255.255.255", None, None)]),
    _push(routes=[("203.0.113.0", "255.255.255.0", None, 5)]),
    _push(routes=[("128.0.0.0", "128.0.0.0", None, None)]),            # a def1 half, no redirect-gateway
    _push(ifconfig=("203.0.113.77", "255.255.255.0")),                 # the tunnel's subnet holds it
    _push(ifconfig=("198.19.0.2", SERVER), topology="net30"),          # its peer address is the server's
    _push(redirect_gateway=["def1"]),
    _push(ifconfig_ipv6=("2001:db8::2/0", "2001:db8::1")),             # an IPv6 server inside ::/0
    _push(ifconfig_ipv6=("2001:db8:5::2", "")),                        # ... or the /64 it defaults to
    _push(routes=[("0.0.0.0", "0.0.0.0", None, None)]),
])
def test_pushes_that_would_swallow_the_server_keep_its_host_route(push):
    server = SERVER6 if push.ifconfig_ipv6 else SERVER
    assert TunnelNetwork(Options())._server_needs_host_route(push, server)


@pytest.mark.parametrize("push", [
    _push(routes=[("198.18.100.0", "255.255.255.0", None, None), ("0.0.0.0", "128.0.0.0", None, None)]),
    _push(routes=[(SERVER, "255.255.255.255", "net_gateway", None)]),   # already the pre-tunnel way
    _push(routes=[("203.0.113.0", "255.0.255.0", None, None)]),         # no mask: skipped later, not here
    _push(),
    _push(ifconfig_ipv6=("2001:db8:6::2/64", "")),
])
def test_pushes_that_leave_the_server_alone_add_no_route(push):
    assert not TunnelNetwork(Options())._server_needs_host_route(push, SERVER)
    assert not TunnelNetwork(Options())._server_needs_host_route(push, SERVER6)


class _Routes:
    """RouteSet's keep_path_to, recorded."""

    def __init__(self) -> None:
        self.kept: list = []

    def keep_path_to(self, ip, path) -> None:
        self.kept.append((ip, path))

    def release_holds(self, v6=None, local_only=False) -> None:
        """(No holds here: this push redirects nothing.)"""


@pytest.mark.parametrize("kind", ["routes", "dhcp"])
def test_route_delay_keeps_the_servers_host_route_at_once(kind):
    """route-delay holds the routes back, not this one (2.6 adds it with the rest): a pushed
    subnet over the server's address took the server's packets into the TUN for the whole delay
    (a server may push one of years). Kept along the path looked up before the tunnel's address."""
    t = TunnelNetwork(Options(route_delay=(5, 30)))
    t.routes = _Routes()
    push = _push(ifconfig=("203.0.113.77", "255.255.255.248"))
    path = ("198.18.0.254", 3)
    if kind == "routes":
        t._wait_for_delay(push, SERVER, False, kind, path)
    else:
        t._wait_for_router(push, SERVER, False, path)
    assert t.routes.kept == [(SERVER, path)] and t.routes_waiting[4] == path
    t = TunnelNetwork(Options(route_delay=(5, 30)))
    t.routes = _Routes()
    t._wait_for_delay(_push(), SERVER, False, kind, None)     # none needed: none added
    assert t.routes.kept == []
