"""The contain fuzz target: one peer's bytes end at most its own session, with legitimate peers
connected and passing traffic while hostile ones send (the project's first promise, checked on the
whole server: gateway/server.py's pump, the dispatcher, the data path, admission, the log).

Why a target: the network-facing targets drive one peer and check for exceptions; control-script,
peer-ids and port-share keep a bystander, but on the dispatcher alone or for one kind of attacker.
Here a UDP server (tls-crypt, `auth-user-pass-verify` with a passdb) of the gateway suite's
in-memory world (lab/gateway_world.py) holds three legitimate clients (certificate and password:
a passdb refuses logins without a password, `auth-user-pass-optional` wants a command) and
mallory (client3), authenticated, hostile.
The server is UDP only (one proto per server; TCP's bystanders are peer-ids-tcp's and port-share's).

Input: steps split at SEP, `op b0 b1 body`; op % 16:
  0 a keyless sender: `body` as a datagram from an attacker's address, or (b0 bit 7) from a
    legitimate client's own address and port (spoofed);
  1 a replay of a captured client-to-server datagram (b0 picks it), as it was, cut at b1, or with
    bit b1 flipped (b0 >> 5), from its own source or an attacker's, 1..16 times;
  2 a captured server-to-client datagram replayed, cut or flipped to a legitimate client, spoofed
    from the server's address;
  3 a tls-crypt key holder without a certificate of the server's CA starts a handshake from an
    attacker's address (b0 & 3), or (b0 bit 7) from a legitimate client's address (its answers go to
    that client);
  4 the key holder forges a control packet into a session it saw: the session ids and the next
    message id read from that client's captured control packets (the key opens them), `body` as
    the payload of message id + b1 % 8 (b1 bit 7: with an ACK), from the client's address, packet
    ids far ahead. Into a legitimate client's session (b0 picks it; b0 bit 6: mallory's), where
    it ended that client's session at once (fuzz45's finding, as in 2.6); since forge48 the
    client keeps its tunnel and renegotiates, and every oracle below must hold with it (review48e
    made this the default, FUZZ_CONTAIN_FORGE_LEGIT gone: tests/fuzz/README.md);
  5 a handshake flood: b0 % 12 key holders from new addresses;
  6 mallory floods PUSH_REQUEST (b0 % 24 + 1 times);
  7 mallory sends `body` as TLS plaintext on its control channel (a bogus key-method message, junk;
    b0 bit 7: repeated past 20 KiB, an oversized record);
  8 mallory renegotiates b0 % 8 + 1 times in a row (a storm);
  9 mallory seals an inner packet with its keys and sends it with a legitimate client's peer-id
    (b0 picks it), from its own address or (b1 bit 0) the victim's;
  10 mallory's TUN sends a packet whose source is a legitimate client's tunnel address (or
    198.18.77.7), to the LAN or to another legitimate client;
  11 mallory restarts (SIGUSR1) or (b0 bit 7) exits;
  12 time passes (b0 % 30 + 0.1 s);
  13 `body` as a datagram from mallory's own address (raw, not sealed);
  14 a race: the next datagram a legitimate client sends reaches the server first as a copy from
    an attacker's address (an on-path attacker faster than the client), then as itself;
  15 mallory seals a packet under its own peer-id and sends it from a legitimate client's address
    (a float onto an address another client holds).

Oracles, after every step (for the rule, not today's code):
- no internal error (dispatcher, pump); the server never stops; the loop reaches the time asked
  within its steps (no spin);
- every legitimate client stays connected: the same Connection (no reconnect), the same server
  record, established, with the address and peer-id it had, and packets it sends then reach the
  right place: each to the LAN (the server's TUN), each from the LAN to it, client-to-client to
  the next one;
- a packet whose inner source is not its sender's own address, or that was sealed by mallory but
  sent under another client's peer-id, reaches no TUN;
- books bounded: at most 4 sessions established (the three and mallory), handshakes in progress
  within max-half-open-per-source for each source, the admission's counts equal to its records;
- the log: at most LOG_PER_STEP lines in a step, whatever the step sends.
"""
from __future__ import annotations

