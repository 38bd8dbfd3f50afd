"""Route netlink (rtnetlink) with the stdlib: the few requests a TUN device and its routes need.

Why not pyroute2 here: importing it costs 250-400 ms of CPU (its package imports all its
submodules and asyncio), and the client needs its TUN address and routes the moment the server's
PUSH_REPLY arrives -- OpenVPN's client takes ~0.3 ms for that step. These requests are a handful of
fixed structs (rtnetlink(7)), each answered by the kernel with an ACK or a dump, so they are
written out here and checked against `ip` in tests/interop/test_rtnl.py. Everything the appliance
does beyond this (NIC discovery, DHCP, the router's links) still uses pyroute2.

What a request carries matches what pyroute2's IPRoute sends for the same call (checked there
too): routes `proto static`, scope universe, table main, NLM_F_CREATE|NLM_F_EXCL on add (an
existing route is EEXIST); IPv4 addresses with IFA_LOCAL and IFA_ADDRESS (the peer's for a
point-to-point address), no broadcast.

The kernel is the only peer of this socket (netlink checks the sender: port 0), yet every reply
is parsed with bounds checks, and a request never waits more than `TIMEOUT` seconds.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Iterator

TIMEOUT = 10.0
_RECV = 65536
_TIMEVAL = struct.Struct("@ll")         # struct timeval: seconds, microseconds

# netlink(7)
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10         # on a dump's message: the table changed while it was read
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
# rtnetlink(7)
RTM_NEWLINK = 16
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
IFLA_ADDRESS = 1
IFLA_MTU = 4
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RTPROT_STATIC = 4
RTN_UNICAST = 1
RTN_UNREACHABLE = 7            # refused by the kernel itself (ENETUNREACH), no device needed
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")     # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")      # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")      # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")
_DUMP_NAMES = {RTM_GETADDR: "address", RTM_GETROUTE: "route", 18: "link"}     # (18: RTM_GETLINK)


class NetlinkError(OSError):
    """The kernel refused a request; `code` is the errno (17 = EEXIST), as pyroute2's has."""

    @property
    def code(self) -> int:
        return self.errno or 0


# How many times a dump is read before DumpInterrupted. The kernel marks a dump NLM_F_DUMP_INTR
# when the table changed while it was read in parts (an address or route added or removed between
# two of its recv()s): what came back may lack an entry or hold a removed one. Read again, a dump
# is whole unless the table keeps changing -- a few tries, then say so, rather than decide (is
# this address taken? which is the default route?) on a table that never was.
DUMP_TRIES = 4


class DumpInterrupted(NetlinkError):
    """A dump the kernel marked inconsistent (NLM_F_DUMP_INTR) each of DUMP_TRIES times."""

    def __init__(self, what: str, tries: int = DUMP_TRIES) -> None:
        super().__init__(errno.EAGAIN, f"the kernel's {what} dump changed while it was read, {tries} times in a "
                                       "row (NLM_F_DUMP_INTR): not decided on")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    n = _RTATTR.size + len(value)
    return _RTATTR.pack(n, kind) + value + b"\0" * (_align(n) - n)


def _attrs(buf: bytes, off: int) -> dict[int, bytes]:
    """The attributes from `off` to the end of one message (the last of a kind wins)."""
    out: dict[int, bytes] = {}
    while off + _RTATTR.size <= len(buf):
        n, kind = _RTATTR.unpack_from(buf, off)
        if n < _RTATTR.size or off + n > len(buf):
            break
        out[kind & 0x3FFF] = buf[off + _RTATTR.size:off + n]   # without NLA_F_NESTED/NET_BYTEORDER
        off += _align(n)
    return out


def _ip_bytes(addr: str) -> tuple[int, bytes]:
    # IPv4 through inet_pton first (as strict as ipaddress for dotted quads, ~10x cheaper: these
    # requests are on a client's way to its first packet); anything else as before.
    try:
        return socket.AF_INET, socket.inet_pton(socket.AF_INET, addr)
    except (OSError, TypeError):
        pass
    ip = ipaddress.ip_address(addr)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), ip.packed


