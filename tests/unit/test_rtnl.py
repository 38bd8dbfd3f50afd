"""appliance/tun/rtnl.py (the client's stdlib netlink) against the kernel, in one namespace this
module creates (prefix `ur`) and deletes: what `ip` shows after our requests, and that it is what
pyroute2 (which the client used before, and the router still uses) produces for the same calls.
The test process enters the namespace with setns(2) for each test's body. The namespace is made
through lab.netns.Netns, whose on-disk record lets the next run remove it should this one be killed."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import uuid

import pytest

from appliance.router.links import add_address6, configure_tun
from appliance.router.routes import RouteSet
from appliance.tun import rtnl
from appliance.tun.rtnl import NetlinkError, Rtnl, link_index
from lab.netns import Netns

pytestmark = [pytest.mark.root, pytest.mark.netns]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
LAN, GW = "198.18.40.1", "198.18.40.254"          # the namespace's "pre-tunnel" network and gateway
LAN6, GW6 = "fd00:40::1", "fd00:40::fe"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture(scope="module")
def ns():
    assert os.geteuid() == 0, "these tests need root (network namespaces, TUN)"
    assert shutil.which("ip"), "iproute2 `ip` is required"
    ns = Netns(f"ur{uuid.uuid4().hex[:10]}")       # registered: a killed run's namespace goes at the next run
    name = ns.name
    try:
        for cmd in ("link add wan type veth peer name wanp", "link set wan up", "link set wanp up",
                    f"addr add {LAN}/24 dev wan", f"route add default via {GW} dev wan metric 10",
                    f"-6 addr add {LAN6}/64 dev wan nodad", f"-6 route add default via {GW6} dev wan metric 10"):
            subprocess.run(["ip", "-n", name, *cmd.split()], check=True, timeout=10, capture_output=True)
        yield name
    finally:
        ns.delete()
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.fixture
def inside(ns):
    """The test body runs in the namespace; each test gets fresh TUN devices via `tun()`."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    made: list[str] = []

    def tun() -> str:
        name = f"t{uuid.uuid4().hex[:8]}"
        _ip("tuntap", "add", name, "mode", "tun")
        made.append(name)
        return name
    try:
        _setns(fd)
        yield tun
    finally:
        for name in made:
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)
        _setns(home)
        os.close(fd)
        os.close(home)


def _ip(*args: str):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr.strip()}"
    return json.loads(r.stdout) if args[0] == "-j" else r.stdout


def _addrs(dev: str) -> list[tuple]:
    return sorted((a["family"], a["local"], a.get("address"), a["prefixlen"], a["scope"], bool(a.get("nodad")),
                   a.get("broadcast"))
                  for a in _ip("-j", "addr", "show", "dev", dev)[0]["addr_info"] if a["scope"] != "link")


def _routes(dev: str, v6: bool = False) -> list[tuple]:
    rs = _ip("-j", *(["-6"] if v6 else []), "route", "show", "table", "main", "dev", dev)
    return sorted((r["dst"], r.get("gateway"), r.get("protocol"), r.get("scope"), r.get("metric"), r.get("type"))
                  for r in rs if r.get("protocol") != "kernel")


def test_tun_addresses_mtu_and_link_as_pyroute2_sets_them(inside):
    from pyroute2 import IPRoute
    ours, theirs, ours_p2p, theirs_p2p = inside(), inside(), inside(), inside()
    configure_tun(ours, "198.18.41.2", 24, 1400)
    add_address6(ours, "fd00:41::2", 64)
    configure_tun(ours_p2p, "198.18.42.6", 32, 1300, peer="198.18.42.5")
    with IPRoute() as ipr:
        for dev, mtu in ((theirs, 1400), (theirs_p2p, 1300)):
            i = ipr.link_lookup(ifname=dev)[0]
            if dev == theirs:
                ipr.addr("add", index=i, address="198.18.43.2", prefixlen=24)
                ipr.addr("add", index=i, address="fd00:43::2", prefixlen=64, flags=0x02)
            else:
                ipr.addr("add", index=i, local="198.18.44.6", address="198.18.44.5", prefixlen=32)
            ipr.link("set", index=i, mtu=mtu, state="up")
    link = _ip("-j", "link", "show", "dev", ours)[0]
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    assert _ip("-j", "link", "show", "dev", ours_p2p)[0]["mtu"] == 1300
    assert _addrs(ours) == [("inet", "198.18.41.2", None, 24, "global", False, None),
                            ("inet6", "fd00:41::2", None, 64, "global", True, None)]
    assert _addrs(ours_p2p) == [("inet", "198.18.42.6", "198.18.42.5", 32, "global", False, None)]
    # the same as pyroute2's, up to the addresses themselves
    same = lambda rows: [(f, s, p, n, b) for f, _l, _a, p, s, n, b in rows]   # noqa: E731
    assert same(_addrs(ours)) == same(_addrs(theirs))
    assert same(_addrs(ours_p2p)) == same(_addrs(theirs_p2p))
    # a second configure_tun replaces the IPv4 address (flush), as a reconnect with another push does
    configure_tun(ours, "198.18.45.2", 24, 1500)
    assert [a[1] for a in _addrs(ours)] == ["198.18.45.2"]
    assert _ip("-j", "link", "show", "dev", ours)[0]["mtu"] == 1500


