"""The attacks behind OpenVPN's security fixes of 2023-2026, replayed against our engine by a
hand-driven hostile peer (the server dispatcher, or a client Session, in memory).

Ours is a separate implementation: the memory-safety half of those fixes has no counterpart here,
the logic half does. Each test names the OpenVPN commit (and CVE) whose attack it replays:
- 18c483dd (CVE-2025-13086): OpenVPN's server accepted every HMAC cookie (an inverted memcmp), so
  a third packet from a spoofed source that never saw our reset answer made a session; a cookie of
  a future time slot passed as well;
- 82ee2fe4 / 01ee1693 (CVE-2025-2704, CVE-2026-13698): a tls-crypt-v2 client key set up again from
  a later packet of a session (P_CONTROL_WKC_V1 after the first exchange);
- fa129d71 (CVE-2026-35058): the opcode read as part of the WKc of a packet too short for one;
- 518e122b (OpenVPN 2.7; 2.6.14 lacks it): a late packet of a session that had gone, acking our
  reset among later messages under the still valid cookie, passed for a third packet and made a
  new session.
"""
from __future__ import annotations

import os

import pytest

from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from tests.engine.test_server_dispatcher import _icmp, _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture
from tests.engine.test_server_security import _mk_client, _mk_server

SPOOFED = ("198.18.7.7", 7777)        # a source the attacker writes but never receives at
ATTACKER = ("198.18.8.8", 8888)       # the attacker's own address


def _third_packets(w, csid: bytes, cookie: bytes) -> list[bytes]:
    """What a client sends after our stateless reset answer: a bare ACK of it, and its first TLS
    record (message 1) with the same ACK, both echoing `cookie` as our session id."""
    hello = b"\x16\x03\x01\x00\x05" + os.urandom(5)        # looks like a TLS record: never read
    return [w.wrap(op_byte(Op.ACK_V1, 0), csid, encode_body([0], cookie, None), 1.0),
            w.wrap(op_byte(Op.CONTROL_V1, 0), csid, encode_body([0], cookie, 1, hello), 1.0)]


def _states(d) -> int:
    return len(d.by_addr) + len(d.pending) + len(d.by_peer_id)


@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
def test_third_packets_without_the_cookie_create_no_session(pki, protection):  # noqa: F811
    """18c483dd (CVE-2025-13086): the check of the echoed cookie must hold, or a spoofed source
    gets a session (a TLS state, a handshake slot) for one packet. The attacker has everything a
    client has (the tls-crypt key), sends the third packet of the exchange from a source it never
    receives at, with every cookie it can come by: none guessed (zeros, random), the one the
    server handed to its own address (replayed from the spoofed one, or with another client
    session id), one of a future time slot, one past its hand-window."""
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _mk_server(pki, protection, static_key=key)
    w = wrapping.TlsCryptWrapper(key, False) if protection == "tls-crypt" else wrapping.PlainWrapper()
    now = 1.0
    csid = os.urandom(8)
    # The attacker's own reset, answered at its own address: a genuine cookie, bound to it.
    d.receive(w.wrap(op_byte(Op.CONTROL_HARD_RESET_CLIENT_V2, 0), csid, encode_body([], None, 0), now), ATTACKER, now)
    (answer, to), = d.take_outgoing()
    assert to == ATTACKER
    own_cookie = bytes(answer[1:9])                      # the server's session id: in clear
    jar = d.cookies
    forged = {
        "zeros": bytes(8),
        "random": os.urandom(8),
        "the attacker's own cookie": own_cookie,
        "a future slot's cookie": jar.session_id(SPOOFED, csid, now, slot_offset=1),
        "a cookie past its hand-window": jar.session_id(SPOOFED, csid, now, slot_offset=-3),
    }
    for name, cookie in forged.items():
        for p in _third_packets(w, csid, cookie):
            d.receive(p, SPOOFED, now)
            assert _states(d) == 0, f"{name}: a spoofed source got a session"
    # The attacker's own cookie, from its own address but under another client session id.
    for p in _third_packets(w, os.urandom(8), own_cookie):
        d.receive(p, ATTACKER, now)
        assert _states(d) == 0, "a cookie bound to another client session id was taken"
    assert d.stats["invalid or expired session cookie"] == 2 * len(forged) + 2
    assert d.take_outgoing() == [], "the spoofed source was answered"
    # The check can pass: the right cookie from the address it was given to makes a session
    # (its bare ACK: the fake TLS record would end it at once).
    d.receive(_third_packets(w, csid, own_cookie)[0], ATTACKER, now)
    assert _states(d) > 0, d.stats


