"""redirect-gateway on a tap client with no gateway to go via, against the kernel in
test_rtnl.py's namespace (tapredir48): no `route-gateway` at all, `route-gateway dhcp` without
`route-delay`, and `route-gateway dhcp` whose route-delay ends with no DHCP ACK -- each fails the
push (the client starts over with its restart pause) instead of warning "not redirected" and
bringing the tunnel up with all traffic outside it, as OpenVPN 2.6.14 does; a redirect the
kernel refuses fails the same way (test_client_tun_kernel.py, review48b)."""
from __future__ import annotations

import subprocess
import uuid

import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.router.routes import HOLD_METRIC
from tests.unit.test_rtnl import _ip, _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = "198.18.60.9"
ADDR = ",ifconfig 198.18.80.2 255.255.255.0"
HALVES = {"0.0.0.0/1", "128.0.0.0/1"}
# With a pushed address, and without (a plain server-bridge: the tap's address comes by DHCP later).
ADDRS = pytest.mark.parametrize("addr", [ADDR, ""], ids=["ifconfig", "bare"])


@pytest.fixture
def tap(inside):                                # noqa: F811 - the namespace
    dev = f"q{uuid.uuid4().hex[:8]}"            # (inside's tun() makes TUNs only)
    subprocess.run(["ip", "tuntap", "add", dev, "mode", "tap"], check=True, capture_output=True, timeout=10)
    try:
        yield dev
    finally:
        subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=10)


