"""fuzz47: the remnant of a refused UDP login (refusals.py) under random and replayed packets.

Why: a RefusedLogin outlives its session by up to REFUSAL_HOLD s so that a lost AUTH_FAILED is
sent again; it answers to a client address and reads that client's packets. Anybody can send
to it (from its address, spoofed, or from others), so it must stay what the module promises:
a resender of its own messages, to its own address, for a bounded time and count, reading acks
and nothing else, never a way back into a session. No other target reaches it: a remnant exists
only after a refusal, which needs a TLS handshake and a key-method message first.

Set-up, once per process: a real client with a wrong password against a real ServerDispatcher
(no tls-auth, so the fuzzer can shape control packets), the server's answer lost; what the
remnant holds (its wrapper, session ids, messages in flight) and the client's captured packets
are kept. Per input: a fresh dispatcher with a copy of that remnant, made by the real
RefusedLogins.keep.

Input: steps of `op a b body` split at SEP; op % 8:
  0 `body` as a datagram from the remnant's address (spoofed: the attacker needs no more);
  1 `body` from another address (a % 4 picks it);
  2 a control packet shaped from the input: opcode (a % 12), key id (a >> 4 & 7), the remnant's
    session ids (or, b bit 0, a corrupted one), acks b % 5 of ids from body, a message id and a
    payload; from the remnant's address or (b bit 7) another;
  3 one of the client's captured packets (a picks it) replayed as it was, cut or bit-flipped
    (b), from the remnant's address or (b bit 7) another;
  4 time passes: a / 20 s (and the timers run);
  5 the client's honest ack of in-flight ids (a bit i: id i), from the remnant's address;
  6 a new hard reset (the client restarted: a new session id) from the remnant's address;
  7 the same packet b % 40 times (a flood), from the remnant's address.
Oracles, after every step:
- nothing escapes the dispatcher;
- to an address other than the remnant's nothing goes but the stateless answer to a hard reset
  that address sent in this step;
- to the remnant's address only its own messages go (the same opcode, key id, session id,
  message id and payload as the refusal's, no acks) -- or the stateless answer to a reset it
  sent in this step -- and not past the hold: nothing 5 s (HOLD_MAX, 2.6's scheduled_exit_interval) after the
  refusal, and then
  the remnant is gone; at most (the timer's one resend + fast retransmits) per message;
- it reads acks only: its reliability layers hold no received message and no ack to send, it
  counts at most REFUSAL_READS reads;
- a new session's hard reset from its address is answered (the remnant blocks no restart);
- no session is made from its packets: none established, no record for the remnant's address
  unless a hard reset came from there (which drops the remnant, as the module says).
"""
from __future__ import annotations

import copy
import functools
import types

SEP = b"\xfe\xfd"
REFUSED_AT = 0.5          # when the template's refusal was sent (its clock)
HOLD_MAX = 5.0            # the brief's bound, as 2.6's scheduled_exit_interval: not read from refusals.py
ADDR = ("198.18.0.80", 40000)
OTHERS = [("198.18.0.81", 40000), ("198.18.0.80", 40001), ("198.18.60.1", 1194), ("198.18.0.82", 40000)]


def _settings():
    from appliance.openvpn.server import AddressPool, ServerSettings
    from appliance.openvpn.session import Role, SessionConfig
    from appliance.openvpn.tls import TlsSettings

    from . import harness as h
    p = h.pki()
    stls = TlsSettings(p["ca"], *p["server"], True, remote_cert_tls="client")
    return ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 verify_user=lambda u, pw, cn: pw == "right",
                                                 random_bytes=h.Counter("refusal-session")),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
        random_bytes=h.Counter("refusal-dispatcher"))


