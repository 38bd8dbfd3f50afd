"""Fuzz targets for the server's peer-ids (appliance/openvpn/peerids.py, as the dispatcher hands them
out) and the tls-crypt-v2 server's kept client keys (appliance/openvpn/v2keycache.py).

peer-ids: a fresh dispatcher (tls-crypt) per input and a script of steps over 5 client addresses:
a client connects (a new client, or a restart from an address that has one: the old client object
is kept, as a client that went on sending), leaves (exit notification), goes silent, sends data
(sealed with its keys, from its address or another), a client that is gone sends late data, forged
P_DATA_V2 with any peer-id, the operator kills one, time passes (keepalives from the clients still
talking, so the silent ones time out). Oracles, after every step: no two live clients (records at
different addresses) share a peer-id, the records at one address (a restart beside the client)
share it; by_peer_id leads each number to a live record holding it; PeerIds holds exactly the
numbers of the live records, each as many times as records hold it (no number leaks once its
clients are gone); a client new at an address gets the lowest number no live record holds (2.6's
multi_assign_peer_id); data is taken only by the record of the client that sealed it (a gone
client's late data reaches nobody else, a forged packet nobody); no internal error.

v2-keycache: a dispatcher with tls-crypt-v2 and the cache's bounds made small (CACHE_SIZE 4,
BUILD_BURST 6, BUILD_RATE 1 a second; restored after each input, as switch-tables does), fed
HARD_RESET_CLIENT_V3 and CONTROL_WKC_V1 packets from 8 addresses with any session id: wrapped with
one of 6 valid client keys, or a valid key's WKc with a forged wrapping, or a WKc with a flipped
byte or fuzzed bytes. Oracles: nothing escapes, no internal error; the cache keeps at most
CACHE_SIZE keys, only WKcs that authenticate (one of the 6); keys built (new entries) never exceed
BUILD_BURST plus BUILD_RATE per second elapsed; a WKc the cache holds is never refused for the
build budget; the server answers only a packet wrapped with the key its WKc carries.
"""
from __future__ import annotations

SEP = b"\xff\xfe"
STATS = {"delivered": 0, "late delivered": 0}     # how often the data oracles had something to judge
ADDRS = [(f"198.18.35.{i + 1}", 41000 + i) for i in range(5)]


def _client(label: str, now: float, protection: str = "tls-crypt"):
    from appliance.openvpn.session import Role, Session, SessionConfig
    from appliance.openvpn.tls import TlsSettings

    from . import harness as h
    p = h.pki()
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False, remote_cert_tls="server"),
                              lambda: h.client_wrapper(protection), proto="udp", auth="SHA256",
                              random_bytes=h.Counter(label)), now)
    c.start(now)
    return c


