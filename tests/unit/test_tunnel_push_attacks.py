"""gateway/tunnel.py against the kernel with what a hostile or broken server pushes: nothing it
pushes may leave the host's routes other than what the push in force asks for, nor change the
host beyond what the pushed options may (IPv6 routes from an IPv4 `route`, say). Runs in
test_rtnl.py's namespace (its fixtures), entered with setns(2) for each test's body."""
from __future__ import annotations

import ipaddress
import select
import struct
import subprocess
import time

import pytest

from appliance.gateway import tunnel
from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import Options
from appliance.lan.icmpv6 import Prefix, RouterAdvert, build_ra
from appliance.lan.ra import link_local
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.tun.offload import checksum
from appliance.tun.rtnl import NetlinkError
from tests.unit.test_rtnl import GW, GW6, _addrs, _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = "198.18.60.9"          # reached via the namespace's default route (GW on `wan`)
FULL = ("PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0,route 198.18.71.0 255.255.255.0,"
        "redirect-gateway def1")


def _push(text: str):
    return parse_push_reply_untrusted(text)


def _refused(*_a, **_k) -> None:
    raise NetlinkError(22, "Invalid argument")


def test_a_push_that_fails_half_way_does_not_leave_the_next_one_unapplied(inside, monkeypatch):
    """A server pushes a full tunnel; after a reconnect a push the kernel refuses half-way (its
    IPv6 address, here) ends that connection; after the next reconnect the first push comes
    again. It must be in force in full: the failed push had removed its routes, and taking the
    repeated push for "already applied" left the host without redirect-gateway's routes, so its
    traffic went out in clear while the client reported the tunnel up."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(FULL), SERVER)
        dev = net.tun.name
        want = _routes(dev)
        assert {"0.0.0.0/1", "128.0.0.0/1", "198.18.71.0/24"} <= {r[0] for r in want}
        with monkeypatch.context() as m:
            m.setattr(tunnel, "add_address6", _refused)
            with pytest.raises(NetlinkError):
                net.apply(_push(FULL + ",ifconfig-ipv6 fd00:70::2/64"), SERVER)
        net.apply(_push(FULL), SERVER)
        assert _routes(dev) == want
        assert (SERVER, GW, "static", None, None, None) in _routes("wan")
        assert [(a[0], a[1], a[3]) for a in _addrs(dev)] == [("inet", "198.18.70.2", 24)]
    finally:
        net.close()


BASE = "PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0"


@pytest.mark.parametrize("extra", [
    "route 2000:: 224.0.0.0",                              # an IPv4 route line, an IPv6 destination
    "route fd00:71:: 255.255.0.0 net_gateway",
    "route 198.18.71.0 255.255.255.0 vpn_gateway 99999999999",   # a metric with no 32-bit form
])
def test_a_route_that_is_no_ipv4_route_is_skipped_and_the_rest_applies(inside, extra):
    """No IPv6 route from an IPv4 `route` (it sent the host's IPv6 traffic, with its real IPv6
    source address, into a tunnel that has no IPv6), and a value the kernel's messages cannot
    carry skips that route as OpenVPN does, instead of ending the connection (struct.error)."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},{extra},route 198.18.72.0 255.255.255.0"), SERVER)
        dev = net.tun.name
        assert {r[0] for r in _routes(dev)} == {"198.18.72.0/24"}
        assert _routes(dev, v6=True) == [] and [r[0] for r in _routes("wan", v6=True)] == ["default"]
    finally:
        net.close()