@functools.lru_cache(maxsize=1)
def _template():
    """(settings, the remnant's parts, the client's packets): a wrong password refused, the
    server's answer (key-method message and AUTH_FAILED) lost."""
    from appliance.openvpn.server import ServerDispatcher
    from appliance.openvpn.session import Role, Session, SessionConfig
    from appliance.openvpn.tls import TlsSettings
    from appliance.openvpn.wrapping import PlainWrapper

    from . import harness as h
    p = h.pki()
    st = _settings()
    d = ServerDispatcher(st, 0.0)
    a = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False, remote_cert_tls="server"),
                              PlainWrapper, username="alice", password="wrong",
                              random_bytes=h.Counter("refusal-client")), 0.0)
    a.start(0.0)
    captured: list[bytes] = []
    rec = None
    for _ in range(60):
        for pkt in a.take_outgoing():
            captured.append(bytes(pkt))
            d.receive(pkt, ADDR, 0.5)
        rec = d.by_addr.get(ADDR, rec)
        if rec is not None and rec.session.closed:
            break
        for pkt, to in d.take_outgoing():
            if to == ADDR:
                a.receive(pkt, 0.5)
    assert rec is not None and rec.session.closed, "the wrong password was not refused"
    lost = [pkt for pkt, to in d.take_outgoing() if to == ADDR]
    assert lost, "the refusal sent nothing"
    r = d.refusals.get(ADDR)
    assert r is not None, "no remnant kept"
    parts = types.SimpleNamespace(own_sid=r.own_sid, peer_sid=r.peer_sid,
                                  reliables={k: copy.deepcopy(v) for k, v in r.reliables.items()})
    return st, parts, captured


def _fresh():
    """A dispatcher holding a copy of the template's remnant, made by RefusedLogins.keep."""
    from appliance.openvpn.server import ServerDispatcher
    from appliance.openvpn.wrapping import PlainWrapper
    st, parts, captured = _template()
    d = ServerDispatcher(st, 0.0)
    keys = {k: types.SimpleNamespace(key_id=k, reliable=copy.deepcopy(rel)) for k, rel in parts.reliables.items()}
    session = types.SimpleNamespace(keys=keys, own_sid=parts.own_sid, peer_sid=parts.peer_sid, wrapper=PlainWrapper())
    r = d.refusals.keep(ADDR, session, d._count)
    assert r is not None
    msgs = {(k, m.msg_id): (m.op, bytes(m.payload)) for k, rel in r.reliables.items() for m in rel.inflight.values()}
    return d, r, msgs, captured


def _parse(pkt: bytes):
    from appliance.openvpn.opcodes import OPCODE_SHIFT
    from appliance.openvpn.packet import decode_body_untrusted
    op = pkt[0] >> OPCODE_SHIFT
    return op, pkt[0] & 7, bytes(pkt[1:9]), decode_body_untrusted(op, bytes(pkt[9:]))


def _control(op: int, key_id: int, sid: bytes, acks: list[int], ack_sid: bytes | None, msg_id: int | None,
             payload: bytes) -> bytes:
    from appliance.openvpn.opcodes import OPCODE_SHIFT
    from appliance.openvpn.packet import encode_body
    return bytes(((op << OPCODE_SHIFT) | key_id,)) + sid + encode_body(acks, ack_sid if acks else None, msg_id,
                                                                           payload)


