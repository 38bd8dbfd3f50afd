"""Our certificate's chain is built once with the TLS context (tls.own_chain), not by OpenSSL at
every handshake: the peer must receive exactly the certificates OpenSSL's own per-handshake chain
building sent (ours, then the store's certificates up to and including the root), and nothing
changes when our certificate does not verify against our `ca`."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from appliance.bench import _cert, _pems
from appliance.openvpn import tls
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context
from tests.engine.test_tls_endpoint import _handshake

PEM = serialization.Encoding.PEM


def _sub_ca(name: str, issuer):
    """An intermediate CA signed by `issuer` ((cert, key) as appliance.bench makes them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(issuer[1], hashes.SHA256()))
    return cert, key


def _sent_chain(client: TlsSettings, server: TlsSettings, change_store=None) -> list[bytes]:
    """The certificates the server received from the client in one in-memory handshake (DER).
    `change_store(store)` is applied to the client context's CA store after it was built."""
    ctx = build_context(client)
    if change_store:
        change_store(ctx.get_cert_store())
    c, s = TlsEndpoint(ctx, client), TlsEndpoint(build_context(server), server)
    _handshake(c, s)
    assert c.handshake_done and s.handshake_done
    # A server's SSL_get_peer_cert_chain leaves out the peer's own certificate: it comes first.
    sent = [s.conn.get_peer_certificate(), *(s.conn.get_peer_cert_chain() or [])]
    return [crypto.dump_certificate(crypto.FILETYPE_ASN1, x) for x in sent]


def _der(*certs) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def _settings(with_sub_ca: bool):
    root = _cert("root CA")
    sub = _sub_ca("sub CA", root) if with_sub_ca else root
    srv = _cert("server", root, ExtendedKeyUsageOID.SERVER_AUTH)
    cli = _cert("client", sub, ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_pem = root[0].public_bytes(PEM) + (sub[0].public_bytes(PEM) if with_sub_ca else b"")
    client = TlsSettings(ca_pem, *_pems(cli), False, remote_cert_tls="server")
    server = TlsSettings(ca_pem, *_pems(srv), True, remote_cert_tls="client")
    return client, server, root[0], sub[0], cli[0]


@pytest.mark.parametrize("with_sub_ca", [False, True])
def test_the_peer_gets_the_chain_openssl_built_per_handshake(with_sub_ca, monkeypatch):
    client, server, root, sub, leaf = _settings(with_sub_ca)
    want = _der(leaf, sub, root) if with_sub_ca else _der(leaf, root)
    assert _sent_chain(client, server) == want
    monkeypatch.setattr(tls, "own_chain", lambda store, leaf: [])     # OpenSSL's own chain building
    assert _sent_chain(client, server) == want


def test_no_chain_is_built_at_the_handshake(monkeypatch):
    """The chain is the one built with the context: a store that would now build another one
    (any CA in it taken as an anchor) does not change what is sent, so OpenSSL did not build
    it again for this handshake."""
    client, server, root, sub, leaf = _settings(True)
    partial = lambda store: store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)  # noqa: E731
    assert _sent_chain(client, server, partial) == _der(leaf, sub, root)
    monkeypatch.setattr(tls, "own_chain", lambda store, leaf: [])   # OpenSSL's per-handshake building
    assert _sent_chain(client, server, partial) == _der(leaf, sub)  # stops at the sub-CA now


def test_the_chain_is_built_with_the_context():
    client, _server, root, sub, leaf = _settings(True)
    store = crypto.X509Store()
    for c in (root, sub):
        store.add_cert(crypto.X509.from_cryptography(c))
    assert [crypto.dump_certificate(crypto.FILETYPE_ASN1, x) for x in tls.own_chain(store, leaf)] == _der(sub, root)


def test_a_certificate_our_ca_did_not_issue_gets_no_built_chain():
    client, server, root, _sub, _leaf = _settings(False)
    other = _cert("another CA")
    mine = _cert("client", other, ExtendedKeyUsageOID.CLIENT_AUTH)
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(root))
    assert tls.own_chain(store, mine[0]) == []
    # The server trusts that other CA; ours sends its certificate alone, as OpenSSL did.
    client = TlsSettings(client.ca, *_pems(mine), False, remote_cert_tls="server")
    server = TlsSettings(server.ca + other[0].public_bytes(PEM), server.cert, server.key, True, remote_cert_tls="client")
    assert _sent_chain(client, server) == _der(mine[0])
