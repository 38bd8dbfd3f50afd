"""The peer-ids-tcp fuzz target: the server dispatcher over TCP transport (appliance/openvpn/server.py
with `tcp=True`: `accepted`, `stream_closed`, `closed_streams`, one session per connection), the
way gateway/server.py drives it: a connection is numbered (its peer-id) when accepted, before a
byte is read; its bytes go through a StreamFramer in whatever pieces recv gives; a framing error
or the end of its session closes it (stream_closed).

Why a target: peer-ids (fuzz35) drives the UDP dispatcher only; over TCP the numbers are taken at
accept and given back at close, a restart comes on a new connection while the old one may stay
open, and a second reset on a connection ends its session -- each a place for a number to leak or
be shared.

Input: steps split at SEP, `op b0 body`; op % 12 with the slot b0 % 5 (five client hosts):
  0, 1 connect: a new connection from the slot and a client on it (the slot's old connection, if
       any, is left open, its client silent: a restart);
  2 the slot's client sends its exit notification; 3 the connection closes (stream_closed);
  4 the slot's client sends data (an inner packet from its own address);
  5 the slot's connection gets raw bytes (body), framed or not (b0 bit 7): a framing error
    closes it, as the gateway does;
  6 a second client starts on the slot's open connection (a new reset there);
  7 forged P_DATA_V2 with any peer-id on the slot's connection;
  8 the operator kills the slot's client (kick); 9 renegotiation;
  10, 11 time passes (0.5 s, or b0/2 s in 2 s steps with keepalives).
Every packet a client sends is framed and cut into pieces of 1 + (b0 >> 3) bytes.

Oracles, after every step: no internal error; no two open connections hold one peer-id, and a
connection's record holds the connection's number; PeerIds holds exactly the numbers of open
connections (each once: nothing leaks at a close, nothing is freed while its connection is
open); a connection accepted gets the lowest number no open connection holds (2.6 numbers the
instance at accept); by_peer_id leads to a live record of an open connection; `closed_streams`
holds only connections still open; a record's address is its connection; data is taken only by
the record of the client that sealed it, forged data by nobody; a closed connection's bytes reach
nothing.
"""
from __future__ import annotations

SEP = b"\xff\xfe"
SLOTS = 5


def _client(label: str, now: float):
    from appliance.openvpn.session import Role, Session, SessionConfig
    from appliance.openvpn.tls import TlsSettings

    from . import harness as h
    p = h.pki()
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False, remote_cert_tls="server"),
                              lambda: h.client_wrapper("tls-crypt"), proto="tcp", auth="SHA256",
                              random_bytes=h.Counter(label)), now)
    c.start(now)
    return c


class Conn:
    """One accepted TCP connection: its key (as StreamKey, unique per connection), the client on
    it, its framer."""

    def __init__(self, key, client) -> None:
        from appliance.openvpn.framing import StreamFramer
        self.key, self.client, self.framer, self.open = key, client, StreamFramer(), True


