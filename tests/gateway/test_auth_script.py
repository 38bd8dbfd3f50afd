"""auth-user-pass-verify with a command on our server (gateway/authscript.py), on in-memory ports
with real commands: via-file and via-env, OpenVPN's environment, the reason file, deferred
verdicts through auth_control_file, renegotiations and auth-gen-token, hostile names and
passwords. (Against Debian's OpenVPN 2.6: tests/interop/test_auth_script_vs_openvpn.py.)"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from appliance.gateway.authscript import ScriptCheck
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf

CHECK = """#!/bin/sh
# alice/first is right; everything the command saw is kept in {out}
out={out}
n=$(ls $out.*.env 2>/dev/null | wc -l)
env > $out.$n.env
if [ -n "$1" ]; then cp "$1" $out.$n.file; user=$(sed -n 1p "$1"); pass=$(sed -n 2p "$1"); echo "$1" > $out.$n.path
else user=$username; pass=$password; fi
[ "$user" = alice ] && [ "$pass" = first ] && exit 0
{on_fail}
exit 1
"""


def _script(tmp_path: Path, body: str, name: str = "check.sh") -> Path:
    p = tmp_path / name
    p.write_text(body)
    p.chmod(0o755)
    return p


def _server(w: World, pki, tmp_path: Path, method: str = "via-file", extra: str = "", on_fail: str = "",
            body: str | None = None) -> Path:
    out = tmp_path / "seen"
    script = _script(tmp_path, body if body is not None else CHECK.format(out=out, on_fail=on_fail))
    w.add_server(server_conf(pki, extra=f"auth-user-pass-verify {script} {method}\nscript-security 3\n"
                             f"tmp-dir {tmp_path}\n" + extra))
    return out


def _client(w: World, pki, user: str = "alice", password: str = "first", extra: str = ""):
    return w.add_client(client_conf(pki, extra="auth-user-pass\n" + extra), username=user, password=password)


def _up(c) -> bool:
    return c.conn is not None and c.conn.was_up


def _runs(out: Path) -> list[dict[str, str]]:
    """The environment of each run of the command, in order."""
    runs = []
    for i in range(100):
        f = Path(f"{out}.{i}.env")
        if not f.exists():
            break
        runs.append(dict(line.split("=", 1) for line in f.read_text().splitlines() if "=" in line))
    return runs


@pytest.mark.parametrize("method", ["via-file", "via-env"])
def test_the_command_decides_who_logs_in(pki, tmp_path, method):
    w = World()
    out = _server(w, pki, tmp_path, method)
    good = _client(w, pki)
    assert w.run(lambda: _up(good), max_time=30)
    bad = _client(w, pki, password="guess")
    assert w.run(lambda: bad.result is not None, max_time=30), "a wrong password was not refused"
    assert bad.result == 1 and not _up(bad)
    assert _up(good) and len(_runs(out)) == 2


def test_the_command_gets_openvpns_environment_and_a_file_it_alone_reads(pki, tmp_path):
    w = World()
    out = _server(w, pki, tmp_path, "via-file")
    c = _client(w, pki)
    assert w.run(lambda: _up(c), max_time=30)
    env, = _runs(out)
    assert env["script_type"] == "user-pass-verify"
    assert env["username"] == "alice" and "password" not in env          # via-file: in the file only
    assert env["common_name"] == "client0" and env["untrusted_ip"] == "198.18.0.2"
    assert int(env["untrusted_port"]) > 0 and env["IV_VER"] and env["X509_0_CN"] == "client0"
    for name in ("auth_control_file", "auth_pending_file", "auth_failed_reason_file"):
        assert env[name].startswith(str(tmp_path) + "/openvpn_"), env[name]
        assert not os.path.exists(env[name]), f"{name} left behind"
    # Before the tunnel is up, as OpenVPN: no trusted address, no pool address yet.
    assert not {"trusted_ip", "trusted_port", "ifconfig_pool_remote_ip"} & set(env), env
    path = Path(tmp_path / "seen.0.path").read_text().strip()
    assert path.startswith(str(tmp_path) + "/openvpn_up_") and not os.path.exists(path), "the file was left"
    assert Path(tmp_path / "seen.0.file").read_bytes() == b"alice\nfirst\n"


def test_via_env_passes_the_password_only_at_script_security_3(pki, tmp_path):
    w = World()
    script = _script(tmp_path, CHECK.format(out=tmp_path / "seen", on_fail=""))
    conf = server_conf(pki, extra=f"auth-user-pass-verify {script} via-env\nscript-security 2\n")
    assert any("script-security 3" in n for n in parse_config(conf, "/mem/s.conf").notes)
    w.add_server(conf)
    c = _client(w, pki)
    assert w.run(lambda: c.result is not None, max_time=30)
    env, = _runs(tmp_path / "seen")
    assert env["username"] == "alice" and "password" not in env
    assert not _up(c)


def test_the_reason_file_is_what_the_client_is_told(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    w = World()
    _server(w, pki, tmp_path, on_fail='printf "account locked\\nsecond line\\n" > "$auth_failed_reason_file"')
    c = _client(w, pki, password="guess")
    assert w.run(lambda: c.result is not None, max_time=30)
    w.run_for(2)                                # the client's held log lines
    assert "AUTH_FAILED account locked" in caplog.text, caplog.text[-3000:]
    assert "second line" not in caplog.text
    assert "check.sh exited with status 1" in caplog.text


DEFER = """#!/bin/sh
echo "$auth_control_file" > {tmp}/acf.$$
{then}
exit 2
"""


def _deferred(w: World, tmp_path: Path) -> Path:
    """The control file of the one deferred check, once it is waiting."""
    assert w.run(lambda: bool(list(tmp_path.glob("acf.*"))), max_time=30)
    f, = tmp_path.glob("acf.*")
    return Path(f.read_text().strip())


def test_a_deferred_verdict_is_taken_from_the_control_file(pki, tmp_path):
    w = World()
    _server(w, pki, tmp_path, body=DEFER.format(tmp=tmp_path, then=""))
    c = _client(w, pki)
    acf = _deferred(w, tmp_path)
    w.run_for(5)
    assert not _up(c) and len(w.server.auth.deferred) == 1, "logged in before the verdict"
    acf.write_text("1")
    assert w.run(lambda: _up(c), max_time=10)
    assert not acf.exists() and not w.server.auth.deferred


def test_a_deferred_no_is_a_refusal_with_its_reason(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    w = World()
    then = 'echo "denied by the phone" > "$auth_failed_reason_file"'
    _server(w, pki, tmp_path, body=DEFER.format(tmp=tmp_path, then=then))
    c = _client(w, pki)
    acf = _deferred(w, tmp_path)
    acf.write_text("0")
    assert w.run(lambda: c.result is not None, max_time=10)
    w.run_for(2)
    assert not _up(c) and "AUTH_FAILED denied by the phone" in caplog.text
    assert not w.server.auth.deferred and not acf.exists()


def test_a_deferred_check_without_a_verdict_ends_at_hand_window(pki, tmp_path):
    w = World()
    _server(w, pki, tmp_path, body=DEFER.format(tmp=tmp_path, then=""), extra="hand-window 20\n")
    c = _client(w, pki)
    acf = _deferred(w, tmp_path)
    w.run_for(21)                     # the client tries again meanwhile: its new checks wait in turn
    a = w.server.auth
    assert not acf.exists() and all(v.control != str(acf) for _k, _s, v, _d in a.deferred)
    assert not _up(c)
    assert sum(a.pending.values()) == len(a.deferred), "a source's slot stayed taken"


def test_a_command_asking_for_pending_auth_holds_the_login_and_tells_the_client(pki, tmp_path, caplog):
    """auth_pending_file (OpenVPN 2.6's pending auth from a command): the client, which announced
    IV_SSO webauth, is told AUTH_PENDING,timeout 300 and INFO_PRE,WEB_AUTH::<url>, and waits past
    both hand-windows (10 s) until the command's control file says yes."""
    caplog.set_level(logging.INFO)
    w = World()
    then = 'printf "300\\nwebauth\\nWEB_AUTH::https://sso.example/x\\n" > "$auth_pending_file"'
    _server(w, pki, tmp_path, body=DEFER.format(tmp=tmp_path, then=then), extra="hand-window 10\n")
    c = _client(w, pki, extra="setenv IV_SSO webauth,openurl\nhand-window 10\n")
    acf = _deferred(w, tmp_path)
    w.run_for(25)
    assert not _up(c) and c.result is None
    assert "message from the server (INFO_PRE): WEB_AUTH::https://sso.example/x" in caplog.text
    assert "AUTH_PENDING,timeout 300" in caplog.text
    acf.write_text("1")
    assert w.run(lambda: _up(c), max_time=10) and c.connections == 1


@pytest.mark.parametrize("pending,client_extra,told", [
    ("300\\nwebauth\\nWEB_AUTH::u\\n", "", "required pending auth method 'webauth' not supported"),
    ("300\\nwebauth\\n", "setenv IV_SSO webauth\n", "not at least three lines long"),
    ("soon\\nwebauth\\nWEB_AUTH::u\\n", "setenv IV_SSO webauth\n", "could not parse the auth pending file's timeout"),
])
def test_a_pending_auth_the_client_cannot_follow_or_a_bad_file_refuses(pki, tmp_path, caplog, pending, client_extra,
                                                                        told):
    caplog.set_level(logging.INFO)
    w = World()
    _server(w, pki, tmp_path, body=DEFER.format(tmp=tmp_path, then=f'printf "{pending}" > "$auth_pending_file"'))
    c = _client(w, pki, extra=client_extra)
    assert w.run(lambda: c.result is not None, max_time=30)
    assert not _up(c) and told in caplog.text and not w.server.auth.deferred


def test_each_renegotiation_runs_the_command_unless_a_token_stands_in(pki, tmp_path):
    w = World()
    out = _server(w, pki, tmp_path)
    c = _client(w, pki, extra="reneg-sec 20\n")
    assert w.run(lambda: _up(c), max_time=30)
    w.run_for(45)
    assert len(_runs(out)) == 3 and _up(c) and c.connections == 1       # the login and two renegotiations

    w2, tmp2 = World(), tmp_path / "token"
    tmp2.mkdir()
    out2 = _server(w2, pki, tmp2, extra="auth-gen-token 0 120\n")
    c2 = _client(w2, pki, extra="reneg-sec 20\n")
    assert w2.run(lambda: _up(c2), max_time=30)
    w2.run_for(45)
    assert len(_runs(out2)) == 1 and _up(c2), "the token did not stand in for the password"


@pytest.mark.parametrize("method", ["via-file", "via-env"])
def test_a_hostile_username_or_password_cannot_add_a_line(tmp_path, method):
    """Control characters become `_`, as in OpenVPN 2.6 (our client never sends them; a hostile
    one may): a password `first\\nalice` must not make the file's second line `first`, nor a
    username `alice\\nfirst` the file's lines `alice`, `first`."""
    out = tmp_path / "seen"
    script = _script(tmp_path, CHECK.format(out=out, on_fail=""))
    check = ScriptCheck((str(script),), method, True, str(tmp_path), time_limit=10)
    assert not check("alice\nfirst", "x", "client0", {}).ok
    assert not check("alice", "first\nalice", "client0", {}).ok
    assert not check("alice", "first\r", "client0", {}).ok
    envs = _runs(out)
    env_pw = method == "via-env"
    assert [(e["username"], e.get("password")) for e in envs] == \
        [("alice_first", "x" if env_pw else None), ("alice", "first_alice" if env_pw else None),
         ("alice", "first_" if env_pw else None)]
    if method == "via-file":
        files = [Path(f"{out}.{i}.file").read_bytes() for i in range(3)]
        assert files == [b"alice_first\nx\n", b"alice\nfirst_alice\n", b"alice\nfirst_\n"]


def test_a_command_past_its_limit_is_killed_with_what_it_started(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = _script(tmp_path, f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    check = ScriptCheck((str(script),), "via-file", False, str(tmp_path), time_limit=0.5)
    t0 = time.monotonic()
    v = check("alice", "first", "client0", {})
    assert not v.ok and "limit" in v.why and time.monotonic() - t0 < 5
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the command's child outlived the limit"
    assert not list(tmp_path.glob("openvpn_*")), "temporary files left"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_missing_command_fails_at_its_line(tmp_path, pki):
    conf = server_conf(pki, extra=f"script-security 2\nauth-user-pass-verify {tmp_path}/nope via-file\n")
    with pytest.raises(ConfigError, match=r"auth-user-pass-verify.*no such file"):
        parse_config(conf, "/mem/s.conf")


def test_a_command_runs_only_with_script_security_2(tmp_path, pki):
    script = _script(tmp_path, "#!/bin/sh\nexit 0\n")
    w = World()
    with pytest.raises(ConfigError, match="script-security 2"):
        w.add_server(server_conf(pki, extra=f"auth-user-pass-verify {script} via-file\n"))


def test_command_with_arguments_quoted_as_openvpn_splits_it(pki, tmp_path):
    script = _script(tmp_path, '#!/bin/sh\n[ "$1" = "--realm" ] && [ "$2" = "two words" ] && [ -f "$3" ] '
                               '&& exit 0\nexit 1\n')
    w = World()
    w.add_server(server_conf(pki, extra=f"auth-user-pass-verify \"{script} --realm 'two words'\" via-file\n"
                             "script-security 2\n"))
    c = _client(w, pki)
    assert w.run(lambda: _up(c), max_time=30)


# ------------------------------------------------------------------ the config, at its line
def _parse(pki, extra: str, client: bool = False):
    conf = client_conf(pki, extra=extra) if client else server_conf(pki, extra=extra)
    return parse_config(conf, "/mem/s.conf")


def _line_of(pki, extra: str, text: str) -> int:
    """The line number `text` gets in server_conf(pki, extra=extra)."""
    return server_conf(pki, extra=extra).splitlines().index(text) + 1


def test_the_config_reads_the_command_as_openvpn_does(pki, tmp_path):
    script = _script(tmp_path, "#!/bin/sh\nexit 0\n")
    o = _parse(pki, f"script-security 2\nauth-user-pass-verify \"{script} -x 'a b'\" via-env\n")
    assert o.auth_user_pass_verify_script == ((str(script), "-x", "a b"), "via-env")
    assert o.auth_user_pass_verify is None
    assert any("script-security 3" in n for n in o.notes)        # via-env without the password
    assert not any("script-security 3" in n for n in _parse(
        pki, f"script-security 3\nauth-user-pass-verify {script} via-env\n").notes)
    # The last line counts, as in OpenVPN: a passdb after a command, and the reverse.
    o = _parse(pki, f"script-security 2\nauth-user-pass-verify {script} via-file\n"
                    f"auth-user-pass-verify {tmp_path}/passdb passdb\n")
    assert o.auth_user_pass_verify == (f"{tmp_path}/passdb", "passdb") and o.auth_user_pass_verify_script is None
    o = _parse(pki, f"auth-user-pass-verify {tmp_path}/passdb passdb\nauth-user-pass-verify {script} via-file\n")
    assert o.auth_user_pass_verify is None and o.auth_user_pass_verify_script == ((str(script),), "via-file")


@pytest.mark.parametrize("case", ["method", "not-executable", "directory", "tmp-dir", "client", "vm"])
def test_a_command_that_cannot_work_fails_at_its_line(pki, tmp_path, monkeypatch, case):
    script = _script(tmp_path, "#!/bin/sh\nexit 0\n")
    line = f"auth-user-pass-verify {script} via-file"
    want = "auth-user-pass-verify"
    if case == "method":
        line, why = f"auth-user-pass-verify {script} via-pipe", "via-file, via-env"
    elif case == "not-executable":
        script.chmod(0o644)
        why = "not an executable file"
    elif case == "directory":
        line, why = f"auth-user-pass-verify {tmp_path} via-file", "not an executable file"
    elif case == "tmp-dir":
        line, want, why = f"tmp-dir {tmp_path}/gone", "tmp-dir", "not a directory"
    elif case == "client":
        with pytest.raises(ConfigError, match=r"s.conf:\d+: auth-user-pass-verify: is a server directive"):
            _parse(pki, f"{line}\n", client=True)
        return
    else:
        monkeypatch.setenv("VPN_APPLIANCE_NO_SCRIPTS", "1")
        why = "the VM image runs no scripts"
    extra = f"script-security 2\n{line}\n"
    with pytest.raises(ConfigError) as e:
        _parse(pki, extra)
    assert f"s.conf:{_line_of(pki, extra, line)}: {want}: " in str(e.value) and why in str(e.value), str(e.value)


def test_a_tmp_dir_another_user_could_swap_files_in_is_refused(pki, tmp_path):
    """auth-user-pass-verify via-file writes the client's username and password to a 0600 file
    of tmp-dir and the command reads it: a local user who may write tmp-dir (no sticky bit) could
    unlink it and put their own valid credentials under its name, and log in under the name
    they claimed. Refused at the line (as tls-export-cert's directory); the default /tmp, sticky,
    is fine. Before, any directory we could write was taken."""
    script = _script(tmp_path, "#!/bin/sh\nexit 0\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    extra = f"script-security 2\nauth-user-pass-verify {script} via-file\ntmp-dir {tmp}\n"
    tmp.chmod(0o777)
    with pytest.raises(ConfigError) as e:
        _parse(pki, extra)
    assert f"s.conf:{_line_of(pki, extra, f'tmp-dir {tmp}')}: tmp-dir: " in str(e.value)
    assert "writable by others without the sticky bit" in str(e.value), str(e.value)
    tmp.chmod(0o1777)
    assert _parse(pki, extra).tmp_dir == str(tmp)


def test_tmpdir_stands_in_for_tmp_dir_and_is_checked_the_same_way(pki, tmp_path, monkeypatch):
    """Without tmp-dir, OpenVPN 2.6 makes its files in $TMPDIR, else /tmp, and checks that
    directory at start as it checks tmp-dir. Here Python's tempfile chose: an unusable $TMPDIR was
    passed over in silence (for /var/tmp or the working directory), one others could write went
    unchecked; and client-connect's options file went there even with tmp-dir given."""
    from appliance.gateway import ops as ops_mod
    from appliance.gateway.scripts import ScriptRunner
    script = _script(tmp_path, "#!/bin/sh\nexit 0\n")
    extra = f"script-security 2\nauth-user-pass-verify {script} via-file\n"
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match=r"s\.conf: tmp-dir: \$TMPDIR='.*gone' .*not a directory we can read"):
        _parse(pki, extra)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o777)
    monkeypatch.setenv("TMPDIR", str(tmp))
    with pytest.raises(ConfigError, match=r"tmp-dir: \$TMPDIR \(tmp-dir's default\): .*without the sticky bit"):
        _parse(pki, extra)
    tmp.chmod(0o1777)
    assert _parse(pki, extra).tmp_dir == str(tmp)
    monkeypatch.delenv("TMPDIR")
    assert _parse(pki, extra).tmp_dir == "/tmp"
    # client-connect's options file: in tmp-dir, as OpenVPN's openvpn_cc_*.tmp
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    cc = _script(tmp_path, f'#!/bin/sh\ndirname "$1" > {tmp_path}/cc-dir\n', "cc.sh")
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\nclient-connect {cc}\ntmp-dir {tmp}\n"))
    c = w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(c), max_time=30)
    assert (tmp_path / "cc-dir").read_text().strip() == str(tmp)


def test_tmp_dir_on_a_client_says_it_does_nothing(pki, tmp_path):
    o = _parse(pki, f"tmp-dir {tmp_path}\n", client=True)
    assert any("tmp-dir" in n and "no effect on a client" in n for n in o.notes), o.notes


def test_a_reload_moves_from_a_password_file_to_a_command_and_back(pki, tmp_path):
    passdb = tmp_path / "passdb"
    passdb.write_text(f"alice:{hash_password('first')}\n")
    out = tmp_path / "seen"
    script = _script(tmp_path, CHECK.format(out=out, on_fail=""))
    by_file = server_conf(pki, extra=f"auth-user-pass-verify {passdb} passdb\nscript-security 2\n")
    by_command = server_conf(pki, extra=f"auth-user-pass-verify {script} via-file\nscript-security 2\n")
    w = World()
    gw = w.add_server(by_file, passdb.read_text())
    holder = {"conf": by_command}
    gw.ops.reload_source = lambda: holder["conf"]
    first = _client(w, pki)
    assert w.run(lambda: _up(first), max_time=30) and _runs(out) == []
    assert gw.ops.reload()
    second = _client(w, pki)
    # `first`, kept, never went through the command: told RESTART, its reconnect is checked by it
    # as the new client's login is (reload44; before, it stayed in unchecked).
    assert w.run(lambda: _up(second) and len(_runs(out)) == 2 and _up(first), max_time=30), \
        "the new client and the restarted one were not both checked by the command"
    holder["conf"] = by_file
    assert gw.ops.reload()
    third = _client(w, pki)
    w.run_for(10)                       # (both told RESTART again: the password file is a change too)
    assert w.run(lambda: _up(third) and _up(first) and _up(second), max_time=30)
    assert len(_runs(out)) == 2, "the command ran after the reload took it away"


# ------------------------------------------------------------------ with auth-gen-token
STATEFUL = """#!/bin/sh
# records session_state/session_id and the password's kind; refuses what {deny} names
n=$(ls {out}.*.env 2>/dev/null | wc -l)
env > {out}.$n.env
[ "$session_state" = "{deny}" ] && exit 1
user=$(sed -n 1p "$1"); pass=$(sed -n 2p "$1")
[ "$user" = alice ] || exit 1
case "$pass" in SESS_ID_AT_*) exit 0;; first) exit 0;; esac
exit 1
"""


def _token_server(w: World, pki, tmp_path: Path, gen: str, deny: str = "none") -> Path:
    out = tmp_path / "seen"
    _server(w, pki, tmp_path, extra=f"auth-gen-token {gen}\n", body=STATEFUL.format(out=out, deny=deny))
    return out


def _renegotiating(pki, tmp_path, gen: str, seconds: float = 45):
    """A client renegotiating every 20 s for `seconds` against a command with auth-gen-token
    `gen`: (world, client, the command's runs)."""
    w = World()
    out = _token_server(w, pki, tmp_path, gen)
    c = _client(w, pki, extra="reneg-sec 20\n")
    assert w.run(lambda: _up(c), max_time=30)
    w.run_for(seconds)
    return w, c, _runs(out)


def test_the_command_sees_the_session_id_the_client_gets(pki, tmp_path):
    w, _c, runs = _renegotiating(pki, tmp_path, "0 120")
    assert len(runs) == 1, "without external-auth a token stands in for the command"
    token = w.server.d.clients[0].session.issued_auth_token
    assert runs[0]["session_state"] == "Initial" and token.startswith("SESS_ID_AT_" + runs[0]["session_id"])


def test_external_auth_hands_each_token_to_the_command(pki, tmp_path):
    _w, c, runs = _renegotiating(pki, tmp_path, "0 120 external-auth")
    assert [r["session_state"] for r in runs] == ["Initial", "Authenticated", "Authenticated"]
    assert len({r["session_id"] for r in runs}) == 1 and _up(c) and c.connections == 1


def test_external_auth_lets_the_command_keep_a_valid_token_out(pki, tmp_path):
    """The account is disabled while the tunnel runs: with external-auth the command refuses
    the next token, where without it the token would have kept her in."""
    w = World()
    out = _token_server(w, pki, tmp_path, "0 120 external-auth", deny="Authenticated")
    c = _client(w, pki, extra="reneg-sec 20\n")
    assert w.run(lambda: _up(c), max_time=30)
    w.run_for(25)
    # Refused at the renegotiation: the client drops its token and logs in with its password
    # (a new session, which this command still takes).
    assert [r["session_state"] for r in _runs(out)] == ["Initial", "Authenticated", "Initial"]
    assert c.connections == 2 and _up(c), "a token the command refused kept its session"


def test_external_auth_lets_the_command_judge_an_expired_token(pki, tmp_path):
    # The renegotiation at 40 s brings a token past its 30 s.
    _w, c, runs = _renegotiating(pki, tmp_path, "30 120 external-auth")
    states = [r["session_state"] for r in runs]
    assert states[:3] == ["Initial", "Authenticated", "Expired"], states
    assert _up(c) and c.connections == 1, "the command said yes to the expired token"


@pytest.mark.parametrize("check", ["passdb", "none"])
def test_external_auth_without_a_command_fails_at_its_line(pki, tmp_path, check):
    extra = (f"auth-user-pass-verify {tmp_path}/passdb passdb\n" if check == "passdb" else "") + \
        "auth-gen-token 0 120 external-auth\n"
    with pytest.raises(ConfigError) as e:
        _parse(pki, extra)
    line = _line_of(pki, extra, "auth-gen-token 0 120 external-auth")
    assert f"s.conf:{line}: auth-gen-token: external-auth hands the token" in str(e.value), str(e.value)


def test_a_blank_username_is_refused_before_the_command_runs(tmp_path):
    out = tmp_path / "seen"
    check = ScriptCheck((str(_script(tmp_path, CHECK.format(out=out, on_fail=""))),), "via-file", False,
                        str(tmp_path), time_limit=10)
    v = check("", "first", "client0", {})
    assert not v.ok and "blank username" in v.why and _runs(out) == []


def test_external_auth_never_takes_a_forged_tokens_session(pki, tmp_path):
    """CVE-2026-13122 (OpenVPN's 423afa8e): a token of the right form whose HMAC fails is
    `Invalid` for the command, and its session id is not this session's: the command sees (and
    a token it lets in carries) a session id of the server's own making."""
    import base64
    import secrets
    forged = "SESS_ID_AT_" + base64.b64encode(secrets.token_bytes(60)).decode()
    w = World()
    out = _server(w, pki, tmp_path, extra="auth-gen-token 0 120 external-auth\n",
                  body=STATEFUL.format(out=tmp_path / "seen", deny="none"))
    c = _client(w, pki, password=forged)
    assert w.run(lambda: _up(c), max_time=30)         # this command takes any token-shaped password
    env, = _runs(out)
    assert env["session_state"] == "Invalid" and not forged.startswith("SESS_ID_AT_" + env["session_id"])
    issued = w.server.d.clients[0].session.issued_auth_token
    assert issued.startswith("SESS_ID_AT_" + env["session_id"])
    assert w.server.d.drop_counters().get("auth-token invalid (to the command)") == 1


def test_many_users_behind_one_address_may_wait_on_a_command_at_once(tmp_path):
    """An office behind NAT, its users approving pushes on their phones (deferred verdicts): a
    password file's limit (2 checks at once per address) would turn most away with
    AUTH_FAILED,TEMP while the first two wait; a command's limits hold 16."""
    from appliance.gateway.auth import AuthChecker
    from lab.fakes import FakeClock
    script = _script(tmp_path, f"#!/bin/sh\necho $auth_control_file >> {tmp_path}/acfs\nexit 2\n")
    clock = FakeClock()
    a = AuthChecker(ScriptCheck((str(script),), "via-file", False, str(tmp_path), 60.0), clock, inline=True)
    refused = [a.submit(i, "198.18.0.9", f"user{i}", "pw", "client0", {}) for i in range(10)]
    assert refused == [None] * 10
    assert a.take_results() == [] and len(a.deferred) == 10
    for f in (tmp_path / "acfs").read_text().split():
        Path(f).write_text("1")
    clock.advance(1)                        # (the files are read every POLL_EVERY)
    assert sorted(k for k, v in a.take_results() if v.ok) == list(range(10))
    a.close()


OPTIONAL = """#!/bin/sh
# a client without credentials gets in when its certificate is client0's (common_name)
env > {out}.env
cp "$1" {out}.file
[ -z "$(sed -n 1p "$1")" ] && [ "$common_name" = client0 ] && exit 0
exit 1
"""


def test_auth_user_pass_optional_hands_a_login_without_credentials_to_the_command(pki, tmp_path):
    """As OpenVPN 2.6 (key_method_2_read, verify_user_pass): the command runs with an empty
    username and password (a file of two empty lines) and decides; without the directive such a
    client is refused before any command runs."""
    out = tmp_path / "opt"
    w = World()
    _server(w, pki, tmp_path, extra="auth-user-pass-optional\n", body=OPTIONAL.format(out=out))
    c = w.add_client(client_conf(pki))               # no auth-user-pass: sends no credentials
    assert w.run(lambda: _up(c), max_time=30), "a client without credentials was not let in by the command"
    assert Path(f"{out}.file").read_text() == "\n\n"
    assert "username=" in Path(f"{out}.env").read_text()
    w2 = World()
    _server(w2, pki, tmp_path / "..", body=OPTIONAL.format(out=tmp_path / "no"))
    c2 = w2.add_client(client_conf(pki))
    w2.run_for(10)
    assert not _up(c2) and not Path(f"{tmp_path / 'no'}.file").exists()


def test_auth_user_pass_optional_needs_someone_to_decide(pki, tmp_path):
    """With only a password file (which refuses every blank login) the line would change
    nothing: refused at its line, as OpenVPN refuses it without a script or management."""
    db = tmp_path / "users.db"
    db.write_text("alice:" + hash_password("first") + "\n")
    with pytest.raises(ConfigError, match="auth-user-pass-optional.*must be used with"):
        parse_config(server_conf(pki, extra=f"auth-user-pass-verify {db} passdb\nauth-user-pass-optional\n"),
                     "/mem/server.conf")
