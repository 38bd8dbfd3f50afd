"""The LAN's DHCP server without sockets: what a LAN client gets (address, gateway, DNS, domain),
how addresses are chosen (deterministic per MAC, requested ones honoured, static leases), and
what a hostile LAN cannot do (malformed packets dropped and counted, a MAC flood bounded)."""
from __future__ import annotations

import struct
import textwrap
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.lan import dhcp_codec as c
from appliance.lan.dhcp_server import BROADCAST, DECLINE_HOLD, PRE_TUNNEL_LEASE, DhcpServer
from appliance.openvpn.keymethod import PushedOptions

LAN = IPv4Interface("198.18.50.1/24")
FIRST, LAST = IPv4Address("198.18.50.100"), IPv4Address("198.18.50.199")
STATIC_MAC, STATIC_IP = "52:54:00:aa:bb:cc", IPv4Address("198.18.50.10")


def mac(i: int) -> bytes:
    return b"\x52\x54" + i.to_bytes(4, "big")


def msg(kind: int, m: bytes, xid: int = 0x1234, ciaddr: str = "0.0.0.0", requested: str | None = None,
        server: str | None = None, params: bytes = bytes((1, 3, 6, 15, 51)), extra: bytes = b"",
        flags: int = 0, op: int = 1, htype: int = 1, hlen: int = 6, giaddr: str = "0.0.0.0") -> bytes:
    """A client's message as stock clients build it."""
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s", op, htype, hlen, 0, xid, 0, flags, IPv4Address(ciaddr).packed,
                      bytes(4), bytes(4), IPv4Address(giaddr).packed, m.ljust(16, b"\0"))
    opts = bytes((53, 1, kind)) + bytes((61, 7, 1)) + m
    if requested:
        opts += bytes((50, 4)) + IPv4Address(requested).packed
    if server:
        opts += bytes((54, 4)) + IPv4Address(server).packed
    if params:
        opts += bytes((55, len(params))) + params
    return hdr + bytes(192) + c.MAGIC + opts + extra + b"\xff"


class Got:
    """A reply as a client reads it."""

    def __init__(self, r) -> None:
        self.dest = r.dest
        d = r.data
        assert d[0] == 2 and d[236:240] == c.MAGIC
        self.xid = struct.unpack_from("!I", d, 4)[0]
        self.ciaddr = IPv4Address(d[12:16])
        self.yiaddr = IPv4Address(d[16:20])
        self.chaddr = d[28:34]
        self.opts = c.decode_options(d, 240)
        self.kind = self.opts[53][0]
        self.size = len(d)

    def addr(self, code: int) -> IPv4Address | None:
        v = self.opts.get(code)
        return IPv4Address(v[:4]) if v else None

    def u32(self, code: int) -> int | None:
        v = self.opts.get(code)
        return struct.unpack("!I", v)[0] if v else None


def server(**kw) -> DhcpServer:
    kw.setdefault("static", [(STATIC_MAC, STATIC_IP)])
    return DhcpServer(LAN, kw.pop("first", FIRST), kw.pop("last", LAST), kw.pop("lease_time", 3600), **kw)


def one(s: DhcpServer, data: bytes, now: float = 100.0) -> Got | None:
    out = s.handle(data, now)
    assert len(out) <= 1
    return Got(out[0]) if out else None


def lease(s: DhcpServer, m: bytes, now: float = 100.0) -> IPv4Address:
    """DISCOVER, OFFER, REQUEST, ACK; the address."""
    offer = one(s, msg(c.DISCOVER, m), now)
    assert offer is not None and offer.kind == c.OFFER
    ack = one(s, msg(c.REQUEST, m, requested=str(offer.yiaddr), server=str(LAN.ip)), now)
    assert ack is not None and ack.kind == c.ACK and ack.yiaddr == offer.yiaddr
    return ack.yiaddr


def pushed(domain: str | None = "vpn.test", search=(), dns=("198.19.0.1",), search_domains=None) -> PushedOptions:
    p = PushedOptions()
    if domain:
        p.dhcp_options.append(("DOMAIN", domain))
    for d in search:
        p.dhcp_options.append(("DOMAIN-SEARCH", d))
    p.dns = list(dns)
    if search_domains is not None:
        p.search_domains = list(search_domains)  # type: ignore[attr-defined]  (the dns helper's field)
    return p


# ------------------------------------------------------------------ what a client gets
def test_discover_request_gives_an_address_gateway_dns_and_lease_times():
    s = server()
    s.set_pushed(pushed())
    m = mac(1)
    offer = one(s, msg(c.DISCOVER, m, xid=77))
    assert offer.kind == c.OFFER and offer.xid == 77 and offer.chaddr == m
    assert FIRST <= offer.yiaddr <= LAST
    assert offer.dest == BROADCAST
    assert offer.addr(1) == IPv4Address("255.255.255.0")
    assert offer.addr(3) == LAN.ip and offer.addr(6) == LAN.ip and offer.addr(54) == LAN.ip
    assert offer.addr(28) == IPv4Address("198.18.50.255")
    assert (offer.u32(51), offer.u32(58), offer.u32(59)) == (3600, 1800, 3150)
    assert offer.opts[15] == b"vpn.test"
    assert s.lease_count(100) == 0                    # an offer is not a lease
    ack = one(s, msg(c.REQUEST, m, requested=str(offer.yiaddr), server=str(LAN.ip)))
    assert ack.kind == c.ACK and ack.yiaddr == offer.yiaddr and ack.u32(51) == 3600
    assert s.lease_count(100) == 1
    assert s.lease_count(100 + 3601) == 0             # expired
    assert s.sent == {"OFFER": 1, "ACK": 1}


def test_renewal_is_answered_by_unicast_to_the_client():
    s = server()
    s.set_pushed(pushed())
    a = lease(s, mac(1))
    ack = one(s, msg(c.REQUEST, mac(1), ciaddr=str(a)), now=2000)
    assert ack.kind == c.ACK and ack.yiaddr == a and ack.ciaddr == a and ack.dest == str(a)
    assert s.lease_count(2000 + 3000) == 1            # renewed from 2000


def test_before_the_tunnel_leases_are_short_and_carry_no_domain():
    s = server()
    offer = one(s, msg(c.DISCOVER, mac(1)))
    assert offer.u32(51) == PRE_TUNNEL_LEASE and 15 not in offer.opts
    s.set_pushed(pushed())
    offer = one(s, msg(c.DISCOVER, mac(1)))
    assert offer.u32(51) == 3600 and offer.opts[15] == b"vpn.test"


