"""A crl-verify file whose CRL is signed with an algorithm nobody knows (its signature algorithm
OID one that neither OpenSSL nor cryptography has), against Debian's OpenVPN 2.6 in namespaces.

What OpenVPN 2.6 does: OpenSSL reads such a CRL (the algorithm is only an OID to it), the server
starts, and at each handshake of that CA's clients the CRL's signature check fails: "VERIFY
ERROR: ... CRL signature failure", the client refused. Ours must do the same; it raised
cryptography's UnsupportedAlgorithm out of its reading of the file instead (crl.py _tbs_digest)."""
from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.openvpn.crl import _der_element, make_crl
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.tools import OPENVPN


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("crlalg")) as lab:
        yield lab


def _unknown_algorithm(der: bytes) -> bytes:
    """The CRL with its signature algorithm, outer and inner, an OID of the same length whose
    last arc is 127: no algorithm OpenSSL or cryptography knows."""
    _, body, _ = _der_element(der, 0)
    _, tbs_body, _ = _der_element(der, body)
    _, _, version_end = _der_element(der, tbs_body)
    _, alg_body, alg_end = _der_element(der, version_end)
    _, _, oid_end = _der_element(der, alg_body)
    alg = der[version_end:alg_end]
    unknown = alg[:oid_end - 1 - version_end] + b"\x7f" + alg[oid_end - version_end:]
    assert der.count(alg) == 2
    return der.replace(alg, unknown)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_crl_of_an_unknown_signature_algorithm_starts_the_server_and_refuses_its_clients(lab, procs, server):
    d = lab.pki.dir
    ca = (x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()),
          serialization.load_pem_private_key((d / "ca.key").read_bytes(), None))
    der = x509.load_pem_x509_crl(make_crl(*ca, [123456789])).public_bytes(serialization.Encoding.DER)
    crl = lab.tmp / f"crl-alg-{server}.pem"
    body = base64.encodebytes(_unknown_algorithm(der))        # PEM: OpenVPN 2.6 reads no DER file
    crl.write_bytes(b"-----BEGIN X509 CRL-----\n" + body + b"-----END X509 CRL-----\n")
    cfg = server_config(lab.pki, extra=f"crl-verify {crl}\n")
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{len(lab.procs)}.conf", cfg))],
                        "ovcrlalg")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"crlalg-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"crlalgc1-{server}-{len(lab.procs)}",
                     wait=0)
    procs.append(c1)
    assert srv.wait_for(r"CRL signature failure", 20), "\n".join(l for l in srv.log().splitlines() if "VERIFY" in l or "CRL" in l)
    assert not c1.wait_for("Initialization Sequence Completed", 5), "a client got in past a CRL we cannot verify"
    c1.stop(8)
