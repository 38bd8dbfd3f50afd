"""The client through an HTTP proxy on in-memory ports: a proxy that relays, and hostile or broken
ones (an answer that never ends, comes a byte at a time, is not HTTP, 407, other statuses, bytes
after the header, a proxy that closes or resets). Each ends at most that attempt, logged once and
counted; the client never blocks, and the next attempt (the same proxy answering properly, or a
second remote without a proxy) comes up. Against tinyproxy and OpenVPN 2.6's client, and a
malicious proxy on real sockets: tests/interop/test_http_proxy_vs_openvpn.py."""
from __future__ import annotations

import logging

import pytest

from appliance.openvpn.httpproxy import MAX_HEADER
from lab.fakes import MemoryListenSocket, stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

PROXY_IP = "198.18.0.50"
PROXY = (PROXY_IP, 3128)
PASSWORD = "Pr0xy-S3cret-pw"
CREDS = f"<http-proxy-user-pass>\nalice\n{PASSWORD}\n</http-proxy-user-pass>\n"
OK = b"HTTP/1.0 200 Connection established\r\nProxy-agent: fake\r\n\r\n"


class _NoTimers:
    @staticmethod
    def next_deadline():
        return None


class FakeProxy:
    """An HTTP proxy stepped with the pumps. `answers`: one per connection, in order (the last
    repeats): bytes to write once the request is in, then relay to the server when they hold
    200 ("relay"), or a callable (conn) -> bool run each step (True: busy), for the hostile ones."""

    def __init__(self, net, answers: list) -> None:
        self.net = net
        self.listen = MemoryListenSocket(net, PROXY)
        self.listen.bind(PROXY)
        self.answers = answers
        self.conns: list[dict] = []
        self.requests: list[bytes] = []
        self.timers = _NoTimers()

    def step(self, block: bool = False) -> bool:
        busy = False
        while self.listen.backlog and not self.listen.closed:
            s, _ = self.listen.accept()
            ans = self.answers[min(len(self.conns), len(self.answers) - 1)]
            self.conns.append({"sock": s, "buf": bytearray(), "answer": ans, "state": "request", "up": None})
            busy = True
        for c in self.conns:
            busy = self._step(c) or busy
        return busy

    def _step(self, c: dict) -> bool:
        s = c["sock"]
        if s.closed:
            return False
        if c["state"] == "request":
            if not s.inbox:
                return False
            c["buf"] += s.recv(1 << 20)
            end = c["buf"].find(b"\r\n\r\n")
            if end < 0:
                return True
            self.requests.append(bytes(c["buf"][:end + 4]))
            ans = c["answer"]
            if callable(ans):
                c["state"] = "script"
                return True
            s.send(ans)
            if ans.startswith(b"HTTP/1.0 200") or ans.startswith(b"HTTP/1.1 200"):
                c["up"] = stream_connect(self.net, PROXY_IP, (SERVER_IP, 1194))
                c["state"] = "relay"
            else:
                c["state"] = "answered"
            return True
        if c["state"] == "script":
            return c["answer"](c)
        if c["state"] == "relay":
            up, moved = c["up"], False
            if s.inbox:
                up.send(s.recv(1 << 20))
                moved = True
            if up.inbox:
                s.send(up.recv(1 << 20))
                moved = True
            if (up.eof or up.closed) and not up.inbox:
                s.close()
            if s.eof and not s.inbox:
                up.close()
            return moved
        return False


class ProxyWorld(World):
    def __init__(self, answers: list) -> None:
        super().__init__()
        self.proxy = FakeProxy(self.net, answers)

    def pumps(self) -> list:
        return super().pumps() + [self.proxy]


def _world(pki, answers: list, client_extra: str = f"http-proxy {PROXY_IP} 3128 '' basic\n" + CREDS,
           remotes=None, direct_second: bool = False, listening: bool = True) -> tuple[ProxyWorld, object]:
    w = ProxyWorld(answers)
    if not listening:
        w.proxy.listen.close()                      # nobody at the proxy's address: refused
    w.add_server(server_conf(pki, proto="tcp"))
    conf = client_conf(pki, proto="tcp", extra=client_extra, remotes=remotes)
    if direct_second:
        # two <connection> blocks: the first through the proxy, the second straight to the server
        conf = conf.replace(f"remote {SERVER_IP} 1194\n", "").replace(client_extra, "") + (
            f"<connection>\nremote vpn.example.net 1194\nhttp-proxy {PROXY_IP} 3128\n</connection>\n"
            f"<connection>\nremote {SERVER_IP} 1194\n</connection>\n")
    c = w.add_client(conf, names={"vpn.example.net": [SERVER_IP]})
    return w, c


def _up(w: World, c, max_time: float = 60) -> bool:
    return w.run(lambda: c.conn is not None and c.conn.was_up, max_time=max_time)


def test_through_the_proxy_with_basic_auth(pki, caplog):
    with caplog.at_level(logging.DEBUG):
        w, c = _world(pki, [OK])
        assert _up(w, c)
    req = w.proxy.requests[0]
    assert req == (f"CONNECT {SERVER_IP}:1194 HTTP/1.0\r\nHost: {SERVER_IP}\r\n".encode()
                   + b"Proxy-Authorization: Basic YWxpY2U6UHIweHktUzNjcmV0LXB3\r\n\r\n")
    assert c.counters.proxy_failures == 0 and "CONNECT 198.18.0.1:1194 accepted" in caplog.text
    assert c.conn.addr[0] == PROXY_IP                     # the stream goes to the proxy, not the server
    assert PASSWORD not in caplog.text and "YWxpY2U6UHIweHktUzNjcmV0LXB3" not in caplog.text