def test_a_real_client_gets_in_with_a_cookie_two_slots_old(pki):  # noqa: F811
    """The other side of 18c483dd's [t-2, t] window: the two earlier slots are accepted (a
    client's hand-window), so the fix must not have narrowed it; a real client gets in with a
    cookie handed out two slots ago."""
    d = _mk_server(pki, "none")
    c = _mk_client(pki, pki["clients"][0])
    t0 = 0.0
    for p in c.take_outgoing():
        d.receive(p, ATTACKER, t0)
    for p, a in d.take_outgoing():
        c.receive(p, t0)
    later = t0 + 2 * d.cookies.period + 0.5          # two slots on: the cookie's last slot
    for p in c.take_outgoing():
        d.receive(p, ATTACKER, later)
    _pump(d, [(c, ATTACKER)], now=later)
    assert _up(c)
    rec, pts = d.receive(c.encrypt(_icmp(c.pushed.ifconfig[0], "198.19.0.1")), ATTACKER, later)
    assert len(pts) == 1


def test_a_gone_sessions_late_packets_acking_past_the_handshake_make_no_session(pki):  # noqa: F811
    """518e122b: a session's packet that reaches the stateless path after the session went (its
    handshake refused or timed out, or the client floated away and back), acking our reset among
    later messages -- Debian's 2.6 client acks [2, 1, 0] once its handshake is done, seen in the
    lab after each refusal -- echoes a cookie still valid for up to hand-window. It passed for a
    third packet: a new session for a client that had left, a handshake slot, a status row and
    a peer-id held until hand-window, and a second "disconnected" line for each refused attempt.
    As OpenVPN 2.7 (2.6.14 lacks the fix): only a packet of the three-way handshake itself, its
    acks and message id at most 1, may start a session."""
    d = _mk_server(pki, "none")
    c = _mk_client(pki, pki["clients"][0])
    now = 1.0
    for p in c.take_outgoing():
        d.receive(p, ATTACKER, now)
    (answer, _a), = d.take_outgoing()
    cookie = bytes(answer[1:9])
    w = wrapping.PlainWrapper()
    late = [w.wrap(op_byte(Op.ACK_V1, 0), c.own_sid, encode_body([2, 1, 0], cookie, None), now),
            w.wrap(op_byte(Op.CONTROL_V1, 0), c.own_sid, encode_body([3, 0], cookie, 1, b"x"), now),
            w.wrap(op_byte(Op.ACK_V1, 0), c.own_sid, encode_body([0, 7], cookie, None), now)]
    for p in late:
        d.receive(p, ATTACKER, now)
    assert _states(d) == 0, d.stats
    assert d.stats.get("first packet acks a message past the handshake") == 3, d.stats
    # The handshake's own packets still start it (acks and message id 0 or 1).
    d.receive(w.wrap(op_byte(Op.ACK_V1, 0), c.own_sid, encode_body([1, 0], cookie, None), now), ATTACKER, now)
    assert _states(d) > 0, d.stats


# ---------------------------------------------------------------- tls-crypt-v2: the key of a session

def _v2_world(pki):  # noqa: F811
    """A tls-crypt-v2 server with client A up (OpenVPN 2.6's early negotiation, so through the
    cookie), and a second client key B -- the attacker's own, from the same server key."""
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    keys = [keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2, metadata=m))
            for m in (b"alice", b"mallory")]
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    (kca, wkca), (kcb, wkcb) = keys
    a = _mk_client(pki, pki["clients"][0], lambda: wrapping.TlsCryptV2ClientWrapper(kca, wkca), early=True)
    addr = ("198.18.0.2", 40000)
    _pump(d, [(a, addr)])
    assert _up(a)
    return d, a, addr, (kcb, wkcb)


def _still_works(d, a, addr, now: float) -> None:
    """A's tunnel moves data, and a renegotiation under its own key completes."""
    rec, pts = d.receive(a.encrypt(_icmp(a.pushed.ifconfig[0], "198.19.0.1")), addr, now)
    assert len(pts) == 1, d.stats
    before = a.newest_key_id
    a.renegotiate(now)
    _pump(d, [(a, addr)], now=now)
    assert a.newest_key_id != before and any(type(e).__name__ == "KeyRenegotiated" for e in a.events), d.stats
    rec, pts = d.receive(a.encrypt(_icmp(a.pushed.ifconfig[0], "198.19.0.1")), addr, now + 1)
    assert len(pts) == 1, d.stats


