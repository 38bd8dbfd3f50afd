"""The RA sender as the LAN sees it, on a real TimerHeap with a fake socket and clock: RAs only
while the tunnel carries IPv6, a final one when it stops, solicitations answered at a bounded
rate, junk from the LAN dropped and counted; and the schedule's RFC 4861 timing."""
from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.gateway.loop import Faults, TimerHeap
from appliance.gateway.observers import ClientCounters, TunnelState
from appliance.lan import ra as ramod
from appliance.lan.icmpv6 import build_rs, parse_ra_untrusted
from appliance.lan.ra import (MAX_RTR_ADV_INTERVAL, MIN_DELAY_BETWEEN_RAS, RaSchedule, RouterAdvertiser,
                              ra_observers)
from appliance.openvpn.keymethod import PushedOptions

A6 = ipaddress.IPv6Interface("fd18:50::1/64")
HOP255 = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("@i", 255))]


class FakeSock:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []
        self.closed = False

    def sendmsg(self, bufs: list, anc: list, flags: int, addr: tuple) -> int:
        [(level, typ, info)] = anc
        assert (level, typ) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO)
        assert info[:16] == socket.inet_pton(socket.AF_INET6, "fe80::1"), "sent from the link-local address"
        self.sent.append((bufs[0], addr))
        return len(bufs[0])

    def close(self) -> None:
        self.closed = True


class FakePump:
    def __init__(self) -> None:
        self.now = 1000.0
        self.timers = TimerHeap()
        self.faults = Faults()
        self.watched: list = []

    def clock(self) -> float:
        return self.now

    def watch(self, port, on_read, on_write=None) -> None:
        self.watched.append(port)

    def unwatch(self, port) -> None:
        self.watched.remove(port)

    def advance(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for fn in self.timers.pop_due(self.now):
                fn()


def pushed(ipv6: bool = True, dns: tuple[str, ...] = ()) -> PushedOptions:
    return PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"),
                         ifconfig_ipv6=("2001:db8:19::1000/64", "2001:db8:19::1") if ipv6 else None, dns=list(dns))


def make(dns_forwarder: bool = True) -> tuple[RouterAdvertiser, FakePump, FakeSock]:
    sock = FakeSock()
    adv = RouterAdvertiser("lan-test0", A6, dns_forwarder, open_socket=lambda _n: (sock, 7),
                           source=lambda _n: "fe80::1")
    pump = FakePump()
    adv.attach(pump, ClientCounters)
    return adv, pump, sock


def ras(sock: FakeSock):
    return [parse_ra_untrusted(d) for d, _ in sock.sent]


def test_no_ra_at_all_without_ipv6_from_the_server():
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(False))
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed(ipv6=False)))
    adv.receive(build_rs(), HOP255, ("fe80::2%lan", 0, 0, 7))
    pump.advance(600)
    adv.tunnel_changed(TunnelState(False))
    adv.close()
    assert sock.sent == [] and adv.counts["solicitations"] == 1


def test_up_with_ipv6_advertises_then_down_withdraws():
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(0.1)
    first = ras(sock)
    assert len(first) == 1 and sock.sent[0][1] == ("ff02::1", 0, 0, 7)
    ra = first[0]
    assert ra.router_lifetime == 3 * MAX_RTR_ADV_INTERVAL
    assert [(p.network, p.on_link, p.autonomous) for p in ra.prefixes] == [(A6.network, True, True)]
    assert ra.rdnss == (A6.ip,), "the DNS forwarder is on: the LAN address"
    pump.advance(3 * 16 + 1)
    assert len(sock.sent) == 4, "the initial RAs come at most 16 s apart (RFC 4861 6.2.4)"
    pump.advance(2 * MAX_RTR_ADV_INTERVAL)
    assert 5 <= len(sock.sent) <= 4 + 2 * MAX_RTR_ADV_INTERVAL / ramod.MIN_RTR_ADV_INTERVAL
    n = len(sock.sent)
    adv.tunnel_changed(TunnelState(False))
    last = ras(sock)[-1]
    assert len(sock.sent) == n + 1 and last.router_lifetime == 0
    assert last.prefixes[0].preferred == 0 and last.rdnss_lifetime == 0
    pump.advance(600)
    assert len(sock.sent) == n + 1, "nothing more while down"


def test_without_the_forwarder_the_pushed_ipv6_dns_servers_are_advertised():
    adv, pump, sock = make(dns_forwarder=False)
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed(dns=("198.19.0.1", "2001:db8:19::1", "junk"))))
    pump.advance(0.1)
    assert ras(sock)[0].rdnss == (ipaddress.IPv6Address("2001:db8:19::1"),)


