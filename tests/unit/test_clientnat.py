"""client-nat (openvpn/clientnat.py): OpenVPN 2.6's rewriting both ways, checksums that verify after
it (property tests), hostile packets, the profile and pushed forms, and the data path's switch."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st

from appliance.openvpn.clientnat import MAX_ENTRIES, ClientNat, combined, parse_rule
from appliance.openvpn.config import parse_config
from appliance.openvpn.datapath import ClientDataPath
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.keymethod import parse_push_reply_untrusted
from appliance.tun.offload import checksum, ones_sum

CLIENT = "client\ndev tun\nremote 198.18.0.1\nca /etc/hosts\n"


def ip(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


def addrs(p) -> tuple[str, str]:
    return str(ipaddress.IPv4Address(bytes(p[12:16]))), str(ipaddress.IPv4Address(bytes(p[16:20])))


def build(src: str, dst: str, proto: int = 17, payload: bytes = b"hello", options: bytes = b"",
          frag: int = 0, udp_zero: bool = False) -> bytearray:
    """An IPv4 packet with correct checksums (TCP, UDP or ICMP echo)."""
    ihl = 20 + len(options)
    if proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 5 << 4, 0x18, 8192, 0, 0) + payload)
        at = 16
    elif proto == 17:
        l4 = bytearray(struct.pack("!HHHH", 1234, 53, 8 + len(payload), 0) + payload)
        at = 6
    else:
        l4 = bytearray(struct.pack("!BBHHH", 8, 0, 0, 1, 1) + payload)
        at = 2
    if proto in (6, 17):
        pseudo = ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, len(l4))
        c = checksum(pseudo + bytes(l4))
        if proto == 17 and udp_zero:
            c = 0
    else:
        c = checksum(bytes(l4))
    l4[at:at + 2] = struct.pack("!H", c)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl // 4, 0, ihl + len(l4), 7, frag, 64, proto, 0,
                              ip(src), ip(dst)) + options)
    h[10:12] = struct.pack("!H", checksum(bytes(h)))
    return h + l4


def verifies(p: bytes) -> bool:
    """What the receiving kernel checks: the IP header, and a whole TCP/UDP datagram's checksum
    over its pseudo-header (ICMP over itself)."""
    ihl = (p[0] & 15) * 4
    if ones_sum(bytes(p[:ihl])) != 0:
        return False
    proto, l4 = p[9], bytes(p[ihl:])
    if proto == 17 and l4[6:8] == b"\0\0":
        return True
    if proto in (6, 17):
        pseudo = bytes(p[12:20]) + struct.pack("!BBH", 0, proto, len(l4))
        return ones_sum(pseudo + l4) == 0
    return ones_sum(l4) == 0


SNAT = parse_rule(["snat", "192.168.0.0", "255.255.255.0", "198.19.7.0"])
DNAT = parse_rule(["dnat", "10.1.0.0", "255.255.0.0", "198.19.0.0"])


# ------------------------------------------------------------------ what 2.6 rewrites, each way
def test_snat_rewrites_our_source_going_out_and_the_alias_coming_back():
    nat = ClientNat([SNAT])
    out = nat.outgoing(build("192.168.0.42", "198.18.9.9"))
    assert addrs(out) == ("198.19.7.42", "198.18.9.9") and verifies(out)
    back = nat.incoming(build("198.18.9.9", "198.19.7.42"))
    assert addrs(back) == ("198.18.9.9", "192.168.0.42") and verifies(back)
    # the reverse mapping is not applied the other way round
    assert addrs(nat.outgoing(build("198.18.9.9", "192.168.0.42"))) == ("198.18.9.9", "192.168.0.42")
    assert addrs(nat.incoming(build("192.168.0.42", "198.18.9.9"))) == ("192.168.0.42", "198.18.9.9")


def test_dnat_rewrites_the_far_destination_going_out_and_its_source_coming_back():
    nat = ClientNat([DNAT])
    out = nat.outgoing(build("198.18.1.2", "10.1.3.4", proto=6))
    assert addrs(out) == ("198.18.1.2", "198.19.3.4") and verifies(out)
    back = nat.incoming(build("198.19.3.4", "198.18.1.2", proto=6))
    assert addrs(back) == ("10.1.3.4", "198.18.1.2") and verifies(back)


def test_both_addresses_at_once_and_each_only_by_its_first_rule():
    second = parse_rule(["snat", "192.168.0.0", "255.255.0.0", "172.16.0.0"])
    nat = ClientNat([SNAT, DNAT, second])
    out = nat.outgoing(build("192.168.0.5", "10.1.0.9", proto=1))
    assert addrs(out) == ("198.19.7.5", "198.19.0.9") and verifies(out)


def test_icmp_checksum_needs_no_change_and_ipv6_is_left_alone():
    nat = ClientNat([SNAT])
    p = build("192.168.0.1", "198.18.0.2", proto=1)
    icmp = bytes(p[20:])
    out = nat.outgoing(p)
    assert bytes(out[20:]) == icmp and verifies(out)
    v6 = bytearray(b"\x60" + bytes(39) + b"x" * 8)
    assert nat.outgoing(v6) == b"\x60" + bytes(39) + b"x" * 8


def test_a_read_only_plaintext_is_copied_not_edited():
    nat = ClientNat([SNAT])
    src = bytes(build("198.18.9.9", "198.19.7.3"))
    out = nat.incoming(memoryview(src))
    assert addrs(out) == ("198.18.9.9", "192.168.0.3") and addrs(src) == ("198.18.9.9", "198.19.7.3")
    untouched = bytes(build("198.18.9.9", "198.18.9.8"))
    assert nat.incoming(untouched) is untouched         # no match: no copy


def test_udp_without_checksum_stays_without():
    out = ClientNat([SNAT]).outgoing(build("192.168.0.1", "198.18.0.2", udp_zero=True))
    assert out[26:28] == b"\0\0" and verifies(out)


def test_later_fragment_payload_untouched_ip_options_honoured():
    nat = ClientNat([SNAT])
    frag = build("192.168.0.1", "198.18.0.2", proto=6, frag=100)      # offset 100*8: payload, no header
    body = bytes(frag[20:])
    out = nat.outgoing(frag)
    assert bytes(out[20:]) == body and ones_sum(bytes(out[:20])) == 0
    opt = build("192.168.0.1", "198.18.0.2", proto=6, options=b"\x01\x01\x01\x00")   # NOPs, EOL
    out = nat.outgoing(opt)
    assert addrs(out)[0] == "198.19.7.1" and verifies(out)


# ------------------------------------------------------------------ property tests
rules = st.builds(lambda kind, net, bits, alias: parse_rule([kind, str(ipaddress.IPv4Address(net)),
                                                            str(ipaddress.IPv4Network(f"0.0.0.0/{bits}").netmask),
                                                            str(ipaddress.IPv4Address(alias))]),
                  st.sampled_from(["snat", "dnat"]), st.integers(0, 2**32 - 1), st.integers(0, 32),
                  st.integers(0, 2**32 - 1))
v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


@settings(max_examples=400, deadline=None)
@given(table=st.lists(rules, max_size=4), src=v4, dst=v4, proto=st.sampled_from([1, 6, 17]),
       payload=st.binary(max_size=64), opts=st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x00" * 8]),
       incoming=st.booleans(), udp_zero=st.booleans(), aligned=st.booleans())
def test_checksums_verify_after_rewriting(table, src, dst, proto, payload, opts, incoming, udp_zero, aligned):
    if aligned:     # networks without host bits, so rules match often
        table = [type(r)(r.kind, r.network & r.netmask, r.netmask, r.alias & r.netmask) for r in table]
        if table:
            r = table[0]
            src = str(ipaddress.IPv4Address(r.network | (int(ipaddress.IPv4Address(src)) & ~r.netmask & 0xFFFFFFFF)))
    nat = ClientNat(table)
    p = build(src, dst, proto, payload, opts, udp_zero=udp_zero)
    out = (nat.incoming if incoming else nat.outgoing)(p)
    assert len(out) == len(p) and verifies(out)
    assert bytes(out[20 + len(opts) + 8 * (proto != 1):]) == bytes(build(src, dst, proto, payload, opts)[
        20 + len(opts) + 8 * (proto != 1):]) or proto == 6     # only headers change (TCP: its header is 20)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=80), table=st.lists(rules, min_size=1, max_size=3), incoming=st.booleans())
def test_hostile_bytes_never_raise_and_keep_their_length(data, table, incoming):
    nat = ClientNat(table)
    for p in (data, bytearray(data), b"\x45" + data[1:], bytearray(b"\x4f" + data[1:])):
        out = (nat.incoming if incoming else nat.outgoing)(p)
        assert len(out) == len(p)


# ------------------------------------------------------------------ profile and push
def test_profile_lines_and_their_errors():
    o = parse_config(CLIENT + "client-nat snat 192.168.0.0 255.255.255.0 198.19.7.0\n"
                     "client-nat dnat 10.1 255.255.0.0 198.18.200.0\n", "p.conf")
    assert [str(r) for r in o.client_nat] == ["snat 192.168.0.0 255.255.255.0 198.19.7.0",
                                              "dnat 10.0.0.1 255.255.0.0 198.18.200.0"]   # inet_aton, as 2.6
    for bad, why in (("xnat 1.2.3.0 255.0.0.0 1.1.1.0", "type must be 'snat' or 'dnat'"),
                     ("snat host.example 255.0.0.0 1.1.1.0", "bad network"),
                     ("snat 1.2.3.0 255.0.0.0", "expects 4")):
        with pytest.raises(ConfigError, match=f"p.conf:5: client-nat: {why}"):
            parse_config(CLIENT + f"client-nat {bad}\n", "p.conf")
    many = "".join(f"client-nat snat 10.{i}.0.0 255.255.0.0 198.18.{i}.0\n" for i in range(MAX_ENTRIES + 1))
    with pytest.raises(ConfigError, match="more than 64 client-nat"):
        parse_config(CLIENT + many, "p.conf")
    with pytest.raises(ConfigError, match="client-nat: is applied by our client only"):
        parse_config("server 198.18.0.0 255.255.255.0\ndev tun\nca /etc/hosts\ncert /etc/hosts\nkey /etc/hosts\n"
                     "dh none\nclient-nat snat 1.2.3.0 255.255.255.0 1.1.1.0\n", "s.conf")


def test_pushed_entries_bad_ones_left_out_route_nopull_and_the_limit():
    p = parse_push_reply_untrusted("PUSH_REPLY,client-nat snat 192.168.0.0 255.255.255.0 198.19.7.0,"
                                   "client-nat snat x 255.0.0.0 1.1.1.1,route 198.18.3.0 255.255.255.0")
    assert [str(r) for r in p.client_nat] == ["snat 192.168.0.0 255.255.255.0 198.19.7.0"]
    assert any("client-nat snat x" in i for i in p.ignored) and p.routes
    q = parse_push_reply_untrusted("PUSH_REPLY,client-nat dnat 10.0.0.0 255.0.0.0 198.18.0.0", route_nopull=True)
    assert not q.client_nat and q.ignored
    rules, dropped = combined([SNAT] * 60, [DNAT] * 10)
    assert len(rules) == MAX_ENTRIES and dropped == 6 and rules[-1] == DNAT


class _Session:
    """Just what ClientDataPath touches: plaintexts out of receive, packets into encrypt."""
    send_key = None
    frag = None

    def __init__(self) -> None:
        self.sealed: list = []
        self.to_open: list = []

    def receive(self, packet, now):
        return list(self.to_open)


def test_data_path_translates_only_once_set():
    s = _Session()
    dp = ClientDataPath(s, lambda c, v2: None)
    plain_open = type(dp).open
    s.to_open = [bytes(build("198.18.9.9", "198.19.7.3"))]
    assert addrs(dp.open(b"wire", 0.0)[0]) == ("198.18.9.9", "198.19.7.3")
    dp.set_nat(ClientNat([SNAT]))
    assert addrs(dp.open(b"wire", 0.0)[0]) == ("198.18.9.9", "192.168.0.3")
    dp.set_nat(None)
    assert dp.open.__func__ is plain_open and addrs(dp.open(b"wire", 0.0)[0]) == ("198.18.9.9", "198.19.7.3")


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.from_regex(r"(0[xX][0-9a-fA-F]{0,9}|[0-9]{1,11})(\.(0[xX][0-9a-fA-F]{0,5}|[0-9]{1,6})){0,4}",
                                    fullmatch=True), st.text("0123456789.xXaf-", max_size=16)))
def test_addresses_read_as_glibc_inet_aton_reads_them(text):
    """2.6's getaddr takes a numeric address as inet_aton does; ours is written out (no socket
    module in the engine) and must agree with it."""
    import socket
    from appliance.openvpn.clientnat import _inet_aton
    try:
        want = int.from_bytes(socket.inet_aton(text), "big")
    except OSError:
        want = None
    try:
        got = _inet_aton(text)
    except ValueError:
        got = None
    assert got == want


def test_on_a_tap_client_the_packet_inside_the_frame_is_rewritten():
    """dev tap: the IPv4 packet after the Ethernet header (or one 802.1Q tag), as 2.6's
    process_ip_header sees it there; the frame's header and other frames stay as they are."""
    nat = ClientNat([SNAT], frames=True)
    eth = bytes.fromhex("020000000001" "020000000002" "0800")
    vlan = bytes.fromhex("020000000001" "020000000002" "8100" "0007" "0800")
    for head in (eth, vlan):
        frame = bytearray(head + bytes(build("192.168.0.42", "198.18.9.9")))
        out = nat.outgoing(frame)
        assert bytes(out[:len(head)]) == head
        assert addrs(out[len(head):]) == ("198.19.7.42", "198.18.9.9") and verifies(bytes(out[len(head):]))
        ro = bytes(head + bytes(build("198.18.9.9", "198.19.7.42")))
        back = nat.incoming(memoryview(ro))                 # read-only: a rewritten copy
        assert bytes(back[:len(head)]) == head and addrs(back[len(head):]) == ("198.18.9.9", "192.168.0.42")
        assert addrs(ro[len(head):]) == ("198.18.9.9", "198.19.7.42")
    arp = bytes.fromhex("ffffffffffff" "020000000002" "0806") + bytes(28)
    assert nat.outgoing(arp) is arp
