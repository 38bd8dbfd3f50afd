"""Pure functions for TUN offload: the virtio-net header, checksums, and TSO segment splitting.

Why: with IFF_VNET_HDR and TUNSETOFFLOAD the kernel hands us TCP "super-packets" of up to 64 KB in
one read (far fewer system calls), but the OpenVPN peer expects ordinary IP packets, so each is cut
into MSS-sized segments here with lengths, IDs, sequence numbers and checksums fixed up.

Checksums use the fact that a ones'-complement sum of 16-bit words is the big-endian integer value
of the bytes modulo 0xFFFF (since 2**16 ≡ 1 mod 0xFFFF): `int.from_bytes` does the work in C.
"""
from __future__ import annotations

import struct

from .. import native

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


def py_complete_checksum(pkt: bytearray | memoryview, csum_start: int, csum_offset: int) -> None:
    """CHECKSUM_PARTIAL: the field holds the pseudo-header sum; sum from csum_start and store.

    A field not wholly inside the packet raises ValueError (before anything is written); the
    kernel never sends one, and a negative offset would otherwise count from the end."""
    at = csum_start + csum_offset
    if csum_start < 0 or csum_offset < 0 or at + 2 > len(pkt):
        raise ValueError("checksum field beyond the packet")
    s = ones_sum(pkt[csum_start:])
    c = 0xFFFF - s if s else 0
    proto_at = 9 if (pkt[0] >> 4) == 4 else 6
    if c == 0 and proto_at < len(pkt) and pkt[proto_at] == 17:
        c = 0xFFFF  # UDP transmits a zero checksum as 0xFFFF
    struct.pack_into("!H", pkt, at, c)


def _pseudo_v4(pkt, proto: int, length: int) -> int:
    return (int.from_bytes(pkt[12:20], "big") + proto + length) % 0xFFFF


def _pseudo_v6(pkt, proto: int, length: int) -> int:
    return (int.from_bytes(pkt[8:40], "big") + proto + length) % 0xFFFF


def py_gso_split(pkt, gso_type: int, gso_size: int, csum_start: int) -> list[bytearray]:
    """Cut a TCP (v4/v6) or UDP-L4 super-packet into segments with valid headers and checksums.

    The kernel's super-packets always pass the checks below; anything else (a caller's bytes, a
    kernel bug) raises ValueError instead of being cut at offsets that are not there (the first
    version read past short packets, wrote TCP fields into IP headers, or grew segments):
    - gso_type (ECN bit aside) TCPV4 for an IPv4 packet, TCPV6 for IPv6, UDP_L4 for either;
    - csum_start where the IP header ends: IPv4 its IHL (at least 20), IPv6 at least 40;
    - the TCP header (data offset at least 20) or UDP header (8) wholly inside the packet;
    - gso_size > 0 when there is payload, and each segment's length fits its 16-bit field.
    With no payload after the headers there is nothing to cut: the packet comes back, copied.
    """
    n = len(pkt)
    kind = gso_type & ~GSO_ECN
    ver = pkt[0] >> 4 if n else 0
    if kind == GSO_TCPV4 and ver == 4 or kind == GSO_TCPV6 and ver == 6:
        proto = 6
    elif kind == GSO_UDP_L4 and ver in (4, 6):
        proto = 17
    else:
        raise ValueError("not a TCP or UDP super-packet of its IP version")
    v4 = ver == 4
    l4 = csum_start
    if (l4 < 20 or l4 != (pkt[0] & 15) * 4) if v4 else l4 < 40:
        raise ValueError("transport header not where the IP header ends")
    thl = 8
    if proto == 6:
        if l4 > n - 20:
            raise ValueError("transport header beyond the packet")
        thl = (pkt[l4 + 12] >> 4) * 4
    if thl < (20 if proto == 6 else 8) or l4 > n - thl:
        raise ValueError("transport header beyond the packet")
    hlen = l4 + thl
    payload_len = n - hlen
    if payload_len == 0:
        return [bytearray(pkt)]
    if gso_size <= 0:
        raise ValueError("no segment size")
    if hlen + min(gso_size, payload_len) - (0 if v4 else 40) > 0xFFFF:
        raise ValueError("segment longer than its length field")
    out = []
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


