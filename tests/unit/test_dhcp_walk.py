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