def make_peer_ids_tcp():
    from appliance.openvpn.errors import BadPacket
    from appliance.openvpn.server_model import StreamKey
    from appliance.openvpn.opcodes import PING_MAGIC

    from .targets import _dispatcher

    def one(data: bytes) -> None:
        d = _dispatcher("tls-crypt", tcp=True)
        d.st.duplicate_cn = True
        now = 1.0
        conns: dict[object, Conn] = {}             # every connection ever accepted
        slot: dict[int, Conn] = {}                 # the slot's newest connection
        pids: dict[object, int] = {}               # the number each open connection got at accept
        serial = [0]
        piece = [1]
        drained: set = set()                       # closed connections whose last word was taken

        def close(c: Conn) -> None:
            if c.open:
                c.open = False
                d.stream_closed(c.key)
                pids.pop(c.key, None)

        def deliver(c: Conn, wire: bytes):
            """Bytes on connection c, cut into pieces, framed packets to the dispatcher; a framing
            error closes it. (record, packets) of the last packet."""
            last = (None, [])
            for i in range(0, len(wire), piece[0]):
                if not c.open:
                    return last
                try:
                    pkts = c.framer.feed(wire[i:i + piece[0]])
                except BadPacket:
                    close(c)
                    return last
                for p in pkts:
                    if c.key in d.closed_streams:
                        return last            # nothing more is read; closed after its last word
                    last = d.receive(p, c.key, now)
            return last

        def frame(p: bytes) -> bytes:
            return len(p).to_bytes(2, "big") + p

        def shuttle() -> None:
            for _ in range(60):
                moved = 0
                for c in list(conns.values()):
                    if not c.open or c.client is None:
                        continue
                    out = b"".join(frame(bytes(p)) for p in c.client.take_outgoing())
                    if out:
                        moved += 1
                        deliver(c, out)
                for pkt, key in d.take_outgoing():
                    moved += 1
                    c = conns.get(key)
                    assert c is not None and key not in drained, \
                        f"the server sent on connection {key}, closed before its last word was taken"
                    if c.open and c.client is not None:
                        c.client.receive(bytes(pkt), now)
                # The gateway writes a session's last word, then closes its connection.
                for cc in conns.values():
                    if cc.open and cc.key in d.closed_streams:
                        close(cc)
                drained.update(k for k, cc in conns.items() if not cc.open)
                if not moved:
                    break

        def live() -> list:
            return [r for r in list(d.by_addr.values()) + list(d.pending.values()) if r.alive]

        def owner_of(cl):
            for r in live():
                if cl.own_sid is not None and r.session.peer_sid == cl.own_sid:
                    return r
            return None

        def inner(rec_src: bytes, body: bytes) -> bytes:
            return b"\x45" + bytes(11) + rec_src + bytes([198, 18, 100, 1]) + body

        for step in data.split(SEP)[:20]:
            op, body = (step[0] % 12, step[1:]) if step else (0, b"")
            b0 = body[0] if body else 0
            piece[0] = 1 + (b0 >> 3)
            n = b0 % SLOTS
            c = slot.get(n)
            if op in (0, 1):
                before = set(pids.values())
                serial[0] += 1
                key = StreamKey(serial[0], f"198.18.37.{n + 1}")
                pid = d.accepted(key)
                lowest = min(set(range(len(before) + 1)) - before)
                assert pid == lowest, f"connection accepted with peer-id {pid}, the lowest free is {lowest}"
                pids[key] = pid
                new = Conn(key, _client(f"tcp-{serial[0]}", now))
                conns[key] = slot[n] = new
            elif c is None:
                pass
            elif op == 2 and c.client is not None:
                c.client.notify_exit(now, True)
            elif op == 3:
                close(c)
            elif op == 4 and c.client is not None and c.client.established:
                mine = owner_of(c.client)
                src = mine.vaddr_packed if mine is not None and mine.vaddr_packed else bytes(4)
                wire = c.client.encrypt(inner(src, body[1:]))
                if wire is not None:
                    rec, pts = deliver(c, frame(bytes(wire)))
                    if pts:
                        assert mine is not None and rec is mine, "a client's data was taken by another record"
            elif op == 5:
                raw = body[1:]
                before_recs = {id(r) for r in live()}
                if c.open:
                    deliver(c, frame(raw) if b0 & 128 and raw else raw)
                assert all(id(r) in before_recs or r.addr == c.key for r in live()), \
                    "raw bytes on one connection made a record elsewhere"
            elif op == 6 and c.open:
                serial[0] += 1
                c.client = _client(f"tcp-again-{serial[0]}", now)      # a second reset on this connection
            elif op == 7 and c.open:
                pid = int.from_bytes(body[1:4].ljust(3, b"\0"), "big")
                rec, pts = deliver(c, frame(bytes([0x48]) + pid.to_bytes(3, "big") + body[4:].ljust(8, b"\0")))
                assert not pts, "forged data was taken"
            elif op == 8:
                rec = d.record(c.key)
                if rec is not None:
                    d.kick(rec, now, "fuzz kill")
            elif op == 9 and c.client is not None and c.client.established:
                c.client.renegotiate(now)
            left = b0 / 2 if op >= 10 else 0.5
            while True:
                dt = min(left, 2.0)
                now += dt
                left -= dt
                for k in list(conns):
                    cc = conns[k]
                    if not cc.open or cc.client is None:
                        continue
                    cc.client.handle_timer(now)
                    if cc.client.closed:
                        cc.client = None
                        continue
                    w = cc.client.encrypt(PING_MAGIC)
                    if w is not None:
                        deliver(cc, frame(bytes(w)))
                d.handle_timer(now)
                shuttle()
                if left <= 0:
                    break
            # ---- oracles
            errs = d.take_internal_errors()
            assert not errs, f"dispatcher internal errors: {errs!r}"
            open_keys = {k for k, cc in conns.items() if cc.open}
            assert set(pids) == open_keys
            assert d.closed_streams <= open_keys, f"closed_streams holds closed connections: {d.closed_streams - open_keys}"
            numbers = list(pids.values())
            assert len(numbers) == len(set(numbers)), f"two open connections share a peer-id: {sorted(numbers)}"
            held = {p: 1 for p in numbers}
            assert d.peer_ids.holders == held, f"PeerIds holds {d.peer_ids.holders}, open connections {held}"
            for r in live():
                assert r.addr in open_keys, f"a live record on closed connection {r.addr}"
                assert r.peer_id == pids[r.addr], f"record on {r.addr} holds {r.peer_id}, its connection {pids[r.addr]}"
            for p, r in d.by_peer_id.items():
                assert r.alive and r.peer_id == p and r.addr in open_keys, f"by_peer_id[{p}] leads astray"
    return one


def seeds() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    return [
        s(b"\x00\x00", b"\x0a\x08", b"\x04\x00ab", b"\x03\x00"),                  # connect, data, close
        s(b"\x00\x00", b"\x00\x01", b"\x03\x00", b"\x00\x02", b"\x0a\x04"),       # the freed number again
        s(b"\x00\x00", b"\x0a\x04", b"\x00\x00", b"\x0a\x04", b"\x04\x00x", b"\x03\x00"),   # restart, old open
        s(b"\x00\x00", b"\x0a\x04", b"\x06\x00", b"\x0a\x04"),                    # a second reset on it
        s(b"\x00\x00", b"\x05\x80junk", b"\x05\x00\x00\x00", b"\x00\x01"),         # framing errors
        s(b"\x00\x00", b"\x0a\x04", b"\x07\x00\x00\x00\x00abcdefgh", b"\x08\x00", b"\x0a\x04"),
        s(b"\x00\x40", b"\x0a\x04", b"\x09\x40", b"\x0a\x08", b"\x02\x40", b"\x0a\x04"),   # 9-byte pieces
        s(b"\x00\x00", b"\x00\x01", b"\x0b\xff"),                                   # both time out
    ]
