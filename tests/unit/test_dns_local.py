"""The questions the LAN's DNS forwarder answers itself (appliance/lan/dns_local.py): single-label
names and reverse lookups of the LAN's and private addresses never reach the VPN's servers --
they told the VPN provider the LAN's names and addresses -- except the reverse zones of networks
the VPN itself routes, whose servers are the ones that know them."""
import ipaddress

from hypothesis import given, settings, strategies as st

from appliance.lan import dns_wire as w
from appliance.lan.dns_core import ForwarderCore, Reply, Send
from appliance.lan.dns_local import LEASE, REVERSE, SINGLE_LABEL, LocalZones, NetworkIndex, reverse_network, vpn_networks, zone_cuts
from appliance.openvpn.keymethod import PushedOptions

N = ipaddress.ip_network
LAN, LAN6 = N("198.18.50.0/24"), N("fd18:50::/64")


def zones(vpn=()) -> LocalZones:
    z = LocalZones([LAN, LAN6])
    z.set_vpn_networks([N(n) for n in vpn])
    return z


def ask(z: LocalZones, name: str, qtype: int = 12):
    """(RCODE, why) of a question answered here, None when it goes upstream."""
    q = w.parse_untrusted(w.encode_query(1, name, qtype)).question
    r = z.answer(q.name, q.qtype)
    return None if r is None else r[:2]


def rev(addr: str) -> str:
    return ipaddress.ip_address(addr).reverse_pointer


def test_single_label_names_are_answered_nxdomain_but_a_resolvers_tld_questions_go_on():
    z = zones()
    for qtype in (1, 28, 65, 255, 15, 16):         # A, AAAA, HTTPS, ANY, MX, TXT
        assert ask(z, "printer", qtype) == (w.NXDOMAIN, SINGLE_LABEL)
    for qtype in (2, 6, 43, 48):                    # NS, SOA, DS, DNSKEY of a TLD: DNSSEC validation
        assert ask(z, "com", qtype) is None
    for name in ("printer.vpn.test", "www.example.com"):
        assert ask(z, name, 1) is None


def test_reverse_lookups_of_the_lan_and_private_addresses_are_answered_here():
    z = zones()
    for a in ("198.18.50.7", "10.1.2.3", "172.20.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "127.0.0.1",
              "fd18:50::7", "fd00::1", "fe80::1", "2001:db8::1"):
        assert ask(z, rev(a)) == (w.NXDOMAIN, REVERSE), a
    for name in ("b._dns-sd._udp.0.50.18.198.in-addr.arpa", "01.10.in-addr.arpa", "x.d.f.ip6.arpa"):
        assert ask(z, name) == (w.NXDOMAIN, REVERSE), name     # DNS-SD browsing; no address label
    for apex in ("50.18.198.in-addr.arpa", "10.in-addr.arpa", "17.172.in-addr.arpa", "d.f.ip6.arpa",
                 "0.0.0.0.0.0.0.0.0.5.0.0.8.1.d.f.ip6.arpa", rev("::1"), rev("255.255.255.255")):
        assert ask(z, apex, 6) == (w.NOERROR, REVERSE), apex       # the zone exists: no records
    for name in (rev("8.8.8.8"), rev("198.19.0.1"), rev("2a00:1450::1"), "in-addr.arpa", "172.in-addr.arpa",
                 "18.198.in-addr.arpa", "x.in-addr.arpa"):
        assert ask(z, name) is None, name               # public, or not (only) a private network


def test_the_vpns_own_networks_reverse_zones_go_to_its_servers_but_the_lan_stays_here():
    z = zones(["10.8.0.0/16", "fd00:8::/32", "198.18.0.0/15"])
    assert ask(z, rev("10.8.1.2")) is None and ask(z, "8.10.in-addr.arpa", 6) is None
    assert ask(z, "10.in-addr.arpa", 6) is None              # the zone around the VPN's: theirs to say
    assert ask(z, rev("fd00:8::1")) is None
    assert ask(z, rev("10.9.1.2")) == (w.NXDOMAIN, REVERSE)
    assert ask(z, rev("198.18.50.7")) == (w.NXDOMAIN, REVERSE)   # the LAN wins over a route around it


