"""crl-verify with a CRL whose issuer is the CA's name written another way (upper case, two
blanks, PrintableString where the CA says UTF8String `CN=Lab CA`), against Debian's OpenVPN 2.6 in
namespaces: its server refuses the revoked client (OpenSSL compares names canonically), and so
must ours, while an unrevoked client connects. Ours let the revoked client in before. A CRL of
another CA is refused at start, with crl-verify's line."""
from __future__ import annotations

import subprocess

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from appliance.certs import issue
from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.pki import ca_pair, client_serial
from lab.tools import OPENVPN, OUR_BIN

CLIENTS = ["client1", "client2"]
# The lab CA is `CN=Lab CA` in UTF8String; to OpenSSL this is the same name.
SAME_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LAB  ca", _ASN1Type.PrintableString)])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("crlnames")) as lab:
        yield lab


@pytest.fixture(scope="module")
def ns2(lab):
    """A second client namespace (198.18.6.2), for the revoked client."""
    return lab.add_client_ns(5)


def _ca(lab):
    return ca_pair(lab.pki)


def _serial(lab, name: str) -> int:
    return client_serial(lab.pki, name)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_crl_naming_the_ca_another_way_refuses_the_revoked_client(lab, ns2, procs, server):
    ca = _ca(lab)
    assert ca[0].subject != SAME_NAME
    crl = lab.tmp / f"crl-{server}.pem"
    crl.write_bytes(make_crl(*ca, [_serial(lab, "client2")], issuer=SAME_NAME))
    cfg = server_config(lab.pki, extra=f"crl-verify {crl}\n")
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{len(lab.procs)}.conf", cfg))],
                        "ovcrl")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"crlsrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.6.1", 1194, "udp")]),
                     f"crlc2-{server}-{len(lab.procs)}", wait=0)
    procs.append(c2)
    want = r"certificate revoked" if server == "openvpn" else rf"serial {_serial(lab, 'client2')} \(CN=client2\) is revoked"
    assert srv.wait_for(want, 20), srv.log()[-2000:]
    assert not c2.wait_for("Initialization Sequence Completed", 3), "the revoked client got in"
    c2.stop(8)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"crlc1-{server}-{len(lab.procs)}")
    procs.append(c1)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2


def test_a_crl_of_another_ca_refuses_to_start(lab):
    """OpenVPN starts with it and checks nothing with it; `vpn-appliance check` says why, at the line."""
    other = issue("Other CA", None, None)
    crl = lab.tmp / "crl-other.pem"
    crl.write_bytes(make_crl(*other, [_serial(lab, "client2")]))
    cfg = lab.write("crl-other.conf", server_config(lab.pki, extra=f"crl-verify {crl}\n"))
    r = subprocess.run([OUR_BIN, "check", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout
    assert "crl-verify" in r.stderr and "names no certificate in `ca`" in r.stderr, r.stderr
