"""An encrypted private key with `askpass FILE`, against Debian's OpenVPN 2.6 in namespaces: our
client beside OpenVPN's own with the same profile (both PEM forms openssl writes: PKCS#8 and the
traditional Proc-Type one), and our server with an encrypted key for OpenVPN's client. Before,
`askpass` was refused and an encrypted key failed the start. A wrong password stops the start at
the askpass line, before any packet, as OpenVPN's fails to load the key.
"""
from __future__ import annotations

import subprocess

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
PASSWORD = "s3cret pass-phrase"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _encrypt(lab, key, form: str):
    """`key` encrypted by openssl with PASSWORD, in `form` (pkcs8 or traditional); its askpass file."""
    pw = lab.write(f"askpass-{form}.txt", PASSWORD + "\n")
    out = lab.tmp / f"{key.stem}-{form}-enc.pem"
    extra = ["-traditional"] if form == "traditional" else []
    subprocess.run(["openssl", "pkey", "-in", str(key), *extra, "-aes256", "-passout", f"file:{pw}",
                    "-out", str(out)], check=True, capture_output=True, timeout=60)
    head = out.read_text()
    assert ("Proc-Type: 4,ENCRYPTED" in head) == (form == "traditional") and "ENCRYPTED" in head
    return out, pw


@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_client_with_an_encrypted_key_and_askpass_connects(lab, procs, kind, form):
    _, key = lab.pki.clients["client1"]
    enc, pw = _encrypt(lab, key, form)
    profile = client_profile(lab.pki, "udp")
    assert f"key {key}\n" in profile
    _connects(lab, procs, kind, profile.replace(f"key {key}\n", f"key {enc}\naskpass {pw}\n"), f"enc-{kind}-{form}")


def _connects(lab, procs, kind: str, profile: str, name: str) -> None:
    """`profile` (ours or OpenVPN's client) gets a tunnel to OpenVPN 2.6's server, started for it."""
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp"), f"srv-{name}"))
    start = lab.ours if kind == "ours" else lab.openvpn
    procs.append(start(lab.cli, profile, f"cli-{name}", wait=30))
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP)


def test_our_server_with_an_encrypted_key_serves_openvpns_client(lab, procs):
    enc, pw = _encrypt(lab, lab.pki.server_key, "pkcs8")
    conf = server_config(lab.pki, "udp")
    conf = conf.replace(f"key {lab.pki.server_key}\n", f"key {enc}\naskpass {pw}\n")
    srv = lab.ours(lab.srv, conf, "ours-srv-enc", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), "deb-cli-enc", wait=30)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP)


def test_a_wrong_password_stops_the_start_at_the_askpass_line(lab, procs):
    _, key = lab.pki.clients["client1"]
    enc, _ = _encrypt(lab, key, "pkcs8")
    wrong = lab.write("askpass-wrong.txt", "not the password\n")
    profile = client_profile(lab.pki, "udp").replace(f"key {key}\n", f"key {enc}\naskpass {wrong}\n")
    cli = lab.ours(lab.cli, profile, "cli-enc-wrong", wait=0)
    procs.append(cli)
    rc = cli.exit_within(30)
    line = profile.splitlines().index(f"askpass {wrong}") + 1
    assert rc == 2, cli.log()[-2000:]
    assert f":{line}: askpass: cannot decrypt the private key" in cli.log(), cli.log()[-2000:]


def _pkcs12(lab, name: str, password: str | None):
    """client1's certificate, key and the CA as a PKCS#12 file made by openssl (its defaults:
    AES-256, PBKDF2), with `password` or an empty one."""
    cert, key = lab.pki.clients["client1"]
    out = lab.tmp / f"{name}.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile",
                    str(lab.pki.ca), "-passout", f"pass:{password or ''}", "-out", str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


@pytest.mark.parametrize("form", ["password-and-its-cas", "inline-no-password-with-ca"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_client_with_pkcs12_connects(lab, procs, kind, form):
    import base64
    cert, key = lab.pki.clients["client1"]
    profile = client_profile(lab.pki, "udp")
    for line in (f"cert {cert}\n", f"key {key}\n", f"ca {lab.pki.ca}\n"):
        assert line in profile
    profile = profile.replace(f"cert {cert}\n", "").replace(f"key {key}\n", "")
    if form == "password-and-its-cas":           # the CA only from the file
        p12 = _pkcs12(lab, f"{kind}-pw", PASSWORD)
        pw = lab.write(f"askpass-p12-{kind}.txt", PASSWORD + "\n")
        profile = profile.replace(f"ca {lab.pki.ca}\n", f"pkcs12 {p12}\naskpass {pw}\n")
    else:
        p12 = _pkcs12(lab, f"{kind}-nopw", None)
        profile += f"<pkcs12>\n{base64.encodebytes(p12.read_bytes()).decode()}</pkcs12>\n"
    _connects(lab, procs, kind, profile, f"p12-{kind}-{form}")
