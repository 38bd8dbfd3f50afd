"""TUN offload helpers checked against scapy: checksums, CHECKSUM_PARTIAL completion, and TSO/USO
super-packet splitting into segments a real peer accepts."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from appliance.tun import offload
from appliance.tun.offload import (GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, build_vnet_hdr, checksum,
                                   complete_checksum, gso_split, ones_sum, parse_vnet_hdr)

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


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("size", [0, 1, 2, 777, 1400])
def test_complete_checksum_tcp(v6, size):
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4)
    ref = bytes(ip / TCP(sport=40000, dport=5201, seq=12345, ack=999, flags="PA") / Raw((bytes(range(256)) * 6)[:size]))
    l4 = 40 if v6 else 20
    b = _partial(ref, l4, 16, 6, v6)
    complete_checksum(b, l4, 16)
    assert bytes(b) == ref


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("size", [0, 3, 512, 1472])
def test_complete_checksum_udp(v6, size):
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4)
    ref = bytes(ip / UDP(sport=1194, dport=1194) / Raw(b"\xa5" * size))
    l4 = 40 if v6 else 20
    b = _partial(ref, l4, 6, 17, v6)
    complete_checksum(b, l4, 6)
    assert bytes(b) == ref


def test_complete_checksum_udp_zero_becomes_ffff():
    # Choose the last payload word so that the UDP checksum computes to 0: it must go out as 0xFFFF.
    base = IP(src=SRC4, dst=DST4) / UDP(sport=1, dport=2) / Raw(b"abcd\0\0")
    c = IP(bytes(base))[UDP].chksum
    pkt = bytearray(bytes(base))
    pkt[-2:] = struct.pack("!H", c)
    ref = IP(bytes(IP(src=SRC4, dst=DST4) / UDP(sport=1, dport=2) / Raw(bytes(pkt[-6:]))))
    assert ref[UDP].chksum == 0xFFFF  # scapy agrees on the substitution
    b = _partial(bytes(ref), 20, 6, 17, False)
    complete_checksum(b, 20, 6)
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


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("payload_len, gso_size", [(10000, 1448), (1448 * 4, 1448), (100, 1448), (65000, 1388),
                                                   (1449, 1448)])
def test_gso_split_tcp(v6, payload_len, gso_size):
    payload = bytes((i * 7 + 3) & 0xFF for i in range(payload_len))
    seq = 0xFFFFF000  # wraps during the split
    sp = bytearray(_super(v6, payload, "FPAC", seq=seq, ip_id=0xFFFE))
    l4 = 40 if v6 else 20
    # As the kernel hands it over: CHECKSUM_PARTIAL (pseudo-header sum in the field).
    sp = _partial(bytes(sp), l4, 16, 6, v6)
    gso_type = (GSO_TCPV6 if v6 else GSO_TCPV4) | GSO_ECN
    segs = gso_split(memoryview(sp), gso_type, gso_size, l4)
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


@settings(max_examples=25, deadline=None)
@given(payload_len=st.integers(1, 6000), gso_size=st.integers(200, 3000), v6=st.booleans(),
       flags=st.sampled_from(["A", "PA", "FA", "FPA", "CA", "EA"]))
def test_gso_split_tcp_property(payload_len, gso_size, v6, flags):
    payload = bytes(range(256)) * (payload_len // 256 + 1)
    payload = payload[:payload_len]
    sp = _super(v6, payload, flags, ts=False)
    segs = gso_split(sp, GSO_TCPV6 if v6 else GSO_TCPV4, gso_size, 40 if v6 else 20)
    assert len(segs) == -(-payload_len // gso_size)
    assert b"".join(bytes(s[(60 if v6 else 40):]) for s in segs) == payload
    for s in segs:
        _p, ref = _recomputed(bytes(s), v6)
        assert bytes(s) == bytes(ref)


@pytest.mark.parametrize("v6", [False, True])
def test_gso_split_udp_l4(v6):
    payload = bytes(range(200)) * 20  # 4000 bytes -> 1400 + 1400 + 1200
    ip = IPv6(src=SRC6, dst=DST6) if v6 else IP(src=SRC4, dst=DST4, id=7)
    l4 = 40 if v6 else 20
    sp = _partial(bytes(ip / UDP(sport=1194, dport=1195) / Raw(payload)), l4, 6, 17, v6)
    segs = gso_split(sp, GSO_UDP_L4, 1400, l4)
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


def test_gso_split_without_payload_returns_packet_unchanged():
    pkt = _super(False, b"", "A")
    assert [bytes(s) for s in gso_split(pkt, GSO_TCPV4, 1448, 20)] == [pkt]