def _ip_text(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    return r.stdout + r.stderr


def _net(dev: str, extra: str = "") -> TunnelNetwork:
    opts = parse_config(f"client\ndev {dev}\ndev-type tap\nremote {SERVER}\n{extra}<ca>\n</ca>\n", "/mem/p.ovpn",
                        read_file=lambda p: b"")
    return TunnelNetwork(opts)


@ADDRS
@pytest.mark.parametrize("where", ["pushed", "profile"])
def test_no_route_gateway_fails_the_push(tap, where, addr):
    net = _net(tap, "redirect-gateway def1\n" if where == "profile" else "")
    push = "PUSH_REPLY" + ("" if where == "profile" else ",redirect-gateway def1") + addr
    try:
        with pytest.raises(RuntimeError, match=f"^redirect-gateway via {tap}: no route-gateway pushed or in the "
                                               "profile.*the tunnel is not brought up without it"):
            net.apply(parse_push_reply_untrusted(push), SERVER)
        assert not HALVES & {r[0] for r in _routes(tap)}, _routes(tap)
    finally:
        net.close()


def _held(v6: bool = False) -> set:
    """The unreachable routes (RouteSet.hold_halves') in the namespace's main table."""
    return {r["dst"] for r in _ip("-j", *(["-6"] if v6 else []), "route", "show", "table", "main", "type",
                                  "unreachable") if r.get("metric") == HOLD_METRIC}


@ADDRS
@pytest.mark.parametrize("where", ["pushed", "profile"])
@pytest.mark.parametrize("router", [None, "198.18.80.1"], ids=["no ACK", "ACK"])
def test_route_gateway_dhcp_without_route_delay_waits_for_the_router_with_the_halves_held(tap, addr, where, router):
    # tapredir49: a bridged profile without route-delay works unchanged -- the routes wait for the
    # DHCP router as with route-delay (the client ends the wait at the router, or at ROUTER_WAIT),
    # and meanwhile the redirect's halves are unreachable, so nothing leaves outside the tunnel;
    # the server's own host route goes in before them (the tunnel keeps its way out).
    net = _net(tap, "route-gateway dhcp\n" if where == "profile" else "")
    push = "PUSH_REPLY" + ("" if where == "profile" else ",route-gateway dhcp") + ",redirect-gateway def1" + addr
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert net.routes_waiting is not None and net.router_alone
        assert not HALVES & {r[0] for r in _routes(tap)}, _routes(tap)
        assert _held() == HALVES
        assert "No route to host" in _ip_text("route", "get", "198.18.99.1"), "the redirect's traffic not refused"
        if router is None:
            with pytest.raises(RuntimeError, match=r"no DHCP ACK gave a router within 30 s \(route-gateway dhcp "
                                                   r"without route-delay"):
                net.add_waiting_routes(None)
            assert _held() == HALVES, "the holds went with the failed push: traffic would leave outside"
            net.apply(parse_push_reply_untrusted(push), SERVER)     # the next connection, the same push
            assert net.routes_waiting is not None, "the same push after the failure did not wait again"
        else:
            if not addr:                # a bare tap: the DHCP client on it took the ACK's address
                _ip("addr", "add", "198.18.80.2/24", "dev", tap)
            assert net.add_waiting_routes(router) is True
            assert {(r[0], r[1]) for r in _routes(tap) if r[0] in HALVES} == {(h, router) for h in HALVES}
            assert _held() == set()
    finally:
        net.close()
    assert _held() == set()


@pytest.mark.parametrize("router, addr", [(None, ADDR), (None, ""), ("198.18.80.1", ADDR)],
                         ids=["no ACK", "no ACK, bare", "ACK"])
def test_route_gateway_dhcp_with_route_delay_redirects_via_the_router_or_fails(tap, router, addr):
    # The routes wait (apply adds none); at the delay's end they go via the ACK's router, or,
    # with none, the connection ends (the client's _route_delay_over restarts it).
    net = _net(tap, "route-delay 5\n")
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway dhcp,redirect-gateway def1" + addr), SERVER)
        assert not HALVES & {r[0] for r in _routes(tap)}, _routes(tap)
        assert _held() == HALVES, "the redirect's traffic leaves outside the tunnel during route-delay"
        if router is None:
            with pytest.raises(RuntimeError, match=r"no DHCP ACK gave a router within route-delay 5 s "
                                                   r"\(route-gateway dhcp\)"):
                net.add_waiting_routes(None)
            assert not HALVES & {r[0] for r in _routes(tap)}, _routes(tap)
        else:
            assert net.add_waiting_routes(router) is True
            assert HALVES <= {r[0] for r in _routes(tap)}, _routes(tap)
    finally:
        net.close()


def test_a_route_gateway_address_redirects(tap):
    # The case that always worked stays: the tap's route-gateway given, the halves go via it.
    net = _net(tap)
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway 198.18.80.1,redirect-gateway def1" + ADDR),
                  SERVER)
        assert HALVES <= {r[0] for r in _routes(tap)}, _routes(tap)
    finally:
        net.close()


def test_a_bare_tap_with_a_route_gateway_address_fails_the_push(tap):
    # No pushed ifconfig: the routes are never set via the address (the tap has none from us), so
    # the redirect would be skipped as the other routes are; it fails the push, naming the way.
    net = _net(tap, "route-delay 5\n")
    try:
        with pytest.raises(RuntimeError, match=r"pushed no ifconfig, so no route goes via route-gateway 198\.18\.80\.1 "
                                               r"\(`route-gateway dhcp` with `route-delay N`"):
            net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway 198.18.80.1,redirect-gateway def1"),
                      SERVER)
    finally:
        net.close()


OUTSIDE = "198.18.99.1"


@pytest.fixture
def outside_ways(monkeypatch):
    """The interface the kernel takes to OUTSIDE after each route deletion of ours ("refused":
    none): a re-applied push must never leave a moment where it goes out `wan` (the host's own
    default route, outside the tunnel)."""
    from appliance.tun.rtnl import NetlinkError, Rtnl
    seen: list = []
    real = Rtnl.route_del

    def route_del(self, *a, **kw):
        real(self, *a, **kw)
        with Rtnl() as nl:
            try:
                seen.append(nl.route_get(OUTSIDE)[1])
            except NetlinkError:
                seen.append("refused")
    monkeypatch.setattr(Rtnl, "route_del", route_del)
    return seen


