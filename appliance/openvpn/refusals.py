"""What stays of a login refused over UDP: its last messages, resent until the client acks them.

Why: a login refused before its session was up (a wrong password, a deferred `0`, client-connect
saying no, a full server's TEMP) is told so by our key-method message and AUTH_FAILED (tls-verify
saying no: by its notice, tls.REFUSAL_NOTICE), and the session ends in the same step -- logged, counted, and removed from every
book (management, status, learn-address, max-clients, the pool) at once. Over UDP that last
datagram may be lost; forgotten with the session, it was never sent again, and Debian's client,
told nothing after its certificate check, waited out its hand-window (60 s; flaky44/flaky45).
The same for an established client refused at its renegotiation (its password no longer good,
another certificate, tls-verify's no): told AUTH_FAILED on the new key and forgotten, it learnt
of a lost one only when that renegotiation timed out, 60 s later (atk47).
OpenVPN 2.6's server keeps the whole refused instance scheduled_exit_interval (5 s) after
AUTH_FAILED (push.c send_auth_failed -> schedule_exit), retransmitting. Ours keeps less: a
RefusedLogin holds the session's control-channel wrapper, its session ids and the reliability
layers with the unacknowledged messages -- no address from the pool, no peer-id, no common name,
no TLS state, no place in any book -- for REFUSAL_HOLD s at most, or until the client has acked
everything. Meanwhile the client's packets on that session are read for their acks only: no data,
no message, no new handshake or renegotiation on it.

Bounded: REFUSALS_MAX at once (a flood of refused logins must not hold unbounded memory: the
oldest goes first, counted); each reads at most REFUSAL_READS packets; one per address (a new
session from the address, past the cookie exchange, drops it at once: server.py
_create_session); all dropped when the server stops or reloads. One holds 2.3 KB of Python heap
with no tls-auth (lab/refusal_memory.py).

TCP needs none of this: the stream carries AUTH_FAILED reliably (the kernel retransmits what is
lost), so the dispatcher never makes one for a TCP session (server.py _collect). The connection
itself is kept until the client closes it, REFUSAL_HOLD s at most, for the same reason as 2.6's
schedule_exit: a close at once lost what was not sent yet (gateway/refused_streams.py, review47b).
"""
from __future__ import annotations

from collections import OrderedDict

from .errors import BadPacket, PacketIdExhausted
from .opcodes import CONTROL_OPS, OPCODE_SHIFT
from .packet import decode_body_untrusted, encode_body, refuse_undefined_sid_untrusted
from .reliable import ReliableChannel
from .timerheap import TimerHeap

# As OpenVPN 2.6's scheduled_exit_interval for a refused client (options.c: 5 s), timed from
# the refusal's sending. The reliability layer resends an unacked message after 2 s, then 4 s
# more: within the hold AUTH_FAILED goes out twice (at 0 and 2 s), as from 2.6's server.
REFUSAL_HOLD = 5.0
# Refused logins kept at once. Each holds a wrapper and a few control messages (a key-method
# message and AUTH_FAILED: 2.3 KB measured, plus a tls-auth/tls-crypt wrapper's contexts); a refusal
# needs a full TLS handshake (a valid certificate for most), so they come at handshake rates,
# and 256 within 5 s is far past any honest rush of wrong passwords.
REFUSALS_MAX = 256
# Packets from the client one refused login reads (unwrapping costs an HMAC or a decryption):
# an honest client sends a few acks; past this its packets are dropped, counted.
REFUSAL_READS = 32
# Counters (the dispatcher's drop counters, server.py drop_counters).
EVICTED = "refused login's AUTH_FAILED no longer resent (too many refused at once)"
IGNORED = "packet for a refused login (read for its acks only)"
UNREADABLE = "unreadable packet for a refused login"


class RefusedLogin:
    """The remnant of one refused UDP session (see the module docstring)."""

    __slots__ = ("addr", "own_sid", "peer_sid", "wrapper", "reliables", "until", "reads", "armed", "alive")

    def __init__(self, addr, own_sid: bytes, peer_sid: bytes, wrapper, reliables: dict[int, ReliableChannel],
                 until: float) -> None:
        self.addr = addr
        self.own_sid = own_sid
        self.peer_sid = peer_sid
        self.wrapper = wrapper
        self.reliables = reliables
        self.until = until
        self.reads = 0
        self.armed: float | None = None       # TimerHeap's
        self.alive = True

    @property
    def acked(self) -> bool:
        return all(r.all_acked() for r in self.reliables.values())

    def receive(self, packet: bytes, now: float, count) -> None:
        """One control packet of the refused session: its acks taken, nothing else read.
        `count(reason)` notes what is dropped."""
        self.reads += 1
        if self.reads > REFUSAL_READS:
            count(IGNORED)
            return
        try:
            refuse_undefined_sid_untrusted(packet)
            op_b, sender_sid, body = self.wrapper.unwrap_untrusted(bytes(packet), now)
            op = op_b >> OPCODE_SHIFT
            if op not in CONTROL_OPS or sender_sid != self.peer_sid:
                raise BadPacket("not the refused session's")
            cb = decode_body_untrusted(op, body)
        except BadPacket:
            count(UNREADABLE)
            return
        rel = self.reliables.get(op_b & 7)
        if not cb.acks or cb.peer_sid != self.own_sid or rel is None:
            count(IGNORED)
            return
        rel.process_acks(cb.acks)

    def due(self, now: float) -> list[bytes]:
        """The messages whose retransmission is due, wrapped (no acks on them: we read nothing)."""
        out = []
        for key_id, rel in self.reliables.items():
            for m in rel.due(now):
                body = encode_body([], None, m.msg_id, m.payload)
                out.append(self.wrapper.wrap((m.op << OPCODE_SHIFT) | key_id, self.own_sid, body, now))
        return out

    def next_deadline(self) -> float:
        d = self.until
        for rel in self.reliables.values():
            r = rel.next_deadline()
            if r is not None and r < d:
                d = r
        return d


