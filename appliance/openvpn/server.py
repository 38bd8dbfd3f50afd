"""The server side of the engine: many client Sessions behind one UDP port (or many TCP streams).

Contract: like Session, sans-I/O. `receive(packet, addr, now)` takes one OpenVPN packet from a
client address (UDP: the datagram's source; TCP: a connection key) and returns
`(client, plaintexts)`; `take_outgoing()` returns `(packet, addr)` pairs to send; `encrypt_to(ip,
payload)` seals a TUN packet for the client owning that address. Events come out as
`(client, event)` pairs.

Protection before state (why the first packets are handled here and not in Session):
- With tls-auth / tls-crypt / tls-crypt-v2 a packet that does not authenticate costs nothing but a
  counter, and the wrapper is checked before any parsing.
- On UDP, a HARD_RESET_CLIENT is answered statelessly as OpenVPN 2.6 does: our session id is an HMAC
  cookie over (time slot, client address, client session id). State is created only when the
  client's next packet acks our reset and echoes a valid cookie, so a flood of spoofed resets
  allocates nothing. tls-crypt-v2 clients doing early negotiation are asked to resend their
  wrapped key (P_CONTROL_WKC_V1) so no per-client key is kept either.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import Callable

from . import wrapping
from .addresspool import AddressPool, AddressPool6
from .admission import Admission
from .clientpush import REPLACED_BY_RESTART, ClientPush
from .cookie import CookieJar
from .events import ClientFloated, SessionClosed, TunnelUp, V2VerifyRequested
from .iroutes import IrouteTable
from .errors import BadPacket
from .opcodes import (CONTROL_FROM_CLIENT_OPS, EARLY_NEG_FLAG_RESEND_WKC, EARLY_NEG_FLAGS, EARLY_NEG_START,
                      HARD_RESET_CLIENT_OPS, NO_PEER_ID, WKC_OPS, Op, op_byte)
from .peerids import PeerIds
from .packet import decode_body_untrusted, encode_body, encode_tlv, refuse_undefined_sid_untrusted
from .pushedsignal import restart_message
from .refusals import RefusedLogins
from .server_model import ClientRecord, InternalError, ServerSettings, StreamKey, V2Key
from .session import EXITED_REASONS, Session
from .timerheap import TimerHeap
from .v2keycache import ClientKeyCache
from .tls import context_for

# A client's IPv6 packet from fe80::/10 (router and neighbour solicitations, MLD: Windows and
# other hosts send them on any interface with IPv6): dropped, as OpenVPN 2.6 drops it (multi.c,
# "do nothing, for now" -- without the "bad source address" line it logs for other sources).
# Counted under this name, which the server's drop line shows; such drops alone never make a
# drop line appear (gateway/loop.py Faults.quiet), where 2.6's log stays quiet.
LINK_LOCAL_SOURCE = "IPv6 link-local source (fe80::/10, as 2.6 dropped unlogged)"
# A UDP client that left by its own word (an OCC exit: ended at once, as 2.6; or its EXIT's hold
# over) may have packets on the way, and goes on sending for its explicit-exit-notify wait: for
# DEPARTED_QUIET s its data from its address naming its peer-id is counted under this name, a
# quiet drop -- not "data for unknown peer-id", nor (its peer-id already another client's, given
# out at once as by 2.6) a failed authentication in that client's session, each of which made a
# drop line for a normal exit. At most DEPARTED_MAX leavers remembered (the oldest forgotten).
DEPARTED_DATA = "data from a client that has just left (its exit notification)"
DEPARTED_QUIET = 10.0
DEPARTED_MAX = 1024
QUIET_DROPS = frozenset({LINK_LOCAL_SOURCE, DEPARTED_DATA})


def _link_local(p) -> bool:
    """Whether IPv6 packet p's source is in fe80::/10."""
    return p[8] == 0xFE and p[9] & 0xC0 == 0x80


# An inner source no host sends from (RFC 1122 3.2.1.3, RFC 4291 2.5.2-2.7): dropped from every
# client, even one whose iroute covers it. 2.6 checks a source against its routes alone, so a
# client with a wide iroute (`iroute 0.0.0.0 0.0.0.0`, `iroute-ipv6 ::/0`: a site's gateway) sends
# multicast, broadcast, loopback and unspecified sources into its TUN and, with client-to-client,
# to every other client (seen with Debian's 2.6.14 server) -- packets that look like their own
# host's or a group's. Ours did the same.
NON_HOST_SOURCE = "inner packet from an address no host sends from"


def _non_host4(src) -> bool:
    """0.0.0.0/8, 127.0.0.0/8, multicast 224.0.0.0/4 and 255.255.255.255. Not the rest of
    240.0.0.0/4: Linux hosts take it as unicast (since 2.6.25) and some sites number LANs from it
    -- a router client's iroute'd 240.1.0.0/16 passes as with 2.6 (review48a)."""
    return src[0] == 0 or src[0] == 127 or 224 <= src[0] < 240 or src == b"\xff\xff\xff\xff"


def _non_host6(src) -> bool:
    """Multicast ff00::/8, the unspecified :: and loopback ::1, and IPv4-mapped ::ffff:0:0/96
    (never on the wire, RFC 4291 2.5.5.2: a dual-stack socket on the server -- its DNS on the
    tunnel address -- reads ::ffff:127.0.0.1 as its own 127.0.0.1; review48a)."""
    if src[0] == 0xFF:
        return True
    if any(src[:10]):
        return False
    return (src[10] == src[11] == 0xFF) or (not any(src[10:15]) and src[15] <= 1)

# A client's moves (float) make at most one ClientFloated event, so one log line, per this many
# seconds; the others are counted and the next event says how many there were.
FLOAT_REPORT_EVERY = 5.0
# A full table of handshakes in progress (max_half_open) makes room for a new one by ending its
# oldest, if that one is at least this old (seconds); see _make_room.
HALF_OPEN_EVICT_AGE = 5.0
V2_HELD_MAX = 8          # packets kept per session while tls-crypt-v2-verify decides
# Keys of cookie-less tls-crypt-v2 resets answered with a cookie (a session id held by a handshake
# elsewhere, _on_reset), kept for the sender's next packet: one per answer, so at most
# connect-freq-initial's rate come in (10 a second by default); the oldest go first.
COOKIE_KEYS_KEPT = 1024

__all__ = ["AddressPool", "AddressPool6", "ClientRecord", "ServerDispatcher", "ServerSettings", "StreamKey", "V2Key"]


