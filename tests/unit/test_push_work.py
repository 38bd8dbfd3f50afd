"""What applying a push costs on the way to the client's first packet: the address and routes
go through the netlink socket opened with the TUN device, and the device's index is not looked
up by name again (README "Tenth session"). Runs in test_rtnl.py's namespace, as
test_tunnel_push_attacks.py."""
from __future__ import annotations

import socket

import pytest

from appliance.gateway import tunnel
from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import Options
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.tun import rtnl
from tests.unit.test_rtnl import _addrs, _routes, inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER = "198.18.60.9"
PUSH = "PUSH_REPLY,topology subnet,ifconfig 198.18.72.2 255.255.255.0,route 198.18.73.0 255.255.255.0"


def test_a_push_opens_no_netlink_socket_and_looks_up_no_interface(inside, monkeypatch):
    net = TunnelNetwork(Options())
    try:
        net.prepare()                       # before the first packet: device, link, netlink socket
        made, looked_up = [], []
        real_init, real_index = rtnl.Rtnl.__init__, socket.if_nametoindex

        def counted_init(self, *a, **k):
            made.append(1)
            real_init(self, *a, **k)

        def counted_index(name):
            looked_up.append(name)
            return real_index(name)
        monkeypatch.setattr(rtnl.Rtnl, "__init__", counted_init)
        monkeypatch.setattr(socket, "if_nametoindex", counted_index)
        net.apply(parse_push_reply_untrusted(PUSH), SERVER)
        monkeypatch.undo()
        dev = net.tun.name
        assert [(a[0], a[1], a[3]) for a in _addrs(dev)] == [("inet", "198.18.72.2", 24)]
        assert "198.18.73.0/24" in {r[0] for r in _routes(dev)}
        assert made == [] and looked_up == []
    finally:
        net.close()
    assert net._nl is None                  # closed with the device  # noqa: SLF001
