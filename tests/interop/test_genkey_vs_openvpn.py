"""`vpn-appliance genkey` writes keys Debian's OpenVPN 2.6 uses as its own (appliance/genkey.py):
Debian's server on our tls-crypt-v2 server key and our auth-token secret, Debian's client on a
client key we wrapped (its metadata as its tls-crypt-v2-verify script sees it: ours given in base64,
or the current time by default, as 2.6's `--genkey tls-crypt-v2-client`), and a tls-crypt pair on our
static key -- each up with traffic; and Debian's own `--genkey tls-crypt-v2-client` accepts our server
key, as our client key is accepted by Debian's server."""
from __future__ import annotations

import base64
import subprocess
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import OPENVPN, OUR_BIN, TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("genkey")) as lab:
        yield lab


def _genkey(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OUR_BIN, "genkey", *args], capture_output=True, text=True, timeout=60)


def test_debian_openvpn_runs_on_keys_we_generated(lab):
    d = lab.tmp
    sk, tk, ak = d / "v2server.key", d / "static.key", d / "token.key"
    for kind, path in (("tls-crypt-v2-server", sk), ("tls-crypt", tk), ("auth-token", ak)):
        r = _genkey(kind, str(path))
        assert r.returncode == 0, r.stderr
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    user_meta = base64.b64encode(b"alice@example").decode()
    ck_user, ck_time = d / "c-user.key", d / "c-time.key"
    assert _genkey("tls-crypt-v2-client", str(ck_user), user_meta, "--tls-crypt-v2", str(sk)).returncode == 0
    before = int(time.time())
    assert _genkey("tls-crypt-v2-client", str(ck_time), "--tls-crypt-v2", str(sk)).returncode == 0
    # Debian's genkey takes our server key too (it unwraps its own result to check it).
    theirs = d / "c-theirs.key"
    r = subprocess.run([OPENVPN, "--tls-crypt-v2", str(sk), "--genkey", "tls-crypt-v2-client", str(theirs)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and theirs.exists(), r.stdout + r.stderr

    seen = d / "verify.log"
    verify = lab.write("v2verify.sh", f'#!/bin/sh\necho "$metadata_type $(od -An -tx1 "$metadata_file" | tr -d " \\n")"'
                                      f' >> {seen}\nexit 0\n')
    verify.chmod(0o755)
    procs = []
    try:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, protection="none", extra=(
            f"tls-crypt-v2 {sk}\ntls-crypt-v2-verify {verify}\nscript-security 2\n"
            f"auth-gen-token-secret {ak}\nauth-gen-token 3600\n")), "gk-srv")
        procs.append(srv)
        for name, key in (("gk-user", ck_user), ("gk-time", ck_time), ("gk-theirs", theirs)):
            cli = lab.openvpn(lab.cli, client_profile(lab.pki, protection="none", extra=f"tls-crypt-v2 {key}\n"),
                              name, wait=30)
            procs.append(cli)
            assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, cli.log()[-2000:]
            cli.stop(5)
        lines = seen.read_text().split("\n")
        seen_by = [ln.split() for ln in lines if ln.strip()]      # type, metadata hex: one per client
        assert len(seen_by) == 3 and [t for t, _ in seen_by] == ["0", "1", "1"], lines
        assert seen_by[0][1] == b"alice@example".hex(), lines
        stamp = int(seen_by[1][1], 16)
        assert before - 5 <= stamp <= time.time() + 5, stamp
        srv.stop(5)

        # Our static key as a tls-crypt key, Debian at both ends; ours as the client too.
        srv = lab.openvpn(lab.srv, server_config(lab.pki, protection="none", extra=f"tls-crypt {tk}\n"), "gk-srv2")
        procs.append(srv)
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, protection="none", extra=f"tls-crypt {tk}\n"),
                          "gk-static", wait=30)
        procs.append(cli)
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
        cli.stop(5)
        ours = lab.ours(lab.cli, client_profile(lab.pki, protection="none", extra=f"tls-crypt {tk}\n"),
                        "gk-ours", wait=30)
        procs.append(ours)
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    finally:
        for p in reversed(procs):
            p.stop(5)


def test_refusals_name_the_problem_and_write_nothing(lab):
    d = lab.tmp
    out = d / "never.key"
    r = _genkey("tls-crypt-v2-client", str(out))
    assert r.returncode != 0 and "--tls-crypt-v2" in r.stderr and not out.exists()
    sk = d / "v2server-b.key"
    assert _genkey("tls-crypt-v2-server", str(sk)).returncode == 0
    r = _genkey("tls-crypt-v2-client", str(out), "not base64!", "--tls-crypt-v2", str(sk))
    assert r.returncode != 0 and "base64" in r.stderr and not out.exists()
    too_long = base64.b64encode(b"x" * 734).decode()
    r = _genkey("tls-crypt-v2-client", str(out), too_long, "--tls-crypt-v2", str(sk))
    assert r.returncode != 0 and "too long" in r.stderr and not out.exists()
    r = _genkey("tls-crypt-v2-client", str(out), "--tls-crypt-v2", str(d / "static.key"))
    assert r.returncode != 0 and not out.exists()
    r = _genkey("no-such-type", str(out))
    assert r.returncode != 0 and "unknown genkey type" in r.stderr and not out.exists()
    # No file: the key on standard output, which our parser and Debian's read alike.
    r = _genkey("tls-crypt-v2-server")
    assert r.returncode == 0 and r.stdout.startswith("-----BEGIN OpenVPN tls-crypt-v2 server key-----")
    (d / "stdout.key").write_text(r.stdout)
    r = subprocess.run([OPENVPN, "--tls-crypt-v2", str(d / "stdout.key"), "--genkey", "tls-crypt-v2-client"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "BEGIN OpenVPN tls-crypt-v2 client key" in r.stdout, r.stdout + r.stderr
