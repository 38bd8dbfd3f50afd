"""Our CLIENT when Debian's 2.6.14 server refuses its renegotiation (helper reneg49): it must end
as Debian's client ends there, never take the refusal for a forgery to recover from
(Session._contain_tls_failure's recovery is for TLS errors a key holder can cause).

Debian's client against Debian's server, on these steps (measured for this file, not kept: ~45 s
a case; README "Forty-fourth session (helper reneg49)"):
- tls-verify turning to "no": the server logs "Sent fatal SSL alert" but nothing reaches the
  client, whose renegotiation misses hand-window; it moves the old key aside, starts new TLS
  sessions (each missing hand-window too), and restarts (SIGUSR1 tls-error) at the first failure
  after the old key's tran-window. A server that stops answering control: the same.
- auth-user-pass-verify turning to "no" (auth-gen-token external-auth: the command sees the
  renegotiation's token): AUTH_FAILED, restart without the token ("auth-failure (auth-token)"),
  the password's login refused, exit (auth-retry none).
The in-memory cases against our server: tests/gateway/test_client_refused_at_renegotiation.py.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

# Short timers: the renegotiation at 3 s, its handshake given 5 s, the old key 8 s after it began.
TIMERS = "reneg-sec 3\nhand-window 5\ntran-window 8\n"
CONTAINED = ("TLS error on key", "TLS error in the renegotiation", "replaces it")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _command(lab, name: str, marker) -> str:
    """A command (tls-verify or auth-user-pass-verify) that says yes until `marker` exists."""
    p = lab.write(name, f"#!/bin/sh\n[ -e {marker} ] && exit 1\nexit 0\n")
    p.chmod(0o755)
    return str(p)


def test_a_chain_refused_at_the_renegotiation_restarts_our_client_at_tran_window(lab, procs):
    marker = lab.tmp / "refuse-chain"
    tv = _command(lab, "tv.sh", marker)
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=f"script-security 2\ntls-verify {tv}\n"),
                             "srv-chain"))
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra=TIMERS), "ours-chain", wait=30)
    procs.append(cli)
    marker.write_text("")
    # The renegotiation (at most 3 s) misses hand-window (5 s); new TLS sessions try meanwhile;
    # the old key ends 8 s after the renegotiation began, and the session with it.
    assert cli.wait_for("TLS key negotiation failed to occur within 5 seconds", 25), cli.log()[-3000:]
    assert cli.wait_for(r"connection reset: key \d expired", 25), cli.log()[-3000:]
    log = cli.log()
    assert not any(w in log for w in CONTAINED), log[-3000:]
    assert cli.alive(), "a restart, not an exit (as 2.6's SIGUSR1 tls-error)"


def test_a_token_and_password_refused_at_the_renegotiation_end_our_client_as_2_6s(lab, procs):
    """With an auth-token the command sees (external-auth); without one, AUTH_FAILED ends the
    run at once: tests/gateway/test_client_refused_at_renegotiation.py."""
    marker = lab.tmp / "refuse-pass"
    check = _command(lab, "check.sh", marker)
    extra = f"script-security 2\nauth-user-pass-verify {check} via-env\n"
    extra += "auth-gen-token 0 120 external-auth\n"
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=extra), "srv-pass"))
    creds = lab.write("creds", "alice\npw\n")
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nauth-retry none\n"
                                           + TIMERS), "ours-pass", wait=30)
    procs.append(cli)
    marker.write_text("")
    assert cli.exit_within(25) is not None, "auth-retry none: the refused client should have stopped\n" + cli.log()
    log = cli.log()
    assert "AUTH_FAILED" in log and not any(w in log for w in CONTAINED), log[-3000:]
    # As 2.6: the token's refusal restarts without it; the password's then ends the run.
    assert "auth-token dropped" in log and log.count("tunnel up") == 1, log[-3000:]
