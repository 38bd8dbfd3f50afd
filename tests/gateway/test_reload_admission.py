"""A reload that adds or tightens an admission check applies it to the clients it keeps: each kept
client ends where a reconnect under the new config would put it -- kept, told RESTART to go
through a check it never passed (given.py Tightened, never held off), or refused (reload44).
OpenVPN 2.6's SIGHUP has every client connect again through every check; ours keeps its clients,
so before, a broken ccd file, an added auth-user-pass-verify / tls-verify / management-client-auth
/ learn-address, duplicate-cn taken away and max-clients lowered all left kept clients as they
were."""
from __future__ import annotations

import ipaddress

from appliance.gateway import ops as ops_mod
from appliance.gateway.server_files import ccd_loader
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 (fixture)
from tests.gateway.test_reload_changed_options import _rec, _reload_and_settle, _two
from tests.gateway.test_tunnel import _up


def _alive(gw, cn: str) -> list:
    return [r for r in gw.d.clients if r.common_name == cn and r.alive and r.session.established]


def test_a_ccd_file_broken_at_a_reload_refuses_its_client_not_keeps_its_old_iroute(opki, tmp_path, caplog):
    """The operator removes client0's `iroute` and slips a typo into the same file. A reconnect is
    refused on that file (the connect's own check); kept, client0 still had the removed iroute
    routed to it until it reconnected."""
    w, gw, holder, ccd, conf = _two(opki, tmp_path, extra="route 198.18.90.0 255.255.255.0\n",
                                    files={"client0": "iroute 198.18.90.0 255.255.255.0\n",
                                           "client1": "iroute 198.18.91.0 255.255.255.0\n"})
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    assert old0.iroutes == [ipaddress.IPv4Network("198.18.90.0/24")]
    (ccd / "client0").write_text("ifconfig-push 198.19.0.9 255.255.255.O\n")   # the iroute gone, a typo (letter O)
    _reload_and_settle(w, gw, caplog)
    assert "client0/198.18.0.2:" in caplog.text and "client-config-dir file for 'client0':" in caplog.text
    assert f"{ccd / 'client0'}:1" in caplog.text, "the refusal does not name the file and line"
    assert not old0.alive, "client0 kept its session (and the removed iroute) past a reload"
    w.run_for(10)
    assert _alive(gw, "client0") == [], "client0 got back in on a file that does not parse"
    assert _rec(gw, "client1") is old1 and old1.alive and not old1.session.restart_sent
    # (client0 stopped at its AUTH_FAILED.) The typo fixed: client0 gets in, with what the file
    # says now (no iroute).
    (ccd / "client0").write_text("\n")
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: _alive(gw, "client0") != [] and _up(w, 2), max_time=60), caplog.text[-2000:]
    assert _rec(gw, "client0").iroutes == []


def test_a_broken_file_refuses_at_once_even_while_its_restart_is_held_off(opki, tmp_path, caplog):
    """A SIGHUP storm flipping the file: a change held off (RELOAD_RESTART_HOLDOFF) must not keep
    the client in when the next reload finds the file broken -- refused then, not held."""
    w, gw, holder, ccd, conf = _two(opki, tmp_path, files={"client0": "ifconfig-push 198.19.0.50 255.255.255.0\n"})
    old0 = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _alive(gw, "client0") and _rec(gw, "client0") is not old0 and _up(w, 0), max_time=30)
    new0 = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.52 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert "restarts in" in caplog.text and new0.alive, "the second change was not held off"
    (ccd / "client0").write_text("ifconfig-push 198.19.0.52\n")      # broken: one argument short
    mark = len(caplog.text)
    _reload_and_settle(w, gw, caplog)
    assert "client-config-dir file for 'client0':" in caplog.text[mark:]
    assert w.run(lambda: not new0.alive, max_time=6), "a client the new config refuses was held off into access"


def _passdb(tmp_path):
    passdb = tmp_path / "passdb"
    passdb.write_text(f"alice:{hash_password('right', n=2 ** 4)}\n")
    return passdb


