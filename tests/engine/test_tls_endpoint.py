"""TlsEndpoint (TLS over memory BIOs) as the control channel uses it: the reads it skips to save
handshake CPU (no second BIO read after a short one, no application-data read without new input)
must never lose or delay a record."""
from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

import pytest

from appliance.bench import _cert, _pems
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context
from cryptography.hazmat.primitives import serialization


def _pair():
    ca = _cert("tls CA")
    cap = ca[0].public_bytes(serialization.Encoding.PEM)
    s = TlsSettings(cap, *_pems(_cert("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)), True, remote_cert_tls="client")
    c = TlsSettings(cap, *_pems(_cert("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)), False, remote_cert_tls="server")
    return TlsEndpoint(build_context(c), c), TlsEndpoint(build_context(s), s)


def _handshake(c, s):
    got = {"c": [], "s": []}
    out_c, m = c.pump()
    got["c"] += m
    for _ in range(10):
        s.feed(out_c)
        out_s, m = s.pump()
        got["s"] += m
        c.feed(out_s)
        out_c, m = c.pump()
        got["c"] += m
        if c.handshake_done and s.handshake_done and not out_c:
            break
    s.feed(out_c)
    got["s"] += s.pump()[1]
    return got


def test_messages_in_one_batch_all_arrive_and_an_idle_pump_reads_nothing():
    c, s = _pair()
    got = _handshake(c, s)
    assert c.handshake_done and s.handshake_done and got == {"c": [], "s": []}
    wire = b"".join(c.send_message(b"msg %d\0" % i) for i in range(5))
    s.feed(wire)
    out, msgs = s.pump()
    assert msgs == [b"msg %d\0" % i for i in range(5)]
    assert s.pump() == (b"", [])                       # nothing new: nothing read, nothing lost
    s.feed(c.send_message(b"later\0"))
    assert s.pump()[1] == [b"later\0"]


def test_output_larger_than_one_bio_read_is_drained_whole():
    c, s = _pair()
    _handshake(c, s)
    big = bytes(range(256)) * 1024                     # 256 KiB: several TLS records, > one 64 KiB read
    wire = c.send_message(big)
    assert len(wire) > 65536
    s.feed(wire)
    assert b"".join(s.pump()[1]) == big


def test_garbage_from_the_peer_is_a_protocol_error_with_openssls_reason():
    """The pump calls OpenSSL through the bindings; a failure still carries OpenSSL's reason
    (through pyOpenSSL's error queue reading), and the endpoint raises nothing else."""
    _c, s = _pair()
    # Framed as TLS records (feed refuses bytes that are not: test_handshake_record_budget.py)
    s.feed(b"\x16\x03\x01\x00\x05hello" + b"\x17\x03\x03\x00\x3b" + bytes(59))
    with pytest.raises(RemoteProtocolError, match=r"TLS error: .*SSL routines.*unexpected message"):
        s.pump()


def test_peer_closing_the_tls_session_is_reported_as_such():
    c, s = _pair()
    _handshake(c, s)
    c.conn.shutdown()
    s.feed(c.drain())
    with pytest.raises(RemoteProtocolError, match="peer closed the TLS session"):
        s.pump()


def test_a_message_written_with_partial_writes_and_from_a_memoryview_arrives_whole():
    c, s = _pair()
    _handshake(c, s)
    big = memoryview(bytes(range(256)) * 200)          # 51 KiB: several records, partial writes
    s.feed(c.send_message(big))
    assert b"".join(s.pump()[1]) == bytes(big)


def test_the_verified_chain_is_there_when_first_asked_for_after_the_handshake():
    """Without crl-verify the chain is not taken at the handshake; a reload that adds a CRL asks
    for it later (peer_chain), and gets the CA that signed the peer, from our store."""
    c, s = _pair()
    _handshake(c, s)
    assert s._chain_x509 is None                       # not taken at the handshake
    chain = s.peer_chain
    assert [x.subject.rfc4514_string() for x in chain] == ["CN=tls CA"]
    assert c.peer_chain[0].subject == chain[0].subject