def _wan() -> int:
    from appliance.tun.rtnl import link_index
    return link_index("wan")


@ADDRS
@pytest.mark.parametrize("before", ["failed wait", "redirected"])
def test_a_re_applied_push_never_lets_the_redirects_traffic_out(tap, outside_ways, addr, before):
    # review49e: a push applied again (the same one after a failed DHCP-router wait, or a failover
    # to another server after the redirect went in) removed the last push's halves or holds before
    # the new holds went in: for that moment, traffic to the outside took the host's default route.
    net = _net(tap)
    push = "PUSH_REPLY,route-gateway dhcp,redirect-gateway def1" + addr
    server2 = "198.18.60.10"
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        if before == "failed wait":
            with pytest.raises(RuntimeError, match="no DHCP ACK gave a router"):
                net.add_waiting_routes(None)
        else:
            if not addr:
                _ip("addr", "add", "198.18.80.2/24", "dev", tap)
            assert net.add_waiting_routes("198.18.80.1") is True
        outside_ways.clear()
        net.reach(server2)                      # the client's, before it connects to the next remote
        # The next connection: a failover, its push changed (a bare tap's push is applied again
        # only then: it names no server address).
        net.apply(parse_push_reply_untrusted(push + ",route 198.18.90.0 255.255.255.0"), server2)
        assert outside_ways, "nothing was removed: the test saw no moment"
        assert _wan() not in outside_ways, f"traffic to the outside left by the host's own route: {outside_ways}"
        assert _held() == HALVES and net.routes_waiting is not None
        assert "dev wan" in _ip_text("route", "get", server2), "the new server's own way went with the holds"
        if not addr:
            _ip("addr", "replace", "198.18.80.2/24", "dev", tap)
        assert net.add_waiting_routes("198.18.80.1") is True
        assert _held() == set()
    finally:
        net.close()
    assert _held() == set()


def test_a_tun_redirect_re_applied_on_failover_never_lets_traffic_out(inside, outside_ways):
    # The same moment for any redirect: a failover's push applied with the last push's halves
    # removed first. Now held until the new halves are in, then released.
    dev = inside()
    opts = parse_config(f"client\ndev {dev}\nremote {SERVER}\n<ca>\n</ca>\n", "/mem/p.ovpn", read_file=lambda p: b"")
    net = TunnelNetwork(opts)
    push = "PUSH_REPLY,redirect-gateway def1,topology subnet,ifconfig 198.18.81.2 255.255.255.0"
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert HALVES <= {r[0] for r in _routes(dev)}
        outside_ways.clear()
        net.apply(parse_push_reply_untrusted(push), "198.18.60.10")
        assert outside_ways and _wan() not in outside_ways, outside_ways
        assert HALVES <= {r[0] for r in _routes(dev)} and _held() == set()
        assert "dev wan" in _ip_text("route", "get", "198.18.60.10")
    finally:
        net.close()
    assert _held() == set()


def test_a_host_refusing_the_servers_route_at_the_routers_arrival_keeps_the_halves_held(tap, monkeypatch):
    # review49e: a route the host refuses when the waited routes go in is logged and the tunnel
    # stays (2.6's delayed do_route); the holds were all released then -- refused before the
    # redirect's halves (the server's host route: its WAN gateway gone meanwhile), nothing took
    # their place and the outside was reached by the host's own route with the tunnel up.
    from appliance.router.routes import RouteSet
    from appliance.tun.rtnl import NetlinkError
    net = _net(tap)
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway dhcp,redirect-gateway def1" + ADDR), SERVER)

        def refused(self, remote_ip, path=None):
            raise NetlinkError(101, "Network is unreachable")
        monkeypatch.setattr(RouteSet, "keep_path_to", refused)
        assert net.add_waiting_routes("198.18.80.1") is False
        assert not HALVES & {r[0] for r in _routes(tap)}
        assert _held() == HALVES, "the holds went with no halves in: traffic leaves outside the tunnel"
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
    finally:
        net.close()
    assert _held() == set()


