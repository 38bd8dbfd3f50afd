"""The kernel's rtnetlink datagrams as the client reads them (fuzz38): the route keeper's hint
(appliance/tun/route_watch.py `RouteWatch.changed`, flap38) and the WAN relink thread's drain
(appliance/boot/dhcp_client.py `_drain`, wan38/flap38). Only the kernel (or a process with
CAP_NET_ADMIN) can send to these sockets, but a parser of kernel bytes must still be bounded:
a message whose length field is 0, shorter than its header, longer than the datagram, a run of
16-byte headers, ENOBUFS between datagrams.

`netlink`: the first byte chooses the limit (`changed(limit)`: 1..16) and whether the queue
ends (else it holds more than any wake-up reads); the rest is datagrams split at `\\xfe\\xfd`,
each a flag byte (bit 0: from a user port, not the kernel; bit 1: ENOBUFS instead of a
datagram) then its bytes. Both readers read the same queue from fake sockets. Oracles:
nothing escapes; at most `limit` (changed) and DRAIN_EVENTS (_drain) reads a call, nothing read
past an empty queue; the verdicts are those of a walk restated from netlink(7) (each message
NLMSG_ALIGN(len) on, a len under the header's 16 ends the datagram): `changed` says True exactly
when an ENOBUFS or a kernel datagram's RTM_NEWLINK/RTM_DELROUTE/RTM_NEWADDR/RTM_DELADDR was read, `has_pending` exactly
when `limit` reads found no end; `_drain` says (an ENOBUFS or a datagram that is a hint -- _relink_hint: anything but
address messages that are not removals from `lo` --, an ENOBUFS or an RTM_NEWLINK of `lo`
without IFF_UP whose ifinfomsg fits the datagram).
"""
from __future__ import annotations

import errno
import socket
import struct

SEP = b"\xfe\xfd"
_HDR = struct.Struct("=IHHII")
_IFI = struct.Struct("=BxHiII")
RTM_NEWLINK, RTM_DELROUTE = 16, 25
RTM_NEWADDR, RTM_DELADDR = 20, 21      # IPv4 address events are the route keeper's hints too (compat42)


class _Queue:
    """A netlink socket's receive queue: datagrams, ENOBUFS (None), then empty or endless."""

    def __init__(self, items: list, endless: bool) -> None:
        self.items, self.endless, self.at, self.reads = items, endless, 0, 0

    def _next(self):
        self.reads += 1
        if self.at >= len(self.items):
            if self.endless and self.items:
                item = self.items[self.at % len(self.items)]
                self.at += 1
            else:
                raise BlockingIOError(errno.EAGAIN, "empty")
        else:
            item = self.items[self.at]
            self.at += 1
        if item is None:
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return item

    def recvfrom(self, _n: int):
        pid, data = self._next()
        return data, (pid, 0)

    def recv(self, _n: int) -> bytes:
        return self._next()[1]


def _walk(data: bytes, need: int):
    """(type, offset) of each message netlink(7)'s walk reaches with `need` bytes from its start."""
    off = 0
    while off + need <= len(data):
        n, kind = _HDR.unpack_from(data, off)[:2]
        if n < _HDR.size:
            return
        yield kind, off
        off += (n + 3) & ~3


def _relink_hint(data: bytes, index: int) -> bool:
    """The relink thread's verdict on one datagram (net41): a hint unless every message walked is
    an address message whose 8-byte ifaddrmsg fits its message and that is not an RTM_DELADDR of
    `index`; a datagram with no message to walk is one."""
    walked = [(k, o) for k, o in _walk(data, _HDR.size)]
    if not walked:
        return True
    for kind, off in walked:
        end = min(off + _HDR.unpack_from(data, off)[0], len(data))
        if kind in (20, 21) and off + _HDR.size + 8 <= end:
            if kind == 21 and struct.unpack_from("=I", data, off + _HDR.size + 4)[0] == index:
                return True
            continue
        return True
    return False


def _parse(data: bytes) -> tuple[int, bool, list]:
    if not data:
        return 1, False, []
    limit = data[0] % 16 + 1
    items = []
    for chunk in data[1:].split(SEP)[:600]:
        flags = chunk[0] if chunk else 0
        items.append(None if flags & 2 else (12345 if flags & 1 else 0, chunk[1:]))
    return limit, bool(data[0] & 0x80), items


