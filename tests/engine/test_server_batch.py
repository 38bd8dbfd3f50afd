"""The server answers a batch of a client's packets with one reply carrying all their ACKs
(ServerDispatcher.begin_batch/end_batch, as the gateway calls them around each read), instead of a
lone ACK for the first packet of a flight followed by the reply: one datagram less per cut flight
(our client's ClientHello with its post-quantum key share takes two packets)."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.opcodes import Op
from appliance.openvpn.packet import decode_body_untrusted
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401 - pki is a fixture

ADDR = ("198.18.0.7", 40007)


def _fresh_acks(answer, ids) -> list[int]:
    """The acks an answer gives for the first time: every packet also acks again, in its room,
    what was acked lately (reliable.py RECENT_ACKS_KEPT, as 2.6's ack_mru) -- ids below these."""
    return sorted({a for _op, acks, _m in answer for a in acks} - set(range(min(ids))))


def _decoded(packets) -> list[tuple[int, list[int], int | None]]:
    out = []
    for p in packets:
        op, _sid, body = wrapping.PlainWrapper().unwrap_untrusted(bytes(p), 0.0)
        cb = decode_body_untrusted(op >> 3, body)
        out.append((op >> 3, list(cb.acks), cb.msg_id))
    return out


def _to_the_client_hello(pki):  # noqa: F811
    """A dispatcher and a client (protection none, so packets decode in the clear) up to the
    client's ClientHello, which must take several packets for the test to mean anything."""
    d = _server(pki, protection="none")
    c = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    for p in c.take_outgoing():                    # the client's hard reset
        d.receive(p, ADDR, 0.5)
    for p, _a in d.take_outgoing():                # the server's
        c.receive(p, 0.5)
    hello = [bytes(p) for p in c.take_outgoing()]
    ids = [m for _op, _acks, m in _decoded(hello) if m is not None]
    assert len(ids) >= 2, f"the ClientHello should take two packets or more here, took {len(ids)}"
    return d, c, hello, ids


def test_a_flight_read_in_one_batch_gets_one_reply_with_its_acks(pki):  # noqa: F811
    d, c, hello, ids = _to_the_client_hello(pki)
    d.begin_batch()
    for p in hello:
        d.receive(p, ADDR, 0.5)
    assert d.take_outgoing() == [], "nothing is sent before the batch ends"
    d.end_batch(0.5)
    sent = [p for p, a in d.take_outgoing() if a == ADDR]
    answer = _decoded(sent)
    assert answer, "the server answered the ClientHello"
    assert all(op != Op.ACK_V1 for op, _acks, _m in answer), f"a lone ACK went out: {answer}"
    assert set(ids) <= set(answer[0][1]), f"the first reply carries every ACK: {answer[0]}"
    for p in sent:
        c.receive(p, 0.5)
    _pump(d, [(c, ADDR)])                          # and the handshake completes from there
    assert _up(c)


def test_without_a_batch_the_first_packet_gets_a_lone_ack(pki):  # noqa: F811
    """What the batch saves (and what a caller that does not batch still gets: correct, one
    datagram more)."""
    d, c, hello, ids = _to_the_client_hello(pki)
    for p in hello:
        d.receive(p, ADDR, 0.5)
    sent = [p for p, a in d.take_outgoing() if a == ADDR]
    answer = _decoded(sent)
    assert answer[0][0] == Op.ACK_V1 and answer[0][2] is None, answer[0]
    assert _fresh_acks(answer, ids) == sorted(ids)
    for p in sent:
        c.receive(p, 0.5)
    _pump(d, [(c, ADDR)])
    assert _up(c)


def test_a_batch_over_several_clients_answers_each(pki):  # noqa: F811
    """Clients whose packets share a read each get their own reply, and a session that raises
    while its batch is flushed is reported for that client only."""
    d = _server(pki, protection="none")
    addrs = [("198.18.0.8", 40008), ("198.18.0.9", 40009)]
    cs = [_client(pki, pki["clients"][i + 1], wrapping.PlainWrapper) for i in range(2)]
    for c, a in zip(cs, addrs):
        for p in c.take_outgoing():
            d.receive(p, a, 0.5)
    for p, a in d.take_outgoing():
        cs[addrs.index(a)].receive(p, 0.5)
    hellos = [(bytes(p), a) for c, a in zip(cs, addrs) for p in c.take_outgoing()]
    d.begin_batch()
    for p, a in hellos:
        d.receive(p, a, 0.5)

    def boom(now):
        raise RuntimeError("flush bug")
    d.by_addr[addrs[1]].session.end_batch = boom    # our bug, in one session
    d.end_batch(0.5)
    errors = d.take_internal_errors()
    assert [rec.addr for rec, _e in errors] == [addrs[1]]
    got = {a for _p, a in d.take_outgoing()}
    assert got == {addrs[0]}, got


def test_a_client_refused_within_a_batch_still_hears_auth_failed(pki):  # noqa: F811
    """A session that a packet of the batch ends (here ccd-exclusive without a ccd file) is
    released by the dispatcher before the batch ends: its AUTH_FAILED must go out at once."""
    from appliance.openvpn import events as ev
    d = _server(pki, protection="none", ccd=lambda cn: None, ccd_exclusive=True)
    c = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    now = 0.5
    for _ in range(20):                            # both ends read whole batches, as the gateways do
        moved = 0
        d.begin_batch()
        for p in c.take_outgoing():
            d.receive(p, ADDR, now)
            moved += 1
        d.end_batch(now)
        got = d.take_outgoing()
        c.begin_batch()
        for p, _a in got:
            c.receive(p, now)
            moved += 1
        c.end_batch(now)
        c.settle(now)
        if not moved or c.closed:
            break
    assert any(isinstance(e, ev.AuthFailed) for e in c.events), list(c.events)
    assert d.stats.get("handshake failed") == 1
