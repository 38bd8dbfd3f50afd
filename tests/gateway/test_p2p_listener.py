"""The point-to-point tls-server's port (transport/p2p_link.py) and its second session
(gateway/p2p_server.py), against hostile senders: junk, replayed resets, a stranger's handshake.

What must hold: the first client reset chooses the peer; afterwards nothing but the peer's own
packets reaches the live session; a reset from anyone else (or a new one from the peer) runs in a
candidate session of its own, which replaces the live one only once it has authenticated; junk
and a peer with the wrong certificate never do, and a stream of resets starts at most one TLS
handshake per CANDIDATE_MIN_AGE.
"""
from __future__ import annotations

import os

import pytest

from appliance.bench import _cert, _pems
from appliance.gateway.p2p_server import CANDIDATE_MIN_AGE, TakeOver
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.transport.p2p_link import NEWCOMERS_MAX, P2PListenLink
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab.fakes import FakeUdp

NO_MSS = lambda cipher, v2: None            # noqa: E731 - no clamping
PEER, OTHER = ("198.18.0.2", 1194), ("198.18.0.3", 40000)
RESET = bytes([7 << 3]) + os.urandom(8) + b"\0" * 20        # a client hard reset (opcode 7), plain
DATA = bytes([9 << 3]) + os.urandom(30)                      # P_DATA_V2


def test_the_first_reset_chooses_the_peer_and_strangers_never_reach_the_live_session():
    t = FakeUdp()
    link = P2PListenLink(t, None, False)
    t.inbox = [(DATA, OTHER), (b"\x00junk", OTHER), (RESET, PEER)]
    assert link.recv_packets() == [RESET] and link.addr == PEER
    assert link.dropped == 2
    link.live_sid = bytes(RESET[1:9])
    other_reset = bytes([7 << 3]) + os.urandom(8) + b"\0" * 20
    t.inbox = [(DATA, PEER), (RESET, PEER), (DATA, OTHER), (other_reset, OTHER), (other_reset, PEER)]
    assert link.recv_packets() == [DATA, RESET]            # the peer's data and its own reset again
    assert [src for _d, src in link.newcomers] == [OTHER, PEER]   # new sessions, set aside
    assert link.dropped == 3
    t.inbox = [(other_reset, OTHER)] * (NEWCOMERS_MAX + 5)
    link.newcomers = []
    link.recv_packets()
    assert len(link.newcomers) == NEWCOMERS_MAX            # bounded per read


def test_with_a_remote_only_that_address_may_be_the_peer_any_port_with_float():
    t = FakeUdp()
    link = P2PListenLink(t, PEER, False)
    t.inbox = [(RESET, OTHER), (RESET, (PEER[0], 5555))]
    assert link.recv_packets() == [] and link.addr is None and link.dropped == 2
    floating = P2PListenLink(t, PEER, True)
    t.inbox = [(RESET, (PEER[0], 5555))]
    assert floating.recv_packets() == [RESET] and floating.addr == (PEER[0], 5555)


def test_with_float_data_from_elsewhere_is_set_aside_for_the_live_keys_to_judge_without_it_dropped():
    t = FakeUdp()
    for floating, expect in ((True, 1), (False, 0)):
        link = P2PListenLink(t, None, floating)
        t.inbox = [(RESET, PEER)]
        link.recv_packets()
        t.inbox = [(DATA, OTHER), (b"\x00junk", OTHER)]
        assert link.recv_packets() == []                   # never straight to the live session
        assert len(link.floaters) == expect and link.addr == PEER


def test_a_floating_peers_data_moves_it_only_when_the_live_keys_authenticate_it(pki):
    """What the gateway's _p2p_float relies on: a fresh packet under the live keys counts as
    authenticated, the same packet replayed (or a forged one) does not."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    c = _client(pki, key)
    s = _server_maker(pki, key)(0.0)
    from tests.engine.test_memory_link import Link, up
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    pkt = bytes(c.encrypt(bytes([0x45]) + bytes(40)))
    n = s.data_authenticated
    assert s.receive(pkt, link.now) and s.data_authenticated == n + 1
    assert s.receive(pkt, link.now) == [] and s.data_authenticated == n + 1          # replayed
    forged = pkt[:-1] + bytes([pkt[-1] ^ 1])
    assert s.receive(forged, link.now) == [] and s.data_authenticated == n + 1


@pytest.fixture(scope="module")
def pki():
    ca = _cert("p2p CA")
    other = _cert("other CA")
    return {"ca": ca[0].public_bytes(serialization.Encoding.PEM),
            "server": _pems(_cert("a", ca, ExtendedKeyUsageOID.SERVER_AUTH)),
            "client": _pems(_cert("b", ca, ExtendedKeyUsageOID.CLIENT_AUTH)),
            "rogue": _pems(_cert("b", other, ExtendedKeyUsageOID.CLIENT_AUTH))}


def _server_maker(pki, key):
    def make(now: float) -> Session:
        return Session(SessionConfig(Role.SERVER, TlsSettings(pki["ca"], *pki["server"], True),
                                     lambda: wrapping.TlsAuthWrapper(key, 0, "SHA256"), auth="SHA256",
                                     data_ciphers=["AES-256-GCM"], p2p=True), now)
    return make


def _gate(key):
    return wrapping.TlsAuthWrapper(key, 0, "SHA256")


def _client(pki, key, cert="client", wrap_key=None):
    k = wrap_key if wrap_key is not None else key
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(pki["ca"], *pki[cert], False),
                              lambda: wrapping.TlsAuthWrapper(k, 1, "SHA256"), auth="SHA256",
                              data_ciphers=["AES-256-GCM"], p2p=True), 0.0)
    c.start(0.0)
    return c


def _run(take, link, t, client, src, steps=60, noise=None):
    """Shuttle packets between `client` (at `src`) and the candidate; the candidate once up.
    `noise(i)`: a (datagram, address) an attacker sends at step i, before the client's."""
    now = 0.0
    for i in range(steps):
        now += 0.05
        if noise is not None:
            t.inbox.append(noise(i))
        for p in client.take_outgoing():
            t.inbox.append((bytes(p), src))
        link.recv_packets()
        items, link.newcomers = link.newcomers, []
        up = take.feed(link, items, now)
        if up is not None:
            return up
        for p, to in t.sent:
            if to == src:
                client.receive(p, now)
        t.sent = []
        client.handle_timer(now)
    return None