@pytest.mark.parametrize("extra", ["route-ipv6 198.18.77.0/24", "route-ipv6 fd00:71::/300"])
def test_a_route_ipv6_that_is_no_ipv6_route_is_skipped_and_the_rest_applies(inside, extra):
    """route-ipv6 with an IPv4 destination added an IPv4 route; a prefix length over 128 ended the
    connection (struct.error) instead of skipping that route."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},ifconfig-ipv6 fd00:70::2/64 fd00:70::1,{extra},route-ipv6 fd00:72::/64"), SERVER)
        dev = net.tun.name
        assert _routes(dev) == []
        assert {r[0] for r in _routes(dev, v6=True)} == {"fd00:72::/64"}
    finally:
        net.close()


@pytest.mark.parametrize("push", [
    FULL + ",route 198.18.60.0 255.255.255.0",          # a pushed route covers the server's address
    FULL + ",route 198.18.60.9 255.255.255.255",        # or is the server's address
    "PUSH_REPLY,topology subnet,ifconfig 198.18.60.2 255.255.255.0,redirect-gateway def1",   # so does the subnet
    "PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0,route 198.18.60.0 255.255.255.0,"
    "route 0.0.0.0 0.0.0.0",                             # a pushed default route, split as def1
])
def test_the_server_keeps_its_pre_tunnel_path_when_the_push_covers_its_address(inside, push):
    """redirect-gateway's host route to the server must go the pre-tunnel way (as OpenVPN takes it
    from the default gateway found before any tunnel route). It was looked up after the pushed
    address and routes: a route or subnet covering the server made it `SERVER dev tun`, the
    server's own packets went into the tunnel, and the tunnel died of it (every reconnect alike)."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(push), SERVER)
        dev = net.tun.name
        assert (SERVER, GW, "static", None, None, None) in _routes("wan")
        assert SERVER not in {r[0] for r in _routes(dev)}
        # a reconnect with the same server: the TUN still has the last address while the next applies
        net.apply(_push(push + ",route 198.18.73.0 255.255.255.0"), SERVER)
        assert (SERVER, GW, "static", None, None, None) in _routes("wan")
        assert SERVER not in {r[0] for r in _routes(dev)}
    finally:
        net.close()
    assert [r for r in _routes("wan") if r[0] != "default"] == []


def test_a_route_another_server_pushed_to_this_servers_address_does_not_hold_it_in_the_tunnel(inside):
    """fuzz48 (tests/fuzz `tunnel-push`): server B pushes `route <server A> 255.255.255.255` with
    redirect-gateway; the client fails over to A with B's routes still in (persist-tun). The host
    route to A along the pre-tunnel path was refused by the kernel beside B's route (EEXIST: the
    same destination and metric), taken as "already there", and A's handshake went into the TUN
    -- the client could never reach A. B's route to that address goes first now."""
    other = "198.18.60.10"
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(FULL + f",route {other} 255.255.255.255"), SERVER)
        dev = net.tun.name
        assert other in {r[0] for r in _routes(dev)}
        net.reach(other)
        assert (other, GW, "static", None, None, None) in _routes("wan")
        assert other not in {r[0] for r in _routes(dev)}
    finally:
        net.close()
    assert [r for r in _routes("wan") if r[0] != "default"] == []


def test_a_failback_to_the_server_that_pushed_a_route_to_the_other_one_has_that_route_again(inside):
    """review48d: after the failover above, A never answers and the client goes back to B, which
    pushes what it pushed before. reach() had taken B's `route <A> 255.255.255.255` out and put a
    host route to A along the WAN in; the repeated push was taken for "already applied", so A's
    address stayed out of the tunnel (in clear) for the whole of B's session, against B's push.
    A user's own route to A through the TUN (not ours) stays through all of it."""
    other = "198.18.60.10"
    push = FULL + f",route {other} 255.255.255.255"
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(push), SERVER)
        dev = net.tun.name
        want_tun, want_wan = _routes(dev), _routes("wan")
        net.reach(other)                    # failover to A: B's route to A out, a WAN host route in
        assert other not in {r[0] for r in _routes(dev)}
        net.reach(SERVER)                   # A never answered: back to B, which pushes the same
        net.apply(_push(push), SERVER)
        assert _routes(dev) == want_tun and other in {r[0] for r in want_tun}
        assert _routes("wan") == want_wan and other not in {r[0] for r in want_wan}
        # a route to A the user put in (metric 7) is not ours: a failover to A leaves it alone
        subprocess.run(["ip", "route", "add", f"{other}/32", "dev", dev, "metric", "7"], check=True, timeout=10)
        net.reach(other)
        assert (other, None, None, "link", 7, None) in _routes(dev)
    finally:
        net.close()
    assert [r for r in _routes("wan") if r[0] != "default"] == []


def test_an_ipv6_server_inside_a_pushed_route_ipv6_keeps_its_pre_tunnel_path(inside):
    """As OpenVPN (init_route_ipv6_list): a pushed route-ipv6 covering the IPv6 server's address
    gets the server a host route via the pre-tunnel IPv6 gateway, redirect-gateway or not;
    without it the server's own packets followed the pushed route into the tunnel."""
    server6 = "fd00:60::9"
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},ifconfig-ipv6 fd00:70::2/64 fd00:70::1,route-ipv6 fd00:60::/64"), server6)
        dev = net.tun.name
        assert "fd00:60::/64" in {r[0] for r in _routes(dev, v6=True)}
        assert [r[:2] for r in _routes("wan", v6=True) if r[0] == server6] == [(server6, GW6)]
    finally:
        net.close()
    assert [r for r in _routes("wan", v6=True) if r[0] != "default"] == []


