"""Our bug in a restarting client's pending session (the one that waits under the address of the
client it would replace, ServerDispatcher.pending) ends that pending session at once, and only
it: the established session at the same address goes on (tests/gateway/test_control_bug_ends_session.py
has the same for an established session)."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture


def test_a_pending_session_whose_packet_raises_ends_and_the_established_one_stays(pki):  # noqa: F811
    d = _server(pki, "none")
    addr = ("198.18.0.30", 1194)
    old = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    _pump(d, [(old, addr)])
    old_rec = d.clients[0]
    new = _client(pki, pki["clients"][0], wrapping.PlainWrapper)
    pending = None
    for _ in range(10):                       # the cookie exchange, until the pending session exists
        for p in new.take_outgoing():
            d.receive(p, addr, 1.0)
        for p, _a in d.take_outgoing():
            new.receive(p, 1.0)
        pending = d.pending.get(addr)
        if pending is not None:
            break
    assert pending is not None
    calls = []

    def receive(packet, now):
        calls.append(packet)
        raise RuntimeError("bug in the pending session")
    pending.session.receive = receive
    packet = bytes([op_byte(Op.CONTROL_V1, 0)]) + new.own_sid + encode_body([], None, 5, b"x")
    d.begin_batch()
    for _ in range(3):                        # one read, three packets of the pending session
        d.receive(packet, addr, 1.1)
    d.end_batch(1.1)
    assert len(calls) == 1 and not pending.alive and d.pending.get(addr) is None
    assert [r for r, _e in d.take_internal_errors()] == [pending]
    assert old_rec.alive and d.by_addr.get(addr) is old_rec
    assert len(d.receive(old.encrypt(_icmp(old.pushed.ifconfig[0], "198.19.0.1")), addr, 1.2)[1]) == 1
