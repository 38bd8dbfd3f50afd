"""Client: the auth-token a server pushed, kept for the whole run rather than one connection.

Why a holder of its own: a server that pushes `auth-token` (OpenVPN's auth-gen-token, or a
client-connect script) means "send this instead of the password from now on" -- a one-time
password cannot be typed again at every renegotiation or reconnect. OpenVPN 2.6's client keeps
the token in a process-wide slot (ssl.c) that outlives its connection restarts (ping-restart, a
lost TCP link, a server restart, a pushed RESTART), so the gateway owns one of these and hands it
to each connection's Session.

The rules kept here, as OpenVPN 2.6's client has them:
- the token is sent only together with a username: the one auth-token-user gave (base64), or else
  the auth-user-pass username last sent with the real password. A token with no username (no
  auth-user-pass and no auth-token-user), or an auth-token-user that does not decode, is not used;
- an empty `auth-token` changes nothing; a new one (the server's renewal) replaces the old;
- AUTH_FAILED (other than AUTH_FAILED,TEMP) drops it: the connection restarts, same server, and
  the password goes again (`take_auth_failed`). Without a token, AUTH_FAILED ends the run;
- nothing else drops it (auth-nocache concerns the password, not the token).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from .peernames import from_peer


@dataclass
class AuthToken:
    token: str = ""
    username: str = ""        # auth-token-user (decoded), or the username sent with the password
    usable: bool = False      # OpenVPN's `defined`: a token and a username to go with it

    def credentials(self, username: str, password: str) -> tuple[str, str] | None:
        """What the key-method message carries: the token once usable, else the configured
        username/password (None: neither, the message carries empty strings)."""
        if self.token and self.usable:
            return self.username, self.token
        if username:
            # The username the token will go with, should one be pushed on this connection.
            self.username = username
            return username, password
        return None

    def take(self, token: str | None, token_user_b64: str | None) -> None:
        """The server pushed `auth-token` and/or `auth-token-user` (in either order: same result)."""
        if token_user_b64:
            try:
                # Its bytes as they are (peernames), sent back as those bytes, as OpenVPN's client.
                self.username = from_peer(base64.b64decode(token_user_b64, validate=True))
            except ValueError:
                self.username = ""
            self.usable = bool(self.username)
        if token:
            self.token = token
            if self.username:
                self.usable = True

    @property
    def in_use(self) -> bool:
        return bool(self.token) and self.usable

    def take_auth_failed(self) -> bool:
        """AUTH_FAILED (not TEMP): forget the token. True when one was in use, which makes the
        failure a restart with the password instead of the end of the run."""
        was = self.in_use
        self.token, self.username, self.usable = "", "", False
        return was
