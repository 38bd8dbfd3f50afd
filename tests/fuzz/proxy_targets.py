"""fuzz47: a malicious HTTP or SOCKS5 proxy -- a network peer holding no key -- answers the client.

Why targets of their own: no other target reaches httpproxy.ConnectReply or
socksproxy.SocksHandshake, yet every byte they parse comes from whoever runs (or sits in front of)
the proxy. The promise: an answer ends at most that connection attempt (ProxyRefused, which the
gateway client turns into one line, one count and the next attempt), in bounded memory, never
a hang; the tunnel's first bytes that come with the answer are handed on whole; credentials go
only where the exchange asked for them.

http-proxy-reply, input: byte 0 = mode (bit 0: `auth basic`; bits 1-3: how the answer is cut
into reads: whole, a byte at a time, or sizes taken from byte 1 on), then the proxy's bytes.
socks-reply, input: byte 0 = mode (bit 0: credentials configured; bits 1-3 as above), then the
proxy's bytes.

Oracles (the rules, restated here independently of the parsers):
- only ProxyRefused escapes; its reason is one printable ASCII line of bounded length (it is
  logged as it is);
- the answer fed whole and fed in reads of any size give the same outcome and the same bytes
  out (a CRLF CRLF or a SOCKS field split across reads changes nothing);
- HTTP: the outcome is the model's (`http_model`): the tunnel opens only on a well-formed
  `HTTP/d.d 200` status line, with the header (CRLF CRLF included) within MAX_HEADER and no NUL
  in it, and then every byte after the CRLF CRLF is the tunnel's, in order; while incomplete the
  parser holds at most MAX_HEADER bytes plus one read;
- SOCKS: the model's (`socks_model`): the client sends its method offer, then the username and
  password only after the proxy chose method 2 in a SOCKS5 answer to an offer of 2 (and never
  without credentials configured), the CONNECT only after the method (and the password's
  acceptance); it opens only on `05 00 .. ATYP` with ATYP 1/3/4 and its address whole; every byte
  after the reply is the tunnel's.
"""
from __future__ import annotations

import re

from appliance.openvpn.httpproxy import MAX_HEADER, ConnectReply, HttpProxy, ProxyRefused, request_bytes
from appliance.openvpn.socksproxy import SocksHandshake, SocksProxy, connect_request

USER, PASSWORD = "alice", "Pr0xy-S3cret-pw"
HOST, PORT = "vpn.example.net", 1194
_LIMIT = 4 * MAX_HEADER            # the most a target feeds (its max_len is below)


def _cuts(mode: int, data: bytes, sizes: bytes) -> list[bytes]:
    """The proxy's bytes as the client's reads see them."""
    how = (mode >> 1) & 7
    if how == 0:
        return [data]
    if how == 1:
        return [data[i:i + 1] for i in range(len(data))]
    out, i, k = [], 0, 0
    while i < len(data):
        n = 1 + (sizes[k % len(sizes)] if sizes else 7) * how % 97
        out.append(data[i:i + n])
        i, k = i + n, k + 1
    return out


def _check_reason(e: ProxyRefused) -> None:
    why = e.why
    # At most 80 of the proxy's bytes, each shown as up to 5 characters (\\xNN), and our words.
    assert isinstance(why, str) and 0 < len(why) <= 600, f"refusal reason of {len(why)} characters"
    assert all(" " <= ch <= "~" for ch in why), f"unprintable refusal reason {why!r}"


# ------------------------------------------------------------------ HTTP CONNECT
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9]{1,3} ([0-9]{3})([ \t][^\r\n]*)?")


def http_model(data: bytes, limit: int = MAX_HEADER) -> tuple[str, bytes | int | None]:
    """What a proxy's answer (all of it received) must come to: ("open", tunnel bytes),
    ("refused", status or None) or ("wait", None)."""
    if not b"HTTP/".startswith(data[:5]):
        return "refused", None
    eol = data.find(b"\r\n")
    if eol < 0:
        return ("refused", None) if len(data) > limit else ("wait", None)
    m = _STATUS_LINE.fullmatch(data[:eol])
    if m is None:
        return "refused", None
    status = int(m.group(1))
    if status != 200:
        return "refused", status
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return ("refused", None) if len(data) > limit or b"\0" in data else ("wait", None)
    if end + 4 > limit or b"\0" in data[:end]:
        return "refused", None
    return "open", data[end + 4:]


def _http_outcome(auth: str, reads: list[bytes]) -> tuple[str, bytes | int | None]:
    """Feed until the parser decides; on "open", the later reads are the tunnel's too."""
    r = ConnectReply(auth)
    for i, chunk in enumerate(reads):
        try:
            rest = r.feed(chunk)
        except ProxyRefused as e:
            _check_reason(e)
            return "refused", e.status
        if rest is not None:
            return "open", rest + b"".join(reads[i + 1:])
        assert len(r.buf) <= MAX_HEADER + len(chunk), f"the parser holds {len(r.buf)} bytes of an incomplete header"
    return "wait", None


