"""GRO on TUN writes: in-order TCP segments of one flow merge into one GSO super-packet that cuts
back (as the kernel would segment it) into exactly the segments that went in; everything that
must not merge goes out untouched and in order."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from appliance.tun.offload import (F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, ZERO_VNET_HDR, gso_split, ones_sum,
                                   parse_vnet_hdr)

from .gro_impls import coalesce, gro_cls  # noqa: F401 - gro_cls: a fixture (both implementations)

SRC4, DST4 = "198.18.10.1", "198.18.10.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"
TS = [("NOP", None), ("NOP", None), ("Timestamp", (11111, 22222))]


def seg(i: int, size: int = 1448, v6: bool = False, seq0: int = 1000, flags: str = "A", sport: int = 40000,
        ack: int = 777, window: int = 502, ts=TS, ttl: int = 64, tos: int = 0, ip_id0: int = 100,
        payload: bytes | None = None) -> bytes:
    """The i-th full-size segment of a bulk flow, as a sender's TCP stack would write it."""
    data = payload if payload is not None else bytes(((i * 31 + k) & 0xFF) for k in range(size))
    tcp = TCP(sport=sport, dport=5201, seq=(seq0 + i * 1448) & 0xFFFFFFFF, ack=ack, flags=flags, window=window,
              options=ts)
    ip = IPv6(src=SRC6, dst=DST6, hlim=ttl, tc=tos) if v6 else \
        IP(src=SRC4, dst=DST4, id=(ip_id0 + i) & 0xFFFF, flags="DF", ttl=ttl, tos=tos)
    return bytes(ip / tcp / Raw(data))


def resegment(hdr: bytes, pkt) -> list[bytes]:
    flags, gso_type, hdr_len, gso_size, cstart, coff = parse_vnet_hdr(hdr)
    if gso_type == GSO_NONE:
        return [bytes(pkt)]
    return [bytes(s) for s in gso_split(memoryview(pkt), gso_type, gso_size, cstart)]


def out_packets(result) -> list[bytes]:
    return [s for hdr, pkt, _n in result for s in resegment(hdr, pkt)]


@pytest.mark.parametrize("v6", [False, True])
def test_bulk_flow_merges_into_one_super_packet_that_resegments_exactly(gro_cls, v6):
    segs = [seg(i, v6=v6) for i in range(20)] + [seg(20, size=300, v6=v6, flags="PA")]
    res = coalesce(gro_cls, [memoryview(s) for s in segs])
    assert len(res) == 1
    hdr, pkt, n = res[0]
    flags, gso_type, hdr_len, gso_size, cstart, coff = parse_vnet_hdr(hdr)
    iphl = 40 if v6 else 20
    assert n == 21 and flags == F_NEEDS_CSUM and gso_type == (GSO_TCPV6 if v6 else GSO_TCPV4)
    assert (gso_size, cstart, coff, hdr_len) == (1448, iphl, 16, iphl + 32)
    assert len(pkt) == iphl + 32 + 20 * 1448 + 300
    p = (IPv6 if v6 else IP)(bytes(pkt))
    if v6:
        assert p.plen == len(pkt) - 40
    else:
        assert p.len == len(pkt)
        q = p.copy()
        del q.chksum
        assert IP(bytes(q)).chksum == p.chksum, "IPv4 header checksum of the super-packet"
    assert "P" in str(p[TCP].flags)
    # The checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL), so the full sum completes it.
    l4 = bytes(pkt[iphl:])
    if v6:
        pseudo = ones_sum(bytes(pkt[8:40]) + struct.pack("!IxxxB", len(l4), 6))
    else:
        pseudo = ones_sum(bytes(pkt[12:20]) + struct.pack("!xBH", 6, len(l4)))
    assert p[TCP].chksum == pseudo
    # What the kernel will cut it into is what went in, byte for byte (checksums, IDs, seq, flags).
    assert out_packets(res) == segs


def test_interleaved_flows_merge_separately_and_keep_their_order(gro_cls):
    a = [seg(i, sport=40000) for i in range(6)]
    b = [seg(i, sport=40001, seq0=5_000_000) for i in range(6)]
    mixed = [x for pair in zip(a, b) for x in pair]
    res = coalesce(gro_cls, mixed)
    assert [n for _h, _p, n in res] == [6, 6]
    got = out_packets(res)
    assert [g for g in got if IP(g)[TCP].sport == 40000] == a
    assert [g for g in got if IP(g)[TCP].sport == 40001] == b


