"""auth-gen-token on our server, attacked by hostile clients and a hostile operator's reload (in
memory; the feature's own tests: test_auth_gen_token.py).

What these pin down: a valid token of another user is refused even when the client also claims
that user's name at a renegotiation; a client that renegotiates every few seconds costs one
token and one PUSH_REPLY per renegotiation and never its password; a wall clock stepped back
(tokens issued "in the future") or forward (past the window) costs the client a password login,
never the server an exception; a reload (SIGHUP) keeps connected clients' tokens good for their
renegotiations while clients connecting after it get tokens of the new secret.

And a user taken out of the password file by a reload loses her tunnel, tokens or not. Before,
with auth-gen-token she kept it: her renegotiations and reconnects used tokens, which no password
file was asked about, and the per-process ephemeral key outlives the reload. Without
auth-gen-token the same reload ends her session at its next renegotiation; OpenVPN 2.6's SIGHUP
frees the ephemeral key (init.c key_schedule_free: free_key_ctx(&ks->auth_token_key)) and
disconnects everyone, so her token is refused and her password is no longer in the file. Now a
token is taken only for a user the password file (as last read) holds (roles._check_token)."""
from __future__ import annotations

import base64
import functools
import signal

import pytest

from appliance.gateway import server_files
from appliance.gateway.credentials import for_run
from appliance.openvpn import gentoken
from appliance.openvpn.keystate import KS
from appliance.openvpn.passdb import hash_password
from appliance.openvpn.settings import server_settings
from tests.gateway.conftest import WALL0, World, client_conf, server_conf
from tests.gateway.test_auth_gen_token import SECRET, _world
from tests.gateway.test_auth_nocache import PASSDB, _client, _logged_in, _up
from tests.gateway.test_client_sigusr1 import _signal


def _sid(token: str) -> bytes:
    return base64.b64decode(token[len(gentoken.PREFIX):])[:gentoken.SESSION_ID_LEN]


def _session_of(w: World, user: str):
    return next(r.session for r in w.server.d.clients if r.session.peer_username == user)


# ------------------------------------------------------------------ hostile clients
def test_another_users_valid_token_with_her_name_at_a_renegotiation_is_refused(pki, tmp_path):
    """alice, logged in with her password, renegotiates as bob with a valid token of bob's (same
    server key, fresh): the username may not change (as OpenVPN's tls_lock_username), so bob is
    never logged in and alice's session ends."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    s = _session_of(w, "alice")
    bob = s.cfg.gen_token.issue(b"bob", WALL0 + int(w.clock()))
    assert s.cfg.gen_token.verify(bob, b"bob", WALL0 + int(w.clock())) is gentoken.Verdict.VALID
    c.auth_token.token, c.auth_token.username, c.auth_token.usable = bob, "bob", True
    assert w.run(lambda: s.closed, max_time=40), "the renegotiation as bob was not refused"
    w.run_for(30)
    assert "bob" not in _logged_in(w), _logged_in(w)


def test_a_client_renegotiating_every_few_seconds_costs_a_token_each_time_and_never_its_password(pki, tmp_path):
    """A client with reneg-sec 3 (hand-window 1 on both sides): ~20 renegotiations a minute, each
    checked by the token and answered by one renewal; the session id stays, the password file
    is not asked again, the server's per-session state stays bounded."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token\nreneg-sec 3600\nhand-window 1\n",
                         client_extra="reneg-sec 3\nhand-window 1\n")
    s = _session_of(w, "alice")
    first = c.auth_token.token
    creds.write_text("alice\nused-up\n")
    seen = {first}
    for _ in range(20):
        w.run_for(3)
        seen.add(c.auth_token.token)
    assert _up(c) and c.connections == 1 and c.result is None and not s.closed
    # Retired keys stay for tran-window (not token state): bounded by the 8 key ids.
    assert max(s.keys) >= 1 and len(s.keys) <= 8, sorted(s.keys)
    assert len(seen) >= 10, f"{len(seen)} tokens in 60 s of renegotiations every 3 s"
    assert {_sid(t) for t in seen} == {_sid(first)}
    assert c.credentials.fetches == 1 and s.cfg.gen_token is not None
    assert not any("auth-token" in k for k in s.stats), s.stats


