"""The kernel's answers to the client's rtnetlink requests (appliance/tun/rtnl.py `Rtnl`, fuzz48):
ACKs, errors and dumps as `request` reads them, and the readers of their messages (`addrs`,
`addr_flush`, `route_get`, `default_routes`).

Why: netlink32/fuzz38's `netlink` target reads the kernel's event datagrams (route_watch,
dhcp_client's drain); the replies to our own requests -- the TUN's address, the push's routes,
the path to the server -- were read only in tests against the real kernel (coverage.py over
every target's seeds and 2,000 mutations each: 20 of rtnl.py's 62 branches). Only the kernel can
send to this socket (netlink checks the sender), but its reader must still be bounded and never
fail on what it did not expect: a short error message, an attribute cut by its length, a
message of another sequence number, a dump without its end, an address of the wrong size.

`rtnl-reply`: the first byte picks the request (addrs of a family or a link, addr_flush,
route_get IPv4/IPv6, default_routes IPv4/IPv6, route_add, addr_add), the rest is datagrams split
at SEP, each a flag byte (bit 0: every header's sequence number set to the request's, which the
fuzzer cannot know for addr_flush's nested requests) then its bytes; after the last the socket
times out (EAGAIN, as SO_RCVTIMEO does). Oracles: only NetlinkError (the kernel's error, a
non-zero errno) or the timeout escape; no read past the datagrams; every answer well-formed: an
address of its family's size as text that parses as that family's, a prefix length within it, an
interface index and metric of 32 bits, only the link asked for; route_get's gateway of the
destination's family; each request sent is one netlink message of the length its header says.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct

SEP = b"\xfe\xfd"
_HDR = struct.Struct("=IHHII")


class _Sock:
    def __init__(self, datagrams: list[bytes], patch: list[bool]) -> None:
        self.datagrams, self.patch, self.at, self.sent, self.seq = datagrams, patch, 0, [], 0

    def send(self, data: bytes) -> int:
        n, _t, _f, seq, _pid = _HDR.unpack_from(data)
        assert n == len(data), "a request whose header length is not its size"
        self.sent.append(data)
        self.seq = seq
        return len(data)

    def recv(self, _n: int) -> bytes:
        if self.at >= len(self.datagrams):
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")   # SO_RCVTIMEO
        d, p = self.datagrams[self.at], self.patch[self.at]
        self.at += 1
        if p:
            b, off = bytearray(d), 0
            while off + 16 <= len(b):
                n = struct.unpack_from("=I", b, off)[0]
                struct.pack_into("=I", b, off + 8, self.seq)
                if n < 16:
                    break
                off += (n + 3) & ~3
            d = bytes(b)
        return d

    def close(self) -> None:
        pass


def _ok_addr(fam: int, a: str | None) -> bool:
    if a is None:
        return True
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        return False
    return ip.version == (6 if fam == socket.AF_INET6 else 4)


def make_rtnl_reply():
    from appliance.tun import rtnl

    def one(data: bytes) -> None:
        if not data:
            return
        op = data[0] % 9
        parts = [p for p in data[1:].split(SEP)][:32]
        sock = _Sock([p[1:] for p in parts], [bool(p[:1] and p[0] & 1) for p in parts])
        nl = object.__new__(rtnl.Rtnl)
        nl.sock, nl.seq = sock, 0
        try:
            if op in (0, 1, 2):
                fam = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)[op]
                index = 7 if data[0] & 0x10 else None
                for f, a, plen, idx in nl.addrs(fam, index):
                    assert f in (socket.AF_INET, socket.AF_INET6) and (not fam or f == fam), f"family {f}"
                    assert _ok_addr(f, a) and a is not None, f"address {a!r} of family {f}"
                    assert 0 <= plen <= (128 if f == socket.AF_INET6 else 32), f"prefix length {plen} of family {f}"
                    assert 0 <= idx <= 0xFFFFFFFF
                    assert index is None or idx == index, "an address of another link"
            elif op == 3:
                nl.addr_flush(7)
                for req in sock.sent:              # each RTM_DELADDR (21) names an address of link 7
                    if _HDR.unpack_from(req)[1] == 21:  # (the dump itself may be asked again: NLM_F_DUMP_INTR)
                        assert struct.unpack_from("=I", req, 16 + 4)[0] == 7, "a flush removed another link's address"
            elif op in (4, 5):
                dst = "198.18.60.9" if op == 4 else "2001:db8::9"
                gw, oif = nl.route_get(dst)
                fam = socket.AF_INET if op == 4 else socket.AF_INET6
                assert _ok_addr(fam, gw), f"gateway {gw!r} for {dst}"
                assert oif is None or 0 <= oif <= 0xFFFFFFFF
            elif op in (6, 7):
                fam = socket.AF_INET if op == 6 else socket.AF_INET6
                for table, oif, gw, prio in nl.default_routes(fam):
                    assert 0 <= table <= 0xFFFFFFFF and (oif is None or 0 <= oif <= 0xFFFFFFFF)
                    assert _ok_addr(fam, gw), f"gateway {gw!r}"
                    assert 0 <= prio <= 0xFFFFFFFF
            else:
                nl.route_add("198.18.70.0", 24, oif=7, gateway="198.18.60.1", priority=5)
        except rtnl.NetlinkError as e:
            assert e.code != 0, "an error raised for errno 0 (an ACK)"
        except BlockingIOError:
            pass                               # the kernel's answer never came: the request's timeout
        assert sock.at <= len(sock.datagrams)
    return one


def _msg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def _attr(kind: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + b"\0" * (((n + 3) & ~3) - n)


def seeds() -> list[bytes]:
    NEWADDR, NEWROUTE, DONE, ERROR, MULTI = 20, 24, 3, 2, 2
    a4 = (struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 7) + _attr(1, socket.inet_aton("10.8.0.2"))
          + _attr(2, socket.inet_aton("10.8.0.2")))
    a6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 2) + _attr(1, socket.inet_pton(socket.AF_INET6, "fd00::2"))
    dump = _msg(NEWADDR, MULTI, 1, a4) + _msg(NEWADDR, MULTI, 1, a6) + _msg(DONE, MULTI, 1, b"\0\0\0\0")
    rt = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 0, 0, 1, 0)
    rget = _msg(NEWROUTE, 0, 1, rt + _attr(1, socket.inet_aton("198.18.60.9")) + _attr(5, socket.inet_aton("198.18.60.1"))
                + _attr(4, struct.pack("=I", 2)))
    d4 = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 1, 0)
    droutes = (_msg(NEWROUTE, MULTI, 1, d4 + _attr(5, socket.inet_aton("198.18.60.1")) + _attr(4, struct.pack("=I", 2))
                    + _attr(6, struct.pack("=I", 100)) + _attr(15, struct.pack("=I", 254)))
               + _msg(DONE, MULTI, 1, b"\0\0\0\0"))
    ack = _msg(ERROR, 0, 1, struct.pack("=i", 0) + b"\0" * 16)
    eexist = _msg(ERROR, 0, 1, struct.pack("=i", -17) + b"\0" * 16)
    s = [b"\x00" + SEP.join([b"\x00" + dump]), b"\x11" + SEP.join([b"\x00" + dump]),
         b"\x02" + SEP.join([b"\x00" + dump[:40], b"\x00" + dump[40:]]),
         b"\x03" + SEP.join([b"\x01" + dump, b"\x01" + ack, b"\x01" + eexist]),
         b"\x04" + SEP.join([b"\x00" + rget]), b"\x05" + SEP.join([b"\x00" + rget]),
         b"\x06" + SEP.join([b"\x00" + droutes]), b"\x07" + SEP.join([b"\x00" + droutes]),
         b"\x08" + SEP.join([b"\x00" + ack]), b"\x08" + SEP.join([b"\x00" + eexist]),
         b"\x08" + SEP.join([b"\x00" + _msg(ERROR, 0, 1, b"\xff")]),
         b"\x08" + SEP.join([b"\x00" + _msg(ERROR, 0, 2, struct.pack("=i", -1)), b"\x00" + ack]),
         b"\x00" + SEP.join([b"\x00" + _msg(NEWADDR, MULTI, 1, a4[:8] + struct.pack("=HH", 200, 1))]),
         b"\x04" + SEP.join([b"\x00" + _msg(NEWROUTE, 0, 1, rt + _attr(5, b"\x01\x02\x03") + _attr(4, b"\x01"))])]
    return s
