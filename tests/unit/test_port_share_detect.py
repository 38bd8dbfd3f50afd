"""port-share's decision on a connection's first bytes (OpenVPN 2.6.14 ps.c is_openvpn_protocol),
its journal names, and the directive's refusals where OpenVPN refuses it."""
from __future__ import annotations

import ssl
import struct

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.portshare import Verdict, decide, is_openvpn_protocol, journal_name, sockaddr_text

V2, V3 = 7 << 3, 10 << 3


def _frame(n: int, op: int) -> bytes:
    return struct.pack("!H", n) + bytes([op])


@pytest.mark.parametrize("head,want", [
    (_frame(14, V2), True), (_frame(255, V2), True), (_frame(13, V2), False), (_frame(256, V2), False),
    (_frame(54, V2 | 1), False),                 # key id 1: a client's first packet has key id 0
    (_frame(54, 8 << 3), False),                 # the server's hard reset, not a client's
    (_frame(336, V3), True), (_frame(1278, V3), True), (_frame(335, V3), False), (_frame(1279, V3), False),
    (_frame(100, V3), False),                    # too short for a wrapped client key
    (b"\x00\x0e", True), (b"\x00\xff", True), (b"\x00\x0d", False), (b"\x01\x00", False),   # 2 bytes: length only
    (b"", True), (b"\x16", True),                # fewer: OpenVPN's function says yes (never asked so)
    (b"GET / HTTP/1.1\r\n", False), (b"\x16\x03\x01\x02\x00\x01", False), (b"SSH-2.0-OpenSSH_9.2\r\n", False),
])
def test_is_openvpn_protocol_as_openvpn(head, want):
    assert is_openvpn_protocol(head) is want


def test_decision_waits_for_two_bytes():
    assert decide(b"") is Verdict.UNDECIDED
    assert decide(b"\x00") is Verdict.UNDECIDED
    assert decide(b"\x00\x30") is Verdict.OPENVPN
    assert decide(b"\x16\x03") is Verdict.FOREIGN


def test_a_real_tls_client_hello_is_foreign():
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="vpn.example")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert decide(hello[:2]) is Verdict.FOREIGN and decide(hello) is Verdict.FOREIGN


def test_journal_names_are_addresses_only():
    assert journal_name(("127.0.0.1", 40312)) == "[AF_INET]127.0.0.1:40312"
    assert sockaddr_text(("2001:db8::1", 443, 0, 0)) == "[AF_INET6]2001:db8::1:443"
    assert sockaddr_text(("::ffff:198.18.0.2", 5000, 0, 0)) == "[AF_INET6]::ffff:198.18.0.2:5000"   # getnameinfo's
    for bad in (("../etc/x", 1), ("/tmp", 2), ("a/b", 3)):
        with pytest.raises(ValueError):
            journal_name(bad)


SERVER = ("mode server\ntls-server\nproto {proto}\ndev tun\nserver 198.19.0.0 255.255.255.0\n"
          "ca /dev/null\ncert /dev/null\nkey /dev/null\ndh none\n{extra}\n")


def _parse(text: str):
    return parse_config(text, "/etc/x.conf", read_file=lambda p: b"x")


def test_port_share_on_a_tcp_server_parses(tmp_path):
    o = _parse(SERVER.format(proto="tcp-server", extra=f"port-share 127.0.0.1 8443 {tmp_path}"))
    assert o.port_share == ("127.0.0.1", 8443, str(tmp_path))
    o = _parse(SERVER.format(proto="tcp", extra="port-share localhost 443"))   # tcp on a server: tcp-server
    assert o.port_share == ("localhost", 443, None)


@pytest.mark.parametrize("text,line,words", [
    (SERVER.format(proto="udp", extra="port-share 127.0.0.1 443"), 10, "TCP server mode"),
    ("client\nremote 198.18.0.1 443\nproto tcp\nca /dev/null\nport-share 127.0.0.1 443\n", 5, "TCP server mode"),
    (SERVER.format(proto="tcp-server", extra="port-share 127.0.0.1 0"), 10, ""),
    (SERVER.format(proto="tcp-server", extra="port-share 127.0.0.1 443 /nonexistent/dir"), 10, "not a directory"),
    (SERVER.format(proto="tcp-server", extra="port-share 127.0.0.1"), 10, ""),
])
def test_port_share_refused_at_its_line(text, line, words):
    with pytest.raises(ConfigError) as e:
        _parse(text)
    msg = str(e.value)
    assert f"/etc/x.conf:{line}: port-share" in msg and words in msg, msg


# ------------------------------------------------------------------ the appliance TOML's server
def test_toml_server_resolves_the_backend_before_the_kill_switch_and_lets_it_through():
    """In a TOML's server, the kill switch lets only the VPN transport out of the WAN and blocks
    DNS there: HOST is resolved before it, and the relay's connections to it may leave the WAN."""
    import socket

    from appliance.router.killswitch import render_killswitch
    from appliance.run_toml import port_share_endpoint
    o = _parse(SERVER.format(proto="tcp-server", extra="port-share web.example 8443"))
    asked = []

    def gai(host, port, fam, kind):
        asked.append(host)
        return [(socket.AF_INET6, kind, 6, "", ("2001:db8::5", port, 0, 0)),
                (socket.AF_INET, kind, 6, "", ("198.18.5.5", port))]
    e = port_share_endpoint(o, getaddrinfo=gai)
    assert asked == ["web.example"] and (e.address, e.port, e.proto) == ("198.18.5.5", 8443, "tcp")
    text = render_killswitch("eth0", "tun0", role="server", endpoints=[e], listen=(1194, "tcp"))
    assert 'oifname "eth0" ip daddr 198.18.5.5 tcp dport 8443 accept' in text, text

    def fails(*a):
        raise socket.gaierror(-2, "Name or service not known")
    with pytest.raises(RuntimeError, match="port-share: cannot resolve web.example"):
        port_share_endpoint(o, getaddrinfo=fails)
    assert port_share_endpoint(_parse(SERVER.format(proto="tcp-server", extra=""))) is None


def test_journal_files_never_follow_a_planted_symlink(tmp_path):
    """A local user who can write DIR plants symlinks under the names a journal file will take
    (and its temporary name): the victim file is never written (OpenVPN 2.6 opens the name with
    O_CREAT|O_TRUNC, following a symlink, as root)."""
    import os

    from appliance.gateway.portshare import JournalDir
    victim = tmp_path / "victim"
    victim.write_text("precious")
    jdir = tmp_path / "j"
    jdir.mkdir()
    name = journal_name(("127.0.0.1", 40312))
    os.symlink(victim, jdir / name)
    os.symlink(victim, jdir / f".{name}.tmp")
    j = JournalDir(str(jdir))
    j.write(name, "[AF_INET]198.18.0.2:5000")
    assert victim.read_text() == "precious"
    assert not (jdir / name).is_symlink() and (jdir / name).read_text() == "[AF_INET]198.18.0.2:5000"
    assert sorted(os.listdir(jdir)) == [name]
    j.remove(name)
    assert os.listdir(jdir) == [] and victim.read_text() == "precious"
    j.close()
