"""A hostile path between client and server (or a server gone bad) during the client's handshake:
every datagram the server sends reaches the client in one batch with a replay of itself, a cut
copy, a bit-flipped copy and random bytes behind the same opcode (gateway/client.py reads them in
one begin_batch/end_batch stretch; LogHold holds the log lines of what they cause).

What must hold: no internal error, the batch always closed (ACKs still go out: the handshake
completes and traffic flows), held log lines written and bounded, the loop not spinning."""
from __future__ import annotations

import random

import pytest

from appliance.gateway.loghold import MAX_HELD
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def _hostile(w: World, seed: int) -> dict:
    """Behind each server->client datagram, in the same inbox: a replay, a cut copy, a flipped
    copy, junk with its opcode byte."""
    rng = random.Random(seed)
    real = w.net.deliver
    seen = {"junk": 0}

    def deliver(data, src, dst):
        real(data, src, dst)
        if src[0] != SERVER_IP or len(data) < 2:
            return
        flipped = bytearray(data)
        flipped[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)
        for junk in (bytes(data), data[:rng.randrange(1, len(data))], bytes(flipped),
                     data[:1] + rng.randbytes(rng.randrange(0, 1400))):
            real(junk, src, dst)
            seen["junk"] += 1
    w.net.deliver = deliver
    return seen


@pytest.mark.parametrize("protection, seed", [("tls-crypt", 1), ("none", 2), ("none", 3)])
def test_junk_in_every_batch_of_the_handshake_leaves_the_client_working(pki, protection, seed):
    w = World(seed)
    w.add_server(server_conf(pki, protection=protection))
    seen = _hostile(w, seed)
    c = w.add_client(client_conf(pki, protection=protection))
    assert w.run(lambda: _up(w, 0), max_time=30, max_steps=20_000), c.faults.counts
    ping_both_ways(w, 0)
    w.run_for(1)                                   # the held lines' timer
    assert seen["junk"] > 20
    assert "internal error" not in c.faults.counts, c.faults.counts
    assert not c.conn.session._batch, "a batch left open"             # noqa: SLF001
    assert len(c._logs.held) < MAX_HELD and not c._logs.held            # noqa: SLF001 - written by now
    assert c._logs not in c._logs.logger.filters                        # noqa: SLF001 - not holding
    assert c.connections == 1, "the junk did not restart the session"


def test_a_failure_in_the_batch_flush_ends_the_session_and_the_client_starts_over(pki):
    """The flush moved out of receive() into end_batch(), outside the per-packet try: an internal
    error there must still end this session (counted, logged) and the client reconnect, rather
    than leave a session whose replies and timer were skipped."""
    w = World(4)
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w, 0), max_time=30)
    s = c.conn.session
    calls = []

    def broken(now, hold_flush=False):
        calls.append(now)
        raise RuntimeError("simulated bug in the flush")
    s.end_batch = broken
    stun = w.server_net.tun
    stun.inject(ipv4_udp("198.19.0.1", w.client_addr(0), b"x"))
    assert w.run(lambda: c.connections == 2, max_time=60), c.faults.counts
    assert calls and c.faults.counts.get("internal error") == 1
    ping_both_ways(w, 0)


@pytest.mark.parametrize("protection", ["tls-crypt", "none"])
def test_the_whole_handshake_replayed_in_one_batch_after_the_tunnel_is_up_changes_nothing(pki, protection):
    w = World(5)
    w.add_server(server_conf(pki, protection=protection))
    real, captured = w.net.deliver, []

    def capture(data, src, dst):
        if src[0] == SERVER_IP:
            captured.append((bytes(data), src, dst))
        real(data, src, dst)
    w.net.deliver = capture
    c = w.add_client(client_conf(pki, protection=protection))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.net.deliver = real
    for rnd in range(3):
        for d, src, dst in captured:
            real(d, src, dst)
        w.run_for(2)
        ping_both_ways(w, 0, tag=bytes([rnd]))
    assert len(captured) >= 4 and c.connections == 1, c.connections
    assert "internal error" not in c.faults.counts and not c._logs.held     # noqa: SLF001