def _live_link():
    t = FakeUdp()
    link = P2PListenLink(t, None, False)
    t.inbox = [(RESET, PEER)]
    link.recv_packets()
    link.live_sid = bytes(RESET[1:9])
    link.proven = True                  # the live session authenticated the peer there
    return t, link


def test_a_new_authenticated_session_takes_over_and_a_foreign_certificate_never_does(pki):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    t, link = _live_link()
    take = TakeOver(_server_maker(pki, key), NO_MSS, _gate(key))
    rogue = _run(take, link, t, _client(pki, key, "rogue"), OTHER)
    assert rogue is None and take.failed >= 1            # the TLS handshake failed: no takeover
    assert link.addr == PEER
    up = _run(take, link, t, _client(pki, key), OTHER)
    assert up is not None and up.addr == OTHER and up.session.established


def test_resets_without_the_tls_auth_key_start_no_handshake(pki):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    wrong = keyfiles.parse_static_key(keyfiles.generate_static_key())
    t, link = _live_link()
    made = []
    make = _server_maker(pki, key)
    take = TakeOver(lambda now: made.append(now) or make(now), NO_MSS, _gate(key))
    assert _run(take, link, t, _client(pki, key, wrap_key=wrong), OTHER, steps=20) is None
    assert t.sent == []                                  # nothing answered to an unauthenticated reset
    # A flood of resets (new session ids, replayed or forged) makes at most one candidate per
    # CANDIDATE_MIN_AGE: no TLS handshake per datagram.
    made.clear()
    for i in range(200):
        r = bytes([7 << 3]) + os.urandom(8) + b"\0" * 20
        take.feed(link, [(r, OTHER)], 100.0 + i * 0.001)
    assert len(made) <= 1 + int(0.2 / CANDIDATE_MIN_AGE)


def test_a_stream_of_resets_without_the_tls_auth_key_never_keeps_the_real_peer_out(pki):
    """A stranger without the tls-auth key sends a junk reset every few tens of ms while the peer
    (restarted) comes back: OpenVPN 2.6 checks a reset's HMAC before it takes the new-session slot
    (ssl.c read_control_auth), so junk never holds the slot and the peer takes over. Ours held a
    candidate for each junk reset for CANDIDATE_MIN_AGE and dropped the peer's resets meanwhile."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    wrong = keyfiles.parse_static_key(keyfiles.generate_static_key())
    t, link = _live_link()
    take = TakeOver(_server_maker(pki, key), NO_MSS, _gate(key))
    stranger = _client(pki, key, wrap_key=wrong)
    junk = bytes(stranger.take_outgoing()[0])                # a well-formed reset, wrong HMAC
    client = _client(pki, key)
    up = _run(take, link, t, client, OTHER, steps=200,
              noise=lambda i: (junk[:1] + os.urandom(8) + junk[9:], ("198.18.0.9", 1000)))
    assert up is not None and up.addr == OTHER and up.session.established
    assert all(to == OTHER for _p, to in t.sent)           # the stranger was answered nothing


def test_a_replayed_reset_from_elsewhere_never_keeps_the_restarted_peer_out_of_its_own_address(pki):
    """An attacker replays a reset it once captured (its HMAC is good: the tls-auth check passes)
    from ports of its own, many times a second, while the peer restarts on its own address
    (a p2p tls-client binds its port: the same address again). Each replay made a candidate that
    held the slot for CANDIDATE_MIN_AGE, so the peer's resets were dropped for good; the peer's
    own address now displaces a young candidate from elsewhere (never one from that address, so
    a spoofing flood still starts at most two handshakes per CANDIDATE_MIN_AGE)."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    t, link = _live_link()
    take = TakeOver(_server_maker(pki, key), NO_MSS, _gate(key))
    captured = bytes(_client(pki, key).take_outgoing()[0])
    client = _client(pki, key)
    up = _run(take, link, t, client, PEER, steps=200,
              noise=lambda i: (captured, ("198.18.0.9", 1000 + i)))     # a port of its own each time
    assert up is not None and up.addr == PEER and up.session.established
