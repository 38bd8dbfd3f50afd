"""The cipher registry is the one source of cipher facts: its overhead must be what the data
channel really adds on the wire, for every cipher, header format and digest."""
from __future__ import annotations

import pytest

from appliance.openvpn import ciphers
from appliance.openvpn.datachannel import DataKey
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

K = bytes(range(64))


def _pair(name: str, peer_id: int | None, auth: str) -> tuple[DataKey, DataKey]:
    a = DataKey(name, 0, K, K[::-1], K[::-1], K, peer_id, auth)
    b = DataKey(name, 0, K[::-1], K, K, K[::-1], peer_id, auth)
    return a, b


@pytest.mark.parametrize("name", sorted(ciphers.REGISTRY))
@pytest.mark.parametrize("data_v2", [True, False])
@pytest.mark.parametrize("auth", ["SHA1", "SHA256", "SHA512"])
def test_overhead_is_what_sealing_adds(name, data_v2, auth):
    a, b = _pair(name, 7 if data_v2 else None, auth)
    want = ciphers.overhead(name, auth, data_v2)
    assert a.overhead() == want
    grown = set()
    for n in range(1, 80):
        wire = bytes(a.seal(bytes([0x45]) + bytes(n - 1)))
        grown.add(len(wire) - n)
        assert bytes(b.open_untrusted(wire)) == bytes([0x45]) + bytes(n - 1)
    # AEAD adds a fixed amount; CBC varies with padding, and the registry gives the worst case.
    assert max(grown) == want
    if ciphers.spec(name).aead:
        assert grown == {want}


def test_known_values_match_openvpn_layout():
    # P_DATA_V2 AEAD: opcode+peer-id 4, packet-id 4, tag 16 (OpenVPN's 24 bytes for AES-GCM).
    assert ciphers.overhead("AES-256-GCM", "SHA1", True) == 24
    assert ciphers.overhead("CHACHA20-POLY1305", "SHA512", False) == 21
    # CBC + SHA1 over P_DATA_V1: 1 + HMAC 20 + IV 16 + packet-id 4 + padding up to 16.
    assert ciphers.overhead("AES-128-CBC", "SHA1", False) == 57


def test_unknown_cipher_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        ciphers.overhead("BF-CBC", "SHA1", True)
    with pytest.raises(ValueError):
        DataKey("AES-256-OCB", 0, K, K, K, K, None)
    assert not ciphers.is_supported("BF-CBC") and ciphers.is_supported("aes-256-gcm")


def test_registry_entries_are_consistent():
    for name, s in ciphers.REGISTRY.items():
        assert s.name == name == name.upper()
        assert (s.make_aead is not None) == s.aead
        assert s.key_len in (16, 24, 32)
    assert set(ciphers.DEFAULT_DATA_CIPHERS) <= set(ciphers.REGISTRY)
    assert ciphers.MAX_OVERHEAD == max(ciphers.overhead(n, "SHA512", True) for n in ciphers.REGISTRY)


@pytest.mark.parametrize(("peer_info", "want"), [
    # 2.6.14's tls_peer_ncp_list: without IV_CIPHERS, IV_NCP read with sscanf "%d", >= 2: AES-GCM.
    ("IV_NCP=2", "AES-256-GCM"),
    ("IV_NCP=3", "AES-256-GCM"),
    ("IV_NCP=2x", "AES-256-GCM"),
    ("IV_NCP=1", "FALLBACK"),
    ("IV_NCP=-2", "FALLBACK"),
    ("IV_NCP=4294967298", "AES-256-GCM"),      # a C int's 32 bits: 2
    # An IV_CIPHERS line, even empty, is the client's list: IV_NCP is not read then.
    ("IV_CIPHERS=\nIV_NCP=2", "FALLBACK"),
    ("IV_CIPHERS=CHACHA20-POLY1305\nIV_NCP=2", "CHACHA20-POLY1305"),
])
def test_a_clients_cipher_is_chosen_as_openvpn_2_6_reads_its_peer_info(peer_info, want):
    from appliance.openvpn.keymethod import KeyMethod2
    info = KeyMethod2(b"r" * 32, b"s" * 32, "V4", peer_info=peer_info + "\n").peer_info_dict()
    assert ciphers.choose(info, ["AES-256-GCM", "CHACHA20-POLY1305"], "FALLBACK") == want