def test_domain_search_is_rfc3397_encoded_and_only_sent_when_asked():
    s = server()
    s.set_pushed(pushed(domain="corp.example", search=("a.corp.example", "b.corp.example"),
                        search_domains=["vpn.test", "a.corp.example"]))
    plain = one(s, msg(c.DISCOVER, mac(1)))
    assert plain.opts[15] == b"corp.example" and 119 not in plain.opts
    asked = one(s, msg(c.DISCOVER, mac(1), params=bytes((1, 3, 6, 15, 119))))
    assert c.decode_domain_list(asked.opts[119]) == ["a.corp.example", "b.corp.example", "vpn.test"]
    # only `dns search-domains` pushed (OpenVPN 2.6's form): the first one is the domain too
    s.set_pushed(pushed(domain=None, search_domains=["vpn.test"]))
    assert one(s, msg(c.DISCOVER, mac(1))).opts[15] == b"vpn.test"


def test_a_pushed_name_that_is_no_dns_name_is_left_out():
    s = server()
    s.set_pushed(pushed(domain="bad name;rm -rf", search=("ok.test", "x" * 64 + ".test")))
    got = one(s, msg(c.DISCOVER, mac(1), params=bytes((15, 119))))
    assert got.opts[15] == b"ok.test" and c.decode_domain_list(got.opts[119]) == ["ok.test"]


def test_without_the_dns_forwarder_the_pushed_ipv4_servers_are_handed_out():
    s = server(dns_forwarder=False)
    assert 6 not in one(s, msg(c.DISCOVER, mac(1))).opts          # nothing pushed yet: none
    s.set_pushed(pushed(dns=("198.19.0.1", "2001:db8:19::1", "198.19.0.2")))
    assert one(s, msg(c.DISCOVER, mac(1))).opts[6] == IPv4Address("198.19.0.1").packed + IPv4Address(
        "198.19.0.2").packed


def test_without_the_dns_forwarder_our_own_multicast_and_broadcast_addresses_are_not_handed_out(caplog):
    """A server pushing the appliance's tunnel or LAN address (or loopback, 0.0.0.0, multicast,
    broadcast) as DNS server: with the forwarder on it is left out (pushed_dns.py); with it off
    DHCP handed it to every LAN host unchecked, sending their queries to this host or to every
    host on the LAN. The same rule now holds for both; a real server stays."""
    s = server(dns_forwarder=False)
    p = pushed(dns=("198.18.50.1", "198.19.0.2", "0.0.0.0", "127.0.0.1", "224.0.0.251", "239.1.2.3",
                    "255.255.255.255", "198.18.50.255", "198.19.0.53"))
    p.ifconfig = ("198.19.0.2", "255.255.255.0")
    s.set_pushed(p)
    assert one(s, msg(c.DISCOVER, mac(1))).opts[6] == IPv4Address("198.19.0.53").packed
    assert caplog.text.count("not handed out") == 8


def test_without_the_dns_forwarder_a_pushed_dns_server_on_the_lan_itself_is_not_handed_out(caplog):
    """A server pushing an address of the LAN's own network (another LAN host's, or its network
    address) as DNS server, the forwarder off: DHCP handed it out, and every LAN host then asked
    that address directly on the LAN, in clear, its queries never reaching the tunnel -- to
    whichever LAN host answers for it. A server outside the LAN stays."""
    s = server(dns_forwarder=False)
    s.set_pushed(pushed(dns=("198.18.50.77", "198.18.50.0", "198.19.0.53")))
    assert one(s, msg(c.DISCOVER, mac(1))).opts[6] == IPv4Address("198.19.0.53").packed
    assert caplog.text.count("is an address on the LAN itself") == 2


def test_without_the_dns_forwarder_a_pushed_link_local_dns_server_is_not_handed_out(caplog):
    """`dhcp-option DNS 169.254.1.1`, the forwarder off: macOS routes 169.254.0.0/16 on every
    link, and so do many Linux desktops (NetworkManager's link-local route), so a LAN host
    asked it by ARP on the LAN, in clear, whichever LAN host answers -- the IPv4 twin of the
    fe80::/10 the RAs already leave out (lan/ra.py). A server outside stays."""
    s = server(dns_forwarder=False)
    s.set_pushed(pushed(dns=("169.254.1.1", "169.254.169.254", "198.19.0.53")))
    assert one(s, msg(c.DISCOVER, mac(1))).opts[6] == IPv4Address("198.19.0.53").packed
    assert caplog.text.count("is an address on the LAN itself") == 2


def test_a_push_of_a_thousand_unusable_dns_servers_writes_a_few_lines(caplog):
    """A hostile server pushing ~1000 multicast DNS servers (the forwarder off): a warning each
    made ~1000 log lines at every push (every reconnect); now the first few and a count."""
    s = server(dns_forwarder=False)
    s.set_pushed(pushed(dns=tuple(f"239.1.{i // 250}.{i % 250}" for i in range(1000)) + ("198.19.0.53",)))
    assert one(s, msg(c.DISCOVER, mac(1))).opts[6] == IPv4Address("198.19.0.53").packed
    assert len(caplog.records) <= 9 and "992 more pushed DNS servers left out" in caplog.text


def test_a_long_search_list_is_left_out_rather_than_overflowing_the_client():
    s = server()
    names = [f"d{i}" + "x" * 50 + f".example{i}" for i in range(15)]     # no shared suffixes
    s.set_pushed(pushed(search=names))
    got = one(s, msg(c.DISCOVER, mac(1), params=bytes((1, 3, 6, 15, 119))))
    assert got.size <= 576 and got.addr(3) == LAN.ip and 119 not in got.opts
    big = one(s, msg(c.DISCOVER, mac(1), params=bytes((1, 3, 6, 15, 119)), extra=bytes((57, 2, 0x05, 0xdc))))
    assert c.decode_domain_list(big.opts[119]) == names and big.size <= 1500   # split over instances


