"""Fuzz targets for the control channel after authentication, and for the tap client's
`route-gateway dhcp` reply rewriting (dhcprouter.py): the peer-facing code the seed corpora
covered least (tests/fuzz/measure.py).

control-script: a fresh server (ServerDispatcher, tls-crypt, two established clients) per input,
driven by a script of steps in which client 0 -- TLS-authenticated, so past every check a
stranger meets -- or the server side says anything at any time: raw TLS plaintext, a text message
(PUSH_REQUEST, EXIT, CR_RESPONSE, INFO, AUTH_PENDING, RESTART, HALT, AUTH_FAILED, a PUSH_REPLY)
in either direction, a renegotiation from either end, an exit notification, the operator's
auth-pending / kill / restart, a client that starts over from the same address, time passing.
Oracles besides "nothing escapes": the dispatcher records no internal error; the bystander (client
1) stays established and its record untouched (a fault ends at most its own session); the server
sends at most OUT_PER_STEP bytes plus OUT_PER_BYTE per byte in per step (no amplification without
bound); the dispatcher never holds more than the two clients.

dhcp-router: `extract_router` on a frame the server side sent: raw, or (odd first byte) a whole
Ethernet/IPv4/UDP BOOTREPLY to port 68 built around fuzzed options (optionally behind a VLAN tag,
with an option overload's file/sname fields from the input). Oracles: never raises; the frame comes
back the same length or dropped; what comes back holds, as a lenient DHCP client reads it, no
Router option and no classless default route; its UDP checksum verifies whenever it was rewritten;
the router it reports is an ACK's first Router option; and the rewrite is idempotent (a second
pass leaves the frame as it is).
"""
from __future__ import annotations

import struct

from appliance.openvpn.opcodes import PING_MAGIC

from . import harness as h

SEP = b"\xff\xfe"
OUT_PER_STEP = 64 * 1024      # a renegotiation's certificates, a PUSH_REPLY, retransmissions
OUT_PER_BYTE = 8
TEXTS = (b"PUSH_REQUEST", b"EXIT", b"CR_RESPONSE,", b"INFO,", b"INFO_PRE,", b"AUTH_PENDING,timeout ",
         b"RESTART,", b"HALT,", b"AUTH_FAILED,", b"PUSH_REPLY,", b"AUTH_FAILED,TEMP[backoff ")


def _queue(session, data: bytes) -> bool:
    """`data` as TLS plaintext on the session's newest key with a finished handshake (what a peer
    holding the TLS session could send). Uses Session._active_ks/_queue_tls (private: no hook)."""
    ks = session._active_ks()
    if ks is None or ks.tls is None or not ks.tls.handshake_done:
        return False
    session._queue_tls(ks, ks.tls.send_message(data))
    return True


