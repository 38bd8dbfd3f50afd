"""management-client-auth on our server, on in-memory ports: each login waits for the management
client's client-auth / client-auth-nt / client-deny (gateway/mgmt_auth.py), announced as
>CLIENT:CONNECT / >CLIENT:REAUTH with its environment; with a password file both must say yes.
The management client here is a stand-in taking the notifications; the commands' own parsing is
tested against Debian's OpenVPN 2.6 (tests/interop/test_mgmt_client_auth_vs_openvpn.py)."""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf


class Mgmt:
    """Takes the notifications a management client would read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def notify(self, lines: list[str], flag: str | None = None) -> None:
        self.lines += lines

    def notify_env(self, block) -> None:
        self.notify(block.lines(0))

    def close(self) -> None:
        pass

    def asks(self) -> list[tuple[str, int, int, dict[str, str]]]:
        """(CONNECT|REAUTH, CID, KID, environment) of each announced login."""
        out = []
        for i, line in enumerate(self.lines):
            if line.startswith((">CLIENT:CONNECT,", ">CLIENT:REAUTH,")):
                mode, cid, kid = line[len(">CLIENT:"):].split(",")
                env = {}
                for e in self.lines[i + 1:]:
                    if e == ">CLIENT:ENV,END":
                        break
                    k, _, v = e[len(">CLIENT:ENV,"):].partition("=")
                    env[k] = v
                out.append((mode, int(cid), int(kid), env))
        return out


def _server(w: World, pki, tmp_path, extra: str = "", passdb: str | None = None) -> Mgmt:
    gw = w.add_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\nmanagement-client-auth\n"
                                  + extra), passdb)
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    m = Mgmt()
    gw.ops.mgmt = m
    return m


def _client(w: World, pki, password: str = "first", extra: str = "", name: str = "client0"):
    return w.add_client(client_conf(pki, name, extra="auth-user-pass\n" + extra), username="alice",
                        password=password)


def _up(c) -> bool:
    return c.conn is not None and c.conn.was_up


def _asked(w: World, m: Mgmt, n: int = 1) -> bool:
    return w.run(lambda: len(m.asks()) >= n, max_time=30)


def _alice_admitted(w: World, m: Mgmt, pki, extra: str = "", within: float = 30):
    """client0 logging in as alice from a fixed port (lport 40001: a restart comes from the same
    address), admitted by the management client: (the client, its record on the server)."""
    c = w.add_client(client_conf(pki, "client0", extra="auth-user-pass\n" + extra)
                     .replace("nobind\n", "lport 40001\n"), username="alice", password="first")
    assert _asked(w, m)
    assert w.server.ops.management_verdict(0, 1, True)
    assert w.run(lambda: _up(c), max_time=within)
    return c, w.server.d.clients[0]


def _login(pki, tmp_path, extra: str = "", client_extra: str = ""):
    """A server with management-client-auth and a client whose login is announced:
    (world, management stand-in, client, CID, KID)."""
    w = World()
    m = _server(w, pki, tmp_path, extra)
    c = _client(w, pki, extra=client_extra)
    assert _asked(w, m)
    _mode, cid, kid, _env = m.asks()[0]
    return w, m, c, cid, kid


def test_a_login_waits_for_client_auth_and_the_management_client_sees_it(pki, tmp_path):
    w = World()
    m = _server(w, pki, tmp_path)
    c = _client(w, pki)
    assert _asked(w, m)
    mode, cid, kid, env = m.asks()[0]
    assert (mode, kid) == ("CONNECT", 1)        # 2.6 numbers the first login 1 (mgmt_auth.FIRST_KID)
    assert env["username"] == "alice" and env["password"] == "first" and env["common_name"] == "client0"
    assert env["untrusted_ip"] == "198.18.0.2" and "IV_VER" in env
    w.run_for(5)
    assert not _up(c), "in before the management client said yes"
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10)
    assert w.server.ops.management_verdict(cid, kid, True) and _up(c)     # again: changes nothing
    assert not w.server.ops.management_verdict(cid, kid + 1, True)          # no such login


def test_client_deny_after_client_auth_ends_the_session(pki, tmp_path):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10)
    assert w.server.ops.management_verdict(cid, kid, False, why="revoked")
    assert w.run(lambda: not any(r.session.established for r in w.server.d.clients), max_time=10), \
        "the withdrawn login kept its session"


def test_client_deny_refuses_with_the_client_reason(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    w, _m, c, cid, kid = _login(pki, tmp_path)
    assert w.server.ops.management_verdict(cid, kid, False, why="not in LDAP", client_reason="ask the helpdesk")
    assert w.run(lambda: c.result is not None, max_time=30)
    w.run_for(2)                                    # the client's held log lines
    assert not _up(c) and "AUTH_FAILED ask the helpdesk" in caplog.text and "client-deny: not in LDAP" in caplog.text


def test_verdicts_on_a_denied_login_succeed_for_5_s_and_change_nothing_as_2_6(pki, tmp_path):
    """helper mgmt42: a second client-deny for a login just denied answered "command failed";
    OpenVPN 2.6 answers SUCCESS while it keeps the refused instance (5 s), then ERROR -- and so
    any verdict on that login, client-auth and client-pending-auth too (helper authq48, measured
    against Debian's 2.6.14 after an auth-user-pass-verify refusal). Here the same words, and a
    denial stays final: client-auth after it lets nobody in (2.6 would mark the key let in)."""
    w, _m, c, cid, kid = _login(pki, tmp_path)
    ops = w.server.ops
    assert ops.management_verdict(cid, kid, False, why="no")
    assert ops.management_verdict(cid, kid, False, why="still no", client_reason="later")
    assert ops.management_verdict(cid, kid, True)                     # SUCCESS, as 2.6 ...
    assert ops.management_pending(cid, kid, "WEB_AUTH::https://x", 30)
    assert not ops.management_verdict(cid, kid + 1, False), "a login never announced"
    assert w.run(lambda: c.result is not None, max_time=30) and not _up(c)      # ... and nothing changed
    assert w.run(lambda: not any(r.alive for r in w.server.d.clients), max_time=30)
    w.run_for(6)
    assert not ops.management_verdict(cid, kid, False), "5 s after the refusal: ERROR, as 2.6"
    assert not ops.management_verdict(cid, kid, True) and not ops.management_pending(cid, kid, "x", 30)


def test_control_characters_of_a_command_line_are_dropped_as_openvpn_drops_them(pki, tmp_path, caplog):
    """OpenVPN 2.6 drops every control byte a management client sends (manage.c
    command_line_add: only printable bytes and the line end are kept). Kept here, a tab in
    client-deny's client reason went into the AUTH_FAILED message, which OpenVPN's client (and
    ours) refuses whole: the refused client never learnt it, and retried; a CR in the log reason
    reached the log and the other management clients' >LOG lines, where a tool reading lines
    the universal way (Python's text files) took what follows for a line of its own."""
    from appliance.gateway.management import MgmtConn
    from tests.fuzz.mgmt_world import _FakeSock
    caplog.set_level(logging.INFO)
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\nmanagement-client-auth\n"))
    real, m = gw.ops.mgmt, Mgmt()
    gw.ops.mgmt = m
    try:
        c = _client(w, pki)
        assert _asked(w, m)
        _mode, cid, kid, _env = m.asks()[0]
        line = f'client-deny {cid} {kid} "not in\r>PASSWORD:Need \'Auth\' username/password" "ask\tthe\x1b[2J helpdesk"\n'
        conn = MgmtConn(_FakeSock(line.encode()), real, need_password=False)
        real.conns.append(conn)
        conn.on_read()
        assert w.run(lambda: c.result is not None, max_time=30), "the client never learnt it was refused"
        w.run_for(2)
        assert "AUTH_FAILED askthe[2J helpdesk" in caplog.text
        assert "client-deny: not in>PASSWORD" in caplog.text and "\r" not in caplog.text
    finally:
        real.close()


def test_client_auth_config_lines_apply_at_the_connect(pki, tmp_path):
    w, _m, c, cid, kid = _login(pki, tmp_path)
    assert w.server.ops.management_verdict(cid, kid, True, config=[
        'push "route 198.18.77.0 255.255.255.0"', "ifconfig-push 198.19.0.77 255.255.255.0"])
    assert w.run(lambda: _up(c), max_time=10)
    pushed = w.client_nets[0].pushed
    assert pushed.ifconfig[0] == "198.19.0.77"
    assert any(r[0] == "198.18.77.0" for r in pushed.routes), pushed.routes


def test_client_auth_config_lines_apply_after_client_connects_options_as_in_2_6(pki, tmp_path, monkeypatch):
    """OpenVPN 2.6 runs its connect steps in order -- client-config-dir, plugins, the
    client-connect script, then the management client's client-auth lines (multi.c
    client_connect_handlers: multi_client_connect_mda last) --, each imported over the one before:
    client-auth's `ifconfig-push` wins over the script's. Ours put client-auth's lines first, so
    the script's won; and that text was parsed on the loop (up to 1 MiB of the script's lines,
    ~0.25 s) where the script's alone is parsed in its worker."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    cc = tmp_path / "cc.sh"
    cc.write_text('#!/bin/sh\nprintf \'ifconfig-push 198.19.0.50 255.255.255.0\\npush "route 198.18.50.0 255.255.255.0"\' > "$1"\n')
    cc.chmod(0o755)
    on_loop = []
    real = ops_mod.parse_ccd
    monkeypatch.setattr(ops_mod, "parse_ccd", lambda *a, **k: on_loop.append(a) or real(*a, **k))
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-connect {cc}\n")
    c = _client(w, pki)
    assert _asked(w, m)
    _mode, cid, kid, _env = m.asks()[0]
    assert w.server.ops.management_verdict(cid, kid, True, config=[
        'push "route 198.18.77.0 255.255.255.0"', "ifconfig-push 198.19.0.77 255.255.255.0"])
    assert w.run(lambda: _up(c), max_time=20)
    pushed = w.client_nets[0].pushed
    assert pushed.ifconfig[0] == "198.19.0.77", "the script's ifconfig-push won over client-auth's"
    routes = [r[0] for r in pushed.routes]
    assert "198.18.77.0" in routes and "198.18.50.0" in routes, routes
    assert on_loop == [], "the options were parsed on the loop"


def test_each_renegotiation_is_a_reauth_that_may_be_denied(pki, tmp_path):
    w = World()
    m = _server(w, pki, tmp_path)
    c = _client(w, pki, extra="reneg-sec 20\n")
    assert _asked(w, m)
    cid = m.asks()[0][1]
    # KIDs as OpenVPN 2.6 numbers its key states (mgmt_auth.FIRST_KID): 1, then 3, 4, ...
    assert m.asks()[0][:3] == ("CONNECT", cid, 1)
    assert w.server.ops.management_verdict(cid, 1, True)
    assert w.run(lambda: _up(c), max_time=10)
    assert _asked(w, m, 2)
    assert m.asks()[1][:3] == ("REAUTH", cid, 3)
    assert w.server.ops.management_verdict(cid, 3, True)
    assert _asked(w, m, 3) and m.asks()[2][:3] == ("REAUTH", cid, 4)
    assert w.server.ops.management_verdict(cid, 4, False, why="account disabled")
    assert w.run(lambda: c.connections == 2 or c.result is not None, max_time=30), "the denied client kept its tunnel"


@pytest.mark.parametrize("password, mgmt_ok, up", [("first", True, True), ("guess", True, False),
                                                    ("first", False, False)])
def test_with_a_password_file_both_must_say_yes(pki, tmp_path, password, mgmt_ok, up):
    w = World()
    m = _server(w, pki, tmp_path, extra="auth-user-pass-verify /mem/passdb passdb\n",
                passdb=f"alice:{hash_password('first')}\n")
    c = _client(w, pki, password=password)
    assert _asked(w, m)
    _mode, cid, kid, _env = m.asks()[0]
    w.server.ops.management_verdict(cid, kid, mgmt_ok)
    if up:
        assert w.run(lambda: _up(c), max_time=10)
    else:
        assert w.run(lambda: c.result is not None, max_time=30) and not _up(c)


def test_a_login_without_a_verdict_ends_at_hand_window_and_is_forgotten(pki, tmp_path):
    w, _m, c, cid, kid = _login(pki, tmp_path, extra="hand-window 10\n")
    w.run_for(15)
    assert not _up(c)
    assert not w.server.ops.management_verdict(cid, kid, True), "a verdict for a login that is over was taken"
    assert len(w.server.ops.client_auth.by_ckid) <= 1       # at most the client's next try


def test_a_client_without_credentials_is_refused_unannounced(pki, tmp_path):
    w = World()
    m = _server(w, pki, tmp_path)
    c = w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: c.result is not None or c.connections > 1, max_time=60)
    assert m.asks() == [] and not _up(c)


def test_management_client_auth_needs_management(pki):
    conf = server_conf(pki, extra="management-client-auth\n")
    with pytest.raises(ConfigError, match=r"management-client-auth: needs `management`"):
        parse_config(conf, "/mem/s.conf")


def test_a_reload_cannot_add_it_without_a_running_management_interface(pki, tmp_path, caplog):
    """`management` takes effect at a restart: a reload adding it with management-client-auth
    would leave every login waiting for a client that cannot connect. The reload is refused."""
    caplog.set_level(logging.INFO)
    w = World()
    gw = w.add_server(server_conf(pki))
    gw.ops.reload_source = lambda: server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n"
                                                     "management-client-auth\n")
    assert not gw.ops.reload()
    assert gw.ops.client_auth is None and "management-client-auth: no management interface runs" in caplog.text
    c = w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(c), max_time=30), "logins began to wait"


def test_client_pending_auth_tells_the_client_and_holds_the_login_past_hand_window(pki, tmp_path, caplog):
    """An SSO login (openvpn-auth-oauth2's way): the management client answers
    client-pending-auth with a URL; the client is told AUTH_PENDING,timeout N (it announces
    IV_PROTO_AUTH_PENDING_KW) and INFO_PRE,WEB_AUTH::<url>, shows the URL, and waits past its own
    hand-window and server-poll-timeout (10 s, 5 s) and the server's (10 s) until client-auth."""
    caplog.set_level(logging.INFO)
    w, _m, c, cid, kid = _login(pki, tmp_path, extra="hand-window 10\n",
                                client_extra="hand-window 10\nserver-poll-timeout 5\n")
    assert w.server.ops.management_pending(cid, kid, "WEB_AUTH::https://sso.example/login?s=1", 50)
    w.run_for(25)
    assert not _up(c)
    assert "message from the server (INFO_PRE): WEB_AUTH::https://sso.example/login?s=1" in caplog.text
    assert "AUTH_PENDING,timeout 50): waiting up to 50 s" in caplog.text
    assert "connection reset" not in caplog.text and "server-poll-timeout" not in caplog.text, caplog.text
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10) and c.connections == 1


def test_the_client_waits_for_auth_pending_no_longer_than_its_bound(pki, tmp_path, caplog):
    """A server that keeps sending AUTH_PENDING,timeout <huge> cannot hold our client: the wait
    is at most max(reneg-sec/2, hand-window) from the key's first AUTH_PENDING (as OpenVPN 2.6's
    client), then the client gives up on that server and tries again."""
    caplog.set_level(logging.INFO)
    w, _m, c, cid, kid = _login(pki, tmp_path, extra="hand-window 10\n",
                                client_extra="hand-window 10\nreneg-sec 30\n")
    assert w.server.ops.management_pending(cid, kid, "WEB_AUTH::u", 100)    # the server's own bound: 30 s
    w.run_for(8)
    assert w.server.ops.management_pending(cid, kid, "WEB_AUTH::u", 100)    # again, later: no longer wait
    assert "waiting up to 15 s" in caplog.text, caplog.text
    w.run_for(10)
    assert "connection reset" in caplog.text and not _up(c), caplog.text


def test_client_pending_auth_is_bounded_and_checked(pki, tmp_path):
    """The wait ends at most max(reneg-sec/2, hand-window) after the key began (OpenVPN's
    bound), whatever the timeout asked; a too long message or an unknown login is refused."""
    w, _m, c, cid, kid = _login(pki, tmp_path, extra="hand-window 10\nreneg-sec 40\n")
    assert not w.server.ops.management_pending(cid, kid, "x" * 1100, 100)
    assert not w.server.ops.management_pending(cid, kid + 1, "WEB_AUTH::u", 100)
    assert w.server.ops.management_pending(cid, kid, "WEB_AUTH::u", 100)
    w.run_for(25)                                   # past 20 s = reneg-sec/2
    assert not w.server.ops.management_verdict(cid, kid, True), "the login outlived its bound"
    assert not _up(c)


def test_a_password_cannot_forge_management_lines(pki, tmp_path):
    """The password goes to the management client in a >CLIENT:ENV line; one holding CR/LF and
    a forged announcement must not add a line (OpenVPN makes control characters `_` first). Our
    client never sends such a password, so the hostile login is handed to the server directly."""
    from appliance.openvpn import events as ev
    w, m, _c, _cid, _kid = _login(pki, tmp_path)
    rec = next(iter(w.server.ops.client_auth.by_ckid.values())).rec
    forged = ev.AuthRequested(0, "alice\r\n>CLIENT:CONNECT,98,0", "pw\r\n>CLIENT:CONNECT,99,0\r\n>CLIENT:ENV,END",
                              "client0")
    assert w.server.ops.ask_management(rec, forged, check_pending=False)
    wire = "\r\n".join(m.lines).splitlines()                  # as the management client reads them
    assert not any(line.startswith(">CLIENT:CONNECT,9") for line in wire), wire
    env = m.asks()[-1][3]
    assert env["password"] == "pw__>CLIENT:CONNECT,99,0__>CLIENT:ENV,END"
    assert env["username"] == "alice__>CLIENT:CONNECT,98,0"


def test_auth_user_pass_optional_asks_the_management_client_about_a_login_without_credentials(pki, tmp_path):
    """With auth-user-pass-optional a client sending no username and password is announced (empty
    username) and let in by client-auth; without it, it is refused and never announced."""
    from tests.gateway.conftest import client_conf as cc
    w = World()
    m = _server(w, pki, tmp_path, extra="auth-user-pass-optional\n")
    c = w.add_client(cc(pki, "client0"))
    assert _asked(w, m)
    _mode, cid, kid, env = m.asks()[0]
    assert env["username"] == "" and env["common_name"] == "client0"
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10)
    w2 = World()
    m2 = _server(w2, pki, tmp_path)
    c2 = w2.add_client(cc(pki, "client0"))
    w2.run_for(5)
    assert not m2.asks() and not _up(c2)


def test_server_poll_timeout_does_not_end_a_login_the_server_answered(pki, tmp_path, caplog):
    """As OpenVPN 2.6's client (check_server_poll_timeout: only before the server's first packet):
    a login the server holds for 20 s (a push approval, without AUTH_PENDING) outlives the
    client's server-poll-timeout of 5 s (eduVPN's profiles say 10) and comes up on the first
    connection. Before, our client gave up at 5 s and started over."""
    caplog.set_level(logging.INFO)
    w, _m, c, cid, kid = _login(pki, tmp_path, client_extra="server-poll-timeout 5\n")
    w.run_for(20)
    assert not _up(c) and "server-poll-timeout" not in caplog.text, caplog.text
    assert w.server.ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=10) and c.connections == 1


