"""ping-restart's timer and the control channel, as OpenVPN 2.6 (forward.c
process_incoming_link_part1: when tls_pre_decrypt says a control packet passed its checks --
tls-auth/tls-crypt, the session id, the source -- event_timeout_reset(ping_rec_interval)): a
peer whose control packets still arrive is not silent, on either end, even when no data packet
comes (a long renegotiation over a path that drops data, a peer whose data key is not up). 2.6
resets the timer before it reads the ACK record (ret = true is set first), so a packet whose
ACKs name another session resets it too, then is dropped."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture

DATA_OPS = (6, 9)


class DataDroppingLink(Link):
    """Control packets pass; data packets (pings included) are lost both ways."""

    def _mangle(self, pkts: list) -> list:
        return super()._mangle([p for p in pkts if p[0] >> 3 not in DATA_OPS])


def _closed(sess):
    return [e for e in sess.events if isinstance(e, ev.SessionClosed)]


def test_control_packets_alone_keep_both_ends_from_ping_restart(pki):
    """Renegotiations every 5 s (reneg-sec) and nothing else: ping-restart 20 never fires, on
    the client nor on the server, for a minute."""
    c, s, _ = make_pair(pki, ping=0, ping_restart=20, reneg_sec=5, hand_window=60, tran_window=300)
    link = DataDroppingLink(c, s)
    link.run(lambda: up(c, s))
    t0 = link.now
    link.run(lambda: link.now > t0 + 60 or c.closed or s.closed, max_time=t0 + 60)
    assert not _closed(c) and not _closed(s), (_closed(c), _closed(s))
    assert c.send_key.key_id >= 3, "the renegotiations (the only packets) did not happen"


def test_without_them_ping_restart_fires(pki):
    """The same pair with nothing at all on the link restarts at ping-restart (the test above
    can fail)."""
    c, s, _ = make_pair(pki, ping=0, ping_restart=20, reneg_sec=0, hand_window=60, tran_window=300)
    link = DataDroppingLink(c, s)
    link.run(lambda: up(c, s))
    t0 = link.now
    link.run(lambda: c.closed and s.closed, max_time=t0 + 30)
    for sess in (c, s):
        closed = _closed(sess)
        assert closed and closed[0].restart and "ping-restart" in closed[0].reason, closed


def test_a_control_packet_with_a_foreign_ack_resets_the_timer_then_is_dropped(pki):
    c, s, _ = make_pair(pki, ping=0, ping_restart=20, reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    t0 = link.now
    body = encode_body([1], b"\x01" * 8, None)                  # acks a session that is not s's
    bad = c.wrapper.wrap(op_byte(Op.ACK_V1, 0), c.own_sid, body, t0 + 15)
    before = sum(s.stats.values())
    assert s.receive(bad, t0 + 15) == []
    assert sum(s.stats.values()) > before                     # dropped, counted
    s.handle_timer(t0 + 25)                                   # 20 s after the handshake ...
    assert not _closed(s), _closed(s)                         # ... but 10 s after that packet
    s.handle_timer(t0 + 36)
    assert _closed(s) and "ping-restart" in _closed(s)[0].reason
