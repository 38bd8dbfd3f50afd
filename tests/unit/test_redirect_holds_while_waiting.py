"""What review49e left open about a redirect that waits (helper redirect50), against the kernel in
test_rtnl.py's namespace (its `wan` has IPv4 and IPv6 default routes, the host's own way out):
an explicit `route-delay N` now holds the redirect's halves unreachable during its delay as
route-gateway dhcp's wait does (2.6 lets that traffic out the host's route until then);
`block-local` holds the local network too while the routes wait (it went out directly); a pushed
`route-ipv6 ::/0` without ifconfig-ipv6 is enforced as `redirect-gateway ipv6` without it (it was
skipped: IPv6 left by the host's own route); a restart (SIGUSR1) while the holds are in keeps them
without a gap. What a user checks: `ip route get` to an outside address, and the way the kernel
takes after each route deletion of ours."""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import parse_config
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from tests.unit.test_rtnl import _routes, inside, ns  # noqa: F401 - fixtures
from tests.unit.test_tap_redirect_without_gateway import (  # noqa: F401 - fixtures
    ADDR, HALVES, OUTSIDE, SERVER, _held, _ip_text, _net, _wan, outside_ways, tap)

pytestmark = [pytest.mark.root, pytest.mark.netns]

TUN_ADDR = ",topology subnet,ifconfig 198.18.81.2 255.255.255.0"
LAN_HOST, LAN_GW = "198.18.40.77", "198.18.40.254"      # on wan's network (test_rtnl's LAN, GW)
LAN_HALVES = {"198.18.40.0/25", "198.18.40.128/25"}
HALVES6 = {"::/1", "8000::/1"}
OUTSIDE6 = "2001:db8:77::1"


def _tun_net(dev: str, extra: str = "") -> TunnelNetwork:
    opts = parse_config(f"client\ndev {dev}\nremote {SERVER}\n{extra}<ca>\n</ca>\n", "/mem/p.ovpn",
                        read_file=lambda p: b"")
    return TunnelNetwork(opts)


@pytest.mark.parametrize("redirect", ["redirect-gateway def1", "redirect-gateway def1 block-local",
                                      "redirect-private block-local", None])
def test_explicit_route_delay_holds_the_redirect_during_its_delay(inside, outside_ways, redirect):
    # 2.6 (and ours before): during route-delay nothing is routed yet, so the traffic the redirect
    # asked into the tunnel leaves by the host's own default route; now refused until the halves go in.
    dev = inside()
    net = _tun_net(dev, "route-delay 5\n")
    push = "PUSH_REPLY" + (f",{redirect}" if redirect else "") + TUN_ADDR
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert net.routes_waiting is not None and not HALVES & {r[0] for r in _routes(dev)}
        if redirect is None:            # nothing redirected: nothing held, the host's own way as before
            assert _held() == set() and "dev wan" in _ip_text("route", "get", OUTSIDE)
            net.add_waiting_routes(None)
            return
        private = redirect.startswith("redirect-private")   # the default route stays the host's
        held = (set() if private else HALVES) | (LAN_HALVES if "block-local" in redirect else set())
        assert _held() == held, "the redirect's traffic leaves outside the tunnel during route-delay"
        if not private:
            assert "No route to host" in _ip_text("route", "get", OUTSIDE)
        assert "dev wan" in _ip_text("route", "get", SERVER), "the server's own way went with the holds"
        outside_ways.clear()
        redirected = net.add_waiting_routes(None)
        assert private or redirected is True
        assert _held() == set()
        if not private:
            assert HALVES <= {r[0] for r in _routes(dev)}
            assert outside_ways and _wan() not in outside_ways, f"a moment outside the tunnel: {outside_ways}"
            assert f"dev {dev}" in _ip_text("route", "get", OUTSIDE)
        if "block-local" in redirect:
            assert "No route to host" not in _ip_text("route", "get", LAN_HOST)
            assert f"dev {dev}" in _ip_text("route", "get", LAN_HOST)
            assert "dev wan" in _ip_text("route", "get", LAN_GW)
    finally:
        net.close()
    assert _held() == set()


@pytest.mark.parametrize("addr", [ADDR, ""], ids=["ifconfig", "bare"])
def test_block_local_is_held_while_the_routes_wait_for_the_dhcp_router(tap, outside_ways, addr):
    # review49e left it: with block-local the local network went out directly during the wait
    # (its routes go in with the halves). Now refused too; only its gateway stays direct.
    net = _net(tap)
    push = "PUSH_REPLY,route-gateway dhcp,redirect-gateway def1 block-local" + addr
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert _held() == HALVES | LAN_HALVES
        assert "No route to host" in _ip_text("route", "get", LAN_HOST), "the local network goes out directly"
        assert "dev wan" in _ip_text("route", "get", LAN_GW)
        assert "dev wan" in _ip_text("route", "get", SERVER)
        if not addr:
            _ip_text("addr", "add", "198.18.80.2/24", "dev", tap)
        outside_ways.clear()
        assert net.add_waiting_routes("198.18.80.1") is True
        assert _held() == set() and f"dev {tap}" in _ip_text("route", "get", LAN_HOST)
        assert _wan() not in outside_ways, outside_ways
    finally:
        net.close()
    assert _held() == set()


