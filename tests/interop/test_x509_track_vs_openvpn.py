"""x509-track against Debian's OpenVPN 2.6, in namespaces. Server side: the same server config
(x509-track lines for subject fields, fingerprints and extensions, with and without `+`) run by
OpenVPN and by us, a client-connect command recording its X509_* variables (written to a temp file
and moved into place, so the test never reads half a file), Debian's client connecting with a
certificate with two CNs, an e-mail address and a subjectAltName: both servers must give the same
variables. Client side: our client and Debian's, each with x509-track and a tls-verify command
against Debian's server, must see the same variables of the server's chain. Before, our server and
client refused the directive at its line. (Details: tests/unit/test_x509_track.py.)"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until
from lab.pki import add_cert

SERVER_TUN = "198.19.0.1"
TRACK = ("+CN", "emailAddress", "+SHA256", "SHA1", "subjectAltName", "+basicConstraints", "keyUsage",
         "extendedKeyUsage", "O", "OU")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("x509track")) as lab:
        add_cert(lab.pki, "track1", "/O=acme/CN=track-1/CN=second/emailAddress=alice@example.org",
                 san_emails=("alice@example.net",))
        yield lab


def _recorder(lab, tag: str) -> tuple[str, object]:
    """A command writing its X509_* variables (sorted) to a file, via a temp file and mv; `$1` is
    the depth for tls-verify (one file per depth), a file name for client-connect (one file)."""
    out = lab.tmp / f"x509-{tag}"
    script = lab.write(f"record-{tag}.sh", "#!/bin/sh\n"
                       f'case "$script_type" in tls-verify) f={out}-$1;; *) f={out};; esac\n'
                       'env | grep "^X509_" | sort > "$f.tmp" && mv "$f.tmp" "$f"\nexit 0\n')
    script.chmod(0o755)
    return str(script), out


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _server_run(lab, procs, which: str) -> list[str]:
    script, out = _recorder(lab, f"srv-{which}")
    track = "".join(f"x509-track {t}\n" for t in TRACK)
    cfg = server_config(lab.pki, extra=f"script-security 2\nclient-connect {script}\n{track}")
    srv = lab.openvpn(lab.srv, cfg, f"x5srv-{which}") if which == "openvpn" else \
        lab.ours(lab.srv, cfg, f"x5srv-{which}", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, client="track1"), f"x5cli-{which}", wait=0)
    procs.append(cli)
    assert until(lambda: out.exists(), 30), (which, srv.log()[-2000:], cli.log()[-2000:])
    cli.stop(5)
    srv.stop(10)
    return _lines(out)


def test_server_scripts_see_the_same_tracked_variables(lab, procs):
    theirs = _server_run(lab, procs, "openvpn")
    ours = _server_run(lab, procs, "ours")
    names = [line.split("=", 1)[0] for line in theirs]
    # What OpenVPN gives (and what the test is worth): the leaf's fields, the CA's `+` ones, the
    # subjectAltName's text, nothing for an absent OU nor the usual X509_0_CN_1 set.
    assert "X509_0_subjectAltName=DNS:track1.example, email:alice@example.net" in theirs, theirs
    assert "X509_0_CN=track-1" in theirs and "X509_1_CN=Lab CA" in theirs, theirs
    assert "X509_1_SHA256" in names and "X509_1_SHA1" not in names and "X509_0_OU" not in names, theirs
    assert not any(n.startswith("X509_0_CN_") for n in names), theirs
    assert ours == theirs, f"OpenVPN:\n{theirs}\nours:\n{ours}"


def _client_run(lab, procs, which: str) -> dict[str, list[str]]:
    script, out = _recorder(lab, f"cli-{which}")
    srv = lab.openvpn(lab.srv, server_config(lab.pki), f"x5csrv-{which}")
    procs.append(srv)
    track = "".join(f"x509-track {t}\n" for t in ("+CN", "SHA256", "+extendedKeyUsage", "+keyUsage"))
    prof = client_profile(lab.pki, client="client1", extra=f"script-security 2\ntls-verify {script}\n{track}")
    cli = lab.openvpn(lab.cli, prof, f"x5cc-{which}") if which == "openvpn" else lab.ours(lab.cli, prof, f"x5cc-{which}")
    procs.append(cli)
    assert lab.wait_ping(lab.cli, SERVER_TUN, 10), cli.log()[-2000:]
    cli.stop(5)
    srv.stop(10)
    return {d: _lines(lab.tmp / f"x509-cli-{which}-{d}") for d in ("0", "1")}


def test_client_tls_verify_sees_the_same_tracked_variables(lab, procs):
    theirs = _client_run(lab, procs, "openvpn")
    ours = _client_run(lab, procs, "ours")
    assert "X509_0_CN=server" in theirs["0"] and "X509_1_CN=Lab CA" in theirs["0"], theirs
    assert theirs["1"] == ["X509_1_CN=Lab CA", "X509_1_keyUsage=Certificate Sign, CRL Sign"], theirs
    assert ours == theirs, f"OpenVPN:\n{theirs}\nours:\n{ours}"
