"""DHCP messages: what we send parses as a DHCP request; hostile replies never raise."""
import socket
import struct

from hypothesis import given, strategies as st

from appliance.boot.dhcp_client import ACK, DISCOVER, MAGIC, REQUEST, build_message, parse_reply_untrusted

MAC = bytes.fromhex("525400000001")


def test_discover_and_request_layout():
    d = build_message(DISCOVER, 0x1234, MAC)
    assert d[0] == 1 and struct.unpack_from("!I", d, 4)[0] == 0x1234 and d[28:34] == MAC
    assert d[236:240] == MAGIC and d[240:243] == bytes([53, 1, DISCOVER])
    r = build_message(REQUEST, 7, MAC, "198.18.0.50", "198.18.0.1")
    assert bytes([50, 4]) + socket.inet_aton("198.18.0.50") in r
    assert bytes([54, 4]) + socket.inet_aton("198.18.0.1") in r


def _reply(kind, xid, yiaddr, extra=b""):
    body = bytearray(build_message(kind, xid, MAC)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton(yiaddr)
    return bytes(body) + bytes([53, 1, kind, 1, 4]) + socket.inet_aton("255.255.255.0") + extra + b"\xff"


def test_parse_ack():
    r = parse_reply_untrusted(_reply(ACK, 9, "198.18.0.55", bytes([3, 4, 198, 18, 0, 1])))
    assert r.kind == ACK and r.xid == 9 and r.yiaddr == "198.18.0.55" and r.options[3] == bytes([198, 18, 0, 1])


@given(st.binary(max_size=400))
def test_hostile_replies_never_raise(data):
    parse_reply_untrusted(data)
    parse_reply_untrusted(_reply(ACK, 1, "198.18.0.9")[:240] + data)
