"""A static WAN (address, gateway, address6, gateway6 in the TOML) given back after a link flap.

Why: the kernel drops a NIC's IPv4 routes when its link goes down (the address stays) and, unless
keep_addr_on_down is set, its IPv6 addresses too; nothing put them back, so after `ip link set
WAN down; up` (a cable, a hypervisor's NIC reconnect) a router with a static WAN had no default
route until it was restarted. The same thread the DHCP lease uses (boot/dhcp_client.py
keep_on_link: link events, paced) calls reapply() here: an address the NIC lost is added again,
and a default route when there is none of its family (one the operator or an RA put in is
left alone). SLAAC needs none of this: the kernel sends a router solicitation when the link
comes back (accept_ra 2 on a forwarding WAN, as router/nics.py sets it), the answer restores it.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Sequence

from pyroute2 import IPRoute

from ..boot import dhcp_client
from ..tun.rtnl import whole_dump
from ..logpace import NoteLimit, times

log = logging.getLogger("vpn-appliance")

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Gateway = ipaddress.IPv4Address | ipaddress.IPv6Address


def missing(addresses: Sequence[Address], have: set[tuple[str, int]], gateways: Sequence[Gateway],
            defaults: set[int], link_back: bool) -> tuple[list[Address], list[Gateway]]:
    """What to add again (pure): the addresses not in `have` ((address, prefixlen) the NIC holds),
    and the gateways whose family (4 or 6) has no default route (`defaults`: the families that
    have one) -- only when the link just came back or an address was missing (a route the
    operator removed while all stayed up is theirs)."""
    addrs = [a for a in addresses if (str(a.ip), a.network.prefixlen) not in have]
    if not (addrs or link_back):
        return addrs, []
    return addrs, [g for g in gateways if g.version not in defaults]


class StaticWan:
    """The static addresses and gateways of one NIC, reapplied by keep_on_link's thread."""

    def __init__(self, ifname: str, addresses: Sequence[Address], gateways: Sequence[Gateway]) -> None:
        self.ifname = ifname
        self.addresses = list(addresses)
        self.gateways = list(gateways)
        self.stop = threading.Event()
        # halt() against a reapply under way on keep_on_link's thread: nothing is added after
        # the undo removed it (as the DHCP lease's lock: boot/dhcp_client.py Lease._lock)
        self._busy = threading.Lock()
        self.notes = NoteLimit()            # a flapping link is not a WARNING per check
        self.clock = time.monotonic

    def halt(self) -> None:
        """Stop reapplying (the undo, before it removes the addresses and routes): returns once
        no reapply is under way, and none adds anything after (stop.set() alone let one between
        its check and its adds put an address back after the undo's removal)."""
        with self._busy:
            self.stop.set()

    def reapply(self, link_back: bool) -> bool:
        """Add what the NIC lost (True: something was added). Nothing once halted (the undo
        removes the addresses after halting this)."""
        with self._busy:
            if self.stop.is_set():
                return False
            return self._reapply(link_back)

    def _reapply(self, link_back: bool) -> bool:
        done: list[str] = []
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.ifname)
            if not found:
                return False
            idx = found[0]
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in whole_dump(lambda: ipr.get_addr(index=idx), "address")}
            defaults = {v for v, fam in ((4, socket.AF_INET), (6, socket.AF_INET6))
                        if any(r["dst_len"] == 0
                               for r in whole_dump(lambda: ipr.get_routes(family=fam, table=254), "route"))}
            addrs, gws = missing(self.addresses, have, self.gateways, defaults, link_back)
            for a in addrs:
                ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)
                done.append(str(a))
            for g in gws:
                ipr.route("add", dst="::/0" if g.version == 6 else "0.0.0.0/0", gateway=str(g), oif=idx)
                done.append(f"default via {g}")
        now = self.clock()
        if done:
            held = self.notes.due(now)
            if held is not None:
                log.warning("%s: the WAN's static %s gone from the NIC (link down/up, flushed): added again%s",
                            self.ifname, " and ".join(done), times(held))
        elif held := self.notes.summary(now):     # a storm over: its count said, not left for the next flap
            log.warning("%s: the WAN's static addresses or default routes gone and added again %d more time%s "
                        "since the last such line: the link keeps flapping or being flushed", self.ifname, held,
                        "s" if held != 1 else "")
        return bool(done)

    def start(self) -> None:
        threading.Thread(target=dhcp_client.keep_on_link,
                         args=(self.ifname, self.stop, self.reapply, "the WAN's static address"),
                         name="wan-relink", daemon=True).start()
