"""appliance/tun/rtnl.py's reply parsing without a kernel: any bytes are parsed within bounds
(never an exception other than the documented ones), answers to other requests are skipped, and
errors become NetlinkError with the errno. The kernel behaviour itself: tests/unit/test_rtnl.py."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.tun import rtnl
from appliance.tun.rtnl import NetlinkError, Rtnl


def _msg(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    n = 16 + len(body)
    return struct.pack("=IHHII", n, kind, flags, seq, 0) + body + b"\0" * ((-n) % 4)


class _Sock:
    def __init__(self, replies: list[bytes]) -> None:
        self.replies, self.sent = list(replies), []

    def send(self, b: bytes) -> int:
        self.sent.append(b)
        return len(b)

    def recv(self, n: int) -> bytes:
        return self.replies.pop(0)


def _rtnl(replies: list[bytes]) -> Rtnl:
    nl = Rtnl.__new__(Rtnl)
    nl.sock, nl.seq = _Sock(replies), 0
    return nl


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_within_bounds(data):
    for _t, _f, _s, msg in Rtnl._messages(data):
        rtnl._attrs(msg, 0)
    rtnl._attrs(data, 0)


def test_an_ack_ends_a_request_and_an_error_carries_its_errno():
    assert _rtnl([_msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", 0))]).request(rtnl.RTM_NEWROUTE, rtnl.NLM_F_ACK, b"") == []
    with pytest.raises(NetlinkError) as e:
        _rtnl([_msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", -17))]).request(rtnl.RTM_NEWROUTE, rtnl.NLM_F_ACK, b"")
    assert e.value.code == 17
    with pytest.raises(NetlinkError):
        _rtnl([_msg(rtnl.NLMSG_ERROR, 1, b"")]).request(rtnl.RTM_NEWROUTE, rtnl.NLM_F_ACK, b"")   # truncated


def test_a_dump_collects_parts_until_done_and_skips_other_sequence_numbers():
    body = struct.pack("=BBBBI", 2, 24, 0, 0, 5) + rtnl._attr(rtnl.IFA_ADDRESS, bytes([198, 18, 0, 9]))
    nl = _rtnl([_msg(rtnl.RTM_NEWADDR, 7, body, rtnl.NLM_F_MULTI)                # late answer of another request
                + _msg(rtnl.RTM_NEWADDR, 1, body, rtnl.NLM_F_MULTI),
                _msg(rtnl.RTM_NEWADDR, 1, body[:6], rtnl.NLM_F_MULTI)             # too short: skipped
                + _msg(rtnl.NLMSG_DONE, 1, struct.pack("=i", 0), rtnl.NLM_F_MULTI)])
    assert nl.addrs() == [(2, "198.18.0.9", 24, 5)]


def test_route_get_reads_gateway_and_interface():
    body = (struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 1, 0) + rtnl._attr(rtnl.RTA_OIF, struct.pack("=I", 3))
            + rtnl._attr(rtnl.RTA_GATEWAY, bytes([198, 18, 0, 1])))
    assert _rtnl([_msg(rtnl.RTM_NEWROUTE, 1, body)]).route_get("198.18.9.9") == ("198.18.0.1", 3)
    bad_gw = body[:-8] + rtnl._attr(rtnl.RTA_GATEWAY, b"\1\2")      # wrong length: no gateway
    assert _rtnl([_msg(rtnl.RTM_NEWROUTE, 1, bad_gw)]).route_get("198.18.9.9") == (None, 3)