def make_refusal_remnant():
    from appliance.openvpn.opcodes import Op
    from appliance.openvpn.refusals import REFUSAL_READS

    _template()

    def one(data: bytes) -> None:
        d, r, msgs, captured = _fresh()
        until = REFUSED_AT + HOLD_MAX
        per_msg: dict[tuple[int, int], int] = {}
        now = 0.5
        for step in data.split(SEP)[:24]:
            if len(step) < 3:
                continue
            op, a, b, body = step[0] % 8, step[1], step[2], step[3:]
            sent: list[tuple[bytes, tuple]] = []           # what this step sends to the server
            if op == 0:
                sent.append((body, ADDR))
            elif op == 1:
                sent.append((body, OTHERS[a % 4]))
            elif op == 2:
                sid = r.peer_sid if not b & 1 else bytes(x ^ 1 for x in r.peer_sid)
                acks = [int.from_bytes(body[i:i + 4].ljust(4, b"\0"), "big") % 8 for i in range(0, 4 * (b % 5), 4)]
                opc = (Op.CONTROL_V1, Op.ACK_V1, Op.CONTROL_HARD_RESET_CLIENT_V2, Op.CONTROL_SOFT_RESET_V1,
                       Op.CONTROL_HARD_RESET_CLIENT_V3, Op.DATA_V1, Op.DATA_V2)[a % 7]
                mid = None if opc == Op.ACK_V1 else int.from_bytes(body[-2:].rjust(2, b"\0"), "big") % 6
                try:
                    pkt = _control(int(opc), a >> 4 & 7, sid, acks, r.own_sid if not b & 2 else sid, mid, body[:200])
                except Exception:           # noqa: BLE001 -- our own encoder's limits, not the product's
                    continue
                sent.append((pkt, OTHERS[a % 4] if b & 0x80 else ADDR))
            elif op == 3:
                pkt = bytearray(captured[a % len(captured)])
                if b & 0x40 and pkt:
                    pkt[b % len(pkt)] ^= 1 << (b >> 3 & 7)
                elif b & 0x20:
                    del pkt[b % 64:]
                sent.append((bytes(pkt), OTHERS[a % 4] if b & 0x80 else ADDR))
            elif op == 4:
                now += a / 20
            elif op == 5:
                ids = [i for i in range(8) if a >> i & 1]
                sent.append((_control(int(Op.ACK_V1), 0, r.peer_sid, ids, r.own_sid, None, b""), ADDR))
            elif op == 6:
                # The client's first packet with a new session id: a restart.
                first = captured[0]
                sent.append((first[:1] + bytes(x ^ (a | 1) for x in first[1:9]) + first[9:], ADDR))
            else:
                sent += [(body, ADDR)] * (b % 40)
            for pkt, frm in sent:
                d.receive(pkt, frm, now)
            d.handle_timer(now)
            resets_from = {frm for pkt, frm in sent
                           if pkt and pkt[0] >> 3 in (Op.CONTROL_HARD_RESET_CLIENT_V2, Op.CONTROL_HARD_RESET_CLIENT_V3)}
            answered = False
            for pkt, to in d.take_outgoing():
                pkt = bytes(pkt)
                kind = pkt[0] >> 3 if pkt else None
                if kind == Op.CONTROL_HARD_RESET_SERVER_V2:
                    assert to in resets_from, f"a server reset to {to}, which sent none in this step"
                    answered = answered or to == ADDR
                    continue
                assert to == ADDR, f"a packet (opcode {kind}) to {to}, not the remnant's address"
                assert now < until, f"a resend at {now:.2f}, past the hold ({until:.2f})"
                opc, key_id, sid, cb = _parse(pkt)
                assert sid == r.own_sid and not cb.acks, "the remnant sent something not its own, or acks"
                key = (key_id, cb.msg_id)
                assert key in msgs and msgs[key] == (opc, bytes(cb.payload)), \
                    f"the remnant sent a message it did not hold: key {key_id} id {cb.msg_id}"
                per_msg[key] = per_msg.get(key, 0) + 1
                assert per_msg[key] <= 1 + len(msgs), f"message {key} resent {per_msg[key]} times"
            if op == 6:
                # The client restarted: its new session is answered as any (the remnant holds no
                # address against it).
                assert answered, "a new session's hard reset from the remnant's address went unanswered"
            live = d.refusals.get(ADDR)
            if live is r:
                assert r.reads <= REFUSAL_READS + sum(1 for _, f in sent if f == ADDR) + 64
                for rel in r.reliables.values():
                    assert not rel.recv_buffer and not rel.pending_acks, "the remnant read a message or owes an ack"
                if now >= until:
                    assert False, f"the remnant still held at {now:.2f}, past its hold ({until:.2f})"
            assert d.admission.n_established == 0, "a session was established"
            if ADDR not in resets_from and live is r:
                assert d.by_addr.get(ADDR) is None and d.pending.get(ADDR) is None, \
                    "a session record for the remnant's address without a new reset from it"
            assert len(d.refusals) <= 1
    return one


def seeds() -> list[bytes]:
    def st(op: int, a: int = 0, b: int = 0, body: bytes = b"") -> bytes:
        return bytes((op, a, b)) + body
    ack_all = st(5, 0xFF)
    tick = st(4, 40)
    out = [SEP.join([tick, tick, tick]), SEP.join([ack_all, tick]), SEP.join([tick, ack_all, tick, tick]),
           SEP.join([st(0, 0, 0, b"\x20" + bytes(40)), tick, tick, tick]),
           SEP.join([st(2, 0, 3, b"\0\0\0\1\0\0\0\2\0\0\0\3hello"), tick, st(2, 1, 2), tick, tick]),
           SEP.join([st(3, i, 0x40 + i) for i in range(6)] + [tick, tick, tick]),
           SEP.join([st(3, i, 0x80) for i in range(6)] + [tick]),
           SEP.join([st(6), tick, tick, tick]), SEP.join([st(7, 0, 39, b"\x28" + bytes(30)), tick, tick]),
           SEP.join([st(1, 2, 0, b"\x38" + bytes(40)), st(2, 2, 0x83), tick, tick, tick])]
    return out
