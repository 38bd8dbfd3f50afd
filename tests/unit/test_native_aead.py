"""The compiled AEAD (appliance.native._aead) against its Python twin in datachannel.py.

What a user relies on: a key built on either path puts the same bytes on the wire and accepts
and refuses exactly the same packets, for the same reason (the counters a status line shows are
keyed by it). So every test here builds DataKeys on both paths from the same key material and
compares: seal output byte for byte, each path opening the other's packets, and every forgery
(bit flips, truncations to every length 0..40, extensions) refused by both with the same reason,
without moving the replay window. Then the C module's own edges, as an attacker or a careless
caller would hit them: random bytes, buffers that overlap, lengths beyond EVP's int, leaked
buffer exports or references.

The compiled side fails (does not skip) when the module did not build: tests/aead_paths.py.
"""
from __future__ import annotations

import gc
import mmap
import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings, strategies as st

from appliance.openvpn import ciphers
from appliance.openvpn.datachannel import DataKey
from appliance.openvpn.errors import BadPacket
from appliance.openvpn.opcodes import NO_PEER_ID
from tests.aead_paths import compiled_aead, forced

AEADS = sorted(n for n, s in ciphers.REGISTRY.items() if s.aead)
PRIMITIVE = {"AES-128-GCM": AESGCM, "AES-192-GCM": AESGCM, "AES-256-GCM": AESGCM, "CHACHA20-POLY1305": ChaCha20Poly1305}


def test_every_registry_aead_is_covered():
    """A cipher added to the registry must be added to the C module (and to these tests) too."""
    assert AEADS == sorted(PRIMITIVE)
    _aead = compiled_aead()
    for name in AEADS:
        n = ciphers.spec(name).key_len
        assert _aead.Key(name, bytes(n), bytes(8), True).sealing == 1


def _keys(path: str, cipher: str, key: bytes, iv: bytes, peer_id: int | None, key_id: int = 2,
          replay_window: int = 64) -> DataKey:
    """One DataKey on `path` whose sending half uses (key, iv) and whose receiving half the same, so
    a key opens what it sealed (each half is still a separate context)."""
    with forced(path):
        k = DataKey(cipher, key_id, key, iv, key, iv, peer_id, replay_window=replay_window)
    assert (k._csend is not None) == (path == "c")
    return k


def _refusal(k: DataKey, packet, now: float | None = 1.0) -> str | None:
    """The BadPacket reason `k` gives for `packet`, or None when it opens."""
    try:
        k.open_untrusted(packet, now)
    except BadPacket as e:
        return e.reason
    return None


def _window(k: DataKey) -> tuple:
    r = k.replay
    return r.highest, r.bits, k.packets_recv, k.bytes_recv