def test_a_reply_fits_one_ip_datagram_of_the_size_the_client_gave():
    """Option 57 counts the whole IP datagram (RFC 2131 2: the 576 octets every client takes are
    an IP datagram, 312 of them options; dhcpcd and systemd-networkd send their MTU, and ISC's
    and systemd's servers subtract the IP and UDP headers). We let the DHCP message itself reach
    it: a pushed search list of ~1,200 bytes made a 1,490-byte message, a 1,518-byte datagram on a
    1,500 MTU, sent in IP fragments, which clients reading through a packet filter (dhclient,
    dhcpcd, systemd-networkd) drop: no lease. And 576-byte messages to a client that gave no size."""
    names = [f"d{i}" + "x" * 50 + f".example{i}" for i in range(18)] + ["y" * 20 + ".test"]
    s = server()
    s.set_pushed(pushed(search=names))
    for size, extra in ((1500, bytes((57, 2, 0x05, 0xdc))), (576, b""), (576, bytes((57, 2, 0x02, 0x40)))):
        got = one(s, msg(c.DISCOVER, mac(1), params=bytes((1, 3, 6, 15, 119)), extra=extra))
        assert got.size + 28 <= size, (size, got.size)
        assert got.addr(3) == LAN.ip and got.addr(1) is not None
    s.set_pushed(pushed(domain=".".join(["a" * 63] * 3) + ".bb", dns=("198.19.0.1",) * 8))
    got = one(s, msg(c.DISCOVER, mac(2)))
    assert got.size + 28 <= 576 and got.addr(3) == LAN.ip


def test_inform_is_answered_without_a_lease():
    s = server()
    s.set_pushed(pushed())
    got = one(s, msg(c.INFORM, mac(9), ciaddr="198.18.50.7"))
    assert got.kind == c.ACK and got.yiaddr == IPv4Address(0) and got.dest == "198.18.50.7"
    assert 51 not in got.opts and got.addr(6) == LAN.ip and got.opts[15] == b"vpn.test"
    assert one(s, msg(c.INFORM, mac(9), ciaddr="0.0.0.0")) is None


@pytest.mark.parametrize("ciaddr", ["198.18.50.255", "198.18.50.0", "0.0.0.0", "224.0.0.1", "255.255.255.255",
                                    "198.18.51.7", "198.18.50.1"])
def test_inform_with_a_forged_ciaddr_is_dropped_and_counted(ciaddr):
    """The ACK to an INFORM goes to ciaddr, which the client writes: the LAN's broadcast or network
    address, multicast, off-LAN or our own address must not become a destination."""
    s = server()
    assert s.handle(msg(c.INFORM, mac(9), ciaddr=ciaddr), 100.0, IPv4Address("198.18.50.7")) == []
    assert s.handle(msg(c.INFORM, mac(9), ciaddr=ciaddr), 100.0) == []
    assert s.drops == {"inform ciaddr not a LAN host": 2} and s.sent == {}


def test_inform_is_answered_only_to_the_address_it_came_from():
    s = server()
    got = s.handle(msg(c.INFORM, mac(9), ciaddr="198.18.50.8"), 100.0, IPv4Address("198.18.50.7"))
    assert got == [] and s.drops == {"inform ciaddr not its source": 1}
    got = one_from(s, msg(c.INFORM, mac(9), ciaddr="198.18.50.7"), "198.18.50.7")
    assert got.kind == c.ACK and got.dest == "198.18.50.7"


def test_inform_on_a_point_to_point_lan_answers_both_addresses():
    """A /31 has no network or broadcast address (RFC 3021): the peer's address is a host."""
    s = DhcpServer(IPv4Interface("198.18.50.0/31"), IPv4Address("198.18.50.1"), IPv4Address("198.18.50.1"), 3600)
    got = one_from(s, msg(c.INFORM, mac(9), ciaddr="198.18.50.1"), "198.18.50.1")
    assert got.kind == c.ACK and got.dest == "198.18.50.1"


def one_from(s: DhcpServer, data: bytes, source: str) -> Got:
    out = s.handle(data, 100.0, IPv4Address(source))
    assert len(out) == 1
    return Got(out[0])


# ------------------------------------------------------------------ allocation
def test_allocation_is_deterministic_per_mac_across_restarts():
    s = server()
    before = {i: lease(s, mac(i)) for i in range(20)}
    s = server()                             # a restart: no lease file, same clients, same order
    assert {i: lease(s, mac(i)) for i in range(20)} == before
    s = server()                             # other order: only hash collisions may move a client
    after = {i: lease(s, mac(i)) for i in reversed(range(20))}
    alone = {i: lease(server(), mac(i)) for i in range(20)}
    moved = {i for i in range(20) if after[i] != before[i]}
    assert moved <= {i for i in range(20) if list(alone.values()).count(alone[i]) > 1}
    assert len(moved) < 20 // 2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=6, max_size=6), min_size=1, max_size=40, unique=True))
def test_addresses_are_distinct_and_in_range(macs):
    s = server(first=IPv4Address("198.18.50.100"), last=IPv4Address("198.18.50.139"))
    macs = [bytes((m[0] & 0xFE,)) + m[1:] for m in macs if (m[0] & 0xFE, *m[1:]) != (0,) * 6]
    got = {}
    for m in dict.fromkeys(macs):
        got[m] = lease(s, m)
    assert len(set(got.values())) == len(got)
    assert all(IPv4Address("198.18.50.100") <= a <= IPv4Address("198.18.50.139") for a in got.values())
    assert s.lease_count(100) == len(got)


def test_a_requested_address_is_honoured_when_free_and_not_when_taken():
    s = server()
    offer = one(s, msg(c.DISCOVER, mac(1), requested="198.18.50.150"))
    assert offer.yiaddr == IPv4Address("198.18.50.150")
    one(s, msg(c.REQUEST, mac(1), requested="198.18.50.150", server=str(LAN.ip)))
    other = one(s, msg(c.DISCOVER, mac(2), requested="198.18.50.150"))
    assert other.yiaddr != IPv4Address("198.18.50.150")
    outside = one(s, msg(c.DISCOVER, mac(3), requested="198.18.50.20"))   # in the LAN, not the range
    assert FIRST <= outside.yiaddr <= LAST


def test_after_a_restart_a_client_keeps_its_address_by_asking_for_it():
    a = lease(server(), mac(1))
    s = server()                               # no lease file: INIT-REBOOT asks for the old one
    ack = one(s, msg(c.REQUEST, mac(1), requested=str(a)))
    assert ack.kind == c.ACK and ack.yiaddr == a
    renew = one(server(), msg(c.REQUEST, mac(1), ciaddr=str(a)))      # or renews it
    assert renew.kind == c.ACK and renew.yiaddr == a


