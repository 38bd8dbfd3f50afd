"""auth-nocache on our client, on in-memory ports: the username/password are fetched again at each
key-method message (gateway/credentials.py), as OpenVPN 2.6 reads its auth-user-pass file again
after purging it (ssl.c key_method_2_write). Before, auth-nocache was accepted and did nothing:
the credentials of the start went again at every reconnect, whatever the file said by then.
(Against Debian's OpenVPN 2.6 server: tests/interop/test_auth_nocache_vs_openvpn.py.)"""
from __future__ import annotations

import logging
import signal

import pytest

from appliance.gateway.credentials import for_run
from appliance.openvpn.config import parse_config
from appliance.openvpn.passdb import hash_password
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_sigusr1 import _signal

PASSDB = f"alice:{hash_password('first')}\nbob:{hash_password('second')}\n"
SERVER_EXTRA = "auth-user-pass-verify /mem/passdb passdb\n"


def _client(w: World, pki, creds, nocache: bool = True, extra: str = ""):
    conf = client_conf(pki, extra=f"auth-user-pass {creds}\n" + ("auth-nocache\n" if nocache else "") + extra)
    opts = parse_config(conf, "/mem/client.ovpn")
    # As cli.py: the credentials of a profile without auth-nocache go in as fields, kept for the run.
    user, pw = opts.auth_user_pass or ("", "")
    c = w.add_client(conf, username=user, password=pw, credentials=lambda o: for_run(o, user, pw))
    return c


def _up(c) -> bool:
    return c.conn is not None and c.conn.was_up


def _up_from_file(pki, tmp_path, nocache: bool = True, server_extra: str = "", extra: str = ""):
    """A server with PASSDB and a client reading alice/first from a file, tunnel up: (world, client, file)."""
    creds = tmp_path / "creds.txt"
    creds.write_text("alice\nfirst\n")
    w = World()
    w.add_server(server_conf(pki, extra=SERVER_EXTRA + server_extra), PASSDB)
    c = _client(w, pki, creds, nocache, extra)
    assert w.run(lambda: _up(c), max_time=30)
    return w, c, creds


def _logged_in(w: World) -> list[str]:
    return [r.session.peer_username for r in w.server.d.clients if r.session.established]


@pytest.mark.parametrize("nocache", [True, False])
def test_a_reconnect_sends_what_the_file_holds_then(pki, tmp_path, nocache):
    w, c, creds = _up_from_file(pki, tmp_path, nocache)
    assert _logged_in(w) == ["alice"]
    assert c.opts.auth_user_pass is None if nocache else c.opts.auth_user_pass == ("alice", "first")
    creds.write_text("bob\nsecond\n")            # rotated while the tunnel runs
    _signal(c, signal.SIGUSR1)
    assert w.run(lambda: c.connections == 2, max_time=60), "no second tunnel"
    assert w.run(lambda: len(_logged_in(w)) == 1 and w.server.d.clients[0].session.peer_username
                 == ("bob" if nocache else "alice"), max_time=30), _logged_in(w)


@pytest.mark.parametrize("nocache", [True, False])
def test_a_password_gone_wrong_in_the_file_is_refused_at_the_reconnect(pki, tmp_path, nocache):
    w, c, creds = _up_from_file(pki, tmp_path, nocache)
    creds.write_text("alice\nnot-any-more\n")
    _signal(c, signal.SIGUSR1)
    if nocache:
        assert w.run(lambda: c.result is not None, max_time=60), "the new password was not read"
        assert c.result == 1 and c.connections == 1          # AUTH_FAILED, auth-retry none: the end
    else:
        assert w.run(lambda: c.connections == 2, max_time=60), "the kept password did not reconnect"


def test_each_renegotiation_reads_the_file_again_and_a_token_stands_in_for_it(pki, tmp_path):
    w, c, creds = _up_from_file(pki, tmp_path, extra="reneg-sec 20\n")
    assert c.credentials.fetches == 1
    w.run_for(45)                                # two renegotiations, each with the password again
    assert c.credentials.fetches == 3 and _up(c) and c.connections == 1
    assert _logged_in(w) == ["alice"]