def test_auth_user_pass_verify_added_restarts_kept_clients_through_it(opki, tmp_path, caplog):
    """client0 has no password, client1 alice's: both are told RESTART; client1 is back through
    the check, client0 is refused by it. Before, both kept their tunnels for good."""
    passdb = _passdb(tmp_path)
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1", extra="auth-user-pass\n"), username="alice", password="right")
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    _reload_and_settle(w, gw, caplog)
    assert "auth-user-pass-verify added by the reload (a check it never went through): told RESTART" in caplog.text
    assert "0 clients kept" in caplog.text and "2 told RESTART" in caplog.text
    assert w.run(lambda: not old0.alive and _alive(gw, "client1") and _rec(gw, "client1") is not old1
                 and _up(w, 1), max_time=40), caplog.text[-2000:]
    w.run_for(10)
    assert _alive(gw, "client0") == [], "a client without a password kept or got access past the new check"


def test_an_admission_restart_is_not_held_off(opki, tmp_path, caplog):
    """client0 was restarted by a reload (its ccd file) seconds ago; the next reload adds
    auth-user-pass-verify: told RESTART at once, not in 30 s (held, it kept its tunnel unchecked)."""
    passdb = _passdb(tmp_path)
    w, gw, holder, ccd, conf = _two(opki, tmp_path, files={"client0": "ifconfig-push 198.19.0.50 255.255.255.0\n"})
    old0 = _rec(gw, "client0")
    (ccd / "client0").write_text("ifconfig-push 198.19.0.51 255.255.255.0\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: _rec(gw, "client0") not in (None, old0) and _up(w, 0), max_time=30)
    new0 = _rec(gw, "client0")
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    mark = len(caplog.text)
    _reload_and_settle(w, gw, caplog)
    assert "restarts in" not in caplog.text[mark:]
    assert w.run(lambda: not new0.alive, max_time=6), "the added check's restart was held off"


def test_tls_verify_and_learn_address_added_restart_kept_clients(opki, tmp_path, caplog, monkeypatch):
    """tls-verify added: 2.6 runs it on every client reconnecting at its SIGHUP; ours ran it only
    at a kept client's next renegotiation (up to reneg-sec later). client0's reconnect is refused by
    it, client1 is back. learn-address added: the same restart, so it learns every address."""
    from appliance.gateway.scripts import ScriptRunner
    from tests.gateway.test_ops import _script
    from appliance.gateway.tlsverify import VerifyRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda o: VerifyRunner(tmp_dir=o.tmp_dir, inline=True))
    verify = _script(tmp_path, "tv.sh", """case "$2" in *CN=client0*) exit 1;; esac
exit 0
""")
    w, gw, holder, ccd, conf = _two(opki, tmp_path)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + f"script-security 2\ntls-verify {verify}\n"
    _reload_and_settle(w, gw, caplog)
    assert "tls-verify added by the reload (a check it never went through): told RESTART" in caplog.text
    assert w.run(lambda: _rec(gw, "client1") not in (None, old1) and _up(w, 1), max_time=40), caplog.text[-2000:]
    w.run_for(10)
    assert not old0.alive and _alive(gw, "client0") == [], "tls-verify refuses client0, which kept its tunnel"
    learn = _script(tmp_path, "la.sh", f'echo "$1 $2 $3" >> {tmp_path}/learned\nexit 0\n')
    cur1 = _rec(gw, "client1")
    holder["conf"] = conf + f"script-security 2\ntls-verify {verify}\nlearn-address {learn}\n"
    _reload_and_settle(w, gw, caplog)
    assert "learn-address added by the reload" in caplog.text
    assert w.run(lambda: _rec(gw, "client1") not in (None, cur1) and _up(w, 1)
                 and (tmp_path / "learned").exists(), max_time=40), caplog.text[-2000:]
    assert "add " in (tmp_path / "learned").read_text() and "client1" in (tmp_path / "learned").read_text()