import functools
import logging

SEP = b"\xfe\xfd"
LEGIT = 3                      # client0..2; client3 is mallory
MALLORY = 3
ATTACKERS = [(f"198.18.60.{i + 1}", 41000 + i) for i in range(4)]
LAN_HOST = "198.18.100.1"
FORGED = b"FORGED-INNER"
LOG_PER_STEP = 48
WORLD_KEY = bytes(range(256))  # lab/gateway_world.py's STATIC_KEY (its hex lines)
PASSWORD = "right"


@functools.lru_cache(maxsize=1)
def _pki() -> dict:
    from lab.gateway_world import make_pki
    return make_pki([f"client{i}" for i in range(4)], ca_name="contain fuzz CA")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.n = 0
        self.last: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1
        self.last.append(record.getMessage()[:160])
        del self.last[:-8]


class KeyHolder:
    """A client Session holding the tls-crypt key but a certificate of another CA, moved by the
    world's run loop like a pump: its datagrams leave from `src`; what reaches `addr` is read
    (nothing, when `src` is a legitimate client's: a spoofer does not see the answers)."""

    def __init__(self, w, addr: tuple, src: tuple, label: str) -> None:
        from appliance.openvpn import wrapping
        from appliance.openvpn.session import Role, Session, SessionConfig
        from appliance.openvpn.tls import TlsSettings
        from lab.fakes import MemoryDatagramSocket

        from . import harness as h
        p = h.pki()
        now = w.clock()
        self.w, self.addr, self.src = w, addr, src
        self.s = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False),
                                       lambda: wrapping.TlsCryptWrapper(WORLD_KEY, False), proto="udp",
                                       auth="SHA256", random_bytes=h.Counter(label)), now)
        self.s.start(now)
        self.sock = None
        if src == addr and addr not in w.net.udp:
            self.sock = MemoryDatagramSocket(w.net, addr[0])
            self.sock.bind(addr)
        self.timers = self

    def next_deadline(self):
        return None if self.s.closed else self.s.next_deadline()

    def step(self, block: bool = False) -> bool:
        from lab.gateway_world import SERVER_IP
        now = self.w.clock()
        busy = False
        if self.s.closed:
            return False
        d = self.s.next_deadline()
        if d is not None and d <= now:
            self.s.handle_timer(now)
        while self.sock is not None and self.sock.inbox:
            entry = self.sock.inbox.pop(0)
            self.s.receive(entry[0], now)
            busy = True
        for pkt in self.s.take_outgoing()[:64]:
            self.w.net.deliver(bytes(pkt), self.src, (SERVER_IP, 1194))
            busy = True
        return busy


def _closed(s) -> bool:
    return s.closed


