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


class _Churning:
    """An Rtnl whose address and route dumps the kernel marks interrupted each time (the host's
    addresses changing all along): rtnl.py reads them again, then raises DumpInterrupted."""

    def __init__(self, addrs=None, fail_routes: bool = True) -> None:
        self._addrs, self.fail_routes = addrs, fail_routes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def addrs(self, family, index=None):
        from appliance.tun.rtnl import DumpInterrupted
        if self._addrs is None:
            raise DumpInterrupted("address")
        return self._addrs

    def default_routes(self, family):
        from appliance.tun.rtnl import DumpInterrupted
        raise DumpInterrupted("route")


@pytest.mark.parametrize("on_link", [False, True], ids=["addresses", "gateway"])
def test_an_interrupted_dump_refuses_the_push_rather_than_skip_the_check(monkeypatch, on_link):
    # review48b: a dump the kernel kept marking NLM_F_DUMP_INTR (DumpInterrupted, a NetlinkError)
    # was taken as "addresses not read" and the check skipped: a pushed address this host holds
    # (or its gateway's) went on the TUN. Now the push fails; the next attempt reads again.
    from types import SimpleNamespace

    from appliance.gateway import tunnel
    from appliance.router import routes
    net = TunnelNetwork.__new__(TunnelNetwork)
    net._nl, net.tun = None, SimpleNamespace(name="tun7")
    monkeypatch.setattr(TunnelNetwork, "_tun_index", lambda self: 7)
    monkeypatch.setattr(routes, "link_index", lambda name: 7)
    # "gateway": the addresses read, the pushed one on-link on eth0 (index 2): the gateway's next.
    churn = _Churning([(2, "198.18.9.5", 24, 2)] if on_link else None)
    monkeypatch.setattr(tunnel, "Rtnl", lambda: churn)
    monkeypatch.setattr(routes, "Rtnl", lambda: churn)
    pushed = PushedOptions(ifconfig=("198.18.9.7", "255.255.255.0"))
    with pytest.raises(RuntimeError, match="not checked against this host's.*NLM_F_DUMP_INTR"):
        net._address_not_claimed(pushed, "198.18.60.1")