@pytest.mark.parametrize("flags", ["def1 ipv6", "ipv6 !ipv4"])
def test_redirect_ipv6_without_ifconfig_ipv6_on_a_tap_goes_into_the_bridge(tap, flags):
    # review49e: on a tap the bridge carries the LAN's own IPv6 (link-local, SLAAC from the LAN's
    # router, DHCPv6), so `redirect-gateway ipv6` with no ifconfig-ipv6 routes IPv6 into the tap
    # as Debian's 2.6.14 does -- inside the tunnel -- instead of dropping every IPv6 frame there
    # (block-ipv6's tap rule: the bridged LAN's IPv6, ND included, never reached it).
    net = _net(tap)
    try:
        net.apply(parse_push_reply_untrusted(f"PUSH_REPLY,route-gateway 198.18.80.1,redirect-gateway {flags}"
                                             + ADDR), SERVER)
        assert not net.block_ipv6, "the tap's IPv6 frames would be dropped, the bridged LAN's IPv6 with them"
        assert f"dev {tap}" in _ip_text("-6", "route", "get", "2001:db8:5::1"), "IPv6 not routed into the tap"
    finally:
        net.close()
    assert "dev wan" in _ip_text("-6", "route", "get", "2001:db8:5::1")


def test_a_failover_while_the_halves_are_held_reaches_the_next_server(tap):
    # After a failed DHCP-router wait the holds stay (no leak while the client reconnects); the
    # next remote's address is refused by them like any other, so reach() gives it its host route
    # along the pre-tunnel default (the client's handshake would otherwise fail: "No route").
    net = _net(tap)
    server2 = "198.18.60.10"
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway dhcp,redirect-gateway def1" + ADDR), SERVER)
        with pytest.raises(RuntimeError, match="no DHCP ACK gave a router"):
            net.add_waiting_routes(None)
        assert "No route to host" in _ip_text("route", "get", server2)
        net.reach(server2)
        assert "dev wan" in _ip_text("route", "get", server2), "the next server is refused by the holds"
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
    finally:
        net.close()