@pytest.mark.parametrize("route", ["route 198.18.5.0 0.0.0.0", "route 198.18.5.0 0"])
def test_a_route_with_host_bits_under_netmask_0_is_skipped_not_a_redirect(inside, route):
    """The kernel refuses 198.18.5.0/0 (host bits set), so OpenVPN 2.6's client, which hands the
    pair to netlink as pushed, adds nothing for it. It was taken for a pushed default route and
    became the def1 halves: all traffic redirected, past a profile's `pull-filter ignore
    "redirect-gateway"` and `pull-filter ignore "route 0.0.0.0"`."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},{route},route 198.18.72.0 255.255.255.0"), SERVER)
        dev = net.tun.name
        assert {r[0] for r in _routes(dev)} == {"198.18.72.0/24"}
    finally:
        net.close()


@pytest.mark.parametrize("bits", ["6_4", "\u0666\u0664", "-", "-1"])
def test_a_route_ipv6_with_bits_openvpn_refuses_is_skipped_not_sent_past_the_server(inside, bits):
    """The route's bits were read with int(), which takes `6_4` and Arabic-Indic digits as 64,
    while the test for the server's host route (ipaddress) refused them: the route went into
    the tunnel, the IPv6 server inside it got no host route, and its own packets followed the
    route into the tunnel. OpenVPN 2.6 (strtoul) refuses these bits: the route is skipped."""
    server6 = "fd00:60::9"
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},ifconfig-ipv6 fd00:70::2/64 fd00:70::1,route-ipv6 fd00:60::/{bits},"
                        "route-ipv6 fd00:72::/64"), server6)
        dev = net.tun.name
        assert {r[0] for r in _routes(dev, v6=True)} == {"fd00:72::/64"}
        assert [r for r in _routes("wan", v6=True) if r[0] != "default"] == []
    finally:
        net.close()


@pytest.mark.parametrize("bits, into_tunnel", [("/+64", {"fd00:60::/64"}), ("", {"fd00:60::/64"}),
                                               ("/", {"::/1", "8000::/1"}), ("/-0", {"::/1", "8000::/1"})])
def test_a_route_ipv6_with_bits_openvpn_reads_keeps_the_server_on_its_pre_tunnel_path(inside, bits, into_tunnel):
    """`+64` is 64 to OpenVPN 2.6 (strtoul) and so to us, no bits is its default /64, `/` and `/-0`
    are 0 there (Debian's client installs ::/0: tests/interop/test_route_ipv6_bits_vs_openvpn.py):
    the route is installed, and the IPv6 server inside it keeps its host route along the
    pre-tunnel IPv6 gateway."""
    server6 = "fd00:60::9"
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},ifconfig-ipv6 fd00:70::2/64 fd00:70::1,route-ipv6 fd00:60::{bits}"), server6)
        dev = net.tun.name
        assert into_tunnel <= {r[0] for r in _routes(dev, v6=True)}
        assert [r[:2] for r in _routes("wan", v6=True) if r[0] == server6] == [(server6, GW6)]
    finally:
        net.close()


def test_pushed_block_ipv6_routes_all_ipv6_into_the_tunnel_and_goes_with_the_push(inside):
    """block-ipv6 without ifconfig-ipv6: ::/1 and 8000::/1 into the TUN (where the client answers
    IPv6 with "no route"), so no IPv6 leaves by the host's own IPv6 default route; the next push
    without it removes them."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},block-ipv6"), SERVER)
        dev = net.tun.name
        assert net.block_ipv6
        assert {r[0] for r in _routes(dev, v6=True)} == {"::/1", "8000::/1"}
        net.apply(_push(BASE), SERVER)
        assert not net.block_ipv6 and _routes(dev, v6=True) == []
    finally:
        net.close()


