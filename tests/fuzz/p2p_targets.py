"""The "p2p-listen" fuzz target: the point-to-point tls-server's UDP port fed datagrams from any
address (transport/p2p_link.py P2PListenLink, gateway/p2p_server.py TakeOver), with a live,
authenticated session to protect.

Why: that port is unconnected -- anyone may send to it -- and what arrives decides who the peer
is: the first reset, an authenticated float, a candidate session that takes over once it has
authenticated. The gateway's bookkeeping after each read (gateway/client.py `_p2p_read`,
`_p2p_float`, `_p2p_took_over`, the candidate timer) is replayed here as it is there, over a fake
socket, so the link and TakeOver see the same calls.

The input is a script of steps split at SEP; each step is an op byte (bits 0-2 what, bits 3-7
which source address, ADDRS) and a body:
  0 the body as a raw datagram;            1 a control packet `op | sid(8) | body` wrapped with
  2 data the live peer's keys seal;          the tls-auth key (as a key holder could send);
  3 a genuine new client runs its handshake from there (at most once per input);
  4 time passes (body[0] / 16 s) and the timers run;
  5 a replay of a packet a genuine client sent earlier (body[0] picks it);
  6 the live peer's pending packets, from its own address, and our answers to it;
  7 a client hard reset wrapped with the key: key id and session id from the body.
The first byte of the input picks the world: bit 0 `float`, bit 1 `remote` set (the peer's host).

Invariants (AssertionError): nothing escapes; nothing is ever sent to an address that sent only
unauthenticated bytes; the peer's address moves only by a takeover (an established candidate) or,
with float, by data the live keys authenticated; the link never moves an established peer by itself;
candidates (TLS handshakes) stay at most two per CANDIDATE_MIN_AGE, however many resets come.
"""
from __future__ import annotations

from appliance.gateway.p2p_server import CANDIDATE_MIN_AGE, TakeOver
from appliance.openvpn import wrapping
from appliance.openvpn.datapath import ClientDataPath
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from appliance.transport.p2p_link import NEWCOMERS_MAX, P2PListenLink, same_addr
from lab.fakes import FakeUdp

from . import harness as h

SEP = b"\xff\xfe"
PEER = ("198.18.7.1", 1194)
ADDRS = [PEER, ("198.18.7.1", 5555), ("198.18.7.2", 1194), ("::ffff:198.18.7.1", 1194), ("198.18.7.3", 40000)]
NO_MSS = lambda cipher, v2: None                 # noqa: E731 - no clamping
MAX_STEPS = 12


def _server(label: str, now: float) -> Session:
    p = h.pki()
    return Session(SessionConfig(Role.SERVER, TlsSettings(p["ca"], *p["server"], True),
                                 lambda: wrapping.TlsAuthWrapper(h.STATIC_KEY, 0, "SHA256"), auth="SHA256",
                                 data_ciphers=["AES-256-GCM"], p2p=True, random_bytes=h.Counter(label)), now)


def _client(label: str, now: float) -> Session:
    p = h.pki()
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False),
                              lambda: wrapping.TlsAuthWrapper(h.STATIC_KEY, 1, "SHA256"), auth="SHA256",
                              data_ciphers=["AES-256-GCM"], p2p=True, random_bytes=h.Counter(label)), now)
    c.start(now)
    return c