def test_a_restarts_login_takes_the_kid_of_openvpns_spare_key_state():
    """KIDs as Debian's OpenVPN 2.6 gives them (seen in the lab): CONNECT,0,1; a restart from the
    client's address (a new session of the same instance) REAUTH,0,2, the next one 0,3. A
    renegotiation in between takes the next number and the restart after it the spare one (not
    seen: read from 2.6's key states, TM_INITIAL's made when a session moves in, mgmt_auth.add)."""
    from appliance.gateway.mgmt_auth import ClientAuthWait
    a = ClientAuthWait()
    kids = [a.add(object(), 0, object(), 0, False, restart=r).kid for r in (False, True, True)]
    assert kids == [1, 2, 3]
    b = ClientAuthWait()
    rec = object()
    kids = [b.add(rec, k, object(), 5, False, restart=r).kid for k, r in ((0, False), (1, False), (0, True))]
    assert kids == [1, 3, 2]


def test_a_restart_that_fails_leaves_its_clients_kid_count_going_on(pki, tmp_path):
    """A restart from a client's address ends before it is in (refused, timed out, ended by the
    server) while the client it restarts lives: the client ID's KID count is that client's too
    and goes on. It was dropped with the restart, so the next login of the same client ID was
    numbered 1 again -- REAUTH,0,1 after CONNECT,0,1: one (CID, KID) for two logins, which a
    management client's late `client-auth 0 1` for the first would have let in."""
    w = World()
    m = _server(w, pki, tmp_path)
    c, rec0 = _alice_admitted(w, m, pki, within=10)
    c.user_restart()
    assert _asked(w, m, 2)
    (heir,) = w.server.d.pending.values()
    w.server.d.end(heir, "test: the restart fails")
    assert rec0.alive
    assert w.run(lambda: len(m.asks()) >= 3, max_time=200), m.asks()
    assert [(mode, cid, kid) for mode, cid, kid, _e in m.asks()] == [("CONNECT", 0, 1), ("REAUTH", 0, 2),
                                                                     ("REAUTH", 0, 3)]


