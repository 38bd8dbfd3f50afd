"""review48e: a peer WITH keys that makes TLS fail on purpose at every renegotiation (junk TLS
records of its own on each new key) cannot keep a data key beyond what OpenVPN 2.6 allows a
failed renegotiation: the key in use lives until tran-window after the first failed attempt
began, then the session ends -- forge48's containment (each failure that renegotiation's only,
a new attempt at most every RECOVERY_EVERY) adds no loop, no key state, no timer beyond that.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import session as session_mod
from appliance.openvpn.keystate import KS
from tests.engine.test_memory_link import connected, pki  # noqa: F401 - the fixture
from tests.engine.test_session_security import _closed

JUNK = bytes.fromhex("1703030020") + bytes(32)      # a TLS record that is no record of the session
RENEG, TRAN = 20, 60


def _breaker(link, breaking, watched, also_active: bool):
    """Run the link; `breaking` sends junk on each new key state of `watched`'s as soon as it has
    one of its own (and, with `also_active`, on each active key: the first one's TLS broken at
    once, a recovery renegotiation follows). Returns (when the first renegotiation failed,
    the most key states `watched` held)."""
    broken: set = set()
    first_failure, most_keys = None, 0
    for _ in range(20000):
        if watched.closed or link.now > RENEG + 10 * TRAN:
            break
        for kid, ks in list(watched.keys.items()):
            mine = breaking.keys.get(kid)
            if mine is None or mine.tls is None or mine.tls_broken or (kid, ks.created) in broken:
                continue
            if ks.negotiating or (also_active and ks.phase == KS.ACTIVE):
                broken.add((kid, ks.created))
                breaking._queue_tls(mine, JUNK)
                if ks.negotiating:
                    # A hostile peer forgets its side at once (an honest one would wait out its
                    # hand-window before it takes the next soft reset): the junk goes out, then
                    # the key state is gone, so each new attempt is broken as soon as it comes.
                    link.step()
                    breaking.keys.pop(kid, None)
                    breaking.newest_key_id = next(iter(breaking.keys), None)
        most_keys = max(most_keys, len(watched.keys))
        if first_failure is None and watched.stats.get("renegotiation failed"):
            first_failure = link.now
        if not link.step():
            dls = [d for d in (link.c.next_deadline(), link.s.next_deadline()) if d is not None]
            if not dls:
                break
            link.now = max(link.now, min(dls))
            link.c.handle_timer(link.now)
            link.s.handle_timer(link.now)
    return first_failure, most_keys


@pytest.mark.parametrize("also_active", [False, True], ids=["renegotiations", "renegotiations-and-active-keys"])
def test_a_peer_breaking_every_renegotiation_keeps_its_key_no_longer_than_tran_window(pki, also_active):
    c, s, link = connected(pki, reneg_sec=RENEG, tran_window=TRAN)
    first, most_keys = _breaker(link, c, s, also_active)
    assert first is not None and first < (1 if also_active else RENEG + 5), (first, s.stats)
    assert not also_active or s.stats.get("TLS failed on an established key (its data channel kept)") == 1
    closed = _closed(s)
    assert s.closed and closed and "expired" in closed[0].reason, (link.now, s.stats)
    # The key in use ended tran-window after the first failed renegotiation began (2.6's lame
    # duck: must_die at the soft reset + transition-window), not later.
    assert link.now <= first + TRAN + 1, (link.now, first)
    assert s.send_key is None or s.send_key.key_id == 0
    assert most_keys <= 2, most_keys
    # Ours: a new attempt at most every RECOVERY_EVERY; the peer's own soft resets (each broken
    # too) answered at most at PEER_RENEG_EVERY's pace, as any peer's renegotiations are.
    ours = s.stats.get("renegotiation to replace a failed TLS", 0)
    assert 2 <= ours <= TRAN / session_mod.RECOVERY_EVERY + 2, s.stats
    assert s.stats.get("renegotiation failed", 0) <= TRAN / session_mod.PEER_RENEG_EVERY + ours + 2, s.stats


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("broken", ["server", "client"])
def test_a_broken_active_key_is_replaced_over_udp_and_tcp(pki, proto, broken):
    """The peer's junk on the active key (over TCP only the peer itself, or who hijacks the
    stream, can send it): the broken end keeps its data keys and its own soft reset -- the
    server's, or our client's -- replaces the key, over TCP as over UDP; nothing closes."""
    c, s, link = connected(pki, proto=proto)
    sender, victim = (c, s) if broken == "server" else (s, c)
    sender._queue_tls(sender.keys[0], JUNK)
    link.run(lambda: c.closed or s.closed or (s.send_key.key_id == 1 and c.send_key.key_id == 1), max_time=60)
    assert not c.closed and not s.closed, (_closed(c), _closed(s))
    assert victim.stats.get("TLS failed on an established key (its data channel kept)") == 1, victim.stats
    assert victim.stats.get("renegotiation to replace a failed TLS") == 1, victim.stats
    assert s.send_key.key_id == 1 and c.send_key.key_id == 1
    assert victim.keys[1].ours, "the renegotiation was not the broken end's own"
