"""Our CLIENT when the server refuses its renegotiation (helper reneg49): a refusal the server
meant must end our client as it ends OpenVPN 2.6.14's client, never be taken for a forgery to
recover from (Session._contain_tls_failure: a TLS *error* on the client's side, which only bytes
that are no meant refusal cause -- a server's refusal never reaches the client as one).

What Debian's 2.6.14 client does against Debian's 2.6.14 server, measured for this file in lab
namespaces (client reneg-sec 6, hand-window 8, tran-window 30; README "Forty-fourth session
(helper reneg49)"), and what these cases hold ours to, against our server in memory:
- a certificate refused at the renegotiation (tls-verify turning to "no", crl-verify after a
  revocation): the server logs "Sent fatal SSL alert" but nothing reaches the client -- its
  renegotiation misses hand-window, it starts new TLS sessions (each missing hand-window too) on
  the old key, and restarts (SIGUSR1 tls-error) once that key's tran-window is over. Ours: the
  same hand-window path, the restart when the old key expires or at ping-restart (our server
  ended the session: the old key gets no answers), whichever first; never the contained
  recovery's counters.
- a password refused at the renegotiation: AUTH_FAILED, the client exits (auth-retry none);
  with an auth-token (auth-gen-token ... external-auth, so the command sees the renegotiation):
  it restarts without the token, its login with the password is refused, it exits.
- a server that stops answering control: as the certificate case (hand-window, new TLS
  sessions, restart at tran-window; tests/interop/test_failed_renegotiation.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from appliance.gateway import client as client_mod
from appliance.gateway import ops as ops_mod
from appliance.gateway.tlsverify import VerifyRunner
from appliance.openvpn.crl import make_crl
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_ops import opki  # noqa: F401 - the fixture
from tests.gateway.test_tunnel import _up, ping_both_ways

CONTAINED = ("TLS failed on an established key (its data channel kept)", "renegotiation to replace a failed TLS")
# The client's timers, short: its renegotiation soon, a refused one over soon.
TIMERS = "reneg-sec 20\nhand-window 10\ntran-window 30\n"


@pytest.fixture
def inline(monkeypatch):
    """tls-verify commands run in the pump's own step (deterministic on the fake clock)."""
    def make(opts, inline=False):
        return VerifyRunner(time_limit=10.0, tmp_dir=opts.tmp_dir, inline=True)
    monkeypatch.setattr(ops_mod, "make_verify_runner", make)
    monkeypatch.setattr(client_mod, "make_verify_runner", make)


def _script(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def _contained(c) -> dict:
    s = c.conn.session if c.conn is not None else None
    return {k: v for k, v in (s.stats if s is not None else {}).items() if k in CONTAINED and v}


def test_a_certificate_revoked_at_its_renegotiation_ends_our_client_as_2_6s(opki, tmp_path, caplog):
    """crl-verify: the client's certificate is revoked (the file changed) and its renegotiation
    is refused by our server, whose alert does not reach the client (the session is gone with
    it), as Debian's server's does not: our client's renegotiation fails by hand-window, then its
    new TLS sessions; it restarts by the old key's tran-window at the latest (our server ended
    the session: ping-restart would too) -- not kept alive by contained recoveries every
    RECOVERY_EVERY."""
    caplog.set_level(logging.INFO)
    crl = tmp_path / "crl.pem"
    ca = opki["ca_pair"]
    crl.write_bytes(make_crl(ca[0], ca[1], []))
    w = World()
    w.add_server(server_conf(opki, extra=f"crl-verify {crl}\n"))
    c = w.add_client(client_conf(opki, extra=TIMERS))
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)
    crl.write_bytes(make_crl(ca[0], ca[1], [opki["serials"]["client0"]]))
    os.utime(crl, ns=(os.stat(crl).st_atime_ns, os.stat(crl).st_mtime_ns + 10**9))
    refused_at = w.clock()
    seen: dict = {}

    def restarted() -> bool:
        seen.update(_contained(c))
        return "connection reset" in caplog.text
    assert w.run(restarted, max_time=20 + 10 + 30 + 15), caplog.text[-3000:]
    took = w.clock() - refused_at
    assert seen == {}, f"the refusal was taken for a forgery to recover from: {seen}"
    assert "TLS key negotiation failed to occur within 10 seconds" in caplog.text
    assert "TLS error on key" not in caplog.text and "TLS error in the renegotiation" not in caplog.text
    # reneg-sec 20 (up to 20 s to the renegotiation) + tran-window 30, ping-restart 60 pushed:
    # the earlier of the old key's end and ping-restart.
    assert took <= 20 + 30 + 2, took
    assert c.result is None, "a restart, not an exit (as 2.6's SIGUSR1 tls-error)"


