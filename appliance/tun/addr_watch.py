"""The kernel's word that an address left this host (rtnetlink RTM_DELADDR), for the client.

Why: the client's UDP socket is connected, so its source address is fixed at connect time. When
that address leaves the host -- a WAN renumbered by DHCP (boot/dhcp_client.py), a lease that
ran out, an operator's `ip addr del` -- every send fails the kernel's source check (EINVAL,
counted) and nothing comes back, yet the client learned of it only at ping-restart (60 s with the
usual `keepalive 10 60`). With this port on the pump it reconnects from the host's new address
within the restart pause instead (gateway/client.py `_on_addresses`).

What is trusted: only the kernel (sender port 0) can send to an rtnetlink multicast group, yet a
message is taken only as a hint that something changed; whether our address is still here is
asked afresh (`is_local`: an RTM_GETADDR dump). A lost hint (the socket's queue overflowed:
ENOBUFS) counts as a change too. Each wake-up reads at most `limit` datagrams.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

from ..transport import sockfilter as bpf
from .nl_hints import read_hints
from .rtnl import _IFADDRMSG, IFA_ADDRESS, IFA_LOCAL, NLM_F_DUMP, RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR, Rtnl, _attrs

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return False


# RTM_NEWADDR as a classic BPF load of nlmsg_type (offset 4) sees it: loads are big-endian, the
# field is in the host's byte order.
_NEWADDR_AS_LOADED = int.from_bytes(struct.pack("=H", RTM_NEWADDR), "big")


def _no_new_addresses(s: socket.socket) -> bool:
    """Have the kernel drop RTM_NEWADDR notifications before they reach `s` (a socket filter):
    only a removal matters here, and each added address woke the client for nothing -- the
    TUN's own address at every push, on the way to the first packet's answer, and the IPv6
    link-local address the kernel gives the TUN when its link comes up, as the handshake
    starts. Each notification is a datagram of its own (rtnl_notify), so its first message's
    type is its type; anything else (RTM_DELADDR, what a kernel may add later) still comes
    through and is judged in removed(). False, every message read as before, if the kernel
    refuses the filter."""
    try:
        bpf.attach(s, [(bpf.LD_H, 0, 0, 4), (bpf.JEQ, 0, 1, _NEWADDR_AS_LOADED),
                       (bpf.RET, 0, 0, bpf.DROP), (bpf.RET, 0, 0, bpf.ACCEPT)])
    except OSError:
        return False
    return True


class AddressWatch:
    """A non-blocking rtnetlink socket on the IPv4 and IPv6 address groups."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        try:
            self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError:
            self.sock.close()
            raise
        self.has_pending = False
        self.stats = {"removals": 0, "overflows": 0}
        self.filtered = _no_new_addresses(self.sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def removed(self, limit: int = 16) -> bool:
        """Whether an address may have left the host since the last call (an RTM_DELADDR, or a
        queue overflow that may have hidden one). `has_pending`: `limit` reads were not enough."""
        seen, self.has_pending = read_hints(self.sock, (RTM_DELADDR,), self.stats, "removals", limit)
        return seen

    def is_local(self, address: str) -> bool:
        """Whether an interface of this host (this network namespace) has `address` now."""
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        size = 16 if fam == socket.AF_INET6 else 4
        with Rtnl() as nl:
            for mtype, msg in nl.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(fam, 0, 0, 0, 0)):
                if mtype != RTM_NEWADDR or len(msg) < _IFADDRMSG.size:
                    continue
                a = _attrs(msg, _IFADDRMSG.size)
                raw = a.get(IFA_LOCAL, a.get(IFA_ADDRESS))      # IFA_LOCAL: ours on a point-to-point link
                if raw is not None and len(raw) == size and _same(socket.inet_ntop(fam, raw), address):
                    return True
        return False

    def close(self) -> None:
        self.sock.close()