def test_the_networks_a_push_claims():
    p = PushedOptions()
    p.routes = [("10.8.0.0", "255.255.0.0", None, None), ("0.0.0.0", "128.0.0.0", None, None),
                ("192.168.7.1", None, None, None), ("bogus", "255.0.0.0", None, None)]
    p.routes_ipv6 = [("fd00:8::/32", None, None), ("::/0", None, None)]
    p.ifconfig = ("10.9.0.2", "255.255.255.0")
    p.ifconfig_ipv6 = ("fd00:9::2/64", "fd00:9::1")
    assert vpn_networks(p) == [N("10.8.0.0/16"), N("192.168.7.1/32"), N("fd00:8::/32"), N("10.9.0.0/24"),
                               N("fd00:9::/64")]
    p = PushedOptions()
    p.ifconfig = ("10.9.0.6", "10.9.0.5")                  # net30
    assert vpn_networks(p) == [N("10.9.0.6/32"), N("10.9.0.5/32")]


def test_zone_cuts_on_label_boundaries():
    assert zone_cuts(N("172.16.0.0/12")) == list(N("172.16.0.0/12").subnets(new_prefix=16))
    assert zone_cuts(N("198.18.50.128/25")) == [N("198.18.50.0/24")]
    assert zone_cuts(N("198.18.50.0/23")) == [N("198.18.50.0/24"), N("198.18.51.0/24")]
    assert zone_cuts(N("fe80::/10")) == list(N("fe80::/10").subnets(new_prefix=12))
    assert zone_cuts(N("::1/128")) == [N("::1/128")]


def test_a_global_lan_is_not_a_local_zone():
    """A LAN numbered from public space (nat = false) has its reverse zone in the public DNS."""
    z = LocalZones([N("203.0.114.0/24")])
    assert ask(z, rev("203.0.114.5")) is None