_HOLDER = """
import sys, time
from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
profile, dev = sys.argv[1], sys.argv[2]
opts = parse_config(f"client\\ndev {dev}\\ndev-type tap\\nremote 198.18.60.9\\n<ca>\\n</ca>\\n", profile,
                    read_file=lambda p: b"")
net = TunnelNetwork(opts)
net.prepare()
if sys.argv[3] == "hold":
    net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-gateway dhcp,redirect-gateway def1 block-local"),
              "198.18.60.9")
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_clients_holds_go_at_the_profiles_next_start(ns, tmp_path):  # noqa: F811 - the namespace
    # SIGKILL while the halves are held: the unreachable routes are no device's, so they outlive
    # the process and keep refusing the host's IPv4 traffic (as a kill switch would), until the
    # same profile starts again -- its route record (router/route_record.py) removes them first.
    import os
    import signal
    import sys
    profile = tmp_path / "p.ovpn"
    profile.write_text("")
    dev = f"q{uuid.uuid4().hex[:8]}"

    def run(step: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _HOLDER, str(profile), dev, step],
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        assert p.stdout.readline().strip() == "ready"
        return p

    def held() -> str:
        return subprocess.run(["ip", "-n", ns, "route", "show", "type", "unreachable"], capture_output=True,
                              text=True, timeout=10).stdout

    # (block-local's held network and its gateway's direct route too: redirect50, review50c)
    mine = ("0.0.0.0/1", "128.0.0.0/1", "198.18.40.0/25", "198.18.40.128/25")
    p = run("hold")
    try:
        assert "0.0.0.0/1" in held()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    assert all(h in held() for h in mine), ("the holds went with the process", held())
    assert subprocess.run(["ip", "-n", ns, "route", "show", "198.18.40.254/32"], capture_output=True, text=True,
                          timeout=10).stdout, "block-local's gateway route went with the process"
    p = run("start")                            # the same profile again: prepare() takes the record over
    try:
        assert not any(h in held() for h in mine), held()
        gw = subprocess.run(["ip", "-n", ns, "route", "show", "198.18.40.254/32"], capture_output=True, text=True,
                            timeout=10).stdout
        assert gw == "", f"block-local's gateway route stayed: {gw}"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        subprocess.run(["ip", "-n", ns, "link", "del", dev], capture_output=True, timeout=10)
        subprocess.run(["ip", "-n", ns, "route", "flush", "type", "unreachable"], capture_output=True, timeout=10)


@pytest.mark.parametrize("plen, router, on_link", [(24, "198.18.80.255", False), (24, "198.18.80.1", True),
                                                   (24, "198.18.80.0", True), (30, "198.18.80.3", False),
                                                   (31, "198.18.80.3", True), (24, "198.18.81.1", False)])
def test_the_tap_networks_broadcast_address_is_no_router_on_it(tap, plen, router, on_link):
    # atk50: a DHCP ACK from the server side's LAN (any host there can send one) may name the
    # tap network's broadcast address as the router. The wait took it as on the tap's network,
    # the kernel refused the halves via it ("Nexthop has invalid gateway"), the connection ended
    # and every reconnect reused it at once (a restart loop). router_on_link is the wait's test;
    # what it says must be what the kernel takes (a /31's two addresses are hosts, RFC 3021).
    net = _net(tap, "route-gateway dhcp\n")
    push = "PUSH_REPLY,redirect-gateway def1"
    _ip("addr", "add", f"198.18.80.2/{plen}" if plen < 31 else "198.18.80.2/31", "dev", tap)
    _ip("link", "set", tap, "up")
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert net.router_on_link(router) is on_link
        kernel = _ip_text("route", "add", "198.18.99.0/24", "via", router, "dev", tap)
        assert (kernel == "") is on_link, f"the kernel says {kernel!r} of a route via {router}"
    finally:
        net.close()


@pytest.mark.parametrize("plen, link_route, router, on_link", [
    (32, "198.18.81.1/32", "198.18.81.1", True),        # a /32 lease, its router by a host route (RFC 3442)
    (24, "198.18.81.0/24", "198.18.81.7", True),        # another subnet on the same LAN, routed on-link
    (24, "198.18.81.0/24", "198.18.80.255", False),     # the tap network's broadcast stays none
    (32, "198.18.81.1/32", "198.18.81.2", False)])      # beside the host route: not on the link
def test_a_router_off_the_taps_subnet_with_an_on_link_route_is_on_its_link(tap, plen, link_route, router,
                                                                           on_link):
    # review50b: a bridged LAN whose router is outside the lease's subnet (a /32 lease, the
    # router reached by an on-link route: a DHCP server's classless static route 'router/32 via
    # 0.0.0.0', which route-gateway dhcp leaves to the tap's DHCP client, or the user's own
    # route). The kernel takes a route via it out of the tap, as 2.6's routes; before atk50 our
    # wait went via it after 30 s, atk50 made it no router at all -- the connection ended at every
    # 30 s, a working setup refused. What router_on_link says must be what the kernel takes.
    net = _net(tap, "route-gateway dhcp\n")
    push = "PUSH_REPLY,redirect-gateway def1"
    _ip("addr", "add", f"198.18.80.2/{plen}", "dev", tap)
    _ip("link", "set", tap, "up")
    _ip("route", "add", link_route, "dev", tap, "scope", "link")
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert net.router_on_link(router) is on_link
        kernel = _ip_text("route", "add", "198.18.99.0/24", "via", router, "dev", tap)
        assert (kernel == "") is on_link, f"the kernel says {kernel!r} of a route via {router}"
    finally:
        net.close()