def test_a_wrapped_key_on_a_later_packet_of_a_session_does_not_replace_its_key(pki):  # noqa: F811
    """82ee2fe4 / 01ee1693 (CVE-2025-2704, CVE-2026-13698): OpenVPN's server set up the
    tls-crypt-v2 key again from a P_CONTROL_WKC_V1 that came later in a session. Here client A,
    authenticated, sends one carrying the attacker's key B (wrapped under A's own key, so the
    packet itself is A's): the WKc of a known session is cut off and never read, so A's session
    goes on under A's key, and control packets under key B for A's session are dropped."""
    d, a, addr, (kcb, wkcb) = _v2_world(pki)
    rec = d.by_addr[addr]
    now = 2.0
    own = a.wrapper.wkc
    a.wrapper.wkc = wkcb                       # A's next WKc packet carries B's key
    dup = encode_body([], None, 1, b"\x17\x03\x03\x00\x01\x00")    # message 1 again: only re-acked
    d.receive(a.wrapper.wrap(op_byte(Op.CONTROL_WKC_V1, 0), a.own_sid, dup, now), addr, now)
    a.wrapper.wkc = own
    assert d.by_addr[addr] is rec and rec.alive and len(d.by_peer_id) == 1
    assert rec.session.stats == {} and len(d.take_outgoing()) == 1, "A's own packet was not taken (re-acked)"
    # Key B for A's session: not A's key, so not taken.
    wb = wrapping.TlsCryptV2ClientWrapper(kcb, wkcb)
    for op in (Op.CONTROL_WKC_V1, Op.CONTROL_V1, Op.ACK_V1):
        body = encode_body([0], a.peer_sid, None) if op == Op.ACK_V1 else dup
        d.receive(wb.wrap(op_byte(op, 0), a.own_sid, body, now), addr, now)
    assert rec.alive and d.by_addr[addr] is rec and len(d.by_peer_id) == 1
    assert rec.session.stats == {"control packet failed tls-crypt authentication": 3}
    _still_works(d, a, addr, now)


def test_a_hostile_key_holder_at_a_clients_address_cannot_rekey_or_end_it(pki):  # noqa: F811
    """The same from outside: the holder of key B writes A's address and session id on a
    P_CONTROL_WKC_V1 and a P_CONTROL_HARD_RESET_CLIENT_V3 under its own key. Neither sets up key B
    for A's session, ends it, or makes a second one without the cookie exchange."""
    d, a, addr, (kcb, wkcb) = _v2_world(pki)
    rec = d.by_addr[addr]
    wb = wrapping.TlsCryptV2ClientWrapper(kcb, wkcb)
    now = 2.0
    d.receive(wb.wrap(op_byte(Op.CONTROL_WKC_V1, 0), a.own_sid, encode_body([0], a.peer_sid, 1, b"x"), now), addr, now)
    d.receive(wb.wrap(op_byte(Op.CONTROL_HARD_RESET_CLIENT_V3, 0), a.own_sid, encode_body([], None, 0), now), addr, now)
    assert rec.alive and d.by_addr[addr] is rec and len(d.by_peer_id) == 1 and not d.pending
    assert rec.session.stats == {"control packet failed tls-crypt authentication": 2}
    _still_works(d, a, addr, now)


@pytest.mark.parametrize("cut", [1, 9, 20, 40])
def test_a_packet_too_short_for_its_wrapped_key_is_dropped_whole(pki, cut):  # noqa: F811
    """fa129d71 (CVE-2026-35058): OpenVPN read the WKc from the whole packet, opcode included, so
    a WKc length reaching into the header made it take the opcode for key bytes (and hit an
    ASSERT). Here: a genuine first packet of A's cut to its header plus its WKc (the WKc's length
    field then claims the opcode and session id too, or all but a few bytes of the tls-crypt
    part): dropped and counted, no session, no exception; A's own packet still gets in."""
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    a = _mk_client(pki, pki["clients"][0], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc), early=True)
    reset = bytes(a.take_outgoing()[0])
    assert reset.endswith(wkc)
    short = reset[:cut] + wkc
    # The WKc's trailing length still says len(wkc): with the opcode or more counted in, the
    # packet holds no room for a tls-crypt header before it.
    d.receive(short, ("198.18.0.2", 40000), 1.0)
    n = len(wkc)
    grown = reset[:cut] + wkc[:-2] + (n + cut).to_bytes(2, "big")     # a WKc "starting" at byte 0
    d.receive(grown, ("198.18.0.2", 40000), 1.0)
    assert _states(d) == 0 and d.take_outgoing() == []
    assert sum(d.stats.values()) == 2, d.stats
    d.receive(reset, ("198.18.0.2", 40000), 1.0)
    assert d.stats.get("stateless reset answered") == 1, d.stats


# ---------------------------------------------------------------- a session replaced or gone

