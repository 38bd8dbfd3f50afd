"""A pushed tunnel address that is the server's own is refused before anything is configured
(gateway/tunnel.py TunnelNetwork._address_not_claimed; on the wire, with the WAN's addresses too:
tests/interop/test_wan_address_push.py).

Why: the TUN keeps its address while the client reconnects, and with the server's address on it
every packet to the server was delivered locally: no reconnect ever reached that server again.
"""
from __future__ import annotations

import pytest

from appliance.gateway.tunnel import TunnelNetwork


def test_the_servers_own_address_as_the_tunnels_is_refused():
    net = TunnelNetwork.__new__(TunnelNetwork)       # no device: the check comes before any netlink work
    with pytest.raises(RuntimeError, match="198.18.7.1 is the server's own address"):
        net._address_not_claimed("198.18.7.1", "198.18.7.1")
