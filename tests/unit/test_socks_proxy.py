"""socks-proxy: the SOCKS5 exchange as OpenVPN 2.6's socks.c sends it, read from the config as
2.6 reads it, and a hostile proxy's answers (wrong version or method, refusals, any address type,
bytes a few at a time, garbage) ending the attempt with a reason, never anything else."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.httpproxy import ProxyRefused
from appliance.openvpn.socksproxy import SocksHandshake, SocksProxy, connect_request

CONNECT = bytes((5, 1, 0, 3, 11)) + b"vpn.example" + (443).to_bytes(2, "big")
OK_V4 = bytes((5, 0, 0, 1, 198, 18, 0, 9, 0x1F, 0x90))


def _run(proxy: SocksProxy, answers: list[bytes]) -> tuple[list[bytes], bytes | None]:
    h = SocksHandshake(proxy, "vpn.example", 443)
    sent = [h.first()]
    rest = None
    for a in answers:
        rest = h.feed(a)
        if h.out:
            sent.append(bytes(h.out))
            h.out.clear()
    return sent, rest


def test_without_credentials_one_method_then_connect_by_name():
    sent, rest = _run(SocksProxy("198.18.9.1"), [b"\x05\x00", OK_V4 + b"server bytes"])
    assert sent == [b"\x05\x01\x00", CONNECT] and rest == b"server bytes"


def test_with_credentials_the_login_comes_first():
    p = SocksProxy("198.18.9.1", credentials=("alice", "pw"))
    sent, rest = _run(p, [b"\x05\x02", b"\x01\x00", OK_V4])
    assert sent == [b"\x05\x01\x02", b"\x01\x05alice\x02pw", CONNECT] and rest == b""


def test_credentials_not_in_utf8_are_sent_as_the_file_holds_them(tmp_path):
    """A Latin-1 authfile (`us\xe9r`) is read with surrogateescape; encoding it strictly raised
    UnicodeEncodeError out of the client's proxy handler at the proxy's first answer."""
    auth = tmp_path / "auth"
    auth.write_bytes(b"us\xe9r\np\xe4ss\n")
    o = parse_config(f"client\ndev tun\nproto tcp-client\nremote 198.18.0.1 1194\nca /etc/hostname\n"
                     f"socks-proxy 198.18.9.1 1080 {auth}\n")
    sent, _rest = _run(o.socks_proxy, [b"\x05\x02", b"\x01\x00", OK_V4])
    assert sent[1] == b"\x01\x04us\xe9r\x04p\xe4ss"


@pytest.mark.parametrize("bound", [bytes((1, 1, 2, 3, 4)), bytes((4,)) + bytes(16), bytes((3, 4)) + b"name"])
def test_every_bound_address_type_is_read_and_dropped_even_a_byte_at_a_time(bound):
    h = SocksHandshake(SocksProxy("p"), "vpn.example", 443)
    stream = b"\x05\x00" + b"\x05\x00\x00" + bound + b"\x01\xbb" + b"X"
    rests = [h.feed(stream[i:i + 1]) for i in range(len(stream))]
    assert [r for r in rests if r is not None] == [b"", b"X"]


@pytest.mark.parametrize("answers,why", [
    ([b"\x04\x00"], "bad status"),
    ([b"\x05\xff"], "unexpected authentication method"),
    ([b"\x05\x00", b"\x05\x05\x00\x01" + bytes(6)], "refused the connection (reply 5: connection refused)"),
    ([b"\x05\x00", b"\x05\x00\x00\x09" + bytes(6)], "bad address type"),
])
def test_a_refusing_or_broken_proxy_says_why(answers, why):
    with pytest.raises(ProxyRefused) as ei:
        _run(SocksProxy("p"), answers)
    assert why in ei.value.why


def test_a_refused_login():
    with pytest.raises(ProxyRefused) as ei:
        _run(SocksProxy("p", credentials=("alice", "bad")), [b"\x05\x02", b"\x01\x01"])
    assert "refused the username and password" in ei.value.why


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=8), creds=st.booleans())
def test_garbage_only_ever_refuses(chunks, creds):
    h = SocksHandshake(SocksProxy("p", credentials=("u", "p") if creds else None), "vpn.example", 443)
    try:
        for c in chunks:
            h.feed(c)
    except ProxyRefused:
        pass


def test_a_host_name_over_255_bytes_cannot_be_sent():
    with pytest.raises(ValueError):
        connect_request("a" * 256, 1194)


BASE = "client\ndev tun\nproto tcp-client\nremote 198.18.0.1 443\nca ca.crt\n"


def _parse(text: str, files: dict | None = None):
    files = files or {}
    return parse_config(text, "/cfg/p.ovpn", lambda p: files.get(p, b""))


def test_config_defaults_and_credentials():
    o = _parse(BASE + "socks-proxy 198.18.9.1\n")
    assert o.remotes[0].proxy == SocksProxy("198.18.9.1", 1080, None, 6)
    o = _parse(BASE + "socks-proxy 198.18.9.1 1081 up.txt\n", {"/cfg/up.txt": b"alice\npw\n"})
    assert o.remotes[0].proxy.credentials == ("alice", "pw") and o.remotes[0].proxy.port == 1081
    assert "pw" not in o.socks_proxy.describe()


@pytest.mark.parametrize("text,why", [
    ("client\ndev tun\nremote 198.18.0.1 1194\nca ca.crt\nsocks-proxy 198.18.9.1\n", "UDP through a SOCKS proxy"),
    (BASE + "socks-proxy 198.18.9.1 1080 stdin\n", "on the terminal is not supported"),
    (BASE + "http-proxy 198.18.9.1 3128\nsocks-proxy 198.18.9.1\n", "can not be used together"),
    ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\nsocks-proxy 198.18.9.1\n",
     "cannot be used in a server config"),
])
def test_config_refusals(text, why):
    with pytest.raises(ConfigError) as ei:
        _parse(text)
    msgs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    assert any("socks-proxy" in m and why in m for m in msgs), msgs
