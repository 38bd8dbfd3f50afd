"""Start-up checks OpenVPN 2.6.14 makes that ours let through (cfg38; README "Thirty-sixth session
(helper cfg38)"), each run against Debian's /usr/sbin/openvpn first: `dh` on a TLS server (required,
`none` or DH parameters of 2048 bits or more), a UDP port another socket holds, `dev` names over 15
characters (cut, as there, now said), and the no-op directives whose arguments 2.6 checks."""
from __future__ import annotations

import os
import socket

import pytest

from appliance.ioerrors import dev_name_cut
from appliance.openvpn.config import ConfigError, load_config, parse_config
from appliance.openvpn.dhparams import modulus_bits
from appliance.transport.udp import UdpTransport

# RFC 7919's ffdhe2048 (`openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048`): 2.6 takes it.
FFDHE2048 = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
# `openssl dhparam 1024`: 2.6 fails at start on it ("dh key too small", OpenSSL 3's level 2).
DH1024 = """-----BEGIN DH PARAMETERS-----
MIGHAoGBAPVqmTVhMma3OA7P8mDogWJzZ4lLrqXO3HfVLa2Tz9/DyuGocdQZ7Jrh
y4eQq7pKp5cwGOmrMaa80owykgwC0cBPMeI7NOjB6tZMr/CzR/ZXU2+hiKiwDzuS
PbY7ckFe0UlCfWQjAGC6LZH5Fqby9RrBl8FrMP/TEDwr1n0pjmwXAgEC
-----END DH PARAMETERS-----
"""
EC_PARAMS = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
PEM = "<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\n"                   # 9 lines
SERVER = "dev tun\ntopology subnet\nserver 198.18.9.0 255.255.255.0\n" + PEM       # 12 lines
CLIENT = "client\ndev tun\nremote 198.18.0.1 1194\n" + PEM                       # 12 lines
P2P_SERVER = "dev tun\ntls-server\nifconfig 198.18.9.1 198.18.9.2\n" + PEM       # 12 lines


def _files(files: dict[str, bytes]):
    def read(path: str) -> bytes:
        name = os.path.basename(path)
        if name not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[name]
    return read