def _ip_str(family: int, b: bytes | None) -> str | None:
    # A family neither IPv4's nor IPv6's (a dump of AF_UNSPEC holds what the message says) is
    # no address: inet_ntop raised ValueError for it (fuzz48 `rtnl-reply`).
    if b is None or family not in (socket.AF_INET, socket.AF_INET6) \
            or len(b) != (16 if family == socket.AF_INET6 else 4):
        return None
    return socket.inet_ntop(family, b)


def _u32(b: bytes | None) -> int | None:
    return struct.unpack("=I", b)[0] if b is not None and len(b) == 4 else None


def link_index(name: str) -> int:
    """The interface index of `name`; RuntimeError when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise RuntimeError(f"no such interface {name}") from None


class Rtnl:
    """One NETLINK_ROUTE socket; `with Rtnl() as nl:` closes it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        # The bound on each send and receive is the kernel's (SO_SNDTIMEO/SO_RCVTIMEO on a
        # blocking socket: EAGAIN, an OSError, when it passes), not Python's settimeout, which
        # makes the socket non-blocking and polls before every send and receive -- two system
        # calls more per request, three requests on the way to the first packet (the push).
        tv = _TIMEVAL.pack(int(TIMEOUT), int(TIMEOUT % 1 * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- transport
    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, message) answers of a dump, [] for an ACK.
        NetlinkError when the kernel answers with an error; a dump (NLM_F_DUMP) the kernel marks
        interrupted is read again, DumpInterrupted when it is so DUMP_TRIES times."""
        if flags & NLM_F_DUMP != NLM_F_DUMP:
            return self._request_once(kind, flags, body)[0]
        for _ in range(DUMP_TRIES):
            out, interrupted = self._request_once(kind, flags, body)
            if not interrupted:
                return out
        raise DumpInterrupted(_DUMP_NAMES.get(kind, f"type {kind}"))

    def _request_once(self, kind: int, flags: int, body: bytes) -> tuple[list[tuple[int, bytes]], bool]:
        """(the answers, whether any message of the answer, its NLMSG_DONE too, was marked
        NLM_F_DUMP_INTR)."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            data = self.sock.recv(_RECV)
            done = False
            for mtype, mflags, mseq, msg in self._messages(data):
                if mseq != seq:
                    continue                     # a late answer to an earlier request
                interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
                if mtype == NLMSG_ERROR:
                    # (-INT_MIN is no C int: os.strerror raised OverflowError for it; fuzz48)
                    code = -max(struct.unpack_from("=i", msg)[0], -0x7FFFFFFF) if len(msg) >= 4 else errno.EPROTO
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return out, interrupted      # the ACK
                if mtype == NLMSG_DONE:
                    return out, interrupted
                out.append((mtype, msg))
                if not mflags & NLM_F_MULTI:
                    done = True
            if done and not flags & NLM_F_ACK:
                return out, interrupted

    @staticmethod
    def _messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            n, mtype, mflags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
            if n < _NLMSGHDR.size or off + n > len(data):
                return
            yield mtype, mflags, mseq, data[off + _NLMSGHDR.size:off + n]
            off += _align(n)

    # ---------------------------------------------------------------- links
    def link_set(self, index: int, mtu: int | None = None, up: bool | None = None,
                 address: bytes | None = None) -> None:
        """`address`: the link-layer (MAC) address, a tap device's `lladdr`."""
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if mtu is not None:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        if address is not None:
            body += _attr(IFLA_ADDRESS, address)
        self.request(RTM_NEWLINK, NLM_F_ACK, body)

    # ---------------------------------------------------------------- addresses
    def addr_add(self, index: int, address: str, prefixlen: int, peer: str | None = None, flags: int = 0) -> None:
        """`address`/`prefixlen` on the link; with `peer`, a point-to-point address (local `address`)."""
        family, local = _ip_bytes(address)
        body = _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, 0, index)
        body += _attr(IFA_LOCAL, local) + _attr(IFA_ADDRESS, _ip_bytes(peer)[1] if peer else local)
        if flags:
            body += _attr(IFA_FLAGS, struct.pack("=I", flags))
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def addr_del(self, index: int, address: str, prefixlen: int, peer: str | None = None) -> None:
        """The address addr_add put there (the same arguments); NetlinkError EADDRNOTAVAIL
        (code 99) when the link has no such address."""
        family, local = _ip_bytes(address)
        body = _IFADDRMSG.pack(family, prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, local) + _attr(IFA_ADDRESS, _ip_bytes(peer)[1] if peer else local)
        self.request(RTM_DELADDR, NLM_F_ACK, body)

    def addrs(self, family: int = socket.AF_UNSPEC, index: int | None = None) -> list[tuple[int, str, int, int]]:
        """(family, address, prefixlen, index) of every address (of one link when `index` is given)."""
        out = []
        for mtype, msg in self.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(family, 0, 0, 0, 0)):
            if mtype != RTM_NEWADDR or len(msg) < _IFADDRMSG.size:
                continue
            fam, plen, _fl, _scope, idx = _IFADDRMSG.unpack_from(msg)
            if (index is not None and idx != index) or (family and fam != family):
                continue
            a = _attrs(msg, _IFADDRMSG.size)
            addr = _ip_str(fam, a.get(IFA_ADDRESS, a.get(IFA_LOCAL)))
            # A prefix length past the family's is no address either: its readers build networks
            # of it (ValueError) or shift by it (review48d; rtnl-reply's oracle named it, unchecked).
            if addr is not None and plen <= (128 if fam == socket.AF_INET6 else 32):
                out.append((fam, addr, plen, idx))
        return out

    def addr_flush(self, index: int) -> None:
        """Remove every address of the link (IPv4 and IPv6)."""
        for mtype, msg in self.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if mtype != RTM_NEWADDR or len(msg) < _IFADDRMSG.size:
                continue
            if _IFADDRMSG.unpack_from(msg)[4] != index:
                continue
            try:
                self.request(RTM_DELADDR, NLM_F_ACK, msg)     # the message names the address exactly
            except NetlinkError:
                pass      # e.g. gone already with its primary address (pyroute2's flush_addr alike)

    # ---------------------------------------------------------------- routes
    @staticmethod
    def _route_body(dst: str, prefixlen: int, oif: int | None, gateway: str | None, priority: int | None,
                    add: bool, rtype: int = RTN_UNICAST) -> bytes:
        family, d = _ip_bytes(dst)
        body = _RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC if add else 0, 0,
                           rtype if add else 0, 0)
        if prefixlen:
            body += _attr(RTA_DST, d)
        if oif is not None:
            body += _attr(RTA_OIF, struct.pack("=I", oif))
        if gateway:
            body += _attr(RTA_GATEWAY, _ip_bytes(gateway)[1])
        if priority is not None:
            body += _attr(RTA_PRIORITY, struct.pack("=I", priority))
        return body

    def route_add(self, dst: str, prefixlen: int, oif: int | None = None, gateway: str | None = None,
                  priority: int | None = None, rtype: int = RTN_UNICAST) -> None:
        """NetlinkError EEXIST (code 17) when that route is there already. `rtype`
        RTN_UNREACHABLE: a route that refuses its destination (no device, no gateway)."""
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     self._route_body(dst, prefixlen, oif, gateway, priority, True, rtype))

    def route_del(self, dst: str, prefixlen: int, oif: int | None = None, gateway: str | None = None,
                  priority: int | None = None, rtype: int = RTN_UNICAST) -> None:
        """`rtype` as route_add's, so a RouteSet spec serves both (a delete matches any type)."""
        self.request(RTM_DELROUTE, NLM_F_ACK, self._route_body(dst, prefixlen, oif, gateway, priority, False))

    def route_get(self, dst: str) -> tuple[str | None, int | None]:
        """(gateway, output interface index) the kernel would use for `dst` now."""
        family, d = _ip_bytes(dst)
        body = _RTMSG.pack(family, len(d) * 8, 0, 0, 0, 0, 0, 0, 0) + _attr(RTA_DST, d)
        for mtype, msg in self.request(RTM_GETROUTE, 0, body):
            if mtype == RTM_NEWROUTE and len(msg) >= _RTMSG.size:
                a = _attrs(msg, _RTMSG.size)
                return _ip_str(family, a.get(RTA_GATEWAY)), _u32(a.get(RTA_OIF))
        return None, None

    def default_routes(self, family: int) -> list[tuple[int, int | None, str | None, int]]:
        """(table, oif, gateway, priority) of each default route of the family, in every table."""
        return self.routes_to(family)

    def routes_to(self, family: int, dst: str | None = None,
                  prefixlen: int = 0) -> list[tuple[int, int | None, str | None, int]]:
        """(table, oif, gateway, priority) of each route of the family to exactly dst/prefixlen
        (None: the default routes), in every table."""
        want = _ip_bytes(dst)[1] if dst is not None else None
        out = []
        for (fam, dst_len, _s, _t, table, _p, _sc, _ty, _f), a in self._route_dump(family):
            if fam != family or a.get(RTA_DST) != want or (want is not None and dst_len != prefixlen):
                continue
            table = _u32(a.get(RTA_TABLE)) or table
            out.append((table, _u32(a.get(RTA_OIF)), _ip_str(fam, a.get(RTA_GATEWAY)), _u32(a.get(RTA_PRIORITY)) or 0))
        return out

    def _route_dump(self, family: int) -> Iterator[tuple[tuple[int, ...], dict[int, bytes]]]:
        """Each route of a dump of the family, as (its rtmsg header's fields, its attributes):
        the one reading of RTM_GETROUTE dumps that routes_to and link_routes filter."""
        for mtype, msg in self.request(RTM_GETROUTE, NLM_F_DUMP, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            if mtype == RTM_NEWROUTE and len(msg) >= _RTMSG.size:
                yield _RTMSG.unpack_from(msg), _attrs(msg, _RTMSG.size)

    def link_routes(self, family: int, oif: int) -> list[tuple[str, int]]:
        """(destination, prefix length) of each on-link route out of link `oif` in the main
        table: unicast, scope link, no gateway -- the routes the kernel finds a gateway by when
        a route via it out of that link is added (its addresses' own prefix routes among them)."""
        out = []
        for (fam, dst_len, _s, _t, table, _p, scope, rtype, _f), a in self._route_dump(family):
            if (fam != family or rtype != RTN_UNICAST or scope != RT_SCOPE_LINK or RTA_GATEWAY in a
                    or (_u32(a.get(RTA_TABLE)) or table) != RT_TABLE_MAIN or _u32(a.get(RTA_OIF)) != oif):
                continue
            dst = _ip_str(fam, a[RTA_DST]) if RTA_DST in a else ("::" if fam == socket.AF_INET6 else "0.0.0.0")
            if dst is not None and dst_len <= (128 if fam == socket.AF_INET6 else 32):
                out.append((dst, dst_len))
        return out


def whole_dump(dump, what: str) -> list:
    """A pyroute2 dump (`lambda: ipr.get_addr(index=i)`), read again while the kernel marks one of
    its messages NLM_F_DUMP_INTR, as Rtnl.request does (DUMP_TRIES, then DumpInterrupted). Why:
    pyroute2 0.9.7 has a NetlinkDumpInterrupted but never raises it -- it hands the inconsistent
    dump over as a whole one. It keeps the NLMSG_DONE to itself, so a dump marked on that message
    alone is not seen here (the entries read are then whole, only a change after them is missed)."""
    for _ in range(DUMP_TRIES):
        msgs = list(dump())
        if not any(m["header"]["flags"] & NLM_F_DUMP_INTR for m in msgs):
            return msgs
    raise DumpInterrupted(what)
