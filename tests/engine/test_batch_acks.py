"""The client's share of the time to the first packet, in memory: packets that arrive together are
answered together (Session.begin_batch/end_batch: the ACKs of a flight ride on the reply instead of
going out alone ahead of it), except the server's last messages before its push, which are acked
before they are read (Session.settle); the key-method message is made before the first packet;
the push is asked for only from a server that does not push unasked."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.opcodes import IV_PROTO_REQUEST_PUSH, Op
from appliance.openvpn.roles import IV_PROTO_CLIENT, PUSH_REQUEST_FIRST
from appliance.openvpn.packet import decode_body_untrusted
from tests.engine.test_memory_link import make_pair, pki, up, Link  # noqa: F401 - pki is a fixture


def _fresh_acks(answer, ids) -> list[int]:
    """The acks an answer gives for the first time: every packet also acks again, in its room,
    what was acked lately (reliable.py RECENT_ACKS_KEPT, as 2.6's ack_mru) -- ids below these."""
    return sorted({a for _op, acks, _m in answer for a in acks} - set(range(min(ids))))


def _msg_ids(packets) -> list[int]:
    """The reliable message ids of unwrapped (protection `none`) control packets."""
    ids = []
    for p in packets:
        op, _sid, body = wrapping.PlainWrapper().unwrap_untrusted(p, 0.0)
        cb = decode_body_untrusted(op >> 3, body)
        if cb.msg_id is not None:
            ids.append(cb.msg_id)
    return ids


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
    ids = _msg_ids(flight)
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
    assert _fresh_acks(answer, ids) == sorted(ids)
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
    assert _fresh_acks(answer, ids) == sorted(ids)


def test_the_servers_last_messages_are_acked_before_they_are_read(pki):  # noqa: F811
    """OpenVPN's server pushes only once all it sent is acknowledged; its last messages before
    the push (TLS tickets, its key-method message) are therefore acked before we read them: in
    that one batch end_batch() asks for a send, the send holds only ACKs covering the batch, and
    settle() then reads the messages and the tunnel comes up. No other batch is held back."""
    c, s, _ = make_pair(pki, protection="none")
    c.prime()
    held = []
    for _ in range(30):
        for p in c.take_outgoing():
            s.receive(bytes(p), 0.0)
        batch = [bytes(p) for p in s.take_outgoing()]
        if not batch:
            break
        c.begin_batch()
        for p in batch:
            c.receive(p, 0.0)
        if c.end_batch(0.0):
            km_before = c.keys[0].remote_km
            held.append((_msg_ids(batch), _answer(c), km_before))
            c.settle(0.0)
            assert c.keys[0].remote_km is not None, "settle() reads the server's key-method message"
    assert len(held) == 1, held
    ids, first, km_before = held[0]
    assert km_before is None, "the batch held back is the one with the server's key-method message"
    assert first and all(op == Op.ACK_V1 and m is None for op, _a, m in first), first
    assert _fresh_acks(first, ids) == sorted(ids)
    assert up(c, s)


def test_the_first_key_method_message_is_made_by_prime_and_only_used_once(pki):  # noqa: F811
    c, s, _ = make_pair(pki, protection="tls-crypt")
    c.prime()
    made = c._km_made
    assert made is not None
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    assert c.keys[0].local_km is made[0], "key 0 sent the message prime() made"
    assert c._km_made is None
    assert s.keys[0].remote_km.random1 == made[0].random1


def _count_push_requests(s) -> list[float]:
    seen: list[float] = []
    orig = s.role.text_message

    def text_message(ks, text, now):
        if text.startswith("PUSH_REQUEST"):
            seen.append(now)
        return orig(ks, text, now)
    s.role.text_message = text_message
    return seen


def test_no_push_request_to_a_server_that_pushes_unasked(pki):  # noqa: F811
    """A 2.5+ server (ours too) pushes to a client announcing IV_PROTO_REQUEST_PUSH once the key
    exchange is done: the client does not ask, as OpenVPN 2.6's client does not."""
    c, s, _ = make_pair(pki, protection="tls-crypt")
    asked = _count_push_requests(s)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s) and asked == [] and link.now < PUSH_REQUEST_FIRST


def test_a_server_that_waits_to_be_asked_is_asked_after_a_quarter_second(pki):  # noqa: F811
    """A server that does not push unasked (2.4; here: a client not announcing request-push)
    still gets its PUSH_REQUEST, PUSH_REQUEST_FIRST after its key-method message."""
    c, s, _ = make_pair(pki, protection="tls-crypt")
    info = c.role._peer_info().replace(f"IV_PROTO={IV_PROTO_CLIENT}", f"IV_PROTO={IV_PROTO_CLIENT & ~IV_PROTO_REQUEST_PUSH}")
    c.role._peer_info = lambda: info
    asked = _count_push_requests(s)
    link = Link(c, s)
    link.run(lambda: up(c, s), max_time=5)
    assert up(c, s)
    assert len(asked) == 1 and PUSH_REQUEST_FIRST <= asked[0] < PUSH_REQUEST_FIRST + 0.1, asked
