"""The unit every per-source limit of the server counts by (half-open handshakes, TCP connections
without a handshake, password checks): an IPv4 address, or an IPv6 address's /64.

Why a /64: a single host, or a single customer of a provider, is routinely given a whole /64
(SLAAC, privacy addresses), so counted per IPv6 address an attacker could spread over 2**64
"sources" and never meet a per-source limit. An IPv4 client of a dual-stack server (proto
udp6/tcp6) arrives as ::ffff:a.b.c.d: it is that IPv4 address, not the /64 every IPv4 client
would share (::ffff:0:0/64 lies in ::/64), or one of them could use up the share of all.
One function, so the limits cannot drift apart in what they call a source.
"""
from __future__ import annotations

import ipaddress


def source_group(ip: object) -> str:
    """The per-source key of client address `ip` (text as sockets report it, or an ipaddress
    object). Something that is no IP address is its own key (tests use names)."""
    text = str(ip)
    if ":" not in text:
        return text
    try:
        a = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text
    if a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(ipaddress.IPv6Network((a, 64), strict=False))
