"""A client's session id seen from another address cannot keep it out (tls-crypt-v2 without
early negotiation: OpenVPN 2.5 clients, which cannot resend their wrapped key).

OpenVPN 2.6 keys its client instances by address (mudp.c multi_get_create_instance_udp: a
hash of the real address; only P_DATA_V2's peer-id finds one otherwise), and takes such a
client on at its first packet (do_pre_decrypt_check: an old V3 reset "return true" unless
force-cookie). Ours takes it on too, but allows one such handshake per client session id, so a
reset captured once and replayed from many spoofed sources makes one session, not many. That
rule was keyed by the session id alone: whoever brought a session id first held it. Somebody who
saw a client's reset (it travels in clear) and replayed it from elsewhere before the client's own
got through -- the first one lost, or held back -- had every resend of the client refused
("replayed cookie-less reset") for the server's hand-window (60 s).

Now a cookie-less reset whose session id is held by a handshake at another address is answered
the way a 2.6 client's is: statelessly, with an HMAC cookie, its key kept (bounded) for its
next packet only; the sender that proves its address by answering gets its own session. The
replayed one stays one session; the session at the other address is not touched.
"""
from __future__ import annotations

from appliance.openvpn import keyfiles, wrapping
from tests.engine.test_server_dispatcher import _pump, _up
from tests.engine.test_server_security import _mk_client, _mk_server
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture

VICTIM, ELSEWHERE = ("198.18.34.1", 5000), ("198.18.34.99", 6000)


def _old_v2_client(pki, v2, i=6):  # noqa: F811
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    return _mk_client(pki, pki["clients"][i],
                      lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc, early_negotiation=False), early=True)


def test_a_replay_of_the_clients_reset_from_elsewhere_first_does_not_keep_it_out(pki):  # noqa: F811
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    victim = _old_v2_client(pki, v2)
    reset = victim.take_outgoing()[0]           # lost on its way; somebody saw it
    d.receive(bytes(reset), ELSEWHERE, 0.5)     # ... and replays it from elsewhere first
    d.take_outgoing()
    assert d.record(ELSEWHERE) is not None
    victim.handle_timer(2.5)                    # the victim resends its reset
    _pump(d, [(victim, VICTIM)], now=2.5)
    assert _up(victim), f"the victim was kept out: {d.stats}"
    assert d.record(ELSEWHERE) is not None, "the handshake elsewhere is left alone"
    # A replay of the same reset from many more sources still makes no more sessions.
    for i in range(40):
        d.receive(bytes(reset), ("198.18.35.%d" % (i + 1), 7000), 3.0)
    assert len([a for a in d.by_addr if a[0].startswith("198.18.35.")]) == 0


def test_the_clients_session_id_from_elsewhere_touches_neither_its_handshake_nor_its_tunnel(pki):  # noqa: F811
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    victim = _old_v2_client(pki, v2)
    reset = bytes(victim.take_outgoing()[0])
    d.receive(reset, VICTIM, 0.5)
    for p, _a in d.take_outgoing():
        victim.receive(p, 0.5)
    # Mid-handshake: its reset replayed from elsewhere, and its packets too.
    mid = [bytes(p) for p in victim.take_outgoing()]
    for p in [reset] + mid:
        d.receive(p, ELSEWHERE, 0.6)
    for p in mid:
        d.receive(p, VICTIM, 0.6)
    _pump(d, [(victim, VICTIM)], now=0.7)
    assert _up(victim)
    rec = d.record(VICTIM)
    # Established: the same again from elsewhere changes nothing for it.
    for p in [reset] + mid:
        d.receive(p, ELSEWHERE, 1.0)
    assert d.record(VICTIM) is rec and rec.alive and rec.addr == VICTIM


def test_packets_for_a_kept_key_build_no_context_each(pki, monkeypatch):  # noqa: F811
    """The key kept for a cookie answer's sender is kept with its tls-crypt context: a key holder
    flooding packets under that (address, session id) makes none per packet."""
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    victim = _old_v2_client(pki, v2)
    reset = bytes(victim.take_outgoing()[0])
    d.receive(reset, ELSEWHERE, 0.5)
    d.receive(reset, VICTIM, 0.6)                  # answered with a cookie, its key kept
    for p, a in d.take_outgoing():
        if a == VICTIM:
            victim.receive(p, 0.6)
    first = [bytes(p) for p in victim.take_outgoing()]
    built = []
    real = wrapping.TlsCryptWrapper
    monkeypatch.setattr(wrapping, "TlsCryptWrapper", lambda *a, **kw: built.append(1) or real(*a, **kw))
    for i in range(100):                           # the sender's packet with a cookie gone wrong
        p = bytearray(first[0])
        p[-1] ^= 1
        d.receive(bytes(p), VICTIM, 0.7)
    assert len(built) == 0 and d.stats["control packet failed tls-crypt authentication"] == 100
    for p in first:
        d.receive(p, VICTIM, 0.8)
    _pump(d, [(victim, VICTIM)], now=0.8)
    assert _up(victim)
