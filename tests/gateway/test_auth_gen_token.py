"""auth-gen-token on our server, on in-memory ports (appliance/openvpn/gentoken.py, roles.py).

After a password check succeeds the server pushes `auth-token SESS_ID_AT_...`; the client sends it
instead of its password at renegotiations and reconnects, and the server checks the token (its
HMAC over the username, its age, its session) instead of the password file. Before, the
directive was unknown and such a config failed at its line. What a user checks: a client whose
password file no longer holds the password (a one-time code used up, auth-nocache) stays up
through renegotiations and a reconnect; a token forged, of another user, of another session or
expired is refused, and the client logs in with its password again.
(Against Debian's OpenVPN 2.6: tests/interop/test_auth_gen_token_vs_openvpn.py.)"""
from __future__ import annotations

import base64
import signal

import pytest

from appliance.openvpn import gentoken
from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import WALL0, World, client_conf, server_conf
from tests.gateway.test_auth_nocache import PASSDB, SERVER_EXTRA, _client, _logged_in, _up, _up_from_file
from tests.gateway.test_client_sigusr1 import _signal

SECRET = """-----BEGIN OpenVPN auth-token server key-----
/DryZYLgWE3JZGXnu4ZFDyY1Q0JYUoCYeqNRVjWqSdCF9t50F0g3xsqt3/g2Z0Nd
A5kYICggm/dgcWiFOeeGSuiMpXMX0I3FcpfJWj3j80cT1i+Bri1f0ShsA6yF+RyE
hzleQJhgyLgJ+e6bDkvlbvQFzjD8r6mZxX2OlPhBJvU=
-----END OpenVPN auth-token server key-----"""


def _world(pki, tmp_path, server_extra: str = "auth-gen-token\n", client_extra: str = "reneg-sec 0\n"):
    """PASSDB, auth-gen-token on the server; a client reading alice/first from a file with
    auth-nocache, tunnel up: (world, client, its file)."""
    return _up_from_file(pki, tmp_path, True, server_extra=server_extra, extra=client_extra)


def _session(w: World):
    (rec,) = w.server.d.clients
    return rec.session


def _sid(token: str) -> bytes:
    return base64.b64decode(token[len(gentoken.PREFIX):])[:gentoken.SESSION_ID_LEN]


def test_the_token_replaces_the_password_at_each_renegotiation(pki, tmp_path):
    w, c, creds = _world(pki, tmp_path, "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    first = c.auth_token.token
    assert gentoken.is_token(first) and c.auth_token.in_use
    creds.write_text("alice\nused-up-one-time-code\n")   # what a file-fed OTP looks like afterwards
    w.run_for(65)                                          # three renegotiations by the server
    s = _session(w)
    assert _up(c) and c.connections == 1 and c.result is None
    assert c.credentials.fetches == 1, "the password was fetched again: the token did not stand in"
    assert s.keys and max(s.keys) >= 3, f"no renegotiation happened (keys {sorted(s.keys)})"
    assert c.auth_token.token != first, "the token was not renewed at the renegotiations"
    assert _sid(c.auth_token.token) == _sid(first), "a renewal must keep the session id"
    assert c.auth_token.token == s.issued_auth_token


def test_a_reconnect_logs_in_with_the_token_not_the_password(pki, tmp_path):
    w, c, creds = _world(pki, tmp_path)
    first = c.auth_token.token
    creds.write_text("alice\nwrong-now\n")
    _signal(c, signal.SIGUSR1)
    assert w.run(lambda: c.connections == 2 and _up(c), max_time=60), "no second tunnel on the token"
    assert c.credentials.fetches == 1 and _logged_in(w) == ["alice"]
    assert _sid(c.auth_token.token) == _sid(first), "the reconnect's token belongs to the same session"


def _reconnect_with(w: World, c, token: str) -> None:
    c.auth_token.token = token
    _signal(c, signal.SIGUSR1)


@pytest.mark.parametrize("case", ["other-key", "other-user", "tampered", "garbage"])
def test_a_bad_token_is_refused_and_the_client_logs_in_with_its_password(pki, tmp_path, case):
    w, c, creds = _world(pki, tmp_path)
    good = c.auth_token.token
    other = gentoken.TokenPolicy(gentoken.new_secret(), 0, 3600)
    token = {
        "other-key": other.issue(b"alice", WALL0 + int(w.clock())),
        "other-user": None,
        "tampered": good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB"),
        "garbage": gentoken.PREFIX + "!" * (gentoken.TOKEN_LEN - len(gentoken.PREFIX)),
    }[case]
    if token is None:            # a valid token of bob's (same server key) presented by alice
        token = _session(w).cfg.gen_token.issue(b"bob", WALL0 + int(w.clock()))
    _reconnect_with(w, c, token)
    assert w.run(lambda: c.credentials.fetches == 2 and _up(c), max_time=90), \
        "the token refused, the client did not log in with its password"
    assert c.connections == 2 and _logged_in(w) == ["alice"]
    assert w.server.d.drop_counters().get("auth-token invalid", 0) == 1, w.server.d.drop_counters()


def test_a_token_of_another_session_is_refused_at_a_renegotiation(pki, tmp_path):
    """A valid token for this user but from another login (stolen from another of her devices)
    does not carry on this session: OpenVPN compares the session id part with the first."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    s = _session(w)
    c.auth_token.token = s.cfg.gen_token.issue(b"alice", WALL0 + int(w.clock()))   # a new session id
    assert w.run(lambda: c.credentials.fetches == 2, max_time=40), "the other session's token was accepted"
    assert w.server.d.drop_counters().get("auth-token invalid", 0) == 1, w.server.d.drop_counters()
    assert w.run(lambda: _up(c) and c.connections == 2, max_time=60), "the client did not come back with its password"


def test_an_expired_token_says_so_and_the_password_logs_in_again(pki, tmp_path):
    """`auth-gen-token 60`: the token's lifetime counts from the first login; after it a
    renegotiation with the token gets AUTH_FAILED,SESSION: token expired, the client drops the
    token and reconnects with the password, which logs in again and gets a new session."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token 60\nreneg-sec 25\nhand-window 5\n")
    first = c.auth_token.token
    assert w.run(lambda: c.connections == 2 and _up(c), max_time=120), "no reconnect after expiry"
    assert w.server.d.drop_counters().get("auth-token expired", 0) == 1, w.server.d.drop_counters()
    assert c.credentials.fetches == 2
    assert _sid(c.auth_token.token) != _sid(first), "a new login starts a new token session"


