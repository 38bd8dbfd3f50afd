"""TunDevice.read_batch / read_packets with offload on, fed through a socket pair standing in for the
TUN's descriptor (no root needed): super-packets come out as their segments, a CHECKSUM_PARTIAL
packet completed, and whatever vnet header and bytes arrive -- a kernel bug, or a fuzzer -- never
raise out of the read: what cannot be cut is dropped and counted (`offload_refused`), once per read.
Run with each implementation of the split (gso_impls.py)."""
from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from appliance.tun import device, offload
from appliance.tun.device import TunDevice
from appliance.tun.offload import F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP_L4, build_vnet_hdr

from .gso_impls import IMPLS, impl

SRC4, DST4 = "198.18.10.1", "198.18.10.2"


@pytest.fixture(params=IMPLS)
def fake_tun(request, monkeypatch):
    """-> (TunDevice reading from one end of a datagram socket pair, the other end to send on)."""
    which = impl(request.param)
    monkeypatch.setattr(offload, "gso_split", which.gso_split)
    monkeypatch.setattr(offload, "complete_checksum", which.complete_checksum)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    b.setblocking(False)
    dev = TunDevice.__new__(TunDevice)
    dev.fd, dev.hlen, dev.name, dev.tap, dev._mtu = b.fileno(), offload.VNET_HDR_LEN, "fake", False, 1500
    dev._init_pool()
    dev.buf = bytearray(device.READ_SIZE)
    dev.view = memoryview(dev.buf)
    dev.stats = {"read": 0, "super_packets": 0, "segments": 0, "offload_refused": 0, "spilled": 0}
    yield dev, a
    a.close()
    b.close()


def _valid_tcp(p) -> bool:
    ip = IP(bytes(p))
    q = ip.copy()
    del q.chksum
    del q[TCP].chksum
    return bytes(IP(bytes(q))) == bytes(p)


def _partial_sum(b: bytearray, proto: int, off: int) -> bytearray:
    """CHECKSUM_PARTIAL as the kernel hands it over: the field holds the pseudo-header sum."""
    l4len = len(b) - 20
    pseudo = offload.ones_sum(bytes(b[12:20]) + bytes([0, proto]) + l4len.to_bytes(2, "big"))
    b[20 + off:22 + off] = (pseudo or 0xFFFF).to_bytes(2, "big")
    return b


@pytest.mark.parametrize("read", ["read_batch", "read_packets"])
def test_good_and_bad_offload_reads(fake_tun, read):
    dev, peer = fake_tun
    payload = bytes(range(256)) * 40                          # 10240 bytes -> 8 segments of 1348 (last 804)
    sp = _partial_sum(bytearray(bytes(IP(src=SRC4, dst=DST4) / TCP(flags="PA") / Raw(payload))), 6, 16)
    small = _partial_sum(bytearray(bytes(IP(src=SRC4, dst=DST4) / UDP() / Raw(b"abc"))), 17, 6)
    peer.send(build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4, 40, 1348, 20, 16) + bytes(sp))
    peer.send(build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4, 40, 1348, 60, 16) + bytes(sp))      # offset: IP options?
    peer.send(build_vnet_hdr(F_NEEDS_CSUM, GSO_UDP_L4, 28, 1348, 20, 6) + bytes(sp[:25]))  # UDP header cut
    peer.send(build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, 20, 400) + bytes(small))              # field beyond
    peer.send(build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, 20, 6) + bytes(small))
    pkts = getattr(dev, read)(64)
    assert len(pkts) == 9 and dev.stats["offload_refused"] == 3
    assert [len(p) - 40 for p in pkts[:8]] == [1348] * 7 + [804]
    assert all(_valid_tcp(p) for p in pkts[:8])
    assert b"".join(bytes(p[40:]) for p in pkts[:8]) == payload
    assert bytes(pkts[8]) == bytes(IP(src=SRC4, dst=DST4) / UDP() / Raw(b"abc"))        # checksum completed
    assert dev.stats["super_packets"] == 1 and dev.stats["segments"] == 8


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reads=st.lists(st.tuples(st.integers(0, 255), st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x84, 0xFF]),
                                st.integers(0, 0xFFFF), st.sampled_from([0, 1, 8, 536, 1348, 0xFFFF]),
                                st.one_of(st.sampled_from([0, 20, 24, 40]), st.integers(0, 0xFFFF)),
                                st.sampled_from([0, 6, 16, 0xFFFF]),
                                st.one_of(st.binary(max_size=120), st.binary(max_size=3000))),
                      min_size=1, max_size=8))