def _retire(r: RefusedLogin) -> None:
    """`r` is over: what it held goes now. Why not left to the garbage collector: the timer heap
    keeps a dropped one's entry until its time surfaces (timerheap.py's lazy invalidation), and
    under a flood of refusals REFUSALS_MAX is passed by evictions -- each stale entry then holds
    only this emptied object, not its messages and wrapper."""
    r.alive = False
    r.reliables = {}
    r.wrapper = None


class RefusedLogins:
    """The server's RefusedLogin remnants, by client address, oldest first (REFUSALS_MAX)."""

    def __init__(self) -> None:
        self.by_addr: OrderedDict[object, RefusedLogin] = OrderedDict()
        self._timers = TimerHeap()

    def __len__(self) -> int:
        return len(self.by_addr)

    def timer_entries(self) -> int:
        """Entries in the timer heap, stale ones included (a soak's book: bounded by the remnants
        kept within REFUSAL_HOLD, each entry surfacing and dropped at most that long after)."""
        return len(self._timers)

    def keep(self, addr, session, count) -> RefusedLogin | None:
        """What of `session` (refused, closed, not released yet) its last messages need, kept
        until acked or REFUSAL_HOLD s after they were first sent; None when all is acked already.
        The time comes from the reliability layer (each message's deadline less its timeout is
        when it was last sent): the session hands no clock to its owner's _collect."""
        rels: dict[int, ReliableChannel] = {}
        sent_at = None
        for ks in session.keys.values():
            rel = ks.reliable
            if rel.all_acked():
                continue
            rel.recv_buffer, rel.recv_buffered, rel.pending_acks = {}, 0, []     # nothing more is read
            rels[ks.key_id] = rel
            for m in rel.inflight.values():
                if m.sent and (sent_at is None or m.deadline - m.timeout > sent_at):
                    sent_at = m.deadline - m.timeout
        if not rels or sent_at is None or session.peer_sid is None:
            return None
        self.drop(addr)
        while len(self.by_addr) >= REFUSALS_MAX:
            _, old = self.by_addr.popitem(last=False)
            _retire(old)
            count(EVICTED)
        r = RefusedLogin(addr, session.own_sid, session.peer_sid, session.wrapper, rels, sent_at + REFUSAL_HOLD)
        self.by_addr[addr] = r
        self._timers.arm(r, r.next_deadline())
        return r

    def get(self, addr) -> RefusedLogin | None:
        return self.by_addr.get(addr)

    def drop(self, addr) -> None:
        r = self.by_addr.pop(addr, None)
        if r is not None:
            _retire(r)
            if not self.by_addr:
                self._forget_timers()

    def clear(self) -> None:
        for r in self.by_addr.values():
            _retire(r)
        self.by_addr.clear()
        self._forget_timers()

    def _forget_timers(self) -> None:
        """No remnant left: every heap entry is stale. Why drop them now (review47f): the server
        services this heap only while a remnant lives, so a remnant ended by its client's ack
        left its entry (and its emptied object) there until the next refusal -- SIGUSR2's
        'refusal timers' stayed 1 on an idle server, which a soak reads as not level."""
        self._timers = TimerHeap()

    def after_receive(self, r: RefusedLogin) -> None:
        """After r.receive: all acked, it goes."""
        if r.alive and r.acked:
            self.drop(r.addr)

    def next_deadline(self) -> float | None:
        return self._timers.peek()

    def handle_timer(self, now: float, out: list) -> None:
        """Resend what is due (appended to `out` as (packet, addr)); drop those whose hold is over.
        A remnant whose turn raises (our bug, a MemoryError) is dropped and the others due with it
        still get theirs; the first such error is raised after them, for the caller's guard to
        count. Why: the due ones are taken off the heap first, so a raise midway left the rest
        unarmed -- never resent, never dropped, held until evicted."""
        failed: Exception | None = None
        for r in self._timers.pop_due(now):
            try:
                if now >= r.until or r.acked:
                    self.drop(r.addr)
                    continue
                try:
                    out.extend((p, r.addr) for p in r.due(now))
                except PacketIdExhausted:
                    self.drop(r.addr)
                    continue
                self._timers.arm(r, r.next_deadline())
            except Exception as e:  # noqa: BLE001 - our bug on this remnant: it goes, the others go on
                self.drop(r.addr)
                failed = failed or e
        if failed is not None:
            raise failed
