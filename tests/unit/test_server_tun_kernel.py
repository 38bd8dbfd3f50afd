"""The server's TUN set up in the server's own process (helper startup47; gateway/server_net.py)
against the kernel, in test_rtnl.py's namespace: no child process, what `ip` then shows, and its
failure paths -- an address or link step the kernel refuses stops the start naming that step and
the device, with nothing left behind; a `route` to a network the kernel routes already is said,
not claimed added (helper review47a); a `route` the kernel refuses is logged and the server runs
on without it, as 2.6 (helper net48)."""
from __future__ import annotations

import errno
import logging
import subprocess
import sys

import pytest

from appliance.gateway.server_net import ServerTunnelNetwork
from appliance.ioerrors import PortGone
from appliance.openvpn.addresspool import AddressPool, AddressPool6
from appliance.openvpn.config import Options
from appliance.tun.rtnl import link_index
from tests.unit.test_rtnl import _addrs, _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]


def _opts(topology: str = "subnet", routes=(), dev: str = "tun"):
    o = Options()
    o.dev, o.dev_type, o.tun_mtu = dev, "tun", 1420
    o.server, o.topology = ("198.19.47.0", "255.255.255.0"), topology
    o.route = list(routes)
    return o


def _net(o, v6: bool = False) -> ServerTunnelNetwork:
    return ServerTunnelNetwork(o, AddressPool("198.19.47.0", "255.255.255.0", o.topology),
                               AddressPool6("fd00:47::/64") if v6 else None)


def _gone(name: str) -> bool:
    try:
        link_index(name)
    except RuntimeError:
        return True
    return False


def _open_with_no_child(net: ServerTunnelNetwork):
    """net.open() while any process started fails, and the netlink library counts as not loaded
    (the server's own case: with it loaded the set-up ran in-process before startup47 too)."""
    def refuse(*a, **kw):
        raise OSError("a child process was started")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "__init__", refuse)
        mp.delitem(sys.modules, "pyroute2", raising=False)
        return net.open()


@pytest.mark.parametrize("topology", ["subnet", "net30"])
def test_the_server_sets_its_tun_up_in_its_own_process(inside, topology):
    net = _net(_opts(topology, routes=[("198.18.47.0", "255.255.255.0", None, 7)]), v6=True)
    tun = _open_with_no_child(net)
    try:
        dev = tun.name
        a4 = [a for a in _addrs(dev) if a[0] == "inet"]
        if topology == "subnet":
            assert [a[1:4] for a in a4] == [("198.19.47.1", None, 24)], a4
        else:
            assert [a[1:4] for a in a4] == [("198.19.47.1", "198.19.47.2", 32)], a4     # local with its peer
        assert any(a[0] == "inet6" and a[1] == "fd00:47::1" and a[3] == 64 for a in _addrs(dev)), _addrs(dev)
        routes = {r[0]: r[4] for r in _routes(dev)}
        assert routes.get("198.18.47.0/24") == 7, routes
        assert ("198.19.47.0/24" in routes) == (topology == "net30"), routes    # `server`'s own route
    finally:
        net.close()
    assert _gone(dev)


def test_a_route_the_kernel_refuses_is_logged_and_the_server_runs_on(inside, caplog):
    # Host bits outside the mask: the kernel's EINVAL. Debian's 2.6.14 (run in a lab namespace,
    # helper net48) logs "ERROR: Linux route add command failed" and runs without that route, the
    # next `route` added; ours stopped its start (exit 1) before: now the same as 2.6, said at ERROR.
    net = _net(_opts(routes=[("198.18.48.5", "255.255.255.0", None, None), ("198.18.47.0", "255.255.255.0", None, None)]),
               v6=True)
    net.opts.route_ipv6 = [("fd00:4848::/64", None, None)]
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        tun = net.open()
    try:
        routes = {r[0] for r in _routes(tun.name) + _routes(tun.name, v6=True)}
        assert {"198.18.47.0/24", "fd00:4848::/64"} <= routes, routes          # the ones after it went in
        assert not any(r.startswith("198.18.48.") for r in routes), routes
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [f"route 198.18.48.5/24 dev {tun.name} not added: the kernel refused it (Invalid argument: "
                          "host bits set outside the /24 mask (the network is 198.18.48.0/24)); running without it, "
                          "as OpenVPN 2.6"], errors
        assert any(r.getMessage() == f"route 198.18.47.0/24 dev {tun.name}" for r in caplog.records)
    finally:
        net.close()
    assert _gone(tun.name)