def test_without_the_forwarder_pushed_ipv6_dns_servers_not_through_the_tunnel_are_not_advertised(caplog):
    """As DHCP's rule for IPv4 (lan/pushed_dns.py): a hostile server pushing `DNS6 ff02::1`
    (every LAN host), loopback, the router's own LAN or tunnel address, or an address on the LAN's
    prefix or link had RAs send every LAN host's queries to the whole LAN in clear, to this host,
    or to a LAN host directly, never through the tunnel. A real server stays."""
    adv, pump, sock = make(dns_forwarder=False)
    bad = ("ff02::1", "::1", "::", str(A6.ip), "2001:db8:19::1000", "fd18:50::77", "fe80::99")
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed(dns=(*bad, "2001:db8:53::1"))))
    pump.advance(0.1)
    assert ras(sock)[0].rdnss == (ipaddress.IPv6Address("2001:db8:53::1"),)
    assert caplog.text.count("not advertised") == len(bad)


def test_a_push_without_ipv6_after_one_with_sends_the_final_ra_and_close_too():
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(1)
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed(ipv6=False)))
    assert ras(sock)[-1].router_lifetime == 0
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(1)
    adv.close()
    assert ras(sock)[-1].router_lifetime == 0 and sock.closed and not pump.watched


def test_a_flood_of_solicitations_costs_one_ra_per_3_seconds_and_junk_is_counted():
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(0.1)
    for _ in range(30 * 20):                       # 20 RS per second for 30 s
        adv.receive(build_rs(), HOP255, ("fe80::2%lan", 0, 0, 7))
        adv.receive(b"\x85\x00junk", HOP255, ("fe80::2", 0, 0, 7))
        adv.receive(build_rs(), [], ("fe80::2", 0, 0, 7))            # no hop limit: refused
        adv.receive(build_rs(), HOP255, ("not an address", 0))
        pump.advance(0.05)
    assert len(sock.sent) <= 1 + 30 / MIN_DELAY_BETWEEN_RAS + 1
    assert len(sock.sent) >= 30 / MIN_DELAY_BETWEEN_RAS - 1, "solicitations are answered"
    assert adv.counts["malformed"] == 3 * 600 and pump.faults.counts["LAN ICMPv6 malformed"] == 1800


def test_a_failed_send_is_retried_soon():
    adv, pump, sock = make()
    real = sock.sendmsg
    fails = [2]

    def flaky(*a):
        if fails[0]:
            fails[0] -= 1
            raise OSError(99, "Cannot assign requested address")
        return real(*a)
    sock.sendmsg = flaky
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(2.5)
    assert len(sock.sent) == 1 and adv.counts["send errors"] == 2


def test_no_ra_until_the_link_local_address_is_usable(tmp_path):
    """An RA from a global source is discarded by hosts: wait (retrying) for the link-local."""
    from appliance.lan.ra import link_local
    f = tmp_path / "if_inet6"
    f.write_text("fd180050000000000000000000000001 07 40 00 80 lan-test0\n"
                 "fe800000000000000000000000000001 07 40 20 c0 lan-test0\n")       # tentative (0x40)
    assert link_local("lan-test0", str(f)) is None
    sock = FakeSock()
    src = [None]
    adv = RouterAdvertiser("lan-test0", A6, open_socket=lambda _n: (sock, 7), source=lambda _n: src[0])
    pump = FakePump()
    adv.attach(pump, ClientCounters)
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(3.5)
    assert sock.sent == [] and adv.counts["send errors"] == 0, "waiting for DAD is not an error"
    f.write_text("fe800000000000000000000000000001 07 40 20 80 lan-test0\n"
                 "fe800000000000000000000000000002 08 40 20 80 other0\n")
    src[0] = link_local("lan-test0", str(f))
    assert src[0] == "fe80::1"
    pump.advance(1.1)
    assert len(sock.sent) == 1


def test_an_unopenable_socket_means_no_ipv6_not_a_crash():
    def refuse(_n):
        raise PermissionError(1, "Operation not permitted")
    adv = RouterAdvertiser("lan-test0", A6, open_socket=refuse)
    adv.attach(FakePump(), ClientCounters)
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    adv.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rs", "tick", "up", "down"]), st.floats(0, 50)), max_size=60),
       st.randoms(use_true_random=False))
