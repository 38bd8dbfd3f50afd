"""Router mode: no pushed route or tunnel address inside the LAN's networks (gateway/tunnel.py).
The lab proof is tests/interop/test_lan_pushed_routes.py (IPv4 route and subnet); this covers the
IPv6 and net30 forms."""
import pytest

from appliance.gateway.tunnel import TunnelNetwork
from appliance.openvpn.config import Options
from appliance.openvpn.keymethod import PushedOptions

LAN = ["198.18.50.0/24", "fd18:50::/64", "198.18.60.0/24"]


def _net(lan=LAN) -> TunnelNetwork:
    return TunnelNetwork(Options(), lan)


@pytest.mark.parametrize("push", [
    PushedOptions(ifconfig=("198.18.50.7", "255.255.255.0"), topology="subnet"),
    PushedOptions(ifconfig=("198.19.0.2", "198.18.60.1")),                      # net30 peer in a LAN route
    PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"), topology="subnet",
                  ifconfig_ipv6=("fd18:50::77/64", "")),
    # The address inside the LAN's /64, its subnet around the LAN (a /48: within WIDEST_SUBNET6):
    # only the subnet was looked at, where IPv4 checks the address too. The TUN then held a LAN
    # host's address, and that host's IPv6 from the router and through the tunnel ended at it.
    PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"), topology="subnet",
                  ifconfig_ipv6=("fd18:50::77/48", "")),
])
def test_a_tunnel_address_inside_the_lan_refuses_the_push(push):
    with pytest.raises(RuntimeError, match="inside the LAN's network"):
        _net()._address_outside_lan(push)
    _net([])._address_outside_lan(push)                 # no LAN (host mode): nothing to guard


def test_a_tunnel_around_the_lan_is_taken():
    _net()._address_outside_lan(PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"), topology="subnet",
                                              ifconfig_ipv6=("2001:db8:19::2/64", "")))
    _net()._address_outside_lan(PushedOptions(ifconfig=("10.8.0.2", "255.0.0.0"), topology="subnet"))


@pytest.mark.parametrize("net, prefix, inside", [
    ("198.18.50.128", 25, True), ("198.18.50.0", 24, True), ("198.18.60.9", 32, True),
    ("198.18.0.0", 16, False), ("198.18.51.0", 24, False),
    ("fd18:50::", 80, True), ("fd18::", 16, False), ("2001:db8::", 32, False),
])
def test_routes_inside_the_lan_are_skipped(net, prefix, inside):
    if inside:
        with pytest.raises(ValueError, match="inside the LAN's network"):
            _net()._inside_lan(net, prefix)
    else:
        _net()._inside_lan(net, prefix)
