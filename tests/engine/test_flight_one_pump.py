"""The client's read of the server's TLS flight, the step between that flight and our Finished
(README issue 11, lab/flight_cpu.py): a flight cut over several packets of one batch enters
OpenSSL once, with all of it fed, not once per packet; a bad flight read so still ends the
session as a TLS error; and a client does not work out the verified chain's hashes, which only
a server locks (the server still does)."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import tls
from tests.engine.test_batch_acks import _to_the_server_flight
from tests.engine.test_memory_link import connected, pki  # noqa: F401 - pki is a fixture


class _CountingLib:
    """tls.py's bindings with SSL_do_handshake counted per connection."""

    def __init__(self, lib) -> None:
        self._lib = lib
        self.calls: dict = {}

    def SSL_do_handshake(self, ssl):  # noqa: N802 - OpenSSL's name
        self.calls[ssl] = self.calls.get(ssl, 0) + 1
        return self._lib.SSL_do_handshake(ssl)

    def __getattr__(self, name):
        return getattr(self._lib, name)


def test_a_flight_in_several_packets_of_one_batch_enters_openssl_once(pki, monkeypatch):  # noqa: F811
    c, _s, flight, _ids = _to_the_server_flight(pki)
    assert len(flight) >= 2
    lib = _CountingLib(tls._lib)
    monkeypatch.setattr(tls, "_lib", lib)
    ks = c.keys[0]
    c.begin_batch()
    for p in flight:
        c.receive(p, 0.0)
    assert not ks.tls.handshake_done and lib.calls.get(ks.tls._ssl, 0) == 0, "driven at end_batch, not per packet"
    c.end_batch(0.0)
    c.settle(0.0)
    assert ks.tls.handshake_done and lib.calls[ks.tls._ssl] == 1
    assert any(isinstance(e, ev.HandshakeCompleted) for e in c.events)
    assert c.take_outgoing(), "our Finished and key-method message go out"


def test_without_a_batch_each_packet_still_drives_tls(pki):  # noqa: F811
    c, _s, flight, _ids = _to_the_server_flight(pki)
    for p in flight:
        c.receive(p, 0.0)
    assert c.keys[0].tls.handshake_done


def test_a_corrupted_flight_read_in_one_batch_ends_the_session_as_a_tls_error(pki):  # noqa: F811
    c, _s, flight, _ids = _to_the_server_flight(pki)
    bad = bytearray(flight[-1])
    bad[-1] ^= 0x01                       # inside an encrypted handshake record: OpenSSL refuses it
    c.begin_batch()
    for p in [*flight[:-1], bytes(bad)]:
        c.receive(p, 0.0)
    c.end_batch(0.0)                      # the peer's fault ends the session here, it does not raise
    c.settle(0.0)
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    assert c.closed and closed and "TLS error" in closed[0].reason
    assert not c.keys[0].tls.handshake_done


def test_only_the_server_works_out_the_chain_hashes(pki, monkeypatch):  # noqa: F811
    hashed = []
    real = tls.verified_chain_digests

    def spy(conn):
        hashed.append(conn)
        return real(conn)
    monkeypatch.setattr(tls, "verified_chain_digests", spy)
    c, s, _link = connected(pki, protection="none")
    assert c.keys[0].tls.conn not in hashed
    assert s.keys[0].tls.conn in hashed
    assert s._locked_chain and len(s._locked_chain) == 2, "the server locks the client's leaf and the CA"
    # Read on demand, the client's hashes are the same OpenSSL's chain gives (leaf, then CA).
    assert c.keys[0].tls.chain_digests == real(c.keys[0].tls.conn) and len(c.keys[0].tls.chain_digests) == 2
