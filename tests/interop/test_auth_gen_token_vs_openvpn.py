"""auth-gen-token on our server beside Debian's OpenVPN 2.6 server, with OpenVPN's own client, in
namespaces. The client reads its password from a file with auth-nocache (so it reads the file at
each login); once the tunnel is up the file holds a wrong password, as a one-time code used up
does. Only the server's token can keep the client in from then on.

- Renegotiations every 3 s: the client stays on its first tunnel, and the server's password
  check saw one login, with OpenVPN's server and with ours.
- The token of one server logs the client in on the other when both hold the same
  `auth-gen-token-secret` (OpenVPN's format, both ways): the token is byte for byte OpenVPN's.
- A lifetime: when it is over the renegotiation gets AUTH_FAILED,SESSION and OpenVPN's client
  logs in again with its password, from both servers.
Before, our server refused auth-gen-token as unknown (gateway tests: tests/gateway/test_auth_gen_token.py).
"""
from __future__ import annotations

import subprocess

import pytest

from appliance.openvpn.passdb import hash_password
from lab.configs import client_profile, server_config
from lab.netns import Lab

UP = "Initialization Sequence Completed"
GOOD = "first-pw"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def secret(lab):
    path = lab.tmp / "auth-token.key"
    subprocess.run(["openvpn", "--genkey", "auth-token", str(path)], check=True, capture_output=True, timeout=30)
    return path


def _server(lab, kind: str, name: str, extra: str):
    """OpenVPN's server (a via-file script that takes alice/GOOD and records each check) or ours
    (a passdb with alice/GOOD): (process, the checks OpenVPN's script saw, or None)."""
    if kind == "openvpn":
        calls = lab.tmp / f"{name}-checks.log"
        script = lab.write(f"{name}-verify.sh", "#!/bin/sh\n"
                           f'u=$(sed -n 1p "$1"); p=$(sed -n 2p "$1"); echo "$u $p" >> {calls}\n'
                           f'[ "$u" = alice ] && [ "$p" = {GOOD} ]\n')
        script.chmod(0o755)
        calls.write_text("")
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
            f"script-security 2\nauth-user-pass-verify {script} via-file\n{extra}")), name)
        return srv, calls
    passdb = lab.write(f"{name}-passdb", f"alice:{hash_password(GOOD)}\n")
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra=f"auth-user-pass-verify {passdb} passdb\n{extra}"),
                   name, pattern=r"listening on UDP")
    return srv, None


def _client(lab, procs, name: str):
    """OpenVPN's client reading alice/GOOD from a file, with auth-nocache, tunnel up: (process, its file)."""
    creds = lab.write(f"{name}-creds.txt", f"alice\n{GOOD}\n")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\nauth-nocache\n"),
                      name, wait=0)
    procs.append(cli)
    assert cli.wait_count(UP, 1, timeout=30), cli.log()[-3000:]
    return cli, creds


def _both(lab, procs, server: str, name: str, extra: str):
    """_server(...) and _client(...), both up: (server's checks or None, client, its file)."""
    srv, checks = _server(lab, server, f"srv-{name}-{server}", extra)
    procs.append(srv)
    return (checks, *_client(lab, procs, f"cli-{name}-{server}"))


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_openvpns_client_stays_in_on_the_token_through_renegotiations(lab, procs, server):
    # Renewal 60 s: each token holds 120 s whatever the renewals do. With renewal at reneg-sec's 10 s
    # (20 s per token), OpenVPN's own server failed this test once in three: its client logged no
    # renewal at the first renegotiation, and the second, at 21 s, carried the first token (expired).
    checks, cli, creds = _both(lab, procs, server, "reneg", "auth-gen-token 0 60\nreneg-sec 3\nhand-window 5\n")
    creds.write_text("alice\nused-up\n")
    # The first key, then one per renegotiation: three more in ~9 s (reneg-sec 3; it was 5, ~15 s:
    # what is asserted does not depend on the interval).
    assert cli.wait_count("Control Channel:", 4, timeout=60), cli.log()[-4000:]
    log = cli.log()
    print(f"{server}'s server: {log.count('Control Channel:') - 1} renegotiations on the token, "
          f"{log.count(UP)} tunnel")
    assert cli.alive() and log.count(UP) == 1 and "AUTH_FAILED" not in log, log[-4000:]
    if checks is not None:
        assert checks.read_text().splitlines() == [f"alice {GOOD}"]