def test_nak_for_an_address_not_ours_or_not_this_clients():
    s = server()
    a = lease(s, mac(1))
    for requested in (str(a), "198.18.51.7", "198.18.50.1", str(STATIC_IP), "198.18.50.20"):
        got = one(s, msg(c.REQUEST, mac(2), requested=requested))
        assert got.kind == c.NAK and got.dest == BROADCAST and got.yiaddr == IPv4Address(0), requested
    assert s.sent["NAK"] == 5


def test_a_request_to_another_server_is_not_answered_and_frees_our_offer():
    s = server(first=FIRST, last=FIRST)           # one address
    offer = one(s, msg(c.DISCOVER, mac(1)))
    assert one(s, msg(c.DISCOVER, mac(2))) is not None   # the offer to mac(1) was evicted for it
    s = server(first=FIRST, last=FIRST)
    offer = one(s, msg(c.DISCOVER, mac(1)))
    assert one(s, msg(c.REQUEST, mac(1), requested=str(offer.yiaddr), server="198.18.50.2")) is None
    assert s.drops["for another server"] == 1 and not s.by_mac
    assert one(s, msg(c.REQUEST, mac(2), requested=str(FIRST))).kind == c.ACK


def test_static_lease_by_mac():
    s = server()
    m = bytes.fromhex(STATIC_MAC.replace(":", ""))
    assert lease(s, m) == STATIC_IP
    assert one(s, msg(c.REQUEST, m, requested="198.18.50.150")).kind == c.NAK
    s2 = server(static=[(STATIC_MAC, IPv4Address("198.18.50.120"))])       # a static inside the range
    taken = [lease(s2, mac(i)) for i in range(99)]
    assert IPv4Address("198.18.50.120") not in taken
    assert one(s2, msg(c.DISCOVER, mac(500))) is None                      # the range is full
    assert s2.drops["pool exhausted"] == 1
    assert lease(s2, m) == IPv4Address("198.18.50.120")


def test_decline_rests_the_address_and_release_frees_it():
    s = server()
    a = lease(s, mac(1))
    assert one(s, msg(c.DECLINE, mac(1), requested=str(a), server=str(LAN.ip))) is None
    b = lease(s, mac(1), now=101)
    assert b != a                                     # not offered again while it rests
    assert one(s, msg(c.DISCOVER, mac(2), requested=str(a)), now=102).yiaddr != a
    assert one(s, msg(c.DISCOVER, mac(3), requested=str(a)), now=101 + DECLINE_HOLD).yiaddr == a
    # RELEASE: the address is free for another client at once
    assert one(s, msg(c.RELEASE, mac(1), ciaddr=str(b), server=str(LAN.ip)), now=103) is None
    assert one(s, msg(c.REQUEST, mac(5), requested=str(b)), now=104).kind == c.ACK
    # someone else's address cannot be released or declined
    assert one(s, msg(c.RELEASE, mac(4), ciaddr=str(b)), now=105) is None
    assert one(s, msg(c.DECLINE, mac(4), requested=str(b)), now=105) is None
    assert s.drops["release not ours"] == 1 and s.drops["decline not ours"] == 1
    assert one(s, msg(c.REQUEST, mac(5), ciaddr=str(b)), now=106).kind == c.ACK


def test_pool_exhaustion_is_no_answer_and_counted():
    s = server(first=FIRST, last=FIRST + 2)
    got = {lease(s, mac(i)) for i in range(3)}
    assert len(got) == 3
    assert one(s, msg(c.DISCOVER, mac(10))) is None
    assert s.drops["pool exhausted"] == 1
    # an expired lease makes room again
    assert one(s, msg(c.DISCOVER, mac(10)), now=100 + 3601).kind == c.OFFER


def test_a_mac_flood_keeps_the_table_bounded_and_real_clients_served():
    s = server(first=IPv4Address("198.18.50.2"), last=IPv4Address("198.18.50.254"), max_leases=100)
    real = lease(s, mac(0))
    for i in range(1, 5_000):
        s.handle(msg(c.DISCOVER, mac(i)), 100.0 + i / 1000)
    assert len(s.by_mac) <= 100 + len(s.static) and len(s.by_addr) <= 101 and len(s.offered) <= 100
    assert one(s, msg(c.REQUEST, mac(0), ciaddr=str(real)), now=130).kind == c.ACK   # bound leases survive
    assert lease(s, mac(99_999), now=131) is not None          # a new client still gets one


# ------------------------------------------------------------------ hostile LAN
BAD = {
    "short": msg(c.DISCOVER, mac(1))[:239],
    "bad magic": msg(c.DISCOVER, mac(1)).replace(c.MAGIC, b"\x63\x82\x53\x64"),
    "not a BOOTREQUEST": msg(c.DISCOVER, mac(1), op=2),
    "not Ethernet": msg(c.DISCOVER, mac(1), htype=6),
    "relayed": msg(c.DISCOVER, mac(1), giaddr="198.18.60.1"),
    "bad MAC": msg(c.DISCOVER, b"\xff" * 6),
    "options overrun": msg(c.DISCOVER, mac(1))[:-1] + bytes((12, 200, 1, 2)),
    "too many options": msg(c.DISCOVER, mac(1))[:-1] + bytes((12, 0)) * 300 + b"\xff",
    "no message type": msg(c.DISCOVER, mac(1)).replace(bytes((53, 1, 1)), bytes((12, 1, 1))),
    "not a client message": msg(c.OFFER, mac(1)),
    "oversized": msg(c.DISCOVER, mac(1)) + bytes(5000),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_malformed_packets_are_dropped_and_counted(reason):
    s = server()
    assert s.handle(BAD[reason], 100.0) == []
    assert s.drops == {reason: 1}
    assert not s.by_mac


def test_hlen_other_than_6_is_not_ethernet():
    s = server()
    assert s.handle(msg(c.DISCOVER, mac(1), hlen=16), 1.0) == [] and s.drops == {"not Ethernet": 1}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes_never_raise(data):
    s = server()
    s.handle(data, 1.0)
    s.handle(c.MAGIC.rjust(240, b"\x01") + data, 2.0)


@settings(max_examples=300, deadline=None)
@given(kind=st.integers(0, 10), ciaddr=st.sampled_from(["0.0.0.0", "198.18.50.120", "198.18.50.1", "10.0.0.1"]),
       requested=st.one_of(st.none(), st.sampled_from(["198.18.50.150", "198.18.50.1", "0.0.0.0", str(STATIC_IP)])),
       sid=st.one_of(st.none(), st.sampled_from(["198.18.50.1", "198.18.50.2"])),
       extra=st.binary(max_size=64), m=st.integers(0, 5))
def test_structured_messages_never_raise_and_replies_are_well_formed(kind, ciaddr, requested, sid, extra, m):
    s = server()
    s.set_pushed(pushed(search=("a.test",)))
    for now in (1.0, 5000.0):
        for r in s.handle(msg(kind, mac(m), ciaddr=ciaddr, requested=requested, server=sid, extra=extra,
                              params=bytes(range(1, 120, 7))), now):
            got = Got(r)
            assert got.kind in (c.OFFER, c.ACK, c.NAK) and got.size <= 576
            if got.kind != c.NAK and got.yiaddr != IPv4Address(0):
                assert FIRST <= got.yiaddr <= LAST


LABEL = st.sampled_from(["a", "b", "corp", "example", "x-1", "vpn", "test", "com", "e" * 63])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(LABEL, min_size=1, max_size=4).map(".".join), max_size=8))
def test_domain_list_round_trips(names):
    want = [n for n in dict.fromkeys(names) if len(n) <= 253]     # longer is no DNS name: left out
    assert c.decode_domain_list(c.encode_domain_list(want)) == want


