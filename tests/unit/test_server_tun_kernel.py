"""The server's TUN set up in the server's own process (helper startup47; gateway/server_net.py)
against the kernel, in test_rtnl.py's namespace: no child process, and what `ip` then shows
(helper review47a)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.gateway.server_net import ServerTunnelNetwork
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