def test_a_restart_in_place_is_the_connection_going_on_as_openvpns_reconnect(pki, tmp_path, monkeypatch):
    """OpenVPN 2.6 (read in 2.6.14, seen with Debian's server: tests/interop/
    test_restart_in_place_vs_openvpn.py): a client restarting from its address and port is a new
    session of its instance, which was CAS_CONNECT_DONE and goes back only to
    CAS_RECONNECT_PENDING (ssl.c tls_multi_process): its login is REAUTH, and neither
    client-connect, nor >CLIENT:ESTABLISHED, nor client-disconnect or >CLIENT:DISCONNECT comes
    for it; at the client's end, client-disconnect and >CLIENT:DISCONNECT once. Ours let it in
    with client-disconnect and >CLIENT:DISCONNECT for the session it replaced, then client-connect
    and >CLIENT:ESTABLISHED under the same client ID -- an ESTABLISHED after a DISCONNECT for one
    ID, which 2.6 never says. Now: the options client-connect gave the connection hold for the
    restart (its push route again), and the end is told once, when the client leaves."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))   # verdicts in step with the clock
    runs = tmp_path / "runs"
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\necho "connect $common_name" >> {runs}\n'
                  'echo \'push "route 198.18.77.0 255.255.255.0"\' > "$1"\n')
    cd = tmp_path / "cd.sh"
    cd.write_text(f'#!/bin/sh\necho "disconnect $common_name $time_duration" >> {runs}\n')
    cc.chmod(0o755)
    cd.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-connect {cc}\nclient-disconnect {cd}\n")
    c, rec0 = _alice_admitted(w, m, pki, extra="explicit-exit-notify 1\n")
    assert runs.read_text() == "connect client0\n"
    assert [x for x in m.lines if x.startswith(">CLIENT:ESTABLISHED")] == [">CLIENT:ESTABLISHED,0"]
    m.lines.clear()
    w.run_for(3)
    c.user_restart()
    assert _asked(w, m)
    assert [(mode, cid, kid) for mode, cid, kid, _e in m.asks()] == [("REAUTH", 0, 2)]
    assert w.server.ops.management_verdict(0, 2, True)

    def back() -> bool:
        rec = w.server.d.record(rec0.addr)
        return rec is not None and rec is not rec0 and rec.session.established and _up(c)
    assert w.run(back, max_time=30), "the restart did not complete"
    w.run_for(3)
    assert not rec0.alive
    assert "198.18.77.0" in [r[0] for r in w.client_nets[0].pushed.routes]    # client-connect's, kept
    assert runs.read_text() == "connect client0\n"
    assert not [x for x in m.lines if x.startswith((">CLIENT:ESTABLISHED", ">CLIENT:DISCONNECT"))], m.lines
    c.request_stop()
    assert w.run(lambda: len(runs.read_text().splitlines()) >= 2, max_time=30)
    w.run_for(2)
    assert runs.read_text().splitlines()[1].startswith("disconnect client0 ")
    assert [x for x in m.lines if x.startswith(">CLIENT:DISCONNECT")] == [">CLIENT:DISCONNECT,0"]
    assert len(runs.read_text().splitlines()) == 2


def test_a_client_killed_while_its_restart_waits_is_told_ended_once(pki, tmp_path, monkeypatch):
    """`kill CN` while the restart of an established client waits for its login: both sessions
    end (one 2.6 instance), and the connection's end is told once -- one client-disconnect, one
    >CLIENT:DISCONNECT -- whichever session goes first."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    runs = tmp_path / "runs"
    cd = tmp_path / "cd.sh"
    cd.write_text(f'#!/bin/sh\necho "disconnect $common_name" >> {runs}\n')
    cd.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-disconnect {cd}\n")
    c, rec0 = _alice_admitted(w, m, pki)
    w.run_for(3)
    c.user_restart()
    assert _asked(w, m, 2)
    (heir,) = w.server.d.pending.values()
    assert w.server.ops.kill_cn("client0") == 1
    w.run_for(2)
    assert not rec0.alive and not heir.alive
    assert runs.read_text().splitlines() == ["disconnect client0"]
    assert [x for x in m.lines if x.startswith(">CLIENT:DISCONNECT")] == [">CLIENT:DISCONNECT,0"]


