"""Control-body codec: round trips and hostile input (only BadPacket may escape)."""
import pytest
from hypothesis import given, strategies as st

from appliance.openvpn.errors import BadPacket
from appliance.openvpn.opcodes import Op
from appliance.openvpn.packet import (decode_body_untrusted, encode_body, encode_tlv,
                                      parse_early_neg_tlvs_untrusted)

SID = bytes(range(8))


@given(st.lists(st.integers(0, 2**32 - 1), max_size=8), st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_control_round_trip(acks, msg_id, payload):
    body = encode_body(acks, SID if acks else None, msg_id, payload)
    cb = decode_body_untrusted(Op.CONTROL_V1, body)
    assert cb.acks == acks
    assert cb.peer_sid == (SID if acks else None)
    assert cb.msg_id == msg_id
    assert cb.payload == payload


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8))
def test_ack_round_trip(acks):
    cb = decode_body_untrusted(Op.ACK_V1, encode_body(acks, SID, None))
    assert cb.acks == acks and cb.msg_id is None and cb.payload == b""


@given(st.binary(max_size=200), st.sampled_from(list(Op)))
def test_decode_hostile_bytes_only_badpacket(data, op):
    try:
        decode_body_untrusted(op, data)
    except BadPacket:
        pass


def test_truncations_are_rejected():
    body = encode_body([1, 2], SID, 7, b"x")
    for n in range(0, 1 + 8 + 8 + 4):
        with pytest.raises(BadPacket):
            decode_body_untrusted(Op.CONTROL_V1, body[:n])


def test_too_many_acks_rejected():
    with pytest.raises(BadPacket):
        decode_body_untrusted(Op.ACK_V1, bytes([9]) + b"\0" * 44)


def test_ack_with_trailing_bytes_rejected():
    with pytest.raises(BadPacket):
        decode_body_untrusted(Op.ACK_V1, encode_body([1], SID, None) + b"x")


def test_tlvs():
    payload = encode_tlv(1, b"\x00\x01") + encode_tlv(77, b"abc")
    assert parse_early_neg_tlvs_untrusted(payload) == {1: b"\x00\x01", 77: b"abc"}
    with pytest.raises(BadPacket):
        parse_early_neg_tlvs_untrusted(payload[:-1])


@given(st.binary(max_size=64))
def test_tlv_hostile(data):
    try:
        parse_early_neg_tlvs_untrusted(data)
    except BadPacket:
        pass
