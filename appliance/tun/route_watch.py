"""The kernel's word that a link changed, a route went or an IPv4 address came or went (rtnetlink
RTM_NEWLINK / RTM_DELROUTE / RTM_NEWADDR / RTM_DELADDR), for the client's route keeper
(gateway/route_keeper.py).

Why: a link down/up of the WAN NIC keeps its IPv4 address but the kernel drops every IPv4 route
out of it -- the tunnel's host route to the VPN server among them, silently (no RTM_DELROUTE for
routes flushed at link down: only the link's own RTM_NEWLINK says anything). With
redirect-gateway the server's packets then followed 0/1 + 128/1 into the tunnel itself until
ping-restart (30-120 s). With this port on the pump the client puts its routes back within
a second of the link's return. The same silence follows an IPv4 address's removal (`ip addr del`,
a flush, a DHCP client's release): the routes through it go with no RTM_DELROUTE (IPv6 routes do
get one), so IPv4 address events are hints too (compat42) -- the removal, and the address's return,
which is when those routes can go back.

What is trusted: only the kernel (sender port 0) can send to an rtnetlink multicast group, and a
message is taken only as a hint: which of our routes are gone is asked of the kernel afresh (a
route add that says EEXIST: it is there). A lost hint (the socket's queue overflowed: ENOBUFS)
counts as a change too. Each wake-up reads at most `limit` datagrams.
"""
from __future__ import annotations

import socket
import struct
from typing import Callable

from ..transport import sockfilter as bpf
from .nl_hints import read_hints
from .rtnl import (_IFADDRMSG, _IFINFOMSG, _NLMSGHDR, _RTMSG, RTA_DST, RTA_OIF, RTA_TABLE, RTM_DELADDR, RTM_DELROUTE,
                   RTM_NEWADDR, RTM_NEWLINK, _attrs, _u32)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
# The notifications read at all (the socket's filter keeps only these): links, removed routes, and
# IPv4 addresses (only that family's group is joined: IPv6's lifetime refreshes, one per router
# advertisement, never arrive).
HINT_TYPES = (RTM_NEWLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_DELADDR)


def _as_loaded(kind: int) -> int:
    """nlmsg_type as a classic BPF half-word load sees it (big-endian load of a host-order field)."""
    return int.from_bytes(struct.pack("=H", kind), "big")


def _only_links_and_removals(s: socket.socket) -> bool:
    """Have the kernel drop every notification but HINT_TYPES': the routes the client adds at
    each push (RTM_NEWROUTE) would each wake it for nothing, on the way to the first packet.
    Each notification is a datagram of its own, so its first message's type is its type. False,
    everything read and judged in changed(), if the kernel refuses it."""
    n = len(HINT_TYPES)
    prog = [(bpf.LD_H, 0, 0, 4)]
    prog += [(bpf.JEQ, n - i, 0, _as_loaded(kind)) for i, kind in enumerate(HINT_TYPES)]   # each: to ACCEPT
    prog += [(bpf.RET, 0, 0, bpf.DROP), (bpf.RET, 0, 0, bpf.ACCEPT)]
    try:
        bpf.attach(s, prog)
    except OSError:
        return False
    return True


def link_of(msg: bytes) -> int | None:
    """The interface index an RTM_NEWLINK message (header included) names; None if too short."""
    if len(msg) < _NLMSGHDR.size + _IFINFOMSG.size:
        return None
    return _IFINFOMSG.unpack_from(msg, _NLMSGHDR.size)[2]


def addr_link_of(msg: bytes) -> tuple[int, int] | None:
    """(family, interface index) an RTM_NEWADDR / RTM_DELADDR message (header included) names;
    None if too short."""
    if len(msg) < _NLMSGHDR.size + _IFADDRMSG.size:
        return None
    family, _plen, _flags, _scope, index = _IFADDRMSG.unpack_from(msg, _NLMSGHDR.size)
    return family, index


def route_of(msg: bytes) -> tuple[int, int, int, int, int | None] | None:
    """(family, destination as an integer, prefix length, table, output interface or None) of an
    RTM_DELROUTE message (header included); None if too short to tell. No RTA_DST is the
    default route (0); RTA_TABLE, when there, is the table (rtm_table holds only 8 bits)."""
    if len(msg) < _NLMSGHDR.size + _RTMSG.size:
        return None
    family, plen, _src, _tos, table = _RTMSG.unpack_from(msg, _NLMSGHDR.size)[:5]
    a = _attrs(msg, _NLMSGHDR.size + _RTMSG.size)
    dst = a.get(RTA_DST)
    tb = _u32(a.get(RTA_TABLE))
    return family, int.from_bytes(dst, "big") if dst else 0, plen, table if tb is None else tb, _u32(a.get(RTA_OIF))


class RouteWatch:
    """A non-blocking rtnetlink socket on the link, IPv4/IPv6 route and IPv4 address groups."""

    # Which HINT_TYPES messages are hints at all (type, message): set by the
    # route keeper to its routes' (gateway/route_keeper.py KeptRoutes); None: every one.
    concerns: Callable[[int, bytes], bool] | None = None

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        try:
            self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_IFADDR))
        except OSError:
            self.sock.close()
            raise
        self.has_pending = False
        self.stats = {"hints": 0, "overflows": 0}
        self.filtered = _only_links_and_removals(self.sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def changed(self, limit: int = 16) -> bool:
        """Whether a link changed, a route went or an IPv4 address came or went since the last
        call (or a queue overflow may have hidden one). `has_pending`: `limit` reads were not enough."""
        seen, self.has_pending = read_hints(self.sock, HINT_TYPES, self.stats, "hints", limit,
                                            self.concerns)
        return seen

    def close(self) -> None:
        self.sock.close()
