"""TlsEndpoint (TLS over memory BIOs) as the control channel uses it: the reads it skips to save
handshake CPU (no second BIO read after a short one, no application-data read without new input)
must never lose or delay a record."""
from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.bench import _cert, _pems
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
