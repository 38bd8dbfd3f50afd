"""TLS records that carry no application data, sent in a flood, cost the control budget too.

A TLS 1.3 KeyUpdate record holds no application data: OpenSSL reads it (a key derivation, ~25 us
measured with OpenSSL 4.0, the one cryptography brings), answers a requested one with a KeyUpdate
of its own and takes any number in a row. The control budget (control.py CONTROL_BURST) counted
the messages TLS handed up, so ~45 KeyUpdates a UDP control packet (~2400 a TCP one) cost the
peer nothing: an authenticated client kept the server's core busy for everybody. Each record the
peer sends once TLS is up is now charged before OpenSSL reads it.

The hostile client's KeyUpdates are made here from its traffic secret (the TLS key log) with
RFC 8446's key schedule, since no binding calls SSL_key_update.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from appliance.openvpn import events as ev
from appliance.openvpn.control import CONTROL_BURST
from appliance.openvpn.tls import TlsEndpoint, build_context
from tests.engine.test_control_budget import _closed_reason, _send_raw
from tests.engine.test_memory_link import Link, make_pair, payloads, pki, up  # noqa: F401 - pki: the fixture

KEY_UPDATE = bytes((24, 0, 0, 1, 0))     # handshake type key_update, length 1, update_not_requested
PER_PACKET = 45                          # 27-byte records in one ~1.2 KB control packet


def _expand_label(secret: bytes, label: bytes, length: int, hash_alg) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\0"
    return HKDFExpand(hash_alg, length, info).derive(secret)


class KeyUpdater:
    """The client's TLS 1.3 send side taken over: records sealed as its OpenSSL would seal them."""

    def __init__(self, secret: bytes, seq: int, suite: str) -> None:
        self.hash = hashes.SHA384() if suite.endswith("SHA384") else hashes.SHA256()
        self.aead, self.key_len = ((ChaCha20Poly1305, 32) if "CHACHA20" in suite
                                   else (AESGCM, 32 if "AES_256" in suite else 16))
        self.secret, self.seq = secret, seq

    def record(self) -> bytes:
        """One KeyUpdate record under the current key; the keys move on after it, as the peer's do."""
        key = _expand_label(self.secret, b"key", self.key_len, self.hash)
        iv = _expand_label(self.secret, b"iv", 12, self.hash)
        nonce = (int.from_bytes(iv, "big") ^ self.seq).to_bytes(12, "big")
        inner = KEY_UPDATE + b"\x16"                                   # content, then its type
        head = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
        rec = head + self.aead(key).encrypt(nonce, inner, head)
        self.secret = _expand_label(self.secret, b"traffic upd", self.hash.digest_size, self.hash)
        self.seq = 0
        return rec


def _hostile_pair(pki, monkeypatch, proto):  # noqa: F811
    """A connected pair whose client's TLS 1.3 traffic secret and record count are known."""
    written: dict[int, int] = {}
    real_send = TlsEndpoint.send_message

    def counting_send(self, data):
        written[id(self)] = written.get(id(self), 0) + max(1, -(-len(data) // 16384))
        return real_send(self, data)

    monkeypatch.setattr(TlsEndpoint, "send_message", counting_send)
    secrets: list[bytes] = []
    c, s, _ = make_pair(pki, proto=proto, reneg_sec=0, ping=0)
    c.tls_context = build_context(c.cfg.tls)        # its own: sessions share context_for's
    c.tls_context.set_keylog_callback(lambda conn, line: secrets.append(line))
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    tls = c.keys[0].tls
    secret = next(bytes.fromhex(ln.split()[2].decode()) for ln in secrets if ln.startswith(b"CLIENT_TRAFFIC_SECRET_0"))
    return c, s, link, KeyUpdater(secret, written.get(id(tls), 0), tls.conn.get_cipher_name())


def test_a_client_sending_keyupdates_in_a_flood_ends_its_session(pki, monkeypatch):  # noqa: F811
    c, s, link, ku = _hostile_pair(pki, monkeypatch, "udp")
    packets = 2 * CONTROL_BURST // PER_PACKET                          # twice the budget at once
    _send_raw(link, c, s, [b"".join(ku.record() for _ in range(PER_PACKET)) for _ in range(packets)])
    assert s.closed and "control channel flood" in _closed_reason(s)


def test_a_few_keyupdates_are_read_and_the_session_goes_on(pki, monkeypatch):  # noqa: F811
    """The made-up records are good ones (so the test above fails for the budget, not for them):
    under the budget the server reads them and the tunnel and control channel carry on."""
    c, s, link, ku = _hostile_pair(pki, monkeypatch, "tcp")
    _send_raw(link, c, s, [b"".join(ku.record() for _ in range(PER_PACKET)) for _ in range(4)])
    assert not s.closed, _closed_reason(s)
    data = payloads(3)
    assert link.send(s, c, data) == data
    assert not any(isinstance(e, ev.SessionClosed) for e in s.events)
