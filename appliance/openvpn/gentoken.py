"""Server: the session tokens of `auth-gen-token`, byte for byte as OpenVPN 2.6 makes and checks them.

Why: a client that logs in with a password the server checks (a one-time code, or a password
its profile does not keep: auth-nocache) would otherwise be asked for it again at every
renegotiation and reconnect. With auth-gen-token the server pushes `auth-token SESS_ID_AT_...`
after a password check succeeds; the client sends that instead of the password from then on, and
the server checks the token's HMAC and age instead of the password.

The format (OpenVPN's auth_token.c), so that a token issued by an OpenVPN server is honoured by
ours when both hold the same `auth-gen-token-secret` (and the other way round):

    "SESS_ID_AT_" + base64( session id (12 random bytes) | initial time (8, big endian)
                            | issue time (8, big endian)
                            | HMAC-SHA256(username | the 28 bytes before it) )

The times are wall-clock seconds: a token must stay checkable across a server restart and on
another server sharing the secret, which a monotonic clock cannot give, so the caller passes them
in (this module reads no clock). A token stays valid for two renewal periods after it was issued
and, with a lifetime, until `lifetime` seconds after the session's first login; a renewed token
keeps the session id and initial time of the first. The HMAC key is bytes 64-95 of the 128-byte
secret (OpenVPN's `struct key`: 64 cipher bytes, then 64 HMAC bytes, of which SHA-256 uses 32).
"""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct

from ..frozen_record import FrozenRecord

PREFIX = "SESS_ID_AT_"
PEM_NAME = "OpenVPN auth-token server key"
SESSION_ID_LEN = 12
_DATA_LEN = SESSION_ID_LEN + 8 + 8 + 32           # 60: a multiple of 3, so base64 without padding
_B64_LEN = _DATA_LEN * 4 // 3                     # 80
TOKEN_LEN = len(PREFIX) + _B64_LEN                # 91
SECRET_LEN = 128                                  # OpenVPN's struct key: cipher[64] + hmac[64]
_SID_B64_LEN = SESSION_ID_LEN * 4 // 3            # 16


class Verdict(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"          # authentic, but out of its renewal window or past the lifetime
    INVALID = "invalid"          # malformed, wrong HMAC (another key or username), or another session's


def is_token(password: str) -> bool:
    """Whether a password is shaped like a generated token (OpenVPN's is_auth_token: its length
    and prefix). Anything else is checked as a password."""
    return len(password) == TOKEN_LEN and password.startswith(PREFIX)


def parse_secret(pem: str) -> bytes:
    """The HMAC key in an `auth-gen-token-secret` file (made by `openvpn --genkey auth-token`).
    Raises ValueError with what is wrong."""
    begin, end = f"-----BEGIN {PEM_NAME}-----", f"-----END {PEM_NAME}-----"
    lines = [line.strip() for line in pem.strip().splitlines()]
    if begin not in lines or end not in lines or lines.index(end) < lines.index(begin):
        raise ValueError(f"not an auth-token secret (no '{begin}' ... '{end}' block; "
                         "make one with `openvpn --genkey auth-token FILE`)")
    body = "".join(lines[lines.index(begin) + 1:lines.index(end)])
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("auth-token secret: the block is not base64") from None
    if len(raw) < SECRET_LEN:
        raise ValueError(f"auth-token secret: {len(raw)} bytes, {SECRET_LEN} needed")
    return raw[64:96]


def new_secret() -> bytes:
    """An ephemeral HMAC key (no auth-gen-token-secret): tokens die with the process, as OpenVPN's."""
    return secrets.token_bytes(32)


class TokenPolicy(FrozenRecord):
    """`auth-gen-token [lifetime] [renewal]` with its key; `renewal` already defaulted to reneg-sec."""
    key: bytes
    lifetime: int = 0            # 0: no limit but the renewal window
    renewal: int = 3600

    def _mac(self, username: bytes, body: bytes) -> bytes:
        return hmac.new(self.key, username + body, hashlib.sha256).digest()

    @staticmethod
    def session_id(token: str) -> str:
        """The session-id part of a token, as OpenVPN's `session_id` environment variable."""
        return token[len(PREFIX):len(PREFIX) + _SID_B64_LEN]

    def issue(self, username: bytes, wall: int, initial: str | None = None,
              random_bytes=secrets.token_bytes) -> str:
        """A token for `username` issued at `wall` (seconds since the epoch). `initial`: this
        session's first token (a valid one), whose session id and initial time a renewal keeps."""
        if initial is not None:
            raw = base64.b64decode(initial[len(PREFIX):])
            sid, first = raw[:SESSION_ID_LEN], raw[SESSION_ID_LEN:SESSION_ID_LEN + 8]
        else:
            sid, first = random_bytes(SESSION_ID_LEN), struct.pack(">Q", wall)
        body = sid + first + struct.pack(">Q", wall)
        return PREFIX + base64.b64encode(body + self._mac(username, body)).decode("ascii")

    def verify(self, token: str, username: bytes, wall: int, initial: str | None = None) -> Verdict:
        """As OpenVPN's verify_auth_token (without its external-auth and empty-username cases,
        which need an external authenticator): the HMAC over this username, then the times; a
        token of another session than `initial` (this connection's first) is refused outright."""
        if not is_token(token):
            return Verdict.INVALID
        try:
            raw = base64.b64decode(token[len(PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            return Verdict.INVALID
        if len(raw) != _DATA_LEN:
            return Verdict.INVALID
        body, mac = raw[:-32], raw[-32:]
        if not hmac.compare_digest(self._mac(username, body), mac):
            return Verdict.INVALID
        if initial is not None and not hmac.compare_digest(
                token[:len(PREFIX) + _SID_B64_LEN].encode("ascii"), initial[:len(PREFIX) + _SID_B64_LEN].encode("ascii")):
            return Verdict.INVALID
        return self._times(body, wall)

    def verify_times(self, token: str, wall: int) -> Verdict:
        """A token this server issued under another key (before a reload rotated it: its HMAC
        is not checked, the caller knows it is ours) held to this policy's times."""
        try:
            raw = base64.b64decode(token[len(PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            return Verdict.INVALID
        return self._times(raw[:-32], wall) if len(raw) == _DATA_LEN else Verdict.INVALID

    def _times(self, body: bytes, wall: int) -> Verdict:
        first, issued = struct.unpack(">QQ", body[SESSION_ID_LEN:])
        expired = (not issued <= wall < issued + 2 * self.renewal) or issued < first
        if self.lifetime and wall > first + self.lifetime:
            expired = True
        return Verdict.EXPIRED if expired else Verdict.VALID