def test_domain_list_compresses_shared_suffixes():
    enc = c.encode_domain_list(["eng.example.com", "sales.example.com"])
    assert len(enc) < len(b"\x03eng\x07example\x03com\x00\x05sales\x07example\x03com\x00")
    assert c.decode_domain_list(enc) == ["eng.example.com", "sales.example.com"]


# ------------------------------------------------------------------ the TOML keys
CLIENT_OVPN = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n-----BEGIN CERTIFICATE-----\nMIIB\n" \
              "-----END CERTIFICATE-----\n</ca>\n"


def toml(tmp_path: Path, lan_extra: str, role: str = "client") -> str:
    (tmp_path / "client.ovpn").write_text(CLIENT_OVPN)
    p = tmp_path / "appliance.toml"
    p.write_text(textwrap.dedent(f"""\
        [wan]
        name = "eth0"
        address = "198.18.0.2/24"
        gateway = "198.18.0.1"
        [lan]
        name = "eth1"
        address = "198.18.50.1/24"
        """) + lan_extra + f'\n[vpn]\nrole = "{role}"\nconfig = "client.ovpn"\n')
    return str(p)


def test_keys_load(tmp_path):
    from appliance.config.schema import load_appliance_config
    from appliance.lan import lan_observers
    cfg = load_appliance_config(toml(tmp_path, 'dhcp_range = ["198.18.50.100", "198.18.50.199"]\n'
                                               'dhcp_lease_time = 600\n'
                                               'static_leases = { "52:54:00:AA:BB:CC" = "198.18.50.10" }\n'))
    assert cfg.lan.dhcp_range == (FIRST, LAST) and cfg.lan.dhcp_lease_time == 600
    assert cfg.lan.static_leases == ((STATIC_MAC, STATIC_IP),)
    dhcp = [o for o in lan_observers(cfg, "eth0", "eth1") if type(o).__name__ == "DhcpService"]
    assert len(dhcp) == 1 and dhcp[0].server.static == {bytes.fromhex("525400aabbcc"): int(STATIC_IP)}
    assert dhcp[0].server.dns_forwarder is True
    plain = load_appliance_config(toml(tmp_path, ""))
    assert plain.lan.dhcp_range is None
    assert not [o for o in lan_observers(plain, "eth0", "eth1") if type(o).__name__ == "DhcpService"]
    off = load_appliance_config(toml(tmp_path, 'dhcp_range = ["198.18.50.100", "198.18.50.199"]\n'
                                               'dns_forwarder = false\n'))
    dhcp = [o for o in lan_observers(off, "eth0", "eth1") if type(o).__name__ == "DhcpService"]
    assert dhcp[0].server.dns_forwarder is False        # DHCP then hands out the pushed servers


def test_a_reply_fits_the_lan_nics_mtu_whatever_size_the_client_gave():
    """The LAN NIC's MTU caps a reply, besides the client's option 57: we assumed 1500, and on a
    NIC of a smaller MTU (a VLAN, a config) a client giving 1500 (dhcpcd, systemd-networkd send
    their own NIC's) got a reply in IP fragments, which clients reading through a packet filter
    drop -- no lease; one giving nothing got 576 on a link that carries less. A larger MTU
    (jumbo frames) lets a client that says so have the whole search list in one datagram."""
    names = [f"d{i}" + "x" * 50 + f".example{i}" for i in range(30)]
    params = bytes((1, 3, 6, 15, 51, 119))
    for mtu in (400, 576, 1280, 1500, 9000):
        s = server(link_mtu=mtu)
        s.set_pushed(pushed(search=names))
        for given in (None, 576, 1500, 9000, 65535):
            extra = b"" if given is None else bytes((57, 2)) + given.to_bytes(2, "big")
            offer = one(s, msg(c.DISCOVER, mac(1), params=params, extra=extra))
            limit = min(max(576, given or 576), mtu)
            assert offer.size + 28 <= limit, (mtu, given, offer.size)
            assert (offer.kind, offer.addr(3), offer.u32(51)) == (c.OFFER, LAN.ip, 3600), (mtu, given)
            nak = one(s, msg(c.REQUEST, mac(1), requested="198.18.51.7", extra=extra))
            assert nak.kind == c.NAK and nak.size + 28 <= limit
    s = server(link_mtu=9000)
    s.set_pushed(pushed(search=names))
    jumbo = one(s, msg(c.DISCOVER, mac(1), params=params, extra=bytes((57, 2)) + (9000).to_bytes(2, "big")))
    assert jumbo.size > 1500 and c.decode_domain_list(jumbo.opts[119]) == names


def hostname(name: bytes) -> bytes:
    return bytes((12, len(name))) + name