def make_http_proxy_reply():
    proxies = {a: HttpProxy("198.18.0.50", 3128, auth=a, credentials=(USER, PASSWORD) if a == "basic" else None)
               for a in ("none", "basic")}

    def one(data: bytes) -> None:
        if not data:
            return
        mode, body = data[0], data[1:]
        auth = "basic" if mode & 1 else "none"
        req = request_bytes(proxies[auth], HOST, PORT)
        # What we send before any answer: credentials only when configured (basic is sent up front,
        # as OpenVPN 2.6 does), and the request is one header, nothing after it.
        assert (b"Proxy-Authorization" in req) == (auth == "basic")
        assert req.endswith(b"\r\n\r\n") and req.count(b"\r\n\r\n") == 1
        whole = _http_outcome(auth, [body] if body else [])
        cut = _http_outcome(auth, _cuts(mode, body, body[:8]))
        assert whole == cut, f"whole {whole!r:.200} != in reads {cut!r:.200}"
        want = http_model(body)
        if want[0] == "refused" and whole[0] == "refused":
            assert want[1] == whole[1], f"status {whole[1]} != the model's {want[1]}"
        else:
            assert whole == want, f"parser {whole!r:.200} != model {want!r:.200}"
    return one


# ------------------------------------------------------------------ SOCKS5
def socks_model(creds: bool, data: bytes) -> tuple[str, bytes, bytes | None]:
    """(outcome, what the client sends after its method offer, tunnel bytes) for a proxy's
    answer received whole: outcome "open", "refused" or "wait"."""
    method = 2 if creds else 0
    sent = b""
    auth_msg = bytes((1, len(USER))) + USER.encode() + bytes((len(PASSWORD),)) + PASSWORD.encode()
    request = connect_request(HOST, PORT)
    if len(data) < 2:
        return "wait", sent, None
    if data[0] != 5 or data[1] != method:
        return "refused", sent, None
    data = data[2:]
    if method == 2:
        sent += auth_msg
        if len(data) < 2:
            return "wait", sent, None
        if data[1] != 0:
            return "refused", sent, None
        data = data[2:]
    sent += request
    if len(data) < 5:
        return "wait", sent, None
    atyp = data[3]
    if atyp == 1:
        alen = 4
    elif atyp == 4:
        alen = 16
    elif atyp == 3:
        alen = 1 + data[4]
    else:
        return "refused", sent, None
    need = 4 + alen + 2
    if len(data) < need:
        return "wait", sent, None
    if data[0] != 5 or data[1] != 0:
        return "refused", sent, None
    return "open", sent, data[need:]


def _socks_outcome(creds: bool, reads: list[bytes]) -> tuple[str, bytes, bytes | None]:
    p = SocksProxy("198.18.0.50", 1080, credentials=(USER, PASSWORD) if creds else None)
    hs = SocksHandshake(p, HOST, PORT)
    assert hs.first() == bytes((5, 1, 2 if creds else 0))
    sent = bytearray()
    for i, chunk in enumerate(reads):
        try:
            rest = hs.feed(chunk)
        except ProxyRefused as e:
            _check_reason(e)
            sent += hs.out
            return "refused", bytes(sent), None
        sent += hs.out
        hs.out = bytearray()
        assert len(hs._buf) <= 4 + 256 + 2 + len(chunk), f"the handshake holds {len(hs._buf)} bytes"
        if rest is not None:
            # Every later read is the tunnel's, untouched.
            return "open", bytes(sent), rest + b"".join(hs.feed(c) or b"" for c in reads[i + 1:])
    return "wait", bytes(sent), None


def make_socks_reply():
    def one(data: bytes) -> None:
        if not data:
            return
        mode, body = data[0], data[1:]
        creds = bool(mode & 1)
        whole = _socks_outcome(creds, [body] if body else [])
        cut = _socks_outcome(creds, _cuts(mode, body, body[:8]))
        want = socks_model(creds, body)
        for got in (whole, cut):
            # The password leaves only after the proxy asked for method 2 of a SOCKS5 answer.
            if PASSWORD.encode() in got[1]:
                assert creds and body[:2] == b"\x05\x02", "credentials sent to a proxy that did not ask"
        assert whole[:2] == cut[:2] and whole[2] == cut[2], f"whole {whole!r:.200} != in reads {cut!r:.200}"
        assert whole == want, f"handshake {whole!r:.200} != model {want!r:.200}"
    return one


