"""The attacks behind OpenVPN's security fixes of 2023-2026, replayed against our engine by a
hand-driven hostile peer (the server dispatcher, or a client Session, in memory).

Ours is a separate implementation: the memory-safety half of those fixes has no counterpart here,
the logic half does. Each test names the OpenVPN commit (and CVE) whose attack it replays:
- 18c483dd (CVE-2025-13086): OpenVPN's server accepted every HMAC cookie (an inverted memcmp), so
  a third packet from a spoofed source that never saw our reset answer made a session; a cookie of
  a future time slot passed as well;
- 82ee2fe4 / 01ee1693 (CVE-2025-2704, CVE-2026-13698): a tls-crypt-v2 client key set up again from
  a later packet of a session (P_CONTROL_WKC_V1 after the first exchange);
- fa129d71 (CVE-2026-35058): the opcode read as part of the WKc of a packet too short for one.
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