@pytest.mark.parametrize("flags", ["def1 ipv6", "ipv6 !ipv4"])
@pytest.mark.parametrize("v6_on_tun", [True, False], ids=["tun takes IPv6", "disable_ipv6"])
def test_redirect_gateway_ipv6_without_ifconfig_ipv6_is_enforced_not_left_outside(inside, flags, v6_on_tun, caplog):
    """`redirect-gateway ipv6` pushed with no ifconfig-ipv6 (tapredir49): the tunnel carries no
    IPv6, and IPv6 went on by the uplink's default route with a warning -- outside the tunnel the
    user asked it into. Now it goes into the TUN and is answered there as block-ipv6 does (or,
    on a TUN that takes no IPv6, the host refuses it), never by the uplink."""
    old = _sysctl("net.ipv6.conf.default.disable_ipv6", "0" if v6_on_tun else "1")
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},redirect-gateway {flags}"), SERVER)
        dev = net.tun.name
        assert net.block_ipv6, "IPv6 from the TUN would be sent, not answered"
        got = _route_get6("2001:db8:5::1")
        if v6_on_tun:
            assert {r[0] for r in _routes(dev, v6=True)} >= {"::/1", "8000::/1"}
            assert got.returncode == 0 and f"dev {dev}" in got.stdout, got.stdout + got.stderr
        else:
            assert got.returncode != 0 and "no route to host" in got.stderr.lower(), got.stdout + got.stderr
        assert "redirect-gateway ipv6 without ifconfig-ipv6" in caplog.text
        net.apply(_push(BASE), SERVER)          # a push without it: IPv6 as before
        assert not net.block_ipv6
        got = _route_get6("2001:db8:5::1")
        assert got.returncode == 0 and "dev wan" in got.stdout, got.stdout + got.stderr
    finally:
        net.close()
        _sysctl("net.ipv6.conf.default.disable_ipv6", old)


def _sysctl(key: str, value: str) -> str:
    path = f"/proc/sys/{key.replace('.', '/')}"
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write(value)
    return old


def _route_get6(addr: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "-6", "route", "get", addr], capture_output=True, text=True, timeout=10)


def test_pushed_block_ipv6_on_a_tun_without_ipv6_is_enforced_not_a_failed_tunnel(inside):
    """A host whose new devices get no IPv6 (net.ipv6.conf.default.disable_ipv6=1, common on
    IPv4-only hosts) while its uplink keeps its IPv6 default route: the TUN takes no ::/1 route,
    and the whole push failed ("cannot configure the tunnel"): against an OpenVPN 2.6 server
    pushing block-ipv6 the tunnel never came up (OpenVPN's client comes up). Now the kernel
    refuses IPv6 itself (unreachable ::/1, 8000::/1): no IPv6 leaves by the uplink either, and
    the next push without block-ipv6 takes them away."""
    old = _sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(f"{BASE},block-ipv6"), SERVER)
        assert net.tun is not None and net.block_ipv6
        got = _route_get6("2001:db8:5::1")
        assert got.returncode != 0 and "no route to host" in got.stderr.lower(), got.stdout + got.stderr
        # Failing over to an IPv6 remote while those routes stay: it goes the pre-tunnel way.
        net.reach("2001:db8:5::9")
        got = _route_get6("2001:db8:5::9")
        assert got.returncode == 0 and "dev wan" in got.stdout, got.stdout + got.stderr
        net.apply(_push(BASE), SERVER)
        got = _route_get6("2001:db8:5::1")
        assert got.returncode == 0 and "dev wan" in got.stdout, got.stdout + got.stderr
    finally:
        net.close()
        _sysctl("net.ipv6.conf.default.disable_ipv6", old)


def test_a_pushed_route_the_host_has_already_is_not_reported_as_through_the_tunnel(inside, caplog):
    """A server pushing the client's own LAN (same prefix as its connected route): the kernel keeps
    the host's route, and the log said `route ... dev tun` all the same, so someone checking what
    goes through the tunnel was told the wrong thing."""
    net = TunnelNetwork(Options())
    try:
        with caplog.at_level("INFO", logger="vpn-appliance"):
            net.apply(_push(f"{BASE},route 198.18.40.0 255.255.255.0,route 198.18.72.0 255.255.255.0"), SERVER)
        dev = net.tun.name
        assert {r[0] for r in _routes(dev)} == {"198.18.72.0/24"}
        text = caplog.text
        assert "route 198.18.40.0/24 dev" not in text and "198.18.40.0/24: the host already has a route" in text
        assert f"route 198.18.72.0/24 dev {dev}" in text
    finally:
        net.close()


def _icmpv6(src: str, dst: str, body: bytes) -> bytes:
    """An IPv6 packet (hop limit 255, as neighbour discovery requires) carrying ICMPv6 `body`."""
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    b = bytearray(body)
    struct.pack_into("!H", b, 2, checksum(s + d + struct.pack("!I3xB", len(b), 58) + bytes(b)))
    return struct.pack("!IHBB", 0x60000000, len(b), 58, 255) + s + d + bytes(b)


