"""TCP stream framing: any split of the byte stream yields the same packets; hostile lengths and
runaway buffers raise BadPacket (a TCP peer sending them gets disconnected)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance.openvpn.errors import BadPacket
from appliance.openvpn.framing import MAX_BUFFER, StreamFramer, frame


def test_frame_prefixes_big_endian_length():
    assert frame(b"\x38abc") == b"\x00\x04\x38abc"
    assert frame(bytearray(300)) == b"\x01\x2c" + bytes(300)
    assert frame(memoryview(b"x" * 0xFFFF))[:2] == b"\xff\xff"


@pytest.mark.parametrize("n", [0, 0x10000])
def test_frame_rejects_unframeable_lengths(n):
    with pytest.raises(ValueError):
        frame(bytes(n))


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(st.binary(min_size=1, max_size=3000), max_size=12),
       cuts=st.lists(st.integers(0, 40000), max_size=20))
def test_any_split_yields_same_packets(packets, cuts):
    stream = b"".join(frame(p) for p in packets)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    f = StreamFramer()
    got = []
    prev = 0
    for c in points + [len(stream)]:
        got += f.feed(stream[prev:c])
        prev = c
    assert got == packets
    assert f.feed(b"") == []


def test_byte_by_byte():
    packets = [b"a", b"bc" * 500, bytes(range(256))]
    stream = b"".join(frame(p) for p in packets)
    f = StreamFramer()
    got = []
    for i in range(len(stream)):
        got += f.feed(stream[i:i + 1])
    assert got == packets


def test_packets_are_independent_copies():
    f = StreamFramer()
    data = bytearray(frame(b"hello") + frame(b"world"))
    out = f.feed(data)
    data[2:7] = b"XXXXX"
    assert out == [b"hello", b"world"]


def test_zero_length_is_bad_packet():
    f = StreamFramer()
    assert f.feed(frame(b"ok")) == [b"ok"]
    with pytest.raises(BadPacket):
        f.feed(b"\x00\x00rest")


def test_zero_length_after_split_header_is_bad_packet():
    f = StreamFramer()
    assert f.feed(b"\x00") == []
    with pytest.raises(BadPacket):
        f.feed(b"\x00")


def test_oversized_buffer_is_bad_packet():
    """A peer that never completes packets cannot make us buffer without bound."""
    f = StreamFramer()
    with pytest.raises(BadPacket):
        for _ in range(MAX_BUFFER // 1000 + 10):
            f.feed(b"\xff\xff" + bytes(998))  # each claims 65535 bytes; lengths never line up to completion
    assert len(f.buf) <= MAX_BUFFER + 1000


def test_oversized_single_feed_is_bad_packet():
    f = StreamFramer()
    with pytest.raises(BadPacket):
        f.feed(b"\x00\x05" + bytes(MAX_BUFFER + 10))  # the 5-byte packet completes; the rest is garbage