def test_any_vnet_header_and_bytes_never_raise(fake_tun, reads):
    """Whatever the descriptor delivers: no exception, and every read is either returned (whole, or
    as segments), skipped as empty, or counted as refused."""
    dev, peer = fake_tun
    dev.stats.update(read=0, super_packets=0, segments=0, offload_refused=0)
    for flags, gso_type, hdr_len, gso_size, cstart, coff, body in reads:
        peer.send(build_vnet_hdr(flags, gso_type, hdr_len, gso_size, cstart, coff) + body)
    pkts = dev.read_batch(64)
    whole = len(pkts) - dev.stats["segments"] + dev.stats["super_packets"]
    nonempty = sum(1 for r in reads if r[-1])
    assert whole + dev.stats["offload_refused"] == nonempty


@pytest.mark.parametrize("vnet", [True, False])
def test_reads_at_and_over_the_pool_buffer_come_whole_and_apart_in_one_batch(fake_tun, vnet):
    """review46b: the pool buffers hold one packet of the MTU (1,500 here); anything longer lands
    in the device's one spill buffer. In one batch: packets at the MTU, one byte over it, at
    9,000 and at 64 KiB, a TSO super-packet between them, a CHECKSUM_PARTIAL one over the MTU --
    each must come out whole and its own (a spilled packet handed out as a view of the spill
    buffer would show the next spill's bytes); the spilled ones stay so after the next batch
    (the others are views of the pool, valid until the next read_batch as documented). Without the
    vnet header (a TAP device, or vnet off) the same, minus the offloads."""
    dev, peer = fake_tun
    if not vnet:
        dev.hlen = 0
        dev._init_pool()

    def plain(length: int, fill: int) -> bytes:
        return bytes(IP(src=SRC4, dst=DST4, id=fill) / UDP() / Raw(bytes([fill]) * (length - 28)))

    hdr = build_vnet_hdr(0, 0, 0, 0, 0, 0) if vnet else b""
    want = [plain(1500, 1), plain(1501, 2), plain(9000, 3)]
    sends = [hdr + p for p in want]
    payload = bytes(range(256)) * 40
    if vnet:
        sp = _partial_sum(bytearray(bytes(IP(src=SRC4, dst=DST4) / TCP(flags="PA") / Raw(payload))), 6, 16)
        sends.append(build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4, 40, 1348, 20, 16) + bytes(sp))
        big = plain(4000, 4)
        want.append(big)
        sends.append(build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, 20, 6) + bytes(_partial_sum(bytearray(big), 17, 6)))
    last = plain(65535 - len(hdr) if not vnet else 65535, 5)
    want.append(last)
    sends.append(hdr + last)
    for s in sends:
        peer.send(s)
    pkts = dev.read_batch(64)
    whole = [p for p in pkts if len(p) - 40 != 1348 and not (vnet and len(p) == 844)]
    assert [bytes(p) for p in whole] == want
    assert dev.stats["spilled"] == len([p for p in want if len(p) > 1500])
    if vnet:
        segs = [p for p in pkts if p not in whole]
        assert b"".join(bytes(p[40:]) for p in segs) == payload and all(_valid_tcp(p) for p in segs)
    peer.send(hdr + plain(30000, 6))
    assert [bytes(p) for p in dev.read_batch(64)] == [plain(30000, 6)]
    assert [bytes(p) for p in whole if len(p) > 1500] == [p for p in want if len(p) > 1500]


def test_a_smaller_mtu_told_leaves_no_read_buffers_of_the_larger_one(fake_tun):
    """review46b: a batch of 64 at tun-mtu 9,000 grows the pool to 64 buffers of that size; a
    push of a smaller tun-mtu must not leave them held (soak45's version resized a buffer only
    as a batch next reached it: the 60 beyond a batch of 4, ~540 kB, stayed). Packets of either
    MTU come whole."""
    import tracemalloc

    dev, peer = fake_tun
    hdr = build_vnet_hdr(0, 0, 0, 0, 0, 0)

    def batch(count: int, length: int) -> bool:
        want = [b"\x45" + bytes([i]) * (length - 1) for i in range(count)]    # no offload: not parsed
        for p in want:
            peer.send(hdr + p)
        return [bytes(p) for p in dev.read_batch(64)] == want

    dev.mtu = 9000                                  # a push of tun-mtu 9000
    tracemalloc.start()
    try:
        assert batch(64, 9000)
        dev.mtu = 1500                              # the next connection's push: 1500
        assert batch(4, 1500)
        held = sum(t.size for t in tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, device.__file__)]).traces)
    finally:
        tracemalloc.stop()
    assert held < 100_000, f"after tun-mtu 9000 -> 1500 the device holds {held:,} bytes of read buffers"
    assert dev.stats["spilled"] == 0
