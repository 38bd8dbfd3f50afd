"""Control packets far larger than any peer sends, held out of order.

The reliability layer keeps up to 11 messages past a gap until the gap is filled. Nothing
bounded their size: on TCP (and over UDP with IP fragments) a control packet may be ~64 KB,
so one key state held ~700 KB for a peer that never fills the gap -- a connected client with
its 8 key ids (lame ducks keep their reliability layer until tran-window) ~5.6 MB, and the 256
handshakes in progress a server admits ~180 MB. OpenVPN drops a control packet larger than
its frame buffer ("Incoming control channel packet too big"). Now what is held out of order is
bounded in bytes (reliable.py RECV_BUFFER_BYTES); a message over it is not acknowledged, so an
honest peer resends it once the gap is filled.
"""
from __future__ import annotations

from appliance.openvpn.opcodes import Op
from appliance.openvpn.reliable import RECV_BUFFER_BYTES, ReliableChannel
from appliance.openvpn.packet import encode_body
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture


def _held(s) -> int:
    return sum(len(p) for ks in s.keys.values() for _op, p in ks.reliable.recv_buffer.values())


def test_out_of_order_control_messages_held_for_a_client_are_bounded_in_bytes(pki):  # noqa: F811
    c, s, _ = make_pair(pki, proto="tcp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    ks = c.keys[0]
    gap = ks.reliable.next_send_id                 # never sent: everything after it waits
    for i in range(1, 12):
        body = encode_body([], None, gap + i, bytes(60_000))
        s.receive(c.wrapper.wrap(Op.CONTROL_V1 << 3, c.own_sid, body, link.now), link.now)
    assert not s.closed
    assert _held(s) <= RECV_BUFFER_BYTES, f"{_held(s)} bytes held for one key state"


def test_a_message_not_held_is_not_acknowledged_and_goes_through_when_resent():
    r = ReliableChannel()
    big = bytes(RECV_BUFFER_BYTES // 2 + 1)
    assert r.receive(1, 4, big) == [] and r.receive(2, 4, big) == []
    assert 1 in r.recv_buffer and 2 not in r.recv_buffer
    assert r.take_acks(8) == [1]                   # 2 was not taken: the peer resends it
    assert [m for m in r.receive(0, 4, b"a")] == [(4, b"a"), (4, big)]
    assert [m for m in r.receive(2, 4, big)] == [(4, big)]
    assert r.take_acks(8) == [0, 2, 1]               # the new ones, then 1 again (RECENT_ACKS_KEPT)
