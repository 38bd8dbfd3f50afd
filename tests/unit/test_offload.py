"""TUN offload helpers checked against scapy: checksums, CHECKSUM_PARTIAL completion, and TSO/USO
super-packet splitting into segments a real peer accepts -- each for the Python reference and the
compiled twin (tests/unit/gso_impls.py); test_native_gso.py checks the two agree on any input."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from appliance.tun import offload
from appliance.tun.offload import (GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, build_vnet_hdr, checksum,
                                   ones_sum, parse_vnet_hdr)

from .gso_impls import IMPLS, impl

SRC4, DST4 = "198.18.10.1", "198.18.10.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def ref_checksum(data: bytes) -> int:
    """RFC 1071, the textbook way: 16-bit big-endian words, end-around carry, complement."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ------------------------------------------------------------------ checksums
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000).filter(any))
def test_checksum_matches_rfc1071(data):
    assert checksum(data) == ref_checksum(data)
    assert checksum(bytearray(data)) == checksum(memoryview(data)) == checksum(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=1501))
def test_checksum_verifies_when_inserted(data):
    """A receiver sums data plus the checksum word and expects ones'-complement zero."""
    if len(data) % 2:
        data += b"\0"
    c = checksum(data)
    assert ones_sum(data + struct.pack("!H", c)) == 0


def test_checksum_of_all_zero_words_is_ffff():
    n = 20
    """RFC 1071 gives 0xFFFF here (the sum is +0, its complement -0); 0x0000 would not verify."""
    assert checksum(bytes(n)) == ref_checksum(bytes(n)) == 0xFFFF


def test_vnet_hdr_roundtrip():
    h = build_vnet_hdr(offload.F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    assert len(h) == offload.VNET_HDR_LEN
    assert parse_vnet_hdr(h) == (1, GSO_TCPV4, 54, 1448, 34, 16)
    assert parse_vnet_hdr(offload.ZERO_VNET_HDR + b"rest") == (0, 0, 0, 0, 0, 0)
    # little-endian fields, as virtio-net on x86 defines them
    assert h == bytes([1, 1, 54, 0, 0xA8, 0x05, 34, 0, 16, 0])


# ------------------------------------------------------------------ CHECKSUM_PARTIAL
def _partial(pkt: bytes, l4: int, off: int, proto: int, v6: bool) -> bytearray:
    """What the kernel hands over: the L4 checksum field holds the folded pseudo-header sum."""
    b = bytearray(pkt)
    l4len = len(b) - l4
    addrs = b[8:40] if v6 else b[12:20]
    pseudo = ones_sum(bytes(addrs) + struct.pack("!HH", proto, l4len))
    struct.pack_into("!H", b, l4 + off, pseudo or 0xFFFF)
    return b


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("size", [0, 1, 2, 777, 1400])
def test_complete_checksum_tcp(which, v6, size):
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4)
    ref = bytes(ip / TCP(sport=40000, dport=5201, seq=12345, ack=999, flags="PA") / Raw((bytes(range(256)) * 6)[:size]))
    l4 = 40 if v6 else 20
    b = _partial(ref, l4, 16, 6, v6)
    impl(which).complete_checksum(b, l4, 16)
    assert bytes(b) == ref


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("size", [0, 3, 512, 1472])
def test_complete_checksum_udp(which, v6, size):
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4)
    ref = bytes(ip / UDP(sport=1194, dport=1194) / Raw(b"\xa5" * size))
    l4 = 40 if v6 else 20
    b = _partial(ref, l4, 6, 17, v6)
    impl(which).complete_checksum(b, l4, 6)
    assert bytes(b) == ref


@pytest.mark.parametrize("which", IMPLS)
def test_complete_checksum_udp_zero_becomes_ffff(which):
    # Choose the last payload word so that the UDP checksum computes to 0: it must go out as 0xFFFF.
    base = IP(src=SRC4, dst=DST4) / UDP(sport=1, dport=2) / Raw(b"abcd\0\0")
    c = IP(bytes(base))[UDP].chksum
    pkt = bytearray(bytes(base))
    pkt[-2:] = struct.pack("!H", c)
    ref = IP(bytes(IP(src=SRC4, dst=DST4) / UDP(sport=1, dport=2) / Raw(bytes(pkt[-6:]))))
    assert ref[UDP].chksum == 0xFFFF  # scapy agrees on the substitution
    b = _partial(bytes(ref), 20, 6, 17, False)
    impl(which).complete_checksum(b, 20, 6)
    assert bytes(b) == bytes(ref)


# ------------------------------------------------------------------ TSO splitting
def _super(v6: bool, payload: bytes, flags: str, seq: int = 1000, ip_id: int = 4242, ts: bool = True) -> bytes:
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (11111, 22222))] if ts else []
    tcp = TCP(sport=40000, dport=5201, seq=seq, ack=777, flags=flags, window=502, options=opts)
    ip = IPv6(src=SRC6, dst=DST6, hlim=64) if v6 else IP(src=SRC4, dst=DST4, id=ip_id, flags="DF", ttl=64)
    return bytes(ip / tcp / Raw(payload))