def test_schedule_never_sends_faster_than_min_delay(events, rnd):
    """Whatever the LAN does, two RAs of one 'up' period are >= 3 s apart and one is always planned."""
    s = RaSchedule(rng=rnd.random)
    now, sent, period = 0.0, [], 0
    for what, dt in events:
        now += dt
        if what == "rs":
            s.solicited(now)
        elif what == "up":
            s.up(now)
            period += 1
        elif what == "down":
            s.down()
        while s.fire(now):
            sent.append((period, now))
        if s.active:
            assert s.next_at is not None and s.next_at > now
    for (p1, t1), (p2, t2) in zip(sent, sent[1:]):
        if p1 == p2:
            assert t2 - t1 >= MIN_DELAY_BETWEEN_RAS - 1e-9


def test_ra_observers_follow_the_toml(tmp_path):
    from appliance.config.schema import parse_appliance_config
    from lab.pki import make_pki
    pki = make_pki(tmp_path / "pki", ["c"])
    crt, key = pki.clients["c"]
    base = ('[wan]\nname = "eth0"\naddress = "198.18.0.2/24"\n[lan]\nname = "eth1"\naddress = "198.18.50.1/24"\n'
            '{lan}\n[vpn]\nrole = "client"\ninline = \'\'\'\nclient\ndev tun\nremote 198.18.0.1\n'
            f'ca {pki.ca}\ncert {crt}\nkey {key}\n\'\'\'\n')
    cfg = parse_appliance_config(base.format(lan='address6 = "fd18:50::1/64"'), str(tmp_path / "a.toml"))
    [obs] = ra_observers(cfg, "eth1")
    assert obs.address6 == A6 and obs.dns_forwarder
    assert ra_observers(cfg, None) == []
    off = parse_appliance_config(base.format(lan="ipv6 = false"), str(tmp_path / "a.toml"))
    assert ra_observers(off, "eth1") == []
    routed = parse_appliance_config(base.format(lan="nat = false"), str(tmp_path / "a.toml"))
    assert ra_observers(routed, "eth1") == [], "routed without a prefix of its own: no IPv6 on the LAN"


def test_without_the_forwarder_a_pushed_ipv4_mapped_dns_server_is_not_advertised(caplog):
    """`dhcp-option DNS6 ::ffff:198.18.50.10` (inet_pton takes it, as OpenVPN 2.6 does): a LAN
    host's resolver sends to an IPv4-mapped address over IPv4, so the RA named a LAN host (its
    queries in clear on the LAN, never through the tunnel) or the LAN's broadcast address, past
    the rule above, which looked at the IPv6 prefixes only. An RDNSS address is an IPv6 one."""
    adv, pump, sock = make(dns_forwarder=False)
    bad = ("::ffff:198.18.50.10", "::ffff:198.18.50.255", "::ffff:198.19.0.1")
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed(dns=(*bad, "2001:db8:53::1"))))
    pump.advance(0.1)
    assert ras(sock)[0].rdnss == (ipaddress.IPv6Address("2001:db8:53::1"),)
    assert caplog.text.count("not advertised") == len(bad)


def test_route_delay_advertises_only_once_the_routes_are_in():
    """A router advertisement sends the LAN's IPv6 traffic our way: while route-delay holds the
    routes back (routes_wait) there is none; at CONNECTED it goes out."""
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(False, "x", "tun0", pushed(), routes_wait=True))
    pump.advance(30)
    assert sock.sent == []
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(0.1)
    assert len(ras(sock)) == 1 and ras(sock)[0].router_lifetime > 0
    adv.close()


def test_a_flood_of_solicitations_is_parsed_at_a_bounded_rate():
    """Each RS was parsed (64 options: ~45 us) however fast they came: a LAN host's flood at wire
    speed took the pump. Only one RA per 3 s comes of them, so past RS_RATE a second (RS_BURST
    at once) they are dropped unparsed, counted; the flood still gets its RAs."""
    adv, pump, sock = make()
    adv.tunnel_changed(TunnelState(True, "x", "tun0", pushed()))
    pump.advance(0.1)
    parsed = []
    real = ramod.parse_rs_untrusted
    ramod.parse_rs_untrusted = lambda *a: parsed.append(1) or real(*a)
    try:
        for _ in range(10):                     # 10 s of 5,000 RS a second
            for _ in range(5000):
                adv.receive(build_rs(b"\x02\0\0\0\0\2"), HOP255, ("fe80::2%lan", 0, 0, 7))
            pump.advance(1.0)
    finally:
        ramod.parse_rs_untrusted = real
    assert len(parsed) <= ramod.RS_BURST + 10 * ramod.RS_RATE + 1
    assert adv.counts["over the rate"] == 50000 - len(parsed)
    assert adv.counts["solicitations"] == len(parsed) and len(sock.sent) >= 3
