"""Two OpenVPN 2.6 directives that act on the running tunnel (config/d_seldom.py): `max-packet-size`
bounds every control-channel packet each side sends (the handshake's certificates split finer),
and `ifconfig-push-constraint` logs a client whose address lies outside it -- and admits it, as
OpenVPN 2.6 does (multi.c)."""
from __future__ import annotations

import logging

from appliance.openvpn.opcodes import CONTROL_OPS, OPCODE_SHIFT
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_inner_address_ownership import _ccd
from tests.gateway.test_tunnel import _up, ping_both_ways


def _control_sizes(w: World) -> dict[str, list[int]]:
    """The size of every control packet on the wire, by sender (server / client)."""
    real, seen = w.net.deliver, {"server": [], "client": []}

    def deliver(data, src, dst):
        if data and (data[0] >> OPCODE_SHIFT) in CONTROL_OPS:
            seen["server" if src[0] == SERVER_IP else "client"].append(len(data))
        real(data, src, dst)
    w.net.deliver = deliver
    return seen


def test_max_packet_size_bounds_each_sides_control_packets(pki):
    w = World()
    sizes = _control_sizes(w)
    w.add_server(server_conf(pki, extra="max-packet-size 300\n"))
    w.add_client(client_conf(pki, extra="max-packet-size 200\n"))
    assert w.run(lambda: _up(w, 0), max_time=60)
    ping_both_ways(w)
    assert sizes["client"] and max(sizes["client"]) <= 200, sizes["client"]
    assert sizes["server"] and max(sizes["server"]) <= 300, sizes["server"]
    # The certificates went out in more packets than the default 1250 needs.
    assert len(sizes["server"]) > 8


def test_ifconfig_push_constraint_logs_an_address_outside_and_admits_the_client(pki, tmp_path, caplog):
    w = World()
    # net30: `server` sets no constraint of its own there (on tap and topology subnet it replaces this one)
    w.add_server(server_conf(pki, extra="ifconfig-push-constraint 198.19.0.0 255.255.255.128\n")
                 .replace("topology subnet\n", "topology net30\n"))
    _ccd(w, tmp_path, {"client0": "ifconfig-push 198.19.0.200 198.19.0.201\n"})
    with caplog.at_level(logging.INFO):
        w.add_client(client_conf(pki, "client0"))
        w.add_client(client_conf(pki, "client1"))
        assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=60)
    assert w.client_addr(0) == "198.19.0.200"
    said = [r.getMessage() for r in caplog.records if "violates tunnel network/netmask constraint" in r.getMessage()]
    assert len(said) == 1 and "client0 (198.19.0.200)" in said[0] and "198.19.0.0/255.255.255.128" in said[0], said


# ------------------------------------------------------------------ management-query-remote
# Debian's OpenVPN 2.6.14 client with `management-query-remote` and remotes 198.18.0.1 1194 (udp)
# and 198.18.0.9 1195 tcp, asked by hand: its >REMOTE lines and replies.
OPENVPN_2_6_REMOTE = {
    "remote": ["ERROR: the 'remote' command requires at least 1 parameter"],
    "remote FOO": ["ERROR: remote command failed"],
    "remote MOD": ["ERROR: remote command failed"],
    "remote MOD host": ["ERROR: remote command failed"],
}


def _asking(pki, tmp_path, remotes, extra: str = "", proto: str = "udp", query: str = "management-query-remote"):
    from tests.gateway.test_client_mgmt import Tap
    w = World()
    w.add_server(server_conf(pki, proto=proto))
    c = w.add_client(client_conf(pki, remotes=remotes, proto=proto,
                                 extra=f"management {tmp_path}/c.sock unix\n{query}\n{extra}"))
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    return w, c, tap


def _ask(c, tap, line: str) -> list[str]:
    from appliance.gateway.management import command_words
    return c.mgmt.mgr.answer(tap, command_words(line))