def _recomputed(seg: bytes, v6: bool):
    """Parse, drop checksums and lengths, let scapy rebuild them: what a valid packet must equal."""
    p = IPv6(seg) if v6 else IP(seg)
    q = p.copy()
    if v6:
        del q.plen
    else:
        del q.chksum
        del q.len
    del q[TCP].chksum
    return p, (IPv6 if v6 else IP)(bytes(q))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("payload_len, gso_size", [(10000, 1448), (1448 * 4, 1448), (100, 1448), (65000, 1388),
                                                   (1449, 1448)])
def test_gso_split_tcp(which, v6, payload_len, gso_size):
    payload = bytes((i * 7 + 3) & 0xFF for i in range(payload_len))
    seq = 0xFFFFF000  # wraps during the split
    sp = bytearray(_super(v6, payload, "FPAC", seq=seq, ip_id=0xFFFE))
    l4 = 40 if v6 else 20
    # As the kernel hands it over: CHECKSUM_PARTIAL (pseudo-header sum in the field).
    sp = _partial(bytes(sp), l4, 16, 6, v6)
    gso_type = (GSO_TCPV6 if v6 else GSO_TCPV4) | GSO_ECN
    segs = impl(which).gso_split(memoryview(sp), gso_type, gso_size, l4)
    n = -(-payload_len // gso_size)
    assert len(segs) == n
    got = b""
    for i, seg in enumerate(segs):
        p, ref = _recomputed(bytes(seg), v6)
        assert bytes(seg) == bytes(ref), f"segment {i}: lengths or checksums wrong"
        t = p[TCP]
        data = bytes(t.payload)
        assert len(data) == (gso_size if i < n - 1 else payload_len - gso_size * (n - 1))
        assert t.seq == (seq + i * gso_size) & 0xFFFFFFFF
        assert t.ack == 777 and t.window == 502 and t.options == [("NOP", None), ("NOP", None),
                                                                   ("Timestamp", (11111, 22222))]
        f = str(t.flags)
        assert ("F" in f) == ("P" in f) == (i == n - 1), f"segment {i} flags {f}"
        assert ("C" in f) == (i == 0), f"segment {i} flags {f}"
        assert "A" in f
        if v6:
            assert p.plen == len(seg) - 40
        else:
            assert p.len == len(seg) and p.id == (0xFFFE + i) & 0xFFFF and p.flags == "DF" and p.ttl == 64
        got += data
    assert got == payload


@pytest.mark.parametrize("which", IMPLS)
@settings(max_examples=25, deadline=None)
@given(payload_len=st.integers(1, 6000), gso_size=st.integers(200, 3000), v6=st.booleans(),
       flags=st.sampled_from(["A", "PA", "FA", "FPA", "CA", "EA"]))
def test_gso_split_tcp_property(which, payload_len, gso_size, v6, flags):
    payload = bytes(range(256)) * (payload_len // 256 + 1)
    payload = payload[:payload_len]
    sp = _super(v6, payload, flags, ts=False)
    segs = impl(which).gso_split(sp, GSO_TCPV6 if v6 else GSO_TCPV4, gso_size, 40 if v6 else 20)
    assert len(segs) == -(-payload_len // gso_size)
    assert b"".join(bytes(s[(60 if v6 else 40):]) for s in segs) == payload
    for s in segs:
        _p, ref = _recomputed(bytes(s), v6)
        assert bytes(s) == bytes(ref)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("v6", [False, True])
def test_gso_split_udp_l4(which, v6):
    payload = bytes(range(200)) * 20  # 4000 bytes -> 1400 + 1400 + 1200
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4, id=7)
    l4 = 40 if v6 else 20
    sp = _partial(bytes(ip / UDP(sport=1194, dport=1195) / Raw(payload)), l4, 6, 17, v6)
    segs = impl(which).gso_split(sp, GSO_UDP_L4, 1400, l4)
    assert [len(s) - l4 - 8 for s in segs] == [1400, 1400, 1200]
    got = b""
    for i, s in enumerate(segs):
        p = (IPv6 if v6 else IP)(bytes(s))
        q = p.copy()
        del q[UDP].chksum
        del q[UDP].len
        if v6:
            del q.plen
        else:
            del q.chksum
            del q.len
            assert p.id == 7 + i
        assert bytes(s) == bytes((IPv6 if v6 else IP)(bytes(q)))
        got += bytes(p[UDP].payload)
    assert got == payload


@pytest.mark.parametrize("which", IMPLS)
def test_gso_split_without_payload_returns_packet_unchanged(which):
    pkt = _super(False, b"", "A")
    assert [bytes(s) for s in impl(which).gso_split(pkt, GSO_TCPV4, 1448, 20)] == [pkt]
    assert [bytes(s) for s in impl(which).gso_split(pkt, GSO_TCPV4, 0, 20)] == [pkt]   # no size needed


# ------------------------------------------------------------------ what is not a super-packet
_V4 = _super(False, b"x" * 3000, "A")                       # IPv4 20 + TCP 32 (timestamps) + payload
_V6 = _super(True, b"x" * 3000, "A")
_V4_OPTS = bytes(IP(src=SRC4, dst=DST4, options=[b"\x01\x01\x01\x00"]) / TCP(flags="A") / Raw(b"y" * 3000))


def _with(pkt: bytes, at: int, value: int) -> bytes:
    b = bytearray(pkt)
    b[at] = value
    return bytes(b)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("pkt, gso_type, gso_size, csum_start, why", [
    (b"", GSO_TCPV4, 1448, 20, "empty"),
    (_V4, GSO_TCPV6, 1448, 20, "TCPV6 on an IPv4 packet"),
    (_V6, GSO_TCPV4, 1448, 40, "TCPV4 on an IPv6 packet"),
    (_V4, GSO_UDP, 1448, 20, "UFO (IP fragmentation): never offered to the kernel"),
    (_V4, 2, 1448, 20, "unknown GSO type"),
    (_with(_V4, 0, 0x55), GSO_UDP_L4, 1448, 20, "IP version 5"),
    (_V4, GSO_TCPV4, 1448, 0, "transport offset inside the IP header: TCP fields over IP ones"),
    (_V4, GSO_TCPV4, 1448, 24, "transport offset past the IHL"),
    (_V4_OPTS, GSO_TCPV4, 1448, 20, "transport offset inside IPv4 options"),
    (_with(_V4, 0, 0x43), GSO_TCPV4, 1448, 12, "IHL below 5"),
    (_V6, GSO_TCPV6, 1448, 20, "transport offset inside the IPv6 header"),
    (_V4[:20 + 19], GSO_TCPV4, 1448, 20, "TCP header cut short"),
    (_with(_V4, 32, 0x40), GSO_TCPV4, 1448, 20, "TCP data offset 16 bytes"),
    (_with(_V4, 32, 0x00), GSO_TCPV4, 1448, 20, "TCP data offset 0"),
    (_V4[:20 + 28], GSO_TCPV4, 1448, 20, "TCP options cut short"),
    (_V6[:40 + 7], GSO_UDP_L4, 1448, 40, "UDP header cut short"),
    (_V4, GSO_TCPV4, 0, 20, "payload but no segment size"),
    (_V4, GSO_TCPV4, -1, 20, "negative segment size"),
    (_V6, GSO_TCPV6, 1448, 3100, "offset beyond the packet"),
    (_V6, GSO_TCPV6, 1448, -8, "negative offset"),
    (_super(False, b"z" * 60000, "A") + b"z" * 6000, GSO_TCPV4, 65500, 20, "segment longer than IPv4's total length"),
])
def test_gso_split_refuses_what_it_cannot_cut(which, pkt, gso_type, gso_size, csum_start, why):
    """Each of these once read past the packet, wrote TCP fields into the IP header, or made
    segments that lie about their length; now both implementations raise ValueError."""
    with pytest.raises(ValueError):
        impl(which).gso_split(pkt, gso_type, gso_size, csum_start)


@pytest.mark.parametrize("which", IMPLS)
def test_gso_split_ipv4_options_and_the_longest_segments(which):
    """IPv4 options travel in every segment (csum_start = IHL); a 65535-byte segment is still fine."""
    segs = impl(which).gso_split(_V4_OPTS, GSO_TCPV4, 1000, 24)
    assert len(segs) == 3
    for s in segs:
        p = IP(bytes(s))
        assert p.options and p.len == len(s) and p.ihl == 6
        assert bytes(s) == bytes(_recomputed(bytes(s), False)[1])      # lengths and checksums right
    big = _super(False, b"z" * (65535 - 52), "A")
    (seg,) = impl(which).gso_split(big, GSO_TCPV4, 65535, 20)
    assert len(seg) == 65535 and IP(bytes(seg)).len == 65535


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("start, offset, length", [(20, 16, 35), (0, 0, 1), (0, 0, 0), (40, 6, 40), (-1, 17, 40),
                                                   (20, -2, 40), (30, 9, 40)])
def test_complete_checksum_refuses_a_field_beyond_the_packet(which, start, offset, length):
    b = bytearray(b"\x45" + bytes(range(1, length))) if length else bytearray()
    before = bytes(b)
    with pytest.raises(ValueError):
        impl(which).complete_checksum(b, start, offset)
    assert bytes(b) == before                                  # nothing written


@pytest.mark.parametrize("which", IMPLS)
def test_complete_checksum_needs_a_writable_buffer(which):
    ref = bytes(IP(src=SRC4, dst=DST4) / UDP() / Raw(b"q" * 10))
    with pytest.raises(TypeError):
        impl(which).complete_checksum(ref, 20, 6)