def test_the_remote_name_goes_to_the_proxy_unresolved(pki):
    w, c = _world(pki, [OK], client_extra=f"http-proxy {PROXY_IP} 3128\n", remotes=[("vpn.example.net", 1194)])
    assert _up(w, c)
    assert w.proxy.requests[0] == b"CONNECT vpn.example.net:1194 HTTP/1.0\r\nHost: vpn.example.net\r\n\r\n"


# The hostile answers: each ends that attempt only; the next connection gets a proper answer.
def _never_ends(c: dict) -> bool:
    return False                                    # silent after the request


def _endless_trickle(c: dict) -> bool:
    s = c["sock"]
    if s.closed or s.eof:
        return False
    if "sent" not in c:
        c["sent"] = 0
        s.send(b"HTTP/1.0 200 OK\r\n")
    s.send(b"X")                                    # a header that never ends, one byte per step
    c["sent"] += 1
    return True


def _byte_at_a_time_then_ok(c: dict) -> bool:
    i = c.setdefault("i", 0)
    if i < len(OK):
        c["sock"].send(OK[i:i + 1])
        c["i"] = i + 1
        if c["i"] == len(OK):
            c["up"] = stream_connect(c["sock"].net, PROXY_IP, (SERVER_IP, 1194))
            c["state"] = "relay"
        return True
    return False


def _close(c: dict) -> bool:
    c["sock"].close()
    return True


def _reset(c: dict) -> bool:
    c["sock"].abort()
    return True


@pytest.mark.parametrize("first,words", [
    (_never_ends, "no complete answer to CONNECT within 10 s"),
    (_endless_trickle, f"header longer than {MAX_HEADER} bytes"),
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", "not an HTTP answer"),
    (b"\x00\x0e\x38garbage", "not an HTTP answer"),
    (b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
     "refused our credentials (basic)"),
    (b"HTTP/1.0 403 Access violation\r\n\r\n", "'HTTP/1.0 403 Access violation', not 200"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "not 200"),
    (b"HTTP/1.0 200", "connection closed by peer before its answer ended"),    # then closes (below)
    (_close, "connection closed by peer before its answer ended"),
    (_reset, "before its answer ended"),
])
def test_a_hostile_answer_ends_that_attempt_only(pki, caplog, first, words):
    if first == b"HTTP/1.0 200":
        def first(c: dict) -> bool:      # noqa: F811 - half a status line, then the proxy closes
            c["sock"].send(b"HTTP/1.0 200")
            c["sock"].close()
            return True
    with caplog.at_level(logging.INFO):
        w, c = _world(pki, [first, OK])
        assert _up(w, c, max_time=120)
    assert c.counters.proxy_failures == 1
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP proxy ")
                and "accepted" not in r.getMessage()]
    assert len(failures) == 1 and words in failures[0], failures
    assert len(w.proxy.requests) == 2
    assert PASSWORD not in caplog.text


def test_bytes_after_the_header_are_the_servers_stream(pki):
    """A frame glued to the 200 (here junk of a valid length, a data packet for no key) is read as
    the first frame of the stream: dropped by the session, and the stream stays in step."""
    junk = b"\x00\x08" + bytes([9 << 3]) + b"\x00\x00\x01" + b"JUNK"

    def glued(c: dict) -> bool:
        c["sock"].send(OK + junk)
        c["up"] = stream_connect(c["sock"].net, PROXY_IP, (SERVER_IP, 1194))
        c["state"] = "relay"
        return True
    w, c = _world(pki, [glued])
    assert _up(w, c)
    assert c.counters.proxy_failures == 0
    assert c.conn.session.stats.get("data-no-key") == 1   # the junk frame, read as a frame and dropped


def test_a_broken_frame_after_the_header_ends_the_attempt(pki, caplog):
    def zero_frame(c: dict) -> bool:
        c["sock"].send(OK + b"\x00\x00")
        c["state"] = "answered"
        return True
    with caplog.at_level(logging.INFO):
        w, c = _world(pki, [zero_frame, OK])
        assert _up(w, c)
    assert "broken stream" in caplog.text


def test_an_answer_a_byte_at_a_time_comes_up(pki):
    w, c = _world(pki, [_byte_at_a_time_then_ok])
    assert _up(w, c)
    assert c.counters.proxy_failures == 0


def test_a_refusing_proxy_then_the_second_remote_without_proxy(pki, caplog):
    with caplog.at_level(logging.INFO):
        w, c = _world(pki, [b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"], direct_second=True)
        assert _up(w, c)
    assert c.counters.proxy_failures == 1 and c.conn.addr[0] == SERVER_IP
    assert "requires authentication, and no credentials are configured" in caplog.text


def test_a_proxy_that_is_not_there(pki, caplog):
    with caplog.at_level(logging.INFO):
        w, c = _world(pki, [OK], direct_second=True, listening=False)
        assert _up(w, c)
    assert c.conn.addr[0] == SERVER_IP and "cannot reach HTTP proxy 198.18.0.50:3128" in caplog.text


def test_the_client_keeps_trying_a_proxy_that_always_refuses(pki):
    """As OpenVPN 2.6 with a 407 to basic credentials: a soft restart, again and again (the
    run ends only with connect-retry-max)."""
    w, c = _world(pki, [b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"])
    assert w.run(lambda: c.counters.proxy_failures >= 3, max_time=120)
    assert c.result is None and not (c.conn is not None and c.conn.was_up)
