"""Router solicitations and advertisements (RFC 4861 section 4.1/4.2, RDNSS from RFC 8106), sans I/O.

Why our own few dozen lines rather than scapy or radvd: the appliance is one process in a small
image (scapy is a test dependency, radvd a daemon with its own config and lifecycle), and the two
messages we need are fixed layouts. Building is plain struct packing; parsing takes bytes from any
LAN host, so it is written for hostile input: every length is checked against what is left, an
option of length 0 ends the parse (RFC 4861 4.6: "nodes MUST silently discard"), and nothing here
raises for any input -- a parser returns None for what it does not accept.

The ICMPv6 checksum is not computed here: the kernel fills it in for raw ICMPv6 sockets (and
verifies it on receive), so these bytes start at the ICMPv6 type field.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

RS_TYPE, RA_TYPE = 133, 134
OPT_SLLA, OPT_TLLA, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 2, 3, 5, 25
PREFIX_ON_LINK, PREFIX_AUTONOMOUS = 0x80, 0x40
MAX_OPTIONS = 64            # far more than any real RS/RA carries; bounds the work per packet
MAX_RDNSS = 8               # addresses per RDNSS option we build (RFC 8106 allows up to 127)
INFINITY = 0xFFFFFFFF


@dataclass(frozen=True)
class Prefix:
    """A prefix information option: the LAN prefix hosts build addresses in (SLAAC)."""
    network: ipaddress.IPv6Network
    valid: int
    preferred: int
    on_link: bool = True
    autonomous: bool = True


@dataclass(frozen=True)
class RouterAdvert:
    """What an RA says. `router_lifetime` 0 = "not a default router" (sent when the tunnel goes down)."""
    router_lifetime: int
    prefixes: tuple[Prefix, ...] = ()
    rdnss: tuple[ipaddress.IPv6Address, ...] = ()
    rdnss_lifetime: int = 0
    mtu: int | None = None
    source_mac: bytes | None = None
    cur_hop_limit: int = 64
    managed: bool = False
    other: bool = False
    reachable_time: int = 0
    retrans_timer: int = 0


@dataclass(frozen=True)
class RouterSolicit:
    source_mac: bytes | None = None


@dataclass
class _Options:
    slla: bytes | None = None
    prefixes: list[Prefix] = field(default_factory=list)
    rdnss: list[ipaddress.IPv6Address] = field(default_factory=list)
    rdnss_lifetime: int = 0
    mtu: int | None = None


def _u32(v: int) -> int:
    if not 0 <= v <= INFINITY:
        raise ValueError(f"lifetime {v} out of range")
    return v


def build_ra(ra: RouterAdvert) -> bytes:
    """The RA as ICMPv6 bytes (checksum 0: the kernel fills it in). ValueError for values that do
    not fit the fields (our own bug, never a peer's)."""
    if not 0 <= ra.router_lifetime <= 0xFFFF:
        raise ValueError(f"router lifetime {ra.router_lifetime} out of range")
    flags = (0x80 if ra.managed else 0) | (0x40 if ra.other else 0)
    out = [struct.pack("!BBHBBHII", RA_TYPE, 0, 0, ra.cur_hop_limit, flags, ra.router_lifetime,
                       _u32(ra.reachable_time), _u32(ra.retrans_timer))]
    if ra.source_mac is not None:
        if len(ra.source_mac) != 6:
            raise ValueError("source link-layer address must be 6 bytes")
        out.append(struct.pack("!BB", OPT_SLLA, 1) + ra.source_mac)
    if ra.mtu is not None:
        out.append(struct.pack("!BBHI", OPT_MTU, 1, 0, _u32(ra.mtu)))
    for p in ra.prefixes:
        pflags = (PREFIX_ON_LINK if p.on_link else 0) | (PREFIX_AUTONOMOUS if p.autonomous else 0)
        out.append(struct.pack("!BBBBIII", OPT_PREFIX, 4, p.network.prefixlen, pflags, _u32(p.valid),
                               _u32(p.preferred), 0) + p.network.network_address.packed)
    if ra.rdnss:
        if len(ra.rdnss) > MAX_RDNSS:
            raise ValueError(f"at most {MAX_RDNSS} RDNSS addresses")
        out.append(struct.pack("!BBHI", OPT_RDNSS, 1 + 2 * len(ra.rdnss), 0, _u32(ra.rdnss_lifetime))
                   + b"".join(a.packed for a in ra.rdnss))
    return b"".join(out)


def build_rs(source_mac: bytes | None = None) -> bytes:
    """A router solicitation (for tests and the lab; the appliance only answers them)."""
    body = struct.pack("!BBHI", RS_TYPE, 0, 0, 0)
    if source_mac is not None:
        body += struct.pack("!BB", OPT_SLLA, 1) + source_mac
    return body


def _parse_options(data: bytes, off: int) -> _Options | None:
    """RFC 4861 4.6 options from `off` to the end; None if any is malformed (length 0, runs past
    the end, a known option with the wrong length) or there are more than MAX_OPTIONS."""
    o = _Options()
    n = 0
    end = len(data)
    while off < end:
        n += 1
        if n > MAX_OPTIONS or end - off < 2:
            return None
        typ, ln = data[off], data[off + 1]
        size = ln * 8
        if ln == 0 or off + size > end:
            return None
        body = data[off + 2:off + size]
        if typ in (OPT_SLLA, OPT_TLLA):
            if typ == OPT_SLLA:
                o.slla = bytes(body[:6])
        elif typ == OPT_PREFIX:
            if ln != 4:
                return None
            plen, pflags, valid, preferred = struct.unpack_from("!BBII", body, 0)
            if plen > 128:
                return None
            raw = bytes(body[14:30])
            try:
                net = ipaddress.IPv6Network((raw, plen), strict=False)
            except ValueError:
                return None
            o.prefixes.append(Prefix(net, valid, preferred, bool(pflags & PREFIX_ON_LINK),
                                     bool(pflags & PREFIX_AUTONOMOUS)))
        elif typ == OPT_MTU:
            if ln != 1:
                return None
            o.mtu = struct.unpack_from("!I", body, 2)[0]
        elif typ == OPT_RDNSS:
            if ln < 3 or ln % 2 == 0:
                return None
            o.rdnss_lifetime = struct.unpack_from("!I", body, 2)[0]
            o.rdnss.extend(ipaddress.IPv6Address(bytes(body[6 + 16 * i:22 + 16 * i])) for i in range((ln - 1) // 2))
        off += size     # unknown options are skipped (RFC 4861 4.6)
    return o


def parse_rs_untrusted(data: bytes, hop_limit: int | None = 255,
                       source: ipaddress.IPv6Address | None = None) -> RouterSolicit | None:
    """A router solicitation from a LAN host, validated as RFC 4861 6.1.1 asks; None otherwise.

    hop_limit: the IPv6 hop limit it arrived with (must be 255: it was not forwarded); source:
    its IPv6 source (from :: it must carry no source link-layer address option). Never raises."""
    try:
        if len(data) < 8 or data[0] != RS_TYPE or data[1] != 0 or hop_limit != 255:
            return None
        o = _parse_options(data, 8)
        if o is None or (source is not None and source.is_unspecified and o.slla is not None):
            return None
        return RouterSolicit(o.slla)
    except Exception:  # noqa: BLE001 - the contract is "never raises"; belt and braces for the above
        return None


def parse_ra_untrusted(data: bytes) -> RouterAdvert | None:
    """A router advertisement (the lab's WAN host and the tests read ours back); None if malformed.
    Never raises."""
    try:
        if len(data) < 16 or data[0] != RA_TYPE or data[1] != 0:
            return None
        _t, _c, _ck, hop, flags, life, reach, retrans = struct.unpack_from("!BBHBBHII", data, 0)
        o = _parse_options(data, 16)
        if o is None:
            return None
        return RouterAdvert(life, tuple(o.prefixes), tuple(o.rdnss), o.rdnss_lifetime, o.mtu, o.slla, hop,
                            bool(flags & 0x80), bool(flags & 0x40), reach, retrans)
    except Exception:  # noqa: BLE001 - see parse_rs_untrusted
        return None
