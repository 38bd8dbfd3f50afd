"""5e6d478f and OpenVPN 2.7's AEAD usage limit: an AES-GCM key may protect at most about 2^36
packets plus 16-byte blocks (q + s <= 2^36 - 1 keeps the forgery and distinguishing advantage
under 2^-57), so OpenVPN 2.7 renegotiates at 7/8 of it, counting what it sent and what it
received under the key, every block of every packet (the fix: no call's blocks left out).
OpenVPN 2.6 has no such limit, and ours had none: with `reneg-sec 0` (or a long one) and no
reneg-bytes, one AES-GCM key protected traffic without end. ChaCha20-Poly1305 has no such
limit (OpenVPN sets none), nor CBC (HMAC).

Sessions in memory; the key's counters set near the limit rather than a terabyte sent."""
from __future__ import annotations

import pytest

from appliance.openvpn import ciphers
from tests.engine.test_memory_link import Link, make_pair, payloads, up
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

LIMIT = (2**36 - 1) // 8 * 7          # OpenVPN 2.7's renegotiation point


def _pair(pki, cipher: str):  # noqa: F811
    c, s, strip = make_pair(pki, cipher=cipher, reneg_sec=0, ping=0)
    link = Link(c, s, strip_wkc=strip)
    link.run(lambda: up(c, s))
    assert up(c, s)
    return c, s, link


def test_aes_gcm_has_openvpns_limit_and_chacha_none():
    assert ciphers.spec("AES-256-GCM").usage_limit == LIMIT
    assert ciphers.spec("AES-128-GCM").usage_limit == LIMIT
    assert ciphers.spec("CHACHA20-POLY1305").usage_limit == 0
    assert ciphers.spec("AES-256-CBC").usage_limit == 0


@pytest.mark.parametrize("side", ["sent", "received"])
def test_an_aes_gcm_key_near_its_usage_limit_is_renegotiated(pki, side):  # noqa: F811
    c, s, link = _pair(pki, "AES-256-GCM")
    k = c.send_key
    # Just under the limit in packets plus blocks: no new key yet.
    if side == "sent":
        k.send_pid, k.bytes_sent = 1_000_000, (LIMIT - 2 * 1_000_000 - 10) * 16
    else:
        k.packets_recv, k.bytes_recv = 1_000_000, (LIMIT - 2 * 1_000_000 - 10) * 16
    link.run(lambda: False, max_time=link.now + 60)
    assert c.send_key is k, "renegotiated below the limit"
    # Over it: the client starts a new key on its own (no reneg-sec, reneg-bytes or traffic),
    # within the check interval, and traffic goes on under it.
    if side == "sent":
        k.bytes_sent += 20 * 16
    else:
        k.bytes_recv += 20 * 16
    link.run(lambda: c.send_key is not k and s.send_key.key_id == c.send_key.key_id, max_time=link.now + 60)
    assert c.send_key is not k and c.send_key.key_id == 1
    assert link.send(c, s, payloads(3)) == payloads(3)


def test_a_chacha20_key_has_no_such_limit(pki):  # noqa: F811
    c, s, link = _pair(pki, "CHACHA20-POLY1305")
    k = c.send_key
    k.send_pid, k.bytes_sent = 1_000_000, LIMIT * 16
    link.run(lambda: False, max_time=link.now + 60)
    assert c.send_key is k
