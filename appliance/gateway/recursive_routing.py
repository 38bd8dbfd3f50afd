"""Packets the host routed into the tunnel towards the VPN server itself: dropped, not sealed.

Why: the tunnel's host route to the server keeps the transport's own packets out of 0/1 + 128/1,
but it is not always there -- a WAN link down/up drops it with every IPv4 route of the NIC until
the route keeper (gateway/route_keeper.py) puts it back, a flush takes it, a server whose
address is pushed as a route pulls it into the tunnel. Meanwhile each packet to the server's
address -- the transport's own, a keepalive, anything to that address -- was read from the TUN,
sealed and sent to the server, routed into the TUN again, sealed again, each round a little
larger: past the MTU the kernel fragments it, and each fragment goes round too. One 1,400-byte
ping in a 0.2 s window without the host route put 20,000 packets (12 MB) through the TUN
(atk40, in namespaces against Debian's OpenVPN 2.6 server); a link flapping for a minute took a
fifth of a core. OpenVPN 2.6 drops such packets as they come from the TUN
(forward.c drop_if_recursive_routing, "Recursive routing detected, drop tun packet to ...", a
client or p2p peer only, unless --allow-recursive-routing); so do we, counted and said at most
a few at once, then once per LOG_EVERY (logpace.NoteLimit) -- and, once a storm is over, the
count of the drops held since the last line in a line of its own (`arm`: a timer on the client's
pump; before review41 those were never said unless another drop came). The peer's address is the
link's: the server's, or the proxy's (2.6's to_link_addr).
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Callable

from ..logpace import NoteLimit, times

log = logging.getLogger("vpn-appliance")

LOG_EVERY = 30.0
_ETH_IPV4, _ETH_IPV6 = b"\x08\x00", b"\x86\xdd"


class RecursiveGuard:
    """The drop for one connection's peer address (`addr`); `frames`: a tap device's Ethernet
    frames (untagged IPv4/IPv6 inside), else IP packets."""

    def __init__(self, addr: str, frames: bool, clock: Callable[[], float],
                 arm: Callable[[float, Callable[[], None]], None] | None = None) -> None:
        self.key = addr
        self._arm = arm             # arm(when, fn): the summary's timer (None: no summary line)
        self._armed = False
        self._said_at = 0           # `dropped` when a line last said it
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        self.addr, self.packed, self.clock = str(ip), ip.packed, clock
        self.version = ip.version
        base = 14 if frames else 0
        self.frames = frames
        self.at = base + (16 if ip.version == 4 else 24)         # the destination address in the packet
        self.dropped = 0
        self._said = NoteLimit(LOG_EVERY)

    def keep(self, pkts: list) -> list:
        """`pkts` without those for the peer's own address. The bulk passes on one cheap test
        (no packet holds the address where the destination would be); only a batch with a
        candidate is looked at packet by packet."""
        a, at, end = self.packed, self.at, self.at + len(self.packed)
        if not any(p[at:end] == a for p in pkts):       # bytes or memoryview (a batch's slices)
            return pkts
        kept = [p for p in pkts if not (p[at:end] == a and self._is_ip(p))]
        n = len(pkts) - len(kept)
        if n:
            self.dropped += n
            held = self._said.due(self.clock())
            if held is not None:
                self._said_at = self.dropped
                log.warning("recursive routing: %d packet(s) from the TUN to the VPN server %s itself dropped "
                            "(its route outside the tunnel is gone: a link down/up, a flush; %d in all)%s",
                            n, self.addr, self.dropped, times(held))
            elif self._arm is not None and not self._armed:
                at = self._said.next_summary()
                if at is not None:
                    self._armed = True
                    self._arm(at, self.say_held)
        return kept

    def say_held(self) -> None:
        """The drops held since the last line, said once one may be (the storm may be over:
        nothing else would say them)."""
        self._armed = False
        if self._said.summary(self.clock()):
            n, self._said_at = self.dropped - self._said_at, self.dropped
            log.warning("recursive routing: %d more packet(s) from the TUN to the VPN server %s itself dropped since "
                        "the last such line (%d in all)", n, self.addr, self.dropped)

    def _is_ip(self, p) -> bool:
        """Whether `p` is an IP packet (frame) of the peer's family, so that `at` is its destination."""
        if self.frames:
            if bytes(p[12:14]) != (_ETH_IPV4 if self.version == 4 else _ETH_IPV6):
                return False
            return (p[14] >> 4) == self.version
        return (p[0] >> 4) == self.version
