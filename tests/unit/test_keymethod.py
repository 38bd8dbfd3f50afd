"""Key-method-2 messages, PUSH_REPLY parsing and building, and the PRF."""
import hashlib
import hmac

import pytest
from hypothesis import given, strategies as st

from appliance.openvpn.errors import BadPacket
from appliance.openvpn.keymethod import (KeyMethod2, PushRejected, build_push_reply, decode_key_method_2_untrusted,
                                         encode_key_method_2, parse_push_reply_untrusted)
from appliance.openvpn.keys import prf_key_block, split_key_block, tls1_prf


def test_km2_round_trip_client():
    m = KeyMethod2(b"a" * 32, b"b" * 32, "V4,dev-type tun", pre_master=b"p" * 48, username="u",
                   password="pw", peer_info="IV_VER=2.6.0\nIV_PROTO=142\n")
    d = decode_key_method_2_untrusted(encode_key_method_2(m, True), from_client=True)
    assert (d.pre_master, d.random1, d.random2, d.options, d.username, d.password) == \
        (m.pre_master, m.random1, m.random2, m.options, "u", "pw")
    assert d.peer_info_dict()["IV_PROTO"] == "142"


def test_km2_server_message_may_stop_after_options():
    # OpenVPN servers write empty strings as a zero length (no NUL); older ones stop after options.
    base = b"\0\0\0\0\x02" + b"r" * 64 + b"\x00\x03ab\x00"
    for tail in (b"", b"\0\0\0\0", b"\0\0\0\0\0\0"):
        d = decode_key_method_2_untrusted(base + tail, from_client=False)
        assert d.options == "ab" and d.username == "" and d.peer_info == ""


@given(st.binary(max_size=300), st.booleans())
def test_km2_hostile(data, from_client):
    try:
        decode_key_method_2_untrusted(data, from_client)
    except BadPacket:
        pass


def test_push_reply_parsing():
    p = parse_push_reply_untrusted(
        "PUSH_REPLY,route-gateway 198.19.0.1,topology subnet,ping 10,ping-restart 60,"
        "ifconfig 198.19.0.2 255.255.255.0,peer-id 3,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm,"
        "route 198.18.100.0 255.255.255.0,redirect-gateway def1,dhcp-option DNS 198.18.0.53,tun-mtu 1500,"
        "something-new 1")
    assert p.ifconfig == ("198.19.0.2", "255.255.255.0") and p.topology == "subnet"
    assert p.peer_id == 3 and p.cipher == "AES-256-GCM" and p.tls_ekm and p.cc_exit
    assert p.routes == [("198.18.100.0", "255.255.255.0", None, None)]
    assert p.redirect_gateway == ["def1"] and p.dns == ["198.18.0.53"]
    assert p.ignored == ["something-new 1"] and p.complete


def test_push_continuation_and_builder():
    opts = [f"route 198.18.{i}.0 255.255.255.0" for i in range(120)]
    msgs = build_push_reply(opts)
    assert len(msgs) > 1 and all(len(m) < 1024 for m in msgs)
    p = None
    for i, m in enumerate(msgs):
        p = parse_push_reply_untrusted(m, p)
        assert p.complete == (i == len(msgs) - 1)
    assert len(p.routes) == 120


def test_a_bad_push_value_is_read_as_26_reads_it_and_noted():
    p = parse_push_reply_untrusted("PUSH_REPLY,ping x,ping-restart 60")
    assert (p.ping, p.ping_restart) == (0, 60)              # 2.6's positive_atoi: `x` is 0
    assert p.malformed == ["[PUSH-OPTIONS]:1: ping x: read as 0 (as OpenVPN 2.6 reads it)"]


def _p_hash(h, secret, seed, n):
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, h).digest()
        out += hmac.new(secret, a + seed, h).digest()
    return out[:n]


def test_tls1_prf_matches_rfc2246_definition():
    secret, label, seed = b"s" * 48, b"label", b"seed" * 16
    want = bytes(x ^ y for x, y in zip(_p_hash(hashlib.md5, secret[:24], label + seed, 100),
                                       _p_hash(hashlib.sha1, secret[24:], label + seed, 100)))
    assert tls1_prf(secret, label, seed, 100) == want