@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_a_pushed_default_ipv6_route_without_ifconfig_ipv6_is_enforced(inside, tap, kind, caplog):
    # It was skipped ("the server pushed no ifconfig-ipv6"): IPv6 left by the host's own default
    # route. 2.6.14 adds `::/0 dev tun0` behind the host's own default (the interop file shows it
    # leaves there too). Ours: as redirect-gateway ipv6 without ifconfig-ipv6 -- into the TUN and
    # answered unreachable (block-ipv6), or into the tap's bridge.
    dev = inside() if kind == "tun" else tap
    net = _tun_net(dev) if kind == "tun" else _net(dev, "route-gateway 198.18.80.1\n")
    try:
        assert "dev wan" in _ip_text("-6", "route", "get", OUTSIDE6)
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-ipv6 ::/0" + (TUN_ADDR if kind == "tun" else ADDR)),
                  SERVER)
        assert f"dev {dev}" in _ip_text("-6", "route", "get", OUTSIDE6), "IPv6 leaves by the host's own route"
        assert HALVES6 <= {r[0] for r in _routes(dev, v6=True)}
        assert net.block_ipv6 is (kind == "tun")
        # (review50c: the route's own line said "skipped" beside the enforcement's)
        assert "route-ipv6 ::/0 without ifconfig-ipv6" in caplog.text and "skipped" not in caplog.text, caplog.text
    finally:
        net.close()
    assert "dev wan" in _ip_text("-6", "route", "get", OUTSIDE6)


def test_a_pushed_default_ipv6_route_is_held_while_the_routes_wait(inside):
    dev = inside()
    net = _tun_net(dev, "route-delay 5\n")
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,route-ipv6 ::/0" + TUN_ADDR), SERVER)
        assert _held(v6=True) == HALVES6 and _held() == set()
        assert "No route to host" in _ip_text("-6", "route", "get", OUTSIDE6)
        net.add_waiting_routes(None)
        assert _held(v6=True) == set() and f"dev {dev}" in _ip_text("-6", "route", "get", OUTSIDE6)
    finally:
        net.close()


@pytest.mark.parametrize("addr", [ADDR, ""], ids=["ifconfig", "bare"])
def test_a_restart_while_the_halves_are_held_keeps_them_without_a_gap(tap, outside_ways, addr):
    # SIGUSR1 (or ping-restart) during the wait: the client keeps its device and routes, asks
    # reach() for the server's way, and applies the next push (the same one here; a changed one:
    # test_tap_redirect_without_gateway's re-apply test). The holds never go meanwhile.
    net = _net(tap)
    push = "PUSH_REPLY,route-gateway dhcp,redirect-gateway def1" + addr
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        outside_ways.clear()
        net.device_reopened()                   # the client's restart without persist-tun
        net.reach(SERVER)
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert _wan() not in outside_ways, f"traffic left by the host's own route: {outside_ways}"
        assert _held() == HALVES and net.routes_waiting is not None
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
        assert "dev wan" in _ip_text("route", "get", SERVER)
        if not addr:
            _ip_text("addr", "add", "198.18.80.2/24", "dev", tap)
        assert net.add_waiting_routes("198.18.80.1") is True and _held() == set()
    finally:
        net.close()


@pytest.fixture
def lan_ways(monkeypatch):
    """The way the kernel takes to LAN_HOST after each route deletion of ours (as outside_ways)."""
    from appliance.tun.rtnl import NetlinkError, Rtnl
    seen: list = []
    real = Rtnl.route_del

    def route_del(self, *a, **kw):
        real(self, *a, **kw)
        with Rtnl() as nl:
            try:
                seen.append(nl.route_get(LAN_HOST)[1])
            except NetlinkError:
                seen.append("refused")
    monkeypatch.setattr(Rtnl, "route_del", route_del)
    return seen


