"""TlsEndpoint against an established peer that writes whatever TLS 1.3 records it likes.

The endpoint calls OpenSSL through the bindings (SSL_read, SSL_write, BIO_read/BIO_write) and
turns its errors into RemoteProtocolError itself. A peer that finished the handshake -- an
authenticated client, or the server we connected to -- can encrypt any inner content type and
payload with its own traffic key: post-handshake messages (KeyUpdate, NewSessionTicket,
CertificateRequest, a second ClientHello), alerts, empty or oversized records, padding, raw bytes
in between, split anywhere. Whatever it sends may end its own endpoint with RemoteProtocolError,
and nothing else: no other exception, no OpenSSL error left on the thread's queue (where a later
call of another session could pick it up), and another established session goes on working.

The records are made here with the keys OpenSSL's keylog callback gives (RFC 8446 7.1-7.3, 5.2).
"""
from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL._util import lib as _lib

from appliance.bench import _cert, _pems
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context

_CA = _cert("hostile records CA")
_CA_PEM = _CA[0].public_bytes(serialization.Encoding.PEM)
_SERVER = _pems(_cert("server", _CA, ExtendedKeyUsageOID.SERVER_AUTH))
_CLIENT = _pems(_cert("client", _CA, ExtendedKeyUsageOID.CLIENT_AUTH))
_SUITE = "TLS_AES_128_GCM_SHA256"


def _label(secret: bytes, label: bytes, n: int) -> bytes:
    full = b"tls13 " + label
    return HKDFExpand(hashes.SHA256(), n, struct.pack("!HB", n, len(full)) + full + b"\0").derive(secret)


class _RecordWriter:
    """TLS 1.3 records under one direction's application traffic secret."""

    def __init__(self, secret: bytes) -> None:
        self._use(secret)

    def _use(self, secret: bytes) -> None:
        self.secret, self.seq = secret, 0
        self.aead, self.iv = AESGCM(_label(secret, b"key", 16)), _label(secret, b"iv", 12)

    def key_update(self) -> None:
        self._use(_label(self.secret, b"traffic upd", 32))

    def record(self, inner_type: int, payload: bytes, pad: int) -> bytes:
        plain = payload + bytes((inner_type,)) + bytes(pad)
        head = b"\x17\x03\x03" + struct.pack("!H", len(plain) + 16)
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return head + self.aead.encrypt(nonce, plain, head)


def _established() -> tuple[TlsEndpoint, TlsEndpoint, dict[str, bytes]]:
    kw = {"tls_version_min": "1.3", "tls_ciphersuites": _SUITE}
    s = TlsSettings(_CA_PEM, *_SERVER, True, remote_cert_tls="client", **kw)
    c = TlsSettings(_CA_PEM, *_CLIENT, False, remote_cert_tls="server", **kw)
    secrets: dict[str, bytes] = {}
    cctx = build_context(c)
    cctx.set_keylog_callback(lambda _conn, line: secrets.__setitem__(line.split()[0].decode(),
                                                                       bytes.fromhex(line.split()[2].decode())))
    client, server = TlsEndpoint(cctx, c), TlsEndpoint(build_context(s), s)
    wire, _ = client.pump()
    for _ in range(10):
        server.feed(wire)
        back, _ = server.pump()
        client.feed(back)
        wire, _ = client.pump()
        if client.handshake_done and server.handshake_done and not wire:
            break
    server.feed(wire)
    server.pump()
    assert client.handshake_done and server.handshake_done
    return client, server, secrets


_BYSTANDER = _established()


def _bystander_still_works() -> None:
    client, server, _ = _BYSTANDER
    server.feed(client.send_message(b"ping\0"))
    assert server.pump()[1] == [b"ping\0"]
    client.feed(server.send_message(b"pong\0"))
    assert client.pump()[1] == [b"pong\0"]


_HANDSHAKE_MESSAGES = st.one_of(
    st.tuples(st.sampled_from([0, 1, 2, 4, 5, 8, 11, 13, 15, 20, 24, 254]), st.binary(max_size=40))
    .map(lambda t: bytes((t[0],)) + len(t[1]).to_bytes(3, "big") + t[1]),
    st.sampled_from([b"\x18\x00\x00\x01\x01", b"\x18\x00\x00\x01\x00"]),     # KeyUpdate (requested or not)
    st.binary(max_size=64),
)
_RECORDS = st.one_of(
    st.tuples(st.sampled_from([0, 20, 21, 22, 23, 24, 255]), st.one_of(_HANDSHAKE_MESSAGES, st.binary(max_size=300)),
              st.integers(0, 40)),
    st.tuples(st.just(23), st.sampled_from([b"", b"x" * 16384, b"x" * 16385]), st.just(0)),
    st.tuples(st.just(-1), st.binary(max_size=80), st.just(0)),                # raw bytes between records
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_RECORDS, min_size=1, max_size=6), st.booleans(), st.sampled_from([0, 7, 100]))
def test_any_record_from_an_established_peer_ends_at_most_its_own_session(records, to_server, split):
    client, server, secrets = _established()
    target, writer = ((server, _RecordWriter(secrets["CLIENT_TRAFFIC_SECRET_0"])) if to_server
                      else (client, _RecordWriter(secrets["SERVER_TRAFFIC_SECRET_0"])))
    wire = b""
    for kind, payload, pad in records:
        if kind < 0:
            wire += payload
            continue
        wire += writer.record(kind, payload, pad)
        if kind == 22 and payload[:1] == b"\x18":
            writer.key_update()                 # as a peer that sent KeyUpdate goes on
    chunks = [wire[i:i + split] for i in range(0, len(wire), split)] if split else [wire]
    try:
        for chunk in chunks:
            target.feed(chunk)
            target.pump()
            assert _lib.ERR_peek_error() == 0
        target.send_message(b"reply\0")
    except RemoteProtocolError:
        pass
    assert _lib.ERR_peek_error() == 0, "an OpenSSL error was left on the queue"
    _bystander_still_works()


def test_a_key_update_is_followed_and_answered():
    """A KeyUpdate asking for ours: what the peer sends on its new key is read, and our answer
    goes out before our next message, which the peer reads on our new key."""
    client, server, secrets = _established()
    w = _RecordWriter(secrets["CLIENT_TRAFFIC_SECRET_0"])
    server.feed(w.record(22, b"\x18\x00\x00\x01\x01", 0))
    w.key_update()
    server.feed(w.record(23, b"after the update\0", 0))
    assert server.pump()[1] == [b"after the update\0"]
    client.feed(server.send_message(b"reply\0"))
    assert client.pump()[1] == [b"reply\0"]
    assert _lib.ERR_peek_error() == 0