def test_key_block_directions():
    block = prf_key_block(b"p" * 48, b"a" * 32, b"b" * 32, b"c" * 32, b"d" * 32, b"C" * 8, b"S" * 8)
    assert len(block) == 256
    c = split_key_block(block, True)
    s = split_key_block(block, False)
    assert c[0] == s[2] and c[1] == s[3] and c[2] == s[0] and c[3] == s[1]


PUSHED = ("PUSH_REPLY,route-gateway 198.19.0.1,topology subnet,route 198.18.100.0 255.255.255.0,"
          "route 198.18.101.0 255.255.255.0,redirect-gateway def1,dhcp-option DNS 198.18.0.53,"
          "ifconfig 198.19.0.2 255.255.255.0")


def test_pull_filter_first_match_decides_like_openvpn():
    filters = [("accept", "route 198.18.100."), ("ignore", "route "), ("ignore", "redirect-gateway"),
               ("ignore", "dhcp-option")]
    p = parse_push_reply_untrusted(PUSHED, None, filters)
    # `route-gateway` starts with "route" but not with "route ", so it stays; the accept comes first
    assert p.route_gateway == "198.19.0.1"
    assert p.routes == [("198.18.100.0", "255.255.255.0", None, None)]
    assert p.redirect_gateway is None and p.dns == [] and p.dhcp_options == []
    assert p.ifconfig == ("198.19.0.2", "255.255.255.0")
    assert p.filtered == ["route 198.18.101.0 255.255.255.0", "redirect-gateway def1",
                          "dhcp-option DNS 198.18.0.53"]


@pytest.mark.parametrize("space", ["\u00a0", "\u2000", "\u3000", "\u205f"])
def test_pull_filter_words_split_as_openvpn_so_no_route_slips_past(space):
    # A hostile server spelled `route 0.0.0.0 128.0.0.0` with a space Python's str.split() takes
    # (NBSP, EN QUAD, IDEOGRAPHIC SPACE) but OpenVPN's parse_line does not: the line no longer
    # started with the filter's "route ", yet it was applied as a route. As OpenVPN, such a line
    # is one unknown word (ignored); a plain space or tab still separates.
    push = (f"PUSH_REPLY,route{space}0.0.0.0{space}128.0.0.0,route\t198.18.7.0\t255.255.255.0,"
            f"dhcp-option{space}DNS 198.18.0.53,ifconfig 198.19.0.2 255.255.255.0")
    p = parse_push_reply_untrusted(push, None, [("ignore", "route "), ("ignore", "dhcp-option DNS")])
    assert p.routes == [] and p.dns == [] and p.dhcp_options == []
    assert p.filtered == ["route 198.18.7.0 255.255.255.0"]
    assert len(p.ignored) == 2 and p.ifconfig == ("198.19.0.2", "255.255.255.0")


@pytest.mark.parametrize("pattern", ["route  198.18.5.0", "route\t198.18.5.0", "route \t 198.18.5.0 "])
@pytest.mark.parametrize("pushed", ["route  198.18.5.0 255.255.255.0", "route 198.18.5.0 255.255.255.0",
                                    "route\t198.18.5.0\t255.255.255.0", " route 198.18.5.0 255.255.255.0"])
def test_pull_filter_text_with_other_white_space_matches_however_the_server_spaces_it(pattern, pushed):
    """`pull-filter ignore "route  198.18.5.0"` (two spaces, or a tab, as the user wrote it):
    OpenVPN 2.6 (options.c apply_pull_filter) compares the option as pushed with the text as
    written, so it matches a route pushed with the same spacing; ours compared only the words
    one space apart and such a filter never matched. Either spacing is caught now (a server
    cannot slip the route past by spacing it otherwise); another route stays."""
    push = f"PUSH_REPLY,{pushed},route 198.18.50.0 255.255.255.0,ifconfig 198.19.0.2 255.255.255.0"
    p = parse_push_reply_untrusted(push, None, [("ignore", pattern)])
    assert p.routes == [("198.18.50.0", "255.255.255.0", None, None)]
    assert p.filtered == ["route 198.18.5.0 255.255.255.0"]


def test_pull_filter_as_openvpn_matches_a_trailing_space_pushed_verbatim():
    """A filter text ending in a space matches an option pushed with that space at its end, as
    OpenVPN 2.6 compares the raw line ("dhcp-option DNS 198.18.0.53 " pushed, filter the same)."""
    push = "PUSH_REPLY,dhcp-option DNS 198.18.0.53 ,ifconfig 198.19.0.2 255.255.255.0"
    p = parse_push_reply_untrusted(push, None, [("ignore", "dhcp-option DNS 198.18.0.53 ")])
    assert p.dhcp_options == [] and p.dns == [] and p.filtered == ["dhcp-option DNS 198.18.0.53"]