@pytest.mark.parametrize("name, breaker", [
    ("SYN", lambda: seg(3, flags="S")),
    ("FIN", lambda: seg(3, flags="FA")),
    ("RST", lambda: seg(3, flags="RA")),
    ("ECE/CWR", lambda: seg(3, flags="CA")),
    ("URG", lambda: seg(3, flags="UA")),
    ("other ack", lambda: seg(3, ack=778)),
    ("other window", lambda: seg(3, window=503)),
    ("other TCP options", lambda: seg(3, ts=[("NOP", None), ("NOP", None), ("Timestamp", (11112, 22222))])),
    ("other TTL", lambda: seg(3, ttl=63)),
    ("ECN CE mark", lambda: seg(3, tos=3)),
    ("IP options", lambda: bytes(IP(src=SRC4, dst=DST4, id=103, flags="DF", options=b"\x01\x01\x01\x00") /
                                 TCP(sport=40000, dport=5201, seq=1000 + 3 * 1448, ack=777, flags="A", window=502,
                                     options=TS) / Raw(bytes(1448)))),
    ("fragment", lambda: bytes(IP(src=SRC4, dst=DST4, id=103, flags="MF") / TCP(sport=40000, dport=5201,
                                                                                flags="A") / Raw(bytes(100)))),
    ("UDP", lambda: bytes(IP(src=SRC4, dst=DST4) / UDP(sport=40000, dport=5201) / Raw(bytes(1448)))),
    ("ICMP", lambda: bytes(IP(src=SRC4, dst=DST4) / ICMP() / Raw(bytes(64)))),
    ("pure ACK", lambda: bytes(IP(src=SRC4, dst=DST4, id=103, flags="DF") /
                               TCP(sport=40000, dport=5201, seq=1000 + 3 * 1448, ack=777, flags="A", window=502,
                                   options=TS))),
    ("gap in sequence", lambda: seg(10)),
    ("bigger than the segment size", lambda: seg(3, size=1460)),
    ("truncated", lambda: seg(3)[:-10]),
    ("garbage", lambda: b"\x45\x00\x00"),
])
def test_what_must_not_merge_goes_out_as_it_came(gro_cls, name, breaker):
    before, after = [seg(i) for i in range(3)], [seg(i) for i in range(5, 8)]
    odd = breaker()
    res = coalesce(gro_cls, before + [odd] + after)
    got = out_packets(res)
    # The odd packet is passed through untouched, with a zero virtio header.
    assert (ZERO_VNET_HDR, odd, 1) in [(h, bytes(p), n) for h, p, n in res], name
    assert sorted(got) == sorted(before + [odd] + after), name
    assert got.index(odd) > got.index(before[-1]), "order within the flow must be kept"
    assert res[0][2] == 3, "the segments before it still merge"


def test_a_short_segment_or_psh_ends_the_super_packet(gro_cls):
    segs = [seg(0), seg(1), seg(2, size=500), seg(3, size=1448, seq0=1000 - 948)]
    res = coalesce(gro_cls, segs)
    assert [n for _h, _p, n in res] == [3, 1]
    segs = [seg(0), seg(1, flags="PA"), seg(2)]
    res = coalesce(gro_cls, segs)
    assert [n for _h, _p, n in res] == [2, 1] and out_packets(res) == segs


def test_super_packet_never_exceeds_64k(gro_cls):
    segs = [seg(i) for i in range(60)]                   # 60 * 1448 > 65535
    res = coalesce(gro_cls, segs)
    assert all(len(p) <= 65535 for _h, p, _n in res)
    assert sum(n for _h, _p, n in res) == 60 and len(res) == 2
    assert out_packets(res) == segs


def test_batch_copies_its_input(gro_cls):
    # Decrypted packets are views of a buffer the next packet overwrites.
    buf = bytearray(2000)
    b = gro_cls()
    segs = [seg(i) for i in range(4)] + [bytes(IP(src=SRC4, dst=DST4) / ICMP())]
    for s in segs:
        buf[:len(s)] = s
        b.add(memoryview(buf)[:len(s)])
        buf[:len(s)] = bytes(len(s))
    assert out_packets(b.take()) == segs
    assert len(b) == 0 and b.take() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 1448), st.booleans()), min_size=1, max_size=40))
def test_any_mix_of_flows_resegments_to_the_input(gro_cls, spec):
    """Random segments of three flows (random sizes, some PSH): whatever merges, each flow's
    packets come back identical and in their original order."""
    next_seq = {0: 1000, 1: 2000, 2: 3000}
    segs = []
    for flow, size, psh in spec:
        s = bytes(IP(src=SRC4, dst=DST4, id=len(segs), flags="DF") /
                  TCP(sport=40000 + flow, dport=5201, seq=next_seq[flow], ack=1, flags="PA" if psh else "A") /
                  Raw(bytes([flow]) * size))
        next_seq[flow] += size
        segs.append(s)
    got = out_packets(coalesce(gro_cls, segs))
    for flow in range(3):
        mine = [s for s in segs if IP(s)[TCP].sport == 40000 + flow]
        back = [g for g in got if IP(g)[TCP].sport == 40000 + flow]
        # IP IDs of merged segments are renumbered consecutively by segmentation: compare the rest.
        assert [bytes(IP(g)[TCP]) for g in back] == [bytes(IP(s)[TCP]) for s in mine]
        assert [IP(g).len for g in back] == [IP(s).len for s in mine]


@pytest.mark.parametrize("v6", [False, True])
def test_a_segment_with_a_bad_checksum_is_never_merged(gro_cls, v6):
    """Merged packets are CHECKSUM_PARTIAL, which the kernel trusts: a segment corrupted before the
    VPN (TCP checksums are end to end) must go out alone, for the kernel to drop as it would."""
    segs = [seg(i, v6=v6) for i in range(6)]
    bad = bytearray(segs[3])
    bad[-100] ^= 0x40                                  # a flipped payload bit, checksum left as it was
    b = gro_cls()
    for x in segs[:3] + [bytes(bad)] + segs[4:]:
        b.add(x)
    assert b.bad_checksums == 1
    res = b.take()
    assert [n for _h, _p, n in res] == [3, 1, 2]
    assert (ZERO_VNET_HDR, bytes(bad), 1) == (res[1][0], bytes(res[1][1]), res[1][2])
    assert out_packets(res) == segs[:3] + [bytes(bad)] + segs[4:]
