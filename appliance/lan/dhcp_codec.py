"""DHCP messages as the LAN's server sees them (RFC 2131/2132): decode a client's request, encode
our reply. Pure functions over bytes, no sockets, so every check is unit- and fuzz-tested.

Why not the WAN client's codec (boot/dhcp_client.py): that one decodes *replies* from a server we
chose to trust and builds a few fixed requests; the server side decodes whatever any LAN host
sends, so every field is checked here and every failure has a reason the server counts.

A request is refused (`BadRequest(reason)`, the reason is the drop counter's name) when it is
short, has no magic cookie, is not a BOOTREQUEST, is not Ethernet (htype 1, hlen 6), was relayed
(giaddr set: we serve only the directly attached LAN), or its options overrun the packet, repeat
without end, or carry no (or a non-client) message type. Repeated options are concatenated
(RFC 3396), which is bounded by the packet's own length.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Iterator

MAGIC = b"\x63\x82\x53\x63"
HEADER = 236                     # the BOOTP header before the magic cookie
MIN_LEN = HEADER + 4             # header + cookie (the options may be empty... but option 53 is needed)
MAX_LEN = 4096                   # more than any DHCP message a client sends (576..1500 in practice)
# Option instances per message: more is not a client, it is a flood. Stock clients send 5-25
# (long values split per RFC 3396 included); each costs ~1 us to read, and 256 let one request
# cost the pump 0.25-0.5 ms at up to 400 handled a second (lanatk38).
MAX_OPTIONS = 64

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
CLIENT_TYPES = frozenset((DISCOVER, REQUEST, DECLINE, RELEASE, INFORM))
TYPE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}

# Option codes we read or write.
O_PAD, O_MASK, O_ROUTER, O_DNS, O_HOSTNAME, O_DOMAIN, O_BROADCAST = 0, 1, 3, 6, 12, 15, 28
O_REQUESTED, O_LEASE, O_OVERLOAD, O_TYPE, O_SERVER_ID, O_PARAMS, O_MESSAGE, O_MAX_SIZE = 50, 51, 52, 53, 54, 55, 56, 57
O_T1, O_T2, O_CLIENT_ID, O_SEARCH, O_END = 58, 59, 61, 119, 255

IP_UDP_HEADERS = 28              # an IPv4 header without options + a UDP header
MIN_MESSAGE = 576 - IP_UDP_HEADERS   # what every client takes (RFC 2131 2: 236 + 312 octets of options)
BOOTP_MIN = 300                  # a BOOTP message's minimum (RFC 951): replies are padded to it

_HDR = struct.Struct("!BBBBIHH4s4s4s4s16s")
BROADCAST_FLAG = 0x8000


class BadRequest(Exception):
    """The message is not one a LAN client may send; str is the drop counter's reason."""


@dataclass(frozen=True)
class Request:
    """A client's message, checked (fields the server needs; addresses as IPv4Address)."""
    kind: int
    xid: int
    flags: int
    ciaddr: IPv4Address
    mac: bytes                                   # chaddr, 6 bytes
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def address_option(self, code: int) -> IPv4Address | None:
        v = self.options.get(code)
        return IPv4Address(v) if v is not None and len(v) == 4 else None

    @property
    def requested(self) -> IPv4Address | None:
        return self.address_option(O_REQUESTED)

    @property
    def server_id(self) -> IPv4Address | None:
        return self.address_option(O_SERVER_ID)

    def max_size(self, link_mtu: int = 1500) -> int:
        """The largest DHCP message we send this client: option 57 (at least 576, RFC 2132 9.10),
        at most the LAN NIC's MTU `link_mtu`, less the IP and UDP headers. Why less: the size is
        the whole IP datagram's (RFC 2131 2: the 576 octets every client takes are an IP datagram,
        312 of them options; dhcpcd and systemd-networkd send their MTU, ISC's and systemd's
        servers subtract the headers). Why the NIC's MTU: a reply over it goes out in IP
        fragments, which clients reading through a packet filter (dhclient, dhcpcd,
        systemd-networkd) drop: no lease. The NIC's MTU may be below 1500 (a VLAN, a tunnel
        underneath, a config) -- then below even the 576 a client takes -- or above it (jumbo
        frames, a client whose option 57 says so)."""
        v = self.options.get(O_MAX_SIZE)
        n = struct.unpack("!H", v)[0] if v is not None and len(v) == 2 else 576
        return min(max(576, n), link_mtu) - IP_UDP_HEADERS

    @property
    def params(self) -> bytes:
        return self.options.get(O_PARAMS, b"")


