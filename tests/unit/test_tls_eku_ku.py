"""remote-cert-eku / remote-cert-ku are enforced on the peer certificate during the TLS handshake,
as OpenVPN's ssl_verify_openssl.c does (EKU by name or OID; KU as hex bit sets, OpenVPN numbering)."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context


def _pem(c) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _key(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    ca = issue("CA", None, None)
    server = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)   # keyUsage digitalSignature+keyAgreement = 0x88
    client = issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return ca, server, client


def _handshake(pki, **client_checks) -> None:
    """Run a client/server TLS handshake in memory; the client applies `client_checks`."""
    ca, server, client = pki
    s_set = TlsSettings(ca=_pem(ca[0]), cert=_pem(server[0]), key=_key(server[1]), is_server=True)
    c_set = TlsSettings(ca=_pem(ca[0]), cert=_pem(client[0]), key=_key(client[1]), is_server=False, **client_checks)
    s, c = TlsEndpoint(build_context(s_set), s_set), TlsEndpoint(build_context(c_set), c_set)
    to_server, _ = c.pump()
    for _ in range(10):
        s.feed(to_server)
        to_client, _ = s.pump()
        c.feed(to_client)
        to_server, _ = c.pump()         # raises when the client refuses the server's certificate
        if c.handshake_done and s.handshake_done and not to_server:
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("eku", ["TLS Web Server Authentication", "1.3.6.1.5.5.7.3.1"])
def test_eku_by_name_or_oid_accepts_the_right_certificate(pki, eku):
    _handshake(pki, remote_cert_eku=eku)


@pytest.mark.parametrize("eku", ["TLS Web Client Authentication", "1.3.6.1.5.5.7.3.2", "Code Signing"])
def test_eku_refuses_a_certificate_without_it(pki, eku):
    with pytest.raises(RemoteProtocolError, match="remote-cert-eku"):
        _handshake(pki, remote_cert_eku=eku)


@pytest.mark.parametrize("ku", [[], [0x80], [0x88], [0x08], [0xA0, 0x88]])
def test_ku_accepts_when_one_value_is_covered(pki, ku):
    _handshake(pki, remote_cert_ku=ku)


@pytest.mark.parametrize("ku", [[0xA0], [0x20], [0x04, 0x02]])
def test_ku_refuses_when_no_value_is_covered(pki, ku):
    with pytest.raises(RemoteProtocolError, match="remote-cert-ku"):
        _handshake(pki, remote_cert_ku=ku)