def test_lease_host_names_for_the_lans_dns():
    """The host name a client gives (option 12) names its lease in the LAN's DNS while the lease
    lives: first come (another MAC asking for a held name gets none), gone with the release or
    the expiry, kept through a renewal that gives none; the first label of an FQDN; names that
    are not DNS labels, and wpad / isatap / localhost, are not taken."""
    s = server()
    s.set_pushed(pushed())

    def bind(m: bytes, extra: bytes, now: float = 100.0) -> IPv4Address:
        offer = one(s, msg(c.DISCOVER, m, extra=extra), now)
        ack = one(s, msg(c.REQUEST, m, requested=str(offer.yiaddr), server=str(LAN.ip), extra=extra), now)
        assert ack.kind == c.ACK
        return ack.yiaddr

    a = bind(mac(1), hostname(b"Printer\0"))
    assert s.address_of("printer", 100.0) == a and s.name_of(a, 100.0) == "printer"
    b = bind(mac(2), hostname(b"printer"))                       # taken: the second host gets no name
    assert s.address_of("printer", 100.0) == a and s.name_of(b, 100.0) is None and s.name_conflicts == 1
    renew = one(s, msg(c.REQUEST, mac(1), ciaddr=str(a)), 200.0)    # no option 12: the name stays
    assert renew.kind == c.ACK and s.address_of("printer", 200.0) == a
    assert one(s, msg(c.RELEASE, mac(1), ciaddr=str(a), server=str(LAN.ip))) is None
    assert s.address_of("printer", 200.0) is None and s.name_of(a, 200.0) is None
    b2 = bind(mac(2), hostname(b"printer"), 200.0)               # free now
    assert s.address_of("printer", 200.0) == b2
    assert s.address_of("printer", 200.0 + 3601) is None          # expired
    d = bind(mac(4), hostname(b"laptop.home.example"))
    assert s.address_of("laptop", 100.0) == d
    for i, bad in enumerate((b"wpad", b"ISATAP", b"localhost", b"-x", b"a_b", b"caf\xc3\xa9", b"x" * 64, b"",
                             b"a b", b".lan")):
        e = bind(mac(10 + i), hostname(bad))
        assert s.name_of(e, 100.0) is None, bad
    assert "wpad" not in s.names and len(s.names) == 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 12), st.sampled_from([b"a", b"b", b"c", b"WPAD", b"a.x", b""]),
                          st.integers(0, 30)), max_size=80))
def test_lease_names_stay_consistent_whatever_a_lan_host_sends(steps):
    """Any sequence of DISCOVER / REQUEST / RENEW / RELEASE / DECLINE from a few MACs with a few
    names, over a small pool and table: each name belongs to one lease, that lease is in the
    table and carries it, and a name answers only for a live lease."""
    s = server(first=IPv4Address("198.18.50.100"), last=IPv4Address("198.18.50.104"), max_leases=4, static=())
    now = 100.0
    for kind, i, name, dt in steps:
        now += dt
        m, extra = mac(i), hostname(name) if name else b""
        held = s.by_mac.get(m)
        at = str(IPv4Address(held.addr)) if held is not None else "198.18.50.100"
        if kind == 0:
            s.handle(msg(c.DISCOVER, m, extra=extra), now)
        elif kind == 1:
            s.handle(msg(c.REQUEST, m, requested=at, server=str(LAN.ip), extra=extra), now)
        elif kind == 2:
            s.handle(msg(c.REQUEST, m, ciaddr=at, extra=extra), now, IPv4Address(at))
        elif kind == 3:
            s.handle(msg(c.RELEASE, m, ciaddr=at, server=str(LAN.ip)), now)
        else:
            s.handle(msg(c.DECLINE, m, requested=at, server=str(LAN.ip)), now)
        for n, lease in s.names.items():
            assert lease.name == n and n != "wpad" and s.by_mac.get(lease.mac) is lease
        named = [x.name for x in s.by_mac.values() if x.name is not None]
        assert len(named) == len(set(named))
        for n in ("a", "b", "c"):
            a = s.address_of(n, now)
            if a is not None:
                lease = s.by_addr[int(a)]
                assert lease.name == n and lease.bound and lease.expires > now and s.by_mac[lease.mac] is lease
        assert len(s.names) <= 4


def test_only_messages_from_the_dhcp_client_port_are_acted_on():
    """A RELEASE of another host's lease (its chaddr and ciaddr are seen on the LAN) from an
    unprivileged process on any LAN host -- one that cannot bind port 68 -- removed that lease;
    so could such a process bind the pool or take host names with REQUESTs. Every DHCP client
    sends from port 68 (where our replies go, and only a privileged process can listen): from
    any other port nothing is done, counted."""
    s = server()
    a = lease(s, mac(1))
    release = msg(c.RELEASE, mac(1), ciaddr=str(a), server=str(LAN.ip))
    assert s.handle(release, 101.0, IPv4Address("198.18.50.66"), 40000) == []
    assert s.lease_count(101.0) == 1 and s.drops["not from the DHCP client port 68"] == 1
    assert s.handle(msg(c.DISCOVER, mac(2)), 101.0, IPv4Address(0), 5353) == []
    req = msg(c.REQUEST, mac(3), requested="198.18.50.150", server=str(LAN.ip), extra=hostname(b"printer"))
    assert s.handle(req, 101.0, IPv4Address(0), 1068) == [] and s.address_of("printer", 101.0) is None
    assert [Got(r).kind for r in s.handle(req, 101.0, IPv4Address(0), 68)] == [c.ACK]
    assert s.handle(release, 102.0, a, 68) == [] and s.lease_count(102.0) == 1     # the real client's


def test_the_service_passes_the_source_port():
    from appliance.lan.dhcp_server import DhcpService

    class Sock:
        def __init__(self, items):
            self.items, self.sent = list(items), []

        def recvfrom(self, n):
            if not self.items:
                raise BlockingIOError
            return self.items.pop(0)

        def sendto(self, data, dest):
            self.sent.append(dest)

        def fileno(self):
            return -1

    class Pump:
        def clock(self):
            return 100.0

    svc = DhcpService(server(), "lan0")
    svc.sock = Sock([(msg(c.DISCOVER, mac(1)), ("0.0.0.0", 40000)), (msg(c.DISCOVER, mac(2)), ("0.0.0.0", 68))])
    svc.pump = Pump()  # type: ignore[assignment]
    svc._on_read()
    assert svc.sock.sent == [(BROADCAST, 68)] and svc.server.drops == {"not from the DHCP client port 68": 1}


