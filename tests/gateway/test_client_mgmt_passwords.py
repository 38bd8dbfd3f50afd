"""management-query-passwords on our client (gateway/client_mgmt.py, ClientGateway._ask_passwords):
the credentials a profile lacks are asked of the management client in OpenVPN 2.6's words, the
`username`/`password`/`forget-passwords` commands answer as manage.c does, auth-retry interact asks
again after AUTH_FAILED, and static-challenge adds its SC field. In memory against our server
with a password database; tests/interop/test_mgmt_passwords_vs_openvpn.py compares the lines with
Debian's client live."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import client_conf
from tests.gateway.test_client_mgmt import _setup, _up, ask

NEED = ">PASSWORD:Need 'Auth' username/password"
VERIFY = "auth-user-pass-verify /mem/passdb passdb\n"


def _world(pki, tmp_path, extra: str = "", users: str = "alice:right", **kw):
    db = "".join(f"{u}:{hash_password(p)}\n" for u, p in (x.split(":", 1) for x in users.split()))
    return _setup(pki, tmp_path, client_extra="auth-user-pass\nmanagement-query-passwords\n" + extra,
                  server_extra=VERIFY, passdb=db, **kw)


def test_asks_before_connecting_and_connects_once_answered(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path)
    assert c.mgmt.mgr.welcome()[1:] == [NEED]            # a tool connecting now is told, as OpenVPN
    w.run_for(5)
    assert c.conn is None and not w.server.d.clients, "connected without credentials"
    assert ask(c, tap, 'username "Other" alice') == [
        "ERROR: username of type 'Other' entered, but we need one of type 'Auth'"]
    assert ask(c, tap, "password Auth right") == ["SUCCESS: 'Auth' password entered, but not yet verified"]
    w.run_for(2)
    assert c.conn is None, "a password alone is not an answer"
    assert ask(c, tap, 'username "Auth" alice') == ["SUCCESS: 'Auth' username entered, but not yet verified"]
    assert w.run(lambda: _up(c), max_time=20)
    assert c.mgmt.mgr.welcome()[1:] == []
    assert ask(c, tap, "username Auth bob") == ["ERROR: no username is currently needed at this time"]
    assert ask(c, tap, "password Auth x") == ["ERROR: no password is currently needed at this time"]
    assert ask(c, tap, "username Auth") == ["ERROR: the 'username' command requires 2 parameters"]


def test_auth_retry_interact_asks_again_after_auth_failed(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path, extra="auth-retry interact\n")
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth wrong")
    assert w.run(lambda: tap.got.count(NEED) == 1, max_time=30), tap.got
    assert ">PASSWORD:Verification Failed: 'Auth'" in tap.got
    assert tap.got.index(">PASSWORD:Verification Failed: 'Auth'") < tap.got.index(NEED)
    assert c.result is None and c.connections == 0
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: _up(c), max_time=30)


def test_auth_retry_interact_asks_again_after_connect_retrys_pause_not_10_s(pki, tmp_path):
    """Debian's 2.6.14 with `auth-retry interact` logs "Restart pause, 1 second(s)" after
    AUTH_FAILED (init.c socket_restart_pause: the 10 s are `nointeract`'s alone); ours waited
    10 s, and as long after each SIGUSR1 or management client leaving."""
    w, c, tap = _world(pki, tmp_path, extra="auth-retry interact\n")
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth wrong")
    assert w.run(lambda: ">PASSWORD:Verification Failed: 'Auth'" in tap.got, max_time=30), tap.got
    failed_at = w.clock.t
    assert w.run(lambda: tap.got.count(NEED) == 1, max_time=30), tap.got
    assert w.clock.t - failed_at <= 2, f"asked again {w.clock.t - failed_at:.1f} s after AUTH_FAILED"
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: _up(c), max_time=5)


def test_without_interact_the_same_credentials_are_sent_again_or_the_run_ends(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path)                     # auth-retry none (the default): the end
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth wrong")
    assert w.run(lambda: c.result is not None, max_time=30) and c.result == 1
    assert NEED not in tap.got


def test_forget_passwords_makes_the_next_connection_ask(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path)
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: _up(c), max_time=20)
    assert ask(c, tap, "forget-passwords") == ["SUCCESS: Passwords were forgotten"]
    assert c.username == c.password == ""
    ask(c, tap, "signal SIGUSR1")
    assert w.run(lambda: NEED in tap.got, max_time=30)
    w.run_for(3)
    assert c.connections == 1 and c.conn is None
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: c.connections == 2 and _up(c), max_time=30)


def test_a_blank_password_is_an_answer(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path, users="alice:")
    ask(c, tap, "username Auth alice")
    assert ask(c, tap, 'password Auth ""') == ["SUCCESS: 'Auth' password entered, but not yet verified"]
    assert w.run(lambda: _up(c), max_time=20)


def test_static_challenge_adds_its_field_and_the_answer_goes_as_given(pki, tmp_path):
    scrv1 = "SCRV1:cmlnaHQ=:MTIzNDU2"                       # base64 "right" and "123456", as a GUI builds it
    w, c, tap = _world(pki, tmp_path, extra='static-challenge "Enter PIN" 1\n', users="alice:" + scrv1)
    assert c.mgmt.mgr.welcome()[1:] == [NEED + " SC:1,Enter PIN"]
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth " + scrv1)
    assert w.run(lambda: _up(c), max_time=20)


def test_a_password_in_the_profile_is_not_asked_for(pki, tmp_path):
    w, c, tap = _world(pki, tmp_path, username="alice", password="right")
    assert c.mgmt.mgr.welcome()[1:] == []
    assert w.run(lambda: _up(c), max_time=20)
    assert NEED not in tap.got


@pytest.mark.parametrize("extra,directive", [
    ("auth-user-pass\nauth-retry interact\n", "auth-retry"),
    ('management-query-passwords\nstatic-challenge "PIN" 0\n', "static-challenge"),
    ("auth-user-pass\nmanagement-query-passwords\nauth-nocache\n", "auth-nocache"),
])
def test_what_only_works_with_the_management_client_is_refused_without_it(pki, tmp_path, extra, directive):
    text = client_conf(pki, extra=f"management {tmp_path}/c.sock unix\n" + extra)
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/mem/c.ovpn")
    assert f": {directive}: " in str(ei.value)


def test_query_passwords_needs_management(pki):
    with pytest.raises(ConfigError) as ei:
        parse_config(client_conf(pki, extra="auth-user-pass\nmanagement-query-passwords\n"), "/mem/c.ovpn")
    assert ": management-query-passwords: needs `management`" in str(ei.value)


def test_a_management_client_leaving_restarts_and_forgets_when_asked_to(pki, tmp_path):
    """management-signal + management-forget-disconnect: the tool that typed the password leaves,
    the tunnel restarts and the next connection asks again. One that never logged in to the
    interface changes nothing by leaving (OpenVPN would restart for it too)."""
    from tests.gateway.test_client_mgmt import Tap
    w, c, tap = _world(pki, tmp_path, extra="management-signal\nmanagement-forget-disconnect\n")
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: _up(c), max_time=20)
    stranger = Tap()
    stranger.authed = False
    c.mgmt.mgr.conns.append(stranger)
    c.mgmt.mgr.drop(stranger, None)
    w.run_for(3)
    assert _up(c) and c.password == "right"
    assert ask(c, tap, "quit") == []
    assert w.run(lambda: c.conn is None, max_time=10)
    w.run_for(3)
    assert c.connections == 1 and c.conn is None and c.password == ""
    assert c.mgmt.mgr.welcome()[1:] == [NEED]
    assert c.mgmt.states[-1].name == "RECONNECTING" and c.mgmt.states[-1].detail == "management-disconnect"


def test_management_signal_and_forget_disconnect_are_a_clients(pki, tmp_path):
    from tests.gateway.conftest import server_conf
    for line in ("management-signal", "management-forget-disconnect"):
        with pytest.raises(ConfigError) as ei:
            parse_config(server_conf(pki, extra=f"management {tmp_path}/s.sock unix\n{line}\n"), "/mem/s.conf")
        assert f": {line}: is served by our client only" in str(ei.value)
        with pytest.raises(ConfigError) as ei:
            parse_config(client_conf(pki, extra=f"{line}\n"), "/mem/c.ovpn")
        assert f": {line}: needs `management`" in str(ei.value)


@pytest.mark.parametrize("message, asks", [
    ("AUTH_FAILED,refused", True),
    ("AUTH_FAILED,refused (auth-token dropped)", True),     # the server's words, no token in use
    ("AUTH_FAILED,TEMP: busy", False),
])
def test_auth_retry_interact_forgets_the_password_on_the_refusal_2_6_purges_at(pki, tmp_path, message, asks):
    """OpenVPN 2.6's receive_auth_failed purges the credentials under auth-retry interact on every
    AUTH_FAILED but TEMP and one that only dropped an auth-token in use. Ours told them apart by
    the log reason's text, which ends with the server's words: a server ending its reason with
    "(auth-token dropped)" had ours send the stored password again instead of asking (review50f)."""
    w, c, tap = _world(pki, tmp_path, extra="auth-retry interact\n")
    ask(c, tap, "username Auth alice")
    ask(c, tap, "password Auth right")
    assert w.run(lambda: _up(c), max_time=20)
    inf = next(iter(w.server.ops.info.values()))
    assert w.server.ops.client_kill(inf.cid, message)
    assert w.run(lambda: c.connections == 2 or NEED in tap.got, max_time=30), tap.got
    assert (NEED in tap.got) is asks, (message, tap.got)
    assert c.result is None
