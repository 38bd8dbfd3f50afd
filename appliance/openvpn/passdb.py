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


def username_problem(user: str) -> str | None:
    """Why `user` cannot have a password line (None: it can): the file's reader and `passwd`
    share the rule, so `passwd` never prints a line the server refuses or reads as another's."""
    if not user:
        return "is empty"
    if ":" in user:
        return "holds ':', which ends the name on a line"
    if credential_as_sent(user) != user:
        return ("holds control characters (tab, U+0001-U+001F, DEL): OpenVPN 2.6's client drops them "
                "before sending, the server makes them `_`, so no client's name is this")
    if user != user.strip():
        return "begins or ends with a blank, which a line's reader cannot tell from the line's own"
    return None


class PasswordDb:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    @classmethod
    def parse(cls, text: str, path: str = "<passdb>") -> "PasswordDb":
        users: dict[str, str] = {}
        first: dict[str, int] = {}
        # Lines end at LF only (a CR before it goes too): str.splitlines also ends them at U+2028,
        # U+0085, VT, FF..., and strip() takes U+00A0 and the like from a name's ends, so the line
        # `passwd` made for the user `\u2028alice` or ` alice` was read as alice's, and replaced
        # hers: that user's password let them in as alice, and hers no longer did.
        for i, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            user, sep, h = line.partition(":")
            parts = h.strip().split("$")
            if not sep or len(parts) != 6 or parts[0] != "scrypt":
                raise ConfigError("expected `username:scrypt$N$r$p$salt$hash`", path, i, "auth-user-pass-verify")
            problem = username_problem(user)
            if problem:
                raise ConfigError(f"username {user!r} {problem}", path, i, "auth-user-pass-verify")
            if user in first:
                raise ConfigError(f"username {user!r} has a line already (line {first[user]})", path, i,
                                  "auth-user-pass-verify")
            first[user] = i
            users[user] = h.strip()
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