def _addresses(m: Mgmt) -> list[str]:
    return [x for x in m.lines if x.startswith((">CLIENT:ADDRESS,", ">CLIENT:ESTABLISHED,"))]


def test_client_address_lines_come_before_established_as_openvpns(pki, tmp_path):
    """OpenVPN 2.6 (multi.c multi_client_connect_late_setup, manage.c management_learn_addr):
    with management-client-auth, each address routed to a client admitted is told as
    >CLIENT:ADDRESS,CID,ADDR,PRIMARY before >CLIENT:ESTABLISHED: its IPv4 and IPv6 addresses
    (1), then its iroutes (0), IPv4 last line first with a dotted mask (a host's 255.255.255.255), then IPv6
    with its bits. Ours said none of them."""
    w = World()
    m = _server(w, pki, tmp_path, "server-ipv6 fd00:77::/64\n")
    _client(w, pki)
    assert _asked(w, m)
    assert w.server.ops.management_verdict(0, 1, True, config=[
        "iroute 10.77.0.0 255.255.0.0", "iroute 10.78.1.5 255.255.255.255", "iroute-ipv6 fd00:99::/64"])
    assert w.run(lambda: _up(w.clients[0]), max_time=30)
    w.run_for(1)
    assert _addresses(m) == [">CLIENT:ADDRESS,0,198.19.0.2,1", ">CLIENT:ADDRESS,0,fd00:77::1000,1",
                             ">CLIENT:ADDRESS,0,10.78.1.5/255.255.255.255,0", ">CLIENT:ADDRESS,0,10.77.0.0/255.255.0.0,0",
                             ">CLIENT:ADDRESS,0,fd00:99::/64,0", ">CLIENT:ESTABLISHED,0"]


