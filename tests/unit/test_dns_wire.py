"""The DNS wire helpers: the question is read strictly (no pointers, bounded), own replies are right."""
import struct

import pytest
from hypothesis import given, strategies as st

from appliance.lan import dns_wire as w


def test_query_parsed_and_replies_built():
    q = w.encode_query(0x1234, "Secret.VPN.test", 28) + b"\0\0\x29\x10\0\0\0\0\0\0\0"   # + an EDNS OPT
    m = w.parse_untrusted(q)
    assert (m.id, m.is_response, m.question.qtype, m.question.qclass) == (0x1234, False, 28, 1)
    assert m.question.name == b"\x06secret\x03vpn\x04test\x00"        # lower-cased for matching
    r = w.reply(q, m, w.SERVFAIL)
    rm = w.parse_untrusted(r)
    assert rm.id == 0x1234 and rm.is_response and w.rcode(r) == w.SERVFAIL and rm.flags & w.RD
    assert struct.unpack_from("!HHH", r, 6) == (0, 0, 0) and r.endswith(q[12:m.question_end])
    assert w.rcode(w.formerr(7)) == w.FORMERR and w.with_id(q, 9)[:2] == b"\0\x09"


@pytest.mark.parametrize("data, why", [
    (b"\x12\x34\x01", "shorter than a DNS header"),
    (struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\0\0\1\0\1", "QDCOUNT 2"),
    (struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0), "QDCOUNT 0"),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1", "compressed"),     # points at itself
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05ab", "past the message"),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\0\0", "question truncated"),
    (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
     + b"\x3f" + b"a" * 63 + b"\0\0\1\0\1", "longer than 255"),
])
def test_malformed_messages_are_bad_dns(data, why):
    with pytest.raises(w.BadDns, match=why):
        w.parse_untrusted(data)


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_bad_dns(data):
    try:
        m = w.parse_untrusted(data)
    except w.BadDns:
        return
    assert 12 < m.question_end <= len(data) and len(m.question.name) <= 255