def test_management_query_remote_asks_before_each_remote_as_openvpn(pki, tmp_path):
    w, c, tap = _asking(pki, tmp_path, [("198.18.0.9", 1195), (SERVER_IP, 1194)])
    assert c.mgmt.mgr.welcome()[1:] == [">REMOTE:198.18.0.9,1195,udp"]      # told at once to a new client
    for cmd, want in OPENVPN_2_6_REMOTE.items():
        assert _ask(c, tap, cmd) == want, cmd
    w.run_for(5)
    assert c.conn is None and not w.server.d.clients, "connected before the answer"
    # SKIP moves to the next remote and asks again; MOD sends this attempt elsewhere.
    assert _ask(c, tap, "remote SKIP") == ["SUCCESS: remote command succeeded"]
    w.run_for(0.1)
    assert tap.got[-1] == f">REMOTE:{SERVER_IP},1194,udp"
    assert _ask(c, tap, "remote MOD h x") == ["ERROR: remote command failed"]    # stricter: a port number
    assert _ask(c, tap, f"remote MOD {SERVER_IP} 1194") == ["SUCCESS: remote command succeeded"]
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    assert _ask(c, tap, "remote ACCEPT") == ["ERROR: remote command failed"]      # nothing asked now
    assert c.mgmt.mgr.welcome()[1:] == []


def test_skipping_every_remote_twice_round_ends_the_run(pki, tmp_path):
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194), ("198.18.0.9", 1195)])
    for _ in range(3):
        assert _ask(c, tap, "remote SKIP") == ["SUCCESS: remote command succeeded"]
        w.run_for(0.1)
        assert c.result is None
    assert _ask(c, tap, "remote SKIP") == ["SUCCESS: remote command succeeded"]
    w.run_for(0.1)
    assert c.result == 1 and c.conn is None and not w.server.d.clients


def test_management_query_remote_needs_management_and_a_client(pki):
    from tests.unit.test_options_compat import BASE, _one_error
    e = _one_error(BASE + "management-query-remote\n")
    assert e.line == 6 and "needs `management`" in str(e)


# ------------------------------------------------------------------ management-query-proxy
# Debian's OpenVPN 2.6.14 client with `management-query-proxy` and remotes 198.18.0.1 1194 tcp and
# 198.18.0.9 1195 udp, asked by hand: >PROXY:1,TCP,198.18.0.1 at first; `proxy HTTP` (no host)
# failed and went on as the profile says, asking >PROXY:2,UDP,198.18.0.9 next; there
# `proxy HTTP 198.18.0.5 x` failed with the question still open; `proxy NONE` succeeded.
def test_management_query_proxy_asks_before_each_remote_as_openvpn(pki, tmp_path, caplog):
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194), ("198.18.0.9", 1195)], proto="tcp",
                        query="management-query-proxy")
    assert c.mgmt.mgr.welcome()[1:] == [f">PROXY:1,TCP,{SERVER_IP}"]
    assert _ask(c, tap, "proxy") == ["ERROR: the 'proxy' command requires at least 1 parameter"]
    w.run_for(2)
    assert c.conn is None, "connected before the answer"
    # HTTP: this attempt goes to the proxy (nobody answers there: the next remote is asked).
    with caplog.at_level(logging.INFO):
        assert _ask(c, tap, "proxy HTTP 198.18.0.5 8080") == ["SUCCESS: proxy command succeeded"]
        w.run_for(0.1)
    assert f"connecting to {SERVER_IP}:1194 through HTTP proxy 198.18.0.5:8080" in caplog.text
    # SOCKS likewise (socks-proxy's SOCKS5 client).
    assert w.run(lambda: tap.got and tap.got[-1] == ">PROXY:2,TCP,198.18.0.9", max_time=30), tap.got[-3:]
    with caplog.at_level(logging.INFO):
        assert _ask(c, tap, "proxy SOCKS 198.18.0.6 1080") == ["SUCCESS: proxy command succeeded"]
        w.run_for(0.1)
    assert "connecting to 198.18.0.9:1195 through SOCKS proxy 198.18.0.6:1080" in caplog.text
    assert w.run(lambda: tap.got and tap.got[-1] == f">PROXY:1,TCP,{SERVER_IP}", max_time=30), tap.got[-3:]
    assert _ask(c, tap, "proxy HTTP") == ["ERROR: proxy command failed"]     # as 2.6: the profile's way then
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    assert c.conn.remote.proxy is None
    assert _ask(c, tap, "proxy NONE") == ["SUCCESS: proxy command succeeded"]    # not asked: as 2.6, no effect