class World:
    """A listening p2p tls-server with an established peer, and the gateway's bookkeeping."""

    def __init__(self, float_: bool, remote: bool) -> None:
        self.t = FakeUdp()
        self.link = P2PListenLink(self.t, (PEER[0], PEER[1]) if remote else None, float_)
        self.now = 0.0
        self.made = 0
        self.n = 0

        def make(now: float) -> Session:
            self.made += 1
            return _server(f"p2p-candidate{self.made}", now)
        self.live = _server("p2p-live", 0.0)
        self.dp = ClientDataPath(self.live, NO_MSS)
        self.take = TakeOver(make, NO_MSS, wrapping.TlsAuthWrapper(h.STATIC_KEY, 0, "SHA256"))
        self.peer, self.peer_addr = _client("p2p-peer", 0.0), PEER
        self.captured: list[bytes] = []
        self.moves: list[str] = []              # why the peer's address moved, this step
        for _ in range(60):
            if self.live.established and self.peer.established:
                break
            self.peer_traffic()
        if not (self.live.established and self.peer.established):
            raise RuntimeError("p2p-listen: the live session did not come up")

    # ---- the gateway (client.py _on_link_read for a P2PListenLink, _p2p_read and what it calls)
    def read(self) -> None:
        link, now = self.link, self.now
        before = link.addr
        for pkt in link.recv_packets():
            self.dp.open(pkt, now)                # the gateway counts a raise as our bug: a finding
        if before is not None and link.addr != before:
            raise AssertionError(f"the link moved the peer by itself: {before} -> {link.addr}")
        self.flush()
        link.live_sid = self.live.peer_sid
        link.proven = self.live.established
        if link.floaters:
            items, link.floaters = link.floaters, []
            for data, src in items:
                n = self.live.data_authenticated
                self.dp.open(data, now)
                if self.live.data_authenticated > n and not link.is_peer(src):
                    self.moves.append("float")
                    link.addr = src
            self.flush()
        if link.newcomers:
            items, link.newcomers = link.newcomers, []
            self.took_over(self.take.feed(link, items, now))

    def timers(self) -> None:
        self.live.handle_timer(self.now)
        self.flush()
        self.took_over(self.take.timer(self.link, self.now))

    def took_over(self, cand) -> None:
        if cand is None:
            return
        if not cand.session.established:
            raise AssertionError("a candidate that has not authenticated took over")
        old = self.live
        self.live, self.dp = cand.session, cand.dp
        self.link.addr, self.link.live_sid, self.link.proven = cand.addr, cand.session.peer_sid, True
        self.moves.append("takeover")
        old.release()
        self.flush()

    def flush(self) -> None:
        if self.link.addr is not None:
            self.link.send_packets(self.live.take_outgoing())

    # ---- the peers
    def peer_traffic(self) -> None:
        """The live peer's packets from its address, then our answers to it."""
        self.now += 0.05
        for p in self.peer.take_outgoing():
            p = bytes(p)
            self.captured.append(p)
            self.t.inbox.append((p, self.peer_addr))
        self.read()
        self.answer(self.peer, self.peer_addr)
        self.peer.handle_timer(self.now)

    def answer(self, client: Session, addr: tuple) -> None:
        keep = []
        for p, to in self.t.sent:
            if same_addr(to, addr):
                client.receive(p, self.now)
            else:
                keep.append((p, to))
        self.t.sent = keep

    def newcomer(self, addr: tuple) -> None:
        """A genuine client restarting at `addr`: its handshake, as long as it takes (bounded)."""
        c = _client(f"p2p-newcomer{self.made}", self.now)
        for _ in range(40):
            self.now += 0.05
            for p in c.take_outgoing():
                p = bytes(p)
                self.captured.append(p)
                self.t.inbox.append((p, addr))
            self.read()
            self.answer(c, addr)
            c.handle_timer(self.now)
            self.timers()
            if self.moves and self.moves[-1] == "takeover" and same_addr(self.link.addr, addr):
                self.peer, self.peer_addr = c, addr
                self.answer(c, addr)
                return


def make_p2p_listen():
    worlds: dict[int, World] = {}

    def world(i: int) -> World:
        w = worlds.get(i)
        if w is None or w.live.closed or w.peer.closed or w.n > 2000:
            w = worlds[i] = World(bool(i & 1), bool(i & 2))
        w.n += 1
        return w

    def one(data: bytes) -> None:
        if not data:
            return
        w = world(data[0] & 3)
        w.t.sent = []
        start, made = w.now, w.made
        keyed = [w.peer_addr, w.link.addr]            # addresses an answer may go to
        genuine = False
        for step in data[1:].split(SEP)[:MAX_STEPS]:
            if not step:
                continue
            op, body = step[0], step[1:]
            what, src = op & 7, ADDRS[(op >> 3) % len(ADDRS)]
            w.moves = []
            addr_before = w.link.addr
            if w.take.cand is not None:
                keyed.append(w.take.cand.addr)        # its reset passed the key check when it came
            if what == 0:
                w.t.inbox.append((body, src))
            elif what in (1, 7):
                if what == 7:
                    b = body.ljust(9, b"\0")
                    op_b, sid, rest = (7 << 3) | (b[0] & 7), b[1:9], b[9:]
                else:
                    b = body.ljust(9, b"\0")
                    op_b, sid, rest = b[0], b[1:9], b[9:]
                w.t.inbox.append((bytes(wrapping.TlsAuthWrapper(h.STATIC_KEY, 1, "SHA256").wrap(op_b, sid, rest, 1.0)),
                                  src))
                keyed.append(src)
            elif what == 2:
                sealed = w.peer.encrypt(body)
                if sealed is not None:
                    w.t.inbox.append((bytes(sealed), src))
            elif what == 3:
                if genuine:
                    continue
                genuine = True
                keyed.append(src)
                w.newcomer(src)
            elif what == 4:
                w.now += (body[0] if body else 16) / 16
                w.timers()
            elif what == 5:
                if w.captured:
                    w.t.inbox.append((w.captured[(body[0] if body else 0) % len(w.captured)], src))
                    keyed.append(src)
            else:
                w.peer_traffic()
            if what not in (3, 6):
                w.read()
            # ---- invariants
            if len(w.link.newcomers) > NEWCOMERS_MAX or len(w.link.floaters) > NEWCOMERS_MAX:
                raise AssertionError("the link kept more than NEWCOMERS_MAX datagrams")
            if w.link.addr != addr_before and addr_before is not None:
                if not w.moves:
                    raise AssertionError(f"the peer moved {addr_before} -> {w.link.addr} without a takeover "
                                         "or an authenticated float")
                if "float" in w.moves and not w.link.float:
                    raise AssertionError("the peer floated without `float`")
                if w.moves == ["float"] and what != 2:
                    raise AssertionError("the peer floated on data the live keys did not seal")
                if w.moves[-1] == "float":
                    w.peer_addr = w.link.addr         # the peer is there now
            for _p, to in w.t.sent:
                if not any(a is not None and same_addr(to, a) for a in keyed + [w.link.addr]):
                    raise AssertionError(f"answered {to}, which sent nothing authenticated")
            if w.link.addr is not None:
                keyed.append(w.link.addr)
            w.answer(w.peer, w.peer_addr)
            w.t.sent = []
        windows = (w.now - start) / CANDIDATE_MIN_AGE
        if w.made - made > 2 * (windows + 2):
            raise AssertionError(f"{w.made - made} TLS handshakes started in {w.now - start:.2f} s")
    return one


