"""`Session.encrypt_many` (a TUN batch sealed in one call) against `encrypt` one packet at a time:
what the peer opens, the packet ids, the byte count, and the cases where the batch must go packet
by packet -- ids near the renegotiation trigger and the end of the id space, fragment N, and
compression stubs. On both AEAD paths (tests/aead_paths.py)."""
from __future__ import annotations

import pytest

from tests.aead_paths import aead_path  # noqa: F401 - the fixture
from tests.engine.test_memory_link import connected, payloads, pki  # noqa: F401 - pki is a fixture

pytestmark = pytest.mark.usefixtures("aead_path")

DATA_PID_RENEG_AT = 0xFF000000          # OpenVPN's PACKET_ID_WRAP_TRIGGER
PID_MAX = 0xFFFFFFFF


def _opened(s, wire, now) -> list[bytes]:
    got = []
    for w in wire:
        got += [bytes(x) for x in s.receive(bytes(w), now)]
    return got


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC"])
def test_a_batch_opens_in_order_and_counts_like_one_by_one(pki, cipher):
    c, s, link = connected(pki, cipher=cipher)
    batch = payloads(40, seed=3)
    pid, written = c.send_key.send_pid, c.link_written
    wire = c.encrypt_many(batch)
    assert len(wire) == 40
    assert c.send_key.send_pid == pid + 40
    assert c.link_written - written == sum(map(len, wire))
    assert _opened(s, wire, link.now) == batch
    assert c.encrypt_many([]) == []


def test_a_batch_reaching_the_renegotiation_trigger_asks_for_a_new_key(pki):
    c, s, link = connected(pki)
    c.send_key.send_pid = DATA_PID_RENEG_AT - 3
    wire = c.encrypt_many(payloads(6))
    assert _opened(s, wire, link.now) == payloads(6)
    assert c.next_deadline() <= link.now            # the trigger was seen, as encrypt() sees it
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=30)
    assert c.send_key.key_id == 1


def test_a_batch_at_the_end_of_the_id_space_seals_what_fits_and_never_wraps(pki):
    c, s, link = connected(pki)
    c.send_key.send_pid = PID_MAX - 2
    wire = c.encrypt_many(payloads(5))
    assert len(wire) == 2 and c.send_key.send_pid == PID_MAX
    assert _opened(s, wire, link.now) == payloads(5)[:2]
    assert c.stats.get("packet-id space exhausted (send)") == 3


@pytest.mark.parametrize("comp", [None, "stub-v2"])
def test_fragmented_and_compressed_batches_arrive_whole(pki, comp):
    c, s, link = connected(pki, fragment_room=1300, comp=comp)
    batch = [bytes([0x45]) + bytes([i]) * (1200 + 10 * i) for i in range(20)]
    wire = c.encrypt_many(batch)
    assert len(wire) > len(batch) and max(map(len, wire)) <= 1300
    assert _opened(s, wire, link.now) == batch