def test_the_service_reads_the_nics_mtu_for_each_batch(monkeypatch):
    """DhcpService asks the kernel for the LAN NIC's MTU (SIOCGIFMTU) when it starts and at each
    wake-up, so a changed MTU counts from the next reply; an unreadable one keeps the last."""
    import socket
    from appliance.lan import dhcp_server
    from appliance.lan.dhcp_server import DhcpService, nic_mtu
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sk:
        assert nic_mtu(sk, "lo") == int(Path("/sys/class/net/lo/mtu").read_text())
        assert nic_mtu(sk, "no-such-nic0") is None
        svc = DhcpService(server(), "lan0")
        svc.sock = sk
        mtus = iter([1280, None, 9000])
        monkeypatch.setattr(dhcp_server, "nic_mtu", lambda sock, name: next(mtus))
        got = []
        for _ in range(3):
            svc._read_mtu()
            got.append(svc.server.link_mtu)
        assert got == [1280, 1280, 9000]


@pytest.mark.parametrize("extra,role,why", [
    ('dhcp_range = ["198.18.50.100"]', "client", "exactly two"),
    ('dhcp_range = ["198.18.50.200", "198.18.50.100"]', "client", "is after"),
    ('dhcp_range = ["198.18.50.100", "198.18.51.10"]', "client", "not a host address"),
    ('dhcp_range = ["198.18.50.0", "198.18.50.10"]', "client", "not a host address"),
    ('dhcp_range = ["198.18.50.1", "198.18.50.10"]', "client", "contains the LAN address"),
    ('dhcp_range = ["198.18.50.100", "198.18.50.199"]\ndhcp_lease_time = 30', "client", "not in 60..86400"),
    ('dhcp_range = ["198.18.50.100", "198.18.50.199"]', "server", "client role only"),
    ("dhcp_lease_time = 600", "client", "only with `dhcp_range"),
    ('static_leases = { "52:54:00:aa:bb:cc" = "198.18.50.10" }', "client", "only with `dhcp_range"),
    ('dhcp_range = ["198.18.50.100", "198.18.50.199"]\n'
     'static_leases = { "52:54:00:aa:bb:cc" = "198.18.50.10", "52:54:00:aa:bb:cd" = "198.18.50.10" }',
     "client", "more than one MAC"),
    ('dhcp_range = ["198.18.50.100", "198.18.50.199"]\nstatic_leases = { "52:54:00:aa:bb:cc" = "198.18.50.1" }',
     "client", "other than the LAN address"),
    ('dhcp_range = ["198.18.50.100", "198.18.50.199"]\nstatic_leases = { "nope" = "198.18.50.9" }',
     "client", "not a MAC address"),
])
def test_bad_keys_fail_with_file_and_line(tmp_path, extra, role, why):
    from appliance.config.schema import load_appliance_config
    from appliance.openvpn.errors import ConfigError
    path = toml(tmp_path, extra + "\n", role)
    with pytest.raises(ConfigError) as ei:
        load_appliance_config(path)
    text = str(ei.value)
    assert why in text and f"{path}:" in text, text


def test_drop_counters_are_logged_at_a_limited_rate(caplog):
    """A flood of bad packets costs one log line per LOG_EVERY seconds, and the last change of a
    burst is logged by a timer (not lost until the next packet)."""
    from appliance.gateway.loop import TimerHeap
    from appliance.lan.dhcp_server import DhcpService

    class FakePump:
        def __init__(self) -> None:
            self.now, self.timers = 1000.0, TimerHeap()

        def clock(self) -> float:
            return self.now

    svc = DhcpService(server(), "lan0")
    svc.pump = pump = FakePump()  # type: ignore[assignment]
    caplog.set_level("INFO", logger="vpn-appliance")
    for _ in range(1000):
        svc.server.handle(b"x", pump.now)
        svc._log_drops()
        pump.now += 0.01
    lines = [r.getMessage() for r in caplog.records if "DHCP server drops" in r.getMessage()]
    assert lines == ["DHCP server drops: short=1"]
    pump.now += svc.LOG_EVERY
    for fn in pump.timers.pop_due(pump.now):
        fn()
    lines = [r.getMessage() for r in caplog.records if "DHCP server drops" in r.getMessage()]
    assert lines == ["DHCP server drops: short=1", "DHCP server drops: short=1000"]


def test_sigusr2_logs_the_drop_counters_at_once(caplog):
    """log_counters (the client's SIGUSR2): the counters now, inside LOG_EVERY and unchanged
    too; the periodic line then waits for the next change."""
    from appliance.gateway.loop import TimerHeap
    from appliance.lan.dhcp_server import DhcpService

    class FakePump:
        def __init__(self) -> None:
            self.now, self.timers = 1000.0, TimerHeap()

        def clock(self) -> float:
            return self.now

    svc = DhcpService(server(), "lan0")
    svc.pump = pump = FakePump()  # type: ignore[assignment]
    caplog.set_level("INFO", logger="vpn-appliance")
    svc.log_counters()
    for _ in range(3):
        svc.server.handle(b"x", pump.now)
        svc._log_drops()
    svc.log_counters()
    svc.log_counters()
    svc._log_drops()
    lines = [r.getMessage() for r in caplog.records if "DHCP server drops" in r.getMessage()]
    assert lines == ["DHCP server drops: none", "DHCP server drops: short=1", "DHCP server drops: short=3",
                     "DHCP server drops: short=3"]


def test_a_flood_of_discovers_does_not_keep_configured_clients_from_renewing():
    """One host flooding DISCOVERs (from 0.0.0.0, any chaddr) empties the shared bucket; a bound
    client's renewal and rebinding come from its own address and have a bucket of their own."""
    from appliance.lan.dhcp_server import BURST
    s = server()
    a, b = lease(s, mac(1)), lease(s, mac(2))
    flood = sum(len(s.handle(msg(c.DISCOVER, mac(100 + i)), 200.0, IPv4Address(0))) for i in range(2 * int(BURST)))
    assert flood < 2 * BURST and s.drops["rate limited"] > 0
    renew = s.handle(msg(c.REQUEST, mac(1), ciaddr=str(a)), 200.0, a)                       # RENEWING, unicast
    assert [Got(r).kind for r in renew] == [c.ACK] and renew[0].dest == str(a)
    rebind = s.handle(msg(c.REQUEST, mac(2), ciaddr=str(b), flags=c.BROADCAST_FLAG), 200.0, b)   # REBINDING
    assert [Got(r).kind for r in rebind] == [c.ACK]
    assert [Got(r).kind for r in s.handle(msg(c.REQUEST, mac(2), ciaddr=str(b)), 201.0, b)] == [c.ACK]


