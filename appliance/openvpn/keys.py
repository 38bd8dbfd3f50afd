"""Data-channel key material: OpenVPN's TLS-1.0-style PRF and the TLS exporter (EKM).

The 256-byte key block is `[0:64) cipher c→s | [64:128) hmac c→s | [128:192) cipher s→c |
[192:256) hmac s→c` (c/s = TLS client/server). For AEAD ciphers the 8-byte implicit IV is the
start of the sender's hmac slot.
"""
from __future__ import annotations

import hashlib
import hmac

KEY_BLOCK_LEN = 256
EKM_LABEL = b"EXPORTER-OpenVPN-datakeys"
MASTER_LABEL = b"OpenVPN master secret"
EXPANSION_LABEL = b"OpenVPN key expansion"


def _p_hash(digest: str, secret: bytes, seed: bytes, length: int) -> bytes:
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, digest)
        out += hmac.digest(secret, a + seed, digest)
    return bytes(out[:length])


def tls1_prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 2246 PRF: P_MD5 over the first half of the secret XOR P_SHA1 over the second."""
    half = (len(secret) + 1) // 2
    s1, s2 = secret[:half], secret[len(secret) - half:]
    md5 = _p_hash("md5", s1, label + seed, length)
    sha = _p_hash("sha1", s2, label + seed, length)
    return bytes(x ^ y for x, y in zip(md5, sha))


def prf_key_block(pre_master: bytes, client_random1: bytes, server_random1: bytes,
                  client_random2: bytes, server_random2: bytes,
                  client_sid: bytes, server_sid: bytes) -> bytes:
    """OpenVPN's legacy key expansion (ssl.c generate_key_expansion_openvpn_prf)."""
    master = tls1_prf(pre_master, MASTER_LABEL, client_random1 + server_random1, 48)
    return tls1_prf(master, EXPANSION_LABEL,
                    client_random2 + server_random2 + client_sid + server_sid, KEY_BLOCK_LEN)


def split_key_block(block: bytes, is_client: bool) -> tuple[bytes, bytes, bytes, bytes]:
    """-> (send cipher key slot, send hmac slot, recv cipher key slot, recv hmac slot), 64 bytes each."""
    c2s_key, c2s_hmac, s2c_key, s2c_hmac = block[0:64], block[64:128], block[128:192], block[192:256]
    if is_client:
        return c2s_key, c2s_hmac, s2c_key, s2c_hmac
    return s2c_key, s2c_hmac, c2s_key, c2s_hmac


def digest_size(name: str) -> int:
    return hashlib.new(name.lower().replace("-", "")).digest_size