def test_routes_added_removed_and_as_pyroute2_adds_them(inside):
    from pyroute2 import IPRoute
    ours, theirs = inside(), inside()
    for dev, a in ((ours, "198.18.46.2"), (theirs, "198.18.47.2")):
        configure_tun(dev, a, 24, 1500)
        add_address6(dev, f"fd00:{46 if dev == ours else 47}::2", 64)
    rs = RouteSet()
    rs.add("198.18.48.0", 24, dev=ours)
    rs.add("198.18.49.0", 24, dev=ours, metric=7)
    rs.add("fd00:48::", 64, dev=ours)
    rs.add("198.18.48.0", 24, dev=ours)                 # already there: kept once, not remembered twice
    assert len(rs.added) == 3
    with IPRoute() as ipr:
        i = ipr.link_lookup(ifname=theirs)[0]
        ipr.route("add", dst="198.18.58.0/24", oif=i)
        ipr.route("add", dst="198.18.59.0/24", oif=i, priority=7)
        ipr.route("add", dst="fd00:58::/64", oif=i)
    assert _routes(ours) == [("198.18.48.0/24", None, "static", None, None, None),
                             ("198.18.49.0/24", None, "static", None, 7, None)]
    rest = lambda rows: [r[1:] for r in rows]    # noqa: E731 - all but the destination
    assert rest(_routes(ours)) == rest(_routes(theirs))
    assert rest(_routes(ours, v6=True)) == rest(_routes(theirs, v6=True))
    assert [r[0] for r in _routes(ours, v6=True)] == ["fd00:48::/64"]
    rs.remove_all()
    assert _routes(ours) == [] and _routes(ours, v6=True) == []
    assert rs.added == []


def test_net_gateway_path_to_server_and_block_local(inside):
    tun = inside()
    configure_tun(tun, "198.18.50.2", 24, 1500)
    add_address6(tun, "fd00:50::2", 64)
    wan = link_index("wan")
    assert RouteSet.net_gateway(False, not_dev=tun) == (GW, wan)
    assert RouteSet.net_gateway(True, not_dev=tun) == (GW6, wan)
    rs = RouteSet()
    rs.add_redirect_gateway_def1(tun, "198.18.60.9")        # the server, reached via GW now
    rs.add_redirect_gateway_ipv6(tun, "fd00:60::9")
    assert _routes(tun) == [("0.0.0.0/1", None, "static", None, None, None),
                            ("128.0.0.0/1", None, "static", None, None, None)]
    assert sorted(r[0] for r in _routes(tun, v6=True)) == ["8000::/1", "::/1"]
    kept = [r for r in _routes("wan") if r[0] == "198.18.60.9"]
    assert kept == [("198.18.60.9", GW, "static", None, None, None)]
    assert [r[:2] for r in _routes("wan", v6=True) if r[0] == "fd00:60::9"] == [("fd00:60::9", GW6)]
    assert rs.block_local(tun, (GW, wan)) == "198.18.40.0/24"
    assert ("198.18.40.0/25", None, "static", None, None, None) in _routes(tun)
    assert ("198.18.40.128/25", None, "static", None, None, None) in _routes(tun)
    assert (GW, None, "static", None, None, None) in _routes("wan")
    rs.add_via("198.18.61.0", 24, (GW, wan), metric=3)
    assert ("198.18.61.0/24", GW, "static", None, 3, None) in _routes("wan")
    rs.remove_all()
    assert _routes(tun) == [] and _routes(tun, v6=True) == []
    assert [r for r in _routes("wan") if r[0] != "default"] == []
    # the tunnel's own default route is not the pre-tunnel one
    rs.add("0.0.0.0", 0, dev=tun, metric=1)
    try:
        assert RouteSet.net_gateway(False, not_dev=tun) == (GW, wan)
    finally:
        rs.remove_all()