# The compiled twins (appliance/native/gso.c: same bytes, same errors) when built, chosen once here.
_gso = native.load("_gso")
gso_split = _gso.gso_split if _gso else py_gso_split
complete_checksum = _gso.complete_checksum if _gso else py_complete_checksum
# Whether cutting super-packets here is cheaper than having the kernel cut them (TunDevice's tso).
SPLIT_COMPILED = _gso is not None


# ------------------------------------------------------------------ GRO on the write side
# Why: every packet written to a TUN runs the kernel's whole IP/TCP receive path inside our
# write(2); py-spy showed that as ~45% of the server's CPU in a bulk transfer. Consecutive TCP
# segments of one flow are therefore merged into one super-packet with a GSO virtio header, so
# the kernel handles up to 64 KB at once (the write-side counterpart of TSO on reads, as
# wireguard-go does). Each segment's TCP checksum is verified before it joins a super-packet:
# the merged packet is marked CHECKSUM_PARTIAL, which the kernel trusts, so a segment corrupted
# anywhere before the VPN peer (TCP checksums are end to end) would otherwise slip through. A
# segment that fails goes out on its own, for the kernel to drop and count as it always would.
_TCP_ACK, _TCP_PSH = 0x10, 0x08
GRO_MAX = 65535


#
# Local delivery ("merge before checksumming"): the ones'-complement sum costs ~2.8 us per 1400-byte
# segment in Python, the kernel's a fraction of that. For a flow to one of this host's own IPv4
# addresses (GroBatch.local), segments are merged WITHOUT being summed, and the super-packet goes in
# with a full TCP checksum worked out from the segments' own checksum fields and headers alone
# (`hsum`: a valid segment's payload sums to minus its pseudo-header + header sum, RFC 1071's
# algebra) and no NEEDS_CSUM: the kernel's TCP receive then verifies the whole super-packet, so a
# segment corrupted before the VPN peer makes it fail and be dropped (TCP resends), as it would on
# its own. Only for local delivery: a forwarded GSO packet without CHECKSUM_PARTIAL is one the
# kernel would segment with fresh checksums (laundering a corrupted segment) and warn about. And
# "addressed to us" is not "delivered here" once NAT is involved (a masqueraded LAN host's replies
# carry our address, then are forwarded): so a segment takes this path only when `owner` (if set)
# says a socket of this host owns its exact flow (tun/flow_owner.py: a sock_diag lookup, cached).
_TCP_PROTO_WORD = 6


class _GroItem:
    __slots__ = ("buf", "count", "next_seq", "gso_size", "iphl", "thl", "closed", "psh", "hsum")

    def __init__(self, buf: bytearray, next_seq: int, gso_size: int, iphl: int, thl: int, psh: bool,
                 hsum: int | None = None) -> None:
        self.buf = buf
        self.count = 1
        self.next_seq = next_seq
        self.gso_size = gso_size
        self.iphl, self.thl = iphl, thl             # iphl 20: IPv4, 40: IPv6
        self.closed = psh                     # nothing may follow a PSH segment
        self.psh = psh
        self.hsum = hsum                      # local delivery: Σ segments' pseudo+header sums; else None


# IPv4 (no options) + TCP: ver/ihl, TOS, total length, (id), DF byte, fragment low byte, TTL,
# protocol, (checksum), addresses + ports, seq, ack, data offset, flags, window.
_v4_tcp = struct.Struct("!BBHxxBBBBxx12sI4sBB2s").unpack_from