def test_no_client_address_lines_without_management_client_auth(pki, tmp_path):
    """2.6 tells an address only for a client whose login the management client was asked
    about (DAF_INITIAL_AUTH): a management interface alone gives >CLIENT:ESTABLISHED only."""
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n"))
    gw.ops.mgmt.close()
    m = gw.ops.mgmt = Mgmt()
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w.clients[0]), max_time=30)
    w.run_for(1)
    assert _addresses(m) == [">CLIENT:ESTABLISHED,0"]


def test_an_address_learn_address_refuses_is_not_told(pki, tmp_path, monkeypatch):
    """2.6 tells an address only when learned (multi_learn_addr found an owner): a refused add
    is not told, the others are."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    la = tmp_path / "la.sh"
    la.write_text('#!/bin/sh\n[ "$2" = 10.77.0.0/16 ] && exit 1\nexit 0\n')
    la.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nlearn-address {la}\n")
    _client(w, pki)
    assert _asked(w, m)
    assert w.server.ops.management_verdict(0, 1, True, config=["iroute 10.77.0.0 255.255.0.0",
                                                               "iroute 10.79.0.0 255.255.0.0"])
    assert w.run(lambda: _up(w.clients[0]), max_time=30)
    w.run_for(1)
    assert _addresses(m) == [">CLIENT:ADDRESS,0,198.19.0.2,1", ">CLIENT:ADDRESS,0,10.79.0.0/255.255.0.0,0",
                             ">CLIENT:ESTABLISHED,0"]
def test_a_restart_of_a_restart_still_waiting_goes_on_as_the_same_connection(pki, tmp_path, monkeypatch):
    """atk36: the client restarts in place again while its first restart's login still waits.
    The second restart continues the established connection (not the half-done first one): no
    client-connect, no >CLIENT:ESTABLISHED, no DISCONNECT for either session left behind,
    client-connect's options kept; the end told once, when the client leaves."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    runs = tmp_path / "runs"
    cc = tmp_path / "cc.sh"
    cc.write_text(f'#!/bin/sh\necho "connect $common_name" >> {runs}\n'
                  'echo \'push "route 198.18.77.0 255.255.255.0"\' > "$1"\n')
    cd = tmp_path / "cd.sh"
    cd.write_text(f'#!/bin/sh\necho "disconnect $common_name $time_duration" >> {runs}\n')
    cc.chmod(0o755)
    cd.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-connect {cc}\nclient-disconnect {cd}\n")
    c = w.add_client(client_conf(pki, "client0", extra="auth-user-pass\nexplicit-exit-notify 1\n")
                     .replace("nobind\n", "lport 40001\n"), username="alice", password="first")
    assert _asked(w, m)
    assert w.server.ops.management_verdict(0, 1, True)
    assert w.run(lambda: _up(c), max_time=30)
    rec0 = w.server.d.clients[0]
    m.lines.clear()
    w.run_for(3)
    c.user_restart()
    assert w.run(lambda: len(m.asks()) >= 1, max_time=60), m.lines
    c.user_restart()                                  # again, the first restart's login unanswered
    assert w.run(lambda: len(m.asks()) >= 2, max_time=60), m.lines
    assert [(mode, cid) for mode, cid, _kid, _e in m.asks()] == [("REAUTH", 0), ("REAUTH", 0)]
    kid = m.asks()[-1][2]
    assert w.server.ops.management_verdict(0, kid, True)

    def back() -> bool:
        rec = w.server.d.record(rec0.addr)
        return rec is not None and rec is not rec0 and rec.session.established and _up(c)
    assert w.run(back, max_time=30), "the second restart did not complete"
    w.run_for(3)
    assert not rec0.alive and len([r for r in w.server.d.clients if r.alive]) == 1
    assert "198.18.77.0" in [r[0] for r in w.client_nets[0].pushed.routes]    # client-connect's, kept
    assert runs.read_text() == "connect client0\n"
    assert not [x for x in m.lines if x.startswith((">CLIENT:ESTABLISHED", ">CLIENT:DISCONNECT"))], m.lines
    c.request_stop()
    assert w.run(lambda: len(runs.read_text().splitlines()) >= 2, max_time=30)
    w.run_for(2)
    assert [x for x in m.lines if x.startswith(">CLIENT:DISCONNECT")] == [">CLIENT:DISCONNECT,0"]
    assert len(runs.read_text().splitlines()) == 2