def decode_request_untrusted(data: bytes) -> Request:
    """A LAN client's DHCP message, or BadRequest(reason). Raises nothing else for any input."""
    n = len(data)
    if n < MIN_LEN:
        raise BadRequest("short")
    if n > MAX_LEN:
        raise BadRequest("oversized")
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yi, _si, giaddr, chaddr = _HDR.unpack_from(data)
    if op != 1:
        raise BadRequest("not a BOOTREQUEST")
    if htype != 1 or hlen != 6:
        raise BadRequest("not Ethernet")
    if data[HEADER:HEADER + 4] != MAGIC:
        raise BadRequest("bad magic")
    if giaddr != b"\0\0\0\0":
        raise BadRequest("relayed")
    mac = chaddr[:6]
    if mac[0] & 1 or mac == b"\0" * 6:
        raise BadRequest("bad MAC")       # a group or zero MAC is no client's hardware address
    opts = decode_options(data, MIN_LEN)
    t = opts.get(O_TYPE)
    if t is None or len(t) != 1:
        raise BadRequest("no message type")
    if t[0] not in CLIENT_TYPES:
        raise BadRequest("not a client message")
    return Request(t[0], xid, flags, IPv4Address(ciaddr), bytes(mac), opts)


# A run of PAD bytes, skipped in one step (in C): walked byte by byte, a 4 KiB request of PAD cost
# ~0.6 ms of the pump (0.16 us a byte), where a whole DISCOVER costs 10-40 us.
_PAD_RUN = re.compile(rb"\x00+")


def walk_options(data, i: int = 0) -> Iterator[tuple[int, int, int | None]]:
    """Every option of the DHCP options area `data` from offset `i` (RFC 2132 3.1), as
    (code, its offset, its value's length): PAD skipped, the walk ending at END or at the end of
    `data`. The one place that walks DHCP options -- a client's request here, a server's reply on
    a tap client (openvpn/dhcprouter.py) -- so each bound is kept once, whoever sent the bytes:
    one forward pass, never past len(data), no allocation but the tuples. The last option may be
    cut short: its length None when only its code byte is left, else a value running past the
    end (offset + 2 + length > len(data)); each caller decides what that means (a request is
    refused, a reply's is left as it came). Option overload (52): the file/sname fields
    (OVERLOAD_FILE, OVERLOAD_SNAME) are walked the same way, by the caller that follows it."""
    data = bytes(data)                  # (indexing a memoryview costs several times more)
    n = len(data)
    while i < n:
        code = data[i]
        if code == O_END:
            return
        if code == O_PAD:
            i = _PAD_RUN.match(data, i).end()     # type: ignore[union-attr]  (data[i] is a PAD)
            continue
        if i + 1 >= n:
            yield code, i, None
            return
        length = data[i + 1]
        yield code, i, length
        i += 2 + length


# The BOOTP fields an option overload (52) gives to options, as offsets in the message (RFC 2132 9.3).
OVERLOAD_FILE, OVERLOAD_SNAME = (108, 236), (44, 108)


def decode_options(data: bytes, i: int) -> dict[int, bytes]:
    """The options from offset `i` to END (or the end of the packet); repeated codes are joined
    (RFC 3396). Option overload (52) is not followed: file/sname stay unread (we need none of
    what a client could put there). BadRequest on an overrun or more than MAX_OPTIONS options."""
    parts: dict[int, list[bytes]] = {}
    n = len(data)
    count = 0
    for code, at, length in walk_options(data, i):
        if length is None or at + 2 + length > n:
            raise BadRequest("options overrun")
        count += 1
        if count > MAX_OPTIONS:
            raise BadRequest("too many options")
        parts.setdefault(code, []).append(data[at + 2:at + 2 + length])
    return {c: v[0] if len(v) == 1 else b"".join(v) for c, v in parts.items()}


# ------------------------------------------------------------------ replies
def option(code: int, value: bytes) -> bytes:
    """One option, split into several instances when longer than 255 bytes (RFC 3396)."""
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    return b"".join(bytes((code, len(value[i:i + 255]))) + value[i:i + 255] for i in range(0, len(value), 255))


_SNAME_FILE = bytes(64 + 128)


