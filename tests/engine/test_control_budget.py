"""An authenticated peer flooding the control channel with tiny TLS records or messages.

One 1.2 KB control packet holds ~50 TLS records or ~550 NUL-separated text messages, each a
round of Python on the receiving end (~1-2 ms a packet, the cost of ~200 data packets): a client
sending them at under 1 MB/s kept the server's one core busy for all its clients. What the peer
may make a session read is now bounded (control.py CONTROL_BURST / CONTROL_RATE); past it, that
session ends. Honest traffic never comes near (a PUSH_REQUEST a second, renegotiations, pushes).
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn.control import CONTROL_BURST, CONTROL_RATE
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture


def _send_raw(link, c, s, blobs) -> None:
    """The hostile client: TLS output queued straight onto its control channel, every message
    taken as acknowledged so nothing waits for the server."""
    ks = c.keys[0]
    for b in blobs:
        c._queue_tls(ks, b)
    for _ in range(10_000):
        c._flush(link.now)
        for p in c.take_outgoing():
            s.receive(p, link.now)
            s.take_outgoing()
        ks.reliable.inflight.clear()
        if not ks.reliable.queue:
            return


def _closed_reason(s) -> str:
    return next((e.reason for e in s.events if isinstance(e, ev.SessionClosed)), "")


def test_a_client_sending_hundreds_of_messages_per_record_ends_its_session(pki):  # noqa: F811
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    tls = c.keys[0].tls
    _send_raw(link, c, s, [tls.send_message(b"x\0" * 540) for _ in range(100)])
    assert s.closed and "control channel flood" in _closed_reason(s)
    read = s.stats.get("warnings suppressed", 0) + 10        # unknown messages the server went through
    assert read <= CONTROL_BURST, f"{read} junk messages read of the 54000 sent"


def test_a_client_sending_empty_tls_records_ends_its_session(pki):  # noqa: F811
    c, s, _ = make_pair(pki, proto="tcp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    tls = c.keys[0].tls
    _send_raw(link, c, s, [b"".join(tls.send_message(b"\0") for _ in range(48)) for _ in range(100)])
    assert s.closed and "control channel flood" in _closed_reason(s)


def test_messages_at_an_honest_rate_never_end_the_session(pki):  # noqa: F811
    """A PUSH_REQUEST a second (a client waiting for a deferred push), for much longer than the
    burst: the budget refills faster."""
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, ping=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    tls = c.keys[0].tls
    per_second = int(CONTROL_RATE / 2) - 1                   # each costs 2 (its record and itself)
    for _ in range(3 * CONTROL_BURST // per_second):
        link.now += 1.0
        _send_raw(link, c, s, [tls.send_message(b"PUSH_REQUEST\0") for _ in range(per_second)])
        assert not s.closed, _closed_reason(s)


def _lone_acks(link, c, s, n: int) -> None:
    """The hostile client: `n` control packets that carry nothing but an ACK (of the server's
    first message, acknowledged long ago), each a fresh authenticated packet."""
    rel = c.keys[0].reliable
    for _ in range(n):
        rel.pending_acks.append(0)
        c._flush(link.now)
        for p in c.take_outgoing():
            s.receive(p, link.now)
            s.take_outgoing()
        if s.closed:
            return


def test_a_client_flooding_lone_acks_ends_its_session(pki):  # noqa: F811
    """Lone ACKs cost the server ~2.4x a data packet each and were never charged: a client
    could keep the core busy with them for everyone. Now each costs one."""
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    _lone_acks(link, c, s, 3 * CONTROL_BURST)
    assert s.closed and "control channel flood" in _closed_reason(s), _closed_reason(s)


def test_lone_acks_at_an_honest_rate_never_end_the_session(pki):  # noqa: F811
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, ping=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    for _ in range(3 * CONTROL_BURST // 32):
        link.now += 1.0
        _lone_acks(link, c, s, 32)
        assert not s.closed, _closed_reason(s)


def test_a_client_resending_a_message_the_server_had_ends_its_session(pki):  # noqa: F811
    """The same for one message sent again and again under fresh packet ids, never taking the
    server's ACK (each copy is unwrapped, checked and acknowledged anew, and gives TLS nothing)."""
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    ks = c.keys[0]
    c._queue_tls(ks, ks.tls.send_message(b"PUSH_REQUEST\0"))
    for _ in range(3 * CONTROL_BURST):
        for m in ks.reliable.inflight.values():
            m.deadline = link.now                  # due again at once
        c._flush(link.now)
        for p in c.take_outgoing():
            s.receive(p, link.now)
            s.take_outgoing()
        if s.closed:
            break
    assert s.closed and "control channel flood" in _closed_reason(s), _closed_reason(s)
