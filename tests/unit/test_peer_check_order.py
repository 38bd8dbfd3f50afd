"""With peer-fingerprint (no CA), OpenSSL takes any certificate chain and our checks decide. A
peer whose certificate is not a configured fingerprint is refused before the CRL is consulted:
checking a made-up chain against a large CRL (a signature check over the whole list per
made-up issuer key) must not be something any stranger can make the server do per handshake."""
from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.bench import _cert
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsSettings, _check_peer


class _CountingCrl:
    def __init__(self) -> None:
        self.calls = 0

    def revoked(self, cert, chain=None, refresh=True):
        self.calls += 1
        return None


def _fp(cert) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def test_a_stranger_is_refused_without_touching_the_crl_and_a_known_peer_is_checked():
    ca = _cert("some CA")
    known, _ = _cert("known", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger, _ = _cert("stranger", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    crl = _CountingCrl()
    s = TlsSettings(None, None, None, True, peer_fingerprints=[_fp(known)], crl=crl)
    with pytest.raises(RemoteProtocolError, match="fingerprint"):
        _check_peer(s, stranger, [ca[0]] * 50)
    assert crl.calls == 0
    _check_peer(s, known, [ca[0]])
    assert crl.calls == 1