def test_management_client_auth_added_restarts_kept_clients(opki, tmp_path, caplog):
    """Kept clients were never approved by the management client: told RESTART, their
    reconnects go through it as any new login (ours applies management-client-auth at
    a reload; 2.6 keeps its management settings from the start: stricter here, as documented)."""
    from tests.gateway.test_mgmt_client_auth import Mgmt

    class Running(Mgmt):                # a management interface runs (`management` at the start)
        def set_peer_ids(self, ids) -> None:
            pass
    w, gw, holder, ccd, conf = _two(opki, tmp_path, extra=f"management {tmp_path}/m.sock unix\n")
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    gw.ops.mgmt = Running()
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + "management-client-auth\n"
    _reload_and_settle(w, gw, caplog)
    assert "management-client-auth added by the reload (a check it never went through): told RESTART" \
        in caplog.text
    # Their reconnects meet it: these clients send no username, which it refuses (as 2.6 does
    # without auth-user-pass-optional); kept, they had their tunnels without any say of it.
    assert w.run(lambda: not old0.alive and not old1.alive
                 and caplog.text.count("client refused: the client sent no username") >= 2, max_time=20), \
        caplog.text[-2000:]
    w.run_for(5)
    assert _alive(gw, "client0") == [] and _alive(gw, "client1") == [], "let in without the management's say"


def test_duplicate_cn_taken_away_keeps_the_newest_session_of_a_name(opki, tmp_path, caplog):
    w = World()
    conf = server_conf(opki, extra="duplicate-cn\n")
    gw, holder = w.add_reloadable_server(conf)
    for _ in range(2):
        w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: all(_up(w, i) for i in range(3)), max_time=30)
    first, second = sorted(_alive(gw, "client0"), key=lambda r: gw.ops.info[id(r)].cid)
    holder["conf"] = conf.replace("duplicate-cn\n", "")
    _reload_and_settle(w, gw, caplog)
    assert "has its common name client0 and duplicate-cn is off now: disconnected" in caplog.text
    assert not first.alive and second.alive, "two sessions of one name kept with duplicate-cn off"
    assert len(_alive(gw, "client1")) == 1


def test_max_clients_lowered_ends_the_newest_clients_over_it(opki, tmp_path, caplog):
    w, gw, holder, ccd, conf = _two(opki, tmp_path)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + "max-clients 1\n"
    _reload_and_settle(w, gw, caplog)
    assert "max-clients 1 reached (1 clients connected before it): disconnected" in caplog.text
    assert old0.alive and not old1.alive, "more clients kept than max-clients"
    w.run_for(10)
    assert _alive(gw, "client1") == [], "client1 got back in over max-clients"


def test_username_as_common_name_taken_away_restarts_the_client_under_its_own_name(opki, tmp_path, caplog):
    """The name a client goes by (its ccd file, duplicate-cn, the status) changes with
    username-as-common-name: a reconnect would be someone else's admission, so it is made."""
    passdb = _passdb(tmp_path)
    w = World()
    conf = server_conf(opki, extra=f"auth-user-pass-verify {passdb} passdb\nusername-as-common-name\n")
    gw = w.add_server(conf, passdb.read_text())
    holder = {"conf": conf}
    gw.ops.reload_source = lambda: holder["conf"]
    w.add_client(client_conf(opki, "client0", extra="auth-user-pass\n"), username="alice", password="right")
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert _alive(gw, "alice"), "alice did not connect under her username"
    holder["conf"] = conf.replace("username-as-common-name\n", "")
    _reload_and_settle(w, gw, caplog)
    assert "username-as-common-name changed by the reload" in caplog.text
    assert w.run(lambda: _alive(gw, "client0") != [] and _up(w, 0), max_time=40), caplog.text[-2000:]
    assert _alive(gw, "alice") == []


def _before_push(gw):
    """A server record past its TLS handshake that has not been given its options yet."""
    for rec in list(gw.d.clients) + list(gw.d.pending.values()):
        s = rec.session
        if rec.given is None and any(ks.tls is not None and ks.tls.handshake_done for ks in s.keys.values()):
            return rec
    return None