def test_an_http_proxy_for_a_udp_remote_fails_and_the_question_stays(pki, tmp_path):
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194)], query="management-query-proxy")
    assert c.mgmt.mgr.welcome()[1:] == [f">PROXY:1,UDP,{SERVER_IP}"]
    assert _ask(c, tap, "proxy HTTP 198.18.0.5 8080") == ["ERROR: proxy command failed"]
    assert _ask(c, tap, "proxy SOCKS 198.18.0.5 1080") == ["ERROR: proxy command failed"]
    assert c.mgmt.mgr.welcome()[1:] == [f">PROXY:1,UDP,{SERVER_IP}"]
    assert _ask(c, tap, "proxy NONE") == ["SUCCESS: proxy command succeeded"]
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)


def test_random_remote_and_proxy_answers_never_raise(pki, tmp_path):
    """1,000 seeded random `remote` / `proxy` lines while each question is open: every one answered
    SUCCESS or ERROR, the client never stopped by one (a tool cannot crash the tunnel)."""
    import random
    rng = random.Random(29)
    words = ["ACCEPT", "SKIP", "MOD", "NONE", "HTTP", "SOCKS", "nct", "x", "-1", "0", "3", "8080",
             "99999999999999999999", "h" * 100, "198.18.0.1", "é", "1194"]
    for n, query in enumerate(("management-query-remote", "management-query-proxy")):
        (tmp_path / str(n)).mkdir()
        w, c, tap = _asking(pki, tmp_path / str(n), [(SERVER_IP, 1194), ("198.18.0.9", 1195)], proto="tcp",
                            query=query)
        for _ in range(500):
            line = " ".join([query.rsplit("-", 1)[1]] + [rng.choice(words) for _ in range(rng.randint(0, 4))])
            reply = _ask(c, tap, line)
            assert len(reply) == 1 and reply[0].startswith(("SUCCESS:", "ERROR:")), (line, reply)
            w.run_for(rng.choice((0, 0.1, 1)))
            if c.result is not None:          # every remote skipped twice round: a clean end
                assert c.result == 1 and query.endswith("remote")
                break


def test_sigterm_while_a_remote_is_asked_ends_the_run(pki, tmp_path):
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194)])
    c.request_stop()
    assert w.run(lambda: c.result is not None, max_time=10) and c.conn is None
    _ask(c, tap, "remote ACCEPT")                   # a late answer starts nothing
    w.run_for(2)
    assert c.conn is None and not w.server.d.clients


def test_the_smallest_max_packet_size_with_the_largest_tls_auth_still_connects(pki):
    """max-packet-size 154 (OpenVPN's floor) beside tls-auth with SHA512 (the widest control
    packet header here, 44 bytes of TLS left a packet): the handshake goes in many small pieces
    and the tunnel comes up."""
    from tests.gateway.conftest import STATIC_KEY
    w = World()
    sizes = _control_sizes(w)
    ta = f"auth SHA512\n<tls-auth>\n{STATIC_KEY}\n</tls-auth>\n"
    w.add_server(server_conf(pki, protection="none", extra="max-packet-size 154\nkey-direction 0\n" + ta))
    w.add_client(client_conf(pki, protection="none", extra="max-packet-size 154\nkey-direction 1\n" + ta))
    assert w.run(lambda: _up(w, 0), max_time=60)
    ping_both_ways(w)
    assert len(sizes["client"]) > 30 and len(sizes["server"]) > 30


def test_the_smallest_max_packet_size_with_a_tls_crypt_v2_client_key_still_connects(pki):
    """max-packet-size 154 on a tls-crypt-v2 client, whose first control packet also carries its
    wrapped key (hundreds of bytes, over 154 alone): the room for TLS bytes came out below zero,
    a loop over the data that stepped by a negative number sent none of it; with a 16-byte floor
    that packet is as large as the key needs, as OpenVPN's, and the tunnel comes up."""
    from appliance.openvpn import keyfiles
    server_pem = keyfiles.generate_tls_crypt_v2_server_key()
    client_pem = keyfiles.generate_tls_crypt_v2_client_key(keyfiles.parse_tls_crypt_v2_server_key(server_pem))
    w = World()
    w.add_server(server_conf(pki, protection="none", extra=f"<tls-crypt-v2>\n{server_pem}</tls-crypt-v2>\n"))
    w.add_client(client_conf(pki, protection="none",
                             extra=f"max-packet-size 154\n<tls-crypt-v2>\n{client_pem}</tls-crypt-v2>\n"))
    assert w.run(lambda: _up(w, 0), max_time=60)
    ping_both_ways(w)


