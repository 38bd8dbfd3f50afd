"""A password holding a tab, 0x01 and DEL, with Debian's OpenVPN 2.6 on either side, in namespaces.

What OpenVPN 2.6 does: its client drops control characters from the username and password it
reads (misc.c get_user_pass_cr: string_mod CC_PRINT, CC_CRLF, 0) before sending them; its server
makes any it receives `_` before a script or plugin sees them (ssl_verify.c verify_user_pass).
So a script behind Debian's 2.6 server sees `passwd` for the password `pa<TAB>ss<0x01>w<DEL>d`
typed into Debian's client.

Ours: our server's password file (`vpn-appliance passwd`) hashed the password as typed, so
Debian's client, which sends it without those characters, was refused; our client sent them, so a
2.6 server's script saw `pa_ss_w_d`, not what the same profile gave with Debian's client. Now the
password counts without them on both sides (passdb.py, keymethod.credential_as_sent)."""
from __future__ import annotations

import subprocess

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.tools import OUR_BIN

TYPED = "pa\tss\x01w\x7fd"
SENT = "passwd"                    # what OpenVPN 2.6's client sends for it


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("pwctl")) as lab:
        yield lab


@pytest.fixture(scope="module")
def creds(lab):
    path = lab.tmp / "creds.txt"
    path.write_bytes(f"alice\n{TYPED}\n".encode())
    return path


@pytest.mark.parametrize("client", ["openvpn", "ours"])
def test_what_a_26_servers_script_sees_of_a_password_with_control_characters(lab, procs, creds, client):
    seen = lab.tmp / f"seen-{client}.txt"
    script = lab.write(f"record-{client}.sh", f'#!/bin/sh\ncp "$1" {seen}\nexit 0\n')
    script.chmod(0o755)
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"script-security 2\nauth-user-pass-verify {script} via-file\n")), f"srv-pw-{client}")
    procs.append(srv)
    start = lab.ours if client == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\n"), f"cli-pw-{client}",
                wait=30)
    procs.append(cli)
    got = seen.read_bytes().split(b"\n")
    assert got[:2] == [b"alice", SENT.encode()], f"OpenVPN 2.6's script saw {got[:2]!r} from {client}'s client"


def test_debians_client_gets_in_with_a_password_made_by_passwd_with_control_characters(lab, procs, creds):
    made = subprocess.run([OUR_BIN, "passwd", "alice"], input=f"{TYPED}\n".encode(), capture_output=True,
                          timeout=60, check=True)
    assert b"drops before sending" in made.stderr, made.stderr
    passdb = lab.tmp / "passdb"
    passdb.write_bytes(made.stdout)
    srv = lab.ours(lab.srv, server_config(lab.pki, "udp", extra=f"auth-user-pass-verify {passdb} passdb\n"),
                   "ours-pw", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {creds}\n"), "deb-pw",
                      wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 30), "\n".join(
        l for l in srv.log().splitlines() if "alice" in l or "password" in l.lower() or "AUTH" in l)[-2000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP)
