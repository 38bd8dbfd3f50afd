"""http-proxy as OpenVPN 2.6 reads and sends it (options.c, proxy.c): the directives and their
refusals at file:line, the CONNECT request's bytes (the expected bytes below are written from
proxy.c's establish_http_proxy_passthru and add_proxy_headers, not from our code), and the answer
parser against a hostile proxy. The client on in-memory ports: tests/gateway/test_http_proxy.py;
against tinyproxy and OpenVPN's client: tests/interop/test_http_proxy_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config, render_options
from appliance.openvpn.httpproxy import MAX_HEADER, ConnectReply, HttpProxy, ProxyRefused, request_bytes

HEAD = "client\ndev tun\nca ca.crt\nproto tcp-client\nremote vpn.example.net 1194\n"      # lines 1-5
FILES = {"/mem/up.txt": b"alice\ns3cret\n", "/mem/crlf.txt": b"alice\r\ns3cret\r\n", "/mem/one.txt": b"alice\n",
         "/mem/empty.txt": b"", "/mem/ca.crt": b"x",
         "/mem/long.txt": b"alice\n" + b"p" * 400 + b"\n"}
NO_REMOTE = HEAD.replace("remote vpn.example.net 1194\n", "")


def _read(path: str) -> bytes:
    if path in FILES:
        return FILES[path]
    raise FileNotFoundError(2, "No such file or directory")


def _parse(body: str, head: str = HEAD):
    return parse_config(head + body, "/mem/c.ovpn", read_file=_read)


def _error(body: str, head: str = HEAD) -> str:
    with pytest.raises(ConfigError) as e:
        _parse(body, head)
    return str(e.value)


# ------------------------------------------------------------------ the directives
def test_no_auth():
    o = _parse("http-proxy proxy.example 3128\n")
    hp = o.remotes[0].proxy
    assert (hp.server, hp.port, hp.auth, hp.credentials, hp.version) == ("proxy.example", 3128, "none", None, "1.0")


@pytest.mark.parametrize("line", ["http-proxy 198.18.0.5 8080 up.txt\n", "http-proxy 198.18.0.5 8080 up.txt basic\n",
                                  "http-proxy 198.18.0.5 8080 crlf.txt\n"])
def test_basic_from_a_file_read_at_start(line):
    hp = _parse(line).remotes[0].proxy
    assert (hp.auth, hp.credentials) == ("basic", ("alice", "s3cret"))


def test_inline_credentials_win_over_the_file():
    body = 'http-proxy 198.18.0.5 8080 "" basic\n<http-proxy-user-pass>\nbob\np:w d\n</http-proxy-user-pass>\n'
    assert _parse(body).remotes[0].proxy.credentials == ("bob", "p:w d")
    body = 'http-proxy 198.18.0.5 8080 missing.txt\nhttp-proxy-user-pass up.txt\n'
    assert _parse(body).remotes[0].proxy.credentials == ("alice", "s3cret")


def test_method_none_with_a_file_sends_nothing_and_reads_nothing():
    hp = _parse("http-proxy 198.18.0.5 8080 missing.txt none\n").remotes[0].proxy
    assert (hp.auth, hp.credentials) == ("none", None)


def test_options():
    o = _parse("http-proxy-option VERSION 1.1\nhttp-proxy 198.18.0.5 8080\nhttp-proxy-option AGENT 'Mozilla/5.0 x'\n"
               "http-proxy-option CUSTOM-HEADER X-A one\nhttp-proxy-option EXT1 'X-B: two'\n")
    hp = o.remotes[0].proxy
    assert (hp.version, hp.agent, hp.custom_headers) == ("1.1", "Mozilla/5.0 x", (("X-A", "one"), ("X-B: two", None)))


def test_each_connection_block_its_own_proxy():
    body = ("http-proxy 198.18.0.5 8080 up.txt\n"
            "<connection>\nremote a.example 443 tcp\n</connection>\n"
            "<connection>\nremote b.example 443 tcp\nhttp-proxy 198.18.0.6 3128\nhttp-proxy-option VERSION 1.1\n"
            "</connection>\n"
            "<connection>\nremote c.example 1194 udp\n</connection>\n")
    # the global proxy with a UDP block: refused, as OpenVPN 2.6
    assert "c.ovpn:5: http-proxy:" in _error(body, head=NO_REMOTE)
    o = _parse(body.replace("<connection>\nremote c.example 1194 udp\n</connection>\n", ""), head=NO_REMOTE)
    a, b = o.remotes
    assert (a.proxy.server, a.proxy.credentials, a.proxy.version) == ("198.18.0.5", ("alice", "s3cret"), "1.0")
    assert (b.proxy.server, b.proxy.auth, b.proxy.version) == ("198.18.0.6", "none", "1.1")


def test_a_block_without_proxy_lines_and_no_global_proxy_goes_direct():
    o = _parse("<connection>\nremote a 443 tcp\nhttp-proxy p 3128\n</connection>\n<connection>\nremote b 443 tcp\n"
               "</connection>\n", head=NO_REMOTE)
    assert [r.proxy.server if r.proxy else None for r in o.remotes] == ["p", None]


@pytest.mark.parametrize("body,where,words", [
    ("http-proxy p\n", "c.ovpn:6: http-proxy:", "port number not defined"),
    ("http-proxy p 99999\n", "c.ovpn:6: http-proxy:", "out of range"),
    ("http-proxy p 3128 auto\n", "c.ovpn:6: http-proxy:", "auto is not supported"),
    ("http-proxy p 3128 auto-nct\n", "c.ovpn:6: http-proxy:", "auto-nct is not supported"),
    ("http-proxy p 3128 up.txt ntlm\n", "c.ovpn:6: http-proxy:", "NTLM"),
    ("http-proxy p 3128 up.txt ntlm2\n", "c.ovpn:6: http-proxy:", "NTLMv2"),
    ("http-proxy p 3128 up.txt digest\n", "c.ovpn:6: http-proxy:", "digest"),
    ("http-proxy p 3128 up.txt kerberos\n", "c.ovpn:6: http-proxy:", "unknown HTTP authentication method"),
    ("http-proxy p 3128 stdin\n", "c.ovpn:6: http-proxy:", "terminal"),
    ("http-proxy p 3128 missing.txt\n", "c.ovpn:6: http-proxy:", "cannot read"),
    ("http-proxy p 3128 one.txt\n", "c.ovpn:6: http-proxy:", "no password on line 2"),
    ("http-proxy p 3128 empty.txt\n", "c.ovpn:6: http-proxy:", "username (line 1) is empty"),
    ("http-proxy p 3128 '' basic\n", "c.ovpn:6: http-proxy:", "needs a credentials file"),
    ("http-proxy p 3128\n<http-proxy-user-pass>\nalice\n</http-proxy-user-pass>\n", "c.ovpn:7: http-proxy-user-pass:",
     "no password"),
    ("http-proxy-user-pass up.txt\n", "c.ovpn:6: http-proxy-user-pass:", "there is no http-proxy"),
    ("http-proxy-option AGENT x\n", "c.ovpn:6: http-proxy-option:", "there is no http-proxy"),
    ("http-proxy p 3128\nhttp-proxy-option VERSION 2.0\n", "c.ovpn:7: http-proxy-option:", "VERSION"),
    ("http-proxy p 3128\nhttp-proxy-option FOO bar\n", "c.ovpn:7: http-proxy-option:", "Bad http-proxy-option"),
    ("http-proxy p 3128\nhttp-proxy-option AGENT\n", "c.ovpn:7: http-proxy-option:", "Bad http-proxy-option"),
    ("http-proxy p 3128\n" + "http-proxy-option CUSTOM-HEADER X-H v\n" * 11, "c.ovpn:17: http-proxy-option:",
     "more than 10"),
    ("proto udp\nhttp-proxy p 3128\n", "c.ovpn:7: http-proxy:", "MUST be used in TCP Client mode"),
    ("socks-proxy s 1080\nhttp-proxy p 3128\n", "c.ovpn:6: socks-proxy:", "can not be used together"),
    ("http-proxy p 3128 long.txt\n", "c.ovpn:6: http-proxy:", "Proxy-Authorization line (username and password) "
     "is longer than the 511 bytes"),
    ("<connection>\nremote a 443 tcp\nhttp-proxy p 3128 auto\n</connection>\n", "c.ovpn:8: http-proxy:", "auto"),
    ("<connection>\nremote a 443 tcp\nhttp-proxy-option AGENT a b\n</connection>\n", "c.ovpn:8: http-proxy-option:",
     "Bad http-proxy-option"),
    ("<connection>\nremote a 443 tcp\nhttp-proxy p 1 f basic x\n</connection>\n", "c.ovpn:8: http-proxy:",
     "expects 1 to 4"),
])
def test_refused_at_its_line(body, where, words):
    head = NO_REMOTE if body.startswith("<connection>") else HEAD
    if body.startswith("<connection>"):
        where = where.replace("c.ovpn:8", "c.ovpn:7")
    msg = _error(body, head)
    assert where in msg and words in msg, msg


def test_a_server_config_refuses_it():
    conf = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\nca ca.crt\ncert ca.crt\nkey ca.crt\n"
            "dh none\nproto tcp-server\nhttp-proxy p 3128\n")
    with pytest.raises(ConfigError, match="c.conf:10: http-proxy: cannot be used in a server config"):
        parse_config(conf, "/mem/c.conf", read_file=_read)


def test_the_password_is_never_shown():
    o = _parse("http-proxy 198.18.0.5 8080 up.txt\n<http-proxy-user-pass>\nalice\nTopSecret99\n</http-proxy-user-pass>\n")
    assert "TopSecret99" not in render_options(o)
    assert "TopSecret99" not in repr(o) and "TopSecret99" not in repr(o.remotes)
    assert "alice" in render_options(o)


# ------------------------------------------------------------------ the request, as proxy.c builds it
def _req(body: str, host: str = "vpn.example.net", port: int = 1194) -> bytes:
    o = _parse(body, HEAD.replace("vpn.example.net 1194", f"{host} {port}"))
    return request_bytes(o.remotes[0].proxy, o.remotes[0].host, o.remotes[0].port)


def test_request_no_auth():
    # "CONNECT %s:%s HTTP/%s", then "Host: %s" (the remote's name only), then the empty line
    assert _req("http-proxy p 3128\n") == b"CONNECT vpn.example.net:1194 HTTP/1.0\r\nHost: vpn.example.net\r\n\r\n"


def test_request_basic():
    assert _req("http-proxy p 3128 up.txt\n") == (
        b"CONNECT vpn.example.net:1194 HTTP/1.0\r\nHost: vpn.example.net\r\n"
        b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n")


def test_request_with_every_option():
    # custom headers first (in order), Host unless one was named Host, User-Agent, then the auth line
    body = ("http-proxy p 3128 up.txt basic\nhttp-proxy-option VERSION 1.1\nhttp-proxy-option AGENT 'Corp Agent/2'\n"
            "http-proxy-option CUSTOM-HEADER X-Corp yes\nhttp-proxy-option CUSTOM-HEADER 'X-Raw: 1'\n")
    assert _req(body) == (b"CONNECT vpn.example.net:1194 HTTP/1.1\r\nX-Corp: yes\r\nX-Raw: 1\r\n"
                          b"Host: vpn.example.net\r\nUser-Agent: Corp Agent/2\r\n"
                          b"Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n")


@pytest.mark.parametrize("header", ["CUSTOM-HEADER host other.example", "CUSTOM-HEADER 'Host: other.example'",
                                    "EXT2 'hOsT: other.example'"])
def test_a_custom_host_header_replaces_ours(header):
    got = _req(f"http-proxy p 3128\nhttp-proxy-option {header}\n")
    assert got.lower().count(b"host: ") == 1 and b"Host: vpn.example.net" not in got


def test_request_ipv6_literal_as_proxy_c_writes_it():
    # "%s:%s" with the name as written: no brackets
    assert _req("http-proxy p 3128\n", host="2001:db8::1", port=443) == (
        b"CONNECT 2001:db8::1:443 HTTP/1.0\r\nHost: 2001:db8::1\r\n\r\n")


def test_request_password_with_colon_and_space():
    body = 'http-proxy p 3128 "" basic\n<http-proxy-user-pass>\nbob\np:w d\n</http-proxy-user-pass>\n'
    assert b"Proxy-Authorization: Basic Ym9iOnA6dyBk\r\n" in _req(body)


# ------------------------------------------------------------------ the answer, from a hostile proxy
def _feed_all(chunks: list[bytes], auth: str = "none"):
    r = ConnectReply(auth)
    for ch in chunks:
        got = r.feed(ch)
        if got is not None:
            return got
    return None


def test_200_and_nothing_after():
    assert _feed_all([b"HTTP/1.0 200 Connection established\r\n\r\n"]) == b""


def test_200_with_headers_and_the_servers_bytes_right_after():
    tail = b"\x00\x0e\x38" + b"\r\n\r\n" + b"x" * 11          # a frame holding CRLF CRLF itself
    got = _feed_all([b"HTTP/1.1 200 OK\r\nProxy-agent: t\r\nVia: 1.1 t\r\n\r\n" + tail])
    assert got == tail


def test_a_byte_at_a_time():
    msg = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n\x00\x2a"
    r = ConnectReply()
    outs = [r.feed(msg[i:i + 1]) for i in range(len(msg) - 2)]
    assert outs[:-1] == [None] * (len(outs) - 1) and outs[-1] == b"" and r.done


def test_a_crlf_crlf_split_across_reads():
    assert _feed_all([b"HTTP/1.0 200 OK\r\nA: b\r", b"\n\r", b"\nrest"]) == b"rest"


@pytest.mark.parametrize("chunks,words", [
    ([b"SSH-2.0-OpenSSH_9.2\r\n"], "not an HTTP answer"),
    ([b"\x00\x0e\x38"], "not an HTTP answer"),
    ([b"HT", b"XP/1.0 200 OK\r\n\r\n"], "not an HTTP answer"),
    ([b"HTTP/1.0 2000 OK\r\n\r\n"], "not an HTTP answer"),
    ([b"HTTP/1.0 abc\r\n\r\n"], "not an HTTP answer"),
    ([b"HTTP/1.0 407 Proxy Authentication Required\r\n"], "no credentials"),
    ([b"HTTP/1.0 403 Access violation\r\n"], "'HTTP/1.0 403 Access violation', not 200"),
    ([b"HTTP/1.0 502 Bad \x1b[31mGateway\r\n"], "\\x1b[31m"),
    ([b"HTTP/1.1 201 Created\r\n\r\n"], "not 200"),
    ([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"], "not 200"),
    ([b"HTTP/1.0 200 OK\r\nX: \x00\r\n\r\n"], "NUL"),
    ([b"HTTP/1.0 200 OK" + b"a" * MAX_HEADER], "first line longer"),
    ([b"HTTP/1.0 200 OK\r\n"] + [b"X-Pad: " + b"a" * 100 + b"\r\n"] * 80, "header longer"),
    ([b"HTTP/1.0 200 OK\r\n" + b"X: " + b"a" * (MAX_HEADER - 20) + b"\r\n\r\nrest"], "header longer"),
])
def test_refused(chunks, words):
    with pytest.raises(ProxyRefused) as e:
        _feed_all(chunks)
    assert words in e.value.why, e.value.why


def test_407_with_credentials_says_they_were_refused():
    with pytest.raises(ProxyRefused) as e:
        _feed_all([b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"],
                  auth="basic")
    assert e.value.status == 407 and "refused our credentials" in e.value.why


def test_the_header_limit_holds_for_an_endless_trickle():
    r = ConnectReply()
    r.feed(b"HTTP/1.0 200 OK\r\n")
    with pytest.raises(ProxyRefused):
        for _ in range(MAX_HEADER):
            assert r.feed(b"X") is None


def test_exactly_the_limit_is_accepted():
    head = b"HTTP/1.0 200 OK\r\nX: "
    pad = MAX_HEADER - len(head) - 4
    assert ConnectReply().feed(head + b"a" * pad + b"\r\n\r\nZ") == b"Z"


def test_describe_hides_the_password():
    hp = HttpProxy("p", 3128, "basic", credentials=("alice", "TopSecret99"))
    assert "TopSecret99" not in hp.describe() + repr(hp)


def test_any_split_of_an_answer_gives_the_same_stream_and_random_bytes_only_refuse():
    """Property, seeded: a 200 answer with a tail, cut anywhere into any number of reads, gives the
    same tail; random bytes and mutated answers either wait, give a tail, or raise ProxyRefused."""
    import random
    rng = random.Random(7)
    answer = b"HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n"
    tail = bytes(rng.randrange(256) for _ in range(300))
    whole = answer + tail
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(whole)), rng.randrange(1, 12)))
        parts = [whole[a:b] for a, b in zip([0] + cuts, cuts + [len(whole)])]
        r, got = ConnectReply(), None
        for i, part in enumerate(parts):
            got = r.feed(part)
            if got is not None:
                got += b"".join(parts[i + 1:])
                break
        assert got == tail
    for _ in range(2000):
        if rng.random() < 0.5:
            data = bytearray(whole)
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        r = ConnectReply()
        try:
            out = r.feed(bytes(data))
        except ProxyRefused:
            continue
        assert out is None or bytes(data).startswith(b"HTTP/") and b"\r\n\r\n" in data