@pytest.mark.parametrize("server2", ["198.18.60.10", "198.18.40.50"], ids=["behind the gateway", "on the LAN"])
def test_block_local_re_applied_on_failover_never_reaches_the_lan_directly(inside, lan_ways, server2):
    # review49e's re-apply moment for block-local's halves: the last push's went before the next
    # push put its own in, and the local network was reached directly meanwhile. A next server on
    # that very network keeps its on-link way (the held halves fail the kernel's lookup of it).
    dev = inside()
    net = _tun_net(dev)
    push = "PUSH_REPLY,redirect-gateway def1 block-local" + TUN_ADDR
    try:
        net.apply(parse_push_reply_untrusted(push), SERVER)
        assert f"dev {dev}" in _ip_text("route", "get", LAN_HOST)
        lan_ways.clear()
        net.reach(server2)
        net.apply(parse_push_reply_untrusted(push), server2)
        assert lan_ways and _wan() not in lan_ways, f"the local network reached directly: {lan_ways}"
        assert f"dev {dev}" in _ip_text("route", "get", LAN_HOST) and _held() == set()
        way = _ip_text("route", "get", server2)
        assert "dev wan" in way, "the next server's own way refused"
        assert ("via" in way) is (server2 == "198.18.60.10"), way
        assert "dev wan" in _ip_text("route", "get", LAN_GW)
    finally:
        net.close()
    assert _held() == set()


@pytest.mark.parametrize("redirect", ["redirect-gateway def1", "redirect-gateway def1 block-local"])
def test_a_failover_to_a_server_on_the_lan_during_route_delay_goes_on_link(inside, redirect):
    # review50c: a restart during route-delay (ping-restart, SIGUSR1) to the profile's next
    # `remote` on the local network. reach() gave it a host route via the LAN's gateway whenever
    # holds were in (it took the pre-tunnel default for every address): the next server's
    # packets went to the gateway for it to send back onto the LAN -- a router that does not
    # hairpin drops them. Before the holds (an explicit route-delay until redirect50) that server
    # was reached on-link. Now as before: on-link, past the held network too.
    dev = inside()
    net = _tun_net(dev, "route-delay 5\n")
    server2 = "198.18.40.50"
    try:
        net.apply(parse_push_reply_untrusted(f"PUSH_REPLY,{redirect}" + TUN_ADDR), SERVER)
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
        net.reach(server2)
        way = _ip_text("route", "get", server2)
        assert "dev wan" in way and "via" not in way, f"the LAN's server reached via the gateway: {way}"
        assert "dev wan" in _ip_text("route", "get", SERVER), "the last server's own way went"
        assert "No route to host" in _ip_text("route", "get", OUTSIDE), "the holds went with the failover"
    finally:
        net.close()
    assert _held() == set()


def test_a_push_without_block_local_after_one_with_it_leaves_the_lan_direct_during_its_delay(inside):
    # review50c: a failover (or a changed push) to a server whose redirect has no block-local,
    # after one whose had it, with route-delay: the re-apply carried block-local's held network
    # over (take_holds) and the next push's wait kept it, so the local network -- a printer, a
    # DNS server on it -- was refused for the whole delay of a push that does not block it.
    # It goes direct as the next push is applied; the redirect's halves stay held.
    dev = inside()
    net = _tun_net(dev, "route-delay 5\n")
    server2 = "198.18.60.10"
    try:
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,redirect-gateway def1 block-local" + TUN_ADDR), SERVER)
        assert net.add_waiting_routes(None) is True
        assert f"dev {dev}" in _ip_text("route", "get", LAN_HOST)
        net.reach(server2)
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,redirect-gateway def1" + TUN_ADDR), server2)
        assert net.routes_waiting is not None and _held() == HALVES
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
        way = _ip_text("route", "get", LAN_HOST)
        assert "dev wan" in way and "No route" not in way, f"the local network held by the last push: {way}"
        assert "dev wan" in _ip_text("route", "get", server2)
        assert net.add_waiting_routes(None) is True
        assert _held() == set() and "dev wan" in _ip_text("route", "get", LAN_HOST)
        assert _ip_text("route", "show", f"{LAN_GW}/32") == "", "block-local's gateway route outlived it"
    finally:
        net.close()
    assert _held() == set()


def test_pushes_re_applied_many_times_while_held_leave_one_set_of_holds(inside):
    # review50c, a hostile server (or a flapping pair) re-pushing during the wait: each re-apply
    # carries the holds over (take_holds) and holds again; neither the kernel's routes nor ours
    # on record may grow with the count.
    dev = inside()
    net = _tun_net(dev, "route-delay 5\n")
    pushes = ["PUSH_REPLY,redirect-gateway def1 block-local" + TUN_ADDR,
              "PUSH_REPLY,redirect-gateway def1 block-local,route-ipv6 ::/0" + TUN_ADDR]
    try:
        for i in range(12):
            server = ("198.18.60.10", SERVER)[i % 2]
            net.reach(server)
            net.apply(parse_push_reply_untrusted(pushes[i % 2]), server)
            assert _held() == HALVES | LAN_HALVES
            assert len(net.routes.added) <= 8, net.routes.added    # 2 + 2 held (+ 2 IPv6), server, gateway
        assert _held(v6=True) == HALVES6
        assert "No route to host" in _ip_text("route", "get", OUTSIDE)
        assert net.add_waiting_routes(None) is True and _held() == set() and _held(v6=True) == set()
    finally:
        net.close()
    assert _held() == set()
