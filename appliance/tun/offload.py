"""Pure functions for TUN offload: the virtio-net header, checksums, and TSO segment splitting.

Why: with IFF_VNET_HDR and TUNSETOFFLOAD the kernel hands us TCP "super-packets" of up to 64 KB in
one read (far fewer system calls), but the OpenVPN peer expects ordinary IP packets, so each is cut
into MSS-sized segments here with lengths, IDs, sequence numbers and checksums fixed up.

Checksums use the fact that a ones'-complement sum of 16-bit words is the big-endian integer value
of the bytes modulo 0xFFFF (since 2**16 ≡ 1 mod 0xFFFF): `int.from_bytes` does the work in C.
"""
from __future__ import annotations

import struct

VNET_HDR_LEN = 10
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80

_vnet = struct.Struct("<BBHHHH")
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)


def parse_vnet_hdr(b) -> tuple[int, int, int, int, int, int]:
    """-> (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)"""
    return _vnet.unpack_from(b, 0)


def build_vnet_hdr(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
                   csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return _vnet.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def ones_sum(data) -> int:
    """Ones'-complement sum (mod 0xFFFF form) of `data` as 16-bit big-endian words."""
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    return v % 0xFFFF


def checksum(data) -> int:
    s = ones_sum(data)
    if s:
        return 0xFFFF - s
    # Sum ≡ 0 mod 0xFFFF: all-zero data sums to +0 (checksum 0xFFFF), anything else to -0 (0x0000).
    return 0 if any(data) else 0xFFFF


def ipv4_header_checksum(hdr) -> int:
    return checksum(hdr)


def complete_checksum(pkt: bytearray | memoryview, csum_start: int, csum_offset: int) -> None:
    """CHECKSUM_PARTIAL: the field holds the pseudo-header sum; sum from csum_start and store."""
    s = ones_sum(pkt[csum_start:])
    c = 0xFFFF - s if s else 0
    if c == 0 and pkt[9 if (pkt[0] >> 4) == 4 else 6] == 17:
        c = 0xFFFF  # UDP transmits a zero checksum as 0xFFFF
    struct.pack_into("!H", pkt, csum_start + csum_offset, c)


def _pseudo_v4(pkt, proto: int, length: int) -> int:
    return (int.from_bytes(pkt[12:20], "big") + proto + length) % 0xFFFF


def _pseudo_v6(pkt, proto: int, length: int) -> int:
    return (int.from_bytes(pkt[8:40], "big") + proto + length) % 0xFFFF


def gso_split(pkt, gso_type: int, gso_size: int, csum_start: int) -> list[bytearray]:
    """Cut a TCP (v4/v6) or UDP-L4 super-packet into segments with valid headers and checksums."""
    v4 = (pkt[0] >> 4) == 4
    l4 = csum_start
    if gso_type & ~GSO_ECN in (GSO_TCPV4, GSO_TCPV6):
        thl = (pkt[l4 + 12] >> 4) * 4
        hlen = l4 + thl
        proto = 6
    else:
        thl = 8
        hlen = l4 + 8
        proto = 17
    payload_len = len(pkt) - hlen
    out = []
    if payload_len <= 0 or gso_size <= 0:
        return [bytearray(pkt)]
    header = bytes(pkt[:hlen])
    seq = int.from_bytes(pkt[l4 + 4:l4 + 8], "big") if proto == 6 else 0
    ip_id = int.from_bytes(pkt[4:6], "big") if v4 else 0
    flags = pkt[l4 + 13] if proto == 6 else 0
    nseg = (payload_len + gso_size - 1) // gso_size
    for i in range(nseg):
        off = hlen + i * gso_size
        chunk = pkt[off:off + gso_size]
        seg = bytearray(header)
        seg += chunk
        seglen = len(seg)
        l4len = seglen - l4
        if v4:
            struct.pack_into("!HH", seg, 2, seglen, (ip_id + i) & 0xFFFF)
            seg[10:12] = b"\0\0"
            struct.pack_into("!H", seg, 10, checksum(seg[:l4]))
            pseudo = _pseudo_v4(seg, proto, l4len)
        else:
            struct.pack_into("!H", seg, 4, seglen - 40)
            pseudo = _pseudo_v6(seg, proto, l4len)
        if proto == 6:
            struct.pack_into("!I", seg, l4 + 4, (seq + i * gso_size) & 0xFFFFFFFF)
            f = flags
            if i:
                f &= ~0x80          # CWR only on the first segment
            if i != nseg - 1:
                f &= ~0x09          # FIN and PSH only on the last
            seg[l4 + 13] = f
            seg[l4 + 16:l4 + 18] = b"\0\0"
            s = (pseudo + ones_sum(memoryview(seg)[l4:])) % 0xFFFF
            struct.pack_into("!H", seg, l4 + 16, 0xFFFF - s if s else 0)
        else:
            struct.pack_into("!H", seg, l4 + 4, l4len)
            seg[l4 + 6:l4 + 8] = b"\0\0"
            s = (pseudo + ones_sum(memoryview(seg)[l4:])) % 0xFFFF
            c = 0xFFFF - s if s else 0
            struct.pack_into("!H", seg, l4 + 6, c or 0xFFFF)
        out.append(seg)
    return out