@settings(deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 128))
def test_reverse_network_is_the_network_the_name_denotes(addr, plen):
    step, bits = (8, 32) if addr.version == 4 else (4, 128)
    plen = min(plen, bits) // step * step
    if plen == 0:
        return
    net = ipaddress.ip_network((int(addr) >> (bits - plen) << (bits - plen), plen)) if addr.version == 4 else \
        ipaddress.IPv6Network((int(addr) >> (bits - plen) << (bits - plen), plen))
    labels = rev(str(addr)).split(".")
    name = ".".join(labels[(bits - plen) // step:])
    parts = [x.encode() for x in name.split(".")]
    assert reverse_network(parts) == (net, 0)


@settings(deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=8), st.integers(0, 65535))
def test_never_raises_for_any_name(labels, qtype):
    wire = b"".join(bytes((len(x),)) + x for x in labels) + b"\0"
    if len(wire) <= 255:
        r = zones(["10.8.0.0/16"]).answer(wire, qtype)
        assert r is None or (r[0] in (w.NXDOMAIN, w.NOERROR) and r[2] == [])


def test_the_forwarder_answers_them_itself_tunnel_up_or_down_and_forwards_the_rest():
    c = ForwarderCore(local=zones(["10.8.0.0/16"]))
    for servers in ([("198.19.0.1", 53)], []):
        c.set_servers(servers)
        for name, qtype in (("printer", 1), (rev("198.18.50.7"), 12), (rev("10.9.0.1"), 12)):
            q = w.encode_query(9, name, qtype)
            (r,) = c.query("cli", "198.18.50.10", q, 0.0)
            assert isinstance(r, Reply) and w.rcode(r.data) == w.NXDOMAIN and r.data[:2] == q[:2]
            assert w.parse_untrusted(r.data).question == w.parse_untrusted(q).question
    c.set_servers([("198.19.0.1", 53)])
    (s,) = c.query("cli", "198.18.50.10", w.encode_query(9, rev("10.8.0.1"), 12), 1.0)
    assert isinstance(s, Send)
    assert c.counts[SINGLE_LABEL] == 2 and c.counts[REVERSE] == 4 and c.counts["forwarded"] == 1


class Leases:
    """The DHCP server's view (dhcp_server.DhcpService.address_of / name_of)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = {k: ipaddress.IPv4Address(v) for k, v in names.items()}

    def address_of(self, name):
        return self.names.get(name)

    def name_of(self, addr):
        return next((n for n, a in self.names.items() if a == addr), None)


def test_a_lease_host_name_answers_with_its_address_and_its_address_with_the_name():
    """As dnsmasq answers from its leases: `printer` A is the printer's lease, the lease address's
    PTR is `printer`; AAAA of it is NOERROR with no records (the name exists); other names and
    addresses stay NXDOMAIN, and names under a domain are never answered from leases."""
    c = ForwarderCore(local=LocalZones([LAN], Leases({"printer": "198.18.50.120"})))
    c.set_servers([("198.19.0.1", 53)])

    def q(name, qtype):
        (r,) = c.query("cli", "198.18.50.10", w.encode_query(5, name, qtype), 0.0)
        return r

    r = q("PRINTER", 1)
    assert w.rcode(r.data) == w.NOERROR and r.data[6:8] == b"\0\1" and r.data[-4:] == bytes((198, 18, 50, 120))
    assert r.data[-10:-6] == b"\0\0\0\0"                             # TTL 0, as dnsmasq's lease names
    r = q("printer", 28)
    assert w.rcode(r.data) == w.NOERROR and r.data[6:8] == b"\0\0"
    r = q(rev("198.18.50.120"), 12)
    assert w.rcode(r.data) == w.NOERROR and r.data.endswith(b"\x07printer\0")
    assert w.rcode(q("scanner", 1).data) == w.NXDOMAIN
    assert w.rcode(q(rev("198.18.50.121"), 12).data) == w.NXDOMAIN
    assert isinstance(q("printer.vpn.test", 1), Send)


def test_home_arpa_and_resolver_arpa_are_answered_here():
    """IANA's locally served forward zones: home.arpa (RFC 8375) names the LAN's own hosts, and
    resolver.arpa (RFC 9462) must not be forwarded: the VPN's resolver would answer with its own
    encrypted endpoints for an address (ours) its certificate does not hold."""
    z = LocalZones([LAN], Leases({"printer": "198.18.50.120"}))
    assert z.answer(wire("printer.HOME.arpa"), 1) == (w.NOERROR, LEASE, [(1, bytes((198, 18, 50, 120)))])
    assert ask(z, "scanner.home.arpa", 1) == (w.NXDOMAIN, "answered locally: home.arpa")
    assert ask(z, "a.printer.home.arpa", 1)[0] == w.NXDOMAIN
    assert ask(z, "home.arpa", 6) == (w.NOERROR, "answered locally: home.arpa")
    assert ask(z, "_dns.resolver.arpa", 64) == (w.NXDOMAIN, "answered locally: resolver.arpa")
    assert ask(z, "resolver.arpa", 6)[0] == w.NOERROR
    assert ask(z, "ipv4only.arpa", 28) is None                  # NAT64 discovery: the VPN's to answer


def test_lease_records_only_in_class_in_or_any():
    z = LocalZones([LAN], Leases({"printer": "198.18.50.120"}))
    assert z.answer(wire("printer"), 1, 3) == (w.NXDOMAIN, SINGLE_LABEL, [])          # CHAOS
    assert z.answer(wire("printer"), 255, 255)[2] == [(1, bytes((198, 18, 50, 120)))]
    assert z.answer(wire(rev("198.18.50.120")), 12, 3) == (w.NXDOMAIN, REVERSE, [])


def wire(name: str) -> bytes:
    return w.parse_untrusted(w.encode_query(1, name, 1)).question.name


NETS4 = st.builds(lambda a, p: ipaddress.ip_network((a >> (32 - p) << (32 - p), p)), st.integers(0, 2**32 - 1),
                  st.integers(0, 32))
NETS6 = st.builds(lambda a, p: ipaddress.IPv6Network((a >> (128 - p) << (128 - p), p)), st.integers(0, 2**128 - 1),
                  st.integers(0, 128))


@settings(deadline=None)
@given(st.lists(st.one_of(NETS4, NETS6), max_size=12), st.one_of(NETS4, NETS6))
def test_the_network_index_says_what_a_scan_says(nets, probe):
    """The index of the VPN's networks (a push may carry thousands of routes: a scan of 4096 took
    8 ms per reverse lookup, which a LAN host may send 200 times a second) answers as the scan."""
    idx = NetworkIndex(nets)
    assert idx.overlaps(probe) == any(probe.version == n.version and probe.overlaps(n) for n in nets)
    for n in nets:
        assert idx.overlaps(n)
        if n.prefixlen < n.max_prefixlen:
            assert idx.overlaps(next(n.subnets()))


def test_every_pushed_route_counts_however_many():
    z = zones()
    z.set_vpn_networks([N(f"10.{k // 256}.{k % 256}.0/24") for k in range(6000)])
    assert ask(z, rev("10.23.111.9")) is None and ask(z, rev("10.24.0.1")) == (w.NXDOMAIN, REVERSE)
