"""A pushed tunnel address that is the server's own is refused before anything is configured
(gateway/tunnel.py TunnelNetwork._address_not_claimed; on the wire, with the WAN's addresses too:
tests/interop/test_wan_address_push.py).

Why: the TUN keeps its address while the client reconnects, and with the server's address on it
every packet to the server was delivered locally: no reconnect ever reached that server again.
"""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.keymethod import PushedOptions


@pytest.mark.parametrize("ifconfig, ifconfig6, remote", [
    (("198.18.7.1", "255.255.255.0"), None, "198.18.7.1"),
    (("198.19.0.2", "255.255.255.0"), ("2001:db8:7::1/64", ""), "2001:db8:7:0::1"),   # spelt otherwise
])
def test_the_servers_own_address_as_the_tunnels_is_refused(ifconfig, ifconfig6, remote):
    net = TunnelNetwork.__new__(TunnelNetwork)       # no device: the check comes before any netlink work
    pushed = PushedOptions(ifconfig=ifconfig, ifconfig_ipv6=ifconfig6)
    with pytest.raises(RuntimeError, match="is the server's own address"):
        net._address_not_claimed(pushed, remote)