def seeds() -> list[bytes]:
    """Scripts: junk, wrapped resets from strangers and the peer's address, a genuine restart
    (from the peer's address and elsewhere), floats, replays, time passing."""
    reset = bytes([7 << 3]) + h.det_bytes("sid", 8) + bytes([0]) + bytes(4)
    s = []
    for world in range(4):
        w = bytes([world])
        s += [
            w + bytes([0 | 4 << 3]) + b"\x38" + bytes(40),                    # junk shaped as a reset
            w + bytes([7 | 2 << 3]) + b"\x00" + h.det_bytes("a", 8) + SEP + bytes([4]) + b"\x20"
              + SEP + bytes([7 | 4 << 3]) + b"\x00" + h.det_bytes("b", 8) + SEP + bytes([7 | 0 << 3]) + b"\x01"
              + h.det_bytes("c", 8),
            w + bytes([3 | 1 << 3]),                                         # the peer restarts on a new port
            w + bytes([3 | 0 << 3]) + SEP + bytes([6]),                      # ... on its own address
            w + bytes([2 | 1 << 3]) + bytes.fromhex("4500001c00010000400100000a0000020a000001") + bytes(8),
            w + bytes([2 | 3 << 3]) + b"\x45" + bytes(27) + SEP + bytes([6]),
            w + bytes([5 | 2 << 3]) + b"\x00" + SEP + bytes([5 | 4 << 3]) + b"\x01" + SEP + bytes([4]) + b"\x10",
            w + bytes([1 | 2 << 3]) + reset + SEP + bytes([1 | 2 << 3]) + b"\x20" + h.det_bytes("a", 8) + b"\x00",
            w + bytes([6]) + SEP + bytes([4]) + b"\xff" + SEP + bytes([6]),
            w + bytes([0 | 0 << 3]) + b"\x48" + bytes(30) + SEP + bytes([0 | 1 << 3]) + b"\x48" + bytes(30),
        ]
    return s


# ------------------------------------------------------------------ p2p key-method messages
def make_p2p_key_method():
    """A fresh in-memory p2p handshake (tls-auth, tls-client and tls-server without push) per
    input, one side's key-method message replaced by the fuzzed bytes after the first byte (bit
    0: the tls-server's message to the client, else the client's to the server): p2p.negotiate
    reads the peer's IV_PROTO and IV_CIPHERS from it. Neither Session may raise; once both are
    up, a packet each way. Uses Session._make_key_method / _queue_tls (private: no public hook)."""
    def one(data: bytes) -> None:
        if not data:
            return
        c, s = _client("p2p-km-client", 0.0), _server("p2p-km-server", 0.0)
        sender = s if data[0] & 1 else c
        fuzzed = data[1:]

        def send_fuzzed(ks, sender=sender, fuzzed=fuzzed):
            ks.local_km, _ = sender._make_key_method()
            ks.sent_km = True
            sender._queue_tls(ks, ks.tls.send_message(fuzzed))
        sender._send_key_method = send_fuzzed
        h.pump(c, s, lambda: c.closed or s.closed or (c.established and s.established), max_rounds=40)
        c.handle_timer(100.0)
        s.handle_timer(100.0)
        if c.established and s.established:
            for a, b in ((c, s), (s, c)):
                w = a.encrypt(b"\x45" + bytes(27))
                if w is not None:
                    b.receive(bytes(w), 100.0)
    return one


def p2p_key_method_seeds() -> list[bytes]:
    """The two real key-method messages of a p2p handshake (p2p peer-info), and variants of their
    IV_PROTO / IV_CIPHERS."""
    out = []
    for side, maker in ((0, _client), (1, _server)):
        sess = maker("p2p-km-seed", 0.0)
        _km, msg = sess._make_key_method()
        out.append(bytes([side]) + msg)
        for a, b in ((b"IV_PROTO=", b"IV_PROTO=0x"), (b"AES-256-GCM", b"CHACHA20-POLY1305:BF-CBC"),
                     (b"IV_CIPHERS=", b"IV_X="), (b"IV_PROTO=", b"IV_PROTO=-")):
            out.append(bytes([side]) + msg.replace(a, b))
    return out
