"""A username that is not UTF-8, under username-as-common-name, against Debian's OpenVPN 2.6 in
namespaces: Debian's client sends `caf\\xe9` (Latin-1) from its auth-user-pass file; OpenVPN 2.6's
server and ours (the same config, the same client-config-dir) pick the ccd file named by those
bytes, write them to the status file, and `kill` with those bytes over the management interface
finds the client. Ours decoded the name with U+FFFD: it read the file `caf\\xef\\xbf\\xbd` (the one
`caf\\xe8` would share), wrote that to the status file, and `kill caf\\xe9` found nobody.

A certificate's CN in a BMPString with a C1 character: both servers name the client by its UTF-8
(ccd file, status file).

OpenVPN's server checks the password with a script, ours with its password file (a
Latin-1 name on its line): the verdict is the same, the identity questions are the server's.
"""
from __future__ import annotations

import os
import re
import socket
import time

import pytest

from appliance.openvpn.passdb import hash_password
from lab.configs import client_profile, server_config
from lab.netns import Lab

NAME = b"caf\xe9"
REPLACED = b"caf\xef\xbf\xbd"        # what NAME was read as, and what caf\xe8 was read as too
OWN_IP, REPLACED_IP = "198.19.0.71", "198.19.0.72"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("userbytes")) as lab:
        yield lab


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


def _mgmt_raw(path: str, line: bytes, want: bytes, limit: float = 10.0) -> bytes:
    """Send one command line as bytes; the reply's bytes up to the line holding `want`."""
    s = socket.socket(socket.AF_UNIX)
    try:
        end = time.monotonic() + limit
        while True:
            try:
                s.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        s.settimeout(0.2)
        s.sendall(line + b"\n")
        out = b""
        while time.monotonic() < end and want not in out:
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def _status_names(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    return [line.split(b",")[1] for line in data.split(b"\n") if line.startswith(b"CLIENT_LIST,")]


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_latin1_username_picks_its_ccd_file_status_name_and_kill(lab, procs, server):
    ccd = lab.tmp / f"ccd-{server}"
    ccd.mkdir()
    with open(os.path.join(os.fsencode(ccd), NAME), "wb") as f:
        f.write(f"ifconfig-push {OWN_IP} 255.255.255.0\n".encode())
    with open(os.path.join(os.fsencode(ccd), REPLACED), "wb") as f:
        f.write(f"ifconfig-push {REPLACED_IP} 255.255.255.0\n".encode())
    status = str(lab.tmp / f"status-{server}.txt")
    sock = str(lab.tmp / f"m-{server}.sock")
    extra = (f"username-as-common-name\nclient-config-dir {ccd}\nstatus {status} 1\nstatus-version 2\n"
             f"management {sock} unix\n")
    if server == "openvpn":
        script = lab.write("verify.sh", '#!/bin/sh\n[ "$(sed -n 2p "$1")" = secret ]\n')
        script.chmod(0o755)
        extra += f"script-security 2\nauth-user-pass-verify {script} via-file\n"
    else:
        passdb = lab.tmp / "passdb"
        passdb.write_bytes(NAME + b":" + hash_password("secret").encode() + b"\n")
        extra += f"auth-user-pass-verify {passdb} passdb\n"
    cfg = server_config(lab.pki, extra=extra)
    if server == "openvpn":
        srv = lab.openvpn(lab.srv, cfg, f"ubsrv-{len(lab.procs)}")
    else:
        srv = lab.ours(lab.srv, cfg, f"ubsrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    up = lab.tmp / f"up-{server}"
    up.write_bytes(NAME + b"\nsecret\n")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {up}\n"),
                      f"ubcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), srv.log()[-2000:]
    assert _tun_ip(lab.cli) == OWN_IP, f"{server} did not read the ccd file named by the username's bytes"
    end = time.monotonic() + 15
    while NAME not in _status_names(status) and time.monotonic() < end:
        time.sleep(0.2)
    assert _status_names(status) == [NAME], f"{server}'s status file does not name the client by its bytes"
    reply = _mgmt_raw(sock, b"kill " + NAME, b"SUCCESS")
    assert b"SUCCESS: common name '" + NAME + b"' found, 1 client(s) killed" in reply, reply
    assert cli.wait_for("SIGUSR1|SIGTERM|restart", 15), cli.log()[-1500:]



def _bmp_client(lab, key: str, cn: str) -> None:
    """A client certificate whose CN is a BMPString (UTF-16): OpenSSL gives OpenVPN its UTF-8."""
    if key in lab.pki.clients:
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from appliance.certs import issue
    from lab.pki import _write
    ca = x509.load_pem_x509_certificate(lab.pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((lab.pki.dir / "ca.key").read_bytes(), None)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn, _type=_ASN1Type.BMPString)])
    lab.pki.clients[key] = _write(lab.pki.dir / key, *issue(key, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH, name))


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_bmpstring_common_name_picks_its_utf8_ccd_file_and_status_name(lab, procs, server):
    """`Zoë\\u0085` in a BMPString: OpenVPN's name is its UTF-8 (U+0085, a C1 control, is kept:
    CC_PRINT looks at bytes, and C2 85 are not below 0x20), the ccd file of those bytes, the
    same bytes in the status file."""
    cn = "Zo\u00eb\u0085"
    want = cn.encode()
    _bmp_client(lab, "bmp", cn)
    ccd = lab.tmp / f"ccd-bmp-{server}"
    ccd.mkdir()
    with open(os.path.join(os.fsencode(ccd), want), "wb") as f:
        f.write(f"ifconfig-push {OWN_IP} 255.255.255.0\n".encode())
    status = str(lab.tmp / f"status-bmp-{server}.txt")
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\nstatus {status} 1\nstatus-version 2\n")
    if server == "openvpn":
        srv = lab.openvpn(lab.srv, cfg, f"bmpsrv-{len(lab.procs)}")
    else:
        srv = lab.ours(lab.srv, cfg, f"bmpsrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="bmp"), f"bmpcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), srv.log()[-2000:]
    assert _tun_ip(lab.cli) == OWN_IP, f"{server} did not read the ccd file named by the CN's UTF-8"
    end = time.monotonic() + 15
    while want not in _status_names(status) and time.monotonic() < end:
        time.sleep(0.2)
    assert _status_names(status) == [want]
