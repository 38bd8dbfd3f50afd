"""Addresses and link state of a TUN device (netlink through appliance/tun/rtnl.py: no `ip`
subprocesses, and no pyroute2 import on the client's way to its first packet)."""
from __future__ import annotations

import errno
import logging

from ..tun.rtnl import IFA_F_NODAD, NetlinkError, Rtnl, link_index

log = logging.getLogger("vpn-appliance")


class AddressSet:
    """The addresses we put on a TUN device, remembered so we remove exactly those when we close
    it (RouteSet does the same for routes). Why: a device made beforehand (`ip tuntap add`,
    persistent) outlives our fd and kept them after the exit, where OpenVPN 2.6 removes its own
    (close_tun: undo_ifconfig); one we made goes away with its addresses anyway. An address the
    device had before (a user's own) is never in here: addr_add refuses a duplicate (EEXIST)."""

    def __init__(self) -> None:
        self.added: list[tuple[int, str, int, str | None]] = []     # (link index, address, prefixlen, peer)

    def add(self, nl: Rtnl, index: int, address: str, prefixlen: int, peer: str | None = None,
            flags: int = 0) -> bool:
        """False when the device holds that address already (EEXIST): a user's own, on a device
        made beforehand. It serves as it is and is left there at close. Why: the kernel's EEXIST
        stopped the push's apply (the client reconnected each second for ever; the server's start
        stopped), where OpenVPN 2.6 replaces it (sitnl) and then removes it at its exit -- a
        user's address, and with the device's last IPv4 address the kernel drops its routes too
        (Debian's 2.6.14 in a lab namespace, helper net48)."""
        try:
            nl.addr_add(index, address, prefixlen, peer=peer, flags=flags)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            log.info("address %s/%d is on the device already (not ours: used as it is, left there at close)",
                     address, prefixlen)
            return False
        self.added.append((index, address, prefixlen, peer))
        return True

    def remove_all(self, nl: Rtnl | None = None) -> None:
        """Newest first; one already gone (the device with it, a user's `ip addr del`) is skipped."""
        if not self.added:
            return
        own = Rtnl() if nl is None else None
        try:
            for index, address, prefixlen, peer in reversed(self.added):
                try:
                    (nl or own).addr_del(index, address, prefixlen, peer=peer)
                except NetlinkError as e:
                    log.debug("address %s/%d already gone: %s", address, prefixlen, e)
        finally:
            if own is not None:
                own.close()
        self.added.clear()


def configure_tun(name: str, address: str, prefixlen: int, mtu: int, peer: str | None = None,
                  flush: bool = True, link: bool = True, index: int | None = None,
                  nl: Rtnl | None = None, added: AddressSet | None = None) -> None:
    """Set the tunnel address (topology subnet: addr/prefix; net30/p2p: local with a peer), MTU, up
    (`link` False: the link is up at this MTU already, see link_up). The addresses it had go
    first (`flush`; a device just created has none; never on a device made beforehand, whose
    addresses may be a user's). `added`: where the address is remembered for close. `index`: the device's interface index when
    the caller knows it (no lookup by name); `nl`: a netlink socket the caller keeps open."""
    i = link_index(name) if index is None else index
    if nl is None:
        with Rtnl() as own:
            _configure(own, i, address, prefixlen, mtu, peer, flush, link, added)
    else:
        _configure(nl, i, address, prefixlen, mtu, peer, flush, link, added)


def _configure(nl: Rtnl, i: int, address: str, prefixlen: int, mtu: int, peer: str | None, flush: bool,
               link: bool, added: AddressSet | None) -> None:
    if flush:
        nl.addr_flush(i)
    (added or AddressSet()).add(nl, i, address, 32 if peer else prefixlen, peer=peer)
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


def add_address6(name: str, address: str, prefixlen: int, added: AddressSet | None = None) -> None:
    """An IPv6 address on the tunnel, usable at once (no duplicate address detection on a TUN);
    `added`: where it is remembered for close."""
    with Rtnl() as nl:
        (added or AddressSet()).add(nl, link_index(name), address, prefixlen, flags=IFA_F_NODAD)
