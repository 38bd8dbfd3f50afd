"""`Session.receive_many` (a link batch opened in one call, what our client does with each batch
read from its socket) against `receive` one packet at a time: the same tunnel packets in the same
order, the same counts and the same events, whatever the batch holds -- data, replays, forgeries,
a key id without a key, pings, OCC messages (an exit notification closes the session mid-batch),
empty and over-long plaintexts, control garbage -- and with fragment or compression framing. On
both AEAD paths (tests/aead_paths.py).

Two sessions with different keys cannot be fed the same bytes, so each side of the comparison is
its own connected pair, fed the same script: the same kinds of packet of the same lengths."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from appliance.openvpn.opcodes import OCC_EXIT, OCC_MAGIC, PING_MAGIC
from appliance.openvpn.datapath import ClientDataPath
from tests.aead_paths import aead_path  # noqa: F401 - the fixture
from tests.engine.test_memory_link import connected, pki  # noqa: F401 - pki is a fixture

pytestmark = pytest.mark.usefixtures("aead_path")

KINDS = ["data", "data", "data", "replay", "forged", "no-key", "ping", "occ", "occ-exit", "empty", "too-long",
         "control-garbage", "short"]


def _wire(c, s, script: list[str], seed: int) -> list[bytes]:
    """The server's packets to the client for `script`; the same random choices for any pair."""
    r = random.Random(seed)
    out: list[bytes] = []
    sent: list[bytes] = []

    def seal(pt: bytes) -> bytes:
        """The sealed packet; with fragment framing its parts but the last go out first."""
        w = s.encrypt(pt)
        if isinstance(w, list):
            out.extend(w[:-1])
            w = w[-1]
        assert isinstance(w, bytes)
        return w

    for kind in script:
        if kind == "data":
            w = seal(bytes([0x45]) + r.randbytes(r.randrange(39, 1400)))
            sent.append(w)
        elif kind == "replay":
            w = r.choice(sent) if sent else seal(bytes([0x45]) + bytes(60))
        elif kind == "forged":
            w = bytearray(seal(bytes([0x45]) + bytes(100)))
            w[-1] ^= 0x5A
            w = bytes(w)
        elif kind == "no-key":
            w = bytearray(seal(bytes([0x45]) + bytes(80)))
            w[0] = (w[0] & ~7) | ((w[0] & 7) ^ 5)          # a key id the client holds no key for
            w = bytes(w)
        elif kind == "ping":
            w = seal(PING_MAGIC)
        elif kind == "occ":
            w = seal(OCC_MAGIC + bytes([0]))             # an OCC request
        elif kind == "occ-exit":
            w = seal(OCC_MAGIC + bytes([OCC_EXIT]))
        elif kind == "empty":
            w = seal(b"")
        elif kind == "too-long":
            w = seal(bytes([0x45]) + bytes(c._tun_write_max))
        elif kind == "control-garbage":
            w = bytes([(4 << 3) | 0]) + r.randbytes(r.randrange(0, 120))   # P_CONTROL_V1, not wrapped
        else:                                                # "short": a data opcode and too few bytes
            w = seal(bytes([0x45]) + bytes(10))[:r.randrange(1, 20)]
        out.append(w)
    return out


def _state(c) -> tuple:
    return (dict(c.stats), c.link_read, c.data_authenticated, c.not_traffic, c.last_recv, c.closed, len(c.events))


def _delta(before: tuple, after: tuple, events: list) -> tuple:
    """What feeding the script changed (the handshakes before it differ in their lengths)."""
    (s0, *n0, e0), (s1, *n1, _e1) = before, after
    stats = {k: v - s0.get(k, 0) for k, v in s1.items() if v != s0.get(k, 0)}
    return stats, [b - a if isinstance(a, int) and not isinstance(a, bool) else b for a, b in zip(n0, n1)], \
        [type(e).__name__ for e in events[e0:]]


def _compare(pki, script, seed, cuts, **kw):
    c1, s1, link1 = connected(pki, **kw)
    c2, s2, link2 = connected(pki, **kw)
    w1, w2 = _wire(c1, s1, script, seed), _wire(c2, s2, script, seed)
    assert list(map(len, w1)) == list(map(len, w2))
    now = link1.now + 1.0
    b1, b2 = _state(c1), _state(c2)
    one: list[bytes] = []
    for w in w2:
        one += [bytes(p) for p in c2.receive(w, now)]
    many: list[bytes] = []
    bounds = sorted({0, len(w1), *(x % (len(w1) + 1) for x in cuts)})
    for a, b in zip(bounds, bounds[1:]):
        many += [bytes(p) for p in c1.receive_many(w1[a:b], now)]
    assert many and len(many) == len(one) or many == one == []
    # the plaintexts differ between pairs only in their random bytes: compare shapes and the
    # decisions, and each against what its own server sent
    assert [len(p) for p in many] == [len(p) for p in one]
    d1, d2 = _delta(b1, _state(c1), list(c1.events)), _delta(b2, _state(c2), list(c2.events))
    assert d1[0] == d2[0] and d1[2] == d2[2]
    assert d1[1][:3] == d2[1][:3] and d1[1][4:] == d2[1][4:]    # last_recv: each pair's own clock
    return c1, many


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(st.sampled_from(KINDS), min_size=0, max_size=40),
       seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 64), max_size=4))
def test_a_batch_gives_what_one_by_one_gives(pki, script, seed, cuts):
    _compare(pki, script, seed, cuts)


@pytest.mark.parametrize("kw", [{"fragment_room": 1300}, {"comp": "stub-v2"}])
def test_framed_sessions_go_packet_by_packet_with_the_same_result(pki, kw):
    script = ["data", "ping", "replay", "data", "forged", "data", "occ", "data"]
    _compare(pki, script, 7, [3, 5], **kw)


def test_the_plaintexts_are_the_servers_in_order_and_an_exit_ends_the_batch(pki):
    c, s, link = connected(pki)
    pts = [bytes([0x45]) + bytes([i]) * (40 + i) for i in range(20)]
    wire = [s.encrypt(p) for p in pts[:12]] + [s.encrypt(OCC_MAGIC + bytes([OCC_EXIT]))] + [s.encrypt(p) for p in pts[12:]]
    got = c.receive_many(wire, link.now)
    assert [bytes(p) for p in got] == pts[:12]
    assert c.closed and any(type(e).__name__ == "SessionClosed" for e in c.events)


def test_the_client_data_path_clamps_a_batch_as_one_by_one(pki):
    """open_batch: receive_many, then the MSS clamp of each tunnel packet (a SYN among ACKs)."""
    c, s, link = connected(pki)
    c2, s2, link2 = connected(pki)
    syn = bytearray(bytes.fromhex("450000300001000040060000c6130001c6130002"
                                  "1389177000000001000000007002ffff00000000020405b401010402"))
    ack = bytes.fromhex("450000280001000040060000c6130001c61300021389177000000001000000015010ffff00000000")
    batch = [ack, bytes(syn), ack, ack]
    dp1, dp2 = ClientDataPath(c, lambda cipher, v2: 1300), ClientDataPath(c2, lambda cipher, v2: 1300)
    many = [bytes(p) for p in dp1.open_batch([s.encrypt(p) for p in batch], link.now)]
    one = [bytes(q) for p in batch for q in dp2.open(s2.encrypt(p), link2.now)]
    assert many == one and len(many) == 4
    assert many[1] != bytes(syn) and many[1][-8:-4] == bytes.fromhex("02040514")    # MSS 1300
