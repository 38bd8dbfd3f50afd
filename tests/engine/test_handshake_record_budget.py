"""TLS records are charged to the control budget in every phase (the handshake too), counted in
one pass that stops at the first record over it.

A handshake message may be cut into 1-byte TLS records and OpenSSL takes any number of them.
Handshake records were not charged (only those after it), so a client with no certificate (the
tls-crypt key, or nothing under plain protection) sent a ClientHello announced as 120 KB in
120,000 records of one byte: ~0.25 s of the server's CPU for one session in 13 TCP control
packets, counting and reading records a certificate had never vouched for. They are charged as
they come in now, before OpenSSL sees them; the count stops one past what the budget has left.
"""
from __future__ import annotations

import random

import pytest

from appliance.openvpn.control import CONTROL_BURST
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.opcodes import Op
from appliance.openvpn.tls import TlsEndpoint, _ffi, _lib
from tests.engine.test_control_budget import _closed_reason
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture


def _one_byte_hello(announced: int) -> bytes:
    """A ClientHello announced as `announced` bytes, cut into 1-byte handshake records."""
    msg = bytes((1,)) + announced.to_bytes(3, "big") + bytes(announced)
    return b"".join(b"\x16\x03\x01\x00\x01" + msg[i:i + 1] for i in range(len(msg)))


def _after_resets(pki, proto):  # noqa: F811
    """A client and server past the reset exchange, the client's real ClientHello withdrawn."""
    c, s, _ = make_pair(pki, proto=proto)
    for p in c.take_outgoing():
        s.receive(p, 0.0)
    for p in s.take_outgoing():
        c.receive(p, 0.0)
    ks = c.keys[0]
    ks.reliable.queue.clear()
    ks.reliable.inflight.clear()
    ks.reliable.next_send_id = 1
    c.take_outgoing()
    return c, s


@pytest.mark.parametrize("proto,chunk", [("tcp", 60_000), ("udp", 1_200)])
def test_a_hello_in_one_byte_records_ends_the_session_at_the_budget(pki, proto, chunk):  # noqa: F811
    c, s = _after_resets(pki, proto)
    assert s.keys[0].tls is not None and not s.keys[0].tls.handshake_done
    blob = _one_byte_hello(120_000)
    ks = c.keys[0]
    fed = 0
    for i in range(0, len(blob), chunk):
        ks.reliable.enqueue(Op.CONTROL_V1, blob[i:i + chunk])
        c._flush(0.0)
        for p in c.take_outgoing():
            s.receive(p, 0.0)
        s.take_outgoing()
        ks.reliable.inflight.clear()
        fed += chunk
        if s.closed:
            break
    assert s.closed and "control channel flood" in _closed_reason(s), _closed_reason(s)
    assert fed // 6 <= CONTROL_BURST + chunk // 6, f"{fed // 6} records sent before the session ended"


def _records(rng: random.Random, n: int) -> tuple[bytes, int]:
    out = b"".join(bytes((23, 3, 3)) + (k := rng.choice((0, 1, 4, 17, 300))).to_bytes(2, "big") + rng.randbytes(k)
                   for _ in range(n))
    return out, n


def _endpoint() -> TlsEndpoint:
    """An endpoint for feed() alone (no handshake is run)."""
    from OpenSSL import SSL
    t = TlsEndpoint.__new__(TlsEndpoint)
    t.conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    t._into = t.conn._into_ssl          # noqa: SLF001
    t._fed, t._rec_head, t._rec_skip = False, b"", 0
    return t


@pytest.mark.parametrize("seed", range(5))
def test_records_cut_anywhere_over_feeds_are_counted_once_each(seed):
    rng = random.Random(seed)
    stream, n = _records(rng, 400)
    t = _endpoint()
    counted, i = 0, 0
    while i < len(stream):
        step = rng.choice((1, 2, 3, 4, 5, 6, 7, 50, 1000))
        counted += t.feed(stream[i:i + step])
        i += step
    assert counted == n


def _given_to_openssl(t: TlsEndpoint) -> int:
    return _lib.BIO_get_mem_data(t._into, _ffi.new("char **"))         # noqa: SLF001


def test_the_count_stops_one_past_the_room_and_openssl_is_given_nothing():
    stream, n = _records(random.Random(9), 2400)
    t = _endpoint()
    assert t.feed(stream, room=10) == 11
    assert _given_to_openssl(t) == 0
    t = _endpoint()
    assert t.feed(stream, room=n) == n
    assert _given_to_openssl(t) == len(stream)


def _sslv2_hello() -> bytes:
    """An SSLv2-style ClientHello (2-byte header, high bit set) offering TLS 1.2: OpenSSL 3.x reads
    one as a server's first record; its bytes 3-4 (the version, 0x0303) read as a TLS header's
    length."""
    specs, challenge = bytes.fromhex("00009d00009c00c03000c02f0000ff"), bytes(32)
    msg = (bytes((1, 3, 3)) + len(specs).to_bytes(2, "big") + bytes(2) + len(challenge).to_bytes(2, "big")
           + specs + challenge)
    return bytes((0x80 | len(msg) >> 8, len(msg) & 0xFF)) + msg


def test_an_sslv2_style_header_is_refused_not_counted_as_a_5_byte_one():
    """After an SSLv2-style hello, 1-byte handshake records placed where the count stepped over
    them (it read 776 bytes as one record, then jumped 64 KB at a time on lengths the peer wrote
    into the records' bodies): ~9,000 records charged as one, which OpenSSL 3.0 read (tls-cipher
    @SECLEVEL=0). A header OpenSSL would not frame as a TLS record is refused before any count."""
    stream = _sslv2_hello() + _one_byte_hello(2_000)
    t = _endpoint()
    try:
        counted = t.feed(stream, room=CONTROL_BURST)
    except RemoteProtocolError as e:
        assert "no TLS record" in str(e)
        assert _given_to_openssl(t) == 0
    else:
        raise AssertionError(f"{counted} record(s) counted for an SSLv2 hello and {len(stream) // 6} records")


def test_a_header_cut_after_its_type_byte_is_checked_too():
    t = _endpoint()
    assert t.feed(b"\x16\x03") == 1
    t = _endpoint()
    with pytest.raises(RemoteProtocolError):
        t.feed(b"\x80\x3a")


def test_an_sslv2_hello_ends_the_session(pki):  # noqa: F811
    c, s = _after_resets(pki, "tcp")
    ks = c.keys[0]
    ks.reliable.enqueue(Op.CONTROL_V1, _sslv2_hello() + _one_byte_hello(2_000)[:50_000])
    c._flush(0.0)
    for p in c.take_outgoing():
        s.receive(p, 0.0)
    assert s.closed and "no TLS record" in _closed_reason(s), _closed_reason(s)