def test_a_client_found_before_its_push_is_restarted_through_an_added_check(opki, tmp_path, caplog, monkeypatch):
    """Past its handshake and login under the old config at the reload, its push then recorded the
    new config's auth-user-pass-verify as passed: kept without ever being checked by it."""
    from appliance.openvpn.clientpush import ClientPush
    from appliance.openvpn.errors import PushDeferred
    passdb = _passdb(tmp_path)
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    held = {"on": True}
    real = ClientPush._push_options

    def slow_push(self, s):             # its push waits (as for a script): the reload comes meanwhile
        if held["on"]:
            raise PushDeferred()
        return real(self, s)
    monkeypatch.setattr(ClientPush, "_push_options", slow_push)
    w.add_client(client_conf(opki, "client0", extra="auth-user-pass\n"), username="alice", password="wrong")
    assert w.run(lambda: _before_push(gw) is not None, max_time=30), "never caught before its push"
    rec = _before_push(gw)
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    _reload_and_settle(w, gw, caplog)
    held["on"] = False
    assert "auth-user-pass-verify added by the reload" in caplog.text, caplog.text[-2000:]
    w.run_for(15)
    assert not rec.alive and _alive(gw, "client0") == [], "a wrong password kept past the added check"


def test_a_client_pushed_between_the_reload_and_its_turn_in_the_pass_is_restarted_too(
        opki, tmp_path, caplog, monkeypatch):
    """review45b: the pass reaches a client one batch (RELOAD_CHECK_BATCH) and one worker round
    trip at a time. client0, past its login under the old config at the reload, is pushed to
    before its turn: its push recorded the new auth-user-pass-verify as passed, and its turn then
    found it 'given the same' -- kept with a wrong password. Before its push at the reload is
    what counts, not at its turn."""
    from appliance.gateway.reload_reader import ReloadReader, _run
    from appliance.openvpn.clientpush import ClientPush
    from appliance.openvpn.errors import PushDeferred
    passdb = _passdb(tmp_path)
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    held = {"on": True}
    real = ClientPush._push_options

    def slow_push(self, s):
        if held["on"] and s.owner.common_name != "client1":
            raise PushDeferred()
        return real(self, s)
    monkeypatch.setattr(ClientPush, "_push_options", slow_push)
    w.add_client(client_conf(opki, "client0", extra="auth-user-pass\n"), username="alice", password="wrong")
    assert w.run(lambda: _before_push(gw) is not None, max_time=30), "never caught before its push"
    rec = _before_push(gw)

    class Later(ReloadReader):          # the pass's batches wait (a worker thread's round trip)
        def __init__(self) -> None:
            super().__init__(inline=True)
            self.waiting: list = []

        def submit(self, job, then) -> None:
            if then == gw.ops._reload_prepared:
                super().submit(job, then)
            else:
                self.waiting.append((job, then))
    later = Later()
    gw.ops.reload_reader = later
    monkeypatch.setattr(ops_mod, "RELOAD_CHECK_BATCH", 1)
    holder["conf"] = conf + f"auth-user-pass-verify {passdb} passdb\n"
    assert gw.ops.reload()
    assert len(later.waiting) == 1, "the pass's first batch (client1's) was not submitted"
    held["on"] = False                  # client0's push goes through while the pass is under way
    assert w.run(lambda: rec.given is not None, max_time=20), "client0 was never pushed to"
    for _ in range(10):                 # the batches, one by one, as the worker would finish them
        if not later.waiting:
            w.run_for(0.1)
            if not later.waiting:
                break
        job, then = later.waiting.pop(0)
        then(_run(job))
    assert "clients kept" in caplog.text, caplog.text[-2000:]
    w.run_for(15)
    assert not rec.alive and _alive(gw, "client0") == [], "a wrong password kept past the added check"