def make_peer_ids():
    from appliance.openvpn.opcodes import PING_MAGIC

    from .targets import _dispatcher

    def one(data: bytes) -> None:
        d = _dispatcher("tls-crypt")
        d.st.duplicate_cn = True                   # every client holds the harness's one certificate
        now = 1.0
        talking: dict[tuple, object] = {}          # address -> the client session sending from it
        gone: list[tuple[object, tuple]] = []      # every client object ever replaced or left
        serial = [0]

        def shuttle(now: float) -> None:
            for _ in range(60):
                moved = 0
                for a, c in list(talking.items()):
                    for pkt in c.take_outgoing():
                        d.receive(bytes(pkt), a, now)
                        moved += 1
                for pkt, addr in d.take_outgoing():
                    moved += 1
                    c = talking.get(addr)
                    if c is not None:
                        c.receive(bytes(pkt), now)
                if not moved:
                    break

        def live() -> list:
            return [r for r in list(d.by_addr.values()) + list(d.pending.values()) if r.alive]

        def owner_of(c):
            """The server record whose session is `c`'s peer."""
            for r in live():
                if r.session.peer_sid == c.own_sid and c.own_sid is not None:
                    return r
            return None

        def inner(body: bytes) -> bytes:
            """An IPv4 packet from the address of a live record (chosen by body[1]): the
            dispatcher takes only inner packets from the sender's own address."""
            srcs = [r.vaddr_packed for r in live() if r.vaddr_packed] or [bytes(4)]
            src = srcs[(body[1] if len(body) > 1 else 0) % len(srcs)]
            return b"\x45" + bytes(11) + src + bytes([198, 18, 100, 1]) + body[2:]

        for step in data.split(SEP)[:20]:
            op, body = (step[0] & 15, step[1:]) if step else (0, b"")
            b0 = body[0] if body else 0
            addr = ADDRS[b0 % len(ADDRS)]
            before = {r.peer_id for r in live()}
            addr_had = addr in d.by_addr or addr in d.pending
            if op in (0, 1):
                old = talking.get(addr)
                if old is not None:
                    gone.append((old, addr))
                serial[0] += 1
                talking[addr] = _client(f"peer-ids-{serial[0]}", now)
            elif op == 2 and addr in talking:
                c = talking[addr]
                c.notify_exit(now, True)
                shuttle(now)
                gone.append((c, addr))
                del talking[addr]
            elif op == 3 and addr in talking:
                gone.append((talking.pop(addr), addr))     # silent: the server times it out
            elif op in (4, 5) and addr in talking:
                c = talking[addr]
                wire = c.encrypt(inner(body))
                src = addr if op == 4 else ADDRS[(b0 >> 3) % len(ADDRS)]
                if wire is not None:
                    mine = owner_of(c)
                    rec, pts = d.receive(bytes(wire), src, now)
                    if pts:
                        STATS["delivered"] += 1
                        assert mine is not None and rec is mine, "a client's data was taken by another record"
            elif op == 6 and gone:
                c, a = gone[b0 % len(gone)]
                wire = c.encrypt(inner(body)) if c.established else None
                if wire is not None:
                    mine = owner_of(c)
                    rec, pts = d.receive(bytes(wire), a if not b0 & 128 else addr, now)
                    if pts:
                        STATS["late delivered"] += 1
                        assert mine is not None and rec is mine, "a gone client's late data reached another client"
            elif op == 7:
                pid = int.from_bytes(body[1:4].ljust(3, b"\0"), "big")
                pkt = bytes([0x48]) + pid.to_bytes(3, "big") + body[4:]
                rec, pts = d.receive(pkt, addr, now)
                assert not pts, "forged data was taken"
            elif op == 8:
                rec = d.by_addr.get(addr)
                if rec is not None:
                    d.kick(rec, now, "fuzz kill")
            elif op == 9 and addr in talking:
                talking[addr].renegotiate(now)
            # Time passes: 0.5 s, or (ops 10-15) up to ~128 s in 2 s steps with keepalives.
            left = b0 / 2 if op >= 10 else 0.5
            while True:
                dt = min(left, 2.0)
                now += dt
                left -= dt
                for a, c in list(talking.items()):
                    c.handle_timer(now)
                    if c.closed:
                        del talking[a]
                        gone.append((c, a))
                        continue
                    w = c.encrypt(PING_MAGIC)
                    if w is not None:
                        d.receive(bytes(w), a, now)
                d.handle_timer(now)
                shuttle(now)
                if left <= 0:
                    break
            # ---- oracles
            errs = d.take_internal_errors()
            assert not errs, f"dispatcher internal errors: {errs!r}"
            recs = live()
            by_pid: dict[int, set] = {}
            for r in recs:
                by_pid.setdefault(r.peer_id, set()).add(r.addr)
            for pid, addrs in by_pid.items():
                assert len(addrs) == 1, f"peer-id {pid} held by clients at {sorted(addrs)}"
            for pid, r in d.by_peer_id.items():
                assert r.alive and r.peer_id == pid, f"by_peer_id[{pid}] leads to a dead or other record"
            held = {pid: sum(1 for r in recs if r.peer_id == pid) for pid in by_pid}
            assert d.peer_ids.holders == held, f"PeerIds holds {d.peer_ids.holders}, live records {held}"
            if op in (0, 1) and not addr_had:
                new = [r for r in recs if r.addr == addr]
                if new:
                    lowest = min(set(range(len(before) + 1)) - before)
                    assert new[0].peer_id == lowest, f"new client got peer-id {new[0].peer_id}, lowest free {lowest}"
    return one


