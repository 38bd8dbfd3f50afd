"""Packets that arrive together are answered together (Session.begin_batch/end_batch): the ACKs of
a flight ride on the reply instead of going out alone ahead of it, in memory."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.opcodes import Op
from appliance.openvpn.packet import decode_body_untrusted
from tests.engine.test_memory_link import make_pair, pki, up, Link  # noqa: F401 - pki is a fixture


def _to_the_server_flight(pki):  # noqa: F811
    c, s, _ = make_pair(pki, protection="none")
    c.prime()
    for p in c.take_outgoing():                # the hard resets
        s.receive(bytes(p), 0.0)
    for p in s.take_outgoing():
        c.receive(bytes(p), 0.0)
    for p in c.take_outgoing():                # the ClientHello; the server answers with its flight
        s.receive(bytes(p), 0.0)
    flight = [bytes(p) for p in s.take_outgoing()]
    ids = []
    for p in flight:
        op, _sid, body = wrapping.PlainWrapper().unwrap_untrusted(p, 0.0)
        cb = decode_body_untrusted(op >> 3, body)
        if cb.msg_id is not None:
            ids.append(cb.msg_id)
    assert len(ids) >= 2, "the server's TLS flight should take several packets"
    return c, s, flight, ids


def _answer(c) -> list[tuple[int, list[int], int | None]]:
    out = []
    for p in c.take_outgoing():
        op, _sid, body = wrapping.PlainWrapper().unwrap_untrusted(bytes(p), 0.0)
        cb = decode_body_untrusted(op >> 3, body)
        out.append((op >> 3, cb.acks, cb.msg_id))
    return out


def test_a_flight_read_in_one_batch_is_acked_on_the_reply(pki):  # noqa: F811
    c, s, flight, ids = _to_the_server_flight(pki)
    c.begin_batch()
    for p in flight:
        c.receive(p, 0.0)
    assert c.take_outgoing() == [], "nothing is wrapped before the batch ends"
    c.end_batch(0.0)
    answer = _answer(c)
    assert all(op != Op.ACK_V1 for op, _a, _m in answer), answer
    assert sorted(a for _op, acks, _m in answer for a in acks) == sorted(ids)
    assert answer[0][2] is not None and set(ids) <= set(answer[0][1])
    link = Link(c, s)                          # and the handshake goes on from there
    for p in [bytes(x) for x in c.take_outgoing()]:
        s.receive(p, 0.0)
    link.run(lambda: up(c, s))
    assert up(c, s)


def test_the_same_flight_read_packet_by_packet_sends_lone_acks_first(pki):  # noqa: F811
    """What begin_batch avoids (and what a caller without it still gets: correct, one more packet)."""
    c, s, flight, ids = _to_the_server_flight(pki)
    for p in flight:
        c.receive(p, 0.0)
    answer = _answer(c)
    assert answer[0][0] == Op.ACK_V1 and answer[0][2] is None
    assert sorted(a for _op, acks, _m in answer for a in acks) == sorted(ids)