def test_a_restart_denied_after_the_session_it_continues_ended_tells_the_end_once(pki, tmp_path, monkeypatch):
    """atk36: the connection's old session ends (its timeout, say) while its restart's login
    waits, then the restart is denied: the connection ends there, told once (one
    client-disconnect, one >CLIENT:DISCONNECT), not twice and not never."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    runs = tmp_path / "runs"
    cd = tmp_path / "cd.sh"
    cd.write_text(f'#!/bin/sh\necho "disconnect $common_name $X509_0_CN $ifconfig_pool_remote_ip" >> {runs}\n')
    cd.chmod(0o755)
    w = World()
    m = _server(w, pki, tmp_path, f"script-security 2\nclient-disconnect {cd}\n")
    c = w.add_client(client_conf(pki, "client0", extra="auth-user-pass\n")
                     .replace("nobind\n", "lport 40001\n"), username="alice", password="first")
    assert _asked(w, m)
    assert w.server.ops.management_verdict(0, 1, True)
    assert w.run(lambda: _up(c), max_time=30)
    rec0 = w.server.d.clients[0]
    vaddr = rec0.vaddr
    assert vaddr
    m.lines.clear()
    c.user_restart()
    assert w.run(lambda: len(m.asks()) >= 1, max_time=60), m.lines
    w.server.d.end(rec0, "test: the old session ends first")
    w.run_for(1)
    assert not rec0.alive and not runs.exists()
    assert not [x for x in m.lines if x.startswith(">CLIENT:DISCONNECT")], m.lines
    assert w.server.ops.management_verdict(0, m.asks()[-1][2], False, why="no")
    assert w.run(lambda: runs.exists(), max_time=30)
    w.run_for(3)
    assert runs.read_text() == f"disconnect client0 client0 {vaddr}\n"     # the connection's, not empty
    assert [x for x in m.lines if x.startswith(">CLIENT:DISCONNECT")] == [">CLIENT:DISCONNECT,0"]
    assert ">CLIENT:ENV,common_name=client0" in m.lines, m.lines


def test_without_management_client_auth_a_verdict_for_a_connected_client_succeeds_and_changes_nothing(pki, tmp_path):
    """host44: Debian's 2.6.14 server without management-client-auth answers client-deny,
    client-auth-nt and client-auth for a connected client's KID 0 or 1 with SUCCESS (its multi.c
    marks the key, a mark nothing reads then) and the client goes on; ours said "command failed".
    Beside Debian's: tests/interop/test_mgmt_verdict_without_client_auth.py."""
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n"))
    assert gw.ops.client_auth is None
    c = w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(c), max_time=30)
    ops = w.server.ops
    assert ops.management_verdict(0, 1, False, why="bad", client_reason="go away")
    assert ops.management_verdict(0, 0, False, why="bad")
    assert ops.management_verdict(0, 1, True) and ops.management_verdict(0, 0, True, config=["push \"route 10.9.0.0\""])
    assert not ops.management_verdict(0, 2, False) and not ops.management_verdict(0, 2, True)   # no such key
    assert not ops.management_verdict(1, 1, False)                                              # no such client
    w.run_for(10)
    assert _up(c) and c.conn is not None and c.conn.session.established and c.result is None
    assert all(r.session.established for r in w.server.d.clients)