def test_a_chain_tls_verify_refuses_at_its_renegotiation_restarts_our_client_at_once(pki, tmp_path, inline, caplog):
    """tls-verify turns to "no" after the first handshake: our server answers the
    renegotiation's key-method message with its refusal notice, inside the new TLS session
    (tls.py REFUSAL_NOTICE: no key holder can forge it), and our client restarts at once --
    sooner than 2.6's client against Debian's server, to which the refusal never comes (it
    restarts once the old key's tran-window is over), and never a contained recovery."""
    caplog.set_level(logging.INFO)
    marker = tmp_path / "refuse"
    tv = _script(tmp_path, "tv.sh", f"[ -e {marker} ] && exit 1\nexit 0\n")
    w = World()
    w.add_server(server_conf(pki, extra=f"script-security 2\ntls-verify {tv}\n"))
    c = w.add_client(client_conf(pki, extra=TIMERS))
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)
    marker.touch()
    refused_at = w.clock()
    seen: dict = {}

    def restarted() -> bool:
        seen.update(_contained(c))
        return "connection reset" in caplog.text
    assert w.run(restarted, max_time=20 + 15), caplog.text[-3000:]
    assert w.clock() - refused_at <= 20 + 2
    assert seen == {}, f"the refusal was taken for a forgery to recover from: {seen}"
    assert "TLS error on key" not in caplog.text and "renegotiation failed" not in caplog.text
    assert c.result is None, "a restart, not an exit"


AUTH = """[ -e {marker} ] && {{ echo "$script_type $session_state" >> {log}.refused; exit 1; }}
echo "$script_type $session_state" >> {log}
exit 0
"""


@pytest.mark.parametrize("token", [False, True])
def test_a_password_refused_at_its_renegotiation_ends_our_client_as_2_6s(pki, tmp_path, caplog, monkeypatch, token):
    """auth-user-pass-verify turns to "no": AUTH_FAILED at the renegotiation, and our client
    exits (auth-retry none) at once; with an auth-token the server's command sees (external-auth)
    it restarts first without the token, as 2.6 ("auth-failure (auth-token)"), and exits when its
    password's login is refused. Never a contained recovery."""
    from appliance.gateway.scripts import ScriptRunner
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(inline=True))
    caplog.set_level(logging.INFO)
    marker, log = tmp_path / "refuse", tmp_path / "auth.log"
    check = _script(tmp_path, "auth.sh", AUTH.format(marker=marker, log=log))
    extra = f"auth-user-pass-verify {check} via-env\nscript-security 3\ntmp-dir {tmp_path}\n"
    if token:
        extra += "auth-gen-token 0 120 external-auth\n"
    w = World()
    w.add_server(server_conf(pki, extra=extra))
    c = w.add_client(client_conf(pki, extra="auth-user-pass\nauth-retry none\n" + TIMERS),
                     username="alice", password="pw")
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w)
    marker.touch()
    seen: dict = {}

    def ended() -> bool:
        seen.update(_contained(c))
        return c.result is not None
    assert w.run(ended, max_time=20 + 15), caplog.text[-3000:]
    assert c.result == 1
    assert seen == {}, seen
    refused = (tmp_path / "auth.log.refused").read_text().split("\n")
    if token:
        # The renegotiation's token, then the restart's password login: both refused by the command.
        assert refused[:2] == ["user-pass-verify Authenticated", "user-pass-verify Initial"], refused
        assert "auth-token dropped" in caplog.text
    else:
        assert refused[0] == "user-pass-verify ", refused
        assert "connection reset" not in caplog.text, "2.6 (auth-retry none) exits, it does not restart"