def make_control_script():
    from appliance.openvpn.session import Role, Session, SessionConfig
    from appliance.openvpn.tls import TlsSettings
    from .targets import _server_world

    def one(data: bytes) -> None:
        dp, clients = _server_world()
        d = dp.d
        (c0, a0), (c1, a1) = clients
        by = d.by_addr[a1]
        by_vaddr = by.vaddr
        now = 1.0
        cur = [c0]

        def shuttle(now: float) -> int:
            """Move packets until quiet; -> bytes the server sent."""
            out = 0
            for _ in range(60):
                moved = 0
                for c, a in ((cur[0], a0), (c1, a1)):
                    for pkt in c.take_outgoing():
                        d.receive(bytes(pkt), a, now)
                        moved += 1
                for pkt, addr in d.take_outgoing():
                    out += len(pkt)
                    moved += 1
                    for c, a in ((cur[0], a0), (c1, a1)):
                        if a == addr:
                            c.receive(bytes(pkt), now)
                if not moved:
                    break
            return out

        for step in data.split(SEP)[:24]:
            op, body = (step[0] & 15, step[1:]) if step else (0, b"")
            rec = d.by_addr.get(a0)
            ss = rec.session if rec is not None else None
            c = cur[0]
            if op == 0:
                _queue(c, body)                                      # raw TLS plaintext, client -> server
            elif op == 1:
                _queue(c, TEXTS[body[0] % len(TEXTS)] + body[1:] + b"\0" if body else b"PUSH_REQUEST\0")
            elif op == 2 and ss is not None:
                _queue(ss, body)                                     # raw TLS plaintext, server -> client
            elif op == 3 and ss is not None:
                _queue(ss, TEXTS[body[0] % len(TEXTS)] + body[1:] + b"\0" if body else b"INFO,x\0")
            elif op == 4:
                c.renegotiate(now)
            elif op == 5 and ss is not None:
                ss.renegotiate(now)
                d.rearm(rec)
            elif op == 6:
                c.notify_exit(now, True)
            elif op == 7 and rec is not None:
                kid = max(ss.keys) if ss.keys else 0
                d.auth_pending(rec, kid, body.decode("utf-8", "replace"), body[0] if body else 0, now)
            elif op == 8 and rec is not None:
                d.tell(rec, now, "RESTART" + body.decode("utf-8", "replace")[:40])
            elif op == 9 and rec is not None:
                d.kick(rec, now, "fuzz kill")
            elif op == 10:
                # The client starts over from the same address (a restart with its state lost).
                p = h.pki()
                cur[0] = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False,
                                                                        remote_cert_tls="server"),
                                               lambda: h.client_wrapper("tls-crypt"), proto="udp", auth="SHA256",
                                               random_bytes=h.Counter(f"control-script-{now}")), now)
                cur[0].start(now)
            elif op == 11 and rec is not None:
                kid = max(ss.keys) if ss.keys else 0
                d.auth_result(rec, kid, bool(body[:1] and body[0] & 1), now, temporary=bool(body[:1] and body[0] & 2),
                              client_reason=body[1:].decode("utf-8", "replace"))
            elif op == 12:
                # A raw control packet from client 0's session id, wrapped with the right key.
                c.wrapper and d.receive(c.wrapper.wrap(body[:1][0] if body else 0x20, c.own_sid, body[1:], now),
                                        a0, now)
            elif op == 13:
                c.close(now)
            sent = 0
            # Time passes (up to ~64 s), in steps short enough that every side's pings and
            # retransmissions go out on time: a jump past ping-restart would end the bystander.
            left = body[0] / 4 if body and op in (14, 15) else 0.25
            while True:
                dt = min(left, 2.0)
                now += dt
                left -= dt
                for s_ in (c, c1):
                    s_.handle_timer(now)
                # The bystander's keepalive (the world's server pushes no `ping`).
                w = c1.encrypt(PING_MAGIC)
                if w is not None:
                    d.receive(bytes(w), a1, now)
                d.handle_timer(now)
                sent += shuttle(now)
                if left <= 0:
                    break
            assert sent <= OUT_PER_STEP + OUT_PER_BYTE * len(step), f"server sent {sent} bytes for a {len(step)}-byte step"
            errs = d.take_internal_errors()
            assert not errs, f"dispatcher internal errors: {errs!r}"
            assert len(d.clients) <= 2, f"{len(d.clients)} clients held"
            assert by.alive and d.by_addr.get(a1) is by and by.vaddr == by_vaddr, "the bystander was disturbed"
            assert c1.established and not c1.closed and by.session.established, "the bystander lost its session"
    return one


def seeds_control_script() -> list[bytes]:
    def script(*steps: bytes) -> bytes:
        return SEP.join(steps)
    return [
        script(b"\x01\x00", b"\x0e\x08"),                                    # a second PUSH_REQUEST
        script(b"\x01\x02client-response", b"\x01\x02again"),               # CR_RESPONSE
        script(b"\x01\x01", b"\x0e\x10"),                                    # EXIT
        script(b"\x04", b"\x0e\x04", b"\x01\x00", b"\x0e\x40"),              # client renegotiates, asks again
        script(b"\x05", b"\x0e\x04", b"\x0e\x40"),                           # server renegotiates
        script(b"\x07https://login.example/x", b"\x0b\x01", b"\x0e\x08"),    # auth-pending, then a verdict
        script(b"\x03\x05timeout 30", b"\x03\x03WEB_AUTH::https://x", b"\x03\x08,[N]bye"),
        script(b"\x03\x09AUTH_FAILED,bad", b"\x0e\x04"),
        script(b"\x03\x09route 198.18.101.0 255.255.255.0,peer-id 7,cipher AES-128-GCM"),
        script(b"\x08,[N]", b"\x0e\x08", b"\x09"),
        script(b"\x06", b"\x0e\x10"),
        script(b"\x0a", b"\x0e\x04", b"\x0e\x04", b"\x01\x00"),              # restart from the same address
        script(b"\x00\x01\x02\x03", b"\x02garbage\x00"),
        script(b"\x0c\x38\x00", b"\x0c\x40\x00\x00\x00\x00\x01", b"\x0c\x08"),  # soft reset, raw
        script(b"\x0d", b"\x0e\x80"),
    ]