FILES = {"ff.pem": FFDHE2048.encode(), "dh1024.pem": DH1024.encode(), "ec.pem": EC_PARAMS.encode(),
         "server.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "empty.pem": b""}


def _parse(text: str, path: str = "/p/s.conf"):
    return parse_config(text, path, _files(FILES))


def _err(text: str, path: str = "/p/s.conf") -> str:
    with pytest.raises(ConfigError) as e:
        _parse(text, path)
    return str(e.value)


# ---- (1) dh

@pytest.mark.parametrize("base", [SERVER, P2P_SERVER], ids=["server", "p2p tls-server"])
def test_a_tls_server_without_dh_is_refused_in_2_6s_words(base):
    e = _err(base)
    assert e.startswith("/p/s.conf: dh: a TLS server needs `dh none` or `dh FILE`"), e
    assert "You must define DH file (--dh)" in e


@pytest.mark.parametrize("line", ["dh none", "dh ff.pem", "<dh>\n" + FFDHE2048 + "</dh>", "dh [inline]\n<dh>\n"
                                  + FFDHE2048 + "</dh>"], ids=["none", "file", "inline", "inline named first"])
def test_a_tls_server_starts_with_dh_none_or_2048_bit_parameters(line):
    o = _parse(SERVER + line + "\n")
    assert o.role == "server"
    assert any(": dh: accepted, has no effect here: DH parameters are not used: key exchange is ECDHE only" in n
               for n in o.notes)


# (line, words): each fails 2.6.14's start (Debian's openvpn, run with the same file)
REFUSED = [
    ("dh missing.pem", "dh: cannot read missing.pem: No such file or directory"),
    ("dh server.crt", "dh: server.crt holds no DH parameters"),
    ("dh empty.pem", "dh: empty.pem holds no DH parameters"),
    ("dh dh1024.pem", "dh: dh1024.pem holds DH parameters of 1024 bits: OpenVPN 2.6 with OpenSSL 3 fails at "
                      "start on fewer than 2048 (\"dh key too small\")"),
    ("<dh>\nhello\n</dh>", "dh: the <dh> block holds no DH parameters"),
    ("<dh>\n" + DH1024 + "</dh>", "dh: the <dh> block holds DH parameters of 1024 bits"),
    ("<dh>\n-----BEGIN DH PARAMETERS-----\n!!!!\n-----END DH PARAMETERS-----\n</dh>", "does not parse"),
]


@pytest.mark.parametrize("line,words", REFUSED, ids=[r[0].split("\n")[0] + str(i) for i, r in enumerate(REFUSED)])
def test_a_tls_server_with_a_dh_2_6_cannot_load_is_refused_at_its_line(line, words):
    e = _err(SERVER + line + "\n")
    assert e.startswith("/p/s.conf:13: dh: "), e
    assert words in e and "\n" not in e


def test_ec_parameters_2_6_takes_are_taken_and_weak_ones_refused_as_there():
    """OpenSSL 3 reads the first PARAMETERS block of any kind there, and 2.6 starts with an EC group
    as its 'DH' when it gives 112 bits of security (Debian's 2.6.14: prime256v1 starts, prime192v1
    "dh key too small"); the same here (compat41: refused before, stricter)."""
    _parse(SERVER + "dh ec.pem\n")
    weak = {"ec192.pem": b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBAQ==\n-----END EC PARAMETERS-----\n"}
    with pytest.raises(ConfigError) as e:
        parse_config(SERVER + "dh ec192.pem\n", "/p/s.conf", _files({**FILES, **weak}))
    assert "/p/s.conf:13: dh: ec192.pem holds EC parameters (192 bits)" in str(e.value) and "dh key too small" in str(e.value)


@pytest.mark.parametrize("base", [CLIENT, "dev tun\ntls-client\nremote 198.18.0.1\nifconfig 198.18.9.2 198.18.9.1\n"
                                  + PEM], ids=["client", "p2p tls-client"])
def test_a_client_never_reads_its_dh_file_as_2_6_drops_the_line(base):
    o = _parse(base + "dh missing.pem\n", "/p/c.ovpn")
    assert o.role == "client"


def test_the_last_dh_line_counts():
    _parse(SERVER + "dh missing.pem\ndh none\n")
    assert "dh1024.pem holds DH parameters of 1024 bits" in _err(SERVER + "dh none\ndh dh1024.pem\n")


def test_modulus_bits_reads_hostile_blocks_with_a_reason_never_more():
    assert modulus_bits(FFDHE2048.encode()) == 2048
    x942 = b"-----BEGIN X9.42 DH PARAMETERS-----\nMAsCAwEAAQIBAgIBAw==\n-----END X9.42 DH PARAMETERS-----\n"
    assert modulus_bits(x942) == 17                  # SEQUENCE { p=65537, g=2, q=3 }: the prime's size
    # The same with the SEQUENCE's length one short (q runs past it): OpenSSL refuses it, so
    # does 2.6 at start, and so do we since fuzz40 (the prime alone was read before).
    with pytest.raises(ValueError, match="does not parse"):
        modulus_bits(x942.replace(b"MAsC", b"MAoC"))
    for der in (b"MIIB", b"MIQAAAAA", b"MA==", b"AgEB", b"MIH/////", b"MAMCAA=="):
        with pytest.raises(ValueError, match="does not parse"):
            modulus_bits(b"-----BEGIN DH PARAMETERS-----\n" + der + b"\n-----END DH PARAMETERS-----\n")
    # Many BEGIN lines and no END (a regex's lazy match would rescan the rest from each one).
    with pytest.raises(ValueError, match="no END line"):
        modulus_bits(b"-----BEGIN DH PARAMETERS-----\n" * 100_000)


# ---- (2) a UDP port held by another socket

def test_a_udp_server_socket_does_not_share_its_port():
    """No SO_REUSEADDR on UDP (2.6 sets it on TCP only): two sockets that both set it share a port
    on Linux, so a second server on the same port started and split the clients' datagrams."""
    first = UdpTransport(("127.0.0.1", 0), None, gro=False)
    try:
        assert first.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        port = first.sock.getsockname()[1]
        with pytest.raises(OSError) as e:
            UdpTransport(("127.0.0.1", port), None, gro=False)
        assert "Address already in use" in str(e.value)
    finally:
        first.close()


# ---- (3) dev names over 15 characters

def test_a_long_dev_name_is_cut_as_2_6_and_the_note_and_warning_name_the_device():
    o = _parse(CLIENT.replace("dev tun", "dev tun-abcdefghijklmnop"), "/p/c.ovpn")
    assert o.dev == "tun-abcdefghijklmnop"          # as written: the kernel cuts it, as 2.6's
    assert any(n.startswith("/p/c.ovpn:2: dev: 'tun-abcdefghijklmnop' is longer than the 15 characters")
               and "the device will be 'tun-abcdefghijk'" in n for n in o.notes), o.notes
    assert dev_name_cut(o, "tun-abcdefghijklmnop", "tun-abcdefghijk") == (
        "/p/c.ovpn:2: dev: 'tun-abcdefghijklmnop' is longer than the 15 characters a device name may have: "
        "the kernel cut it, the device is tun-abcdefghijk (as with OpenVPN 2.6)")
    assert dev_name_cut(o, "tun-abcdefghijk", "tun-abcdefghijk") is None
    assert dev_name_cut(o, "tun%d", "tun0") is None


# ---- (4) no-op directives whose arguments 2.6 checks

@pytest.mark.parametrize("line,words", [
    ("register-dns", "OpenVPN 2.6 on Linux refuses it (an unrecognized option): Windows only"),
    ("ncp-disable", "OpenVPN 2.6 on Linux refuses it (an unrecognized option): removed in 2.6"),
    ("hash-size 4", "expects 2 argument(s), got 1"),
    ("hash-size 0 256", "0 out of range 1.."),
    ("hash-size 512 512", "--hash-size requires --mode server"),
    ("bcast-buffers 0", "0 out of range 1.."),
    ("dev-node /nonexistent/tun", "cannot use /nonexistent/tun: No such file or directory"),
    ("dev-node /dev/null", "/dev/null is not the TUN clone device"),
])
def test_what_2_6_refuses_at_start_is_refused_at_the_line(line, words):
    e = _err(CLIENT + line + "\n", "/p/c.ovpn")
    assert e.startswith(f"/p/c.ovpn:13: {line.split()[0]}: "), e
    assert words in e


@pytest.mark.parametrize("line", ["setenv opt register-dns", "ignore-unknown-option ncp-disable\nncp-disable",
                                  "hash-size 256 256", "bcast-buffers 4", "route-method exe",
                                  "route-method route"])
def test_what_2_6_takes_is_still_taken(line):
    _parse(CLIENT + line + "\n", "/p/c.ovpn")


def test_a_server_takes_its_hash_size():
    _parse(SERVER + "dh none\nhash-size 1024 1024\n")


@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun here")
def test_dev_node_naming_the_tun_clone_device_is_taken():
    _parse(CLIENT + "dev-node /dev/net/tun\n", "/p/c.ovpn")


def test_a_real_server_file_with_dh_none_loads(tmp_path):
    (tmp_path / "s.conf").write_text(SERVER + "dh none\n")
    assert load_config(str(tmp_path / "s.conf")).role == "server"