def _gro_candidate_v6(p):
    """-> (flow key, seq, payload_len, thl, psh) for a plain IPv6 TCP data segment, else None.
    (IPv4, the common case, is read inline in GroBatch.add.)

    The key holds everything that must be equal for segments to merge: addresses, ports, ack,
    window, TCP options, and the IP fields a merge would lose (traffic class/ECN, hop limit,
    flow label).
    """
    n = len(p)
    if n < 60 or p[0] >> 4 != 6 or p[6] != 6 or (p[4] << 8 | p[5]) != n - 40:
        return None                           # not IPv6, extension headers, or not TCP
    thl = (p[52] >> 4) * 4
    flags = p[53]
    if thl < 20 or (flags & ~_TCP_PSH) != _TCP_ACK or n - 40 - thl <= 0 or p[52] & 0x0F:
        return None                           # SYN/FIN/RST/URG/ECE/CWR, no data, or reserved bits
    h = bytes(p[:40 + thl])                   # one copy of the headers, sliced below
    # version/class/flow label, hop limit + addresses, ports, ack, window, options
    key = h[0:4] + h[7:44] + h[48:52] + h[54:56] + h[60:]
    return key, int.from_bytes(h[44:48], "big"), n - 40 - thl, thl, bool(flags & _TCP_PSH)


class PyGroBatch:
    """Packets queued for one burst of TUN writes, TCP segments of a flow merged as they come.

    The reference for appliance/native/gro.c's GroBatch, which does the same byte for byte
    (tests/unit/test_gro_differential.py); `GroBatch` below is whichever of the two is in use.

    `add` copies its argument (decrypted packets are views of a buffer reused by the next one),
    appending a segment's payload straight onto its flow's super-packet when it continues it in
    sequence, else starting a new entry. Order within a flow is kept. `take` returns the burst.
    """

    __slots__ = ("items", "flows", "bad_checksums", "local", "owner")

    def __init__(self, local: frozenset = frozenset(), owner=None) -> None:
        self.items: list = []
        self.flows: dict = {}
        self.bad_checksums = 0
        self.local = local                   # packed IPv4 addresses of this host (see above)
        # owner(addrs_ports) -> bool: a local socket owns the flow (None: the address alone decides)
        self.owner = owner

    def __len__(self) -> int:
        return len(self.items)

    def add(self, p) -> None:
        n = len(p)
        if n >= 40 and p[0] == 0x45:
            # IPv4 without options, the common case, in one struct call (reading it byte by byte,
            # or through a helper returning a tuple, cost measurably more per packet).
            _b0, tos, tot, df, frag, ttl, proto, ap, seq, ack, doff, flags, win = _v4_tcp(p)
            thl = (doff >> 4) * 4
            plen = n - 20 - thl
            if (proto != 6 or df & 0xBF or frag or tot != n or thl < 20 or plen <= 0 or doff & 0x0F
                    or (flags & ~_TCP_PSH) != _TCP_ACK):
                # not TCP, a fragment, a bad length; SYN/FIN/RST/URG/ECE/CWR, no data, reserved bits
                self.items.append(bytes(p))
                return
            # TOS, DF, TTL, addresses + ports, ack, window, options
            key = (tos, df, ttl, ap, ack, win, bytes(p[40:20 + thl]))
            iphl, psh = 20, bool(flags & _TCP_PSH)
        else:
            c = _gro_candidate_v6(p)
            if c is None:
                self.items.append(bytes(p))
                return
            key, seq, plen, thl, psh = c
            iphl, ap = 40, None
        l4len = n - iphl
        it = self.flows.get(key)
        if it is not None:
            # The flow's first segment in this batch decided for the batch: asked once, not
            # per segment (the owner lookup costs a call, a clock read and a dict probe).
            local = it.hsum is not None
        else:
            local = (ap is not None and bool(self.local) and bytes(p[16:20]) in self.local
                     and (self.owner is None or self.owner(ap)))
        if local:
            # Delivered here: addresses + TCP header (checksum field included) + protocol + TCP length
            hsum = int.from_bytes(p[12:20 + thl], "big") + _TCP_PROTO_WORD + l4len
        else:
            hsum = None
            pseudo = _pseudo_v4(p, 6, l4len) if iphl == 20 else _pseudo_v6(p, 6, l4len)
            if (pseudo + ones_sum(memoryview(p)[iphl:])) % 0xFFFF:
                self.bad_checksums += 1
                self.items.append(bytes(p))
                return
        if (it is not None and not it.closed and seq == it.next_seq and plen <= it.gso_size
                and len(it.buf) + plen <= GRO_MAX and (hsum is None or not plen & 1)):
            it.buf += p[iphl + thl:]
            it.count += 1
            it.next_seq = (seq + plen) & 0xFFFFFFFF
            if hsum is not None:
                it.hsum += hsum
            if plen < it.gso_size or psh:
                it.closed = True
                it.psh = it.psh or psh
            return
        if hsum is not None and plen & 1:
            self.items.append(bytes(p))       # odd payloads shift the word alignment: no merging,
            return                            # on its own, the kernel verifies it
        it = _GroItem(bytearray(p), (seq + plen) & 0xFFFFFFFF, plen, iphl, thl, psh, hsum)
        self.flows[key] = it
        self.items.append(it)

    def take(self) -> list[tuple[bytes, object, int]]:
        """-> [(virtio header, packet, segments in it)] and an empty batch."""
        out = []
        for x in self.items:
            if type(x) is not _GroItem:
                out.append((ZERO_VNET_HDR, x, 1))
            elif x.count == 1:
                out.append((ZERO_VNET_HDR, x.buf, 1))
            else:
                out.append((_finish(x), x.buf, x.count))
        self.items = []
        self.flows = {}
        return out


