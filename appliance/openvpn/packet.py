"""Codecs for the control-packet body (everything after the wrapping).

Body layout: `ack_count(1) | acked ids(4n) | [peer session id(8) if n] | [message id(4)] | payload`.
The opcode byte and the sender's session id travel outside the body; the wrapper (wrapping.py)
authenticates/encrypts around it. Decoders of peer bytes end in `_untrusted` and raise only BadPacket.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BadPacket
from .opcodes import Op

_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
MAX_ACKS = 8
_NO_SID = bytes(8)


def refuse_undefined_sid_untrusted(packet) -> None:
    """BadPacket when a control packet's sender session id (bytes 1..9, outside every wrapping)
    is all zeros; a shorter packet is left to the unwrapping, which refuses it. Why: all zeros
    is OpenVPN's "no session id" (session_id_defined); 2.6 drops such a packet before anything
    else is read of it (ssl.c tls_pre_decrypt, ssl_pkt.c tls_pre_decrypt_lite: "session-id not
    found in packet"), so no peer of ours sends it. Checked before the wrapping's crypto."""
    if packet[1:9] == _NO_SID:
        raise BadPacket("session id of zeros")


@dataclass(slots=True)
class ControlBody:
    acks: list[int]
    peer_sid: bytes | None
    msg_id: int | None
    payload: bytes


def encode_body(acks: list[int], peer_sid: bytes | None, msg_id: int | None, payload: bytes = b"") -> bytes:
    if len(acks) > MAX_ACKS:
        raise ValueError("too many acks")
    parts = [bytes((len(acks),))]
    if acks:
        parts.append(struct.pack(f"!{len(acks)}I", *acks))
        assert peer_sid is not None and len(peer_sid) == 8
        parts.append(peer_sid)
    if msg_id is not None:
        parts.append(_U32.pack(msg_id))
    parts.append(payload)
    return b"".join(parts)


def decode_body_untrusted(op: int, body: bytes) -> ControlBody:
    """Parse a control body; `op` decides whether a message id follows the acks."""
    if not body:
        raise BadPacket("empty control body")
    n = body[0]
    if n > MAX_ACKS:
        raise BadPacket("ack count too large")
    pos = 1
    acks: list[int] = []
    peer_sid = None
    if n:
        end = pos + 4 * n + 8
        if len(body) < end:
            raise BadPacket("truncated ack list")
        acks = list(struct.unpack_from(f"!{n}I", body, pos))
        pos += 4 * n
        peer_sid = bytes(body[pos:pos + 8])
        pos += 8
    msg_id = None
    if op != Op.ACK_V1:
        if len(body) < pos + 4:
            raise BadPacket("truncated message id")
        msg_id = _U32.unpack_from(body, pos)[0]
        pos += 4
    elif len(body) != pos:
        raise BadPacket("trailing bytes after ACK")
    return ControlBody(acks, peer_sid, msg_id, bytes(body[pos:]))


def parse_early_neg_tlvs_untrusted(payload: bytes) -> dict[int, bytes]:
    """TLVs carried in a 2.6 server's HARD_RESET_SERVER_V2 payload (unknown types kept, ignored)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < 4:
            raise BadPacket("truncated TLV")
        t, ln = struct.unpack_from("!HH", payload, pos)
        pos += 4
        if len(payload) - pos < ln:
            raise BadPacket("truncated TLV value")
        out[t] = bytes(payload[pos:pos + ln])
        pos += ln
    return out


def encode_tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!HH", t, len(value)) + value
