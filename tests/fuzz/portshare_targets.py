"""The port-share fuzz target: a TCP server with `port-share HOST PORT DIR` (gateway/server.py
`_sniff` / `_hand_over` / `_evict_one`, gateway/portshare.py's relays, openvpn/portshare.py's
verdict) on the gateway suite's in-memory world, driven by web clients, a hostile web server, a
flood of connections and a real VPN client.

Why a target: no target reached port-share (fuzz36's report), though every byte of it comes from
someone on the network: the first bytes that tell OpenVPN from HTTPS (cut anywhere, slow, looking
like both), a client and a web server that half-close, reset or write without end, and a full
server where a newcomer makes room -- which must never be an authenticated client.

Input: steps split at SEP, `op b0 body`; op % 11, the web connection webs[b0 % len]:
  0 a web client connects from source b0 % 6 and sends body (maybe nothing, maybe 1 byte);
  1 it sends body (b0 bit 7: body repeated to ~300 KiB, a huge write);
  2 it half-closes (shutdown(SHUT_WR)); 3 it resets (bit 7: closes instead);
  4 its web server sends body (bit 7: huge); 5 its web server half-closes, closes or resets (b0 >> 5);
  6 a slow reader: the client's (bit 7: the web server's) window set to (b0 & 0x3f) * 512 bytes,
    0x3f opening it again;
  7 a flood: body[0] % 80 connections from distinct sources, each sending body[1:] (or nothing);
  8 time passes (b0 % 40 + 0.1 s);
  9 a real VPN client (tcp-client, tls-crypt) connects, once per input, and comes up;
  10 the web server stops listening, or listens again.
MAX_RELAYS and PER_SOURCE_RELAYS are 6 and 2 during an input (the same code; restored after).

Oracles, after every step:
- no internal error (dispatcher, pump, a relay's spin limit); the server runs on;
- the verdict is OpenVPN 2.6's (ps.c is_openvpn_protocol, restated below from its source): a
  connection is relayed only when the first read of 2 bytes or more says foreign, one that says
  OpenVPN never reaches the web server, and one found foreign is never left in the server's books;
- what the web server received is a prefix of what its client sent (the sniffed head first), and
  the other way round; a FIN passed on only once every byte before it is delivered;
- at most MAX_RELAYS relays, PER_SOURCE_RELAYS per source, the per-source counts exactly the
  relays'; each direction's buffer within BUFFER; the server's connections within max_conns;
- a relay closed to make room had delivered fewer than ACTIVE_BYTES in the EVICT_QUIET seconds
  before (an active web exchange is never cut for a newcomer);
- the VPN client, once up, stays up through every flood (an attacker opening connections never
  evicts an authenticated client);
- DIR holds exactly one journal file per relay that has one, naming its client.
"""
from __future__ import annotations

import os

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"
BACKEND_PORT = 8443
HUGE = 300 * 1024


def openvpn_26_says_openvpn(head: bytes) -> bool:
    """OpenVPN 2.6.14's is_openvpn_protocol (ps.c), restated from its source for the oracle:
    3+ bytes: a V3 hard reset (opcode byte 10 << 3) with a length of 336..1278, else a V2 one
    (7 << 3) with 14..255; 2 bytes: the length alone, 14..255; fewer: yes."""
    if len(head) >= 3:
        plen = head[0] * 256 + head[1]
        if head[2] == 0x50:
            return 336 <= plen < 1279
        return 14 <= plen <= 255 and head[2] == 0x38
    if len(head) == 2:
        return 14 <= head[0] * 256 + head[1] <= 255
    return True


class Web:
    """One web client's connection, as the harness sees it."""

    def __init__(self, sock, src: str) -> None:
        self.sock, self.src = sock, src
        self.sent = bytearray()            # everything the client sent, in order
        self.verdict: bool | None = None   # 2.6's: True OpenVPN, False foreign (at the first read of >= 2)
        self.back = None                   # the web server's end, once relayed
        self.back_sent = bytearray()
        self.relayed = False
        self.history: list[tuple[float, int]] = []   # (time, bytes delivered both ways)

    def send(self, data: bytes) -> None:
        if self.sock.closed or self.sock.wr_shut or self.sock.reset:
            return
        before = len(self.sent)
        try:
            n = self.sock.send(data)
        except OSError:
            return
        self.sent += data[:n]
        if self.verdict is None and before < 2 <= len(self.sent):
            self.verdict = openvpn_26_says_openvpn(bytes(self.sent))

    def delivered(self) -> int:
        return len(self.sock.inbox) + (len(self.back.inbox) if self.back is not None else 0)


