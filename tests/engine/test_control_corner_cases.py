"""Control-channel corner cases done as OpenVPN 2.6.14 does them.

- A session id of all zeros is no session id: 2.6 drops such a control packet before anything
  else (ssl.c tls_pre_decrypt and ssl_pkt.c tls_pre_decrypt_lite: `!session_id_defined(&sid)`,
  "TLS Error: session-id not found in packet"), a soft error; we drop it, counted.
- A message id beyond the receive window is neither kept nor acknowledged (reliable.c
  reliable_wont_break_sequentiality is checked before reliable_ack_acknowledge_packet_id): an
  ack for a message not kept told the peer to forget it, so it was never sent again.
- A soft reset opens a new key only under a key id 2.6 could send: never 0 (key_state_init wraps
  7 -> 1) and never the id of the key already active (2.6 drops it, "key IDs out of sync")."""
from __future__ import annotations

import os

from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from appliance.openvpn.reliable import RECV_WINDOW, ReliableChannel
from tests.engine.test_memory_link import Link, make_pair, up, pki  # noqa: F401 - pki: the fixture
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up, pki as dpki  # noqa: F401

ZEROS = b"\0" * 8


def _control(sess, op: int, key_id: int, msg_id: int | None, sid: bytes | None = None, acks=(), peer=None):
    return sess.wrapper.wrap(op_byte(op, key_id), sess.own_sid if sid is None else sid,
                             encode_body(list(acks), peer, msg_id, b""), 1.0)


# ---- 1. a session id of zeros
def test_server_session_ignores_a_hard_reset_whose_session_id_is_zeros(pki):
    c, s, _ = make_pair(pki, proto="udp")
    s.receive(_control(c, Op.CONTROL_HARD_RESET_CLIENT_V2, 0, 0, sid=ZEROS), 1.0)
    s.handle_timer(1.0)
    assert s.peer_sid is None and not s.keys
    assert s.take_outgoing() == []
    assert s.stats.get("session id of zeros") == 1, s.stats
    # The real client's reset still opens the session.
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)


def test_client_ignores_a_server_reset_whose_session_id_is_zeros(pki):
    c, s, _ = make_pair(pki, proto="udp")
    c.take_outgoing()
    pkt = s.wrapper.wrap(op_byte(Op.CONTROL_HARD_RESET_SERVER_V2, 0), ZEROS,
                         encode_body([0], c.own_sid, 0, b""), 1.0)
    c.receive(pkt, 1.0)
    assert c.peer_sid is None
    assert c.stats.get("session id of zeros") == 1, c.stats


def test_server_answers_no_reset_whose_session_id_is_zeros(dpki):
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(dpki, "tls-crypt", static_key=key, connect_freq_initial=(10_000, 10))
    right = wrapping.TlsCryptWrapper(key, False)
    reset = op_byte(Op.CONTROL_HARD_RESET_CLIENT_V2, 0)
    d.receive(right.wrap(reset, ZEROS, encode_body([], None, 0), 1.0), ("198.18.0.9", 1), 1.0)
    third = op_byte(Op.CONTROL_V1, 0)
    d.receive(right.wrap(third, ZEROS, encode_body([0], os.urandom(8), 1, b"x"), 1.0), ("198.18.0.9", 1), 1.0)
    assert d.take_outgoing() == []
    assert not d.clients
    assert d.stats.get("session id of zeros") == 2, d.stats
    assert "stateless reset answered" not in d.stats
    # A client with a real session id still gets in.
    s = _client(dpki, dpki["clients"][0], lambda: wrapping.TlsCryptWrapper(key, False))
    _pump(d, [(s, ("198.18.0.9", 1))])
    assert _up(s)


# ---- 2. a message id beyond the receive window
def test_a_message_beyond_the_receive_window_is_neither_kept_nor_acked():
    rc = ReliableChannel()
    assert rc.receive(RECV_WINDOW, Op.CONTROL_V1, b"far") == []
    assert rc.pending_acks == [] and rc.recv_buffer == {}
    assert rc.receive(RECV_WINDOW - 1, Op.CONTROL_V1, b"edge") == []     # the window's last: kept, acked
    assert rc.pending_acks == [RECV_WINDOW - 1]
    rc.take_acks(8)
    assert rc.receive(0, Op.CONTROL_V1, b"first") == [(Op.CONTROL_V1, b"first")]
    assert rc.receive(0, Op.CONTROL_V1, b"first") == []                  # a duplicate: acked again
    assert rc.pending_acks == [0]


def test_session_sends_no_ack_for_a_message_beyond_its_window(pki):
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    s.take_outgoing()
    ks = s.keys[0]
    far = ks.reliable.next_recv_id + RECV_WINDOW
    s.receive(_control(c, Op.CONTROL_V1, 0, far), link.now)
    s.handle_timer(link.now)
    assert s.take_outgoing() == [], "acked a message it did not keep"
    assert not s.closed


# ---- 3. soft resets under a key id 2.6 never sends
def _renegotiated(link, c, s) -> None:
    before = c.send_key.key_id
    c.renegotiate(link.now)
    link.run(lambda: c.send_key.key_id != before and s.send_key.key_id == c.send_key.key_id, max_time=link.now + 30)


def test_soft_reset_for_key_id_0_is_not_answered(pki):
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, tran_window=300)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    _renegotiated(link, c, s)
    assert s.send_key.key_id == 1 and 0 in s.keys       # key 0 is the lame duck now
    s.take_outgoing()
    s.receive(_control(c, Op.CONTROL_SOFT_RESET_V1, 0, 0, acks=(), peer=None), link.now)
    s.handle_timer(link.now)
    assert s.take_outgoing() == [], "answered a soft reset for key id 0"
    assert not s.keys[0].negotiating and s.newest_key_id == 1
    assert s.stats.get("soft reset for key id 0") == 1, s.stats
    assert not any(isinstance(e, ev.KeyRenegotiated) and e.key_id == 0 for e in s.events)


def test_soft_reset_for_the_active_key_id_is_not_taken(pki):
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0, tran_window=300)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    _renegotiated(link, c, s)
    ks = s.keys[1]
    s.take_outgoing()
    nxt = ks.reliable.next_recv_id
    s.receive(_control(c, Op.CONTROL_SOFT_RESET_V1, 1, nxt), link.now)
    s.handle_timer(link.now)
    assert s.take_outgoing() == [], "acked a soft reset for the key already active"
    assert ks.reliable.next_recv_id == nxt, "the soft reset took a message id of the active key"
    assert s.stats.get("soft reset for the active key id") == 1, s.stats
    # The next renegotiation (key id 2) is answered as before.
    _renegotiated(link, c, s)
    assert s.send_key.key_id == c.send_key.key_id == 2


def test_a_flood_of_refused_soft_resets_ends_the_session_as_a_flood_of_lone_acks_does(pki):
    """Each costs the unwrapping and the checks and gives nothing to read: charged to the control
    budget (control.py CONTROL_BURST), so a peer sending nothing else is ended, not served forever."""
    c, s, _ = make_pair(pki, proto="udp", reneg_sec=0)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    for _ in range(3000):
        s.receive(_control(c, Op.CONTROL_SOFT_RESET_V1, 0, 0), link.now)     # each freshly wrapped
        if s.closed:
            break
    assert s.closed, s.stats
    assert s.stats.get("soft reset for key id 0", 0) >= 1000