def test_a_remote_mod_name_socks_cannot_carry_fails_that_attempt_only(pki, tmp_path, caplog):
    """`remote MOD` takes up to 79 characters, 316 bytes in UTF-8: over SOCKS5's 255 the attempt
    fails, counted and logged, and the next remote is asked (it stalled, an internal error,
    until server-poll-timeout)."""
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194)], proto="tcp", extra=f"socks-proxy {SERVER_IP} 1194\n")
    assert _ask(c, tap, "remote MOD " + "\U0001d538" * 79 + " 1194") == ["SUCCESS: remote command succeeded"]
    with caplog.at_level(logging.WARNING):
        assert w.run(lambda: f">REMOTE:{SERVER_IP},1194,tcp-client" in tap.got, max_time=10), tap.got  # asked again
    assert c.counters.proxy_failures == 1 and "1-255 bytes" in caplog.text
    assert "internal" not in caplog.text


def test_skip_counts_go_round_the_list_as_openvpn(pki, tmp_path):
    """OpenVPN 2.6 (init.c next_connection_entry): SKIP N moves N on modulo the list's length
    (N < 1 moves one), and only going past the end twice ends the run -- a large N is one pass."""
    w, c, tap = _asking(pki, tmp_path, [(SERVER_IP, 1194), ("198.18.0.9", 1195)])
    assert _ask(c, tap, "remote SKIP 0") == ["SUCCESS: remote command succeeded"]     # one on
    w.run_for(0.1)
    assert tap.got[-1] == ">REMOTE:198.18.0.9,1195,udp" and c.result is None
    assert _ask(c, tap, "remote SKIP 7") == ["SUCCESS: remote command succeeded"]     # past the end: 1
    w.run_for(0.1)
    assert tap.got[-1] == f">REMOTE:{SERVER_IP},1194,udp" and c.result is None
    assert _ask(c, tap, "remote SKIP 2147483647") == ["SUCCESS: remote command succeeded"]  # 2: ends
    w.run_for(0.1)
    assert c.result == 1 and c.conn is None and not w.server.d.clients
    # Debian's 2.6.14 client, asked the same three by hand: the same >REMOTE lines, then this.
    assert tap.got[-1] == ">FATAL:No usable connection profiles are present"


def test_server_sets_the_constraint_itself_on_tap_and_topology_subnet(pki, tmp_path, caplog):
    """`server NET MASK` with dev tap (or topology subnet) is its own ifconfig-push-constraint, as
    2.6's helper.c sets it: a ccd address outside the server's network is logged and admitted; an
    explicit line is replaced by it (a note); net30 sets none."""
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.settings import _constraint
    ccd = {"client0": "ifconfig-push 198.19.5.200 255.255.255.0\n"}
    w = World()
    w.add_server(server_conf(pki).replace("dev tun\n", "dev tap\n").replace("topology subnet\n", ""))
    _ccd(w, tmp_path, ccd)
    with caplog.at_level(logging.INFO):
        w.add_client(client_conf(pki, "client0"))
        assert w.run(lambda: _up(w, 0), max_time=60)
    said = [r.getMessage() for r in caplog.records if "violates tunnel network/netmask constraint" in r.getMessage()]
    assert len(said) == 1 and "client0 (198.19.5.200)" in said[0] and "198.19.0.0/255.255.255.0" in said[0], said
    conf = "ca c\ncert c\nkey k\ndh none\nserver 198.19.0.0 255.255.255.0\nifconfig-push-constraint 10.0.0.0 255.0.0.0\n"
    for extra, want in (("dev tap\n", (0xC6130000, 0xFFFFFF00)), ("dev tun\ntopology subnet\n", (0xC6130000, 0xFFFFFF00)),
                        ("dev tun\ntopology net30\n", (0x0A000000, 0xFF000000))):
        o = parse_config(conf + extra, "/s.conf", read_file=lambda p: b"x")
        assert _constraint(o) == want, extra
        assert any("ifconfig-push-constraint: replaced by the server's network" in n for n in o.notes) == \
            ("net30" not in extra)