def test_a_handshake_held_for_the_replaced_tls_verify_is_not_let_in_by_its_verdict(
        opki, tmp_path, caplog, monkeypatch):
    """review45b: client0's handshake waits for tls-verify when a reload replaces the command
    with one that refuses it. The old command's "yes" came after the reload and let it in; its
    push then recorded the new tls-verify as passed -- in, never run through it. The pass ends
    such a handshake (the old verdict no longer decides); its retry meets the new command."""
    from appliance.gateway.scripts import ScriptRunner
    from appliance.gateway.tlsverify import VerifyRunner
    from appliance.openvpn import events as ev
    from tests.gateway.test_ops import _script
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    monkeypatch.setattr(ops_mod, "make_verify_runner", lambda o: VerifyRunner(tmp_dir=o.tmp_dir, inline=True))
    allow = _script(tmp_path, "yes.sh", "exit 0\n")
    refuse = _script(tmp_path, "no.sh", "exit 1\n")
    w = World()
    conf = server_conf(opki, extra="script-security 2\n")
    gw, holder = w.add_reloadable_server(conf + f"tls-verify {allow}\n")
    held: list = []
    real = gw.ops._run_verify

    def hold_first(rec, e):             # the old command's run, slow: its verdict after the reload
        if isinstance(e, ev.TlsVerifyRequested) and not held:
            held.append((rec, e))
            return
        real(rec, e)
    monkeypatch.setattr(gw.ops, "_run_verify", hold_first)
    w.add_client(client_conf(opki, "client0"))
    assert w.run(lambda: held, max_time=30)
    holder["conf"] = conf + f"tls-verify {refuse}\n"
    _reload_and_settle(w, gw, caplog)
    rec, e = held[0]
    gw.ops._verify_done(("tls", rec, e.key_id, e.check), True, "")     # the replaced command's yes
    w.run_for(20)
    assert _alive(gw, "client0") == [], "let in by the verdict of the tls-verify the reload replaced"
    assert "tls-verify changed by the reload" in caplog.text


def test_auth_user_pass_optional_taken_away_restarts_a_client_let_in_without_credentials(opki, tmp_path, caplog):
    """atk45: client0 sends no username; auth-user-pass-optional handed its blank login to the
    command, which let it in. A reload takes the line away: at 2.6's SIGHUP client0 reconnects
    and is refused before any command runs ("the client sent a blank username"); ours kept its
    tunnel for good -- the line was not among the admission checks a reload compares."""
    from tests.gateway.test_ops import _script
    allow = _script(tmp_path, "allow.sh", "exit 0\n")
    w = World()
    conf = server_conf(opki, extra=f"script-security 2\nauth-user-pass-verify {allow} via-env\n"
                                   "auth-user-pass-optional\n")
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0"))
    w.add_client(client_conf(opki, "client1", extra="auth-user-pass\n"), username="alice", password="pw")
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf.replace("auth-user-pass-optional\n", "")
    _reload_and_settle(w, gw, caplog)
    assert "auth-user-pass-optional taken away by the reload" in caplog.text, caplog.text[-2000:]
    assert w.run(lambda: not old0.alive, max_time=40), caplog.text[-2000:]
    w.run_for(10)
    assert _alive(gw, "client0") == [], "a client without credentials kept its tunnel past the reload"
    # review46d: client1 passed the command with its username and password; the line taken away
    # is no check it skipped, so it keeps its tunnel (it was told RESTART along with client0)
    assert old1.alive and _rec(gw, "client1") is old1 and _up(w, 1), "a client that logged in was restarted"


def test_a_data_cipher_the_reload_takes_out_restarts_its_clients(opki, tmp_path, caplog):
    """atk45: client0 offers AES-128-GCM only, client1 AES-256-GCM too; the reload retires
    AES-128-GCM. A renegotiation keeps the data cipher, so client0 went on with it for good; at
    2.6's SIGHUP it reconnects and finds no common cipher. Now told RESTART at once and refused
    on its reconnect; client1, on AES-256-GCM, is kept untouched."""
    w = World()
    conf = server_conf(opki, extra="data-ciphers AES-256-GCM:AES-128-GCM\n")
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0", extra="data-ciphers AES-128-GCM\n"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    assert (old0.session.cipher, old1.session.cipher) == ("AES-128-GCM", "AES-256-GCM")
    holder["conf"] = conf.replace("AES-256-GCM:AES-128-GCM", "AES-256-GCM")
    _reload_and_settle(w, gw, caplog)
    assert "its data cipher AES-128-GCM is not among the reload's data-ciphers" in caplog.text, caplog.text[-2000:]
    assert w.run(lambda: not old0.alive, max_time=10), "client0 kept a cipher the reload took out"
    w.run_for(10)
    assert [r.session.cipher for r in _alive(gw, "client0")] in ([], ["AES-256-GCM"])
    assert _alive(gw, "client0") == [], "no common cipher: 2.6 refuses client0's reconnect"
    assert _rec(gw, "client1") is old1 and old1.alive and not old1.session.restart_sent


