"""Tunnel packets ⇄ wire packets, with the protocol's data-path decisions in one place.

Why here and not in the pump: which client an inner packet belongs to, whether one client may
reach another (client-to-client), and how far TCP's MSS must be clamped (from the negotiated
cipher's real per-packet overhead, not a guess from its name) are protocol decisions. They stay
sans-I/O so tests/gateway/ and the engine tests exercise them without sockets; the pump only moves
the batches these functions return.

Contract: `ClientDataPath.open(packet, now)` and `ServerDataPath.from_link(...)` take one wire packet
from the peer; they raise only for our own bugs (the pump counts those against that peer).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .clientnat import ClientNat
from .dhcprouter import FRAGMENTED_REPLY, OVER_RATE, ReplyBudget, extract_router
from .ethernet import ip_offset
from .mss import clamp_mss
from .session import Session

if TYPE_CHECKING:      # annotations only: a client's data path never loads the server's dispatcher
    from .server import ClientRecord, ServerDispatcher

# (cipher, data_v2) -> the MSS to clamp to, or None for no clamping (`mssfix 0`); built from the
# config by settings.mss_rule, so OpenVPN's exact figure (CBC block rounding included) applies.
MssRule = Callable[[str, bool], "int | None"]

# With client-to-client, a client's multicast (tun) or broadcast/multicast frame (tap) is copied
# to every other client, as 2.6 does: at most BCAST_RATE packets a second per sending client,
# after a burst of BCAST_BURST, and at most BCAST_COPY_RATE copies (seals) a second after a
# burst of BCAST_COPY_BURST (ReplicationBudget); the copies past either are dropped and counted
# under BCAST_OVER_RATE (the packet itself still reaches the server's TUN/TAP device).
BCAST_RATE = 200.0
BCAST_BURST = 400.0
# A copy costs a seal and a datagram (~5 us): 10,000 a second is ~5% of the loop per sending
# client whatever the number of clients (the packet rate alone let one client have the server
# make 200 x 999 seals a second at 1,000 clients, the whole loop); below ~50 clients the
# packet rate is the tighter one.
BCAST_COPY_RATE = 10_000.0
BCAST_COPY_BURST = 20_000.0
BCAST_OVER_RATE = "broadcast over rate"
# On top, the copies of all senders together -- every client and the server's own device (its
# TUN's multicast, its TAP's broadcasts) -- are held to BCAST_SERVER_RATE a second after a burst
# of BCAST_SERVER_BURST: the per-sender budgets alone let k clients flooding together cost
# k x ~5% of the loop (20 of them the whole loop, every tunnel stalled; review38). 40,000 copies
# a second is ~10-20% of the loop whatever k is. Fairness: a sender may use at most its share,
# (1 - BCAST_RESERVE) x BCAST_SERVER_RATE / the senders that asked in this or the last
# BCAST_EPOCH, saved up to BCAST_SHARE_HOLD seconds of it (always enough for one packet), so
# the shares together leave a quarter of the rate unused; and only a sender that asked nothing
# for an epoch may take the server's bucket below BCAST_RESERVE of its burst, so a light
# sender's occasional packet (a hello every few seconds) gets through whatever k flooders do,
# starting together included. Refusals are counted apart (BCAST_OVER_SERVER).
BCAST_SERVER_RATE = 40_000.0
BCAST_SERVER_BURST = 40_000.0
BCAST_RESERVE = 0.25
BCAST_SHARE_HOLD = 1.0
BCAST_EPOCH = 1.0
BCAST_OVER_SERVER = "broadcast over the server's rate"


def is_multicast(p) -> bool:
    """Whether a tun packet is for a multicast group, as OpenVPN 2.6's mroute_extract_addr_ip
    marks one (MROUTE_EXTRACT_MCAST): IPv4 to 224.0.0.0/4 with its 20-byte header whole, IPv6 to
    ff00::/8 with its 40-byte header whole. Broadcast is not: on a tun 2.6 has no broadcast
    (255.255.255.255 or a subnet's last address is looked up like any destination -- no client
    holds it, so from a client it goes to the TUN, from the TUN nowhere)."""
    n = len(p)
    if n < 20:
        return False
    v = p[0] >> 4
    if v == 4:
        return p[16] & 0xF0 == 0xE0
    return v == 6 and n >= 40 and p[24] == 0xFF


# A budget refills whole within this many seconds (the slower of its two buckets).
BCAST_REFILL = max(BCAST_BURST / BCAST_RATE, BCAST_COPY_BURST / BCAST_COPY_RATE)
BCAST_LEFT_MAX = 4096      # buckets of clients that left kept for their name's next session


class ReplicationBudget:
    """Per sending client, two token buckets for the copies of its multicast/broadcast the server
    makes for the other clients (client-to-client): packets replicated (BCAST_RATE) and copies
    made (BCAST_COPY_RATE). Why: 2.6 copies every one (one seal per client per packet), so one
    client flooding multicast makes the server seal n-1 times its rate; here each other client
    still gets one copy of each, up to BCAST_RATE packets a second -- far above what OSPF, RIP,
    mDNS or SSDP send -- and the copies a second stay bounded however many clients there are
    (a packet charged for `copies`, the clients it would go to, all or none: a client gets a
    packet's copy or none of it); the rest are counted as BCAST_OVER_RATE.

    On top, one server-wide bucket (BCAST_SERVER_RATE) for all senders together, the server's
    own device among them (allow_device), each sender held to its share of it (_server: a share
    bucket per sender refilled at (1 - BCAST_RESERVE) x the rate / the senders active lately),
    so k flooding clients cost the loop no more than one server's worth whatever k is, and
    cannot starve a light sender; those refused are counted as BCAST_OVER_SERVER. O(1) a packet:
    the active senders are counted per BCAST_EPOCH (each bucket notes the epoch it last asked in).

    A client that leaves hands its bucket to the next session of its common name until the
    bucket would be full again (BCAST_REFILL; the server's 5 s timer calls prune()): reconnecting
    must not buy a fresh burst (at 1,000 clients a burst is ~0.1 s of the loop's seals, a
    handshake ~2 ms). Buckets are keyed by
    id(client) only while it lives (forget() is called at every end), so no new record inherits
    another's by a reused id."""

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        stats.setdefault(BCAST_OVER_RATE, 0)
        stats.setdefault(BCAST_OVER_SERVER, 0)
        # id(client) -> [packet tokens, copy tokens, last refill, share tokens (-1: none yet),
        # epoch last asked in]
        self.buckets: dict[int, list[float]] = {}
        # common name -> the bucket its last client left with, oldest first
        self.left: dict[str, list[float]] = {}
        self.now = float("-inf")            # the latest time allow() was told
        # The server-wide bucket: [tokens, last refill]; the device's share bucket (the TUN/TAP
        # as a sender: no packet or copy bucket of its own, only its share); the senders that
        # asked in the current epoch and in the one before.
        self.server = [BCAST_SERVER_BURST, float("-inf")]
        self.device = [0.0, 0.0, float("-inf"), -1.0, -1.0]
        self.epoch, self.active, self.active_before = -1.0, 0, 0

    def allow(self, rec: ClientRecord, now: float, copies: int = 1) -> bool:
        """Whether `rec`'s packet may be copied to `copies` other clients now (one packet token
        and `copies` copy tokens, and `copies` of its share of the server's; more copies than a
        whole burst are charged a whole burst)."""
        b = self.buckets.get(id(rec))
        if b is None:
            b = self.left.pop(rec.common_name, None) if self.left and rec.common_name else None
            if b is None:
                b = [BCAST_BURST, BCAST_COPY_BURST, now, -1.0, -1.0]
            self.buckets[id(rec)] = b
        self.now = max(self.now, now)
        # A time before the bucket's last refill (a caller's older reading) refills nothing and
        # takes nothing back: with `now - b[2]` negative the buckets went below zero (fuzz40).
        dt = max(0.0, now - b[2])
        b[0] = min(BCAST_BURST, b[0] + dt * BCAST_RATE)
        b[1] = min(BCAST_COPY_BURST, b[1] + dt * BCAST_COPY_RATE)
        b[2] = max(b[2], now)
        cost = min(float(max(copies, 0)), BCAST_COPY_BURST)
        if b[0] < 1.0 or b[1] < cost:
            self._server(b, now, dt, None)          # (asking: it is an active sender all the same)
            self.stats[BCAST_OVER_RATE] += 1
            return False
        if not self._server(b, now, dt, cost):
            self.stats[BCAST_OVER_SERVER] += 1
            return False
        b[0] -= 1.0
        b[1] -= cost
        return True

    def allow_device(self, now: float, copies: int) -> bool:
        """Whether a multicast/broadcast read from the server's TUN/TAP device may be copied to
        `copies` clients now: the device is one more sender for the server-wide budget (no
        per-sender budget: the host is the operator's, review38), held to its share like any."""
        d = self.device
        dt = max(0.0, now - d[2]) if d[2] != float("-inf") else 0.0
        d[2] = max(d[2], now)       # (as a client's bucket: an older reading refills nothing)
        if self._server(d, now, dt, min(float(max(copies, 0)), BCAST_COPY_BURST)):
            return True
        self.stats[BCAST_OVER_SERVER] += 1
        return False

    def _server(self, b: list[float], now: float, dt: float, cost: float | None) -> bool:
        """The server-wide budget for sender `b` (its share bucket b[3], refilled over `dt`, the
        time since it last asked): whether `cost` copies may be made now, both taken if so.
        `cost` None: only note that the sender asked (it counts among the active senders).

        A sender that asked nothing for BCAST_EPOCH (a new one too) may take the server's
        bucket down to empty; the others only down to its reserve (BCAST_RESERVE of the burst).
        Why: the shares sum to (1 - BCAST_RESERVE) of the rate once the active senders are
        counted, but k flooders starting together (or their saved shares) can empty it first,
        and a light sender's hello must not wait behind them meanwhile."""
        idle = b[3] < 0.0 or dt >= BCAST_EPOCH
        ep = now // BCAST_EPOCH
        if ep > self.epoch:
            self.active_before = self.active if ep == self.epoch + 1 else 0
            self.active, self.epoch = 0, ep
        if b[4] != self.epoch:
            b[4] = self.epoch
            self.active += 1
        rate = BCAST_SERVER_RATE * (1.0 - BCAST_RESERVE) / max(self.active, self.active_before, 1)
        hold = rate * BCAST_SHARE_HOLD
        if cost is not None and cost > hold:
            hold = cost                               # (one packet's worth can always be saved up)
        if b[3] < 0.0:
            b[3] = hold                               # a new sender: its share's hold
        b[3] = min(hold, b[3] + max(dt, 0.0) * rate)
        if cost is None:
            return False
        g = self.server
        g[0] = min(BCAST_SERVER_BURST, g[0] + max(now - g[1], 0.0) * BCAST_SERVER_RATE)
        g[1] = max(g[1], now)       # an older reading must not rewind it: the time again refilled twice
        if b[3] < cost or g[0] - cost < (0.0 if idle else BCAST_RESERVE * BCAST_SERVER_BURST):
            return False
        b[3] -= cost
        g[0] -= cost
        return True

    def forget(self, rec: ClientRecord) -> None:
        b = self.buckets.pop(id(rec), None)
        left = self.left
        if b is not None and rec.common_name:
            left.pop(rec.common_name, None)
            left[rec.common_name] = b
        # Those full again (their last use BCAST_REFILL ago) carry nothing: dropped, oldest first;
        # and never more than BCAST_LEFT_MAX of them.
        while left:
            name = next(iter(left))
            if left[name][2] + BCAST_REFILL > self.now and len(left) <= BCAST_LEFT_MAX:
                break
            del left[name]

    def prune(self, now: float) -> None:
        """Every kept bucket full again by `now` dropped (the server's 5 s timer). Why: forget()
        only looks at the oldest ones, and only when a client leaves, by the time the last
        multicast was seen -- after a burst of departures with nobody multicasting afterwards
        (soak40), up to BCAST_LEFT_MAX names stayed held with nothing to carry, for ever."""
        if now > self.now:
            self.now = now
        left = self.left
        gone = [name for name, b in left.items() if b[2] + BCAST_REFILL <= now]
        for name in gone:
            del left[name]


    def reconcile(self, live: set[int]) -> int:
        """The buckets of ids no live client has dropped (ServerDispatcher.reconcile: our bug
        skipped forget()), so no new record inherits a gone one's by a reused id. How many."""
        gone = [i for i in self.buckets if i not in live]
        for i in gone:
            del self.buckets[i]
        return len(gone)


def share(shares: dict, rec: ClientRecord, p) -> None:
    """Queue packet `p` for client `rec` in `shares` (id(client) -> (it, its packets in order))."""
    g = shares.get(id(rec))
    if g is None:
        shares[id(rec)] = (rec, [p])
    else:
        g[1].append(p)


def seal_shares(shares: dict, now: float, sends: dict, note_sent: Callable[[ClientRecord, float], None],
                failed: list) -> None:
    """Each client's packets in `shares` sealed in one Session.encrypt_many (which keeps the
    per-packet rules: the renegotiation trigger by packet id, fragment and compression one by
    one), its wire packets queued in `sends` for its address in order. A client whose sealing
    raises goes to `failed` (the pump ends that session); the others get theirs. The one
    sealing loop of both server data paths (tun and tap), from the device and client-to-client;
    the order between clients does not matter (each has its own socket address and keys)."""
    for rec, ps in shares.values():
        try:
            out = rec.session.encrypt_many(ps)
        except Exception as e:  # noqa: BLE001 - contained to that client
            failed.append((rec, e))
            continue
        if out:
            q = sends.get(rec.addr)
            if q is None:
                sends[rec.addr] = out
            else:
                q += out
            note_sent(rec, now)   # keepalive pings stay quiet while data flows (as on the client)


def _is_tcp_syn(p) -> bool:
    """An IPv4 or IPv6 TCP SYN (the only packets whose MSS option we clamp)."""
    n = len(p)
    if n < 40:
        return False
    v = p[0] >> 4
    if v == 4:
        t = (p[0] & 15) * 4
        return p[9] == 6 and n > t + 13 and bool(p[t + 13] & 0x02)
    return v == 6 and p[6] == 6 and n > 53 and bool(p[53] & 0x02)


class MssPolicy:
    """The inner TCP MSS for a session, from its negotiated cipher and packet format."""

    def __init__(self, rule: MssRule) -> None:
        self.rule = rule
        self._cache: dict[tuple[str, bool], int | None] = {}

    def for_session(self, s: Session) -> int | None:
        sk = s.send_key
        if sk is None:
            return None
        key = (sk.cipher, sk.hlen == 4)
        try:
            return self._cache[key]
        except KeyError:
            mss = self._cache[key] = self.rule(*key)
            return mss

    def clamp(self, p, s: Session):
        """-> the packet, its MSS lowered when it is a SYN asking for more. The packet is edited in
        place when writable; a plaintext from open (immutable bytes) is copied first -- only SYNs
        that need it pay for the copy.

        It runs on every packet: a cheap test first, written out (a helper call cost more than
        the test), passes the bulk of traffic (0x45, TCP, no SYN) on at once; anything else goes
        on to _is_tcp_syn."""
        if len(p) >= 40 and (p[0] != 0x45 or (p[9] == 6 and p[33] & 0x02)) and _is_tcp_syn(p):
            mss = self.for_session(s)
            if mss is not None:
                if isinstance(p, bytes):
                    q = bytearray(p)
                    return q if clamp_mss(q, mss) else p
                clamp_mss(p, mss)
        return p

    def clamp_batch(self, pkts: list, s: Session) -> list:
        """clamp() of each packet of a batch, with clamp()'s cheap test written out inline: the
        bulk (no SYN) passes without a call per packet, and the rest goes to clamp() itself,
        which tests again and decides. A frame policy (use_frames) clamps frame by frame."""
        clamp = self.clamp
        return [p if len(p) < 40 or (p[0] == 0x45 and (p[9] != 6 or not p[33] & 0x02)) else clamp(p, s)
                for p in pkts]

    def use_frames(self) -> None:
        """Clamp Ethernet frames (a tap device's), not IP packets: the one place the choice is made."""
        self.clamp = self.clamp_frame                   # type: ignore[method-assign]
        self.clamp_batch = self._clamp_frames           # type: ignore[method-assign]

    def _clamp_frames(self, pkts: list, s: Session) -> list:
        clamp = self.clamp_frame
        return [clamp(p, s) for p in pkts]

    def clamp_frame(self, p, s: Session):
        """clamp() for an Ethernet frame (a tap device's): the IPv4/IPv6 packet after its header
        (or one 802.1Q tag), as OpenVPN 2.6's mss.c sees it there; other frames pass as they are.

        It runs on every frame both ways (the tap client, the layer-2 server): as in clamp(), a
        cheap test first, written out, passes the bulk at once -- a frame too short to hold an IP
        and a TCP header (14 + 40 bytes), or an untagged IPv4 frame without options that is not
        a TCP SYN (protocol at 23, TCP flags at 47) -- anything else goes on to ip_offset and
        _is_tcp_syn, which decide exactly as before."""
        if len(p) < 54 or (p[12] == 8 and p[13] == 0 and p[14] == 0x45 and (p[23] != 6 or not p[47] & 0x02)):
            return p
        off = ip_offset(p)
        if off is None:
            return p
        view = memoryview(p)
        if not _is_tcp_syn(view[off:]):
            return p
        mss = self.for_session(s)
        if mss is None:
            return p
        if view.readonly:
            q = bytearray(p)
            return q if clamp_mss(memoryview(q)[off:], mss) else p
        clamp_mss(view[off:], mss)
        return p


class ClientDataPath:
    """One client Session's data path (`tap`: its packets are Ethernet frames)."""

    def __init__(self, session: Session, mss_rule: MssRule, tap: bool = False) -> None:
        self.s = session
        self.mss = MssPolicy(mss_rule)
        if tap:
            self.mss.use_frames()
        self.nat: ClientNat | None = None
        self.dhcp: Callable[[str], None] | None = None

    def set_nat(self, nat: ClientNat | None) -> None:
        """client-nat for this connection (openvpn/clientnat.py), or None. Why the methods are
        swapped rather than tested: without client-nat (nearly always) the path stays exactly the
        plain one, not one test per packet slower. With it, outgoing packets are translated
        before their MSS is clamped and sealed, incoming ones after opening and clamping
        (OpenVPN 2.6 clamps first both ways; the two touch different fields and adjust the
        checksum incrementally, so the order changes no byte)."""
        self.nat = nat
        self._swap()

    def set_dhcp_router(self, on_router: Callable[[str], None] | None) -> None:
        """`route-gateway dhcp` in effect on a tap client (openvpn/dhcprouter.py): each frame from
        the server loses the Router options of a DHCP OFFER/ACK, and an ACK's router goes to
        `on_router`; None: off. After client-nat's rewrite, as 2.6's process_ip_header orders them."""
        self.dhcp = on_router
        self._budget = ReplyBudget()
        self._now, self._over = 0.0, False
        self._swap()

    def _swap(self) -> None:
        if self.nat is None and self.dhcp is None:
            self.__dict__.pop("open", None)
            self.__dict__.pop("open_batch", None)
        else:
            self.open = self._open_filtered         # type: ignore[method-assign]
            self.open_batch = self._open_batch_filtered     # type: ignore[method-assign]
        if self.nat is None:
            self.__dict__.pop("seal_batch", None)
        else:
            self.seal_batch = self._seal_batch_nat  # type: ignore[method-assign]

    def _open_filtered(self, packet, now: float) -> list:
        pts = ClientDataPath.open(self, packet, now)
        if pts:
            if self.nat is not None:
                incoming = self.nat.incoming
                pts = [incoming(p) for p in pts]
            if self.dhcp is not None:
                self._now = now
                pts = [q for q in map(self._dhcp_reply, pts) if q is not None]
        return pts

    def _dhcp_reply(self, frame):
        self._over = False
        out, router = extract_router(frame, self._take)
        if router is not None:
            self.dhcp(router)                       # type: ignore[misc]
        elif out is None:
            why = OVER_RATE if self._over else FRAGMENTED_REPLY
            stats = self.s.stats
            stats[why] = stats.get(why, 0) + 1
        return out

    def _take(self, n: int) -> bool:
        """A server's reply of n bytes may be read now (dhcprouter.ReplyBudget)."""
        ok = self._budget.take(n, self._now)
        self._over = not ok
        return ok

    def _open_batch_filtered(self, packets, now: float) -> list:
        out: list = []
        open_ = self._open_filtered
        for p in packets:
            out += open_(p, now)
        return out

    def _seal_batch_nat(self, pkts: list, now: float) -> list:
        outgoing = self.nat.outgoing                # type: ignore[union-attr]
        return ClientDataPath.seal_batch(self, [outgoing(p) for p in pkts], now)

    def open(self, packet, now: float) -> list:
        """One wire packet in; tunnel packets out (MSS clamped)."""
        pts = self.s.receive(packet, now)
        if pts:
            clamp, s = self.mss.clamp, self.s
            return [clamp(p, s) for p in pts]
        return pts

    def open_batch(self, packets, now: float) -> list:
        """open() of each wire packet of a batch (Session.receive_many): the tunnel packets of
        all of them, in order."""
        s = self.s
        pts = s.receive_many(packets, now)
        return self.mss.clamp_batch(pts, s) if pts else pts

    def seal_batch(self, pkts: list, now: float) -> list:
        """Tunnel packets in (MSS clamped in place); wire packets out."""
        s = self.s
        if s.send_key is None:
            return []
        out = s.encrypt_many(self.mss.clamp_batch(pkts, s))      # one seal call per batch
        if out:
            s.note_sent(now)
        return out


class ServerDataPath:
    """The server's data path over a ServerDispatcher: per-client routing, client-to-client,
    multicast, MSS.

    Multicast as OpenVPN 2.6's multi.c (is_multicast): one read from the TUN goes to every
    connected client (never routed by iroute), whatever client-to-client says; one from a client
    goes to the TUN, and with client-to-client a copy to every other client (not back to the
    sender; ReplicationBudget bounds the copies, of the TUN's multicast too, server-wide). Each
    copy is one seal for its client."""

    def __init__(self, dispatcher: ServerDispatcher, mss_rule: MssRule, client_to_client: bool) -> None:
        self.d = dispatcher
        self.mss = MssPolicy(mss_rule)
        self.c2c = client_to_client
        self.stats = {"packet for a client not admitted yet": 0, "no route": 0}
        self.bcast = ReplicationBudget(self.stats)
        dispatcher.on_forget = self.bcast.forget
        dispatcher.on_reconcile = lambda live: self.bcast.reconcile(set(live))
        # Sessions whose sealing raised (our bug, or a state we did not foresee): the pump ends
        # each of them and logs the exception; the rest of the batch goes on.
        self.failed: list[tuple[ClientRecord, Exception]] = []

    def _others(self, rec: ClientRecord | None) -> list[ClientRecord]:
        """The clients a multicast goes to: every admitted one (its push sent) but `rec`."""
        return [o for o in self.d.by_addr.values() if o is not rec and o.alive and o.session.established]

    def from_link(self, packet, addr, now: float, to_tun: Callable[[object], None], sends: dict) -> ClientRecord | None:
        """One client packet: its tunnel packets go to `to_tun` (the TUN's queue, called at once:
        a plaintext is a view into the session's buffer, valid only until its next receive), or
        sealed for another client into `sends` (address -> packets) when client-to-client allows.

        Without client-to-client a packet for another client goes to the TUN too, as OpenVPN 2.6
        writes it there (multi.c routes between clients itself only with client-to-client): the
        host's forwarding and firewall decide whether it comes back out to that client -- what
        OpenVPN's manual offers for per-client firewall rules, and what a tap server here does
        with such a frame. Dropped here before, so clients (or an admin's ccd address) that
        reached each other through a 2.6 server's kernel never did through ours.

        With client-to-client a multicast goes to the TUN and to each other client (the class
        docstring). The copies for other clients are sealed per client (seal_shares) before
        returning, while the plaintext views are still valid."""
        rec, pts = self.d.receive(packet, addr, now)
        if pts and rec is not None:
            s = rec.session
            clamp = self.mss.clamp
            if not self.c2c:
                for p in pts:
                    to_tun(clamp(p, s))
                return rec
            route = self.d.route_packet
            shares: dict = {}
            for p in pts:
                p = clamp(p, s)
                if is_multicast(p):
                    to_tun(p)
                    # (charged for every other client the server holds: a bound known at once)
                    if self.bcast.allow(rec, now, len(self.d.by_addr) - 1):
                        for other in self._others(rec):
                            share(shares, other, p)
                    continue
                other = route(p)
                if other is None or other is rec or not other.alive:   # (alive: a gone one's iroute, see from_tun)
                    to_tun(p)
                elif other.session.established:
                    share(shares, other, p)
                else:
                    # (its address leased, its push not sent yet: 2.6 learns the route only then)
                    self.stats["packet for a client not admitted yet"] += 1
                    s.not_traffic += len(p) + s.framing     # dropped: no tunnel traffic (`inactive`)
            if shares:
                seal_shares(shares, now, sends, self.d.note_sent, self.failed)
        return rec

    def from_tun(self, pkts: list, now: float, sends: dict) -> None:
        """TUN packets to the clients owning their destinations, multicast to every client,
        sealed; others counted.

        Why grouped: a server's TUN batch goes to several clients, and sealing packet by packet
        paid the per-packet Python calls around each seal (as the client did before encrypt_many).
        Each client's packets are gathered in their TUN order and sealed in one encrypt_many call
        (seal_shares). Every per-packet rule stays: the route lookup (iroutes), the MSS clamp
        (not on multicast: 2.6 clamps unicast only), and, inside encrypt_many, the renegotiation
        trigger by packet id and the fragment/compression stubs (one by one there)."""
        route = self.d.route_packet
        clamp = self.mss.clamp
        shares: dict[int, tuple[ClientRecord, list]] = {}
        everyone: list[ClientRecord] | None = None
        for p in pkts:
            if len(p) < 20:
                continue
            if (p[16] & 0xF0 == 0xE0 and p[0] >> 4 == 4) or (p[0] >> 4 == 6 and len(p) >= 40 and p[24] == 0xFF):
                # (is_multicast, written out: one test per TUN packet)
                if everyone is None:
                    everyone = self._others(None)
                if not everyone:
                    self.stats["no route"] += 1
                elif self.bcast.allow_device(now, len(everyone)):   # (the server-wide budget's sender too)
                    for rec in everyone:
                        share(shares, rec, p)
                continue
            rec = route(p)
            # (alive: an iroute our bug left to a gone session, until the 5 s reconcile -- its
            # ended session's keys must not carry the LAN's packets to that client meanwhile)
            if rec is None or not rec.alive or not rec.session.established:
                self.stats["no route"] += 1
                continue
            s = rec.session
            g = shares.get(id(rec))
            if g is None:
                shares[id(rec)] = (rec, [clamp(p, s)])
            else:
                g[1].append(clamp(p, s))
        if shares:
            seal_shares(shares, now, sends, self.d.note_sent, self.failed)
