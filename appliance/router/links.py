"""Addresses and link state of a TUN device (netlink through appliance/tun/rtnl.py: no `ip`
subprocesses, and no pyroute2 import on the client's way to its first packet)."""
from __future__ import annotations

from ..tun.rtnl import IFA_F_NODAD, Rtnl, link_index


def configure_tun(name: str, address: str, prefixlen: int, mtu: int, peer: str | None = None,
                  flush: bool = True, link: bool = True, index: int | None = None,
                  nl: Rtnl | None = None) -> None:
    """Set the tunnel address (topology subnet: addr/prefix; net30/p2p: local with a peer), MTU, up
    (`link` False: the link is up at this MTU already, see link_up). The addresses it had go
    first (`flush`; a device just created has none). `index`: the device's interface index when
    the caller knows it (no lookup by name); `nl`: a netlink socket the caller keeps open."""
    i = link_index(name) if index is None else index
    if nl is None:
        with Rtnl() as own:
            _configure(own, i, address, prefixlen, mtu, peer, flush, link)
    else:
        _configure(nl, i, address, prefixlen, mtu, peer, flush, link)


def _configure(nl: Rtnl, i: int, address: str, prefixlen: int, mtu: int, peer: str | None, flush: bool,
               link: bool) -> None:
    if flush:
        nl.addr_flush(i)
    nl.addr_add(i, address, 32 if peer else prefixlen, peer=peer)
    if link:
        nl.link_set(i, mtu=mtu, up=True)


def set_lladdr(name: str, mac: str) -> None:
    """A tap device's MAC address (`lladdr`), set before its link comes up, as OpenVPN 2.6."""
    with Rtnl() as nl:
        nl.link_set(link_index(name), address=bytes.fromhex(mac.replace(":", "")))


def link_up(name: str, mtu: int) -> None:
    """The link up at `mtu`, with no address yet (a client's TUN device before its push)."""
    with Rtnl() as nl:
        nl.link_set(link_index(name), mtu=mtu, up=True)


def add_address6(name: str, address: str, prefixlen: int) -> None:
    """An IPv6 address on the tunnel, usable at once (no duplicate address detection on a TUN)."""
    with Rtnl() as nl:
        nl.addr_add(link_index(name), address, prefixlen, flags=IFA_F_NODAD)