# The compiled twin when built (appliance/native/__init__.py: the switch), else the class above.
_native_gro = native.load("_gro")
GroBatch = _native_gro.GroBatch if _native_gro is not None else PyGroBatch


def gro_coalesce(packets) -> list[tuple[bytes, object, int]]:
    """Merge what can be merged in a list of packets (see GroBatch)."""
    b = GroBatch()
    for p in packets:
        b.add(p)
    return b.take()


def _finish(it: _GroItem) -> bytes:
    """Fix lengths and checksums of a merged super-packet; -> its virtio header."""
    buf, iphl = it.buf, it.iphl
    n = len(buf)
    l4len = n - iphl
    v4 = iphl == 20
    if v4:
        struct.pack_into("!H", buf, 2, n)
        buf[10:12] = b"\0\0"
        struct.pack_into("!H", buf, 10, checksum(memoryview(buf)[:20]))
        pseudo = _pseudo_v4(buf, 6, l4len)
    else:
        struct.pack_into("!H", buf, 4, l4len)
        pseudo = _pseudo_v6(buf, 6, l4len)
    if it.psh:
        buf[iphl + 13] |= _TCP_PSH
    if it.hsum is not None:
        # Full checksum from the segments' sums (their payloads were never summed here); no
        # NEEDS_CSUM, so the kernel verifies the super-packet (see the note above _GroItem).
        t = iphl + it.thl
        buf[iphl + 16:iphl + 18] = b"\0\0"
        merged = int.from_bytes(buf[12:t], "big") + _TCP_PROTO_WORD + l4len
        c = (it.hsum - merged) % 0xFFFF
        struct.pack_into("!H", buf, iphl + 16, c or 0xFFFF)
        return build_vnet_hdr(0, GSO_TCPV4, t, it.gso_size, 0, 0)
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, the kernel does the rest.
    struct.pack_into("!H", buf, iphl + 16, pseudo)
    return build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4 if v4 else GSO_TCPV6, iphl + it.thl, it.gso_size, iphl, 16)
