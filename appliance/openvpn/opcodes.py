"""OpenVPN opcodes and the first-byte layout (`opcode << 3 | key_id`)."""
from enum import IntEnum


class Op(IntEnum):
    CONTROL_HARD_RESET_CLIENT_V1 = 1
    CONTROL_HARD_RESET_SERVER_V1 = 2
    CONTROL_SOFT_RESET_V1 = 3
    CONTROL_V1 = 4
    ACK_V1 = 5
    DATA_V1 = 6
    CONTROL_HARD_RESET_CLIENT_V2 = 7
    CONTROL_HARD_RESET_SERVER_V2 = 8
    DATA_V2 = 9
    CONTROL_HARD_RESET_CLIENT_V3 = 10
    CONTROL_WKC_V1 = 11


OPCODE_SHIFT = 3
KEY_ID_MASK = 0x07

# Control opcodes that carry a message id (everything but ACK_V1).
RELIABLE_OPS = frozenset({
    Op.CONTROL_SOFT_RESET_V1, Op.CONTROL_V1, Op.CONTROL_HARD_RESET_CLIENT_V2,
    Op.CONTROL_HARD_RESET_SERVER_V2, Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1,
})
CONTROL_OPS = RELIABLE_OPS | {Op.ACK_V1}
HARD_RESET_CLIENT_OPS = frozenset({Op.CONTROL_HARD_RESET_CLIENT_V2, Op.CONTROL_HARD_RESET_CLIENT_V3})
# Control packets a client may send (everything but the server's hard reset).
CONTROL_FROM_CLIENT_OPS = CONTROL_OPS - {Op.CONTROL_HARD_RESET_SERVER_V2}
# Reliable messages that open a key state rather than carry TLS records.
RESET_OPS = HARD_RESET_CLIENT_OPS | {Op.CONTROL_HARD_RESET_SERVER_V2, Op.CONTROL_SOFT_RESET_V1}
# Opcodes whose packets carry a tls-crypt-v2 wrapped client key after the tls-crypt part.
WKC_OPS = frozenset({Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1})

# First bytes of data packets, as ints, for the hot-path dispatch.
DATA_V1_BASE = Op.DATA_V1 << OPCODE_SHIFT
DATA_V2_BASE = Op.DATA_V2 << OPCODE_SHIFT

# No peer-id: peer-id value meaning "none" (OpenVPN MAX_PEER_ID).
NO_PEER_ID = 0xFFFFFF

# Magic payloads carried inside the data channel.
PING_MAGIC = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")
OCC_MAGIC = bytes.fromhex("287f346bd4ef7a812d56b8d3afc5459c")
OCC_EXIT = 6

# IV_PROTO bits we implement and advertise.
IV_PROTO_DATA_V2 = 1 << 1
IV_PROTO_REQUEST_PUSH = 1 << 2
IV_PROTO_TLS_KEY_EXPORT = 1 << 3
IV_PROTO_AUTH_PENDING_KW = 1 << 4    # the client reads AUTH_PENDING's `timeout N`
IV_PROTO_CC_EXIT_NOTIFY = 1 << 7

# Early-negotiation TLV (2.6 HMAC cookie flow).
EARLY_NEG_FLAGS = 0x0001
EARLY_NEG_FLAG_RESEND_WKC = 0x0001
EARLY_NEG_START = 0x0F000000

# Packet-id space (32 bits, data and control channel). As OpenVPN (PACKET_ID_WRAP_TRIGGER), a key
# renegotiates once its send counter passes DATA_PID_RENEG_AT, long before an id (and with AEAD the
# nonce) would have to be reused; at PID_MAX a key refuses to send at all.
PID_MAX = 0xFFFFFFFF
DATA_PID_RENEG_AT = 0xFF000000


def op_byte(op: int, key_id: int) -> int:
    return (op << OPCODE_SHIFT) | key_id


def split_op_byte(b: int) -> tuple[int, int]:
    return b >> OPCODE_SHIFT, b & KEY_ID_MASK