def test_route_nopull_takes_no_pushed_routes_or_dns_as_openvpn():
    push = ("PUSH_REPLY,route 198.18.5.0 255.255.255.0,route-ipv6 2001:db8::/64,redirect-gateway def1,"
            "block-ipv6,dhcp-option DNS 198.18.0.53,dhcp-option DOMAIN corp.example,"
            "dns server 0 address 198.18.0.54,dns search-domains corp.example,"
            "ifconfig 198.19.0.2 255.255.255.0,route-gateway 198.19.0.1,topology subnet")
    p = parse_push_reply_untrusted(push, None, (), route_nopull=True)
    assert (p.routes, p.routes_ipv6, p.redirect_gateway, p.block_ipv6) == ([], [], None, False)
    assert (p.dns, p.dhcp_options, p.search_domains, p.dns_servers) == ([], [], [], {})
    assert len(p.ignored) == 8 and all(i.endswith("(route-nopull)") for i in p.ignored)
    # what configures the tunnel itself is still taken
    assert (p.ifconfig, p.route_gateway, p.topology) == (("198.19.0.2", "255.255.255.0"), "198.19.0.1", "subnet")
    # a pull-filter decides first, as in OpenVPN (reject still refuses the push)
    with pytest.raises(PushRejected):
        parse_push_reply_untrusted(push, None, [("reject", "dhcp-option")], route_nopull=True)


