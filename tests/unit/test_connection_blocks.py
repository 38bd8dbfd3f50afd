"""<connection> blocks in a client profile, as OpenVPN 2.6 reads them (options.c, `connection`):
each block is one server to try, in order; it starts from the global settings as they stand at
its line and its own lines override them; it holds exactly one `remote`. Before, a profile with
them was refused at the first block. Against OpenVPN's client: tests/interop/test_connection_blocks_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.gateway import ClientGateway
from appliance.openvpn.config import ConfigError, Remote, parse_config
from lab.fakes import FakeClock, FakeTunnelNetwork, MemoryNet, MemoryPorts, MemoryWaiter

HEAD = "client\ndev tun\nca ca.crt\n"


def _parse(body: str):
    return parse_config(HEAD + body, "/mem/c.ovpn", read_file=lambda p: b"x")


def _error(body: str) -> str:
    with pytest.raises(ConfigError) as e:
        _parse(body)
    return str(e.value)


def test_each_block_is_a_remote_with_the_settings_at_its_line():
    o = _parse("proto tcp\nport 443\n"
               "<connection>\nremote a.example\n</connection>\n"
               "<connection>\nremote b.example 1194\nproto udp6\n</connection>\n"
               "<connection>\nremote c.example 8443 tcp4\nport 9\n</connection>\n"
               "<connection>\nrport 1195\nproto udp\nremote d.example\nnobind\nfloat\n</connection>\n")
    assert o.remotes == [Remote("a.example", 443, "tcp", None), Remote("b.example", 1194, "udp", "6"),
                         Remote("c.example", 8443, "tcp", "4"), Remote("d.example", 1195, "udp", "")]
    assert [o.family_of(r) for r in o.remotes] == [None, "6", "4", None]


def test_the_client_tries_them_in_order():
    o = _parse("<connection>\nremote 198.18.0.1 1194 udp\n</connection>\n<connection>\nremote 198.18.0.2 443 tcp\n"
               "</connection>\n")
    net = MemoryNet()
    gw = ClientGateway(o, MemoryPorts(net, "198.18.0.9"), FakeTunnelNetwork(net), FakeClock(), MemoryWaiter(net))
    assert [(r.host, r.port, r.proto) for r in gw.remotes] == [("198.18.0.1", 1194, "udp"), ("198.18.0.2", 443, "tcp")]


@pytest.mark.parametrize("body,where,words", [
    # OpenVPN 2.6 drops a remote line beside blocks without a word: refused here
    ("remote x.example\n<connection>\nremote a\n</connection>\n", "c.ovpn:4: remote:", "ignored by OpenVPN"),
    # and warns that connection options after a block are ignored: refused here
    ("<connection>\nremote a\n</connection>\nproto tcp\n", "c.ovpn:7: proto:", "after a <connection> block"),
    ("<connection>\nremote a\n</connection>\nmssfix 1300\n", "c.ovpn:7: mssfix:", "after a <connection> block"),
    ("<connection>\nremote a\n</connection>\nremote b\n", "c.ovpn:7: remote:", "after a <connection> block"),
    ("<connection>\nproto tcp\n</connection>\n", "c.ovpn:4: connection:", "exactly one `remote`"),
    ("<connection>\nremote a\nremote b\n</connection>\n", "c.ovpn:6: remote:", "exactly one"),
    # 2.6 replaces a block's mssfix by its default unless a global `mssfix N` exists (checked with Debian's)
    ("<connection>\nremote a\nmssfix 1300\n</connection>\n", "c.ovpn:6: mssfix:", "global `mssfix N`"),
    ("<connection>\nremote a\nmax-packet-size 1300\n</connection>\n", "c.ovpn:6: max-packet-size:",
     "global `mssfix N`"),
    ("mssfix 1450\n<connection>\nremote a\nmssfix\n</connection>\n", "c.ovpn:7: mssfix:", "give the block a value"),
    # 2.6 drops connect-retry-max inside a block (its `connect_retry_max = 0` at verb 4)
    ("<connection>\nremote a\nconnect-retry-max 3\n</connection>\n", "c.ovpn:6: connect-retry-max:", "drops it"),
    # and refuses what is no connection setting ("cannot be used in this context")
    ("<connection>\nremote a\nhttp-proxy-user-pass up.txt\n</connection>\n", "c.ovpn:6: http-proxy-user-pass:",
     "not allowed inside <connection>"),
    ("<connection>\nremote a\ncipher AES-256-GCM\n</connection>\n", "c.ovpn:6: cipher:", "not allowed inside"),
    ("<connection>\nremote a\nsocks-proxy 198.18.0.5 1080\n</connection>\n", "c.ovpn:6: socks-proxy:", "not supported"),
    # key-direction before the block's tls-auth: 2.6's tls-auth resets it (verb 4: "key_direction = not set")
    ("<connection>\nremote a\nkey-direction 1\ntls-auth k.key\n</connection>\n", "c.ovpn:6: key-direction:",
     "put key-direction after"),
    # key-direction without the block's own tls-auth: 2.6 takes the global key and direction
    ("tls-auth k.key 0\n<connection>\nremote a\nkey-direction 1\n</connection>\n", "c.ovpn:7: key-direction:",
     "without its own tls-auth"),
    ("<connection>\nremote a\ntls-auth k.key 1\ntls-crypt k.key\n</connection>\n", "c.ovpn:7: tls-crypt:",
     "cannot be combined with tls-auth"),
    ("<connection>\nremote a\ntls-crypt [inline]\n</connection>\n", "c.ovpn:6: tls-crypt:", "no <tls-crypt> block"),
    ("<connection>\nremote a 1194 tcp\nfragment 1300\n</connection>\n", "c.ovpn:6: fragment:", "proto udp"),
    ("tun-mtu 1400\n<connection>\nremote a\nlink-mtu 1400\n</connection>\n", "c.ovpn:7: link-mtu:", "only one"),
    ("nobind\n<connection>\nremote a\nlport 5000\n</connection>\n", "c.ovpn:7: lport:", "nobind"),
    ("<connection>\nremote a\ntun-mtu 99\n</connection>\n", "c.ovpn:6: tun-mtu:", "out of range"),
    ("<connection>\nremote a\nexplicit-exit-notify x\n</connection>\n", "c.ovpn:6: explicit-exit-notify:",
     "expected a number"),
    ("<connection>\nremote a 99999\n</connection>\n", "c.ovpn:5: remote:", "out of range"),
    ("<connection>\nremote a\nproto tcp-server\n</connection>\n", "c.ovpn:6: proto:", "client protocol"),
    ("<connection>\nremote a\nport x\n</connection>\n", "c.ovpn:6: port:", "expected a number"),
])
def test_what_openvpn_would_ignore_or_refuse_fails_at_its_line(body, where, words):
    msg = _error(body)
    assert where in msg and words in msg, msg


def test_a_server_config_refuses_a_block():
    conf = ("mode server\ntls-server\nserver 198.19.0.0 255.255.255.0\ndev tun\nca ca.crt\ncert s.crt\nkey s.key\n"
            "dh none\n<connection>\nremote a\n</connection>\n")
    with pytest.raises(ConfigError, match="c.conf:9: connection: a <connection> block is a client's"):
        parse_config(conf, "/mem/c.conf", read_file=lambda p: b"x")


# ---------------------------------------------------------------- each block's own settings
KEY_A = "-----BEGIN OpenVPN Static key V1-----\n" + "aa" * 256 + "\n-----END OpenVPN Static key V1-----\n"
KEY_B = KEY_A.replace("aa", "bb")
KEY_G = KEY_A.replace("aa", "99")
FILES = {"/mem/a.key": KEY_A.encode(), "/mem/b.key": KEY_B.encode(), "/mem/g.key": KEY_G.encode()}


def _entries(body: str):
    o = parse_config(HEAD + body, "/mem/c.ovpn", read_file=lambda p: FILES.get(p, b"x"))
    return o, [r.entry if r.entry is not None else o for r in o.remotes]


def test_keys_are_each_blocks_own_and_the_global_one_only_where_a_block_has_none():
    # Debian's 2.6.14 at verb 4: [0] tls_crypt_file [INLINE], tls_auth_file [UNDEF]; [1] tls_auth
    # [INLINE], key_direction 1; [2] tls_auth_file g.key, key_direction 0 (the global ones)
    o, (a, b, c) = _entries("tls-auth g.key\nkey-direction 0\n"
                            f"<connection>\nremote a\n<tls-crypt>\n{KEY_A}</tls-crypt>\n</connection>\n"
                            f"<connection>\nremote b\n<tls-auth>\n{KEY_B}</tls-auth>\nkey-direction 1\n</connection>\n"
                            "<connection>\nremote c\n</connection>\n")
    assert (a.tls_crypt, a.tls_auth, a.key_direction) == (KEY_A, None, None)
    assert (b.tls_crypt, b.tls_auth, b.key_direction) == (None, KEY_B, 1)
    assert (c.tls_crypt, c.tls_auth, c.key_direction) == (None, KEY_G, 0)
    assert (o.tls_auth, o.key_direction) == (KEY_G, 0)          # the profile's own stay


def test_a_blocks_tls_auth_without_a_direction_is_bidirectional_as_in_2_6():
    _, (a,) = _entries(f"key-direction 1\n<connection>\nremote a\n<tls-auth>\n{KEY_A}</tls-auth>\n</connection>\n")
    assert (a.tls_auth, a.key_direction) == (KEY_A, None)
    _, (b,) = _entries("<connection>\nremote a\ntls-auth a.key 0\n</connection>\n")
    assert (b.tls_auth, b.key_direction) == (KEY_A, 0)


def test_an_inline_name_reaches_only_its_own_blocks_key():
    # `tls-crypt [inline]` in the second block must not take the first block's <tls-crypt>
    msg = _error(f"<connection>\nremote a\n<tls-crypt>\n{KEY_A}</tls-crypt>\n</connection>\n"
                 "<connection>\nremote b\ntls-crypt [inline]\n</connection>\n")
    assert "no <tls-crypt> block follows" in msg, msg
    # nor may a global `[inline]` line take a block's
    msg = _error(f"tls-crypt [inline]\n<connection>\nremote a\n<tls-crypt>\n{KEY_A}</tls-crypt>\n</connection>\n")
    assert "c.ovpn:4: tls-crypt:" in msg and "no <tls-crypt> block follows" in msg, msg


def test_mtu_timing_and_exit_settings_per_block_over_the_globals_at_its_line():
    o, (a, b) = _entries("mssfix 1450\nconnect-retry 2 20\nexplicit-exit-notify 1\nserver-poll-timeout 30\n"
                         "<connection>\nremote a\ntun-mtu 1400\nmssfix 1300\nconnect-timeout 7\nconnect-retry 4\n"
                         "explicit-exit-notify 3\nfragment 1200 mtu\ntun-mtu-extra 32\nmax-packet-size 1000\n"
                         "</connection>\n<connection>\nremote b 443 tcp\n</connection>\n")
    assert (a.tun_mtu, a.mssfix, a.mssfix_mtu, a.tls_mtu) == (1400, 1000, True, 1000)
    assert (a.server_poll_timeout, a.connect_retry, a.connect_retry_max, a.explicit_exit_notify) == (7, 4, 20, 3)
    assert (a.fragment, a.fragment_mtu, a.tun_mtu_extra) == (1200, True, 32)
    assert (b.tun_mtu, b.mssfix, b.tls_mtu, b.server_poll_timeout, b.connect_retry, b.explicit_exit_notify,
            b.fragment) == (1500, 1450, 1250, 30, 2, 1, 0)
    assert (b.proto, b.port) == ("tcp", 443)
    assert (o.tun_mtu, o.mssfix, o.server_poll_timeout) == (1500, 1450, 30)


def test_a_blocks_bare_mssfix_without_a_global_one_is_the_default_either_way():
    _, (a,) = _entries("<connection>\nremote a\nmssfix\n</connection>\n")
    assert (a.mssfix, a.mssfix_mtu) == (None, True)


def test_local_lport_bind_per_block():
    _, (a, b) = _entries("<connection>\nremote a\nlocal 198.18.0.9\nlport 5000\n</connection>\n"
                         "<connection>\nremote b\nnobind\n</connection>\n")
    assert (a.local, a.lport, a.nobind) == ("198.18.0.9", 5000, False)
    assert (b.local, b.lport, b.nobind) == (None, None, True)


def test_link_mtu_gives_each_connection_its_protocols_tun_mtu():
    # 2.6 derives it per connection entry: over TCP 2 bytes less (the packet length)
    o, (u, t) = _entries("cipher AES-256-CBC\nauth SHA256\nlink-mtu 1400\nremote u 1194 udp\nremote t 443 tcp\n")
    assert u.tun_mtu - t.tun_mtu == 2 and o.tun_mtu == u.tun_mtu
    _, (bu, bt) = _entries("cipher AES-256-CBC\nauth SHA256\n<connection>\nremote u\nlink-mtu 1400\n</connection>\n"
                           "<connection>\nremote t 443 tcp\nlink-mtu 1400\n</connection>\n")
    assert (bu.tun_mtu, bt.tun_mtu) == (u.tun_mtu, t.tun_mtu)


def test_a_bad_key_in_a_block_stops_the_start_at_its_line():
    from appliance.openvpn.settings import check_entries
    o = parse_config(HEAD + "<connection>\nremote a\n</connection>\n<connection>\nremote b\n"
                     "<tls-crypt>\nnot a key\n</tls-crypt>\n</connection>\n", "/mem/c.ovpn", read_file=lambda p: b"x")
    with pytest.raises(ConfigError) as e:
        check_entries(o, False)
    assert "c.ovpn:9: tls-crypt:" in str(e.value), str(e.value)


def test_global_key_lines_after_the_blocks_reach_the_blocks_without_their_own():
    # 2.6 says "ignored by previous <connection> blocks" and uses them all the same (verb 4:
    # [0] tls_crypt_file [INLINE] from the global line after it, [1] its own tls-auth)
    o, (a, b) = _entries(f"<connection>\nremote a\n</connection>\n<connection>\nremote b\n<tls-auth>\n{KEY_B}"
                         f"</tls-auth>\n</connection>\nkey-direction 1\n<tls-crypt>\n{KEY_G}</tls-crypt>\n")
    assert (a.tls_crypt, a.tls_auth, a.key_direction) == (KEY_G, None, 1)
    assert (b.tls_crypt, b.tls_auth, b.key_direction) == (None, KEY_B, None)
    assert any("ignored by previous <connection> blocks" in n for n in o.notes)
