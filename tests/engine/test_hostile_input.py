"""Hostile bytes against established sessions and the server dispatcher: whatever arrives (random
datagrams, valid packets with bytes flipped, cut short or extended, replays of old control
packets), nothing raises, nothing unauthenticated creates state, and the tunnel keeps working."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.openvpn import keyfiles, wrapping
from tests.engine.test_memory_link import payloads, recorded_pair, up
from tests.engine.test_memory_link import pki  # noqa: F401 - the fixture
from tests.engine.test_server_dispatcher import _client, _icmp, _server, connected_recording
from tests.engine.test_server_dispatcher import pki as dpki  # noqa: F401 - the fixture
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutations(valid: list[bytes], rng: random.Random, n: int) -> list[bytes]:
    """Flip, truncate, extend and splice recorded valid packets."""
    out = []
    for _ in range(n):
        p = bytearray(rng.choice(valid))
        how = rng.randrange(5)
        if how == 0 and p:
            for _ in range(rng.randrange(1, 4)):
                p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        elif how == 1:
            p = p[:rng.randrange(len(p) + 1)]
        elif how == 2:
            p += rng.randbytes(rng.randrange(1, 64))
        elif how == 3 and len(p) > 1:
            p[1:] = rng.randbytes(len(p) - 1)       # keep the opcode, randomise the rest
        out.append(bytes(p))
    return out


@pytest.mark.parametrize("protection", ["none", "tls-auth", "tls-crypt", "tls-crypt-v2"])
def test_established_sessions_shrug_off_mutated_packets(pki, protection):  # noqa: F811
    c, s, link, recorded = recorded_pair(pki, 20, protection=protection)
    rng = random.Random(protection)
    for bad in _mutations(recorded, rng, 1500):
        c.receive(bad, link.now)        # must not raise
        s.receive(bad, link.now)
    link.run(lambda: False, max_steps=200)
    c.take_outgoing()
    s.take_outgoing()
    assert up(c, s) and not c.closed and not s.closed
    fresh = payloads(10, seed=9)
    assert link.send(c, s, fresh) == fresh and link.send(s, c, fresh) == fresh
    assert sum(c.stats.values()) + sum(s.stats.values()) > 0, "the bad packets were counted"


@HOSTILE
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=40))
def test_dispatcher_random_datagrams_create_nothing(dpki, datagrams):  # noqa: F811
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    for protection in ("none", "tls-crypt"):
        d = _server(dpki, protection, static_key=key)
        for i, dg in enumerate(datagrams):
            d.receive(dg, ("198.18.3.%d" % (i % 200 + 1), 4000 + i), 1.0)
        d.handle_timer(2.0)
        d.take_outgoing()
        # With tls-crypt nothing gets past authentication; without protection at most a cookie answer.
        assert d.clients == [] or protection == "none"
        assert all(not r.session.established for r in d.clients)


def test_dispatcher_survives_mutations_of_a_real_clients_packets(dpki):  # noqa: F811
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(dpki, "tls-crypt", static_key=key)
    s = _client(dpki, dpki["clients"][9], lambda: wrapping.TlsCryptWrapper(key, False))
    addr = ("198.18.0.40", 1)
    recorded = connected_recording(d, s, addr)
    ip = s.pushed.ifconfig[0]
    data = [bytes(s.encrypt(_icmp(ip, "198.19.0.1"))) for _ in range(5)]
    for w in data:                      # delivered, so any copy later is a replay
        assert len(d.receive(w, addr, 2.5)[1]) == 1
    recorded += data
    rng = random.Random(5)
    for i, bad in enumerate(_mutations(recorded, rng, 3000)):
        src = addr if i % 2 else ("198.18.0.%d" % (41 + i % 50), 1000 + i)
        d.receive(bad, src, 3.0)
    d.handle_timer(3.5)
    d.take_outgoing()
    # A replayed handshake packet may open a half-made session (it times out), never a working one.
    live = [r for r in d.clients if r.session.established]
    assert len(live) == 1 and live[0].addr == addr, "no forged or replayed packet may add or move a client"
    rec, pts = d.receive(s.encrypt(_icmp(ip, "198.19.0.1")), addr, 4.0)
    assert len(pts) == 1, "the real client still gets through"
