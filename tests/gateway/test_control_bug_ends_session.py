"""Our bug in a session's control packet ends that session (fail closed), not only the packet.

The UDP server dropped a packet whose handling raised and went on with the session as the
exception left it: a handshake marked done whose peer checks had raised then read the peer's
next control messages as a checked peer's (tests/engine/test_unreadable_peer_cert.py). A session
in an unknown state must not go on; the other clients must not notice."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_faults import record_of, served, two_clients_served


def test_a_control_packet_that_raises_in_its_session_ends_that_session_only(pki, monkeypatch):
    w = two_clients_served(pki)
    rec = record_of(w, 0)
    session = rec.session
    real = session.receive

    def receive(packet, now):
        if packet[0] >> 3 not in (6, 9):            # not data (P_DATA_V1/V2): a control packet
            raise RuntimeError("bug in this session's control processing")
        return real(packet, now)
    monkeypatch.setattr(session, "receive", receive)
    c = w.clients[0]
    c.conn.session.renegotiate(w.clock.t)              # the client sends a control packet (soft reset)
    c._after_engine(c.conn)                            # noqa: SLF001 - sent now, not at its next timer
    w.run_for(2)
    assert w.server.faults.counts.get("internal error", 0) >= 1
    assert rec not in w.server.d.clients and not rec.alive
    served(w, 1)


def test_the_packets_after_it_in_the_same_read_do_not_reach_that_session(pki, monkeypatch):
    """Ended at once, not at the end of the batch: a datagram batch (or a TCP read) may hold the
    peer's next control packets right behind the one that raised."""
    from appliance.openvpn.opcodes import Op, op_byte
    from appliance.openvpn.packet import encode_body
    w = World()
    w.add_server(server_conf(pki, protection="none"))
    w.add_client(client_conf(pki, "client0", protection="none"))
    served(w, 0)
    rec = w.server.d.clients[0]
    calls = []

    def receive(packet, now):
        calls.append(packet)
        raise RuntimeError("bug in this session's control processing")
    monkeypatch.setattr(rec.session, "receive", receive)
    packet = bytes([op_byte(Op.CONTROL_V1, 0)]) + rec.session.peer_sid + encode_body([], None, 7, b"x")
    d = w.server.d
    d.begin_batch()
    for _ in range(3):                                  # one read, three packets of that session
        d.receive(packet, rec.addr, w.clock.t)
    d.end_batch(w.clock.t)
    assert len(calls) == 1 and not rec.alive
    assert [r for r, _e in d.take_internal_errors()] == [rec]