def test_tls_version_min_raised_restarts_a_client_below_it(opki, tmp_path, caplog):
    """atk45: client0 speaks TLS 1.2 at most; the reload raises tls-version-min to 1.3. It was
    kept until its next renegotiation (reneg-sec, an hour by default); at 2.6's SIGHUP it
    reconnects at once and its handshake fails. client1, on TLS 1.3, is kept untouched."""
    w = World()
    conf = server_conf(opki)
    gw, holder = w.add_reloadable_server(conf)
    w.add_client(client_conf(opki, "client0", extra="tls-version-max 1.2\n"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    holder["conf"] = conf + "tls-version-min 1.3\n"
    _reload_and_settle(w, gw, caplog)
    assert "its TLS 1.2 is below the reload's tls-version-min 1.3" in caplog.text, caplog.text[-2000:]
    assert w.run(lambda: not old0.alive, max_time=10), "client0 kept TLS 1.2 past the reload"
    w.run_for(10)
    assert _alive(gw, "client0") == []
    assert _rec(gw, "client1") is old1 and old1.alive and not old1.session.restart_sent


def test_a_ccd_cipher_the_reload_takes_out_of_the_servers_list_keeps_its_client(opki, tmp_path, caplog):
    """compat47: client0's ccd file says `data-ciphers AES-128-GCM` (it offers that alone); the
    reload takes AES-128-GCM out of the server's data-ciphers. 2.6 reads a ccd's data-ciphers
    in place of the server's for that client (multi.c), so after its SIGHUP client0 is given
    AES-128-GCM again; ours told it RESTART and then refused it. Now kept, as its connect's
    check (ciphers.client_choice) would take that line under the new config. The same file with
    `data-ciphers AES-256-GCM` (none it offers) is told RESTART."""
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client0").write_text("data-ciphers AES-128-GCM\n")
    conf = server_conf(opki, extra=f"client-config-dir {ccd}\ndata-ciphers AES-256-GCM:AES-128-GCM\n")
    w = World()
    gw, holder = w.add_reloadable_server(conf)
    gw.st.ccd = ccd_loader(str(ccd))
    w.add_client(client_conf(opki, "client0", extra="data-ciphers AES-128-GCM\n"))
    w.add_client(client_conf(opki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    old0, old1 = _rec(gw, "client0"), _rec(gw, "client1")
    assert (old0.session.cipher, old1.session.cipher) == ("AES-128-GCM", "AES-256-GCM")
    holder["conf"] = conf.replace("AES-256-GCM:AES-128-GCM", "AES-256-GCM")
    _reload_and_settle(w, gw, caplog)
    w.run_for(10)
    assert "its data cipher" not in caplog.text, caplog.text[-2000:]
    assert _rec(gw, "client0") is old0 and old0.alive and not old0.session.restart_sent
    assert _rec(gw, "client1") is old1 and old1.alive and not old1.session.restart_sent
    # compat48: and its next fresh connection under the reloaded config is given that cipher too
    # (chosen after the file is read, as 2.6); before, it was refused, naming the file's line
    fresh = w.add_client(client_conf(opki, "client0", extra="data-ciphers AES-128-GCM\n"))
    assert w.run(lambda: fresh.conn is not None and fresh.conn.was_up, max_time=30), caplog.text[-2000:]
    assert fresh.conn.session.cipher == "AES-128-GCM"
    old0 = _rec(gw, "client0")                 # (the fresh one: duplicate-cn is off)
    assert old0.session.cipher == "AES-128-GCM"
    # a file that would choose a cipher client0 does not offer: told RESTART, refused at its return
    (ccd / "client0").write_text("data-ciphers AES-256-GCM\n")
    _reload_and_settle(w, gw, caplog)
    assert w.run(lambda: not old0.alive, max_time=10), caplog.text[-2000:]
    assert _rec(gw, "client1") is old1 and old1.alive
