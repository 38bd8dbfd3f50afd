"""Ethernet frames as a tap device (`dev tap`) reads and writes them: where the IP packet inside is.

Why a module of its own: a tap client's MSS clamping and block-ipv6 look at the IP packet inside a
frame, as OpenVPN 2.6 does (proto.c is_ipv_X): after the 14-byte Ethernet header, or after one
802.1Q tag (18 bytes); any other frame (ARP, a double tag, a runt) carries no IP packet for them
and passes as it is. Sans I/O and bounded: a fixed number of byte reads per frame, whatever the
peer sends.
"""
from __future__ import annotations

ETH_HLEN = 14
VLAN_HLEN = 18
ETH_P_IPV4, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
IPV4_MIN = 20


def ip_offset(frame, s_tag: bool = False) -> int | None:
    """The offset of the IPv4 or IPv6 packet inside `frame` (14, or 18 behind one 802.1Q tag --
    or, `s_tag`, one 802.1ad tag: what the kernel takes off before a packet socket sees the
    frame), or None when the frame carries none (another ethertype, a version nibble that does
    not match the ethertype, or too short for an IP header)."""
    n = len(frame)
    if n < ETH_HLEN + IPV4_MIN:
        return None
    proto, off = (frame[12] << 8) | frame[13], ETH_HLEN
    if proto == ETH_P_8021Q or (s_tag and proto == ETH_P_8021AD):
        if n < VLAN_HLEN + IPV4_MIN:
            return None
        proto, off = (frame[16] << 8) | frame[17], VLAN_HLEN
    version = frame[off] >> 4
    if (proto == ETH_P_IPV4 and version == 4) or (proto == ETH_P_IPV6 and version == 6):
        return off
    return None


def is_ipv6_frame(frame) -> bool:
    """Whether `frame` carries an IPv6 packet (block-ipv6 on a tap device drops such frames)."""
    off = ip_offset(frame)
    return off is not None and frame[off] >> 4 == 6
