"""423afa8e (CVE-2026-13122): OpenVPN's server took a password with its auth-token prefix
(`SESS_ID_`) for a token and read it at its fixed length, so a shorter one hit an ASSERT; the fix
checks the length before the session is looked up from it. A server config's `push "auth-token X"`
stands for the password only on a renegotiation of the session it was pushed to, compared
whole in constant time. With auth-gen-token (gentoken.py, last tests below) only a password of
the token's exact length and prefix is taken for a token, and is then refused unless valid; any
other form is a password. The attack's forms on one Session pair in memory: tokens of OpenVPN's
prefix and a wrong length, a prefix of the real token, the token with more after it, and the
token of another session on a new connection -- each goes to the password check, which refuses
it, on the first key and on a renegotiation alike."""
from __future__ import annotations

import pytest

from tests.engine.test_memory_link import Link, make_pair, up
from tests.engine.test_session_security import _closed, _renegotiate
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture

TOKEN = "SESS_ID_AT_" + "A" * 64          # the shape of an auth-gen-token one


def _pair(pki, password: str, calls: list):  # noqa: F811
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: calls.append(p) or (u, p) == ("alice", "otp-1"),
                        username="alice", password=password)
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0", f"auth-token {TOKEN}"]
    return c, s, Link(c, s)


@pytest.mark.parametrize("password", ["SESS_ID_", "SESS_ID_AT_", "SESS_ID_AT_" + "A" * 10, TOKEN[:-1], TOKEN + "A",
                                      TOKEN])
def test_a_token_form_on_a_new_connection_is_only_a_password(pki, password):  # noqa: F811
    """TOKEN itself here is another session's token (pushed to every client alike by this
    config): on a new connection it is a password like any other."""
    calls: list = []
    c, s, link = _pair(pki, password, calls)
    link.run(lambda: up(c, s) or s.closed)
    assert calls == [password] and s.closed and not up(c, s)


@pytest.mark.parametrize("password", ["SESS_ID_", "SESS_ID_AT_" + "A" * 10, TOKEN[:-1], TOKEN + "A", ""])
def test_on_renegotiation_only_the_token_of_this_session_stands_for_the_password(pki, password):  # noqa: F811
    calls: list = []
    c, s, link = _pair(pki, "otp-1", calls)
    link.run(lambda: up(c, s))
    assert up(c, s) and calls == ["otp-1"]
    assert c.token.token == TOKEN and c.token.usable
    c.token.token = c.cfg.password = password         # what the client sends at its renegotiation
    _renegotiate(link, c, s)
    assert calls == ["otp-1", password], calls
    assert s.closed and _closed(s)


def test_the_token_of_this_session_stands_for_the_password_on_renegotiation(pki):  # noqa: F811
    """The check can pass: the session's own token, whole, is no password check."""
    calls: list = []
    c, s, link = _pair(pki, "otp-1", calls)
    link.run(lambda: up(c, s))
    _renegotiate(link, c, s)
    assert calls == ["otp-1"] and not s.closed and c.send_key.key_id == 1


def _gen_pair(pki, password: str, calls: list):  # noqa: F811
    from appliance.openvpn.gentoken import TokenPolicy
    c, s, _ = make_pair(pki, verify_user=lambda u, p, cn: calls.append(p) or (u, p) == ("alice", "otp-1"),
                        username="alice", password=password)
    s.cfg.gen_token, s.cfg.wall_clock = TokenPolicy(bytes(32), 0, 3600), lambda: 1_800_000_000.0
    s.cfg.push_options = lambda _s: ["ifconfig 198.19.0.2 255.255.255.0"]
    return c, s, Link(c, s)


GEN_LEN = 91                             # gentoken.TOKEN_LEN: OpenVPN's exact token length


@pytest.mark.parametrize("password", ["SESS_ID_", "SESS_ID_AT_", "SESS_ID_AT_" + "A" * 10,
                                      "SESS_ID_AT_" + "A" * (GEN_LEN - 12), "SESS_ID_AT_" + "A" * (GEN_LEN - 10)])
def test_with_auth_gen_token_a_token_form_of_another_length_is_only_a_password(pki, password):  # noqa: F811
    calls: list = []
    c, s, link = _gen_pair(pki, password, calls)
    link.run(lambda: up(c, s) or s.closed)
    assert calls == [password] and s.closed and not up(c, s)


@pytest.mark.parametrize("password", ["SESS_ID_AT_" + "A" * (GEN_LEN - 11), "SESS_ID_AT_" + "!" * (GEN_LEN - 11),
                                      "SESS_ID_AT_" + "\u00e9" * (GEN_LEN - 11)])
def test_with_auth_gen_token_a_token_form_of_its_length_is_refused_without_a_password_check(pki, password):  # noqa: F811
    calls: list = []
    c, s, link = _gen_pair(pki, password, calls)
    link.run(lambda: up(c, s) or s.closed)
    assert calls == [] and s.closed and not up(c, s)
    assert s.stats.get("auth-token invalid") == 1, s.stats