@pytest.mark.parametrize("step", [-3600, +3 * 3600])
def test_a_wall_clock_step_costs_a_password_login_never_an_exception(pki, tmp_path, step):
    """The server's wall clock stepped back an hour (its tokens now issued 'in the future') or
    forward three (past two renewal periods): the next renegotiation's token is expired, the
    client is told so (AUTH_FAILED,SESSION), and logs in again with its password."""
    w, c, creds = _world(pki, tmp_path, "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    s = _session_of(w, "alice")
    s.cfg.wall_clock = lambda: WALL0 + step + w.clock()
    assert w.run(lambda: c.connections == 2 and _up(c), max_time=90), "no password login after the clock step"
    assert w.server.d.drop_counters().get("auth-token expired", 0) == 1, w.server.d.drop_counters()
    assert c.credentials.fetches == 2 and "internal error" not in w.server.faults.counts


# ------------------------------------------------------------------ reload (SIGHUP)
def _reloadable(w: World, monkeypatch, conf: str):
    """The server's reload reads holder["conf"]; its settings get the World's fake wall clock
    (load_server_settings passes none: time.time, and a token made on it would be from 2026)."""
    holder = {"conf": conf}
    w.server.ops.reload_source = lambda: holder["conf"]
    monkeypatch.setattr(server_files, "server_settings",
                        functools.partial(server_settings, wall_clock=lambda: WALL0 + w.clock()))
    return holder


def _passdb_world(pki, tmp_path, monkeypatch, server_extra: str):
    passdb = tmp_path / "passdb"
    passdb.write_text(PASSDB)
    conf = server_conf(pki, extra=f"auth-user-pass-verify {passdb} passdb\n" + server_extra)
    creds = tmp_path / "creds.txt"
    creds.write_text("alice\nfirst\n")
    w = World()
    w.add_server(conf, PASSDB)
    holder = _reloadable(w, monkeypatch, conf)
    c = _client(w, pki, creds, True, "reneg-sec 0\n")
    assert w.run(lambda: _up(c), max_time=30)
    return w, c, creds, passdb, holder


def test_a_reload_keeps_connected_clients_tokens_and_new_clients_get_the_new_secret(pki, tmp_path, monkeypatch):
    """auth-gen-token-secret added by a reload: alice (connected before it, her password gone
    from her file) renegotiates on her tokens as before; bob, connecting after it, gets a token
    of the new secret, which another server holding that secret takes."""
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    creds.write_text("alice\nused-up\n")
    holder["conf"] += f"<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"
    assert w.server.ops.reload()
    w.run_for(45)                                            # two renegotiations on tokens
    s = _session_of(w, "alice")
    assert _up(c) and c.connections == 1 and c.credentials.fetches == 1 and max(s.keys) >= 2
    bob_creds = tmp_path / "bob.txt"
    bob_creds.write_text("bob\nsecond\n")
    conf = client_conf(pki, "client1", extra=f"auth-user-pass {bob_creds}\nauth-nocache\nreneg-sec 0\n")
    b = w.add_client(conf, credentials=lambda o: for_run(o, "", ""))
    assert w.run(lambda: b.conn is not None and b.conn.was_up, max_time=30)
    shared = gentoken.TokenPolicy(gentoken.parse_secret(SECRET), 0, 20)
    assert shared.verify(b.auth_token.token, b"bob", WALL0 + int(w.clock())) is gentoken.Verdict.VALID


@pytest.mark.parametrize("tokens", [False, True])
def test_a_user_taken_out_of_the_password_file_by_a_reload_is_cut_off(pki, tmp_path, monkeypatch, tokens):
    """The operator removes alice from the password file and reloads (the way to lock her out
    while she is connected). Without auth-gen-token her next renegotiation's password is refused
    (the reload's password file checks kept clients' renegotiations too), and a reconnect is
    refused. With auth-gen-token her renegotiations and her reconnect must not do better."""
    extra = ("auth-gen-token\n" if tokens else "") + "reneg-sec 20\nhand-window 5\n"
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch, extra)
    assert c.auth_token.in_use is tokens
    passdb.write_text(f"bob:{hash_password('second')}\n")
    assert w.server.ops.reload()
    w.run_for(45)                                            # her session's next renegotiations
    kept = "alice" in _logged_in(w)
    _signal(c, signal.SIGUSR1)                               # and a reconnect (on her token, if any)
    w.run_for(60)
    assert not kept, "alice's connected session went on after the reload took her out of the password file"
    assert "alice" not in _logged_in(w), "alice reconnected after the reload took her out of the password file"