# ------------------------------------------------------------------ route-gateway dhcp (dhcprouter.py)
OPT_ROUTER, OPT_OVERLOAD, OPT_END, OPT_PAD = 3, 52, 255, 0


def _opts_seen(opts: bytes) -> list[tuple[int, bytes]]:
    """The options a lenient client reads: up to END, a truncated one dropped."""
    out, i = [], 0
    while i < len(opts):
        t = opts[i]
        if t == OPT_END:
            break
        if t == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(opts) or i + 2 + opts[i + 1] > len(opts):
            break
        out.append((t, opts[i + 2:i + 2 + opts[i + 1]]))
        i += 2 + opts[i + 1]
    return out


def _has_default(body: bytes) -> bool:
    """RFC 3442 routes, read as far as they are well-formed: any of width 0 (the default)?"""
    i = 0
    while i < len(body):
        w = body[i]
        size = 1 + (w + 7) // 8 + 4
        if w > 32 or i + size > len(body):
            return False
        if w == 0:
            return True
        i += size
    return False


def _udp_ok(frame: bytes, ip: int, u: int, end: int) -> bool:
    if frame[u + 6:u + 8] == b"\0\0":
        return True
    data = frame[ip + 12:ip + 20] + bytes((0, 17)) + (end - u).to_bytes(2, "big") + frame[u:end]
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def _reply_bounds(frame: bytes):
    """(ip, udp, end) of a whole IPv4 UDP datagram to port 68 holding a BOOTREPLY, else None:
    what a DHCP client on the tap would read."""
    from appliance.openvpn.ethernet import ip_offset
    off = ip_offset(frame, s_tag=True)
    if off is None or len(frame) < off + 20 or frame[off] >> 4 != 4 or frame[off + 9] != 17:
        return None
    ihl = (frame[off] & 15) * 4
    if ihl < 20 or (frame[off + 6] & 0x3F) or frame[off + 7]:
        return None
    u = off + ihl
    if len(frame) < u + 8 or frame[u + 2:u + 4] != b"\0\x44":
        return None
    end = u + int.from_bytes(frame[u + 4:u + 6], "big")
    if end > len(frame) or end < u + 8 + 240 or frame[u + 8] != 2:
        return None
    return off, u, end


def _routers_seen(frame: bytes, b) -> tuple[list[bytes], bool]:
    """(Router option bodies, whether a classless default route is there) as a client reads the
    reply: the options field, and the file/sname fields an option overload (52, length 1) gives."""
    _ip, u, end = b
    dhcp = u + 8
    main = _opts_seen(frame[dhcp + 240:end])
    areas = [main]
    ov = 0
    for t, v in main:
        if t == OPT_OVERLOAD and len(v) == 1:
            ov |= v[0]
    if ov & 1:
        areas.append(_opts_seen(frame[dhcp + 108:dhcp + 236]))
    if ov & 2:
        areas.append(_opts_seen(frame[dhcp + 44:dhcp + 108]))
    routers = [v for a in areas for t, v in a if t == OPT_ROUTER]
    default = any(t in (121, 249) and _has_default(v) for a in areas for t, v in a)
    return routers, default


