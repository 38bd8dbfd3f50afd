"""The GSO cut of UdpTransport.send_batch (transport/udp._runs): only OpenVPN data packets share a
run; any other datagram (control, ACK, reset, an empty one) is a run of its own, and a data run
ends before it. Why: a GSO send is one skb for the sending host's firewall, judged by its first
datagram (tests/interop/test_control_alone_on_the_wire.py). Data runs keep the old bounds."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import native
from appliance.transport import udp
from appliance.transport.udp import MAX_GSO_BYTES, MAX_GSO_SEGMENTS, _runs

DATA_FIRST = [0x30, 0x31, 0x48, 0x4F]          # P_DATA_V1 key 0/1, P_DATA_V2 key 0/7
OTHER_FIRST = [0x08, 0x10, 0x18, 0x20, 0x28, 0x38, 0x40, 0x50, 0x58, 0x00, 0xFF]


def _is_data(d: bytes) -> bool:
    return bool(d) and d[0] >> 3 in (6, 9)


datagram = st.one_of(
    st.tuples(st.sampled_from(DATA_FIRST + OTHER_FIRST), st.sampled_from([1, 100, 1399, 1400, 1401, 9000]))
    .map(lambda t: bytes([t[0]]) * t[1]),
    st.just(b""))


@settings(max_examples=300, deadline=None)
@given(st.lists(datagram, max_size=150))
def test_runs_cover_all_in_order_and_only_data_shares_one(datagrams):
    runs = list(_runs(datagrams))
    assert [i for i, _j, _s in runs] == ([0] if runs else []) + [j for _i, j, _s in runs[:-1]]   # contiguous, in order
    assert (runs[-1][1] if runs else 0) == len(datagrams)
    for i, j, size in runs:
        run = datagrams[i:j]
        assert size == len(run[0])
        if j - i > 1:
            assert all(map(_is_data, run)), [d[:1] for d in run]
            assert j - i <= MAX_GSO_SEGMENTS and sum(map(len, run)) <= MAX_GSO_BYTES
            assert all(len(d) == size for d in run[:-1]) and 0 < len(run[-1]) <= size


@settings(max_examples=200, deadline=None)
@given(st.lists(datagram, max_size=150))
def test_a_run_of_data_ends_only_where_it_must(datagrams):
    """Batching kept: two neighbouring data packets of the same size are split only by the count
    or byte bound (or because the run's last one was shorter)."""
    for i, j, size in _runs(datagrams):
        if j < len(datagrams) and _is_data(datagrams[j - 1]) and _is_data(datagrams[j]) \
                and len(datagrams[j]) == len(datagrams[j - 1]) == size and _is_data(datagrams[i]):
            assert j - i == MAX_GSO_SEGMENTS or sum(map(len, datagrams[i:j + 1])) > MAX_GSO_BYTES


def test_a_control_packet_amid_data_splits_the_run_around_it():
    data, ctl, ack = b"\x48" + bytes(999), b"\x20" + bytes(999), b"\x28" + bytes(30)
    assert list(_runs([data] * 5 + [ctl] + [data] * 3 + [ack, ack])) == [
        (0, 5, 1000), (5, 6, 1000), (6, 9, 1000), (9, 10, 31), (10, 11, 31)]
    assert list(_runs([ctl, data, data])) == [(0, 1, 1000), (1, 3, 1000)]


_udp = native.load("_udp")


@pytest.mark.skipif(_udp is None, reason="the compiled _udp is not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(datagram, max_size=150), st.integers(0, 70), st.sampled_from([0, 1, 999, 1400, 4000, 65000]),
       st.sampled_from(["bytes", "bytearray", "view"]))
def test_the_compiled_cut_is_the_python_one(datagrams, max_segments, max_bytes, kind):
    """`_udp.gso_runs` (what _runs calls when built) against `py_runs`, for any bounds (the bench
    sets MAX_GSO_SEGMENTS) and any buffer type; the Python twin read with the same bounds."""
    wrap = {"bytes": bytes, "bytearray": bytearray, "view": lambda d: memoryview(bytearray(d))}[kind]
    items = [wrap(d) for d in datagrams]
    with _bounds(max_segments, max_bytes):
        assert _udp.gso_runs(items, max_segments, max_bytes) == list(udp.py_runs(datagrams))
    assert _udp.gso_runs(tuple(items), 64, 65000) == list(udp.py_runs(datagrams))


@pytest.mark.skipif(_udp is None, reason="the compiled _udp is not built")
def test_the_compiled_cut_refuses_what_is_not_a_list_of_buffers():
    for bad in ([b"\x48", "text"], [b"\x48" * 10, b"\x48" * 10, 5], None, 3):
        with pytest.raises(TypeError):
            _udp.gso_runs(bad, 64, 65000)
    with pytest.raises(TypeError):
        _udp.gso_runs([b"\x48"], 64)
    with pytest.raises(OverflowError):
        _udp.gso_runs([b"\x48"], 1 << 80, 65000)
    assert _udp.gso_runs([], 64, 65000) == []


class _bounds:
    """udp.MAX_GSO_SEGMENTS / MAX_GSO_BYTES set for py_runs, restored after."""

    def __init__(self, segs: int, nbytes: int) -> None:
        self.new, self.old = (segs, nbytes), (udp.MAX_GSO_SEGMENTS, udp.MAX_GSO_BYTES)

    def __enter__(self) -> None:
        udp.MAX_GSO_SEGMENTS, udp.MAX_GSO_BYTES = self.new

    def __exit__(self, *exc) -> None:
        udp.MAX_GSO_SEGMENTS, udp.MAX_GSO_BYTES = self.old