@pytest.mark.parametrize("first,second", [("openvpn", "ours"), ("ours", "openvpn")])
def test_a_token_of_one_server_logs_in_on_the_other_with_the_same_secret(lab, procs, secret, first, second):
    """The first server issues the token, stops (explicit-exit-notify: the client reconnects), the
    second starts on the same address and port: the client's file holds a wrong password by then."""
    extra = f"auth-gen-token\nauth-gen-token-secret {secret}\nreneg-sec 120\n"
    a, _ = _server(lab, first, f"srv-a-{first}", extra)
    procs.append(a)
    cli, creds = _client(lab, procs, f"cli-cross-{first}")
    creds.write_text("alice\nused-up\n")
    a.stop()
    b, checks = _server(lab, second, f"srv-b-{second}", extra)
    procs.append(b)
    assert cli.wait_count(UP, 2, timeout=60), cli.log()[-4000:] + "\n---- second server:\n" + b.log()[-3000:]
    assert "AUTH_FAILED" not in cli.log(), cli.log()[-3000:]
    if checks is not None:
        assert checks.read_text() == "", "OpenVPN's server checked a password: it did not take our token"
    print(f"a token issued by {first}'s server logged OpenVPN's client in on {second}'s")


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_after_its_lifetime_the_client_logs_in_with_its_password_again(lab, procs, server):
    # The renegotiation at ~6 s carries a token younger than its 9 s; the one at ~12 s an expired
    # one. (hand-window 3: the renewal time, reneg-sec's here, must be at least twice it. It was
    # a 12 s lifetime, reneg-sec 8 and hand-window 4: the second login 4 s later.)
    checks, cli, creds = _both(lab, procs, server, "life", "auth-gen-token 9\nreneg-sec 6\nhand-window 3\n")
    assert cli.wait_count(UP, 2, timeout=70), cli.log()[-4000:]
    log = cli.log()
    assert "AUTH_FAILED,SESSION: token expired" in log or "SESSION: token expired" in log, log[-4000:]
    if checks is not None:
        assert checks.read_text().splitlines()[:2] == [f"alice {GOOD}"] * 2


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_renewals_between_renegotiations_keep_openvpns_client_able_to_reconnect(lab, procs, server):
    """`auth-gen-token 0 6` under reneg-sec 300: the token is good for 12 s after it was issued,
    so 17 s after the login only a renewal pushed on its own ("PUSH_REPLY,auth-token ...", no
    renegotiation in between) can log the client in again; its file holds a wrong password.
    (hand-window 3: OpenVPN wants a renewal time of at least twice the hand-window. It was
    `auth-gen-token 0 8`, hand-window 4 and a 25 s wait.)"""
    import os
    import signal
    import time
    checks, cli, creds = _both(lab, procs, server, "renew", "auth-gen-token 0 6\nreneg-sec 300\nhand-window 3\n")
    creds.write_text("alice\nused-up\n")
    time.sleep(17)
    assert cli.log().count("Control Channel:") == 1, "a renegotiation happened: not the renewal timer's test"
    os.kill(cli.p.pid, signal.SIGUSR1)
    assert cli.wait_count(UP, 2, timeout=40), cli.log()[-4000:]
    assert "AUTH_FAILED" not in cli.log(), cli.log()[-3000:]
    if checks is not None:
        assert checks.read_text().splitlines() == [f"alice {GOOD}"]
