"""At most one renegotiation the peer started in negotiation at a time per session (OpenVPN 2.6
keeps one key in negotiation: ssl.c tls_pre_decrypt makes a new primary key for a peer's soft
reset only once the primary has generated its keys, and drops another key id as out of sync).

A hostile authenticated client that sent soft resets for key ids 1..6 in a row had the server run
six TLS handshakes for it at once (all completed); now the server answers the first and drops
the rest, counted. Both ends renegotiating at the same moment still meet on one key (same id: the
peer's reset lands in our key state; different ids, each answering the other's:
tests/engine/test_failed_renegotiation.py)."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn.opcodes import Op
from tests.engine.test_memory_link import Link, make_pair, payloads, pki, up  # noqa: F401 - pki: the fixture


def _negotiating(sess) -> int:
    return sum(1 for k in sess.keys.values() if k.negotiating)


def _tunnel_works(link, c, s, seed=0) -> bool:
    data = payloads(5, seed)
    return link.send(c, s, data) == data and link.send(s, c, data) == data


def test_a_client_starting_soft_resets_in_a_row_gets_one_negotiation(pki):
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, hand_window=60, tran_window=300)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    for key_id in range(1, 7):                    # what a hostile client sends: six soft resets at once
        ks = c._new_key_state(key_id, link.now)
        ks.ours = True
        ks.reliable.enqueue(Op.CONTROL_SOFT_RESET_V1, b"")
    c.next_key_id = 7
    c.handle_timer(link.now)                      # sends them
    most = 0
    for _ in range(400):
        if not link.step():
            break
        most = max(most, _negotiating(s))
    assert most == 1, f"{most} key states negotiating at once on the server"
    assert not s.closed
    assert s.stats.get("soft reset while a renegotiation the peer started is under way", 0) >= 5, s.stats
    renegotiated = [e.key_id for e in s.events if isinstance(e, ev.KeyRenegotiated)]
    assert renegotiated == [1], renegotiated
    assert s.send_key.key_id == 1 and c.send_key.key_id == 1
    assert _tunnel_works(link, c, s)


def test_both_ends_renegotiating_at_once_meet_on_one_key(pki):
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, hand_window=10, tran_window=300)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    for _ in range(3):
        before = c.send_key.key_id
        assert c.renegotiate(link.now) is None and s.renegotiate(link.now) is None
        t0 = link.now
        link.run(lambda: c.closed or s.closed or (c.send_key.key_id != before
                                                    and s.send_key.key_id == c.send_key.key_id
                                                    and not _negotiating(c) and not _negotiating(s)),
                 max_time=t0 + 15)
        assert not c.closed and not s.closed
        assert c.send_key.key_id == s.send_key.key_id == before + 1
        assert _tunnel_works(link, c, s, before)
    for sess in (c, s):
        assert "soft reset while a renegotiation the peer started is under way" not in sess.stats
        assert "renegotiation failed" not in sess.stats
