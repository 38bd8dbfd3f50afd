"""The control channel's reliability layer: message ids, selective acks, retransmission.

One ReliableChannel per key state (message ids restart at 0 for each key id). Sending: at most
`window` unacked messages in flight; each is retransmitted after its timeout, which doubles on
every resend (exponential backoff, as OpenVPN's reliable.c); a message is resent early once three
later ones were acked. Receiving: ids inside the receive window are buffered and released strictly
in order; every id received inside the window or below it (duplicates too) is acked, because a lost
ack is what made the peer resend; one beyond the window is dropped unacked (the peer resends it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .errors import PacketIdExhausted, RemoteProtocolError

SEND_WINDOW = 6
RECV_WINDOW = 12
# Payload bytes held out of order (past a gap) per key state. Why: nothing else bounds a control
# packet's size (~64 KB on TCP, or over UDP with IP fragments), so 11 held messages were ~700 KB
# per key state for a peer that never fills its gap. Honest peers send ~1.3 KB messages (tls-mtu
# 1250), ~14 KB for a full window; OpenVPN drops a control packet over its frame buffer.
RECV_BUFFER_BYTES = 64 << 10
# Messages waiting behind the send window per key state. Why: every reply the peer's input makes
# (a TLS 1.3 KeyUpdate answering one that asks for it, a handshake's flight, the push) waits here
# until the peer acknowledges what is in flight; an authenticated peer that never acknowledges
# but goes on sending requested KeyUpdates (64 a second, the control budget's rate) had the
# queue grow by ~60 messages a second for as long as the key lived. Honest peers acknowledge
# each flight: the largest honest backlog is a push of MAX_PUSHED_OPTIONS long options (~270
# messages) or a certificate chain at OpenSSL's 100 KB limit (~90). Each message is at most
# TLS_MTU bytes (control.py _queue_tls), so this holds ~650 KB at most; past it the session ends.
SEND_QUEUE_MAX = 512
FAST_RETRANSMIT_ACKS = 3
# Acks sent lately, sent again in the room of each later packet (OpenVPN 2.6's ack_mru, reliable.c
# copy_acks_to_mru / reliable_ack_write; its RELIABLE_ACK_SIZE). Why: an ack is otherwise sent
# once, and the server's reset is never resent (its stateless cookie exchange): a client whose
# first packet after it was lost resent its ClientHello with no ack of that reset, which the
# server must refuse (no cookie to check) -- stuck until hand-window, where Debian's client,
# acking again, got in at its first resend.
RECENT_ACKS_KEPT = 8
MAX_TIMEOUT = 60.0
MAX_MSG_ID = 0xFFFFFFFF


@dataclass(slots=True)
class Outgoing:
    msg_id: int
    op: int
    payload: bytes
    deadline: float
    timeout: float
    sent: bool = False
    later_acked: int = 0


@dataclass
class ReliableChannel:
    initial_timeout: float = 2.0
    retransmit: bool = True          # False on TCP: the stream does not lose packets
    next_send_id: int = 0
    next_recv_id: int = 0
    queue: deque = field(default_factory=deque)          # (op, payload) not yet given an id
    inflight: dict = field(default_factory=dict)         # msg_id -> Outgoing
    recv_buffer: dict = field(default_factory=dict)      # msg_id -> (op, payload)
    recv_buffered: int = 0                               # payload bytes in recv_buffer
    pending_acks: list = field(default_factory=list)
    recent_acks: list = field(default_factory=list)      # acks sent lately, newest first
    retransmissions: int = 0

    # ---- sending ----
    def enqueue(self, op: int, payload: bytes) -> None:
        self.queue.append((op, payload))

    def _fill_window(self, now: float) -> None:
        while self.queue and len(self.inflight) < SEND_WINDOW:
            if self.next_send_id > MAX_MSG_ID:
                # 32-bit message ids on the wire: end the key state rather than wrap (the
                # session turns this into a closed session, never an exception to its caller).
                raise PacketIdExhausted("control channel message ids used up for this key")
            op, payload = self.queue.popleft()
            m = Outgoing(self.next_send_id, op, payload, now, self.initial_timeout)
            self.inflight[m.msg_id] = m
            self.next_send_id += 1

    def due(self, now: float) -> list[Outgoing]:
        """Messages to put on the wire now (first sends and retransmissions), in id order.
        RemoteProtocolError when more than SEND_QUEUE_MAX wait behind the window."""
        if self.queue:
            self._fill_window(now)
            if len(self.queue) > SEND_QUEUE_MAX:
                raise RemoteProtocolError(f"control channel: over {SEND_QUEUE_MAX} messages wait for the peer "
                                          f"to acknowledge the {len(self.inflight)} in flight")
        out = []
        # `inflight` is in id order already: ids are given in increasing order as messages go
        # in (_fill_window) and only acks take them out; no sort per flush.
        for m in self.inflight.values():
            if not m.sent or (self.retransmit and (now >= m.deadline or m.later_acked >= FAST_RETRANSMIT_ACKS)):
                if m.sent:
                    self.retransmissions += 1
                    m.timeout = min(m.timeout * 2, MAX_TIMEOUT)
                m.sent = True
                m.later_acked = 0
                m.deadline = now + m.timeout
                out.append(m)
        return out

    def process_acks(self, acks: list[int]) -> None:
        for a in acks:
            if self.inflight.pop(a, None) is not None:
                for m in self.inflight.values():
                    if m.msg_id < a:
                        m.later_acked += 1

    def all_acked(self) -> bool:
        return not self.inflight and not self.queue

    def has_unsent(self) -> bool:
        """A message waits for its first send (queued, or given an id and not sent yet): the
        peer waits for it, unlike an ACK or a retransmission's next round."""
        return bool(self.queue) or any(not m.sent for m in self.inflight.values())

    def next_deadline(self) -> float | None:
        if not self.retransmit or not self.inflight:
            return None
        ds = [m.deadline for m in self.inflight.values() if m.sent]
        return min(ds) if ds else None

    # ---- receiving ----
    def receive(self, msg_id: int, op: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Record an incoming message; return the messages now deliverable in order. A message
        past a gap that would hold more than RECV_BUFFER_BYTES is dropped unacknowledged (the
        peer resends it)."""
        held = self.recv_buffer
        if msg_id >= self.next_recv_id + RECV_WINDOW:
            # Beyond the window: neither kept nor acked, as OpenVPN 2.6 (reliable.c
            # reliable_wont_break_sequentiality, checked before the ack is recorded). An ack
            # here told the peer it could forget a message we did not keep: never resent, it
            # would leave a gap no later message fills.
            return []
        if (msg_id > self.next_recv_id and msg_id not in held
                and self.recv_buffered + len(payload) > RECV_BUFFER_BYTES):
            return []
        if msg_id not in self.pending_acks:
            self.pending_acks.append(msg_id)
        if msg_id < self.next_recv_id:
            return []  # a duplicate, acked again above: the peer resent it because our ack was lost
        if msg_id not in held:
            held[msg_id] = (op, payload)
            self.recv_buffered += len(payload)
        out = []
        while self.next_recv_id in held:
            m = held.pop(self.next_recv_id)
            self.recv_buffered -= len(m[1])
            out.append(m)
            self.next_recv_id += 1
        return out

    def take_acks(self, limit: int) -> list[int]:
        """The acks for one outgoing packet: those not sent yet (at most `limit`), then, in the
        room left, those sent lately (RECENT_ACKS_KEPT), newest first, as OpenVPN 2.6 writes its
        ack_mru. Only the unsent ones are consumed: a packet goes out for them or for a message,
        never for the recent ones alone."""
        acks = self.pending_acks[:limit]
        del self.pending_acks[:limit]
        recent = self.recent_acks
        for a in reversed(acks):
            if a in recent:
                recent.remove(a)
            recent.insert(0, a)
        del recent[RECENT_ACKS_KEPT:]
        return recent[:limit]