def test_endless_continuations_of_huge_unknown_options_hold_little_memory():
    # Each part one TLS record (16 KB) of an option nobody knows, announcing more to come: until
    # the option count refuses the push, only a log line's worth of each is kept.
    import tracemalloc
    part = "PUSH_REPLY," + "x" * 16_300 + ",push-continuation 2"
    tracemalloc.start()
    try:
        p = None
        with pytest.raises(PushRejected, match="more than 1024 options"):
            for _ in range(2000):
                p = parse_push_reply_untrusted(part, p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert p.ignored[0] == "x" * 256 + "..."


def test_pull_filter_reject_refuses_the_push():
    with pytest.raises(PushRejected, match="redirect-gateway def1"):
        parse_push_reply_untrusted(PUSHED, None, [("reject", "redirect-gateway")])
    # no filter matching: everything applied
    p = parse_push_reply_untrusted(PUSHED, None, [("reject", "route-ipv6")])
    assert p.redirect_gateway == ["def1"] and len(p.routes) == 2 and p.filtered == []


def test_peer_info_numbers_read_like_openvpn_atoi_and_first_key_wins():
    from appliance.openvpn.keymethod import peer_info_int
    km = KeyMethod2(b"r" * 32, b"s" * 32, "V4", peer_info="IV_PROTO=seven\nIV_PROTO=990\nIV_NCP=2x\nIV_MTU= -7\n")
    info = km.peer_info_dict()
    assert info["IV_PROTO"] == "seven"
    assert peer_info_int(info, "IV_PROTO") == 0
    assert peer_info_int(info, "IV_NCP") == 2
    assert peer_info_int(info, "IV_MTU") == -7
    assert peer_info_int(info, "MISSING") == 0
    # Past a long: clamped to LONG_MAX, then a C int's 32 bits (-1), as glibc's sscanf/atoi.
    assert peer_info_int({"X": "9" * 40}, "X") == -1
    assert peer_info_int({"X": "4294967298"}, "X") == 2


def test_iv_proto_is_taken_only_above_zero_as_2_6_14():
    """2.6.14's extract_iv_proto: sscanf "IV_PROTO=%d", used only when > 0. A negative value, or
    one that wraps negative past a C int, claims no feature (fuzz47: ours read -1 as every bit)."""
    from appliance.openvpn.keymethod import iv_proto
    for text, want in (("-1", 0), ("4294967295", 0), ("9" * 40, 0), ("4294967296", 0), ("4294967302", 6),
                       ("990", 990), ("6x", 6), ("seven", 0), ("", 0), ("+30", 30)):
        assert iv_proto({"IV_PROTO": text}) == want, text
    assert iv_proto({}) == 0


@pytest.mark.parametrize("option,field,value", [
    ("peer-id 16777216", "peer_id", None), ("peer-id 16777215", "peer_id", None), ("peer-id -1", "peer_id", None),
    ("peer-id x", "peer_id", None), ("ping -5", "ping", 0), ("ping-restart -2", "ping_restart", 0),
    ("ping 99999999", "ping", 7 * 24 * 3600), ("tun-mtu 0", "tun_mtu", None), ("tun-mtu 50", "tun_mtu", None),
    ("tun-mtu 70000", "tun_mtu", 65535), ("explicit-exit-notify -1", "explicit_exit_notify", 0),
    ("explicit-exit-notify 99999", "explicit_exit_notify", 100), ("session-timeout -3", "session_timeout", 0),
    ("route-metric -1", "route_metric", 0), ("topology bogus", "topology", "net30"),
    ("comp-lzo bogus", "comp_lzo", None), ("compress bogus", "compress", None),
    ("key-derivation bogus", "tls_ekm", False), ("protocol-flags bogus", "tls_ekm", False),
])
def test_pushed_values_out_of_range_are_noted_and_the_push_goes_on(option, field, value):
    """As OpenVPN 2.6 (options.c add_option at D_PUSH_ERRORS): a bad value is logged and the
    option left out, or a number read with atoi (kept within what we act on), and the rest of
    the push is taken; 2.6 restarted on none of these in the lab. Never silently: each is noted."""
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 10.8.0.2 255.255.255.0," + option + ",route 198.18.9.0")
    assert getattr(p, field) == value
    assert p.ifconfig == ("10.8.0.2", "255.255.255.0") and p.routes        # the rest is taken
    assert len(p.malformed) == 1 and p.malformed[0].startswith("[PUSH-OPTIONS]:2: "), p.malformed


def test_pushed_values_in_range_are_kept():
    p = parse_push_reply_untrusted("PUSH_REPLY,peer-id 16777214,ping 0,ping-restart 120,tun-mtu 1400")
    assert (p.peer_id, p.ping, p.ping_restart, p.tun_mtu) == (0xFFFFFE, 0, 120, 1400)


def test_a_clients_username_cannot_carry_control_characters():
    """The username reaches the log, the status file and scripts: CR/LF, ESC, TAB become `_`
    (OpenVPN 2.6 does the same); the password is left as sent."""
    m = KeyMethod2(random1=b"a" * 32, random2=b"b" * 32, options="V4", pre_master=b"p" * 48,
                   username="ev\r\nil\x1b[31m\tx", password="pw\x01")
    got = decode_key_method_2_untrusted(encode_key_method_2(m, True), from_client=True)
    assert got.username == "ev__il_[31m_x" and got.password == "pw\x01"


def test_push_continuation_is_framing_no_pull_filter_ends_a_multi_part_push():
    """A whitelist ending in a catch-all `ignore ""` (or `reject ""`): OpenVPN 2.6 filters
    `push-continuation 2` too, takes the first part as the whole push and, its server sending
    cipher and ifconfig last, fails and restarts at every attempt (tests/interop/
    test_pull_filter_push_continuation_vs_openvpn.py). Ours reads the marker whatever the filters
    say: every part is taken, each option in it filtered as usual."""
    parts = ["PUSH_REPLY,route 198.18.9.0 255.255.255.0,dhcp-option DNS 198.18.0.53,push-continuation 2",
             "PUSH_REPLY,ifconfig 198.19.0.2 255.255.255.0,cipher AES-256-GCM,push-continuation 1"]
    for last in ("ignore", "reject"):
        filters = [("accept", "route "), ("accept", "ifconfig"), ("accept", "cipher"), (last, "")]
        if last == "reject":
            with pytest.raises(PushRejected, match="dhcp-option"):
                parse_push_reply_untrusted(parts[0], None, filters)
            filters = filters[:-1] + [("ignore", "dhcp-option"), ("reject", "")]
        p = parse_push_reply_untrusted(parts[0], None, filters)
        assert not p.complete
        p = parse_push_reply_untrusted(parts[1], p, filters)
        assert p.complete and p.ifconfig == ("198.19.0.2", "255.255.255.0") and p.cipher == "AES-256-GCM"
        assert [r[0] for r in p.routes] == ["198.18.9.0"] and p.dns == []