def test_a_renewal_shorter_than_reneg_sec_is_pushed_on_its_own(pki, tmp_path):
    """`auth-gen-token 0 10` under reneg-sec 3600 (hand-window 5): a fresh token every 10 s, as
    OpenVPN's check_send_auth_token, else the token would age out of its window (2 x 10 s)
    long before the next renegotiation."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token 0 10\nhand-window 5\n")
    seen = {c.auth_token.token}
    for _ in range(5):
        w.run_for(10.5)
        seen.add(c.auth_token.token)
    assert len(seen) >= 5, f"{len(seen)} distinct tokens in 52 s"
    creds.write_text("alice\nwrong-now\n")
    _signal(c, signal.SIGUSR1)                   # the latest token is still good after 50 s
    assert w.run(lambda: c.connections == 2 and _up(c), max_time=60)
    assert c.credentials.fetches == 1


def test_another_server_with_the_same_secret_honours_the_token(pki, tmp_path):
    """auth-gen-token-secret: the token of one server process is good on another holding the same
    key (a restart, or a second server behind the same name); the client's password is wrong by
    then, so only the token can log it in. Without the secret each process has its own key."""
    extra = f"auth-gen-token\n<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"
    w, c, creds = _world(pki, tmp_path, extra)
    token = c.auth_token.token
    for server_extra, honoured in ((extra, True), ("auth-gen-token\n", False)):
        creds.write_text("alice\nwrong-now\n")
        w2 = World()
        w2.add_server(server_conf(pki, extra=SERVER_EXTRA + server_extra), PASSDB)
        c2 = _client(w2, pki, creds, True, "reneg-sec 0\n")
        c2.auth_token.token, c2.auth_token.username, c2.auth_token.usable = token, "alice", True
        if honoured:
            assert w2.run(lambda: _up(c2), max_time=30), "the token was not taken by the second server"
            assert c2.credentials.fetches == 0 and _logged_in(w2) == ["alice"]
            assert _sid(c2.auth_token.token) == _sid(token)
        else:
            assert w2.run(lambda: c2.result is not None, max_time=60)
            assert c2.result == 1 and c2.credentials.fetches == 1          # token refused, then the wrong password
            assert w2.server.d.drop_counters().get("auth-token invalid", 0) == 1


def test_without_a_password_check_no_token_is_issued_and_a_note_says_so(pki):
    opts = parse_config(server_conf(pki, extra="auth-gen-token\n"), "/mem/server.conf")
    assert any("auth-gen-token: no password is checked" in n for n in opts.notes), opts.notes
    w = World()
    w.add_server(server_conf(pki, extra="auth-gen-token\n"))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(c), max_time=30)
    assert not c.auth_token.token


@pytest.mark.parametrize("extra,line,words", [
    ("auth-gen-token 0 external-auth\n", 0, "external-auth"),
    ("auth-gen-token 3600 60\n", 0, "at least twice hand-window"),
    ("auth-gen-token\nreneg-sec 0\n", 0, "reneg-sec other than 0"),
    ("auth-gen-token\nreneg-sec 100\n", 0, "at least twice hand-window"),      # OpenVPN refuses it too
    ("auth-gen-token 10 60 x\n", 0, "invalid argument"),
    ("auth-gen-token -5\n", 0, "auth-gen-token"),
    ("auth-gen-token\nauth-gen-token-secret [inline]\n<auth-gen-token-secret>\nnot a key\n</auth-gen-token-secret>\n",
     2, "not an auth-token secret"),
])
def test_config_errors_name_the_line(pki, extra, line, words):
    conf = server_conf(pki, extra=SERVER_EXTRA + extra)
    with pytest.raises(ConfigError) as e:
        parse_config(conf, "/mem/server.conf")
    want = conf.splitlines().index(extra.splitlines()[line]) + 1
    assert f"/mem/server.conf:{want}:" in str(e.value) and words in str(e.value), str(e.value)


@pytest.mark.parametrize("extra", ["auth-gen-token\n", f"<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"])
def test_a_client_config_with_them_is_refused(pki, extra):
    with pytest.raises(ConfigError, match="server directive"):
        parse_config(client_conf(pki, extra=extra), "/mem/client.ovpn")