def seeds_peer_ids() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    return [
        s(b"\x00\x00", b"\x00\x01", b"\x02\x00", b"\x00\x02", b"\x04\x02ab", b"\x06\x00"),   # 0 leaves, 0 again
        s(b"\x00\x00", b"\x00\x01", b"\x00\x00", b"\x0a\x04", b"\x04\x00x", b"\x06\x00y"),   # a restart
        s(b"\x00\x00", b"\x00\x01", b"\x03\x00", b"\x0f\x80", b"\x00\x02", b"\x06\x80z"),    # silent, times out
        s(b"\x00\x00", b"\x07\x00\x00\x00\x00abcdefgh", b"\x07\x01\x00\x00\x01"),
        s(b"\x00\x00", b"\x00\x01", b"\x08\x00", b"\x00\x03", b"\x05\x0bdata"),             # kill, float
        s(b"\x00\x00", b"\x09\x00", b"\x0a\x08", b"\x04\x00after renegotiation"),
        s(b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x02\x01", b"\x02\x00", b"\x00\x04", b"\x00\x03"),
    ]


# ------------------------------------------------------------------ tls-crypt-v2 kept client keys
N_KEYS = 6
V2_ADDRS = [(f"198.18.36.{i + 1}", 42000 + i) for i in range(8)]


def make_v2_keycache():
    from appliance.openvpn import keyfiles, v2keycache, wrapping
    from appliance.openvpn.opcodes import Op

    from . import harness as h
    from .targets import _dispatcher
    kcs = [h.det_bytes(f"fuzz35-kc-{i}", 256) for i in range(N_KEYS)]
    wkcs = [keyfiles.wrap_client_key(kc, h.V2_SERVER_KEY, f"fuzz35-{i}".encode(), keyfiles.METADATA_TYPE_USER)
            for i, kc in enumerate(kcs)]
    valid = set(wkcs)
    small = {"CACHE_SIZE": 4, "BUILD_BURST": 6.0, "BUILD_RATE": 1.0}

    def one(data: bytes) -> None:
        saved = {k: getattr(v2keycache, k) for k in small}
        for k, v in small.items():
            setattr(v2keycache, k, v)
        try:
            run(data)
        finally:
            for k, v in saved.items():
                setattr(v2keycache, k, v)

    def run(data: bytes) -> None:
        d = _dispatcher("tls-crypt-v2")
        t0 = now = 1.0
        built = 0
        kept_before: set = set()
        for step in data.split(SEP)[:48]:
            if len(step) < 2:
                step = step.ljust(2, b"\0")
            sel, arg, rest = step[0], step[1], step[2:]
            addr = V2_ADDRS[arg & 7]
            now += (arg >> 3) / 4               # up to ~8 s a step
            k = sel % N_KEYS
            how = (sel >> 3) & 3
            op = Op.CONTROL_HARD_RESET_CLIENT_V3 if not sel & 32 else Op.CONTROL_WKC_V1
            sid = rest[:8].ljust(8, b"\0")
            body = rest[8:]
            w = wrapping.TlsCryptV2ClientWrapper(kcs[k], wkcs[k])
            if how == 3:
                pkt = body                       # raw bytes
            else:
                from appliance.openvpn.control import encode_body
                cb = encode_body([], None, 0, b"") if op == Op.CONTROL_HARD_RESET_CLIENT_V3 else body
                pkt = bytearray(w.wrap((op << 3), sid, cb, now))
                if how == 1:                     # the WKc changed (a forged one of the right size)
                    i = len(pkt) - 1 - (rest[8] if len(rest) > 8 else 0) % len(wkcs[k])
                    pkt[i] ^= 0x40
                elif how == 2:                   # valid WKc, the packet's wrapping forged
                    pkt[9 + (rest[9] if len(rest) > 9 else 0) % 16] ^= 1
                pkt = bytes(pkt)
            cache = d._v2_keys
            hit = cache is not None and any(pkt.endswith(x) for x in cache._kept)
            over_before = d.stats.get(v2keycache.OVER_RATE, 0)
            d.receive(pkt, addr, now)
            sent = d.take_outgoing()
            cache = d._v2_keys
            kept = set(cache._kept) if cache is not None else set()
            built += len(kept - kept_before)
            kept_before = kept
            assert len(kept) <= v2keycache.CACHE_SIZE, f"{len(kept)} client keys kept"
            assert kept <= valid, "a WKc that does not authenticate was kept"
            assert built <= v2keycache.BUILD_BURST + v2keycache.BUILD_RATE * (now - t0) + 1e-9, \
                f"{built} client keys built in {now - t0} s"
            if hit:
                assert d.stats.get(v2keycache.OVER_RATE, 0) == over_before, "a kept WKc refused for the budget"
            assert not (sent and how in (1, 2)), f"answered a packet with a forged {'WKc' if how == 1 else 'wrapping'}"
            errs = d.take_internal_errors()
            assert not errs, f"dispatcher internal errors: {errs!r}"
            d.handle_timer(now)
            d.take_outgoing()

    return one


def seeds_v2_keycache() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    sid = bytes(range(1, 9))
    return [
        s(*(bytes([i, i]) + sid for i in range(6))),                            # six keys, six addresses
        s(*(bytes([i % 6, (i % 8) | 8]) + sid for i in range(30))),              # past the budget, time passing
        s(*(bytes([0, i]) + bytes([i]) * 8 for i in range(8))),                 # one key, many sids and addresses
        s(bytes([8, 0]) + sid + b"\x05", bytes([16, 1]) + sid + b"\x00\x03"),   # forged WKc, forged wrapping
        s(bytes([24, 0]) + b"\x50" + bytes(80)),                                # raw
        s(bytes([32, 0]) + sid + b"\x00\x00\x00\x00\x00", bytes([33, 1]) + sid),  # CONTROL_WKC_V1
        s(*(bytes([i % 6, 0xF8 | (i % 8)]) + sid for i in range(16))),
    ]