def test_a_late_answer_never_applies_to_a_newer_session_of_the_same_client(pki, tmp_path):
    """helper authq48 (soak47's ERROR answers): a management client answering late names a login
    by (CID, KID); a restart in place keeps the CID (2.6's one instance) but its login is another
    KID, and KIDs never repeat within a CID (mgmt_auth.py). While the restart's login (0, 2) waits,
    a late verdict on the first login (0, 1) -- let in -- changes nothing for the restart: yes
    does not let it in, client-pending-auth does not tell it. Once the restart is in and the first
    session gone, the late answers for (0, 1) fail as 2.6's for a key state it no longer has
    (ERROR), and client-deny of (0, 1) does not end the new session."""
    w = World()
    m = _server(w, pki, tmp_path)
    c, rec0 = _alice_admitted(w, m, pki)
    ops = w.server.ops
    m.lines.clear()
    c.user_restart()
    assert _asked(w, m)
    assert [(mode, cid, kid) for mode, cid, kid, _e in m.asks()] == [("REAUTH", 0, 2)]
    heir = next(iter(w.server.d.pending.values()))
    assert ops.management_verdict(0, 1, True)                   # the first login's, let in: SUCCESS
    assert not ops.management_pending(0, 1, "WEB_AUTH::https://x", 30)   # not a waiting login
    w.run_for(3)
    assert heir.alive and not heir.session.established and (0, 2) in ops.client_auth.by_ckid, \
        "a late yes for the first login let the restart in"
    assert ops.management_verdict(0, 2, True)

    def back() -> bool:
        rec = w.server.d.record(rec0.addr)
        return rec is heir and rec.session.established and _up(c)
    assert w.run(back, max_time=30), "the restart did not complete"
    assert w.run(lambda: not rec0.alive, max_time=30)
    assert not ops.management_verdict(0, 1, False, why="late")      # ERROR: client-deny command failed
    assert not ops.management_verdict(0, 1, True)                   # ERROR: client-auth command failed
    assert not ops.management_pending(0, 1, "x", 30)                # ERROR: client-pending-auth command failed...
    w.run_for(3)
    assert heir.alive and heir.session.established and _up(c), "a late client-deny ended the newer session"
    assert ops.management_verdict(0, 2, True)                      # its own login: SUCCESS, no change


def test_late_answers_for_a_client_that_left_fail_and_touch_nobody_else(pki, tmp_path):
    """A login whose client left before the answer came: client-auth, client-auth-nt, client-deny
    and client-pending-auth for it fail (2.6: lookup_by_cid finds no instance -> ERROR), and
    another client's waiting login is not answered by them."""
    w = World()
    m = _server(w, pki, tmp_path)
    c0 = _client(w, pki, name="client0")
    c1 = _client(w, pki, name="client1")
    assert _asked(w, m, 2)
    (_m0, cid0, kid0, _e0), (_m1, cid1, kid1, _e1) = m.asks()[:2]
    first = next(inf.rec for inf in w.server.ops.info.values() if inf.cid == cid0)
    w.server._end_peer(first.addr, "the test ends it")
    assert w.run(lambda: not first.alive, max_time=10)
    ops = w.server.ops
    assert not ops.management_verdict(cid0, kid0, True, config=["push \"route 198.18.77.0 255.255.255.0\""])
    assert not ops.management_verdict(cid0, kid0, False, why="late")
    assert not ops.management_pending(cid0, kid0, "x", 30)
    assert (cid1, kid1) in ops.client_auth.by_ckid and not _up(c1)
    assert ops.management_verdict(cid1, kid1, True)
    assert w.run(lambda: _up(c1), max_time=30)
    del c0


def test_kid_0_of_a_live_client_is_answered_as_2_6_and_decides_nothing(pki, tmp_path):
    """2.6.14 answers SUCCESS to client-auth-nt / client-deny naming KID 0 of a client it has (a
    blank key-state slot: ops.py _cid_alive; seen in tests/interop/test_mgmt_client_auth_vs_
    openvpn.py) and nothing follows; client-pending-auth for it fails. A block sent for KID 0 is
    not the waiting login's."""
    w, _m, c, cid, kid = _login(pki, tmp_path)
    ops = w.server.ops
    assert ops.management_verdict(cid, 0, False, why="wrong KID")
    assert ops.management_verdict(cid, 0, True, config=['push "route 198.18.77.0 255.255.255.0"'])
    assert not ops.management_pending(cid, 0, "x", 30)
    assert not ops.management_verdict(cid + 7, 0, True)               # no such client: ERROR
    w.run_for(3)
    assert not _up(c) and (cid, kid) in ops.client_auth.by_ckid
    assert ops.management_verdict(cid, kid, True)
    assert w.run(lambda: _up(c), max_time=30)
    assert "198.18.77.0" not in [r[0] for r in w.client_nets[0].pushed.routes]


