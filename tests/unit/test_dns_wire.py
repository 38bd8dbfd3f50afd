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


def edns_query(mid: int, name: str, size: int, qtype: int = 1) -> bytes:
    """A query as dig/glibc send it with EDNS: ARCOUNT 1, an OPT record advertising `size`."""
    q = w.encode_query(mid, name, qtype)
    return q[:10] + b"\0\1" + q[12:] + b"\0" + struct.pack("!HHIH", w.T_OPT, size, 0, 0)


@pytest.mark.parametrize("data, limit", [
    (w.encode_query(1, "a.test"), 512),                               # no EDNS: RFC 1035's 512
    (edns_query(1, "a.test", 1232), 1232),
    (edns_query(1, "a.test", 4096), 1232),                            # capped at UDP_MAX
    (edns_query(1, "a.test", 1232), 1232),
    (edns_query(1, "a.test", 1000), 1000),
    (edns_query(1, "a.test", 100), 512),                              # below 512 counts as 512
    (edns_query(1, "a.test", 4096)[:-3], 512),                        # OPT cut short: no EDNS
    # an answer record (compressed owner) before the OPT is skipped
    (w.encode_query(1, "a.test")[:6] + b"\0\1\0\0\0\1" + w.encode_query(1, "a.test")[12:]
     + b"\xc0\x0c\0\1\0\1\0\0\0\0\0\4\1\2\3\4" + b"\0" + struct.pack("!HHIH", w.T_OPT, 1100, 0, 0), 1100),
    # an OPT in the answer section is no EDNS
    (w.encode_query(1, "a.test")[:6] + b"\0\1\0\0\0\0" + w.encode_query(1, "a.test")[12:]
     + b"\0" + struct.pack("!HHIH", w.T_OPT, 2048, 0, 0), 512),
])
def test_udp_limit_of_a_query(data, limit):
    assert w.udp_limit_untrusted(data, w.parse_untrusted(data)) == limit


@given(st.binary(max_size=600))
def test_udp_limit_of_any_bytes_is_512_to_1232_and_never_raises(tail):
    q = w.encode_query(1, "a.test")
    data = q[:6] + tail[:6].ljust(6, b"\0") + q[12:] + tail[6:]
    assert 512 <= w.udp_limit_untrusted(data, w.parse_untrusted(data)) <= 1232


def test_truncated_reply_is_header_and_question_with_tc():
    q = edns_query(0x4242, "big.test", 1232)
    m = w.parse_untrusted(q)
    t = w.truncated(q, m, 0x8183)                       # the upstream's flags (RD RA, NXDOMAIN) kept
    tm = w.parse_untrusted(t)
    assert tm.id == 0x4242 and tm.truncated and tm.is_response and w.rcode(t) == w.NXDOMAIN
    assert struct.unpack_from("!HHHH", t, 4) == (1, 0, 0, 0) and t == t[:12] + q[12:m.question_end]


def test_udp_limit_reads_only_a_querys_first_records():
    """A LAN host's 4 KiB query of 338 records before its OPT was walked whole for its EDNS size
    (~80 us each, at 100 queries a second per address): now only the first QUERY_RECORDS are
    looked at, and an OPT behind them counts as no EDNS (512: the safe side)."""
    q = w.encode_query(1, "a.test")
    filler = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 0)
    opt = b"\0" + struct.pack("!HHIH", w.T_OPT, 1232, 0, 0)
    for before, limit in ((0, 1232), (w.QUERY_RECORDS - 1, 1232), (w.QUERY_RECORDS, 512), (338, 512)):
        data = q[:6] + struct.pack("!HHH", 0, 0, before + 1) + q[12:] + filler * before + opt
        assert w.udp_limit_untrusted(data, w.parse_untrusted(data)) == limit, before