def build_reply(data: bytes) -> bytes:
    """An Ethernet frame holding a BOOTREPLY to port 68 around the fuzzed bytes: data[0] bits 1-2
    the tagging (none, 802.1Q, 802.1ad+802.1Q), bit 3 the file/sname fields from the input (192
    bytes), bit 4 a zero UDP checksum; the rest the options."""
    sel, rest = data[0], data[1:]
    if sel & 8:
        fields, rest = rest[:192].ljust(192, b"\0"), rest[192:]
    else:
        fields = bytes(192)
    bootp = (bytes((2, 1, 6, 0)) + (7).to_bytes(4, "big") + bytes(4) + bytes(4) + bytes((198, 18, 60, 10))
             + bytes((198, 18, 60, 1)) + bytes(4) + bytes((2, 0, 0, 0, 0, 1)) + bytes(10) + fields
             + b"\x63\x82\x53\x63" + rest)
    udp_len = 8 + len(bootp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, bytes((198, 18, 60, 1)),
                     b"\xff\xff\xff\xff")
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + (~s & 0xFFFF).to_bytes(2, "big") + ip[12:]
    udp = struct.pack("!HHHH", 67, 68, udp_len, 0) + bootp
    if not sel & 16:
        data_ = ip[12:20] + bytes((0, 17)) + udp_len.to_bytes(2, "big") + udp
        if len(data_) % 2:
            data_ += b"\0"
        c = sum(struct.unpack(f"!{len(data_) // 2}H", data_))
        while c >> 16:
            c = (c & 0xFFFF) + (c >> 16)
        c = (~c & 0xFFFF) or 0xFFFF
        udp = udp[:6] + c.to_bytes(2, "big") + udp[8:]
    tags = {0: b"", 1: b"\x81\x00\x00\x05", 2: b"\x88\xa8\x00\x07\x81\x00\x00\x05"}.get((sel >> 1) & 3, b"\x81\x00\x0f\xff")
    return b"\xff" * 6 + bytes((2, 0, 0, 0, 0, 9)) + tags + b"\x08\x00" + ip + udp


def make_dhcp_router():
    from appliance.openvpn.dhcprouter import extract_router

    def one(data: bytes) -> None:
        if not data:
            return
        frame = build_reply(data) if data[0] & 1 else data[1:]
        asked: list[int] = []

        def take(n: int) -> bool:
            asked.append(n)
            return True
        out, router = extract_router(frame, take)
        assert all(0 <= n <= len(frame) for n in asked), f"budget asked for {asked} of a {len(frame)}-byte frame"
        if out is None:
            return
        assert len(out) == len(frame), "the rewritten frame changed length"
        out = bytes(out)
        b = _reply_bounds(out)
        if b is not None:
            routers, default = _routers_seen(out, b)
            assert not routers, f"a Router option is left in the reply: {routers!r}"
            assert not default, "a classless default route is left in the reply"
            if out != frame:
                assert _udp_ok(out, *b), "the rewritten reply's UDP checksum does not verify"
        if router is not None:
            bi = _reply_bounds(frame)
            assert bi is not None, "a router from a frame that is no reply"
            main = [v for t, v in _opts_seen(frame[bi[1] + 8 + 240:bi[2]]) if t == OPT_ROUTER and v and len(v) % 4 == 0]
            assert main and router == ".".join(map(str, main[0][:4])), f"router {router} is not the first Router option"
        again, r2 = extract_router(out, None)
        assert again is not None and bytes(again) == out and r2 is None, "a second pass changed the frame"
    return one


def seeds_dhcp_router() -> list[bytes]:
    router = bytes((3, 4, 198, 18, 60, 1))
    ack, offer = bytes((53, 1, 5)), bytes((53, 1, 2))
    cls = bytes((121, 13, 0, 198, 18, 60, 1, 24, 198, 18, 61, 198, 18, 60, 1))
    out = [
        b"\x01" + ack + router + b"\xff",
        b"\x01" + offer + router + router + b"\xff",
        b"\x03" + ack + router + cls + b"\xff",
        b"\x05" + ack + bytes((249, 5, 0, 10, 0, 0, 1)) + b"\xff",
        b"\x11" + ack + router + b"\xff",                      # no UDP checksum
        b"\x09" + (bytes((3, 4, 10, 0, 0, 1, 255)) + bytes(185)) + ack + bytes((52, 1, 1)) + router + b"\xff",
        b"\x01" + ack + bytes((3, 0)) * 8 + b"\xff",
        b"\x00" + build_reply(b"\x01" + ack + router + b"\xff"),   # the raw mode with a whole reply
    ]
    return out