def test_a_restarts_block_is_not_kept_for_the_sessions_life(pki, tmp_path):
    """review48c: a block answering a login whose connect step it can no longer reach -- a
    restart in place of an established client (it goes on with the connection's options, as
    2.6, whose management_client_auth frees a block once the instance is past CAS_WAITING_AUTH)
    -- is not kept: it was held for the session's life (up to 1 MiB each, management.py
    BLOCK_LIMIT), which authq48's change meant to end. Nor is it applied."""
    w = World()
    m = _server(w, pki, tmp_path)
    c, rec0 = _alice_admitted(w, m, pki)
    ops = w.server.ops
    m.lines.clear()
    c.user_restart()
    assert _asked(w, m)
    heir = next(iter(w.server.d.pending.values()))
    block = [f"iroute 10.{i >> 8}.{i & 255}.0 255.255.255.0" for i in range(2000)]
    assert ops.management_verdict(0, m.asks()[-1][2], True, config=block + ['push "route 198.18.77.0 255.255.255.0"'])

    def back() -> bool:
        rec = w.server.d.record(rec0.addr)
        return rec is heir and rec.session.established and _up(c)
    assert w.run(back, max_time=30), "the restart did not complete"
    assert ops.info[id(heir)].mgmt_config is None, "the restart's block kept for the session's life"
    assert "198.18.77.0" not in [r[0] for r in w.client_nets[0].pushed.routes]


def test_a_reload_taking_it_away_and_back_never_gives_a_kid_twice(pki, tmp_path):
    """review48c: a reload taking management-client-auth away, then one bringing it back, kept
    the client (it was approved) but began its KIDs at 1 again: its next renegotiation was
    announced REAUTH,0,1 -- the (CID, KID) of its first login, so a management client's late or
    repeated `client-auth 0 1` for that first login let the renegotiation in unasked (and a
    client-auth block's parse queue, keyed by (CID, KID), met two logins of one key). The KID
    count of a client still here now goes on across the reloads."""
    class Running(Mgmt):                # a management interface runs (`management` at the start)
        def set_peer_ids(self, ids) -> None:
            pass
    base = server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n")
    w = World()
    gw, holder = w.add_reloadable_server(base + "management-client-auth\n")
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    m = gw.ops.mgmt = Running()
    c = _client(w, pki, extra="reneg-sec 20\n")
    assert _asked(w, m) and m.asks()[0][:3] == ("CONNECT", 0, 1)
    assert gw.ops.management_verdict(0, 1, True)
    assert w.run(lambda: _up(c), max_time=30)
    holder["conf"] = base
    assert gw.ops.reload() and w.run(lambda: gw.ops.client_auth is None, max_time=10)
    holder["conf"] = base + "management-client-auth\n"
    assert gw.ops.reload() and w.run(lambda: gw.ops.client_auth is not None, max_time=10)
    assert _asked(w, m, 2), "no renegotiation announced (the case tests nothing)"
    mode, cid, kid, _env = m.asks()[1]
    assert (mode, cid) == ("REAUTH", 0) and kid != 1, m.asks()
    gw.ops.management_verdict(0, 1, True)               # the first login's, again: lets nothing in
    w.run_for(1)
    assert (0, kid) in gw.ops.client_auth.by_ckid, "a repeated answer for the first login let the renegotiation in"


def test_a_client_auth_blocks_data_ciphers_chooses_the_cipher(pki, tmp_path):
    """compat48: the cipher is chosen after the per-client lines, the management client's
    client-auth block last among them (multi.c multi_client_connect_late_setup): its
    `data-ciphers CHACHA20-POLY1305` gives client0 that cipher though the server's list puts
    AES-256-GCM first. Before, ours had chosen AES-256-GCM at the handshake and refused the
    client on that line."""
    w, _m, c, cid, kid = _login(pki, tmp_path)
    assert w.server.ops.management_verdict(cid, kid, True, config=["data-ciphers CHACHA20-POLY1305"])
    assert w.run(lambda: _up(c), max_time=10)
    assert w.server.d.clients[0].session.cipher == "CHACHA20-POLY1305"
    assert c.conn.session.cipher == "CHACHA20-POLY1305"


def test_a_reload_keeps_a_client_whose_block_chose_its_cipher(pki, tmp_path, caplog):
    """review48f: a reload's verdict on a kept client's cipher (given.cipher_dropped) looked at its
    ccd file's lines only, so client0, given CHACHA20-POLY1305 by its client-auth block (the
    server's list: AES-256-GCM:AES-128-GCM), was told RESTART at every reload -- one changing
    nothing too. No reload runs the connect step again: the block's lines as admitted stand."""
    class Running(Mgmt):                # a management interface runs (`management` at the start)
        def set_peer_ids(self, ids) -> None:
            pass
    caplog.set_level(logging.INFO)
    w = World()
    gw, _holder = w.add_reloadable_server(server_conf(pki, extra=f"management {tmp_path}/m.sock unix\n"
                                                      "management-client-auth\ndata-ciphers AES-256-GCM:AES-128-GCM\n"))
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    m = gw.ops.mgmt = Running()
    c = _client(w, pki)
    assert _asked(w, m)
    _mode, cid, kid, _env = m.asks()[0]
    assert gw.ops.management_verdict(cid, kid, True, config=["data-ciphers CHACHA20-POLY1305"])
    assert w.run(lambda: _up(c), max_time=10)
    rec = gw.d.clients[0]
    assert rec.session.cipher == "CHACHA20-POLY1305"
    mark = len(caplog.text)
    assert gw.ops.reload()
    assert w.run(lambda: "clients kept" in caplog.text[mark:], max_time=10), caplog.text[-2000:]
    assert "1 clients kept" in caplog.text[mark:] and "told RESTART" not in caplog.text[mark:], caplog.text[mark:]
    w.run_for(3)
    assert gw.d.clients == [rec] and rec.alive and c.conn.session.cipher == "CHACHA20-POLY1305"