def make_port_share():
    from appliance.gateway import portshare as ps
    from appliance.openvpn.portshare import sockaddr_text
    from lab.fakes import MemoryListenSocket
    from tests.fuzz.mgmt_world import _pki
    from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

    pki = _pki()
    jdir = scratch_dir("fuzz-port-share-")
    backend = (SERVER_IP, BACKEND_PORT)
    conf = server_conf(pki, "tcp-server", extra=f"port-share {SERVER_IP} {BACKEND_PORT} {jdir}\nmax-clients 2\n")

    def one(data: bytes) -> None:
        for f in os.listdir(jdir):
            os.unlink(os.path.join(jdir, f))
        saved = (ps.MAX_RELAYS, ps.PER_SOURCE_RELAYS)
        ps.MAX_RELAYS, ps.PER_SOURCE_RELAYS = 6, 2
        w = World()
        lst = MemoryListenSocket(w.net, backend)
        lst.bind(backend)
        gw = w.add_server(conf)
        webs: list[Web] = []
        floods = [0]
        vpn = {"up": False, "client": None}
        try:
            for step in data.split(SEP)[:24]:
                if not step:
                    continue
                op, b0, body = step[0] % 11, (step[1] if len(step) > 1 else 0), step[2:]
                web = webs[b0 % len(webs)] if webs else None
                evicted_before = gw.faults.counts.get("port-share: quiet relay closed to make room", 0)
                live_before = {id(x): x for x in webs if x.relayed and x.back is not None and not _ended(x)}
                if op == 0:
                    _connect(w, webs, f"198.18.1.{10 + b0 % 6}", body)
                elif op == 1 and web is not None:
                    web.send(body * (HUGE // max(1, len(body))) if b0 & 0x80 and body else body)
                elif op == 2 and web is not None and not web.sock.closed:
                    web.sock.shutdown(1)
                elif op == 3 and web is not None:
                    web.sock.close() if b0 & 0x80 else web.sock.abort()
                elif op == 4 and web is not None and web.back is not None:
                    chunk = body * (HUGE // max(1, len(body))) if b0 & 0x80 and body else body
                    b = web.back
                    if chunk and not (b.closed or b.wr_shut or b.reset):
                        try:
                            n = b.send(chunk)
                            web.back_sent += chunk[:n]
                        except OSError:
                            pass
                elif op == 5 and web is not None and web.back is not None and not web.back.closed:
                    how = (b0 >> 5) % 3
                    (web.back.shutdown if how == 0 else web.back.close if how == 1 else web.back.abort)(
                        *((1,) if how == 0 else ()))
                elif op == 6 and web is not None:
                    ours = _ours(gw, web, backend_side=bool(b0 & 0x80))
                    if ours is not None:
                        ours.window = 1 << 30 if b0 & 0x3f == 0x3f else (b0 & 0x3f) * 512
                elif op == 7:
                    n = (body[0] % 80) if body else 0
                    for _ in range(n):
                        floods[0] += 1
                        i = floods[0]
                        _connect(w, webs, f"198.18.{2 + i // 250}.{1 + i % 250}", body[1:])
                elif op == 8:
                    w.run_for(b0 % 40 + 0.1)
                elif op == 9 and vpn["client"] is None:
                    vpn["client"] = w.add_client(client_conf(pki, "client0", proto="tcp-client"))
                    vpn["up"] = w.run(lambda: _vpn_up(gw), max_time=30)
                    assert vpn["up"], f"the VPN client did not come up beside port-share: {gw.faults.counts}"
                elif op == 10:
                    if lst.closed:
                        lst = MemoryListenSocket(w.net, backend)
                        lst.bind(backend)
                    else:
                        lst.close()
                w.run_for(0.05)
                _match_backends(gw, webs, lst)
                _check(gw, w, webs, jdir, sockaddr_text)
                evicted = gw.faults.counts.get("port-share: quiet relay closed to make room", 0) - evicted_before
                if evicted:
                    gone = [x for x in live_before.values() if _ended(x) or not _relay_of(gw, x)]
                    quiet = [x for x in gone if not _active(x, w.clock.t)]
                    assert len(quiet) >= evicted, \
                        f"{evicted} relays closed to make room, but only {len(quiet)} of those that ended were quiet"
                if vpn["up"]:
                    assert _vpn_up(gw), f"the VPN client was dropped (faults: {gw.faults.counts})"
                for x in webs:
                    if x.back is not None:
                        x.history.append((w.clock.t, x.delivered()))
                        del x.history[:-64]
        finally:
            ps.MAX_RELAYS, ps.PER_SOURCE_RELAYS = saved
            if gw.portshare is not None:
                gw.portshare.close()
            try:
                gw.ops.close()
            except OSError:
                pass
    return one


def _connect(w, webs: list, ip: str, first: bytes) -> None:
    from lab.fakes import stream_connect
    from tests.gateway.conftest import SERVER_IP
    x = Web(stream_connect(w.net, ip, (SERVER_IP, 1194)), ip)
    webs.append(x)
    if first:
        x.send(first)


def _ended(x: Web) -> bool:
    return x.sock.closed or x.sock.reset or x.back is None or x.back.closed or x.back.reset


def _relay_of(gw, x: Web):
    if gw.portshare is None:
        return None
    for r in gw.portshare.relays.values():
        if r.c.sock is x.sock.peer:
            return r
    return None


def _ours(gw, x: Web, backend_side: bool):
    r = _relay_of(gw, x)
    if r is None:
        return None
    return r.b.sock if backend_side else r.c.sock


def _active(x: Web, now: float) -> bool:
    """Delivered ACTIVE_BYTES or more in the EVICT_QUIET seconds before now (by the samples)."""
    from appliance.gateway import portshare as ps
    if not x.history:
        return False
    last = x.history[-1][1]
    return any(last - d >= ps.ACTIVE_BYTES for t, d in x.history if t > now - ps.EVICT_QUIET + 0.2)


def _vpn_up(gw) -> bool:
    return any(r.session.established for r in gw.d.clients) and bool(gw.established_conns)


def _match_backends(gw, webs: list, lst) -> None:
    """Each relay's web server end, found through the relay's sockets (the backlog drained: the
    web server accepts at once)."""
    while lst.backlog:
        lst.backlog.popleft()
    if gw.portshare is None:
        return
    for r in gw.portshare.relays.values():
        for x in webs:
            if x.sock.peer is r.c.sock:
                x.relayed = True
                if x.back is None:
                    x.back = r.b.sock.peer


def _check(gw, w, webs: list, jdir: str, sockaddr_text) -> None:
    from appliance.gateway import portshare as ps
    errs = gw.d.take_internal_errors()
    assert not errs, f"the server's internal errors: {errs!r}"
    n = gw.faults.counts.get("internal error", 0)
    assert not n, f"{n} internal errors counted by the server's pump: {gw.faults.counts}"
    assert gw.result is None, f"the server stopped: {gw.result}"
    share = gw.portshare
    assert share is not None
    relays = list(share.relays.values())
    assert len(relays) <= ps.MAX_RELAYS, f"{len(relays)} relays"
    per: dict[str, int] = {}
    for r in relays:
        per[r.src] = per.get(r.src, 0) + 1
        assert len(r.c2b) <= ps.BUFFER and len(r.b2c) <= ps.BUFFER, (len(r.c2b), len(r.b2c))
    assert per == share.per_source, f"per-source counts {share.per_source} for relays {per}"
    assert max(per.values(), default=0) <= ps.PER_SOURCE_RELAYS, per
    assert len(gw.conns) <= gw.max_conns, f"{len(gw.conns)} connections, cap {gw.max_conns}"
    ours_c = {id(r.c.sock) for r in relays}
    for x in webs:
        if x.relayed:
            assert x.verdict is False, \
                f"relayed, but 2.6 reads {bytes(x.sent[:3]).hex()} as {'OpenVPN' if x.verdict else 'undecided'}"
        if x.verdict is True:
            assert not x.relayed, "an OpenVPN client's connection reached the web server"
        if x.verdict is False and not x.relayed:
            # Found foreign and not relayed (a cap, the web server down): closed, not kept as a client.
            assert x.sock.peer.closed, f"a foreign connection left open outside the relays ({bytes(x.sent[:3]).hex()})"
        if x.back is not None:
            got, sent = bytes(x.back.inbox), bytes(x.sent)
            assert sent.startswith(got), "the web server received what its client did not send"
            back_got, back_sent = bytes(x.sock.inbox), bytes(x.back_sent)
            assert back_sent.startswith(back_got), "the client received what the web server did not send"
            ours_b = x.back.peer
            if ours_b.wr_shut:
                assert got == sent, f"the client's FIN passed on with {len(sent) - len(got)} bytes undelivered"
            if x.sock.peer.wr_shut:
                assert back_got == back_sent, \
                    f"the web server's FIN passed on with {len(back_sent) - len(back_got)} bytes undelivered"
            if id(x.sock.peer) not in ours_c:
                assert x.sock.peer.closed and ours_b.closed, "a relay ended with a socket left open"
    want = {r.journal: sockaddr_text(r.peer) for r in relays if r.journal}
    have = {}
    for f in os.listdir(jdir):
        with open(os.path.join(jdir, f)) as fh:
            have[f] = fh.read()
    assert have == want, f"journal files {sorted(have)} for relays {sorted(want)}"


def seeds() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    get = b"GET / HTTP/1.1\r\nHost: vpn.example\r\n\r\n"
    hello = bytes.fromhex("160301") + b"\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32)
    reset_v2 = bytes.fromhex("000e38") + bytes(13)
    reset_v3 = bytes.fromhex("015850") + bytes(40)
    return [
        s(b"\x00\x00" + get, b"\x04\x00HTTP/1.1 200 OK\r\n\r\nhello", b"\x05\x20", b"\x08\x01"),
        s(b"\x00\x01" + hello, b"\x04\x80" + b"x" * 100, b"\x03\x00", b"\x08\x01"),
        s(b"\x00\x02G", b"\x08\x02", b"\x01\x00ET / HTTP/1.0\r\n\r\n", b"\x02\x00", b"\x04\x00ok", b"\x05\x00"),
        s(b"\x00\x03\x00", b"\x01\x00\x0e", b"\x01\x00\x38" + bytes(13), b"\x08\x05"),      # a V2 reset, slowly
        s(b"\x00\x03" + reset_v2, b"\x08\x03"),
        s(b"\x00\x04" + reset_v3, b"\x08\x03"),
        s(b"\x00\x05\x01\x58", b"\x01\x00\x50" + bytes(20)),                                # V3 seen at 2 bytes
        s(b"\x00\x00" + get, b"\x06\x01", b"\x04\x80" + b"y" * 500, b"\x08\x02", b"\x06\x3f", b"\x08\x02"),
        s(b"\x00\x00" + get, b"\x06\x81", b"\x01\x80" + b"z" * 700, b"\x08\x02", b"\x02\x00", b"\x06\xbf"),
        s(b"\x09\x00", b"\x07\x00\x4f", b"\x08\x05", b"\x07\x00\x40" + get, b"\x08\x15"),  # floods beside a client
        s(b"\x09\x00", b"\x07\x00\x4f", b"\x07\x00\x4f", b"\x08\x3b", b"\x07\x00\x4f" + reset_v2),
        s(b"\x00\x00" + get, b"\x00\x01" + get, b"\x00\x00" + get, b"\x08\x15",
          b"\x07\x00\x06" + get, b"\x08\x01"),                                              # eviction of quiet relays
        s(b"\x00\x00" + get, b"\x04\x80" + b"a" * 900, b"\x08\x0a", b"\x04\x80" + b"b" * 900,
          b"\x07\x00\x08" + get),                                                           # busy ones kept
        s(b"\x0a\x00", b"\x00\x00" + get, b"\x0a\x00", b"\x00\x01" + get, b"\x08\x07"),     # web server down
        s(b"\x00\x00" + get, b"\x05\x40", b"\x01\x00more", b"\x08\x01"),                    # web server resets
        s(b"\x00\x00", b"\x08\x27", b"\x08\x27"),                                           # silent past hand-window
    ]