def make_netlink():
    from appliance.boot import dhcp_client
    from appliance.tun.route_watch import RouteWatch
    lo = socket.if_nametoindex("lo")

    def one(data: bytes) -> None:
        limit, endless, items = _parse(data)
        # RouteWatch.changed, called until the queue is empty (at most 8 calls: the pump's wake-ups).
        q = _Queue(items, endless)
        rw = RouteWatch.__new__(RouteWatch)
        rw.sock, rw.has_pending, rw.stats, rw.filtered = q, False, {"hints": 0, "overflows": 0}, False
        for _ in range(8):
            start, before = q.at, q.reads
            seen = rw.changed(limit)
            read = items[start:q.at] if q.at <= len(items) else [items[i % len(items)] for i in range(start, q.at)]
            assert q.reads - before <= limit, f"{q.reads - before} reads with limit {limit}"
            want = any(it is None or it[0] == 0 and any(k in (RTM_NEWLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_DELADDR)
                                                         for k, _o in _walk(it[1], _HDR.size)) for it in read)
            assert seen == want, f"changed() said {seen}, the datagrams read say {want}"
            assert rw.has_pending == (q.reads - before == limit and len(read) == limit), "has_pending"
            if not rw.has_pending:
                break
        # The relink thread's _drain, the same queue from the start.
        q = _Queue(items, endless)
        got, down = dhcp_client._drain(q, "lo")
        assert q.reads <= dhcp_client.DRAIN_EVENTS + 1, f"{q.reads} reads"
        read = items[:q.at] if q.at <= len(items) else [items[i % len(items)] for i in range(q.at)]
        want_got = any(it is None or _relink_hint(it[1], lo) for it in read)
        assert got == want_got, f"_drain said hint={got}, the datagrams read say {want_got}"
        want_down = any(it is None or any(k == RTM_NEWLINK and not _IFI.unpack_from(it[1], o + _HDR.size)[3] & 1
                                          and _IFI.unpack_from(it[1], o + _HDR.size)[2] == lo
                                          for k, o in _walk(it[1], _HDR.size + _IFI.size)) for it in read)
        assert down == want_down, f"_drain said down={down}, the datagrams read say {want_down}"
    return one


def _msg(kind: int, body: bytes, length: int | None = None) -> bytes:
    n = _HDR.size + len(body) if length is None else length
    return _HDR.pack(n, kind, 0, 0, 0) + body


def seeds() -> list[bytes]:
    lo = socket.if_nametoindex("lo")
    link_down = _msg(RTM_NEWLINK, _IFI.pack(0, 772, lo, 0, 1) + bytes(16))
    link_up = _msg(RTM_NEWLINK, _IFI.pack(0, 772, lo, 1, 1))
    delroute = _msg(RTM_DELROUTE, bytes(12))
    newroute = _msg(24, bytes(12))
    deladdr_lo = _msg(21, struct.pack("=BBBBI", 10, 64, 0, 0, lo) + bytes(20))
    newaddr_lo = _msg(20, struct.pack("=BBBBI", 10, 64, 0, 0, lo) + bytes(20))
    deladdr_other = _msg(21, struct.pack("=BBBBI", 2, 24, 0, 0, lo + 1000) + bytes(8))
    return [
        b"\x0f" + SEP.join([b"\x00" + newaddr_lo + deladdr_other, b"\x00" + deladdr_lo, b"\x00" + newaddr_lo[:20]]),
        b"\x0f" + SEP.join([b"\x00" + link_down, b"\x00" + delroute, b"\x00" + newroute]),
        b"\x00" + SEP.join([b"\x01" + link_down, b"\x02", b"\x00" + newroute + link_up]),
        b"\x83" + SEP.join([b"\x00" + newroute, b"\x00" + _msg(RTM_NEWLINK, b"", length=0)]),
        b"\x05" + SEP.join([b"\x00" + _msg(RTM_NEWLINK, b"", length=15) + link_down,
                            b"\x00" + _msg(24, b"", length=1000) + delroute,
                            b"\x00" + newroute * 40 + link_down]),
        b"\x8f" + SEP.join([b"\x02"] * 3 + [b"\x00" + link_up]),
        b"\x01" + b"\x00" + _msg(RTM_NEWLINK, _IFI.pack(0, 1, lo, 0, 0))[:20],
    ]
