"""The LAN NIC takes no router advertisement, from the moment its link is up.

Why: configure_nic brought the LAN link up (configure_static) and only then set its accept_ra to
0. A LAN host flooding RAs (a virtio NIC has carrier at once; IPv6 forwarding is still off then)
got one in: its on-link prefix (2000::/3, infinite lifetime) stayed as a route out of the LAN NIC
after accept_ra went to 0 and after forwarding went on (which purges only RA default routes), more
specific than the WAN's IPv6 default and the tunnel's `redirect-gateway ipv6` halves: the
appliance's own IPv6 (the VPN transport to an IPv6 server) left by the LAN to that host, and the
LAN's IPv6 through the tunnel came back to the LAN. Checked in a netns pair with scapy: the
route stays through both sysctl changes.
"""
from __future__ import annotations

import ipaddress

from appliance.config.schema import Lan
from appliance.router import nics


class _Ipr:
    def __init__(self, events: list) -> None:
        self.events = events

    def __enter__(self):
        return self

    def __exit__(self, *a) -> None:
        pass

    def get_links(self):
        return []

    def link_lookup(self, ifname: str):
        return [7]

    def link(self, cmd: str, index: int, state: str) -> None:
        self.events.append(("link", state))

    def addr(self, cmd: str, **kw) -> None:
        self.events.append(("addr", kw["address"]))


def test_the_lan_nic_refuses_router_advertisements_before_its_link_goes_up(monkeypatch):
    events: list = []
    monkeypatch.setattr(nics, "IPRoute", lambda: _Ipr(events))
    monkeypatch.setattr(nics, "find_link", lambda name, mac: (7, "lan32b0"))
    monkeypatch.setattr(nics, "_sysctl", lambda path, value, undo, required=False: events.append((path, value)) or True)
    monkeypatch.setattr(nics, "lan_address6", lambda lan, ifname: ipaddress.IPv6Interface("fd18:50::1/64"))
    monkeypatch.setattr(nics, "add_lan_routes", lambda lan, ifname, undo, address6=None: None)
    lan = Lan(name="lan32b0", address=ipaddress.IPv4Interface("198.18.50.1/24"))
    assert nics.configure_nic(lan, nics.Undo()) == "lan32b0"
    up = events.index(("link", "up"))
    ra = events.index((f"{nics.IP6_CONF}/lan32b0/accept_ra", "0"))
    assert ra < up, events
