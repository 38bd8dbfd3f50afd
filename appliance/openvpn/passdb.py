"""Username/password checking for `auth-user-pass-verify FILE passdb` (no scripts run).

File format, one user per line (`#` comments): `username:scrypt$N$r$p$SALT_HEX$HASH_HEX`, made by
`vpn-appliance passwd USER`. scrypt (stdlib hashlib) because a leaked file must not give up the
passwords cheaply; the comparison is constant-time.

A password counts without its control characters (tab, U+0001-U+001F, DEL: keymethod.
credential_as_sent), on both sides: OpenVPN 2.6's client drops them before sending, so a password
holding a tab, stored as typed, never let Debian's client in; other clients that send them meet
the same password.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from .errors import ConfigError
from .keymethod import credential_as_sent
from .peernames import to_bytes


def hash_password(password: str, n: int = 2 ** 14, r: int = 8, p: int = 1) -> str:
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(to_bytes(credential_as_sent(password)), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${h.hex()}"


class PasswordDb:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    @classmethod
    def parse(cls, text: str, path: str = "<passdb>") -> "PasswordDb":
        users = {}
        for i, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, h = line.partition(":")
            parts = h.split("$")
            if not sep or len(parts) != 6 or parts[0] != "scrypt":
                raise ConfigError("expected `username:scrypt$N$r$p$salt$hash`", path, i, "auth-user-pass-verify")
            users[user] = h
        return cls(users)

    def verify(self, username: str, password: str, common_name: str | None = None) -> bool:
        h = self.users.get(username)
        if h is None:
            hashlib.scrypt(b"x", salt=b"0" * 16, n=2 ** 14, r=8, p=1, dklen=32)  # same cost either way
            return False
        _, n, r, p, salt, want = h.split("$")
        got = hashlib.scrypt(to_bytes(credential_as_sent(password)), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
        return hmac.compare_digest(got, bytes.fromhex(want))