def encode_reply(req: Request, kind: int, yiaddr: IPv4Address | None, server: IPv4Address,
                 options: list[bytes], max_size: int = MIN_MESSAGE) -> bytes:
    """A BOOTREPLY to `req`: message type and server id first, then `options` (each already
    encoded by `option`, so the server encodes its fixed ones once) in order, each one left out
    when it would not fit the client's maximum message size (the optional ones come last: domain
    and search list), then END, padded to the 300 bytes of a BOOTP minimum when `max_size` allows."""
    ciaddr = req.ciaddr.packed if kind == ACK else bytes(4)
    hdr = _HDR.pack(2, 1, 6, 0, req.xid, 0, req.flags & BROADCAST_FLAG, ciaddr,
                    (yiaddr.packed if yiaddr is not None else bytes(4)), bytes(4), bytes(4), req.mac.ljust(16, b"\0"))
    out = bytearray(hdr)
    out += _SNAME_FILE
    out += MAGIC
    out += bytes((O_TYPE, 1, kind, O_SERVER_ID, 4))
    out += server.packed
    for o in options:
        if len(out) + len(o) + 1 <= max_size:
            out += o
    out.append(O_END)
    pad_to = min(BOOTP_MIN, max_size)        # a link MTU under 328 bytes: no padding past it
    if len(out) < pad_to:
        out += bytes(pad_to - len(out))
    return bytes(out)


def encode_domain_list(names: list[str]) -> bytes:
    """RFC 3397 option 119: the names in DNS wire form (RFC 1035 3.1), with compression pointers
    to suffixes already written (RFC 1035 4.1.4), as the RFC asks. Names that are not valid DNS
    names (a label empty or over 63 bytes, the name over 253) are left out: they come from the VPN
    server's push and must not break the option."""
    out = bytearray()
    seen: dict[tuple[str, ...], int] = {}
    for name in names:
        labels = tuple(name.strip().rstrip(".").lower().split("."))
        if not valid_domain(".".join(labels)):
            continue
        for k in range(len(labels)):
            suffix = labels[k:]
            if suffix in seen:
                out += struct.pack("!H", 0xC000 | seen[suffix])
                break
            if len(out) < 0x3FFF:
                seen[suffix] = len(out)
            out.append(len(labels[k]))
            out += labels[k].encode("ascii")
        else:
            out.append(0)
    return bytes(out)


def decode_domain_list(data: bytes) -> list[str]:
    """The inverse of encode_domain_list (for tests and our own checks); ValueError on bad input."""
    names: list[str] = []
    i = 0
    while i < len(data):
        labels: list[str] = []
        j, jumped, hops = i, False, 0
        while True:
            if j >= len(data):
                raise ValueError("truncated name")
            n = data[j]
            if n == 0:
                if not jumped:
                    i = j + 1
                break
            if n & 0xC0 == 0xC0:
                if j + 1 >= len(data):
                    raise ValueError("truncated pointer")
                if not jumped:
                    i = j + 2
                jumped = True
                hops += 1
                if hops > 64:
                    raise ValueError("pointer loop")
                j = ((n & 0x3F) << 8) | data[j + 1]
                continue
            if n > 63 or j + 1 + n > len(data):
                raise ValueError("bad label")
            labels.append(data[j + 1:j + 1 + n].decode("ascii"))
            j += 1 + n
        names.append(".".join(labels))
    return names


# Names a LAN host may not take through DHCP: proxy auto-discovery (WPAD) and ISATAP are looked up
# by name, and a host answering to them gets the others' web traffic or an IPv6 tunnel (Windows'
# DNS server refuses them by default, its "global query block list"; dnsmasq's manual says how
# to); localhost is every host's own.
RESERVED_HOSTNAMES = frozenset(("wpad", "isatap", "localhost"))


def host_label(value: bytes | None) -> str | None:
    """The host name a client gave in option 12, as a DNS label we may serve (lower case), or None:
    its first label (a client may send its FQDN; the domain part is not ours to serve), NULs at
    the end taken off (some clients send them), letters, digits and inner hyphens only, 1..63
    octets (RFC 952/1123), not a reserved name."""
    if not value:
        return None
    text = bytes(value).rstrip(b"\0").split(b".", 1)[0]
    if not 0 < len(text) <= 63 or text[:1] == b"-" or text[-1:] == b"-":
        return None
    if not all(c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-" for c in text):
        return None
    name = text.decode("ascii").lower()
    return None if name in RESERVED_HOSTNAMES else name


def valid_domain(name: str) -> bool:
    """A DNS name we may hand out: ASCII letters, digits, '-' and '_' in labels of 1..63, <= 253."""
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not 0 < len(label) <= 63 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return False
    return True
