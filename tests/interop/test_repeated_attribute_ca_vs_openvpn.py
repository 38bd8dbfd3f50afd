"""A CA named `O=LabA + O=LabA, CN=Dup CA` (one attribute twice in a relative name), against
Debian's OpenVPN 2.6 in namespaces: OpenSSL reads the name, OpenVPN verifies the CA's clients and
gives a client-connect script the CA's X509_1_O, X509_1_O_1 and tls_id_1. cryptography refuses
the name whole: ours raised out of the script environment (an internal error at each try, the
client never up). Now the same config gives the same variables (openvpn/dername.py)."""
from __future__ import annotations

import warnings

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import _write, with_raw_bytes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("duprdn")) as lab:
        pki = lab.pki
        rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabA"),
                                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabB")])
        cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Dup CA")])
        ca0, key = issue("unused", None, None, x509.Name([rdn, cn]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ca = with_raw_bytes(ca0, key, b"LabB", b"LabA")
            srv, cli = (issue(n, (ca0, key), eku) for n, eku in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                                                                  ("dup", ExtendedKeyUsageOID.CLIENT_AUTH)))
            srv, cli = ((with_raw_bytes(c, key, b"LabB", b"LabA"), k) for c, k in (srv, cli))
        from cryptography.hazmat.primitives import serialization
        pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))     # the lab's CA files, replaced
        pki.server_cert, pki.server_key = _write(pki.dir / "dupserver", *srv)
        pki.clients["dup"] = _write(pki.dir / "dup", *cli)
        yield lab


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_ca_with_an_attribute_twice_gives_its_scripts_openssls_reading(lab, procs, server):
    seen = lab.tmp / f"connect-{server}.log"
    script = lab.write(f"connect-{server}.sh",
                       f"#!/bin/sh\nprintf '%s\\n' \"$X509_1_O\" \"$X509_1_O_1\" \"$tls_id_1\" >> {seen}\n")
    script.chmod(0o755)
    cfg = server_config(lab.pki, extra=f"script-security 2\nclient-connect {script}\n")
    procs.append(lab.udp_server(server, cfg, f"duprsrv-{len(lab.procs)}"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="dup"), f"duprcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), procs[0].log()[-2000:]
    assert seen.read_text().splitlines() == ["LabA", "LabA", "O=LabA + O=LabA, CN=Dup CA"]
