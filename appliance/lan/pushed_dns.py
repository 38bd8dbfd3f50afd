"""Which DNS servers a VPN server pushes are not servers through the tunnel: the one rule the LAN
DNS forwarder (dns_forwarder.py) and the DHCP server handing them to LAN hosts with the forwarder
off (dhcp_server.py) both apply.

Why: a hostile or broken server that pushes `dhcp-option DNS <our tunnel address>` (or the LAN
address, loopback, 0.0.0.0) sends the LAN's queries to whatever listens on this host; a multicast
or broadcast address sends every LAN host's queries to every host on the LAN.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Iterable

LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def own_address(addr: str, ours: "Iterable[str]") -> bool:
    """Whether `addr` is this host's: one of `ours` (tunnel and LAN addresses), loopback,
    unspecified (both reach this host), or an address the kernel routes to itself (the WAN's and
    any other interface's). An IPv4-mapped IPv6 address counts as its IPv4 address."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified or any(ip == ipaddress.ip_address(a) for a in ours):
        return True
    # The kernel's route to it: a local address is reached through the local table, with
    # itself as the source. Not a bind check: with net.ipv4.ip_nonlocal_bind (keepalived
    # hosts) every address binds, and every pushed server would have been skipped.
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(ip), 53))
            return ipaddress.ip_address(s.getsockname()[0].partition("%")[0]) == ip
        except (OSError, ValueError):
            return False                # no route to it: not ours (a link-local without scope too)


def not_through_the_tunnel(addr: str, ours: "Iterable[str]", broadcasts: "Iterable[str]" = (),
                           is_own: Callable[[str, Iterable[str]], bool] = own_address,
                           on_link: "Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]" = ()) -> str | None:
    """Why the pushed DNS server `addr` is not to be used, or None: an address of this host
    (`is_own`, own_address unless a test on loopback says otherwise), a multicast address, the
    limited broadcast or one of `broadcasts` (a LAN's directed broadcast), or an address in one
    of `on_link`: the networks the asking hosts reach directly (the LAN, for the DHCP server's
    hosts), whose queries to it never pass through this host, let alone the tunnel."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return "not an address"
    mapped = ip.ipv4_mapped if ip.version == 6 else None
    plain = mapped if mapped is not None else ip
    if plain.is_multicast:
        return "a multicast address"
    if plain == LIMITED_BROADCAST or any(plain == ipaddress.ip_address(b) for b in broadcasts):
        return "a broadcast address"
    if is_own(addr, ours):
        return "an address of this host"
    if any(plain.version == n.version and plain in n for n in on_link):
        return "an address on the LAN itself"
    return None