class ServerDispatcher(ClientPush):
    """Many client Sessions behind one port; see the module docstring for the contract.

    Timers: one TimerHeap (timerheap.py) of all sessions, re-armed whenever the dispatcher touched
    a session (`rearm`); next_deadline()/handle_timer() cost O(log n) per due session instead of
    a scan of all clients.
    """

    def __init__(self, st: ServerSettings, now: float) -> None:
        self.st = st
        self.cookies = CookieJar(st.random_bytes(32), st.hand_window)
        self._old_cookies: CookieJar | None = None     # before a reload changed hand-window
        self._old_cookies_until: float | None = None    # when its last cookie lapses (cookie_valid)
        self.by_addr: dict[object, ClientRecord] = {}
        # A new session from the address of an established client, until it is established too.
        self.pending: dict[object, ClientRecord] = {}
        self.by_peer_id: dict[int, ClientRecord] = {}
        # A restart waiting in `pending` under the peer-id of the client it restarts (which
        # by_peer_id still leads to): it takes by_peer_id over when that client goes.
        self.heirs: dict[int, ClientRecord] = {}
        self.peer_ids = PeerIds()                          # the numbers in use (peerids.py)
        # TCP: the peer-id each connection took when accepted (accepted()), until its session is made.
        self.stream_peer_ids: dict[object, int] = {}
        # Our bug while giving back what a session held (a pool's or the peer-ids' release):
        # the books may hold what no session does, until reconcile() (the gateway's 5 s timer).
        self.suspect = False
        self.by_vaddr: dict[str, ClientRecord] = {}
        self.by_vaddr4: dict[bytes, ClientRecord] = {}    # by_vaddr's IPv4 part, keyed as in headers
        self.iroutes = IrouteTable()
        self.iroutes6 = IrouteTable(128)                  # ccd iroute-ipv6
        self.out: list[tuple[bytes, object]] = []
        # Bytes of the resets answered before any client record exists (the stateless cookie
        # exchange): no client's, but OpenVPN 2.6 counts them in its server-wide write total
        # (load-stats; its top-level context sends them, forward.c link_write_bytes_global).
        self.stateless_written = 0
        self.events: deque = deque()
        self.stats: dict[str, int] = {}
        self.retired_stats: dict[str, int] = {}      # drop counters of sessions already gone
        self._internal_errors: list[InternalError] = []
        self._creating: ClientRecord | None = None      # the record _create is making (its clean-up)
        self.closed_streams: set = set()     # TCP connections whose session ended, until closed
        self.departed: OrderedDict = OrderedDict()   # UDP addr -> (peer-id, until): see DEPARTED_DATA
        self._tls_ctx = None
        self._stateless = self._make_wrapper(None)
        self._v2_keys: ClientKeyCache | None = None     # made at the first WKc
        # (addr, client session id) -> (V2Key, its stateless wrapper): cookie-less resets answered
        # with a cookie (_on_reset)
        self._cookie_keys: OrderedDict[tuple, tuple] = OrderedDict()
        self._timers = TimerHeap()
        self.admission = Admission(st)
        self._batch: dict[int, tuple[ClientRecord, Session]] | None = None   # begin_batch..end_batch
        self.stopping = False                 # told its clients RESTART: no new ones (restart_all)
        # Logins refused over UDP, gone from every book, whose AUTH_FAILED is resent until acked
        # (REFUSAL_HOLD s at most): refusals.py
        self.refusals = RefusedLogins()
        # Called with each client as it leaves (dev tap: the switch frees its MACs, l2switch.py).
        self.on_forget: "Callable[[ClientRecord], None] | None" = None
        # Called by reconcile() with the live clients (id -> record): the data path drops what it
        # holds of any other (dev tap: the MAC table; the broadcast budgets) -> how many entries.
        self.on_reconcile: "Callable[[dict[int, ClientRecord]], int] | None" = None
        # Records whose _forget met our bug: reconcile() retires their drop counters (the step
        # that does may not have run, and drop_counters reads only the live sessions).
        self._unsettled: list[ClientRecord] = []
        # Called with each client as its record is made (before its first packet is read), and
        # the record of the same client it restarts (UDP, same address) or None: the gateway
        # numbers it there, as OpenVPN 2.6 gives its client ID at multi_create_instance, and a
        # restart keeps its client's number (2.6 hands the reset to the address's instance).
        self.on_create: "Callable[[ClientRecord, ClientRecord | None], None] | None" = None

    def apply_settings(self, st: ServerSettings) -> None:
        """A reload's settings, for the handshakes that start from now on: the stateless first-
        packet check takes the new tls-auth / tls-crypt key too (it kept the old one, so after a
        key rotation no new client got in); sessions already running keep their own wrappers."""
        self.st = st
        self.admission.apply(st)            # connect-freq added or changed takes effect too
        if self.cookies.period != CookieJar.period_for(st.hand_window):
            # Cookies handed out from now on last the new hand-window. Those handed out before
            # stay good for their own (old) window, so a handshake under way is not cut off.
            self._old_cookies, self._old_cookies_until = self.cookies, None
            self.cookies = self.cookies.with_hand_window(st.hand_window)
        self._tls_ctx = None
        self._stateless = self._make_wrapper(None)
        self._v2_keys = None                  # the reload's tls-crypt-v2 server key, at its first WKc
        self.refusals.clear()                 # (each keeps the wrapper of the settings it was refused under)
        self._cookie_keys.clear()

    def tls_context(self):
        """The TLS context of the current settings, made once per settings (a reload's new CA,
        certificate and key): new sessions start with it, and a reload hands it to the sessions
        it keeps for their renegotiations."""
        if self._tls_ctx is None:
            self._tls_ctx = context_for(self.st.session_config(0).tls)   # the one start-up checked, unless changed
        return self._tls_ctx

    # ---------------------------------------------------------------- wrappers
    def _make_wrapper(self, v2: "V2Key | None", replay: tuple[int, float | None] = (64, 15.0)):
        """`replay`: a session's replay-window N T (its SessionConfig's); the stateless checks
        record no ids, so theirs does not matter."""
        st = self.st
        n, t = replay
        if v2 is not None:
            return wrapping.TlsCryptWrapper(v2.kc, True, replay_window=n, replay_time=t)
        # A client without a key of its own: the shared key's (beside tls-crypt-v2 too, as 2.6).
        kind = st.shared_protection if st.protection == "tls-crypt-v2" else st.protection
        if kind == "tls-auth":
            return wrapping.TlsAuthWrapper(st.static_key, st.key_direction, st.auth_digest, replay_window=n,
                                           replay_time=t)
        if kind == "tls-crypt":
            return wrapping.TlsCryptWrapper(st.static_key, True, replay_window=n, replay_time=t)
        if st.protection == "tls-crypt-v2":
            return None                     # only clients with a key of their own
        return wrapping.PlainWrapper()

    def _count(self, reason: str) -> None:
        self.stats[reason] = self.stats.get(reason, 0) + 1

    # ---------------------------------------------------------------- batches
    def begin_batch(self) -> None:
        """The caller read several datagrams at once: until end_batch, a session's control
        replies and ACKs wait, so one reply carries the ACKs of all its packets in the batch.
        Why: a client's flight cut in two packets (our client's ClientHello with its post-quantum
        key share, its certificate flight) was answered packet by packet: a lone ACK for the
        first, then the reply, two datagrams for one (the client side does the same,
        Session.begin_batch)."""
        self._batch = {}

    def end_batch(self, now: float) -> None:
        """Wrap and collect what the batch's sessions held back; a session whose flush raises
        (our bug) is noted in take_internal_errors, the others still get theirs."""
        batch, self._batch = self._batch, None
        for rec, s in (batch or {}).values():
            try:
                s.end_batch(now)
            except Exception as e:  # noqa: BLE001 - our bug in one session must not stop the others
                self._internal_errors.append(InternalError(rec, e, "flushing a client's batch"))
                continue
            if rec.alive and rec.session is s:
                self._collect(rec)
            else:
                # Ended within the batch (refused, failed): its last word (AUTH_FAILED, the
                # ACKs) still goes out, as it would have at once without a batch.
                for p in s.take_outgoing():
                    self.out.append((p, rec.addr))

    def _in_batch(self, rec: ClientRecord) -> None:
        """Before a control packet goes to `rec`'s session: inside a batch, hold its replies."""
        batch = self._batch
        if batch is not None and id(rec.session) not in batch:
            rec.session.begin_batch()
            batch[id(rec.session)] = (rec, rec.session)

    # ---------------------------------------------------------------- receive
    def receive(self, packet, addr, now: float) -> tuple[ClientRecord | None, list]:
        if not packet:
            return None, []
        b0 = packet[0]
        op = b0 >> 3
        if op == Op.DATA_V2:
            if len(packet) < 4:
                self._count("short packet")
                return None, []
            pid = int.from_bytes(packet[1:4], "big")
            rec = self.by_peer_id.get(pid)
            if (self.departed and (rec is None or rec.addr != addr) and addr not in self.by_addr
                    and self._departed(addr, pid, now)):
                # A leaver's late packet: its peer-id nobody's, or another client's by now (not
                # that client moving here: a float needs a packet its keys authenticate); a new
                # session from its address takes its packets as before.
                self._count(DEPARTED_DATA)
                return None, []
            if rec is None or (rec.tcp and rec.addr != addr):
                # Over TCP a connection carries one session: its packets are that session's
                # whatever peer-id they name (OpenVPN looks none up on TCP), never another
                # client's, opened with that client's keys.
                # OpenVPN 2.6 keeps a client's peer-id for a new TLS session from the same address
                # (its peer-id belongs to the instance, not the session), and its clients go on
                # sending the first session's peer-id after starting one in-process (after a
                # renegotiation failed, seen in the lab): such data is the new session's, found
                # by its address. Only what that session's keys authenticate is taken.
                rec = self.by_addr.get(addr)
                if rec is None:
                    self._count("data for unknown peer-id")
                    return None, []
            s = rec.session
            before = s.data_authenticated
            pts = s.receive(packet, now)
            if s.events:
                # Rare: an OCC exit (or anything else the session reports) must take effect now —
                # address released, no longer counted, nothing more sent to it.
                self._collect(rec)
                if not rec.alive:
                    return rec, []
            if rec.addr != addr and not rec.tcp and s.data_authenticated != before and s.established:
                # Only a packet that authenticated (and was no replay) may move the client: a
                # forged or replayed one from elsewhere must not redirect its traffic. Nor may
                # a session not admitted yet (_check_sources): a restart waiting in `pending`
                # moved away from the address it is kept under there.
                if not self._float(rec, addr, now):
                    return rec, []
            return rec, self._check_sources(rec, pts)
        if self.refusals.by_addr and self._to_refused(packet, op, addr, now):
            return None, []
        rec = self.by_addr.get(addr)
        if rec is None:
            # A restart waiting beside a session that has ended since (its own OCC exit, a
            # timeout, a kill) while it was still in its handshake: nobody holds the address in
            # by_addr any more, and its packets went to the stateless path for strangers, so
            # its handshake could only time out. Its packets are its own (promoted once
            # established, below).
            rec = self.pending.get(addr)
        if rec is not None:
            if op in CONTROL_FROM_CLIENT_OPS and len(packet) >= 9 and packet[1:9] != rec.session.peer_sid \
                    and rec.session.peer_sid is not None:
                return self._other_session(rec, packet, op, addr, now)
            if rec.v2_held is not None:
                self._hold_more(rec, packet)
                return rec, []
            packet = self._without_wkc(packet, op)
            if packet is None:
                return rec, []
            self._in_batch(rec)
            try:
                pts = rec.session.receive(packet, now)
            except Exception as e:  # noqa: BLE001 - our bug in this session: it ends (take_internal_errors)
                # A packet with this session's id got into the session, which raised midway:
                # its state is whatever the exception left. Dropping the packet and going on
                # was going on from there -- a handshake marked done whose peer checks had
                # raised read the peer's next messages unchecked. Ended here at once, not after
                # the batch: the next packets of this read (up to a batch of them) must not reach
                # it either. Data packets stay outside this: a forged one (peer-ids are small
                # numbers) must not end a session.
                self._internal_errors.append(InternalError(rec, e, "a client's control packet"))
                self._drop(rec, "internal error")
                return rec, []
            self._collect(rec)
            self._promote(rec)
            return rec, self._check_sources(rec, pts)
        if addr in self.closed_streams:
            self._count("packet on a TCP connection whose session ended")
            return None, []
        return self._new_client_packet(packet, addr, now)

    def _to_refused(self, packet, op: int, addr, now: float) -> bool:
        """A control packet of a refused login's session (refusals.py), read for its acks only:
        True when it was that session's (a packet naming another session id goes on as any)."""
        r = self.refusals.get(addr)
        if r is None or op not in CONTROL_FROM_CLIENT_OPS or bytes(packet[1:9]) != r.peer_sid:
            return False
        r.receive(packet, now, self._count)
        self.refusals.after_receive(r)
        return True

    def _other_session(self, rec: ClientRecord, packet, op: int, addr, now: float):
        """A control packet from a known address but another session id: the client restarted
        (same address and port), or somebody replays old packets. The running session is left
        alone; a new one starts through the stateless cookie exchange, and replaces the old one
        only once it is established (authenticated), so replayed packets cannot end a session."""
        if rec.tcp:
            # One TCP connection carries one session. A client that restarts opens a new
            # connection (OpenVPN's clients do); building a new session per reset on the same
            # stream would let one recv full of resets build thousands of TLS states at once.
            self._drop(rec, "client sent a new hard reset on its TCP connection")
            return None, []
        p = self.pending.get(addr)
        if p is not None and packet[1:9] == p.session.peer_sid:
            if p.v2_held is not None:
                self._hold_more(p, packet)
                return p, []
            packet = self._without_wkc(packet, op)
            if packet is None:
                return p, []
            try:
                p.session.receive(packet, now)
            except Exception as e:  # noqa: BLE001 - our bug: this pending session ends, as in receive()
                self._internal_errors.append(InternalError(p, e, "a waiting client's first packets"))
                self._drop(p, "internal error")
                return p, []
            self._collect(p)
            self._promote(p)
            return p, []
        return self._new_client_packet(packet, addr, now)

    def _without_wkc(self, packet, op: int):
        """A known session's packet with the tls-crypt-v2 wrapped key (if any) cut off; None
        (counted) if it does not parse."""
        if op not in WKC_OPS:
            return packet
        try:
            return wrapping.split_wkc_untrusted(bytes(packet))[0]
        except BadPacket as e:
            self._count(e.reason)
            return None

    def _promote(self, p: ClientRecord) -> None:
        """A pending session that got established takes its address over from the old one."""
        if self.pending.get(p.addr) is not p or not p.session.established:
            return
        del self.pending[p.addr]
        old = self.by_addr.get(p.addr)
        if old is not None and old is not p:
            self._drop(old, REPLACED_BY_RESTART)
        self.by_addr[p.addr] = p
        if self.heirs.get(p.peer_id) is p:
            del self.heirs[p.peer_id]
        holder = self.by_peer_id.get(p.peer_id)
        if holder is not None and holder is not p and holder.alive:
            # The client it restarts, moved away from this address meanwhile (a float): still
            # the same client (one OpenVPN 2.6 instance), whose number this one took.
            self._drop(holder, REPLACED_BY_RESTART)
        self.by_peer_id[p.peer_id] = p

    def _records(self) -> list[ClientRecord]:
        return list(self.by_addr.values()) + list(self.pending.values())

    def _check_sources(self, rec: ClientRecord, pts: list) -> list:
        """Inner packets must come from an address the server routes to this client (anti-
        spoofing), as OpenVPN 2.6 checks them: the source's route, longest prefix first, is the
        sender's. Being in the sender's own iroute is not enough: a narrower iroute or pool
        address of another client inside it is that client's, and so is an address the sender
        shares with a newer client (an ifconfig-push collision: the newer holds the route).
        A refused packet is no tunnel traffic, and `inactive` must not see it as such.

        Nothing passes before the client is admitted (its push sent): its session has data keys
        from the key exchange on, and a hostile client need not wait for the push to use them
        (cipher and peer-id are easy guesses), while a client-connect script may still refuse
        it -- with its address and iroutes already set. OpenVPN 2.6 drops a client's data until
        client-connect succeeded (CAS_CONNECT_DONE)."""
        if not pts:
            return pts
        if not rec.session.established:
            for p in pts:
                self._refused(rec, p, "data from a client not admitted yet")
            return []
        if self.st.layer2:
            return pts          # Ethernet frames: the switch checks their source MACs (l2switch.py)
        ok = []
        by_vaddr4 = self.by_vaddr4
        local4, local6 = self.st.local_ip4, self.st.local_ip6
        # (never the server's own address, even pushed to it by a ccd's `ifconfig-push`: 2.6's
        # lookup answers no client for it, so drops all such a client sends from it; review48a)
        own = rec.vaddr_packed if rec.vaddr_packed and by_vaddr4.get(rec.vaddr_packed) is rec \
            and rec.vaddr_packed != local4 else None
        # (its IPv6 address as its IPv4 one: only while routed to it -- learn-address may refuse it)
        own6 = rec.vaddr6 if rec.vaddr6 is not None and self.by_vaddr.get(rec.vaddr6) is rec else None
        for p in pts:
            v = p[0] >> 4 if len(p) >= 20 else 0
            if v == 6 and len(p) >= 40:
                if rec.vaddr6 is None and not rec.iroutes6:
                    self._refused(rec, p, LINK_LOCAL_SOURCE if _link_local(p) else "IPv6 inner packet (no server-ipv6)")
                    continue
                # As IPv4 below: the source's route, longest prefix first (an address of the
                # pool, a /128, before any iroute-ipv6), must be the sender's.
                src6 = bytes(p[8:24])
                text6 = str(ipaddress.IPv6Address(src6))
                if own6 is not None and text6 == own6:
                    ok.append(p)
                    continue
                if _link_local(p) or _non_host6(src6):
                    # (before the routes: a wide iroute-ipv6 covers them, but no client's are routed)
                    self._refused(rec, p, LINK_LOCAL_SOURCE if _link_local(p) else NON_HOST_SOURCE)
                    continue
                # (not the server's own address, by any route: its packets to other clients
                # would pass as the server's)
                owner = None if text6 == local6 else self.by_vaddr.get(text6)
                if owner is None and rec.iroutes6 and text6 != local6:
                    owner = self.iroutes6.lookup(src6)
                if owner is rec:
                    ok.append(p)
                else:
                    self._refused(rec, p, "inner packet with a source the client does not own")
                continue
            if v != 4:
                self._refused(rec, p, "inner packet not IP")
                continue
            src = p[12:16]
            if src == own:                      # the common case: its own address, still its route
                ok.append(p)
                continue
            src = bytes(src)
            if _non_host4(src):
                self._refused(rec, p, NON_HOST_SOURCE)
                continue
            owner = None if src == local4 else by_vaddr4.get(src)      # (as for IPv6)
            if owner is None and rec.iroutes and src != local4:
                owner = self.iroutes.lookup(src)
            if owner is rec:
                ok.append(p)
            else:
                self._refused(rec, p, "inner packet with a source the client does not own")
        return ok

    def _refused(self, rec: ClientRecord, p, reason: str) -> None:
        self._count(reason)
        s = rec.session
        s.not_traffic += len(p) + s.framing

    def _float(self, rec: ClientRecord, addr, now: float) -> bool:
        """Move a client to a new address; False (and nothing changed) if that is refused.

        Reported (ClientFloated, a log line) at most once per FLOAT_REPORT_EVERY seconds per
        client, the moves in between counted: every authenticated packet from a new address
        moves the client (as OpenVPN 2.6), so a client sending each packet from another of its
        own ports moved with each one, and each move was an INFO line -- one client wrote the
        server's log at its packet rate (OpenVPN logs floats only at verb 4)."""
        other = self.by_addr.get(addr) or self.pending.get(addr)
        if other is not None and other is not rec:
            # Never move onto another live session's address: with `verify-client-cert none`
            # every common name is None, and with duplicate-cn a name is shared, so a name proves
            # nothing then. Only a handshake that never finished, under the same (unique, real)
            # certificate name as ours, may be pushed aside: that is this client's own leftover.
            same_client = (not self.st.duplicate_cn and rec.common_name is not None
                           and other.common_name == rec.common_name and not other.session.established)
            if not same_client:
                self._count("float to another client's address refused")
                return False
            self._drop(other, "its address was taken over by a newer session of the same client")
        old = rec.addr
        if self.by_addr.get(old) is rec:
            del self.by_addr[old]
        rec.addr = addr
        self.by_addr[addr] = rec
        last = rec.float_reported_at
        if last is not None and now < last + FLOAT_REPORT_EVERY:
            rec.floats_unreported += 1
            return True
        self.events.append((rec, ClientFloated(old, addr, rec.floats_unreported)))
        rec.floats_unreported = 0
        rec.float_reported_at = now
        return True

    def _new_client_packet(self, packet, addr, now: float) -> tuple[None, list]:
        """A packet from an address we hold no state for: stateless checks only."""
        if self.stopping:
            # As OpenVPN 2.6 ("Connection attempt ... ignored while server is shutting down"):
            # the clients just told to restart must not get in here again.
            self._count("connection attempt while stopping")
            return None, []
        op = packet[0] >> 3
        key_id = packet[0] & 7
        try:
            refuse_undefined_sid_untrusted(packet)
            if op in HARD_RESET_CLIENT_OPS:
                if key_id != 0:
                    raise BadPacket("hard reset with key id != 0")
                self._on_reset(bytes(packet), op, addr, now)
            elif op in (Op.CONTROL_V1, Op.ACK_V1, Op.CONTROL_WKC_V1):
                self._on_third_packet(bytes(packet), op, addr, now)
            else:
                raise BadPacket("packet from unknown client")
        except BadPacket as e:
            self._count(e.reason)
        return None, []

    def _unwrap_first(self, packet: bytes, op: int, now: float, addr=None):
        """-> (client key or None, wrapper, (op_byte, sid, body)). No state is recorded."""
        v2 = None
        w = self._stateless
        if self.st.protection == "tls-crypt-v2" and op in (Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1):
            packet, wkc = wrapping.split_wkc_untrusted(packet)
            keys = self._v2_keys
            if keys is None:
                keys = self._v2_keys = ClientKeyCache(self.st.v2_server_key)
            v2, w = keys.unwrap_untrusted(wkc, now)     # bounded: v2keycache.py
        elif self.st.protection == "tls-crypt-v2" and op != Op.CONTROL_HARD_RESET_CLIENT_V2:
            # The third packet of a tls-crypt-v2 client that cannot resend its key (kept at its
            # cookie), else one of a client of the shared key beside (if any).
            kept = self._cookie_keys.get((addr, bytes(packet[1:9])))
            if kept is not None:
                v2, w = kept
        if w is None:
            raise BadPacket("tls-crypt-v2 client packet without wrapped key")
        return v2, w, w.unwrap_untrusted(packet, 0.0, check_replay=False)

    def _on_reset(self, packet: bytes, op: int, addr, now: float) -> None:
        v2, w, (ob, client_sid, body) = self._unwrap_first(packet, op, now)
        cb = decode_body_untrusted(op, body)
        if cb.msg_id != 0 or cb.acks:
            raise BadPacket("malformed hard reset")
        early = v2 is not None and _replay_pid(packet) & 0xFF000000 == EARLY_NEG_START
        if self.st.tcp:
            # No cookies on TCP: the TCP handshake proved the address.
            self._create(addr, now, client_sid, v2, packet_in=packet, op=op)
            return
        if v2 is not None and not early:
            # Old tls-crypt-v2 clients cannot resend their key, so they get state at once
            # (OpenVPN's allow-noncookie default) unless force-cookie says no. Their address is
            # unproven: one captured reset replayed from many spoofed sources must not make
            # many sessions, hence one session per client session id and a small total.
            if self.st.force_cookie:
                raise BadPacket("tls-crypt-v2 reset without cookie support refused (force-cookie)")
            if self.admission.sid_in_cookie_less_handshake(client_sid):
                # That session id is held by a cookie-less handshake at another address (one
                # at this address would have had this packet). A replay of that one's reset --
                # or of this sender's, replayed there first: the first to bring a session id
                # held it, and a client whose own reset came second was refused for hand-window.
                # Neither may push the other out, so this one proves its address first: a
                # cookie, as for every other client, its key kept for its next packet.
                self._answer_reset(addr, client_sid, v2, False, now, keep=w)
                self._count("cookie-less reset for a session id in a handshake elsewhere (answered with a cookie)")
                return
            refused = self.admission.refuse_unverified()
            if refused is not None:
                raise BadPacket(refused)
            if addr in self.pending:
                # Nor may it push aside a restart waiting there (see _create).
                raise BadPacket("cookie-less reset from an address with a handshake waiting")
            self._create(addr, now, client_sid, v2, packet_in=packet, op=op, unverified=True)
            return
        self._answer_reset(addr, client_sid, v2, early, now)

    def _answer_reset(self, addr, client_sid: bytes, v2: "V2Key | None", early: bool, now: float,
                      keep=None) -> None:
        """The stateless answer: our reset, its session id the HMAC cookie for (addr, client_sid).
        `keep`: a tls-crypt-v2 client that cannot resend its key: its key and this stateless
        wrapper of it are kept (bounded, _cookie_keys) for its next packet from `addr` with that
        session id (the wrapper too: a context built per packet was what v2keycache.py bounds)."""
        refused = self.admission.refuse_stateless_answer(now)
        if refused is not None:
            raise BadPacket(refused)
        sid = self.cookies.session_id(addr, client_sid, now)
        payload = encode_tlv(EARLY_NEG_FLAGS, EARLY_NEG_FLAG_RESEND_WKC.to_bytes(2, "big")) if early else b""
        reply_body = encode_body([0], client_sid, 0, payload)
        rw = self._make_wrapper(v2)
        reply = rw.wrap(op_byte(Op.CONTROL_HARD_RESET_SERVER_V2, 0), sid, reply_body, now)
        self.out.append((reply, addr))
        self.stateless_written += len(reply)
        self._count("stateless reset answered")
        if keep is not None:
            kept = self._cookie_keys
            kept[(addr, bytes(client_sid))] = (v2, keep)
            kept.move_to_end((addr, bytes(client_sid)))
            if len(kept) > COOKIE_KEYS_KEPT:
                kept.popitem(last=False)

    def _on_third_packet(self, packet: bytes, op: int, addr, now: float) -> None:
        v2, _w, (ob, client_sid, body) = self._unwrap_first(packet, op, now, addr)
        cb = decode_body_untrusted(op, body)
        if 0 not in cb.acks or cb.peer_sid is None:
            raise BadPacket("first packet does not ack our reset")
        if cb.msg_id is not None and cb.msg_id > 1:
            raise BadPacket("first packet has a message id > 1")
        if max(cb.acks) > 1:
            # A later packet of a session gone meanwhile (refused, timed out, or moved away and
            # back), echoing a cookie still valid: it made a new session for a client that had
            # left -- a handshake slot, a status row and a peer-id until hand-window, and a second
            # line for each refused attempt of Debian's client, whose ACK after its handshake
            # says [2, 1, 0]. As OpenVPN 2.7 (518e122b; 2.6.14 takes it): the three-way
            # handshake's packets ack our reset (0) and at most message 1.
            raise BadPacket("first packet acks a message past the handshake")
        if not self.cookie_valid(addr, client_sid, cb.peer_sid, now):
            raise BadPacket("invalid or expired session cookie")
        if op == Op.CONTROL_WKC_V1:
            packet, _ = wrapping.split_wkc_untrusted(packet)
        self._cookie_keys.pop((addr, bytes(client_sid)), None)
        rec = self._create(addr, now, client_sid, v2, own_sid=cb.peer_sid)
        if rec is None:
            return
        if self._hold_for_v2_verify(rec, v2, packet):
            return
        self._in_batch(rec)
        rec.session.receive(packet, now)
        self._collect(rec)

    def _hold_for_v2_verify(self, rec: ClientRecord, v2: "V2Key | None", packet: bytes) -> bool:
        """tls-crypt-v2-verify: keep the new session's first packet and ask for the verdict on
        its key's metadata (as OpenVPN 2.6, before any TLS work); True when held."""
        if v2 is None or not self.st.v2_verify:
            return False
        rec.v2_held = [bytes(packet)]
        self.events.append((rec, V2VerifyRequested(v2.metadata_type, v2.metadata, v2.digest())))
        self.rearm(rec)
        return True

    def v2_verify_result(self, rec: ClientRecord, ok: bool, now: float, why: str = "") -> None:
        """The tls-crypt-v2-verify verdict: the held packet goes to the session, or the session
        ends without a word to the client (as OpenVPN drops the packet)."""
        if not rec.alive or rec.v2_held is None:
            return
        packets, rec.v2_held = rec.v2_held, None
        if not ok:
            self._count("client refused by tls-crypt-v2-verify")
            self._drop(rec, f"tls-crypt-v2-verify refused the client's key ({why})" if why
                       else "tls-crypt-v2-verify refused the client's key")
            return
        self._in_batch(rec)
        try:
            for i, packet in enumerate(packets):
                if i:                                   # the first had its WKc cut off already
                    packet = self._without_wkc(packet, packet[0] >> 3)
                if packet is not None and not rec.session.closed:
                    rec.session.receive(packet, now)
        except Exception as e:  # noqa: BLE001 - our bug in this session: it ends (take_internal_errors)
            self._internal_errors.append(InternalError(rec, e, "a client's packets held for tls-crypt-v2-verify"))
            self._drop(rec, "internal error")
            return
        self._collect(rec)
        self._promote(rec)

    def _hold_more(self, rec: ClientRecord, packet) -> None:
        """A packet of a session held for tls-crypt-v2-verify: kept for after the verdict (over
        TCP nothing is sent twice, so a dropped one would stall the handshake), up to V2_HELD_MAX."""
        if len(rec.v2_held) >= V2_HELD_MAX:
            self._count("packet while tls-crypt-v2-verify decides (dropped: too many)")
            return
        rec.v2_held.append(bytes(packet))

    def tls_verify_result(self, rec: ClientRecord, key_id: int, ok: bool, now: float, check: object = None,
                          tell: bool = True) -> None:
        """The tls-verify verdict on a client's TlsVerifyRequested (Session.tls_verify_result)."""
        if not rec.alive:
            return
        rec.session.tls_verify_result(key_id, ok, now, check, tell)
        self._collect(rec)
        self._promote(rec)

    def cookie_valid(self, addr, client_sid: bytes, cookie: bytes, now: float) -> bool:
        """Whether a client's echoed session id is a cookie we handed to it, still within its
        hand-window (the current one, or the one before the last reload for older cookies)."""
        if self.cookies.valid(addr, client_sid, cookie, now):
            return True
        old = self._old_cookies
        if old is None:
            return False
        # The old jar only until its last cookie lapses: checked for ever, it made every wrong
        # cookie cost two MACs, not one (cookie.py). Its cookies were handed out before the
        # reload, so before the first check after it, and last 3 of its slots at most.
        if self._old_cookies_until is None:
            self._old_cookies_until = now + 3 * old.period
        elif now >= self._old_cookies_until:
            self._old_cookies = None
            return False
        return old.valid(addr, client_sid, cookie, now)

    def _create(self, addr, now: float, client_sid: bytes, v2: "V2Key | None", own_sid: bytes | None = None,
                packet_in: bytes | None = None, op: int | None = None,
                unverified: bool = False) -> ClientRecord | None:
        old = self.by_addr.get(addr)
        # A restart from an established client's address is no extra client (admission.py); only
        # with the address proven (a cookie exchange), so a spoofed cookie-less reset gets no more
        # from a full server than from anybody else.
        replaces = old is not None and not self.st.tcp and not unverified and old.session.established
        refused = self.admission.refuse_new(addr, now, replaces_client=replaces)
        if refused == "too many handshakes in progress" and self._make_room(addr, now):
            refused = self.admission.refuse_new(addr, now, replaces_client=replaces)
        if refused is not None:
            self._count(refused)
            return None
        # The same client again (UDP, same address): as OpenVPN 2.6, whose instance for the
        # address takes the reset, it keeps its peer-id (and, in the gateway, its client ID).
        restarts = old if old is not None and not self.st.tcp else None
        if restarts is not None:
            pid = restarts.peer_id
            self.peer_ids.share(pid)
        else:
            pid = self.stream_peer_ids.pop(addr, None) if self.st.tcp else None
            if pid is None:
                pid = self.peer_ids.take()
        try:
            return self._create_session(addr, now, client_sid, v2, own_sid, packet_in, op, unverified,
                                        old, restarts, pid)
        except Exception:
            # Our bug while making this client's session (the caller's guard counts and logs it):
            # whatever was taken for it is given back here, or its peer-id (and, once the record
            # was filed, its address and tables) stayed held by nobody for the server's life.
            rec = self._creating
            self.suspect = True                 # whatever the undoing below misses, reconcile() finds
            if rec is None:
                self.peer_ids.release(pid)
            else:
                self._drop(rec, "internal error")
            raise
        finally:
            self._creating = None

    def _create_session(self, addr, now: float, client_sid: bytes, v2: "V2Key | None", own_sid: bytes | None,
                        packet_in: bytes | None, op: int | None, unverified: bool, old: ClientRecord | None,
                        restarts: ClientRecord | None, pid: int) -> ClientRecord | None:
        cfg = self.st.session_config(pid)
        wrapper = self._make_wrapper(v2, (cfg.replay_window, cfg.replay_time))
        if own_sid is not None or v2 is not None:
            # Its first packet was checked statelessly (the cookie's third packet; a
            # tls-crypt-v2 reset, whose id may be the early-negotiation one): wrapping.py.
            wrapper.first_id_verified_elsewhere()
        cfg.make_wrapper = lambda: wrapper
        cfg.push_options = self._push_for
        s = Session(cfg, now, tls_context=self.tls_context())
        rec = self._creating = ClientRecord(s, addr, pid, tcp=self.st.tcp)
        if restarts is not None and restarts.session.established and restarts.restart_keeps_options:
            s.lock_identity_of(restarts.session)      # the same client, or refused
            rec.continues, rec.ccd, rec.given = True, restarts.ccd, restarts.given
        if v2 is not None:
            rec.v2_metadata = v2.describe()
            rec.v2_key = (v2.metadata_type, v2.metadata)
        s.owner = rec
        if not unverified:
            # The address starts another session (its address proven): a refused login's resending
            # there is over (the client heard AUTH_FAILED, or gave up on it).
            self.refusals.drop(addr)
        if self.on_create is not None:
            self.on_create(rec, restarts)
        self.admission.opened(rec, addr, client_sid if unverified else None, now)
        rec.admitted = True
        if own_sid is not None:
            # Resume from the cookie: both resets are behind us (ours was message 0, theirs too).
            s.resume_after_cookie(own_sid, client_sid, now)
        if old is not None and not rec.tcp and (old.session.established or unverified):
            # Beside it, not in its place: a restart must not end an established session before
            # it is established itself, nor may a cookie-less reset (its address unproven, so
            # possibly spoofed by any key holder) end a handshake in progress there.
            old_pending = self.pending.get(addr)
            if old_pending is not None:
                self._drop(old_pending, "superseded by a newer handshake from the same address")
            self.pending[addr] = rec          # see _other_session
            if self.by_peer_id.get(pid) is old:
                self.heirs[pid] = rec         # by_peer_id leads to `old` until one of them goes
            else:
                self.by_peer_id[pid] = rec
        else:
            if old is not None:
                self._drop(old, REPLACED_BY_RESTART)
            self.by_addr[addr] = rec
            self.by_peer_id[pid] = rec
        if packet_in is not None:
            if op == Op.CONTROL_HARD_RESET_CLIENT_V3:
                packet_in, _ = wrapping.split_wkc_untrusted(packet_in)
            if self._hold_for_v2_verify(rec, v2, packet_in):
                return rec
            s.receive(packet_in, now)
        self._collect(rec)
        return rec

    def _make_room(self, addr, now: float) -> bool:
        """The table of handshakes in progress is full (max_half_open): end its oldest handshake,
        if that one is HALF_OPEN_EVICT_AGE old, so the new one can start. Why: a peer holding only
        the tls-crypt key (any eduVPN profile has it; no certificate needed) filled the table from
        32 addresses with handshakes it took to its ClientHello and then left silent; each lasted
        until hand-window (60 s) and was renewed, and every new client was refused meanwhile
        (lab/reliability/authattack.py --half-open). A real handshake takes well under a second,
        so the oldest is the likeliest stalled one, and a filler has to keep spending the cookie
        exchanges connect-freq-initial rations to keep the table full. It ends as a handshake
        timing out does (its end event, so the caller forgets whatever it began for it, e.g. a
        password check), one line each as before: at most one per cookie exchange answered.
        UDP only: TCP has its own per-source connection limit before any handshake. Not for a
        new one its own address's limit refuses anyway: that would end a handshake for nothing."""
        if self.st.tcp or not self.admission.source_has_room(addr):
            return False
        oldest = self.admission.oldest_in_progress()
        if oldest is None or now - oldest[1] < HALF_OPEN_EVICT_AGE:
            return False
        self._count("handshake in progress ended to make room (table full, oldest first)")
        self._drop(oldest[0], "handshake in progress ended to make room for a new one (too many in progress)")
        return True

    def accepted(self, addr) -> int:
        """TCP: a connection was just accepted; it takes its peer-id now, as OpenVPN 2.6 makes
        the instance (and numbers it) at accept, before a byte is read: the session made at
        its reset gets this one. Returned for the status; given back by stream_closed."""
        pid = self.stream_peer_ids.get(addr)
        if pid is None:
            pid = self.stream_peer_ids[addr] = self.peer_ids.take()
        return pid

    # ---------------------------------------------------------------- send
    def route_packet(self, p) -> ClientRecord | None:
        """The client an inner packet is for (its pool address or an iroute), from the header.

        Never a client for the server's own tunnel address, even inside a client's iroute
        (`iroute 0.0.0.0 0.0.0.0`, one over the pool) or pushed to one (a ccd's `ifconfig-push`
        of it: checked first, review48a), as 2.6's multi_get_instance_by_virtual_addr
        answers no client for its local address (IPv4; here IPv6 too). Ours looked it up as any
        destination: with client-to-client every other client's packets to the server -- its
        DNS, its pings of the gateway -- went to that client, which could answer as the server.
        As _check_sources never lends it as a source."""
        if p[0] >> 4 == 6:
            if len(p) < 40:
                return None
            dst6 = bytes(p[24:40])
            text6 = str(ipaddress.IPv6Address(dst6))
            if text6 == self.st.local_ip6:
                return None
            rec = self.by_vaddr.get(text6)
            return rec if rec is not None or not self.iroutes6.lens else self.iroutes6.lookup(dst6)
        dst = bytes(p[16:20])
        if dst == self.st.local_ip4:
            return None
        rec = self.by_vaddr4.get(dst)
        return rec if rec is not None or not self.iroutes.lens else self.iroutes.lookup(dst)

    def route(self, dst: str) -> ClientRecord | None:
        rec = self.by_vaddr.get(dst)
        if rec is not None:
            return rec
        if ":" in dst:
            return self.iroutes6.lookup(ipaddress.IPv6Address(dst).packed) if self.iroutes6 else None
        if self.iroutes:
            return self.iroutes.lookup(ipaddress.IPv4Address(dst).packed)
        return None

    def take_outgoing(self) -> list[tuple[bytes, object]]:
        out, self.out = self.out, []
        return out

    def _collect(self, rec: ClientRecord) -> None:
        """Move a session's packets and events out, act on those that change our tables, and
        re-arm its timer."""
        s = rec.session
        for p in s.take_outgoing():
            self.out.append((p, rec.addr))
        while s.events:
            e = s.events.popleft()
            self.events.append((rec, e))
            if isinstance(e, TunnelUp):
                if rec.alive:
                    self.admission.established(rec)
            elif isinstance(e, SessionClosed):
                if not s.established:
                    self._count("handshake failed")
                elif e.reason in EXITED_REASONS and not rec.tcp and rec.alive:
                    self._note_departed(rec, max(s.last_recv, s.exit_at or 0.0))
                if s.told_refused and not rec.tcp and rec.alive:
                    # Gone from the books below as any refusal; only what resends its last
                    # word stays a while (refusals.py). A client refused at its renegotiation
                    # too (atk47): 2.6 tells it as a login (check_tls -> send_auth_failed ->
                    # schedule_exit); lost, it learnt of it at its hand-window, 60 s later.
                    self.refusals.keep(rec.addr, s, self._count)
                self._forget(rec)
        self.rearm(rec)

    def _note_departed(self, rec: ClientRecord, at: float) -> None:
        """`rec` left by its own exit notification at `at`: its address and peer-id kept for
        DEPARTED_QUIET s (DEPARTED_DATA), at most DEPARTED_MAX leavers."""
        d = self.departed
        d.pop(rec.addr, None)
        d[rec.addr] = (rec.peer_id, at + DEPARTED_QUIET)
        while d and (len(d) > DEPARTED_MAX or next(iter(d.values()))[1] <= at):
            d.popitem(last=False)

    def forget_departed(self, now: float) -> None:
        """The leavers whose DEPARTED_QUIET is over, forgotten (the gateway's drop-log timer, every
        5 s): otherwise the last ones stayed until the next leaver or a packet from their
        address (review44d: nothing of the clients kept once everyone left). Oldest first, as
        _note_departed prunes."""
        d = self.departed
        while d and next(iter(d.values()))[1] <= now:
            d.popitem(last=False)

    def _departed(self, addr, pid: int, now: float) -> bool:
        """Whether data from `addr` naming `pid` is a recent leaver's (DEPARTED_DATA)."""
        got = self.departed.get(addr)
        if got is None:
            return False
        if now >= got[1]:
            del self.departed[addr]
            return False
        return got[0] == pid

    def collect_all(self) -> None:
        """Collect every session (the dispatcher collects by itself after each call; this is for
        callers that poked sessions directly)."""
        for rec in self._records():
            self._collect(rec)

    def auth_result(self, rec: ClientRecord, key_id: int, ok: bool, now: float, temporary: bool = False,
                    client_reason: str = "", why: str = "", check: object = None) -> None:
        """The verdict on a client's AuthRequested (checked off the caller's event loop);
        `temporary`: not checked (too busy), the client is told to retry; a refusal's
        `client_reason` goes after AUTH_FAILED, and `why` to the log."""
        if not rec.alive:
            return
        rec.session.auth_result(key_id, ok, now, temporary, client_reason, why, check)
        self._collect(rec)
        self._promote(rec)

    def auth_pending(self, rec: ClientRecord, key_id: int, extra: str, timeout: int, now: float) -> bool:
        """The login of key `key_id` waits longer (pending auth: Session.auth_pending)."""
        if not rec.alive:
            return False
        ok = rec.session.auth_pending(key_id, extra, timeout, now)
        self._collect(rec)
        self.rearm(rec)
        return ok

    # ---------------------------------------------------------------- timers
    def rearm(self, rec: ClientRecord) -> None:
        """Make sure the timer heap wakes us for `rec` no later than its session's deadline.
        Call after using a session directly (encrypt + note_sent paths need not: they only move
        deadlines later, which the heap tolerates)."""
        if rec.alive:
            self._timers.arm(rec, rec.session.next_deadline())

    def note_sent(self, rec: ClientRecord, now: float) -> None:
        """The pump sent data to `rec`: keeps its pings away, and lets a key whose packet ids
        run low start renegotiating (whose packets are then in take_outgoing)."""
        s = rec.session
        s.note_sent(now)
        if s.out or s.events:
            self._collect(rec)

    def next_deadline(self) -> float | None:
        """The earliest armed deadline (possibly early: a wake-up that finds nothing due re-arms)."""
        d = self._timers.peek()
        if self.refusals.by_addr:
            r = self.refusals.next_deadline()
            if r is not None and (d is None or r < d):
                d = r
        return d

    def handle_timer(self, now: float) -> None:
        """Run the timers of the sessions whose deadline has come, and only those."""
        if self.refusals.by_addr:
            self.refusals.handle_timer(now, self.out)
        for rec in self._timers.pop_due(now):
            s = rec.session
            try:
                dl = s.next_deadline()
                if dl is not None and now >= dl:
                    s.handle_timer(now)
                    self._collect(rec)
                    self._promote(rec)
                else:
                    self.rearm(rec)
            except Exception as e:  # noqa: BLE001 - our bug in one session must not stop the others' timers
                self._internal_errors.append(InternalError(rec, e, "a client's timer"))

    def take_internal_errors(self) -> list[InternalError]:
        """Sessions the dispatcher caught raising (our bug) -- a timer, a packet, a release, an exit
        notification --, each an InternalError saying where: the caller logs each under it and
        ends that client."""
        out, self._internal_errors = self._internal_errors, []
        return out

    def drop_counters(self) -> dict[str, int]:
        """Everything refused so far, by reason: stateless checks, live sessions, and sessions
        already gone (answered stateless resets are work, not drops, and are left out)."""
        out: dict[str, int] = dict(self.stats)
        out.pop("stateless reset answered", None)
        for rec in self._records():
            for k, v in rec.session.stats.items():
                out[k] = out.get(k, 0) + v
        for k, v in self.retired_stats.items():
            out[k] = out.get(k, 0) + v
        return out

    # ---------------------------------------------------------------- lifecycle
    def _forget(self, rec: ClientRecord) -> None:
        """Everything the server holds for `rec` given back. Each step on its own: a step that
        raises (our bug) is noted for take_internal_errors and the others still run. Why: the
        first step marks the record dead, so a bug midway -- in the admission counts, a pool's
        release -- left the rest for ever: its address and peer-id held by nobody, a dead record
        in by_addr that the client's restart from the same address then stood beside
        (lab/reliability/fault_sweep.py found these)."""
        if not rec.alive:
            return
        rec.alive = False
        if rec.tcp:
            # One TCP connection, one session: the caller closes the connection (and then calls
            # stream_closed); until then nothing on it may start another session.
            self.closed_streams.add(rec.addr)
        # The dispatcher's own tables first: plain dictionary work.
        if self.by_addr.get(rec.addr) is rec:
            del self.by_addr[rec.addr]
        if self.pending.get(rec.addr) is rec:
            del self.pending[rec.addr]
        pid = rec.peer_id
        if self.heirs.get(pid) is rec:
            del self.heirs[pid]
        if self.by_peer_id.get(pid) is rec:
            heir = self.heirs.pop(pid, None)
            if heir is not None and heir.alive:
                self.by_peer_id[pid] = heir   # the restart it was waiting beside takes its number over
            else:
                del self.by_peer_id[pid]
        if rec.vaddr_packed and self.by_vaddr4.get(rec.vaddr_packed) is rec:
            del self.by_vaddr4[rec.vaddr_packed]
        for v in (rec.vaddr, rec.vaddr6):
            if v and self.by_vaddr.get(v) is rec:
                del self.by_vaddr[v]
        try:
            steps = self._forget_steps(rec)
        except Exception as e:  # noqa: BLE001 - our bug before any step: reconcile() gives back what it can
            self.suspect = True
            self._unsettled.append(rec)
            self._internal_errors.append(InternalError(rec, e, "releasing a client (before any step)"))
            return
        unsettled = False
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - our bug in one step; the others still give back theirs
                self.suspect = unsettled = True
                self._internal_errors.append(InternalError(rec, e, "releasing a client"))
        if unsettled:
            self._unsettled.append(rec)

    def _forget_steps(self, rec: ClientRecord) -> list:
        """The parts of _forget that call other objects (each may raise: see _forget)."""
        def stats() -> None:
            self._retire_stats(rec)

        def pool() -> None:
            # Its own lease, whoever holds the route now (see ClientRecord.pool_lease).
            lease, rec.pool_lease = rec.pool_lease, None
            if lease is not None and self.st.pool is not None:
                self.st.pool.release(lease)

        def pool6() -> None:
            # Its own lease, whoever holds the route now (an ifconfig-ipv6-push two clients share).
            lease, rec.pool6_lease = rec.pool6_lease, None
            if lease is not None and self.st.pool6 is not None:
                self.st.pool6.release(lease)

        def iroutes() -> None:
            for n in rec.iroutes:
                self.iroutes.remove(n, rec)
            for n6 in rec.iroutes6:
                self.iroutes6.remove(n6, rec)

        def admission() -> None:
            if rec.admitted:
                rec.admitted = False
                self.admission.gone(rec)

        # release before stats: what release counts (an unreadable chain certificate) is retired too.
        steps = [admission, rec.session.release, stats, lambda: self.peer_ids.release(rec.peer_id),
                 pool, pool6, iroutes]
        if self.on_forget is not None:
            steps.append(lambda: self.on_forget(rec))
        return steps

    def _retire_stats(self, rec: ClientRecord) -> int:
        """`rec`'s drop counters into retired_stats (its session's emptied: twice adds nothing).
        How many counters were moved."""
        got = rec.session.stats
        for k, v in got.items():
            self.retired_stats[k] = self.retired_stats.get(k, 0) + v
        rec.session.stats = {}
        return len(got)

    def _drop(self, rec: ClientRecord, reason: str) -> None:
        s = rec.session
        if not s.closed:
            s.abort(reason)
        self._collect(rec)
        self._forget(rec)

    def end(self, rec: ClientRecord, reason: str) -> None:
        """End this one session (no exit notification: our own bug ended it). Why by record and
        not by address: a restart waits in `pending` under the address of the client it would
        replace, and ending "the session at that address" would end that client instead."""
        if rec.alive:
            self._drop(rec, reason)

    def disconnect(self, addr) -> None:
        """TCP: the connection went away."""
        rec = self.by_addr.get(addr)
        if rec is not None:
            self._drop(rec, "connection closed")

    def kick(self, rec: ClientRecord, now: float, reason: str) -> None:
        """End one client's session on the operator's word (management kill, revoked on reload):
        an exit notification to it, then forgotten."""
        if not rec.alive:
            return
        rec.session.close(now, reason)
        self._collect(rec)
        self._forget(rec)

    def close_all(self, now: float) -> None:
        """Exit notifications to every client; a session that fails to write its own (our bug)
        is noted in take_internal_errors and the others still get theirs."""
        self.refusals.clear()
        for rec in self._records():
            try:
                rec.session.close(now, "server shutting down")
                self._collect(rec)
            except Exception as e:  # noqa: BLE001
                self._internal_errors.append(InternalError(rec, e, "a client's exit notification"))
            self._forget(rec)

    def restart_all(self, now: float, next_remote: bool) -> int:
        """Stopping with explicit-exit-notify (UDP): RESTART (or RESTART,[N]) to every
        client, and no new client from now on; the sessions stay until close_all, so the messages
        are retransmitted until acknowledged. Returns how many were told."""
        self.stopping = True
        told = 0
        for rec in self._records():
            try:
                told += rec.session.tell_restart(now, restart_message(next_remote))
                self._collect(rec)
            except Exception as e:  # noqa: BLE001 - our bug: this client gets the plain exit at close_all
                self._internal_errors.append(InternalError(rec, e, "telling a client to restart"))
        return told

    def tell(self, rec: ClientRecord, now: float, message: str) -> bool:
        """A control message (client-kill's RESTART/HALT) to one established client; its session
        stays until kick(). False if it could not be sent."""
        if not rec.alive:
            return False
        sent = rec.session.tell_restart(now, message)
        self._collect(rec)
        return sent

    def restarts_acked(self) -> bool:
        """Every client told RESTART has acknowledged it (or is gone)."""
        return all(rec.session.control_acked for rec in self._records() if rec.session.restart_sent)

    def stream_closed(self, addr) -> None:
        """The caller closed this TCP connection: forget it."""
        self.closed_streams.discard(addr)
        pid = self.stream_peer_ids.pop(addr, None)
        if pid is not None:
            try:
                self.peer_ids.release(pid)
            except Exception:
                self.suspect = True             # our bug: reconcile() gives the number back
                raise
        rec = self.by_addr.get(addr)
        if rec is not None:
            self._drop(rec, "connection closed")
            self.closed_streams.discard(addr)

    def reconcile(self) -> tuple[int, int, int]:
        """After our bug while giving back what a session held (`suspect`): the peer-ids, pool
        addresses, routes (iroutes, by_vaddr) and admission counts recomputed from the live
        records, the one source of truth -- what none of them holds is free again. Why not
        more guards: the fault was inside the release of that very resource, or before any
        release step at all (_forget_steps), and only a look at who holds what can tell what
        it left. Not on the data path: the gateway calls it from its 5 s timer, and only when
        `suspect`. Also the data path's books (dev tap: the MAC table, on_reconcile), and the
        drop counters of the sessions whose forgetting failed, retired as their release would
        have (else the final counters lost them). Returns (peer-ids, addresses, routes, MACs
        and admission counts) corrected.

        In order of what a bug among them would cost: the peer-ids and pool addresses first (a
        server short of them refuses new clients), then the routes and admission counts, the
        data path's books and the counters last -- a bug in a later part (raised to the caller,
        which logs it) leaves the earlier ones done."""
        self.suspect = False
        live = {id(r): r for r in (*self.by_addr.values(), *self.pending.values(), *self.heirs.values())
                if r.alive}
        pids: dict[int, int] = {}
        for r in live.values():
            pids[r.peer_id] = pids.get(r.peer_id, 0) + 1
        for pid in self.stream_peer_ids.values():
            pids[pid] = pids.get(pid, 0) + 1
        fixed_pids = self.peer_ids.reconcile(pids)
        fixed_addrs = 0
        for pool, attr in ((self.st.pool, "pool_lease"), (self.st.pool6, "pool6_lease")):
            if pool is None:
                continue
            held: dict[str, int] = {}
            for r in live.values():
                ip = getattr(r, attr)
                if ip:
                    held[ip] = held.get(ip, 0) + 1
            fixed_addrs += pool.reconcile(held)
        fixed_books = self._reconcile_routes()
        fixed_books += self.admission.reconcile([r for r in live.values() if r.admitted])
        if self.on_reconcile is not None:
            fixed_books += self.on_reconcile(live)
        unsettled, self._unsettled = self._unsettled, []
        for rec in unsettled:
            self._retire_stats(rec)
        return fixed_pids, fixed_addrs, fixed_books

    def _reconcile_routes(self) -> int:
        """reconcile()'s routes: what leads to a forgotten record removed -- its iroutes (a
        client's networks routed to a gone session), its tunnel addresses, its peer-id's entry.
        By `alive`, not by presence in by_addr: a live client's route is never taken. How many
        were."""
        def live(r) -> bool:  # noqa: ANN001
            return r.alive
        fixed = self.iroutes.reconcile(live) + self.iroutes6.reconcile(live)
        for table in (self.by_vaddr, self.by_vaddr4):
            for k in [k for k, r in table.items() if not r.alive]:
                del table[k]
                fixed += 1
        for pid in [p for p, r in self.by_peer_id.items() if not r.alive]:
            heir = self.heirs.pop(pid, None)       # the restart waiting beside it takes it over, as in _forget
            if heir is not None and heir.alive:
                self.by_peer_id[pid] = heir
            else:
                del self.by_peer_id[pid]
            fixed += 1
        return fixed

    def record(self, addr) -> ClientRecord | None:
        """The client record at this address (UDP) or connection (TCP), if any."""
        return self.by_addr.get(addr) or self.pending.get(addr)

    @property
    def clients(self) -> list[ClientRecord]:
        return list(self.by_addr.values())


def _replay_pid(packet: bytes) -> int:
    """The replay packet id of a tls-crypt(-v2) wrapped packet (bytes 9..13, after op and sid)."""
    return int.from_bytes(packet[9:13], "big") if len(packet) >= 13 else 0
