"""An authenticated client (valid certificate, the tls-crypt key) attacking the server's other
clients through the data and control channels (lab/reliability/authattack.py measures the same
against a real server process).

What the operator checks: the attacker's packets under another client's peer-id or under key ids
of dead keys are never opened, never move the other client, never reach its tunnel and never make
a log line (they are counted); a control-channel flood ends the attacker's session only.
"""
from __future__ import annotations

import os

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.keystate import KS
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("aead_path")

EVIL, VICTIM = ("198.18.0.66", 4000), ("198.18.0.67", 5000)


def _two_clients(pki):  # noqa: F811
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(pki, "tls-crypt", static_key=key)
    mk = lambda: wrapping.TlsCryptWrapper(key, False)  # noqa: E731
    evil, victim = _client(pki, pki["clients"][2], mk), _client(pki, pki["clients"][3], mk)
    _pump(d, [(evil, EVIL), (victim, VICTIM)])
    assert _up(evil) and _up(victim)
    d.events.clear()
    return d, evil, victim


def _victim_works(d, victim, now: float) -> bool:
    """The victim's tunnel both ways, from its own address."""
    rec, pts = d.receive(victim.encrypt(_icmp(victim.pushed.ifconfig[0], "198.19.0.1")), VICTIM, now)
    if len(pts) != 1 or rec.addr != VICTIM:
        return False
    back = rec.session.encrypt(_icmp("198.19.0.1", victim.pushed.ifconfig[0]))
    return len(victim.receive(back, now)) == 1


def _relabel(packet: bytes, peer_id: int) -> bytes:
    return packet[:1] + peer_id.to_bytes(3, "big") + packet[4:]


def test_own_data_packets_relabelled_with_another_clients_peer_id_are_never_opened(pki):  # noqa: F811
    d, evil, victim = _two_clients(pki)
    vrec = d.route(victim.pushed.ifconfig[0])
    ping = _icmp(evil.pushed.ifconfig[0], "198.19.0.1")
    for i in range(500):
        # The attacker's own sealed packets (and random ones) under the victim's peer-id.
        p = _relabel(evil.encrypt(ping), vrec.peer_id) if i % 2 else \
            _relabel(bytes([evil.encrypt(ping)[0]]) + os.urandom(99), vrec.peer_id)
        rec, pts = d.receive(p, EVIL, 1.0 + i / 1000)
        assert pts == []
    assert vrec.addr == VICTIM and d.by_addr.get(VICTIM) is vrec and EVIL not in (d.pending or {})
    assert not d.events, "no log line per forged packet"
    assert d.drop_counters().get("data packet failed authentication", 0) >= 500
    assert _victim_works(d, victim, 2.0)
    # The attacker's own session is untouched too.
    assert len(d.receive(evil.encrypt(ping), EVIL, 2.1)[1]) == 1


def test_data_under_the_key_ids_of_dead_keys_is_dropped_and_counted(pki):  # noqa: F811
    d, evil, victim = _two_clients(pki)
    erec = d.route(evil.pushed.ifconfig[0])
    live = evil.send_key.key_id
    ping = _icmp(evil.pushed.ifconfig[0], "198.19.0.1")
    for i in range(700):
        p = evil.encrypt(ping)
        dead = (live + 1 + i % 7) % 8
        assert d.receive(bytes([(p[0] & ~7) | dead]) + p[1:], EVIL, 1.0 + i / 1000)[1] == []
    assert not d.events and erec.alive
    assert d.drop_counters().get("data-no-key", 0) >= 700
    assert _victim_works(d, victim, 2.0)


def test_a_push_request_flood_ends_the_flooders_session_only(pki):  # noqa: F811
    d, evil, victim = _two_clients(pki)
    erec = d.route(evil.pushed.ifconfig[0])
    now = 1.0
    for _ in range(200):
        ks = evil._active_ks()
        assert ks is not None and ks.phase == KS.ACTIVE
        for _ in range(8):
            evil._send_text("PUSH_REQUEST", ks)
        evil._flush(now)
        for p in evil.take_outgoing():
            d.receive(p, EVIL, now)
        for p, a in d.take_outgoing():
            if a == EVIL:
                evil.receive(p, now)
        now += 0.001
        if not erec.alive:
            break
    assert not erec.alive
    ends = [e for r, e in d.events if isinstance(e, ev.SessionClosed)]
    assert len(ends) == 1 and "control channel flood" in ends[0].reason
    assert _victim_works(d, victim, now + 0.1)


