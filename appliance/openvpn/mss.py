"""TCP MSS clamping of inner packets (OpenVPN's `mssfix`, default `1492 mtu` in 2.6).

Why: the encrypted packet adds ~24-80 bytes; without clamping, full-size TCP segments make
encapsulated datagrams bigger than the path MTU, which then fragment (or, with UDP GSO, are
refused). Rewriting the MSS option of SYN packets in both directions keeps every encapsulated
packet within `mssfix` bytes, as OpenVPN does.

What `mssfix N` bounds, as OpenVPN 2.6 (mss.c, frame_calculate_mssfix): with the `mtu` flag (the
default `mssfix` is `1492 mtu`), N is the whole outer IP packet; without it (`mssfix 1400`), N is
the encapsulated UDP payload (or TCP segment), so the outer IP and UDP/TCP headers are not counted.
The OpenVPN packet's own overhead (opcode, peer-id, packet-id, tag/HMAC/IV, and the TCP stream's
2-byte length) is counted either way. The MSS is then N minus all that minus the inner IPv4+TCP
headers (40); IPv6 SYNs get 20 less again (their header is 20 bytes longer), in clamp_mss.
"""
from __future__ import annotations

IPV4_HEADER = 20
IPV6_HEADER = 40
UDP_HEADER = 8
TCP_HEADER = 20
TCP_LENGTH_PREFIX = 2          # OpenVPN over TCP frames each packet with a 2-byte length
INNER_HEADERS = IPV4_HEADER + TCP_HEADER


def encap_room(mssfix: int, tcp_transport: bool, mtu_flag: bool = True, ipv6_transport: bool = False) -> int:
    """Bytes `mssfix` leaves for one OpenVPN data packet (opcode to tag), after the outer headers
    (only with `mtu_flag`) and the TCP stream's 2-byte length."""
    framing = TCP_LENGTH_PREFIX if tcp_transport else 0
    outer = 0
    if mtu_flag:
        outer = (IPV6_HEADER if ipv6_transport else IPV4_HEADER) + (TCP_HEADER if tcp_transport else UDP_HEADER)
    return mssfix - outer - framing


def mss_for(mssfix: int, overhead: int, tcp_transport: bool, mtu_flag: bool = True,
            ipv6_transport: bool = False) -> int:
    """Largest inner (IPv4) TCP MSS so that encapsulated packets stay within `mssfix`.

    `overhead`: what the data channel adds per packet (ciphers.overhead; for CBC its worst-case
    padding, so the result may be up to 15 bytes below OpenVPN's, which rounds to the block:
    settings.tcp_mss with a cipher name is exact). `mtu_flag`: `mssfix N mtu` (N counts the outer
    IP and UDP/TCP headers) versus plain `mssfix N` (it does not). `ipv6_transport`: the outer
    packets are IPv6 (only matters with `mtu_flag`)."""
    return encap_room(mssfix, tcp_transport, mtu_flag, ipv6_transport) - overhead - INNER_HEADERS


def clamp_mss(pkt, max_mss: int) -> bool:
    """If `pkt` is a TCP SYN with MSS options above `max_mss` (IPv4; for IPv6, `max_mss` - 20 as
    its header is 20 bytes longer), lower each of them in place (fixing the TCP checksum
    incrementally, RFC 1624). Returns True when it changed the packet.

    Every MSS option, not only the first: a receiver takes the last one it reads (Linux's
    tcp_parse_options), so a SYN with a small MSS option and a big one behind it would keep the
    big one; OpenVPN 2.6's mss_fixup_dowork lowers each."""
    if len(pkt) < 40 or max_mss <= 0:
        return False                # (no MSS to give: settings.check_mss refuses such a config)
    v = pkt[0] >> 4
    if v == 4:
        if pkt[9] != 6 or pkt[6] & 0x1F or pkt[7]:   # not TCP, or a fragment (no TCP header here)
            return False
        t = (pkt[0] & 15) * 4
    elif v == 6:
        if pkt[6] != 6:                                # TCP right after the fixed header only
            return False
        t = 40
        max_mss -= IPV6_HEADER - IPV4_HEADER           # OpenVPN mss_fixup_ipv6: maxmss - 20
        if max_mss <= 0:
            return False
    else:
        return False
    if len(pkt) < t + 20 or not pkt[t + 13] & 0x02:   # not a SYN
        return False
    doff = (pkt[t + 12] >> 4) * 4
    i, end = t + 20, min(t + doff, len(pkt))
    changed = False
    while i < end:
        kind = pkt[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        ln = pkt[i + 1]
        if ln < 2:
            break
        if kind == 2 and ln == 4 and i + 4 <= end:
            old = (pkt[i + 2] << 8) | pkt[i + 3]
            if old <= max_mss:
                i += ln
                continue
            pkt[i + 2], pkt[i + 3] = max_mss >> 8, max_mss & 0xFF
            c = (pkt[t + 16] << 8) | pkt[t + 17]
            m_old, m_new = old, max_mss
            if (i + 2 - t) & 1:
                # The field straddles two 16-bit words of the checksum: its bytes count swapped.
                m_old = ((old & 0xFF) << 8) | (old >> 8)
                m_new = ((max_mss & 0xFF) << 8) | (max_mss >> 8)
            # RFC 1624: HC' = ~(~HC + ~m + m')
            s = (~c & 0xFFFF) + (~m_old & 0xFFFF) + m_new
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            c = ~s & 0xFFFF
            pkt[t + 16], pkt[t + 17] = c >> 8, c & 0xFF
            changed = True
        i += ln
    return changed