material = st.fixed_dictionaries({
    "cipher": st.sampled_from(AEADS),
    "key": st.binary(min_size=32, max_size=32),
    "iv": st.binary(min_size=8, max_size=8),
    "peer_id": st.one_of(st.none(), st.integers(0, 0xFFFFFF)),
    "key_id": st.integers(0, 7),
})
sizes = st.one_of(st.integers(0, 64), st.sampled_from([255, 256, 1400, 1500, 4096, 65535]), st.integers(0, 65535))
pids = st.one_of(st.integers(1, 0xFFFFFFFF), st.sampled_from([1, 2, 0xFF, 0x100, 0xFFFFFFFE, 0xFFFFFFFF]))


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@settings(max_examples=300, deadline=None)
@given(m=material, pid=pids, n=sizes, seed=st.integers(0, 2**32))
def test_c_seal_equals_python_seal_and_each_opens_the_other(m, pid, n, seed):
    payload = _payload(n, seed)
    py, c = (_keys(p, m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"]) for p in ("python", "c"))
    py.send_pid = c.send_pid = pid - 1
    wire_py, wire_c = py.seal(payload), c.seal(payload)
    assert wire_c == wire_py
    # the layout, independently of both: header | packet-id | tag | ciphertext under `cryptography`
    spec = ciphers.spec(m["cipher"])
    v2 = m["peer_id"] is not None and m["peer_id"] != NO_PEER_ID
    head = bytes((0x48 | m["key_id"],)) + m["peer_id"].to_bytes(3, "big") if v2 else bytes((0x30 | m["key_id"],))
    p = struct.pack("!I", pid)
    r = PRIMITIVE[m["cipher"]](m["key"][:spec.key_len]).encrypt(p + m["iv"], payload, head + p if v2 else p)
    assert wire_c == head + p + r[-16:] + r[:-16]
    assert c.open_untrusted(wire_py, 1.0) == payload
    assert py.open_untrusted(wire_c, 1.0) == payload
    assert (c.send_pid, c.bytes_sent, c.packets_recv, c.bytes_recv) == (py.send_pid, py.bytes_sent,
                                                                         py.packets_recv, py.bytes_recv)


def _flip(wire: bytes, i: int, bit: int) -> bytes:
    b = bytearray(wire)
    b[i] ^= 1 << bit
    return bytes(b)


def _forgeries(wire: bytes, rng: random.Random) -> list[bytes]:
    out = [wire[:n] for n in range(0, min(41, len(wire)))]                     # every length 0..40
    out += [wire[:rng.randrange(len(wire))] for _ in range(4)]                 # and some longer
    out += [wire + bytes(rng.randrange(1, 40)), wire + b"\x00", wire + wire[-16:]]   # extensions
    flips = [(rng.randrange(len(wire)), rng.randrange(8)) for _ in range(24)]  # single bit flips
    flips += [(i, 7) for i in (1, 4, 5, 8, 20, 23, len(wire) - 1) if i < len(wire)]  # pid, tag, ct
    flips += [(0, b) for b in range(8)]                                         # the opcode byte
    v1 = wire[0] >> 3 != 9
    for i, bit in flips:
        f = _flip(wire, i, bit)
        # P_DATA_V1's opcode byte is outside its AAD (OpenVPN's format, not ours to change): a flip
        # there that keeps the V1 layout only changes which key the session picks.
        if not (v1 and i == 0 and f[0] >> 3 != 9):
            out.append(f)
    return out


@settings(max_examples=120, deadline=None)
@given(m=material, pid=pids, n=st.one_of(st.integers(0, 64), st.integers(0, 2000)), seed=st.integers(0, 2**32))
def test_every_forgery_is_refused_by_both_for_the_same_reason_and_moves_nothing(m, pid, n, seed):
    rng = random.Random(seed)
    payload = _payload(n, seed)
    sender = _keys("python", m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"])
    sender.send_pid = pid - 1
    wire = sender.seal(payload)
    py, c = (_keys(p, m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"]) for p in ("python", "c"))
    for f in _forgeries(wire, rng):
        want = _refusal(py, f)
        assert want is not None, f"a forgery of {len(f)} bytes opened"
        assert _refusal(c, f) == want, (len(f), f[:24].hex())
        assert want in ("short data packet", "data packet failed authentication", "replayed data packet")
    # no forgery recorded its id: the genuine packet still opens, once, on both
    assert _window(py) == _window(c) == (0, 0, 0, 0)
    for k in (py, c):
        assert k.open_untrusted(wire, 1.0) == payload
        assert _refusal(k, wire) == "replayed data packet"


@settings(max_examples=80, deadline=None)
@given(m=material, order=st.lists(st.integers(1, 150), min_size=1, max_size=60),
       times=st.lists(st.floats(0, 40), min_size=60, max_size=60), window=st.sampled_from([0, 1, 64]))
def test_replays_reordering_and_time_limit_decided_alike(m, order, times, window):
    """The replay window stays in Python on both paths; the C path's two-step open (id first,
    decrypt only when the window agrees) must accept and refuse the same packets."""
    sender = _keys("python", m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"])
    wires = [sender.seal(bytes([0x45, i & 0xFF])) for i in range(150)]
    py, c = (_keys(p, m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"], replay_window=window)
             for p in ("python", "c"))
    now = 0.0
    for i, pid in enumerate(order):
        now += times[i] / 10
        assert _refusal(c, wires[pid - 1], now) == _refusal(py, wires[pid - 1], now)
    assert _window(c) == _window(py)


# 200 Hypothesis examples (500 before) beside a seeded sweep of JUNK_SWEEP cases drawn the same way:
# Hypothesis's data generation was ~20 of each example's ~25 ms (--hypothesis-show-statistics, load
# ~11); it keeps its edge-biased draws and shrinking, the sweep the bulk of the cases (helper trim47b).
JUNK_SWEEP = 2500


def test_random_bytes_are_refused_alike_and_only_as_bad_packets_sweep():
    rng = random.Random(4747)
    for _ in range(JUNK_SWEEP):
        m = {"cipher": rng.choice(AEADS), "key": rng.randbytes(32), "iv": rng.randbytes(8),
             "peer_id": rng.choice([None, 0, 0xFFFFFF, rng.randint(0, 0xFFFFFF)]), "key_id": rng.randint(0, 7)}
        # Lengths around the layouts' minimums (20-25) as often as anywhere up to 200.
        n = rng.choice([rng.randint(0, 200), rng.randint(0, 8), rng.randint(17, 27)])
        junk = rng.randbytes(n) if rng.random() < 0.8 else bytes(n)
        _random_bytes_refused_alike(m, junk, rng.choice([0x30, 0x48, rng.randint(0, 255)]))


@settings(max_examples=200, deadline=None)
@given(m=material, junk=st.binary(min_size=0, max_size=200), op=st.integers(0, 255))
def test_random_bytes_are_refused_alike_and_only_as_bad_packets(m, junk, op):
    _random_bytes_refused_alike(m, junk, op)


def _random_bytes_refused_alike(m: dict, junk: bytes, op: int) -> None:
    py, c = (_keys(p, m["cipher"], m["key"], m["iv"], m["peer_id"], m["key_id"]) for p in ("python", "c"))
    for pkt in (junk, bytes([op]) + junk):
        want = _refusal(py, pkt)
        assert want is not None and _refusal(c, pkt) == want
        assert _refusal(c, memoryview(bytearray(pkt))) == want
    assert _window(c) == (0, 0, 0, 0)


@pytest.mark.parametrize("path", ["python", "c"])
def test_p_data_v1_opcode_byte_is_not_authenticated_on_either_path(path):
    """OpenVPN's P_DATA_V1 AAD is the packet id alone: the opcode/key-id byte is only the session's
    key choice. Both paths open such a packet alike (and any layout change to V2 is refused)."""
    k = _keys(path, "AES-256-GCM", bytes(32), bytes(8), None)
    w1, w2, w3 = k.seal(b"\x45"), k.seal(b"\x46"), k.seal(b"\x47" * 9)
    assert w1[0] >> 3 == 6
    assert k.open_untrusted(_flip(w1, 0, 0), 1.0) == b"\x45"          # key id 2 -> 3
    assert k.open_untrusted(_flip(w2, 0, 6), 1.0) == b"\x46"          # op 6 -> 14: still the V1 layout
    assert _refusal(k, bytes([0x48]) + w3[1:]) == "data packet failed authentication"  # read as V2
    assert k.open_untrusted(w3, 1.0) == b"\x47" * 9


@pytest.mark.parametrize("cipher", AEADS)
@pytest.mark.parametrize("peer_id", [None, 9])
def test_seal_into_equals_seal_in_place_too(cipher, peer_id):
    c = _keys("c", cipher, bytes(range(32)), bytes(8), peer_id)
    py = _keys("python", cipher, bytes(range(32)), bytes(8), peer_id)
    over = c.overhead()
    for n in (0, 1, 1400):
        payload = _payload(n, n)
        want = py.seal(payload)
        buf = bytearray(n + over + 16)
        assert c.seal_into(payload, memoryview(buf)) == len(want) and bytes(buf[:len(want)]) == want
        py.send_pid = c.send_pid
        want = py.seal(payload)
        # in place: the payload already where its ciphertext goes (a pooled buffer with headroom)
        buf = bytearray(over) + bytearray(payload)
        assert c.seal_into(memoryview(buf)[over:], buf) == len(want) and bytes(buf) == want
        assert py.open_untrusted(want, 1.0) == payload


def test_seal_into_refuses_partial_overlap_small_and_read_only_buffers():
    c = _keys("c", "AES-256-GCM", bytes(32), bytes(8), 1)
    buf = bytearray(200)
    mv = memoryview(buf)
    for start in (0, 1, c.overhead() - 1, c.overhead() + 1, 30):
        with pytest.raises(ValueError, match="overlaps"):
            c.seal_into(mv[start:start + 50], mv)
    with pytest.raises(ValueError, match="needs"):
        c.seal_into(bytes(10), bytearray(10 + c.overhead() - 1))
    with pytest.raises((TypeError, BufferError)):
        c.seal_into(bytes(10), bytes(100))
    assert bytes(buf) == bytes(200), "a refused seal_into wrote into out"


def test_wrong_direction_key_material_and_arguments_are_refused():
    _aead = compiled_aead()
    k32 = bytes(32)
    with pytest.raises(ValueError, match="unsupported"):
        _aead.Key("AES-256-CBC", k32, bytes(8), True)
    with pytest.raises(ValueError, match="32-byte key"):
        _aead.Key("AES-256-GCM", bytes(31), bytes(8), True)
    with pytest.raises(ValueError, match="implicit IV"):
        _aead.Key("CHACHA20-POLY1305", k32, bytes(7), True)
    for path in ("python", "c"):
        with forced(path), pytest.raises(ValueError, match="implicit IV"):
            DataKey("AES-256-GCM", 0, k32, bytes(5), k32, bytes(5), None)
    s, o = _aead.Key("AES-256-GCM", k32, bytes(8), True), _aead.Key("AES-256-GCM", k32, bytes(8), False)
    with pytest.raises(TypeError):
        s.open(s.seal(0x48000001, 4, 1, b"x"), -1)
    with pytest.raises(TypeError):
        o.seal(0x48000001, 4, 1, b"x")
    for bad in ((0x48000001, 2, 1, b""), (0x100, 1, 1, b""), (2**32, 4, 1, b""), (0, 4, 2**32, b""),
                (0, 4, -1, b"")):
        with pytest.raises((ValueError, OverflowError)):
            s.seal(*bad)
    with pytest.raises(TypeError):
        s.seal(0, 4, 1)
    with pytest.raises(TypeError):
        s.seal(0, 4, 1, "text")


def test_lengths_beyond_evps_int_are_refused_before_any_byte_is_read():
    """EVP counts in int: a 2 GiB payload must be refused up front, not wrapped. The buffer is an
    untouched anonymous mapping, so the test costs no memory unless something reads it."""
    _aead = compiled_aead()
    try:
        big = mmap.mmap(-1, _aead.MAX_LEN + 1, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0))
    except (OSError, OverflowError, MemoryError) as e:
        pytest.fail(f"cannot map {_aead.MAX_LEN + 1} bytes to test with: {e}")
    with big:
        mv = memoryview(big)
        s = _aead.Key("AES-128-GCM", bytes(16), bytes(8), True)
        o = _aead.Key("AES-128-GCM", bytes(16), bytes(8), False)
        with pytest.raises(OverflowError):
            s.seal(0x48000001, 4, 1, mv)
        with pytest.raises(OverflowError):
            s.seal_into(0x48000001, 4, 1, mv, bytearray(100))
        c = _keys("c", "AES-128-GCM", bytes(16), bytes(8), 1)
        assert _refusal(c, mv) == "data packet too long"
        with pytest.raises(_aead.OpenError):
            o.open(mv, -1)
        mv.release()


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (mmap.PAGESIZE // 1024)


def test_no_reference_or_buffer_export_leaks():
    """Every path out of seal/seal_into/open (success, short, bad tag, replay, refused arguments)
    releases the buffers it took and adds no references: the payload's bytearray can still be
    resized (an unreleased export forbids it), refcounts are back where they were, and 200k
    packets leave the resident size where it was."""
    import sys
    c = _keys("c", "AES-256-GCM", bytes(32), bytes(8), 3)
    payload = bytearray(1400)
    out = bytearray(2000)
    wire = bytearray(c.seal(payload))
    bad = bytearray(wire)
    bad[-1] ^= 1
    refs = [sys.getrefcount(x) for x in (payload, out, wire, bad)]

    def once():
        c.seal(payload)
        c.seal_into(payload, out)
        for pkt in (wire, bad, wire[:10]):
            _refusal(c, pkt)
        for args in ((payload, bytearray(5)), (payload, bytes(2000))):
            with pytest.raises((ValueError, BufferError)):
                c.seal_into(*args)

    once()
    for x in (payload, out, wire, bad):
        x.append(0)
        del x[-1]                           # BufferError if an export were left
    del x
    for _ in range(2000):
        once()
    gc.collect()
    assert [sys.getrefcount(x) for x in (payload, out, wire, bad)] == refs
    before = _rss_kib()
    for _ in range(25_000):
        once()                              # 8 C calls each: 200k calls
    gc.collect()
    assert _rss_kib() - before < 2048, "RSS grew by more than 2 MiB over 200k calls"


@pytest.mark.parametrize("path", ["python", "c"])
def test_warm_up_takes_every_name_on_either_path(path):
    """ciphers.warm_up makes its throw-away object on the path the data channel uses (the compiled
    Key's first one pays OpenSSL's provider load, 0.5-5 ms); CBC, unknown and empty names are
    passed over, as before."""
    with forced(path):
        ciphers.warm_up([*ciphers.REGISTRY, "aes-256-gcm", "BF-CBC", None, ""])