def test_a_route_the_kernel_has_already_is_said_not_claimed(inside, caplog):
    # The namespace's own connected network (test_rtnl.py's `wan`, 198.18.40.0/24, metric 0):
    # EEXIST. Not taken over (2.6 adds its own beside it); the log says so.
    net = _net(_opts(routes=[("198.18.40.0", "255.255.255.0", None, None), ("198.18.49.0", "255.255.255.0", None, None)]))
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        tun = net.open()
    try:
        lines = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (logging.INFO, f"route 198.18.49.0/24 dev {tun.name}") in lines, lines
        assert (logging.INFO, f"route 198.18.40.0/24 dev {tun.name}") not in lines, lines
        taken = [m for lvl, m in lines if lvl == logging.WARNING and m.startswith("route 198.18.40.0/24")]
        assert taken and "not added" in taken[0], lines
        assert "198.18.40.0/24" not in {r[0] for r in _routes(tun.name)}
    finally:
        net.close()


def test_an_ipv6_address_the_kernel_refuses_says_why(inside):
    # IPv6 switched off for new devices: the kernel's EACCES on the address (2.6: "Linux can't add
    # IPv6 to interface tun0", fatal as ours).
    knob = "/proc/sys/net/ipv6/conf/default/disable_ipv6"
    with open(knob) as f:
        before = f.read().strip()
    with open(knob, "w") as f:
        f.write("1")
    try:
        with pytest.raises(PortGone) as e:
            _net(_opts(), v6=True).open()
    finally:
        with open(knob, "w") as f:
            f.write(before)
    msg = str(e.value)
    assert "IPv6 address fd00:47::1/64: Permission denied (IPv6 disabled on this host?" in msg, msg
    assert _gone(msg.split("cannot configure the TUN device ", 1)[1].split(":", 1)[0])


def _premade_with_users_own(inside) -> tuple[str, list, list]:
    """A device made beforehand (`ip tuntap add`, persistent: it outlives our fd), holding a user's
    own address and route; (its name, its addresses, its routes) as `ip` shows them."""
    dev = inside()
    for cmd in (["addr", "add", "198.18.99.1/32", "dev", dev], ["link", "set", dev, "up"],
                ["route", "add", "198.18.98.0/24", "dev", dev]):
        subprocess.run(["ip", *cmd], check=True, capture_output=True, timeout=10)
    return dev, _addrs(dev), _routes(dev) + _routes(dev, v6=True)


@pytest.mark.parametrize("topology", ["subnet", "net30"])
def test_a_premade_device_keeps_only_what_it_had_after_the_server(inside, topology):
    # As Debian's 2.6.14 (`dev tun47` made by `ip tuntap add`, SIGTERM; README tunclose47): its own
    # address beside the user's while it runs, and at close its addresses (IPv4, IPv6) and its
    # `route` / `route-ipv6` lines go, the user's address and route stay. Before: the start flushed
    # the user's address (and the kernel the user's route with it), and the exit left ours.
    dev, addrs0, routes0 = _premade_with_users_own(inside)
    o = _opts(topology, routes=[("198.18.47.0", "255.255.255.0", None, 7)], dev=dev)
    o.route_ipv6 = [("fd00:4747::/64", None, None)]
    net = _net(o, v6=True)
    tun = net.open()
    try:
        assert tun.name == dev
        running = _addrs(dev)
        assert set(addrs0) < set(running), running                   # the user's address kept
        assert {a[1] for a in running} >= {"198.18.99.1", "198.19.47.1", "fd00:47::1"}, running
        routes = {r[0] for r in _routes(dev) + _routes(dev, v6=True)}
        assert {"198.18.98.0/24", "198.18.47.0/24", "fd00:4747::/64"} <= routes, routes
    finally:
        net.close()
    assert not _gone(dev)                                            # a pre-made device stays
    assert _addrs(dev) == addrs0, _addrs(dev)
    assert _routes(dev) + _routes(dev, v6=True) == routes0, _routes(dev)
    assert not net.routes.added and not net.addrs.added


