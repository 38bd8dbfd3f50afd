"""GRO for local delivery: segments to this host's own address merge without being summed here,
and the super-packet's TCP checksum, worked out from the segments' headers alone, must equal a full
recomputation when every segment was valid -- and fail it when any one was corrupted (the kernel
then verifies and drops it)."""
from __future__ import annotations

import socket

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP

from appliance.tun.offload import GSO_TCPV4, gso_split, ones_sum, parse_vnet_hdr

from .gro_impls import gro_cls  # noqa: F401 - a fixture (both implementations)
from .test_gro import DST4, seg

LOCAL = frozenset((socket.inet_aton(DST4),))


def _tcp_sum_ok(pkt) -> bool:
    """Full recomputation: pseudo-header + whole TCP segment sums to zero (mod 0xFFFF)."""
    p = bytes(pkt)
    l4 = len(p) - 20
    return (int.from_bytes(p[12:20], "big") + 6 + l4 + ones_sum(p[20:])) % 0xFFFF == 0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), last=st.integers(1, 1448).map(lambda x: x & ~1), bad=st.integers(-1, 29),
       flip=st.integers(0, 1447), seed=st.integers(0, 255))
def test_merged_checksum_equals_full_recomputation(gro_cls, n, last, bad, flip, seed):
    segs = [bytearray(seg(i, payload=bytes(((i * 7 + k + seed) & 0xFF) for k in range(1448))))
            for i in range(n - 1)]
    segs.append(bytearray(seg(n - 1, size=max(2, last), flags="PA")))
    corrupt = 0 <= bad < n
    if corrupt:
        p = segs[bad]
        off = 20 + (p[32] >> 4) * 4                        # IPv4 header + TCP header (data offset)
        p[off + flip % (len(p) - off)] ^= 0x5A            # payload byte; its checksum left as it was
    b = gro_cls(LOCAL)
    for p in segs:
        b.add(bytes(p))
    (hdr, pkt, count), = b.take()
    flags, gso_type, hdr_len, gso_size, _cs, _co = parse_vnet_hdr(hdr)
    assert (count, flags, gso_type, gso_size) == (n, 0, GSO_TCPV4, 1448)   # no NEEDS_CSUM: kernel verifies
    assert _tcp_sum_ok(pkt) is not corrupt
    assert b.bad_checksums == 0                                         # nothing summed here
    if not corrupt:   # cut back as the kernel would: exactly the segments that went in
        assert [bytes(s) for s in gso_split(memoryview(pkt), gso_type, gso_size, 20)] == [bytes(p) for p in segs]


def test_other_destinations_still_verified_here_and_odd_payloads_not_merged(gro_cls):
    bad = bytearray(seg(1))
    bad[-1] ^= 1
    b = gro_cls(frozenset((socket.inet_aton("198.18.99.99"),)))   # DST4 is not local
    for p in (seg(0), bytes(bad), seg(2)):
        b.add(p)
    assert b.bad_checksums == 1
    b = gro_cls(LOCAL)
    odd = [seg(0, size=1447), seg(1, size=1447)]
    for p in odd:
        b.add(p)
    out = b.take()
    assert [bytes(p) for _h, p, _n in out] == odd and all(c == 1 for _h, _p, c in out)
    assert IP(bytes(out[0][1])).len == 20 + 32 + 1447


def test_the_owner_is_asked_once_per_flow_per_batch_and_its_answer_holds_for_the_batch(gro_cls):
    """The flow-owner lookup (a call, a clock read, a dict probe) ran for every segment: the
    flow's first segment of a batch decides, later ones follow it -- and a later change of answer
    cannot put a segment verified here and one not verified into the same super-packet."""
    asked: list[bytes] = []
    answers = iter([True, False, False, False])

    def owner(ap: bytes) -> bool:
        asked.append(ap)
        return next(answers)

    b = gro_cls(LOCAL, owner)
    segs = [seg(i) for i in range(3)]
    for p in segs:
        b.add(p)
    (hdr, pkt, count), = b.take()
    assert count == 3 and parse_vnet_hdr(hdr)[0] == 0, "merged on the local path (the kernel verifies)"
    assert len(asked) == 1 and asked[0] == segs[0][12:24]
    assert _tcp_sum_ok(pkt)
    for p in segs:                                   # the next batch asks again: now "not ours"
        b.add(p)
    (hdr, pkt, count), = b.take()
    assert count == 3 and len(asked) == 2
    assert parse_vnet_hdr(hdr)[0] & 1, "verified here, so CHECKSUM_PARTIAL for the kernel to fill"
