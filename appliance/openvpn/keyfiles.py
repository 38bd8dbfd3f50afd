"""Reading, writing and (un)wrapping the key files of tls-auth, tls-crypt and tls-crypt-v2.

Formats (OpenVPN 2.6, wire notes §2b and §8):
- static key ("secret", tls-auth, tls-crypt): text between `-----BEGIN OpenVPN Static key V1-----`
  and the END line is hex for exactly 256 bytes; everything outside the markers is comment.
- tls-crypt-v2 server key: PEM-style base64 of 128 bytes (cipher slot 64 ‖ HMAC slot 64).
- tls-crypt-v2 client key: PEM-style base64 of Kc (256 bytes) ‖ WKc, where
  WKc = tag(32) ‖ AES-256-CTR(Ke, iv=tag[:16], Kc ‖ metadata) ‖ len(2), len = len(WKc) and
  tag = HMAC-SHA256(Ka, len ‖ Kc ‖ metadata). Metadata is a type byte then data
  (0 = user bytes, 1 = 8-byte big-endian Unix timestamp, OpenVPN's default).

Files are configuration (errors -> ConfigError); a WKc arrives from the network in a client's
first packet (errors -> BadPacket only, tag checked in constant time before anything is used).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import BadPacket, ConfigError
from .mac import KeyedMac

STATIC_KEY_LEN = 256
V2_SERVER_KEY_LEN = 128
V2_CLIENT_KEY_LEN = 256            # Kc
TAG_LEN = 32
WKC_MAX_LEN = 1024                 # TLS_CRYPT_V2_MAX_WKC_LEN
WKC_MIN_LEN = TAG_LEN + V2_CLIENT_KEY_LEN + 1 + 2   # tag, Kc, metadata type byte, length
METADATA_MAX_LEN = WKC_MAX_LEN - (TAG_LEN + V2_CLIENT_KEY_LEN + 2)   # 734, type byte included

METADATA_TYPE_USER = 0x00
METADATA_TYPE_TIMESTAMP = 0x01

_STATIC_BEGIN = "-----BEGIN OpenVPN Static key V1-----"
_STATIC_END = "-----END OpenVPN Static key V1-----"
_V2_SERVER_NAME = "OpenVPN tls-crypt-v2 server key"
_V2_CLIENT_NAME = "OpenVPN tls-crypt-v2 client key"


# ------------------------------------------------------------------ helpers
def _as_text(text: str | bytes, what: str) -> str:
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            return bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError(f"{what} is not ASCII text") from None
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be text")
    return text


def _between(text: str, begin: str, end: str, what: str) -> list[str]:
    """Lines strictly between the BEGIN and END markers (stripped, empty ones dropped)."""
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        start = lines.index(begin)
    except ValueError:
        raise ConfigError(f"{what}: missing '{begin}' line") from None
    try:
        stop = lines.index(end, start + 1)
    except ValueError:
        raise ConfigError(f"{what}: missing '{end}' line") from None
    return [ln for ln in lines[start + 1:stop] if ln]


def _pem_decode(text: str | bytes, name: str, what: str) -> bytes:
    body = _between(_as_text(text, what), f"-----BEGIN {name}-----", f"-----END {name}-----", what)
    try:
        return base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what}: invalid base64") from None


def _pem_encode(data: bytes, name: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {name}-----", *lines, f"-----END {name}-----"]) + "\n"


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def _server_key_parts(server_key: bytes) -> tuple[bytes, bytes]:
    """(Ke, Ka): first 32 bytes of the cipher slot [0:64) and of the HMAC slot [64:128)."""
    if len(server_key) != V2_SERVER_KEY_LEN:
        raise ConfigError(f"tls-crypt-v2 server key must be {V2_SERVER_KEY_LEN} bytes, got {len(server_key)}")
    return bytes(server_key[0:32]), bytes(server_key[64:96])


# ------------------------------------------------------------------ static key
def parse_static_key(text: str | bytes) -> bytes:
    """The 256 bytes of an `OpenVPN Static key V1` file (text outside the markers is ignored)."""
    what = "static key"
    body = _between(_as_text(text, what), _STATIC_BEGIN, _STATIC_END, what)
    hexstr = "".join("".join(ln.split()) for ln in body)
    try:
        key = bytes.fromhex(hexstr)
    except ValueError:
        raise ConfigError(f"{what}: invalid hex") from None
    if len(key) != STATIC_KEY_LEN:
        raise ConfigError(f"{what}: expected {STATIC_KEY_LEN} bytes, got {len(key)}")
    return key


def generate_static_key() -> str:
    """A fresh key in the layout `openvpn --genkey secret` writes (16 bytes of hex per line)."""
    h = os.urandom(STATIC_KEY_LEN).hex()
    lines = [h[i:i + 32] for i in range(0, len(h), 32)]
    return "\n".join(["#", "# 2048 bit OpenVPN static key", "#", _STATIC_BEGIN, *lines, _STATIC_END]) + "\n"


# ------------------------------------------------------------------ tls-crypt-v2
def parse_tls_crypt_v2_server_key(text: str | bytes) -> bytes:
    key = _pem_decode(text, _V2_SERVER_NAME, "tls-crypt-v2 server key")
    if len(key) != V2_SERVER_KEY_LEN:
        raise ConfigError(f"tls-crypt-v2 server key: expected {V2_SERVER_KEY_LEN} bytes, got {len(key)}")
    return key


def parse_tls_crypt_v2_client_key(text: str | bytes) -> tuple[bytes, bytes]:
    """(Kc, WKc). The WKc is opaque to the client; only its framing is checked here."""
    what = "tls-crypt-v2 client key"
    raw = _pem_decode(text, _V2_CLIENT_NAME, what)
    kc, wkc = raw[:V2_CLIENT_KEY_LEN], raw[V2_CLIENT_KEY_LEN:]
    if len(wkc) < WKC_MIN_LEN:
        raise ConfigError(f"{what}: too short ({len(raw)} bytes)")
    if len(wkc) > WKC_MAX_LEN:
        raise ConfigError(f"{what}: wrapped key longer than {WKC_MAX_LEN} bytes")
    if int.from_bytes(wkc[-2:], "big") != len(wkc):
        raise ConfigError(f"{what}: wrapped key length field does not match")
    return kc, wkc


def generate_tls_crypt_v2_server_key() -> str:
    return _pem_encode(os.urandom(V2_SERVER_KEY_LEN), _V2_SERVER_NAME)


def wrap_client_key(kc: bytes, server_key: bytes, metadata: bytes = b"",
                    metadata_type: int = METADATA_TYPE_USER) -> bytes:
    """WKc for `kc` under the server key (what the server later unwraps)."""
    ke, ka = _server_key_parts(server_key)
    if len(kc) != V2_CLIENT_KEY_LEN:
        raise ConfigError(f"tls-crypt-v2 client key must be {V2_CLIENT_KEY_LEN} bytes")
    if not 0 <= metadata_type <= 255:
        raise ConfigError("tls-crypt-v2 metadata type must fit in one byte")
    plain = bytes(kc) + bytes((metadata_type,)) + bytes(metadata)
    total = TAG_LEN + len(plain) + 2
    if total > WKC_MAX_LEN:
        raise ConfigError(f"tls-crypt-v2 metadata too long ({len(metadata)} bytes, max {METADATA_MAX_LEN - 1})")
    net_len = struct.pack("!H", total)
    tag = hmac.digest(ka, net_len + plain, "sha256")
    return tag + _ctr(ke, tag[:16], plain) + net_len


def generate_tls_crypt_v2_client_key(server_key: bytes, metadata: bytes = b"",
                                     metadata_type: int = METADATA_TYPE_USER,
                                     timestamp: bool = False) -> str:
    """PEM text of a fresh Kc ‖ WKc, as `openvpn --genkey tls-crypt-v2-client` writes it.

    With timestamp=True the metadata is OpenVPN's default (type 1, current Unix time), and the
    metadata arguments are ignored.
    """
    if timestamp:
        metadata_type, metadata = METADATA_TYPE_TIMESTAMP, struct.pack("!q", int(time.time()))
    kc = os.urandom(V2_CLIENT_KEY_LEN)
    return _pem_encode(kc + wrap_client_key(kc, server_key, metadata, metadata_type), _V2_CLIENT_NAME)


def unwrap_client_key_untrusted(wkc: bytes, server_key: bytes) -> tuple[bytes, int, bytes]:
    """(Kc, metadata type, metadata) from a WKc received from the network.

    Every failure is a BadPacket: the caller drops the packet silently. The tag is compared in
    constant time and nothing decrypted is returned unless it matches. A server unwrapping many
    keeps a ClientKeyUnwrapper instead (its key schedule made once)."""
    return ClientKeyUnwrapper(server_key).unwrap_untrusted(wkc)


class ClientKeyUnwrapper:
    """The server's WKc unwrap with the server key's AES-CTR context and HMAC keyed once.

    Why: the tag is over the plaintext, so every WKc -- a no-key attacker's forged one too --
    is decrypted before it can be refused. A fresh Cipher per WKc (Python-side validation and a
    key schedule, ~10x the decryption of ~300 bytes) and a freshly keyed HMAC made a forged
    tls-crypt-v2 datagram several times dearer than any other packet a stranger can send; here
    the context is only re-pointed at each WKc's IV (CTR keeps no state across a reset_nonce),
    as the session wrappers do. One thread uses it (the dispatcher's)."""

    __slots__ = ("_dec", "_mac")

    def __init__(self, server_key: bytes) -> None:
        ke, ka = _server_key_parts(server_key)
        self._dec = Cipher(algorithms.AES(ke), modes.CTR(bytes(16))).decryptor()
        self._mac = KeyedMac(ka)

    def unwrap_untrusted(self, wkc: bytes) -> tuple[bytes, int, bytes]:
        """As unwrap_client_key_untrusted, with this server key."""
        n = len(wkc)
        if n < WKC_MIN_LEN or n > WKC_MAX_LEN:
            raise BadPacket("wrapped client key has a bad size")
        wkc = bytes(wkc)
        net_len = wkc[-2:]
        if int.from_bytes(net_len, "big") != n:
            raise BadPacket("wrapped client key length mismatch")
        tag = wkc[:TAG_LEN]
        dec = self._dec
        dec.reset_nonce(tag[:16])
        plain = dec.update(wkc[TAG_LEN:-2])
        if not hmac.compare_digest(tag, self._mac.digest(net_len + plain)):
            raise BadPacket("wrapped client key failed authentication")
        return plain[:V2_CLIENT_KEY_LEN], plain[V2_CLIENT_KEY_LEN], plain[V2_CLIENT_KEY_LEN + 1:]