def _echo_reply_read(tun, deadline: float) -> bool:
    """Read the TUN until an ICMPv6 echo reply comes out (bounded in time)."""
    while time.monotonic() < deadline:
        select.select([tun.fd], [], [], max(0.0, deadline - time.monotonic()))
        for p in tun.read_batch(64):
            if len(p) > 40 and p[0] >> 4 == 6 and p[6] == 58 and p[40] == 129:
                return True
    return False


def test_a_router_advertisement_through_the_tunnel_configures_nothing(inside):
    """Pushed addresses and routes are the server's only say over the host's network: an IPv6
    router advertisement it sends through the tunnel (the kernel accepts RAs on a TUN device, and
    gives it a link-local address) made the host take an address from its prefix and a default
    route into the tunnel, with no IPv6 pushed at all."""
    net = TunnelNetwork(Options())
    try:
        net.apply(_push(BASE), SERVER)
        dev, tun = net.tun.name, net.tun
        ll, deadline = None, time.monotonic() + 5
        while ll is None and time.monotonic() < deadline:     # the kernel adds it as the link comes up
            ll = link_local(dev)
            if ll is None:
                time.sleep(0.05)
        assert ll is not None
        ra = build_ra(RouterAdvert(1800, (Prefix(ipaddress.IPv6Network("2001:db8:1::/64"), 86400, 14400),)))
        tun.queue(_icmpv6("fe80::1", "ff02::1", ra))
        # An echo request behind it: its reply coming out means the RA before it was processed.
        tun.queue(_icmpv6("fe80::1", ll, struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"x" * 8))
        assert tun.flush() == 2
        assert _echo_reply_read(tun, time.monotonic() + 5)
        assert [a for a in _addrs(dev) if a[0] == "inet6"] == []
        assert _routes(dev, v6=True) == []
    finally:
        net.close()


@pytest.mark.parametrize("push", [
    f"{BASE[:BASE.index(',ifconfig')]},ifconfig 198.18.70.2 128.0.0.0",       # /1: half the IPv4 Internet
    f"{BASE[:BASE.index(',ifconfig')]},ifconfig 198.18.70.2 0.0.0.0",         # /0: all of it
    f"{BASE},ifconfig-ipv6 2001:db8::2/3",                                    # 2000::/3: all global IPv6
])
def test_a_pushed_subnet_as_wide_as_a_redirect_refuses_the_push(inside, push, caplog):
    """The tunnel's subnet comes with a connected route that neither `route-nopull` nor a
    `pull-filter ignore redirect-gateway` keeps out: `topology subnet` with `ifconfig A 128.0.0.0`
    (or an ifconfig-ipv6 /3) sent half (all) of the host's traffic into the tunnel of a server the
    profile allows no routes from. No VPN's own subnet is that wide: the push is refused (the
    client starts over) and nothing of it stays; a /8 (10.0.0.0/8 pools) still goes in."""
    net = TunnelNetwork(Options(route_nopull=True))
    try:
        with pytest.raises(RuntimeError, match="wider than"):
            net.apply(_push(push), SERVER)
        dev = net.tun.name
        assert _addrs(dev) == []
        dns = ",".join(f"dhcp-option DNS 10.9.{i // 250}.{i % 250}" for i in range(300))
        with caplog.at_level("INFO", logger="vpn-appliance"):
            net.apply(_push(f"PUSH_REPLY,topology subnet,ifconfig 10.1.2.3 255.0.0.0,{dns}"), SERVER)
        assert [(a[1], a[3]) for a in _addrs(dev)] == [("10.1.2.3", 8)]
        said = [r.getMessage() for r in caplog.records if "pushed DNS" in r.getMessage()]
        assert len(said) == 1 and len(said[0]) < 300 and "300 servers" in said[0], said   # not 300 named
    finally:
        net.close()


def test_a_pushed_tunnel_address_that_is_the_gateways_own_refuses_the_push(inside):
    """The WAN gateway's address on the TUN made the router this host itself: the host's DNS at
    its router (the usual home setup) was answered here, through every reconnect (the TUN keeps
    its address), so no `remote` name resolved again. Refused; another address of the WAN's
    network is still taken, as OpenVPN takes it (a campus WAN around the VPN range)."""
    net = TunnelNetwork(Options())
    try:
        with pytest.raises(RuntimeError, match="gateway"):
            net.apply(_push(f"PUSH_REPLY,topology subnet,ifconfig {GW} 255.255.255.255"), SERVER)
        net.apply(_push("PUSH_REPLY,topology subnet,ifconfig 198.18.40.77 255.255.255.255"), SERVER)
        assert [(a[1], a[3]) for a in _addrs(net.tun.name)] == [("198.18.40.77", 32)]
    finally:
        net.close()
