"""`block-ipv6` (pushed by the server, as OpenVPN 2.6 allows): the client's IPv6 goes nowhere.

Why: a server that carries only IPv4 but redirects the default route asks its clients not to
send IPv6 outside the tunnel either (a leak of the traffic it means to carry). The client routes
all IPv6 into the TUN (gateway/tunnel.py) and answers every IPv6 packet read from it with an
ICMPv6 "no route to destination" written back into the TUN, so applications fail over to IPv4
at once instead of waiting; none is sealed for the server. Sans I/O: bytes in, bytes out.
"""
from __future__ import annotations

import struct

from ..tun.offload import checksum

IPV6_MIN_MTU = 1280
ICMPV6 = 58
DEST_UNREACHABLE, NO_ROUTE = 1, 0
# The error's source: a link-local address of no one (the TUN has no peer with an address).
SOURCE = bytes.fromhex("fe800000000000000000000000000001")


def is_ipv6(pkt) -> bool:
    return len(pkt) >= 1 and pkt[0] >> 4 == 6


def no_route_reply(pkt) -> bytes | None:
    """The ICMPv6 destination-unreachable (no route) answering one IPv6 packet read from the TUN,
    or None where RFC 4443 2.4 says none is sent: for an ICMPv6 error (or a packet that may be
    one: a short or truncated header), to a source that is unspecified or multicast, or for a
    packet sent to a multicast group (the host's own MLD reports and mDNS go into the TUN too)."""
    if len(pkt) < 40:
        return None
    src = bytes(pkt[8:24])
    if src == bytes(16) or src[0] == 0xFF or pkt[24] == 0xFF:
        return None
    if pkt[6] == ICMPV6 and (len(pkt) < 41 or pkt[40] < 128):
        return None
    quoted = bytes(pkt[:IPV6_MIN_MTU - 40 - 8])
    body = bytearray(struct.pack("!BBHI", DEST_UNREACHABLE, NO_ROUTE, 0, 0) + quoted)
    pseudo = SOURCE + src + struct.pack("!I3xB", len(body), ICMPV6)
    struct.pack_into("!H", body, 2, checksum(pseudo + bytes(body)))
    return struct.pack("!IHBB", 0x60000000, len(body), ICMPV6, 64) + SOURCE + src + bytes(body)
