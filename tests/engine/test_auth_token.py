"""Client auth-token across connections, in memory (the real OpenVPN server: tests/interop/
test_auth_token_reconnect.py).

A server's `auth-token` replaces the password for the rest of the run, not only for one
connection's renegotiations: OpenVPN 2.6's client keeps it through ping-restart, a lost link or a
server restart, so a one-time password is asked for once. AUTH_FAILED drops it (the password goes
again, to the same server); AUTH_FAILED,TEMP keeps it. Each "connection" here is a new Session
pair sharing the gateway's AuthToken holder, as ClientGateway does.
"""
from __future__ import annotations

import base64

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.authtoken import AuthToken
from tests.engine.test_memory_link import Link, make_pair, up
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture

PUSH = "ifconfig 198.19.0.2 255.255.255.0"


class OneTimePasswords:
    """A server's verify script: each one-time password once, then the tokens it handed out."""

    def __init__(self, *otps: str) -> None:
        self.unused = set(otps)
        self.tokens: set[str] = set()
        self.seen: list[tuple[str, str]] = []

    def __call__(self, user: str, password: str, cn) -> bool:
        self.seen.append((user, password))
        if password in self.tokens:
            return True
        if password in self.unused:
            self.unused.discard(password)
            return True
        return False


def _connect(pki, holder: AuthToken, check: OneTimePasswords, token: str | None = "TOKEN-1",
             extra_push: tuple[str, ...] = (), **kw):
    kw.setdefault("username", "alice")
    kw.setdefault("password", "otp-1")
    c, s, _ = make_pair(pki, verify_user=check, auth_token=holder, **kw)
    opts = [PUSH, *extra_push] + ([f"auth-token {token}"] if token else [])
    s.cfg.push_options = lambda _s: opts
    if token:
        check.tokens.add(token)
    link = Link(c, s)
    link.run(lambda: up(c, s) or c.closed or s.closed, max_time=30)
    return c, s, link


def _closed(sess) -> list[ev.SessionClosed]:
    return [e for e in sess.events if isinstance(e, ev.SessionClosed)]


def test_a_reconnect_sends_the_token_instead_of_the_spent_one_time_password(pki):
    holder, check = AuthToken(), OneTimePasswords("otp-1")
    c, s, _ = _connect(pki, holder, check)
    assert up(c, s) and holder.in_use
    # the connection is lost (ping-restart, TCP reset, server restart): a new session
    c2, s2, _ = _connect(pki, holder, check, token="TOKEN-2")
    assert up(c2, s2), "the reconnect sent the spent one-time password instead of the token"
    assert check.seen == [("alice", "otp-1"), ("alice", "TOKEN-1")]
    assert holder.token == "TOKEN-2", "the second server's token replaces the first"


def test_auth_failed_on_the_token_drops_it_and_the_next_connection_sends_the_password(pki):
    holder, check = AuthToken(), OneTimePasswords("otp-1")
    c, s, _ = _connect(pki, holder, check)
    assert up(c, s)
    check.tokens.clear()                                  # expired, or the server's key changed
    check.unused.add("otp-1")                             # ... and the password is good again
    c2, s2, _ = _connect(pki, holder, check, token=None)
    closed = _closed(c2)
    assert closed and "AUTH_FAILED" in closed[0].reason
    assert closed[0].restart and closed[0].same_remote, "a refused token must restart, same server"
    assert not holder.in_use
    c3, s3, _ = _connect(pki, holder, check, token=None)
    assert up(c3, s3)
    assert check.seen[-1] == ("alice", "otp-1")


def test_auth_failed_without_a_token_ends_the_run(pki):
    holder, check = AuthToken(), OneTimePasswords()
    c, s, _ = _connect(pki, holder, check, token=None, password="wrong")
    closed = _closed(c)
    assert closed and not closed[0].restart


def test_auth_failed_temp_keeps_the_token(pki):
    holder, check = AuthToken(), OneTimePasswords("otp-1")
    c, s, link = _connected_with_token(pki, holder, check)
    s._send_text("AUTH_FAILED,TEMP[backoff 5]: try later")
    link.run(lambda: c.closed, max_time=link.now + 5)
    assert _closed(c)[0].restart and holder.token == "TOKEN-1" and holder.in_use


def _connected_with_token(pki, holder, check):
    c, s, link = _connect(pki, holder, check)
    assert up(c, s) and holder.in_use
    return c, s, link


def test_auth_token_user_names_the_token(pki):
    holder, check = AuthToken(), OneTimePasswords("otp-1")
    user = base64.b64encode(b"alice@realm").decode()
    c, s, _ = _connect(pki, holder, check, extra_push=(f"auth-token-user {user}",))
    assert up(c, s)
    c2, s2, _ = _connect(pki, holder, check)
    assert up(c2, s2) and check.seen[-1] == ("alice@realm", "TOKEN-1")


@pytest.mark.parametrize("pushed_user", [None, "***not-base64***"])
def test_a_token_without_a_username_is_not_used(pushed_user):
    """OpenVPN sends a token only with a username: auth-token-user's, or the one sent with the
    password. No auth-user-pass and no (valid) auth-token-user: the token stays unused."""
    holder = AuthToken()
    assert holder.credentials("", "") is None
    holder.take("TOKEN-1", pushed_user)
    assert holder.credentials("", "") is None and not holder.in_use


def test_an_empty_token_changes_nothing():
    holder = AuthToken()
    holder.credentials("alice", "pw")
    holder.take("TOKEN-1", None)
    holder.take("", None)
    assert holder.credentials("alice", "pw") == ("alice", "TOKEN-1")