def seeds() -> dict[str, list[bytes]]:
    ok = b"HTTP/1.0 200 Connection established\r\nProxy-agent: fake\r\n\r\n"
    frame = b"\x00\x0e\x40" + bytes(range(13))           # a P_CONTROL_HARD_RESET_SERVER_V2-ish frame
    http = [ok, ok + frame, b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b"Proxy-Authenticate: Basic realm=\"p\"\r\nProxy-Authenticate: Digest realm=\"p\", nonce=\"n\"\r\n"
            b"Proxy-Authenticate: NTLM\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n" + ok,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"HTTP/1.0 200 OK\r\nX: \0\r\n\r\n",
            b"HTTP/1.0 401 Unauthorized\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.0 200\r\n\r\n" + frame]
    out_http = []
    for i, a in enumerate(http):
        out_http += [bytes((i * 2 & 0xFE,)) + a, bytes((1 | (i % 7 + 1) << 1,)) + a]
    socks = [b"\x05\x00\x05\x00\x00\x01\xc6\x12\x00\x01\x04\xaa" + frame,
             b"\x05\x02\x01\x00\x05\x00\x00\x04" + bytes(16) + b"\x04\xaa",
             b"\x05\x00\x05\x00\x00\x03\x0fvpn.example.net\x04\xaa" + frame,
             b"\x05\x02", b"\x05\xff", b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00",
             b"\x05\x02\x01\x01", b"\x04\x5a", b"\x05\x00\x05\x00\x00\x07", b"\x05\x00\x05\x00\x00\x03\xff"]
    out_socks = []
    for i, a in enumerate(socks):
        creds = a[:2] == b"\x05\x02" and 1 or 0
        out_socks += [bytes((creds,)) + a, bytes((creds | (i % 7 + 1) << 1,)) + a]
    S = GW_SEP
    gw = [b"\x00" + S.join([b"\x05\x00" + ok, b"\x30\x00" + frame]),
          b"\x01" + S.join([b"\x05\x00HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", b"\x20\x00",
                            b"\x05\x00" + ok + frame]),
          b"\x00" + S.join([b"\x01\x00HTTP/1.1 200", b"\x01\x00 OK\r\n", b"\x01\x00\r\n" + frame, b"\x30\x00"]),
          b"\x00" + S.join([b"\x05\x01HTTP/1.0 200 OK\r\n"]) + S + S.join([b"\x30\x00" + b"X" * 200] * 3),
          b"\x03" + S.join([b"\x05\x00" + http[6], b"\x40\x00"]),
          b"\x02" + S.join([b"\x05\x00\x05\x00", b"\x05\x00\x05\x00\x00\x01\xc6\x12\x00\x01\x04\xaa" + frame,
                            b"\x30\x00"]),
          b"\x02" + S.join([b"\x05\x00\x05\x02", b"\x30\x00", b"\x05\x00\x05\x00\x05\x00\x00\x03\xff"]),
          b"\x02" + S.join([b"\x05\x00\x05\x00\x05\x00\x00\x07", b"\x30\x01"]),
          b"\x00" + S.join([b"\x05\x00\x00\x00\x00", b"\x70\x00"])]
    return {"http-proxy-reply": out_http, "socks-reply": out_socks, "proxy-client": gw}


# ------------------------------------------------------------------ the client gateway through a hostile proxy
PROXY_IP = "198.18.0.50"
HOST_GW = "198.18.0.1"          # the gateway world's server address: the client's remote
GW_SEP = b"\xfe\xfd"
GW_LOG_PER_STEP = 16


class _NoTimers:
    @staticmethod
    def next_deadline():
        return None


class ScriptedProxy:
    """A proxy that accepts the client's connections, keeps every byte each one sends, and
    writes the script's chunks (one per step, `feed`) on the newest connection."""

    def __init__(self, net, port: int) -> None:
        from lab.fakes import MemoryListenSocket
        self.listen = MemoryListenSocket(net, (PROXY_IP, port))
        self.listen.bind((PROXY_IP, port))
        self.conns: list[tuple[object, bytearray, bytearray]] = []     # (socket, got, written)
        self.timers = _NoTimers()

    def step(self, block: bool = False) -> bool:
        busy = False
        while self.listen.backlog:
            s, _ = self.listen.accept()
            self.conns.append((s, bytearray(), bytearray()))
            busy = True
        for s, got, _ in self.conns:
            if s.inbox and not s.closed:
                got += s.recv(1 << 20)
                busy = True
        return busy

    def feed(self, chunk: bytes, close: bool) -> None:
        if not self.conns:
            return
        s, _, written = self.conns[-1]
        if s.closed or getattr(s, "eof", False):
            return
        if chunk:
            s.send(chunk)
            written += chunk
        if close:
            s.close()


