"""Sealing a batch in one call (`Key.seal_many`, `DataKey.seal_many`) against one seal() per packet.

Why: the sending path seals each batch read from the TUN with one call (datapath.py
`ClientDataPath.seal_batch` -> `Session.encrypt_many`); the wire bytes and packet ids must be
exactly those of sealing the packets one by one -- an id reused would repeat an AEAD nonce, an
id skipped or reordered would be refused by the peer's replay window. Both AEAD paths (compiled
and the Python twin) are checked (tests/aead_paths.py).
"""
from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings, strategies as st

from appliance.openvpn.datachannel import DataKey
from tests.aead_paths import aead_path, compiled_aead  # noqa: F401 - the fixture

K1, K2 = bytes(range(64)), bytes(range(64, 128))
CIPHERS = ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"]
_payloads = st.lists(st.binary(min_size=0, max_size=1600), min_size=0, max_size=70)


def _key(cipher: str, peer_id: int | None) -> DataKey:
    return DataKey(cipher, 3, K1, K2, K2, K1, peer_id=peer_id)


@pytest.mark.usefixtures("aead_path")
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("peer_id", [None, 7])
@settings(max_examples=40, deadline=None)
@given(payloads=_payloads, start=st.sampled_from([0, 1000, 0xFEFFFF00]), kind=st.sampled_from(["bytes", "bytearray", "view"]))
def test_seal_many_is_one_seal_per_payload_and_opens_in_order(cipher, peer_id, payloads, start, kind):
    a, b = _key(cipher, peer_id), _key(cipher, peer_id)
    a.send_pid = b.send_pid = start
    wrap = {"bytes": bytes, "bytearray": bytearray, "view": lambda p: memoryview(bytearray(p))}[kind]
    many = a.seal_many([wrap(p) for p in payloads])
    one = [b.seal(p) for p in payloads]
    assert many == one
    assert all(type(w) is bytes for w in many)
    assert (a.send_pid, a.bytes_sent) == (b.send_pid, b.bytes_sent) == (start + len(payloads), sum(map(len, payloads)))
    peer = DataKey(cipher, 3, K2, K1, K1, K2, peer_id=peer_id)
    assert [bytes(peer.open_untrusted(w)) for w in many] == payloads


def _ckey(sealing: bool = True):
    return compiled_aead().Key("AES-256-GCM", K1[:32], K2[:8], sealing)


@pytest.mark.parametrize("head", [(0x48000007, 4), (0x33, 1)])
def test_compiled_seal_many_ids_count_up_from_first_pid(head):
    k = _ckey()
    pls = [bytes([i]) * (i * 37 % 1500) for i in range(50)]
    assert k.seal_many(*head, 0xFFFFFFFF - 49, pls) == [k.seal(*head, 0xFFFFFFFF - 49 + i, p) for i, p in enumerate(pls)]
    assert k.seal_many(*head, 5, []) == []
    assert k.seal_many(*head, 5, tuple(pls[:3])) == [k.seal(*head, 5 + i, p) for i, p in enumerate(pls[:3])]


def test_compiled_seal_many_refuses_without_sealing_anything_odd():
    """Ids past 32 bits (a nonce would repeat), a payload too long, a non-buffer, an opening key:
    an exception, no list, and no reference left behind."""
    k = _ckey()
    with pytest.raises(OverflowError):
        k.seal_many(0x48000007, 4, 0xFFFFFFFF - 1, [b"a", b"b", b"c"])
    big = bytes(compiled_aead().MAX_LEN + 1)
    for bad, exc in (([b"a", big], OverflowError), ([b"a", 5, b"c"], TypeError), ([b"a", "text"], TypeError),
                     (5, TypeError)):
        gc.collect()
        before = len(gc.get_objects())
        with pytest.raises(exc):
            k.seal_many(0x48000007, 4, 1, bad)
        gc.collect()
        assert len(gc.get_objects()) <= before + 5
    with pytest.raises(TypeError):
        _ckey(False).seal_many(0x48000007, 4, 1, [b"a"])
    with pytest.raises(ValueError):
        k.seal_many(0x48000007, 3, 1, [b"a"])


def test_compiled_seal_many_payload_objects_are_held_while_sealing():
    """The payload list may be changed by its owner afterwards: seal_many worked on its own
    tuple of the items, so the wire packets are of the payloads given at the call."""
    k = _ckey()
    pls = [bytearray(b"x" * 100), bytearray(b"y" * 100)]
    w = k.seal_many(0x48000007, 4, 1, pls)
    pls[0][:] = b"z" * 100
    assert w == [k.seal(0x48000007, 4, 1, b"x" * 100), k.seal(0x48000007, 4, 2, b"y" * 100)]