def make_contain():
    from appliance.openvpn.passdb import hash_password
    from lab.gateway_world import SERVER_IP, World, client_conf, server_conf
    pki = _pki()
    # A passdb refuses every login without credentials (auth-user-pass-optional wants a command or
    # management-client-auth): each client has a certificate and a password of its own.
    # scrypt at N=16, not the default 2**14: four checks per input took over half of it (libFuzzer
    # called one input a hang at 12 s under load 14); the check's code is the same.
    passdb = "".join(f"user{i}:{hash_password(PASSWORD + str(i), n=2 ** 4)}\n" for i in range(4))
    sconf = server_conf(pki, extra="auth-user-pass-verify /mem/passdb passdb\n")
    log = logging.getLogger("vpn-appliance")
    server = (SERVER_IP, 1194)

    class ContainWorld(World):
        extra: list

        def pumps(self) -> list:
            return super().pumps() + [k for k in self.extra if not _closed(k.s)]

    def world():
        w = ContainWorld()
        w.extra = []
        c2s: list[tuple[bytes, tuple]] = []
        s2c: list[tuple[bytes, tuple]] = []
        real = w.net.deliver
        w.race = None                               # (victim's address, attacker's): op 14

        def deliver(data, src, dst):                # the wire, as an eavesdropper records it
            if w.race is not None and dst == server and tuple(src) == w.race[0]:
                real(data, w.race[1], dst)
                w.race = None
            if dst == server and len(c2s) < 4096:
                c2s.append((bytes(data), tuple(src)))
            elif tuple(src) == server and len(s2c) < 4096:
                s2c.append((bytes(data), tuple(dst)))
            real(data, src, dst)
        w.net.deliver = deliver
        gw = w.add_server(sconf, passdb)
        for i in range(4):
            w.add_client(client_conf(pki, f"client{i}", extra="auth-user-pass\n"), username=f"user{i}",
                         password=PASSWORD + str(i))
        if not w.run(lambda: all(c.conn is not None and c.conn.was_up for c in w.clients)
                     and len([r for r in gw.d.clients if r.session.established]) == 4, max_time=60):
            raise RuntimeError(f"contain fuzz world: the clients did not come up ({gw.faults.counts})")
        return w, gw, c2s, s2c

    def one(data: bytes) -> None:
        w, gw, c2s, s2c = world()
        d = gw.d
        legit = []                                   # (client, connection, record, vaddr, peer_id, addr)
        for i in range(LEGIT):
            c = w.clients[i]
            rec = next(r for r in d.clients if r.common_name == f"client{i}")
            assert rec.vaddr == w.client_addr(i), (rec.vaddr, w.client_addr(i))
            legit.append((c, c.conn, rec, rec.vaddr, rec.peer_id, rec.addr))
        mallory = w.clients[MALLORY]
        lines = _Lines()
        log.addHandler(lines)
        old_level = log.level
        log.setLevel(logging.INFO)
        serial = [0]
        seen_tun = {"server": 0, **{i: 0 for i in range(LEGIT)}}

        def vaddr_of(i: int) -> str:
            return legit[i][3]

        def check(what: str) -> None:
            errs = d.take_internal_errors()
            assert not errs, f"after {what}: the server's internal errors: {errs!r}"
            n = gw.faults.counts.get("internal error", 0)
            assert not n, f"after {what}: {n} internal errors counted by the server's pump"
            assert gw.result is None, f"after {what}: the server stopped: {gw.result}"
            for i, (c, conn, rec, vaddr, pid, addr) in enumerate(legit):
                assert c.result is None and c.conn is conn, \
                    f"after {what}: client{i} reconnected or stopped (result {c.result}; {gw.faults.counts})"
                assert d.by_addr.get(addr) is rec and rec.alive and rec.session.established, \
                    f"after {what}: client{i}'s server record replaced or gone ({d.drop_counters()})"
                assert rec.vaddr == vaddr and rec.peer_id == pid and d.by_peer_id.get(pid) is rec, \
                    f"after {what}: client{i} holds {rec.vaddr}/{rec.peer_id}, had {vaddr}/{pid}"
                assert w.client_addr(i) == vaddr, f"after {what}: client{i} was pushed another address"
            est = [r for r in d.clients if r.session.established]
            assert len(est) <= 4, f"after {what}: {len(est)} sessions established"
            adm = d.admission
            assert adm.n_half_open == len(adm.in_progress), (adm.n_half_open, len(adm.in_progress))
            assert all(0 <= v <= d.st.max_half_open_per_source for v in adm.by_source.values()), adm.by_source
            assert sum(adm.by_source.values()) == adm.n_half_open, (adm.by_source, adm.n_half_open)
            # Nothing forged reached a TUN.
            tuns = [("server", w.server_net.tun)] + [(i, w.client_nets[i].tun) for i in range(LEGIT)]
            for key, tun in tuns:
                new = tun.written[seen_tun[key]:]
                seen_tun[key] = len(tun.written)
                bad = [p for p in new if FORGED in p]
                assert not bad, f"after {what}: a forged packet reached {key}'s TUN: {bad[0][:40].hex()}"

        def ping_through(what: str) -> None:
            from lab.gateway_world import ipv4_udp
            serial[0] += 1
            n = serial[0]
            want = []
            for i in range(LEGIT):
                up = ipv4_udp(vaddr_of(i), LAN_HOST, b"up %d %d" % (i, n))
                w.client_nets[i].tun.inject(up)
                want.append(("server", up))
                down = ipv4_udp(LAN_HOST, vaddr_of(i), b"down %d %d" % (i, n))
                w.server_net.tun.inject(down)
                want.append((i, down))
                j = (i + 1) % LEGIT
                across = ipv4_udp(vaddr_of(i), vaddr_of(j), b"across %d %d" % (i, n))
                w.client_nets[i].tun.inject(across)
                want.append((j, across))

            def arrived() -> bool:
                return all(p in (w.server_net.tun.written if k == "server" else w.client_nets[k].tun.written)
                           for k, p in want)
            w.run(arrived, max_time=5)
            missing = [(k, p[28:]) for k, p in want
                       if p not in (w.server_net.tun.written if k == "server" else w.client_nets[k].tun.written)]
            assert not missing, f"after {what}: legitimate packets lost: {missing} ({d.drop_counters()})"

        def run_for(seconds: float, what: str) -> None:
            end = w.clock.t + seconds
            ok = w.run(lambda: w.clock.t >= end, max_time=seconds + 1, max_steps=50_000)
            assert ok, f"after {what}: the loop's steps ran out {end - w.clock.t:.2f} s short of the time asked"

        try:
            check("start")
            ping_through("start")
            for step in data.split(SEP)[:20]:
                if not step:
                    continue
                op, b0, b1, body = step[0] % 16, (step[1] if len(step) > 1 else 0), \
                    (step[2] if len(step) > 2 else 0), step[3:]
                what = f"step {op} ({step[:8].hex()})"
                lines.n = 0
                _act(w, gw, op, b0, b1, body, legit, mallory, c2s, s2c, server, serial)
                run_for(0.2, what)
                check(what)
                ping_through(what)
                check(what + " and the pings")
                assert lines.n <= LOG_PER_STEP, f"after {what}: {lines.n} log lines in one step: {lines.last}"
        finally:
            log.removeHandler(lines)
            log.setLevel(old_level)
            try:
                gw.ops.close()
            except OSError:
                pass
    return one


