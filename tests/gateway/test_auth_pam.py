"""`plugin .../openvpn-plugin-auth-pam.so SERVICE [NAME VALUE]...` on our server
(gateway/pam_check.py), on in-memory ports with a fake PAM in place of the root helper: the fake
runs the plugin's conversation rules (host/pam_rules.py) against a scripted PAM stack, so these
tests see what PAM would be asked and answered. (The real helper and Debian's OpenVPN 2.6 with
its real plugin: tests/interop/test_auth_pam_vs_openvpn.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.gateway import pam_check as pam_check_mod
from appliance.host import pam_helper
from appliance.host.pam_client import NO_ANSWER
from appliance.host.pam_helper import OK, REFUSED
from appliance.host.pam_rules import PROMPT_ECHO_OFF, PROMPT_ECHO_ON, ConvError, Creds, answer
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from tests.gateway.conftest import CLIENT_IP, World, client_conf, server_conf

PLUGIN = "plugin /usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-auth-pam.so"


class FakePam:
    """A PAM stack for one service: asks `prompts` through the plugin's conversation, accepts
    alice/secret and refuses `locked` in its account step. Records what it was given."""

    def __init__(self, pairs=(), prompts=((PROMPT_ECHO_ON, b"login: "), (PROMPT_ECHO_OFF, b"Password: ")),
                 locked: bytes = b"bob") -> None:
        self.pairs = tuple((n.encode(), v.encode()) for n, v in pairs)
        self.prompts = prompts
        self.locked = locked
        self.seen: list[Creds] = []
        self.answers: list[tuple[bytes | None, ...]] = []

    def check(self, c: Creds) -> tuple[int, str]:
        self.seen.append(c)
        try:
            got = tuple(answer(self.pairs, style, msg, c) for style, msg in self.prompts)
        except ConvError as e:
            self.answers.append(())
            return REFUSED, f"Conversation error ({e})"
        self.answers.append(got)
        user, pw = got[0], got[1]
        if (user, pw) not in ((b"alice", b"secret"), (self.locked, b"secret")):
            return REFUSED, "Authentication failure"
        if user == self.locked:
            return REFUSED, "User account has expired"
        return OK, ""


@pytest.fixture
def fake_pam(monkeypatch):
    """Install a FakePam as the helper of the next server's plugin line."""
    def install(service: str, pairs=(), **kw) -> FakePam:
        fake = FakePam(pairs, **kw)
        monkeypatch.setitem(pam_check_mod._helpers, (service, tuple(pairs)), fake)
        return fake
    return install


def _client(w: World, pki, user: str, password: str):
    return w.add_client(client_conf(pki, extra="auth-user-pass\n"), username=user, password=password)


def _up(c) -> bool:
    return c.conn is not None and c.conn.was_up


def _refused(w: World, c) -> bool:
    return w.run(lambda: c.result is not None, max_time=30) and c.result == 1 and not _up(c)


def test_pam_decides_who_logs_in_and_sees_the_clients_address(pki, fake_pam):
    fake = fake_pam("login")
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\n"))
    good = _client(w, pki, "alice", "secret")
    assert w.run(lambda: _up(good), max_time=30)
    bad = _client(w, pki, "alice", "guess")
    assert _refused(w, bad), "a wrong password was not refused"
    locked = _client(w, pki, "bob", "secret")
    assert _refused(w, locked), "the account step's refusal did not refuse the login"
    assert _up(good)
    assert [(c.username, c.password) for c in fake.seen] == [(b"alice", b"secret"), (b"alice", b"guess"),
                                                              (b"bob", b"secret")]
    # PAM_RHOST: the client's address, as the plugin sets it from untrusted_ip; COMMONNAME: its cert's.
    assert [c.remote for c in fake.seen] == [CLIENT_IP.encode(), b"198.18.0.3", b"198.18.0.4"]
    assert fake.seen[0].common_name == b"client0"


def test_name_value_pairs_answer_the_prompts_by_their_text(pki, fake_pam):
    pairs = (("name", "USERNAME"), ("password", "PASSWORD"))
    fake = fake_pam("openvpn", pairs, prompts=((PROMPT_ECHO_ON, b"Name: "), (PROMPT_ECHO_OFF, b"Password: ")))
    w = World()
    w.add_server(server_conf(pki, extra=f'{PLUGIN} "openvpn name USERNAME password PASSWORD"\n'))
    good = _client(w, pki, "alice", "secret")
    assert w.run(lambda: _up(good), max_time=30)
    assert fake.answers[0] == (b"alice", b"secret")


def test_an_empty_password_with_pairs_fails_the_conversation_as_the_plugin(pki, fake_pam):
    """The plugin's searchandreplace gives NULL for an empty replacement: the conversation fails,
    so an empty password never reaches PAM (without pairs PAM gets it, empty)."""
    pairs = (("login", "USERNAME"), ("password", "PASSWORD"))
    fake = fake_pam("login", pairs)
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login login USERNAME password PASSWORD\n"))
    c = _client(w, pki, "alice", "")
    assert _refused(w, c)
    assert fake.answers == [()]


def test_the_plugin_and_a_command_must_both_accept(pki, fake_pam, tmp_path: Path):
    """As OpenVPN 2.6 (verify_user_pass): the plugin's and the script's verdicts both count, and
    the command runs whatever the plugin said."""
    fake = fake_pam("login")
    runs = tmp_path / "runs"
    script = tmp_path / "check.sh"
    script.write_text(f"#!/bin/sh\necho \"$username\" >> {runs}\n[ \"$username\" != alice ] || exit 0\nexit 1\n")
    script.chmod(0o755)
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\nauth-user-pass-verify {script} via-env\n"
                             f"script-security 2\ntmp-dir {tmp_path}\n"))
    good = _client(w, pki, "alice", "secret")
    assert w.run(lambda: _up(good), max_time=30)
    pam_says_no = _client(w, pki, "alice", "guess")
    assert _refused(w, pam_says_no)
    fake.locked = b"carol"
    command_says_no = _client(w, pki, "bob", "secret")     # PAM accepts bob/secret now
    assert _refused(w, command_says_no)
    assert runs.read_text().split() == ["alice", "alice", "bob"]
    assert len(fake.seen) == 3


