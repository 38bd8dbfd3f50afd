"""The one DHCP option walker (lan/dhcp_codec.walk_options), which the LAN's DHCP server (a
client's request) and route-gateway dhcp (openvpn/dhcprouter.py: a server's reply on a tap
client) both read hostile bytes with: bounded whatever it is given."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.lan.dhcp_codec import BadRequest, decode_options, walk_options


def test_pad_end_and_options_as_rfc_2132_lays_them_out():
    data = bytes([0, 0, 53, 1, 5, 3, 4, 198, 19, 1, 1, 0, 255, 6, 4, 1, 2, 3, 4])
    assert list(walk_options(data)) == [(53, 2, 1), (3, 5, 4)]          # PAD skipped, END ends it


def test_a_cut_option_is_last_and_marked():
    assert list(walk_options(bytes([53, 1, 5, 3]))) == [(53, 0, 1), (3, 3, None)]     # only its code byte
    assert list(walk_options(bytes([3, 8, 1, 2]))) == [(3, 0, 8)]                     # its value runs past
    for cut in (bytes([53, 1, 5, 3]), bytes([3, 8, 1, 2])):
        try:
            decode_options(cut, 0)
        except BadRequest as e:
            assert str(e) == "options overrun"
        else:
            raise AssertionError("a request with a cut option was taken")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700), st.integers(0, 20))
def test_any_bytes_one_forward_pass_within_the_data(data, start):
    last = start - 1
    walked = list(walk_options(data, start))
    for i, (code, at, length) in enumerate(walked):
        assert last < at < len(data) and data[at] == code and code not in (0, 255)
        if length is None or at + 2 + length > len(data):
            assert i == len(walked) - 1         # a cut option ends the walk
        else:
            assert length == data[at + 1]
        last = at
    assert len(walked) <= max(0, len(data) - start + 1) // 2 + 1


def test_a_run_of_pad_is_skipped_in_one_step(monkeypatch):
    """A 4 KiB request of PAD bytes was walked byte by byte (~0.16 us each: 0.6 ms a message, at
    the server's 400 handled a second a quarter of a core, 64 of them held the pump ~40 ms a
    wake-up); a run of PAD is now one step (a regex match in C), whatever its length."""
    from appliance.lan import dhcp_codec as dc
    steps = []
    real = dc._PAD_RUN

    class Counting:
        def match(self, data, pos):
            steps.append(pos)
            return real.match(data, pos)
    monkeypatch.setattr(dc, "_PAD_RUN", Counting())
    data = bytes(3800) + bytes([53, 1, 1]) + bytes(100) + bytes([255])
    assert list(walk_options(data)) == [(53, 3800, 1)] and steps == [0, 3803]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 40).map(bytes),                  # PAD runs
                          st.binary(min_size=1, max_size=6).filter(lambda b: b[0] != 0)), max_size=40))
def test_pad_runs_walk_as_rfc_2132_says(parts):
    """The same options as a byte-by-byte walk, PAD runs or not."""
    data = b"".join(parts)

    def model(d):
        i, out = 0, []
        while i < len(d):
            if d[i] == 255:
                break
            if d[i] == 0:
                i += 1
                continue
            if i + 1 >= len(d):
                out.append((d[i], i, None))
                break
            out.append((d[i], i, d[i + 1]))
            i += 2 + d[i + 1]
        return out
    assert list(walk_options(data)) == model(data)
