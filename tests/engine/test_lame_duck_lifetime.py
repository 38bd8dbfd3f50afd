"""How long the old key (the lame duck) decrypts after a renegotiation: as OpenVPN 2.6 (ssl.c
key_state_soft_reset sets the old key's `must_die` to now + tran-window the moment the soft reset
is sent or received; lame_duck_must_die frees it then), tran-window counts from the soft reset,
not from the moment the new key took over. Before, ours counted from the switch: a renegotiation
whose handshake took a while (lost control packets, a slow auth) kept the old key that much longer."""
from __future__ import annotations

from tests.engine.test_failed_renegotiation import DroppingLink
from tests.engine.test_memory_link import make_pair, payloads, pki, up  # noqa: F401 - pki: the fixture

TRAN = 20.0
SLOW = 8.0          # the renegotiation's handshake is held up this long (control packets lost)


def _slow_renegotiation(pki, who: str):
    c, s, _ = make_pair(pki, reneg_sec=0, hand_window=60, tran_window=int(TRAN))
    link = DroppingLink(c, s)
    link.run(lambda: up(c, s))
    late = bytes(c.encrypt(payloads(1)[0]))       # sealed with key 0, delivered late
    t0 = link.now
    (c if who == "client" else s).renegotiate(t0)
    link.step()                                   # the soft reset reaches the peer at t0 ...
    link.blocked = True                           # ... then the handshake's packets are lost a while
    link.run(lambda: link.now >= t0 + SLOW, max_time=t0 + SLOW)
    link.blocked = False
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=t0 + SLOW + 10)
    assert c.send_key.key_id == 1 and s.send_key.key_id == 1
    assert link.now >= t0 + SLOW
    return c, s, link, t0, late


def _at(link, c, s, t: float) -> None:
    link.now = t
    c.handle_timer(t)
    s.handle_timer(t)


def test_old_key_dies_tran_window_after_the_soft_reset_not_after_the_switch(pki):
    for who in ("client", "server"):
        c, s, link, t0, late = _slow_renegotiation(pki, who)
        assert len(s.receive(late, link.now)) == 1, "the lame duck decrypts right after the switch"
        _at(link, c, s, t0 + TRAN - 1)
        assert s.recv_keys[0] is not None and c.recv_keys[0] is not None, "gone before tran-window"
        _at(link, c, s, t0 + TRAN + 0.5)          # tran-window after the soft reset, < after the switch
        assert s.recv_keys[0] is None and c.recv_keys[0] is None, who
        assert s.receive(late, link.now) == []
        # the new key carries the tunnel on
        data = payloads(3)
        assert link.send(c, s, data) == data and link.send(s, c, data) == data



def test_a_new_renegotiation_frees_the_lame_duck_of_the_one_before(pki):
    """One lame duck at a time, as 2.6 (key_state_soft_reset frees KS_LAME_DUCK): the key two
    renegotiations old stops decrypting at the second soft reset, long before its tran-window;
    the key in use until then stays a lame duck."""
    for who in ("client", "server"):
        c, s, _ = make_pair(pki, reneg_sec=0, hand_window=60, tran_window=300)
        link = DroppingLink(c, s)
        link.run(lambda: up(c, s))
        late0 = bytes(c.encrypt(payloads(1)[0]))          # key 0
        starter = c if who == "client" else s
        starter.renegotiate(link.now)
        link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=link.now + 10)
        late1 = bytes(c.encrypt(payloads(1, 1)[0]))       # key 1
        assert s.recv_keys[0] is not None
        link.now += 5
        starter.renegotiate(link.now)
        link.run(lambda: c.send_key.key_id == 2 and s.send_key.key_id == 2, max_time=link.now + 10)
        assert c.send_key.key_id == 2 and s.send_key.key_id == 2, who
        assert s.recv_keys[0] is None and c.recv_keys[0] is None, who
        assert s.receive(late0, link.now) == []
        assert len(s.receive(late1, link.now)) == 1, who   # the lame duck of the second renegotiation