def test_handshakes_held_open_with_only_the_tls_crypt_key_do_not_lock_a_real_client_out(pki):  # noqa: F811
    """A peer holding the tls-crypt key but no certificate (every eduVPN profile carries the key)
    takes handshakes through the cookie exchange and its ClientHello, then goes silent, from
    enough addresses to fill the table of handshakes in progress (8 per address, 256 in all):
    each stays until hand-window (60 s) and is renewed, so every new client was refused "too many
    handshakes in progress" for as long as the attacker kept at it -- in the lab (authattack.py
    --half-open 300 from 40 addresses) a new client did not get in within 20 s. A full table now
    makes room by ending its oldest handshake (older than HALF_OPEN_EVICT_AGE), as a timeout
    would have ended it; a real handshake takes well under a second."""
    from appliance.openvpn.server import HALF_OPEN_EVICT_AGE
    from tests.engine.test_server_security import _half_open, _mk_client
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(pki, "tls-crypt", static_key=key, max_half_open=16, connect_freq_initial=(10_000, 10))
    mk = lambda: wrapping.TlsCryptWrapper(key, False)  # noqa: E731
    for i in range(24):                                  # 3 addresses x 8: more than the table holds
        _half_open(d, _mk_client(pki, make_wrapper=mk), (f"198.18.0.{100 + i // 8}", 3000 + i), now=0.5)
    assert d.admission.n_half_open == 16
    assert not [e for _r, e in d.events if isinstance(e, ev.SessionClosed)], "the refused ones made no state"
    now = 0.5 + HALF_OPEN_EVICT_AGE + 1
    # One more from an address already at its own limit ends nobody's handshake: it is refused anyway.
    _half_open(d, _mk_client(pki, make_wrapper=mk), ("198.18.0.100", 3999), now=now)
    assert "handshake in progress ended to make room (table full, oldest first)" not in d.drop_counters()
    real = _client(pki, pki["clients"][4], mk)
    for _ in range(60):
        for p in real.take_outgoing():
            d.receive(p, VICTIM, now)
        for p, a in d.take_outgoing():
            if a == VICTIM:
                real.receive(p, now)
        if _up(real):
            break
    assert _up(real), d.drop_counters()
    assert d.admission.n_half_open <= 16
    assert d.drop_counters().get("handshake in progress ended to make room (table full, oldest first)", 0) >= 1
    evicted = d.drop_counters()["handshake in progress ended to make room (table full, oldest first)"]
    ends = [e for _r, e in d.events if isinstance(e, ev.SessionClosed)]
    assert len(ends) == evicted and all("to make room" in e.reason for e in ends), "one end each, as a timeout"


@pytest.mark.parametrize("duplicate_cn", [False, True])
def test_one_certificate_connecting_100_times(pki, duplicate_cn):  # noqa: F811
    """The same certificate from 100 source ports, one connection after another. duplicate-cn off
    (OpenVPN's default): each new session ends the one before, so one stays, and the pool has
    every other address back; on: each is a client of its own, up to max-clients (here 50), the
    rest refused before any state is made (counted, no line each); either way the server keeps
    working for another client."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(pki, "tls-crypt", static_key=key, duplicate_cn=duplicate_cn, max_clients=50,
                connect_freq_initial=(10_000, 10))
    mk = lambda: wrapping.TlsCryptWrapper(key, False)  # noqa: E731
    free_before = len(d.st.pool.free)
    for i in range(100):
        _pump(d, [(_client(pki, pki["clients"][5], mk), ("198.18.0.70", 10000 + i))], now=1.0 + i * 0.01)
    assert len(d.clients) == (50 if duplicate_cn else 1)
    assert d.admission.n_established == len(d.clients) and d.admission.n_half_open == 0
    assert len(d.st.pool.free) == free_before - len(d.clients), "every ended session's address is back"
    ends = [e for _r, e in d.events if isinstance(e, ev.SessionClosed)]
    if duplicate_cn:
        assert not ends and d.drop_counters().get("max-clients reached", 0) >= 50
    else:
        assert len(ends) == 99 and all("another client connected with common name" in e.reason for e in ends)
        d.events.clear()
        victim = _client(pki, pki["clients"][3], mk)
        _pump(d, [(victim, VICTIM)], now=3.0)
        assert _up(victim) and _victim_works(d, victim, 3.1)