def _secret_pem(raw: bytes) -> str:
    body = base64.b64encode(raw).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN OpenVPN auth-token server key-----", *lines,
                      "-----END OpenVPN auth-token server key-----"])


def _rotated_secret() -> str:
    raw = bytearray(base64.b64decode("".join(SECRET.splitlines()[1:-1])))
    raw[64:96] = bytes(b ^ 0x5A for b in raw[64:96])            # the HMAC key part, changed
    return _secret_pem(bytes(raw))


def test_a_rotated_secret_revokes_kept_clients_tokens_of_the_old_one(pki, tmp_path, monkeypatch):
    """The operator replaces a leaked auth-gen-token-secret and reloads. Kept clients keep their
    tunnels without a password prompt (their token is re-issued under the new secret at once,
    same session), but a token of the old secret is refused from then on, kept session or not.
    Before, a kept session went on checking its renegotiations under the old secret, so whoever
    held (or forged, with the leaked key) an old-secret token of that session was let in."""
    secret_line = f"<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n" + secret_line)
    old = c.auth_token.token
    creds.write_text("alice\nused-up\n")
    holder["conf"] = holder["conf"].replace(SECRET, _rotated_secret())
    assert w.server.ops.reload()
    w.run_for(1)
    new_policy = gentoken.TokenPolicy(gentoken.parse_secret(_rotated_secret()), 0, 20)
    now = WALL0 + int(w.clock())
    assert c.auth_token.token != old, "the kept client's token was not re-issued under the new secret"
    assert new_policy.verify(c.auth_token.token, b"alice", now) is gentoken.Verdict.VALID
    assert _sid(c.auth_token.token) == _sid(old), "the re-issued token must keep the session"
    w.run_for(45)                                            # renegotiations on the new token
    s = _session_of(w, "alice")
    assert _up(c) and c.connections == 1 and c.credentials.fetches == 1 and max(s.keys) >= 2
    c.auth_token.token = old                                 # the leaked secret's token, replayed
    w.run_for(25)                                            # at the kept session's next renegotiation
    assert "alice" not in _logged_in(w) or _session_of(w, "alice") is not s, \
        "the kept session took a token of the rotated-out secret"
    assert w.server.d.drop_counters().get("auth-token invalid", 0) >= 1, w.server.d.drop_counters()


def test_a_lifetime_added_by_a_reload_holds_for_kept_sessions(pki, tmp_path, monkeypatch):
    """auth-gen-token's lifetime set by a reload counts from the kept session's first login, as
    for one begun after it: past it, the token is refused (expired) and the client is asked for
    its password. Before, a kept session's tokens never expired."""
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    holder["conf"] = holder["conf"].replace("auth-gen-token\n", "auth-gen-token 30\n")
    assert w.server.ops.reload()
    w.run_for(70)                                            # renegotiations past first login + 30 s
    assert c.credentials.fetches >= 2, "the kept session's token outlived the reloaded lifetime"
    assert w.server.d.drop_counters().get("auth-token expired", 0) >= 1, w.server.d.drop_counters()
    assert w.run(lambda: "alice" in _logged_in(w), max_time=30), "alice did not log in again with her password"