def test_a_session_that_owes_an_ack_when_its_successor_takes_over_leaves_nothing_behind(pki):  # noqa: F811
    """97f39e1e / 64fae9d8 (CVE-2026-12996, CVE-2026-40215): OpenVPN's server freed the active
    session while a dedicated ACK of it was the next packet to send, when the client's new
    session authenticated in the same pass, and sent from freed memory. The packet sequence:
    the client restarts from the same address and port, and in the batch in which its new
    session's handshake completes, the old session gets a control packet it must acknowledge (a
    renegotiation it starts). Here the old session's ACK is a packet of its own bytes in the
    batch's output, sent or not without touching anything freed; the old session is dropped; the
    new one moves data and renegotiates; the old one's later packets make nothing."""
    d = _mk_server(pki, "none")
    addr = ("198.18.0.30", 1194)
    old = _mk_client(pki, pki["clients"][0])
    _pump(d, [(old, addr)])
    old_rec = d.by_addr[addr]
    now = 1.0
    old.renegotiate(now)
    owed = [bytes(p) for p in old.take_outgoing()]          # its soft reset: to be acked
    assert owed
    new = _mk_client(pki, pki["clients"][0])
    for _ in range(60):
        for p in owed:                                      # the old session's, first in the batch
            d.receive(p, addr, now)
        # Its ACK of them waits in the batch's output (OpenVPN: to_link at the ACK buffer).
        owes = any(bytes(p)[1:9] == old_rec.session.own_sid and a == addr for p, a in d.out)
        for p in new.take_outgoing():
            d.receive(p, addr, now)
        if d.by_addr.get(addr) is not old_rec:
            break
        for p, _a in d.take_outgoing():
            new.receive(p, now)
    new_rec = d.by_addr[addr]
    assert new_rec is not old_rec and old_rec.session.closed and not old_rec.alive
    assert owes, "the old session owed no ACK when it was replaced: not the sequence of the fix"
    for p, _a in d.take_outgoing():     # the old session's ACK too: bytes of its own, dropped by the client
        new.receive(p, now)
    _pump(d, [(new, addr)], now=now)
    assert _up(new)
    for p in owed:                                          # the old session's packets again
        d.receive(p, addr, now + 1)
    assert d.by_addr[addr] is new_rec and len(d.by_peer_id) == 1 and not d.pending
    _still_works(d, new, addr, now + 2)


@pytest.mark.parametrize("key_id", [1, 5, 7])
def test_control_packets_for_a_key_id_without_a_key_are_dropped(pki, key_id):  # noqa: F811
    """5cdf3f97: OpenVPN's tls_pre_decrypt made a pointer past its key table for a control packet
    whose key id matches no key ("Unroutable control packet"). Here: an ACK and a control message
    for a key id the session has no key for are dropped and counted; the session goes on."""
    d = _mk_server(pki, "none")
    addr = ("198.18.0.40", 1194)
    c = _mk_client(pki, pki["clients"][1])
    _pump(d, [(c, addr)])
    rec = d.by_addr[addr]
    w = wrapping.PlainWrapper()
    for op, body in ((Op.ACK_V1, encode_body([3], c.peer_sid, None)),
                     (Op.CONTROL_V1, encode_body([3], c.peer_sid, 0, b"\x17\x03\x03\x00\x01\x00"))):
        d.receive(w.wrap(op_byte(op, key_id), c.own_sid, body, 1.0), addr, 1.0)
    assert rec.alive and d.by_addr[addr] is rec
    assert rec.session.stats == {"packet for unknown key id": 2}, rec.session.stats
    _still_works(d, c, addr, 2.0)


@pytest.mark.parametrize("mtype, metadata", [
    (keyfiles.METADATA_TYPE_USER, b""),
    (keyfiles.METADATA_TYPE_USER, (b"\r\n\x1b[2J\x00forged line " * 40)[:733]),     # the most a WKc holds
    (keyfiles.METADATA_TYPE_TIMESTAMP, (2**63 - 1).to_bytes(8, "big")),
    (keyfiles.METADATA_TYPE_TIMESTAMP, b"\x01\x02\x03"),                           # not 8 bytes
    (0x7F, b"\n\x1b]0;title\x07"),                                                 # a type nobody defined
])
def test_client_key_metadata_of_any_type_and_length_reaches_the_log_harmless(pki, mtype, metadata):  # noqa: F811
    """bc5ec987 (CVE-2026-12932): OpenVPN's metadata handling (its buffer's lifetime, the
    length and type read from the WKc, handed to tls-crypt-v2-verify and the max-age check).
    Here neither check exists (both directives are refused at their line, so no key is taken as
    verified by a script or an age that never ran); the metadata, whatever its type and length up
    to what a WKc holds, only becomes a log line, which shows no control byte and stays bounded,
    and the client connects as any other."""
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(
        keyfiles.generate_tls_crypt_v2_client_key(v2, metadata=metadata, metadata_type=mtype))
    d = _mk_server(pki, "tls-crypt-v2", v2_server_key=v2)
    a = _mk_client(pki, pki["clients"][0], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc), early=True)
    addr = ("198.18.0.2", 40000)
    _pump(d, [(a, addr)])
    assert _up(a)
    shown = d.by_addr[addr].v2_metadata
    assert shown and len(shown) < 1100 and not any(ch < " " or ch == "\x7f" for ch in shown), shown