def test_a_flood_of_discovers_does_not_keep_a_known_client_from_finishing_or_coming_back():
    """One host floods DISCOVERs from 0.0.0.0 with random chaddrs and empties the shared bucket.
    A client whose DISCOVER got its OFFER still gets its REQUEST answered, and a client that held
    a lease and comes back from 0.0.0.0 (a DISCOVER after a reboot, an INIT-REBOOT REQUEST) gets
    its address: their chaddr has an entry, and its bucket counts first. A new chaddr waits for
    the shared bucket, as before (nothing tells it from the flood's)."""
    from appliance.lan.dhcp_server import BURST
    s = server()
    old = lease(s, mac(1), now=100.0)
    flood = iter(range(1000, 100_000))
    for _ in range(2 * int(BURST)):
        s.handle(msg(c.DISCOVER, mac(next(flood))), 199.0, IPv4Address(0))
    # 10 ms later two messages' worth has refilled: the client's DISCOVER is one of the lucky two
    offer = one(s, msg(c.DISCOVER, mac(2)), 199.01)
    assert offer is not None and offer.kind == c.OFFER
    for _ in range(10):
        s.handle(msg(c.DISCOVER, mac(next(flood))), 199.01, IPv4Address(0))
    assert s.handle(msg(c.DISCOVER, mac(5000)), 199.01, IPv4Address(0)) == []       # the bucket is empty
    req = s.handle(msg(c.REQUEST, mac(2), requested=str(offer.yiaddr), server=str(LAN.ip)), 199.01, IPv4Address(0))
    assert [Got(r).kind for r in req] == [c.ACK]
    back = s.handle(msg(c.DISCOVER, mac(1)), 199.01, IPv4Address(0))
    assert [(Got(r).kind, Got(r).yiaddr) for r in back] == [(c.OFFER, old)]
    reboot = s.handle(msg(c.REQUEST, mac(1), requested=str(old)), 199.01, IPv4Address(0))
    assert [(Got(r).kind, Got(r).yiaddr) for r in reboot] == [(c.ACK, old)]


def test_a_few_datagrams_forged_from_a_clients_address_do_not_keep_it_from_renewing():
    """Anyone on the LAN can send from a bound client's address. Three forged datagrams a second
    from it emptied that lease's own bucket (one a second) for good: the client's renewals went
    unanswered until its lease ran out. Past its own bucket a message draws on the shared one,
    so holding a client up costs the flood that holds up everyone (RATE a second)."""
    s = server()
    a = lease(s, mac(1))
    acks = 0
    for t in range(200, 260):
        for _ in range(3):
            s.handle(b"forged", float(t), a)
        renew = s.handle(msg(c.REQUEST, mac(1), ciaddr=str(a)), t + 0.5, a)
        acks += [Got(r).kind for r in renew] == [c.ACK]
    assert acks == 60


def test_a_flood_is_rate_limited_and_service_resumes():
    from appliance.lan.dhcp_server import BURST, RATE
    s = server()
    answered = sum(len(s.handle(msg(c.DISCOVER, mac(i)), 100.0)) for i in range(1000))
    assert answered == BURST and s.drops["rate limited"] == 1000 - BURST
    assert s.handle(msg(c.DISCOVER, mac(5000)), 100.0) == []
    later = sum(len(s.handle(msg(c.DISCOVER, mac(6000 + i)), 101.0)) for i in range(1000))
    assert later == RATE                          # one second refills RATE messages
    assert lease(s, mac(7000), now=110.0) is not None


def test_messages_on_known_chaddrs_own_buckets_are_bounded_in_all():
    """Every entry of the table (an offer too) has a bucket of its own (CLIENT_BURST at once), and
    a DISCOVER flood of random MACs fills the table with entries whose MACs the flooder knows.
    Sending from each of them again, 4,000 entries of a /20 pool were 32,000 messages handled at
    once (~40 us each: over a second of the pump) and 4,000 a second after; the own buckets now
    draw together on KNOWN_RATE a second (KNOWN_BURST at once), then on the shared one."""
    from appliance.lan import dhcp_server as ds
    s = DhcpServer(IPv4Interface("198.18.48.1/20"), IPv4Address("198.18.48.2"), IPv4Address("198.18.63.254"), 3600)
    n = 4000
    t = 100.0
    for i in range(n):                      # the table filled at the shared rate
        t += 1.0 / ds.RATE
        assert s.handle(msg(c.DISCOVER, mac(i)), t, IPv4Address(0), 68)
    handled = sum(len(s.handle(msg(c.DISCOVER, mac(i)), t, IPv4Address(0), 68)) for i in range(n) for _ in range(8))
    assert handled <= ds.KNOWN_BURST + ds.BURST
    later = sum(len(s.handle(msg(c.DISCOVER, mac(i)), t + 1.0, IPv4Address(0), 68)) for i in range(n))
    assert later <= ds.KNOWN_RATE + ds.RATE + 1
    # a client with its offer still gets its REQUEST answered once the flood pauses a moment
    offer = one(s, msg(c.DISCOVER, mac(n + 1)), t + 3.0)
    req = s.handle(msg(c.REQUEST, mac(n + 1), requested=str(offer.yiaddr), server="198.18.48.1"), t + 3.0,
                   IPv4Address(0), 68)
    assert [Got(r).kind for r in req] == [c.ACK]


def test_a_request_of_more_options_than_any_client_sends_is_dropped_unanswered():
    """Each option of a request costs ~1 us to read (0.25-0.5 ms for the 256 taken before, at up
    to 400 handled a second); stock clients send 5-25 (RFC 3396's split long options included),
    so past MAX_OPTIONS (64) a request is dropped and counted, read no further."""
    s = server()
    base = msg(c.DISCOVER, mac(1))[:-1]
    n_own = len(c.decode_options(base + b"\xff", 240))
    ok = one(s, base + bytes((224, 0)) * (c.MAX_OPTIONS - n_own) + b"\xff")
    assert ok is not None and ok.kind == c.OFFER
    assert s.handle(base + bytes((224, 0)) * (65 - n_own) + b"\xff", 100.0) == []
    assert s.drops["too many options"] == 1 and c.MAX_OPTIONS == 64