def _mutated(pkt: bytes, how: int, b1: int) -> bytes:
    if how == 1:
        return pkt[:b1 % max(1, len(pkt))]
    if how == 2 and pkt:
        b = bytearray(pkt)
        b[(b1 >> 3) % len(b)] ^= 1 << (b1 & 7)
        return bytes(b)
    return pkt


def _act(w, gw, op, b0, b1, body, legit, mallory, c2s, s2c, server, serial) -> None:
    from lab.gateway_world import ipv4_udp
    now = w.clock()
    d = gw.d
    victim = b0 % LEGIT
    vaddr = legit[victim][5]
    if op == 0:
        src = vaddr if b0 & 0x80 else ATTACKERS[b0 % len(ATTACKERS)]
        w.net.deliver(body, src, server)
    elif op == 1 and c2s:
        pkt, src = c2s[(b0 * 7 + b1) % len(c2s)]
        pkt = _mutated(pkt, (b0 >> 5) % 3, b1)
        src = src if not b1 & 0x80 else ATTACKERS[b1 % len(ATTACKERS)]
        for _ in range(b1 % 16 + 1):
            w.net.deliver(pkt, src, server)
    elif op == 2 and s2c:
        pkt, _dst = s2c[(b0 * 7 + b1) % len(s2c)]
        w.net.deliver(_mutated(pkt, (b0 >> 5) % 3, b1), server, vaddr)
    elif op == 14:
        w.race = (vaddr, ATTACKERS[b1 % len(ATTACKERS)])
    elif op == 3:
        addr = ATTACKERS[b0 % len(ATTACKERS)]
        serial[0] += 1
        w.extra.append(KeyHolder(w, addr, vaddr if b0 & 0x80 else addr, f"contain-kh-{serial[0]}"))
    elif op == 4:
        # Into a legitimate client's session (fuzz45's finding, contained since forge48: the
        # module's docstring), or with b0 bit 6 into mallory's.
        target = _mallory_addr(gw, mallory) if b0 & 0x40 else vaddr
        if target is not None:
            _forge_control(w, target, c2s, b1, body, server, serial)
    elif op == 5:
        for _ in range(b0 % 12):
            serial[0] += 1
            k = serial[0]
            addr = (f"198.18.{61 + k // 250}.{1 + k % 250}", 42000 + k % 1000)
            w.extra.append(KeyHolder(w, addr, addr, f"contain-flood-{k}"))
    elif mallory.conn is None or not mallory.conn.was_up:
        if op == 12:
            w.run_for(b0 % 30 + 0.1)
        return
    elif op == 6:
        for _ in range(b0 % 24 + 1):
            mallory.conn.session.send_control_text("PUSH_REQUEST", now)
    elif op == 7:
        from .control_targets import _queue
        payload = body * (20_000 // max(1, len(body)) + 1) if b0 & 0x80 and body else body
        _queue(mallory.conn.session, payload)
    elif op == 8:
        for _ in range(b0 % 8 + 1):
            mallory.conn.session.renegotiate(w.clock())
    elif op == 9:
        inner = ipv4_udp(w.client_addr(MALLORY) or "198.18.77.7", LAN_HOST, FORGED + body[:64])
        wire = mallory.conn.session.encrypt(inner)
        for pkt in ([wire] if isinstance(wire, (bytes, bytearray)) else list(wire or [])):
            pkt = bytearray(pkt)
            if pkt and pkt[0] >> 3 == 9 and len(pkt) >= 4:            # P_DATA_V2: the peer-id after the op
                pkt[1:4] = legit[victim][4].to_bytes(3, "big")
                src = vaddr if b1 & 1 else _mallory_addr(gw, mallory)
                if src is not None:
                    w.net.deliver(bytes(pkt), src, server)
    elif op == 10:
        src = legit[victim][3] if not b1 & 0x80 else "198.18.77.7"
        dst = LAN_HOST if b1 & 1 else legit[(victim + 1) % LEGIT][3]
        tun = w.client_nets[MALLORY].tun
        if tun is not None:
            tun.inject(ipv4_udp(src, dst, FORGED + body[:64]))
    elif op == 11:
        if b0 & 0x80:
            mallory.request_stop()
        else:
            mallory.user_restart()
    elif op == 12:
        w.run_for(b0 % 30 + 0.1)
    elif op == 13:
        src = _mallory_addr(gw, mallory)
        if src is not None:
            w.net.deliver(body, src, server)
    elif op == 15:
        wire = mallory.conn.session.encrypt(ipv4_udp(w.client_addr(MALLORY) or "198.18.77.7", LAN_HOST,
                                                     b"float " + body[:64]))
        for pkt in ([wire] if isinstance(wire, (bytes, bytearray)) else list(wire or [])):
            w.net.deliver(bytes(pkt), vaddr, server)


def _mallory_addr(gw, mallory):
    for r in gw.d.clients:
        if r.common_name == "client3" and r.session.established:
            return r.addr
    return None


def _forge_control(w, vaddr, c2s, b1, body, server, serial) -> None:
    """What a tls-crypt key holder who sees a client's packets can send in its name: a P_CONTROL_V1
    of that client's session (its session id, the server's as peer, the next message ids), wrapped
    with the key, packet ids far ahead of the client's own, from the client's address."""
    from appliance.openvpn import packet, wrapping
    from appliance.openvpn.errors import BadPacket
    opener = wrapping.TlsCryptWrapper(WORLD_KEY, True)
    sid = peer = top = key_id = None
    for pkt, src in c2s:                       # the client's newest session: ids as the wire shows them
        if src != vaddr or not pkt or pkt[0] >> 3 not in (4, 5):   # P_CONTROL_V1, P_ACK_V1
            continue
        try:
            op, psid, raw = opener.unwrap_untrusted(pkt, w.clock(), check_replay=False)
            cb = packet.decode_body_untrusted(op >> 3, raw)
        except (BadPacket, ValueError):
            continue
        if psid != sid:
            sid, peer, top = psid, None, None
        peer = cb.peer_sid or peer
        key_id = op & 7
        if cb.msg_id is not None and (top is None or cb.msg_id > top):
            top = cb.msg_id
    if sid is None:
        return
    msg = (top + 1 if top is not None else 0) + b1 % 8
    forger = wrapping.TlsCryptWrapper(WORLD_KEY, False)
    forger.skip_packet_ids(1_000_000 + serial[0] * 1000)
    serial[0] += 1
    acks = [top] if peer is not None and top is not None and b1 & 0x80 else []
    wire = forger.wrap((4 << 3) | key_id, sid, packet.encode_body(acks, peer if acks else None, msg, body[:1200]),
                       w.clock())
    w.net.deliver(wire, vaddr, server)


def seeds() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    return [
        s(b"\x0c\x05\x00"),                                                      # time only
        s(b"\x00\x00\x00" + bytes(40), b"\x00\x80\x00\x38" + bytes(60), b"\x00\x81\x00\x28" + bytes(30)),
        s(b"\x01\x00\x00", b"\x01\x21\x05", b"\x01\x42\x13", b"\x01\x03\x8f"),     # replays: whole, cut, flipped
        s(b"\x02\x00\x00", b"\x02\x21\x07", b"\x02\x42\x30"),
        s(b"\x03\x00\x00", b"\x0c\x02\x00", b"\x03\x81\x00", b"\x0c\x05\x00"),     # key holders, one spoofing
        s(b"\x04\x00\x00\x17\x03\x03\x00\x20" + bytes(32), b"\x04\x01\x03junk", b"\x0c\x02\x00",
          b"\x04\x40\x00junk", b"\x0c\x0b\x00"),                                    # the last: into mallory's
        s(b"\x05\x0b\x00", b"\x0c\x03\x00", b"\x05\x0b\x00"),                      # a handshake flood
        s(b"\x06\x17\x00", b"\x07\x00\x00\x00\x00\x00\x00\x02", b"\x07\x80\x00" + b"A" * 64),
        s(b"\x08\x07\x00", b"\x0c\x01\x00", b"\x08\x03\x00"),                      # renegotiation storms
        s(b"\x09\x00\x00hello", b"\x09\x01\x01", b"\x09\x02\x00"),                 # other peer-ids
        s(b"\x0a\x00\x00x", b"\x0a\x01\x01y", b"\x0a\x02\x80z"),                   # forged inner sources
        s(b"\x0b\x00\x00", b"\x0c\x05\x00", b"\x0b\x80\x00", b"\x0c\x05\x00"),     # mallory restarts, exits
        s(b"\x0d\x00\x00" + bytes(20), b"\x0d\x00\x00\x48\x00\x00\x00" + bytes(30), b"\x0c\x1d\x00"),
        s(b"\x0e\x00\x00", b"\x0e\x01\x01", b"\x0c\x0b\x00", b"\x0e\x02\x02"),     # races
        s(b"\x0f\x00\x00x", b"\x0f\x01\x00y", b"\x0c\x03\x00"),                     # mallory floats onto others
    ]