def test_with_a_pushed_token_the_file_is_not_read(pki, tmp_path):
    w, c, creds = _up_from_file(pki, tmp_path, server_extra="push \"auth-token tok-4711\"\n", extra="reneg-sec 20\n")
    creds.unlink()                               # the token goes at each renegotiation, not the file
    w.run_for(45)
    assert c.credentials.fetches == 1 and _up(c) and c.result is None


def test_a_file_gone_at_the_reconnect_ends_the_run_naming_it(pki, tmp_path, caplog):
    w, c, creds = _up_from_file(pki, tmp_path)
    creds.unlink()
    with caplog.at_level(logging.ERROR):
        _signal(c, signal.SIGUSR1)
        assert w.run(lambda: c.result is not None, max_time=60)
    assert c.result == 1
    assert f"cannot read the auth-user-pass file {creds}" in caplog.text
    assert "internal error" not in caplog.text


def test_inline_credentials_need_no_file_and_go_again(pki):
    w = World()
    w.add_server(server_conf(pki, extra=SERVER_EXTRA), PASSDB)
    conf = client_conf(pki, extra="auth-user-pass\n<auth-user-pass>\nalice\nfirst\n</auth-user-pass>\nauth-nocache\n")
    c = w.add_client(conf, credentials=lambda o: for_run(o, "", ""))
    assert w.run(lambda: _up(c), max_time=30)
    _signal(c, signal.SIGUSR1)
    assert w.run(lambda: c.connections == 2, max_time=60)
    assert c.credentials.fetches == 2


def test_attempts_that_never_reach_the_server_read_nothing(pki, tmp_path):
    """As OpenVPN 2.6, the credentials are fetched when the key-method message is written (TLS
    done), not per attempt: a prompted password is not asked for while the server is down."""
    creds = tmp_path / "creds.txt"
    creds.write_text("alice\nfirst\n")
    w = World()                                  # no server: every attempt times out
    c = _client(w, pki, creds, extra="connect-retry 1\nserver-poll-timeout 2\n")
    w.run_for(20)
    assert c.attempt >= 3 and c.credentials.fetches == 0 and c.result is None


def _read_until(fd: int, text: bytes, timeout: float = 20.0) -> bytes:
    import os
    import select
    import time
    got, end = b"", time.monotonic() + timeout
    while text not in got and time.monotonic() < end:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                got += os.read(fd, 1024)
            except OSError:
                break
    return got


def test_a_typed_password_is_asked_again_on_the_terminal_not_stdout(tmp_path):
    """auth-nocache with no file: asked again at each use, on the controlling terminal (with `log`
    stdout is the log file). The first answer (asked before the start) goes once."""
    import os
    import pty
    import sys
    out = tmp_path / "got"
    code = ("import sys; from appliance.gateway.credentials import Credentials, ask_terminal; "
            "c = Credentials(('ann', 'typed-at-start'), ask_terminal); "
            f"r = [c(), c()]; open({str(out)!r}, 'w').write(repr(r))")
    pid, fd = pty.fork()
    if pid == 0:                                   # the child: a new session on the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    try:
        assert b"Username: " in _read_until(fd, b"Username: ")
        os.write(fd, b"bob\n")
        assert b"Password: " in _read_until(fd, b"Password: ")
        os.write(fd, b"second-pw\n")
        _read_until(fd, b"\n", 5)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_text() == repr([("ann", "typed-at-start"), ("bob", "second-pw")])


def test_no_terminal_to_ask_again_is_credentials_unavailable():
    import subprocess
    import sys
    code = ("from appliance.gateway.credentials import ask_terminal, CredentialsUnavailable\n"
            "try:\n    ask_terminal()\nexcept CredentialsUnavailable as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, start_new_session=True)      # no controlling terminal
    assert "cannot ask for the username and password again" in r.stdout, (r.stdout, r.stderr)
