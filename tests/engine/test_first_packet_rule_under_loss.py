"""A real client against the server dispatcher over a lossy link, in memory (atk36).

The server starts a session only from a first packet that acks our reset and at most message
1 (server.py _on_third_packet, as OpenVPN 2.7), and the cookie it checks is in the peer
session id that only a packet with acks carries. Our reset is never resent (stateless), so its
ack must be: a client whose first packet after our reset was lost resent its ClientHello with
no ack at all and was refused until its hand-window ended (reliable.py RECENT_ACKS_KEPT: acks
sent again, as 2.6's ack_mru). Checked for every single early loss and with seeded 20% loss.
"""
from __future__ import annotations

import random

import pytest

from appliance.openvpn import keyfiles, wrapping
from tests.engine.test_server_dispatcher import _client, _server, _up, pki  # noqa: F401 - the fixture


def _wrappers(protection):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    if protection == "tls-auth":
        return key, lambda: wrapping.TlsAuthWrapper(key, 1)
    return key, lambda: wrapping.TlsCryptWrapper(key, False)


def _run(d, s, addr, drop, until=120.0, steps=4000):
    """Move packets both ways, `drop(direction, n)` deciding on the n-th packet of a direction;
    the clock jumps to the next deadline when nothing moves. Returns the time the client was up."""
    now, sent = 0.0, {"c": 0, "s": 0}
    for _ in range(steps):
        if _up(s):
            return now
        moved = 0
        for p in s.take_outgoing():
            sent["c"] += 1
            if not drop("c", sent["c"]):
                d.receive(bytes(p), addr, now)
            moved += 1
        for p, a in d.take_outgoing():
            sent["s"] += 1
            if a == addr and not drop("s", sent["s"]):
                s.receive(bytes(p), now)
            moved += 1
        if not moved:
            dls = [x for x in (s.next_deadline(), d.next_deadline()) if x is not None]
            if not dls or min(dls) > until:
                return None
            now = max(now, min(dls))
            s.handle_timer(now)
            d.handle_timer(now)
    return None


@pytest.mark.parametrize("protection", ["tls-auth", "tls-crypt"])
@pytest.mark.parametrize("direction", ["c", "s"])
def test_any_single_lost_handshake_packet_still_connects(pki, protection, direction):
    key, mk = _wrappers(protection)
    for n in range(1, 13):
        d = _server(pki, protection, static_key=key, key_direction=0)
        s = _client(pki, pki["clients"][0], mk)
        t = _run(d, s, ("198.18.0.10", 40000), lambda dr, k, n=n: dr == direction and k == n)
        assert t is not None, (protection, direction, n, d.drop_counters())


@pytest.mark.parametrize("seed", range(12))
def test_random_loss_and_reordering_still_connects(pki, seed):
    key, mk = _wrappers("tls-crypt")
    d = _server(pki, "tls-crypt", static_key=key, key_direction=0)
    s = _client(pki, pki["clients"][1], mk)
    rng = random.Random(seed)
    t = _run(d, s, ("198.18.0.11", 40001), lambda dr, k: rng.random() < 0.2, until=600.0)
    assert t is not None, (seed, d.drop_counters())