def test_kernel_refusals_are_netlink_errors_with_the_errno(inside):
    tun = inside()
    with Rtnl() as nl:
        with pytest.raises(NetlinkError) as e:
            nl.route_add("198.18.62.0", 24, oif=10_000_000)       # no such device
        assert e.value.code == 19 and isinstance(e.value, OSError)
        nl.addr_add(link_index(tun), "198.18.63.1", 24)
        nl.link_set(link_index(tun), up=True)
        with pytest.raises(NetlinkError) as e:
            nl.addr_add(link_index(tun), "198.18.63.1", 24)
        assert e.value.code == 17
        assert nl.route_get("198.18.63.7") == (None, link_index(tun))
    with pytest.raises(RuntimeError, match="no such interface"):
        configure_tun("nosuchdev0", "198.18.64.1", 24, 1500)


def test_a_default_route_elsewhere_than_main_or_none_at_all(inside):
    """net_gateway is None without a default route in table main (as pyroute2's lookup gave)."""
    with Rtnl() as nl:
        v6 = nl.default_routes(socket.AF_INET6)
    assert (254, link_index("wan"), GW6, 10) in v6
    assert rtnl.TIMEOUT >= 5


def test_tunnel_network_applies_a_push_then_another_and_removes_what_it_added(inside):
    """gateway/tunnel.py end to end on the kernel: a push with a net_gateway route, block-local and
    IPv6; a reconnect with another address replaces the first (no stale address); close() removes
    the device and every route we added."""
    from appliance.gateway.tunnel import TunnelNetwork
    from appliance.openvpn.config import Options
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    first = parse_push_reply_untrusted(
        "PUSH_REPLY,topology subnet,ifconfig 198.18.70.2 255.255.255.0,route 198.18.71.0 255.255.255.0,"
        "route 198.18.72.0 255.255.255.0 net_gateway,redirect-gateway def1 block-local,"
        "ifconfig-ipv6 fd00:70::2/64 fd00:70::1,route-ipv6 fd00:71::/64,route-ipv6 fd00:72::/64 net_gateway_ipv6")
    second = parse_push_reply_untrusted("PUSH_REPLY,topology net30,ifconfig 198.18.73.6 198.18.73.5")
    net = TunnelNetwork(Options())
    try:
        net.apply(first, "198.18.60.9")
        dev = net.tun.name
        assert [(a[0], a[1], a[3]) for a in _addrs(dev)] == [("inet", "198.18.70.2", 24), ("inet6", "fd00:70::2", 64)]
        tun_routes = {r[0] for r in _routes(dev)}
        assert {"198.18.71.0/24", "0.0.0.0/1", "128.0.0.0/1", "198.18.40.0/25", "198.18.40.128/25"} <= tun_routes
        assert ("198.18.72.0/24", GW, "static", None, None, None) in _routes("wan")
        assert ("198.18.60.9", GW, "static", None, None, None) in _routes("wan")
        assert [r[:2] for r in _routes("wan", v6=True) if r[0] == "fd00:72::/64"] == [("fd00:72::/64", GW6)]
        assert "fd00:71::/64" in {r[0] for r in _routes(dev, v6=True)}
        net.apply(second, "198.18.60.9")
        assert _addrs(dev) == [("inet", "198.18.73.6", "198.18.73.5", 32, "global", False, None)]
        assert _routes(dev) == [] and [r for r in _routes("wan") if r[0] != "default"] == []
        net.apply(first, "198.18.60.9")
        assert [a[1] for a in _addrs(dev)] == ["198.18.70.2", "fd00:70::2"]
    finally:
        net.close()
    assert dev not in _ip("link", "show")
    assert [r for r in _routes("wan") if r[0] != "default"] == []
    assert [r for r in _routes("wan", v6=True) if r[0] != "default"] == []


def test_tunnel_network_prepared_ahead_is_up_without_an_address_until_the_push(inside):
    """prepare() (the client calls it before it connects): the device exists, up at the configured
    MTU, with no address and so no route into it; the push then adds the address (and a pushed
    tun-mtu still applies)."""
    from appliance.gateway.tunnel import TunnelNetwork
    from appliance.openvpn.config import Options
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    net = TunnelNetwork(Options())
    try:
        net.prepare()
        dev = net.tun.name
        link = _ip("-j", "link", "show", "dev", dev)[0]
        assert "UP" in link["flags"] and link["mtu"] == 1500
        assert _addrs(dev) == [] and _routes(dev) == []
        net.apply(parse_push_reply_untrusted("PUSH_REPLY,topology subnet,ifconfig 198.18.74.2 255.255.255.0,"
                                             "tun-mtu 1400"), "198.18.60.9")
        assert [(a[0], a[1], a[3]) for a in _addrs(dev)] == [("inet", "198.18.74.2", 24)]
        assert _ip("-j", "link", "show", "dev", dev)[0]["mtu"] == 1400
    finally:
        net.close()
    assert dev not in _ip("link", "show")