def make_proxy_client():
    """proxy-client: a client gateway (lab/gateway_world.py's World) whose only way out is a
    hostile HTTP or SOCKS5 proxy answering with the input's chunks over time.

    Input: byte 0 = mode: bits 0-1 the proxy (http-proxy without auth, with basic auth, socks-proxy);
    then steps split at GW_SEP, `t flags chunk`: the proxy writes `chunk` on the client's newest
    connection (flags bit 0: then closes it), then t / 10 s pass.
    Oracles, after every step: nothing escapes; the client runs; at most one proxy failure per
    connection the proxy accepted (each refusal ends that attempt only, and the client tries again
    on a new connection); on every connection the client sent exactly what the exchange allows --
    HTTP: the CONNECT request, credentials in it only with `auth basic`, nothing more until the
    proxy said 200; SOCKS: the method offer, then the CONNECT only after a SOCKS5 answer chose
    method 0 -- and the password never anywhere but the basic request (and never in the log);
    at most GW_LOG_PER_STEP log lines a step.
    """
    import base64
    import logging

    from lab.gateway_world import World, client_conf

    from .contain_targets import _Lines, _pki

    pki = _pki()
    creds_line = f"<http-proxy-user-pass>\n{USER}\n{PASSWORD}\n</http-proxy-user-pass>\n"
    extras = [f"http-proxy {PROXY_IP} 3128\n", f"http-proxy {PROXY_IP} 3128 '' basic\n" + creds_line,
              f"socks-proxy {PROXY_IP} 1080\n", f"http-proxy {PROXY_IP} 3128\n"]
    basic_b64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class _World(World):
        def pumps(self) -> list:
            return super().pumps() + [self.proxy]

    def one(data: bytes) -> None:
        if not data:
            return
        kind = data[0] & 3
        w = _World()
        w.proxy = ScriptedProxy(w.net, 1080 if kind == 2 else 3128)
        lines = _Lines()
        root = logging.getLogger()
        root.addHandler(lines)
        old_level = root.level
        root.setLevel(logging.INFO)
        try:
            c = w.add_client(client_conf(pki, "client0", proto="tcp", extra=extras[kind]),
                             names={"vpn.example.net": ["198.18.0.1"]})
            w.run_for(0.2)
            for step in data[1:].split(GW_SEP)[:12]:
                if len(step) < 2:
                    continue
                before = lines.n
                w.proxy.feed(step[2:], bool(step[1] & 1))
                w.run_for(0.05 + step[0] / 10)
                assert lines.n - before <= GW_LOG_PER_STEP, f"{lines.n - before} log lines in a step: {lines.last}"
                assert c.counters.proxy_failures <= len(w.proxy.conns) + 1, \
                    f"{c.counters.proxy_failures} proxy failures for {len(w.proxy.conns)} connections"
                for s, got, written in w.proxy.conns:
                    _check_sent(kind, bytes(got), bytes(written), basic_b64)
                assert not any(PASSWORD in m or basic_b64 in m for m in lines.last), "the password in the log"
        finally:
            root.removeHandler(lines)
            root.setLevel(old_level)
    return one


def _check_sent(kind: int, got: bytes, written: bytes, basic_b64: str) -> None:
    """What the client sent on one connection, against what the proxy's answer allowed."""
    if kind == 2:
        offer = b"\x05\x01\x00"
        assert got[:3] == offer[:len(got[:3])], f"SOCKS: the client opened with {got[:3]!r}"
        after = got[3:]
        if after:
            assert written[:2] == b"\x05\x00", f"SOCKS: the client sent {after[:40]!r} before the proxy chose method 0"
            req = connect_request(HOST_GW, PORT)
            assert after[:len(req)] == req[:len(after)], f"SOCKS: {after[:40]!r} where the CONNECT goes"
            if len(after) > len(req):
                assert socks_model(False, written)[0] == "open", "SOCKS: the client sent on before the reply"
        assert PASSWORD.encode() not in got
        return
    head_end = got.find(b"\r\n\r\n")
    req = got[:head_end + 4] if head_end >= 0 else got
    assert req.startswith(b"CONNECT "[:len(req)]), f"HTTP: the client opened with {req[:40]!r}"
    has_auth = b"Proxy-Authorization: Basic " + basic_b64.encode() in req
    assert has_auth == (kind == 1) or head_end < 0, f"HTTP: credentials {'sent' if has_auth else 'missing'} (kind {kind})"
    if kind != 1:
        assert PASSWORD.encode() not in got and basic_b64.encode() not in got, "credentials to a proxy without auth"
    after = got[head_end + 4:] if head_end >= 0 else b""
    if after:
        said = http_model(written)
        assert said[0] == "open", f"HTTP: the client sent {len(after)} bytes after its request, the proxy not having said 200"