def test_a_premade_device_half_set_up_is_undone_to_what_it_had(inside):
    # The kernel refuses the IPv6 address (IPv6 off on this device): the start stops, and the IPv4
    # address it had added goes again; the user's address and route stay. (A refused `route` no
    # longer stops the start: the test above.)
    dev, addrs0, routes0 = _premade_with_users_own(inside)
    with open(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6", "w") as f:
        f.write("1")
    net = _net(_opts(routes=[("198.18.47.0", "255.255.255.0", None, None)], dev=dev), v6=True)
    with pytest.raises(PortGone) as e:
        net.open()
    assert "IPv6 address fd00:47::1/64" in str(e.value), str(e.value)
    assert net.tun is None and not _gone(dev)
    assert _addrs(dev) == addrs0, _addrs(dev)
    assert _routes(dev) + _routes(dev, v6=True) == routes0, _routes(dev)


def test_a_premade_device_holding_the_servers_address_already_starts_and_keeps_it(inside):
    # The user's own address is the server's (`server`'s NET+1): the kernel's EEXIST stopped the
    # start; Debian's 2.6 replaces it and removes it at its exit. Ours uses it, leaves it (helper net48).
    dev = inside()
    for cmd in (["addr", "add", "198.19.47.1/24", "dev", dev], ["link", "set", dev, "up"]):
        subprocess.run(["ip", *cmd], check=True, capture_output=True, timeout=10)
    addrs0 = _addrs(dev)
    net = _net(_opts(routes=[("198.18.47.0", "255.255.255.0", None, None)], dev=dev))
    tun = net.open()
    try:
        assert "198.18.47.0/24" in {r[0] for r in _routes(tun.name)}
        assert not net.addrs.added
    finally:
        net.close()
    assert _addrs(dev) == addrs0, _addrs(dev)


def _net30_on(network: str) -> ServerTunnelNetwork:
    o = _opts("net30")
    o.server = (network, "255.255.255.0")
    return ServerTunnelNetwork(o, AddressPool(network, "255.255.255.0", "net30"), None)


def test_the_server_networks_own_route_refused_stops_the_start(inside, monkeypatch):
    # review48b: net48 made a refused `route` a logged line (as 2.6); the `server` network's own
    # route (net30: its clients' network) went with it, silently -- a server up whose clients are
    # reachable by no route. The kernel refuses no such route here by itself (its network is
    # masked, the device up), so its refusal is the fake: ENETUNREACH on that route alone.
    from appliance.router.routes import RouteSet
    from appliance.tun.rtnl import NetlinkError
    real = RouteSet.add

    def add(self, network, prefixlen, **kw):
        if (network, prefixlen) == ("198.19.47.0", 24):
            raise NetlinkError(errno.ENETUNREACH, "Network is unreachable")
        return real(self, network, prefixlen, **kw)
    monkeypatch.setattr(RouteSet, "add", add)
    net = _net30_on("198.19.47.0")
    with pytest.raises(PortGone) as e:
        net.open()
    msg = str(e.value)
    assert "the route to the `server` network 198.19.47.0/24 dev tun" in msg and "Network is unreachable" in msg, msg
    assert _gone(msg.split("cannot configure the TUN device ", 1)[1].split(":", 1)[0]) and net.tun is None


def test_the_server_networks_own_route_there_already_is_said(inside, caplog):
    # The namespace's connected network (test_rtnl.py's `wan`, 198.18.40.0/24) as a net30 server's:
    # EEXIST, left as it is (a user's own route to a pre-made device is the same case), now said.
    net = _net30_on("198.18.40.0")
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        tun = net.open()
    try:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(m.startswith(f"route 198.18.40.0/24 dev {tun.name} (the `server` network's) not added")
                   for m in warned), warned
    finally:
        net.close()