def test_auth_gen_token_taken_out_by_a_reload_asks_kept_clients_for_their_password(pki, tmp_path, monkeypatch):
    """Without auth-gen-token every renegotiation checks the password. A reload that takes the
    directive out must hold kept sessions to that too: the token issued before is no longer a
    stand-in. Before, the kept session took its last token for ever (as a pushed one)."""
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n")
    assert c.auth_token.in_use
    holder["conf"] = holder["conf"].replace("auth-gen-token\n", "")
    assert w.server.ops.reload()
    creds.write_text("alice\nused-up\n")                     # the password no longer holds
    w.run_for(45)
    assert "alice" not in _logged_in(w), "a kept session renegotiated on a token after auth-gen-token was taken out"
    assert c.credentials.fetches >= 2, "the client was never asked for its password again"


def test_a_rotated_secret_during_a_renegotiation_keeps_the_client_on_its_last_token(pki, tmp_path, monkeypatch):
    """The reload rotating the secret comes while a kept client's renegotiation is under way
    (its TLS handshake started, its key-method message with the token we issued it not read
    yet): that token, the session's own, is taken once more and replaced by one of the new
    secret, as for a client caught between renegotiations. Before, it was checked under the new
    secret, refused (AUTH_FAILED), and the client was cut off and asked for its password -- a
    reload during renegotiations cut off whoever was in one."""
    secret_line = f"<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n" + secret_line)
    s = _session_of(w, "alice")
    old = c.auth_token.token

    def renegotiating() -> bool:
        ks = s._newest()
        return ks is not None and ks.key_id > 0 and ks.phase is not KS.ACTIVE and ks.remote_km is None

    assert w.run(renegotiating, max_time=30), "no renegotiation began"
    creds.write_text("alice\nused-up\n")
    holder["conf"] = holder["conf"].replace(SECRET, _rotated_secret())
    assert w.server.ops.reload()
    w.run_for(45)                                            # that renegotiation, then two more
    assert _up(c) and c.connections == 1 and c.credentials.fetches == 1, \
        f"the client was cut off by the reload: {w.server.d.drop_counters()}"
    assert _session_of(w, "alice") is s and max(s.keys) >= 3
    new_policy = gentoken.TokenPolicy(gentoken.parse_secret(_rotated_secret()), 0, 20)
    assert c.auth_token.token != old
    assert new_policy.verify(c.auth_token.token, b"alice", WALL0 + int(w.clock())) is gentoken.Verdict.VALID
    c.auth_token.token = old                                 # the old-secret token, replayed later
    w.run_for(25)
    assert "alice" not in _logged_in(w) or _session_of(w, "alice") is not s, \
        "the kept session took its old-secret token after the reload's renegotiation"


def test_a_renegotiation_crossing_the_reissued_token_is_taken_once(pki, tmp_path, monkeypatch):
    """The reload re-issues a kept client's token at once, but the client begins its next
    renegotiation before that PUSH_REPLY reached it (here: it never took it), so it brings the
    old-secret token we issued it: taken for that one renegotiation, which issues it a token of
    the new secret. Before, the client was cut off (AUTH_FAILED) and asked for its password."""
    secret_line = f"<auth-gen-token-secret>\n{SECRET}\n</auth-gen-token-secret>\n"
    w, c, creds, passdb, holder = _passdb_world(pki, tmp_path, monkeypatch,
                                                "auth-gen-token\nreneg-sec 20\nhand-window 5\n" + secret_line)
    s = _session_of(w, "alice")
    old = c.auth_token.token
    creds.write_text("alice\nused-up\n")
    holder["conf"] = holder["conf"].replace(SECRET, _rotated_secret())
    assert w.server.ops.reload()
    w.run_for(1)
    assert c.auth_token.token != old, "the reload did not re-issue the token"
    c.auth_token.token = old                                 # as if that PUSH_REPLY came after its soft reset
    w.run_for(45)
    assert _up(c) and c.connections == 1 and c.credentials.fetches == 1, \
        f"the client was cut off by the reload: {w.server.d.drop_counters()}"
    assert _session_of(w, "alice") is s and max(s.keys) >= 2
    new_policy = gentoken.TokenPolicy(gentoken.parse_secret(_rotated_secret()), 0, 20)
    assert new_policy.verify(c.auth_token.token, b"alice", WALL0 + int(w.clock())) is gentoken.Verdict.VALID