def test_hostile_names_reach_pam_cut_as_the_plugin_cuts_them(pki, fake_pam):
    """The plugin's buffers keep 127 bytes, cut where they end (even inside a UTF-8 character)."""
    fake = fake_pam("login")
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\n"))
    c = _client(w, pki, "\xe9" * 100, "p" * 200)
    assert _refused(w, c)
    seen = fake.seen[-1]
    assert len(seen.username) == 127 and len(seen.password) == 127
    assert seen.username == ("\xe9" * 100).encode()[:127]


def test_a_reload_cannot_change_the_plugin_line(pki, fake_pam, tmp_path: Path, caplog):
    fake_pam("login")
    conf = tmp_path / "server.conf"
    conf.write_text(server_conf(pki, extra=f"{PLUGIN} login\n"))
    w = World()
    w.add_server("", opts=parse_config(conf.read_text(), str(conf)), path=str(conf))
    conf.write_text(server_conf(pki, extra=f"{PLUGIN} other\n"))
    w.server.opts.path = str(conf)
    with pytest.raises(ConfigError, match="auth-pam plugin line changed"):
        w.server.ops._prepare_reload()
    assert w.server.opts.auth_pam == ("login", ())


class BrokenPam(FakePam):
    """A helper that is busy or failing (a PAM module that crashed, a check past its limit)."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    words = "the PAM check ended abnormally"

    def check(self, c: Creds) -> tuple[int, str]:
        self.seen.append(c)
        return (OK, "") if self.status == OK else (self.status, self.words)


@pytest.mark.parametrize("status", [pam_helper.ERROR])
def test_a_failing_helper_refuses_the_login_and_the_server_goes_on(pki, monkeypatch, status, caplog):
    broken = BrokenPam(status)
    monkeypatch.setitem(pam_check_mod._helpers, ("login", ()), broken)
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\n"))
    for i in range(3):
        c = _client(w, pki, "alice", "secret")
        assert _refused(w, c)
    assert len(broken.seen) == 3
    assert "auth-pam: the check" in caplog.text
    broken.status = OK                      # the helper works again: logins do too
    good = _client(w, pki, "alice", "secret")
    assert w.run(lambda: _up(good), max_time=30)


@pytest.mark.parametrize("status,words", [(pam_helper.BUSY, "8 PAM checks running and 64 waiting already"),
                                          (pam_helper.ERROR, NO_ANSWER)], ids=["busy", "no-answer"])
def test_a_login_with_no_verdict_is_refused_for_now_and_the_client_retries(pki, monkeypatch, status, words, caplog):
    """Every check busy and the queue full, or the helper's checks' process restarted under a
    check (no answer): PAM said nothing of the password. 2.6 would make the login wait (one
    check at a time); a final AUTH_FAILED ended a client without auth-retry. AUTH_FAILED,TEMP:
    the client tries again after its backoff, and gets in once PAM answers."""
    broken = BrokenPam(status)
    broken.words = words
    monkeypatch.setitem(pam_check_mod._helpers, ("login", ()), broken)
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\n"))
    c = _client(w, pki, "alice", "secret")
    assert w.run(lambda: len(broken.seen) >= 1, max_time=30)
    w.run_for(3)
    assert c.result is None and not _up(c)            # not ended: it retries
    assert "auth-pam: no verdict for now" in caplog.text
    broken.status = OK
    assert w.run(lambda: _up(c), max_time=120)
    assert len(broken.seen) >= 2


def test_a_login_without_credentials_is_refused_unasked_with_auth_user_pass_optional(pki, fake_pam):
    """As the plugin: an empty username is refused before PAM is asked."""
    fake = fake_pam("login")
    w = World()
    w.add_server(server_conf(pki, extra=f"{PLUGIN} login\nauth-user-pass-optional\n"))
    c = w.add_client(client_conf(pki))
    assert _refused(w, c)
    assert fake.seen == []


def test_a_slow_pam_check_holds_only_its_own_login():
    """OpenVPN's plugin blocks every tunnel unless `setenv deferred_auth_pam 1`; here each check
    runs in AuthChecker's workers: a login answered at once is not held behind a slow one."""
    import threading
    import time

    from appliance.gateway.auth import AuthChecker
    from appliance.gateway.pam_check import PamCheck

    release = threading.Event()

    class SlowPam(FakePam):
        def check(self, c: Creds) -> tuple[int, str]:
            if c.username == b"slow":
                release.wait(10)
            return super().check(c)

    checker = AuthChecker(PamCheck(SlowPam(), "login", 60.0), time.monotonic)
    try:
        assert checker.submit("slow", "198.18.0.2", "slow", "pw", None, {}) is None
        assert checker.submit("fast", "198.18.0.3", "alice", "secret", None, {}) is None
        got: dict = {}
        end = time.monotonic() + 5
        while "fast" not in got and time.monotonic() < end:
            got.update(checker.take_results())
            time.sleep(0.01)
        assert got.get("fast") is not None and got["fast"].ok and "slow" not in got
        release.set()
        end = time.monotonic() + 5
        while "slow" not in got and time.monotonic() < end:
            got.update(checker.take_results())
            time.sleep(0.01)
        assert got["slow"].ok is False
    finally:
        release.set()
        checker.close()
