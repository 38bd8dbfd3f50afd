"""The questions the LAN's DNS forwarder answers itself instead of asking the VPN's servers:
single-label names ("printer") and reverse lookups of the LAN's own and of private addresses.

Why: forwarded, they told the VPN provider the LAN's host names and addresses (a PTR query for
every LAN address a LAN host's software looks up: logs, printers, DNS-SD's
`b._dns-sd._udp.0.50.18.198.in-addr.arpa` browsing), and got nothing useful back -- the VPN's
servers know neither the LAN's names nor its addresses. dnsmasq's `domain-needed` / `bogus-priv`
(on by default in OpenWrt), systemd-resolved (no single-label names over unicast DNS) and unbound
(RFC 6303's locally served zones) keep them at home the same way.

What is answered here (NXDOMAIN: no records; no SOA, so nobody caches it for long):
- a single-label name, any type but the ones a validating resolver asks of a top-level domain
  (NS, SOA, DS, DNSKEY and DNSSEC's other record types: those go on, so DNSSEC keeps working);
  the host name a LAN host gave the DHCP server (option 12) has its lease's address (A, TTL 0,
  while the lease lives), and that address's reverse name the host name (PTR), as dnsmasq
  answers from its leases; names under the pushed domain stay the VPN's (a LAN host naming
  itself "mail" must not become mail.<the company's domain>);
- a name under a reverse zone of RFC 6303 (10/8, 172.16/12, 192.168/16, 0/8, 127/8,
  169.254/16, the documentation nets, 255.255.255.255; ::, ::1, fd00::/8, fe80::/10,
  2001:db8::/32), of RFC 7793 (100.64/10), or of the LAN's own networks when they are not
  global addresses (the zone apex itself answers NOERROR with no records: it exists);
- names under home.arpa (RFC 8375, the home network's names: `printer.home.arpa` is a lease's
  name as `printer` is) and resolver.arpa (RFC 9462's discovery of encrypted resolvers, which a
  forwarder must not pass on), both in IANA's registry of locally served zones;
- except where the VPN claims the addresses: a reverse name whose network overlaps a pushed
  route, a `route`/`route-ipv6` of the profile or the tunnel's own subnet goes to the VPN's
  servers as before (a company's 10.0.0.0/8
  behind the VPN has its reverse zone on the company's servers). redirect-gateway claims no
  network here: it routes everything, and forwarding every private lookup was the leak. The LAN's
  own networks stay local even then (a pushed route inside the LAN is never installed).

Pure functions over the question's wire form: no allocation beyond the labels of one name (at
most 127), no recursion; tests/unit/test_dns_local.py.
"""
from __future__ import annotations

import bisect
import ipaddress
from typing import Iterable, Protocol

from .dns_wire import CLASS_IN, NOERROR, NXDOMAIN

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

# Types a resolver asks of a top-level domain (RFC 4035 and later): NS, SOA, RRSIG, NSEC, DNSKEY,
# NSEC3, NSEC3PARAM, CDS, CDNSKEY, DS. A single-label question of these goes upstream.
TLD_TYPES = frozenset((2, 6, 43, 46, 47, 48, 50, 51, 59, 60))

# RFC 6303 section 4 and RFC 7793, as networks (each expanded below to its zones' label cuts).
LOCAL_REVERSE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "255.255.255.255/32", "100.64.0.0/10",
    "::/128", "::1/128", "fd00::/8", "fe80::/10", "2001:db8::/32"))

SINGLE_LABEL = "answered locally: single-label name"
REVERSE = "answered locally: reverse lookup of a LAN or private address"
LEASE = "answered locally: a DHCP lease's host name"
T_A, T_PTR, T_ANY = 1, 12, 255
CLASS_ANY = 255
# Forward zones of the IANA registry of locally-served zones: home.arpa (RFC 8375: the home
# network's own names -- `printer.home.arpa` is a lease's name as `printer` is) and resolver.arpa
# (RFC 9462: a forwarder must not pass these on; the VPN's resolver would name its own encrypted
# endpoints, for an address -- ours -- its certificate does not hold).
HOME_ARPA, RESOLVER_ARPA = (b"home", b"arpa"), (b"resolver", b"arpa")
SPECIAL_ZONES = {HOME_ARPA: "answered locally: home.arpa", RESOLVER_ARPA: "answered locally: resolver.arpa"}

Records = list[tuple[int, bytes]]             # (type, RDATA) of the answer section


class LeaseNames(Protocol):
    """The DHCP server's leases as the DNS sees them (dhcp_server.DhcpService): live leases only."""

    def address_of(self, name: str) -> ipaddress.IPv4Address | None: ...

    def name_of(self, addr: ipaddress.IPv4Address) -> str | None: ...
_V4, _V6 = (b"in-addr", b"arpa"), (b"ip6", b"arpa")


def labels(wire: bytes) -> list[bytes]:
    """The labels of an uncompressed, already checked (dns_wire) name in wire form."""
    out, i = [], 0
    while i < len(wire) and wire[i]:
        out.append(wire[i + 1:i + 1 + wire[i]])
        i += 1 + wire[i]
    return out


def zone_cuts(net: IPNet) -> list[IPNet]:
    """`net` as reverse zones: networks on label boundaries (8 bits for IPv4, a nibble for IPv6):
    the next boundary's subnets (a /12 is sixteen /16 zones), but a network longer than the last
    boundary before a host's own name lives in the zone around it (a /25 in its /24)."""
    step, bits = (8, 32) if net.version == 4 else (4, 128)
    cut = -(-net.prefixlen // step) * step
    if cut == net.prefixlen:
        return [net]
    if cut == bits:
        return [net.supernet(new_prefix=cut - step)]
    return list(net.subnets(new_prefix=cut))


def reverse_network(parts: list[bytes]) -> tuple[IPNet, int] | None:
    """The network a reverse name denotes, from the address labels next to in-addr/ip6.arpa
    (`4.3.2.1.in-addr.arpa` is 1.2.3.4/32, `168.192.in-addr.arpa` 192.168/16), and how many labels
    of the name are left of them (0: the name is that network's own). None: not a reverse name,
    or no address label next to the suffix."""
    if len(parts) < 2:
        return None
    tail = tuple(p.lower() for p in parts[-2:])
    if tail == _V4:
        width, most, base = 8, 4, 10
    elif tail == _V6:
        width, most, base = 4, 32, 16
    else:
        return None
    digits: list[int] = []
    for p in reversed(parts[:-2]):
        if len(digits) == most or not _number(p, base):
            break
        v = int(p, base)
        if (base == 16 and len(p) != 1) or v >= 1 << width:
            break
        digits.append(v)
    if not digits:
        return None
    value = 0
    for d in digits:
        value = (value << width) | d
    bits = 32 if base == 10 else 128
    plen = width * len(digits)
    value <<= bits - plen
    net = ipaddress.ip_network((value, plen)) if base == 10 else ipaddress.IPv6Network((value, plen))
    return net, len(parts) - 2 - len(digits)


def _number(p: bytes, base: int) -> bool:
    if not p or len(p) > 3:
        return False
    if base == 10:
        return p.isdigit() and (p == b"0" or not p.startswith(b"0"))
    return all(c in b"0123456789abcdefABCDEF" for c in p)


class LocalZones:
    """Which questions are answered here (see the module doc); `answer` decides one."""

    def __init__(self, lan_networks: Iterable[IPNet] = (), leases: LeaseNames | None = None) -> None:
        self.leases = leases
        self.lan = [n for n in lan_networks if not n.is_global]
        zones = [z for n in (*LOCAL_REVERSE, *self.lan) for z in zone_cuts(n)]
        self.zones = {(z.version, z): None for z in zones}          # the apexes, for NODATA
        self.networks = list(dict.fromkeys((*LOCAL_REVERSE, *self.lan)))
        self.vpn = NetworkIndex(())

    def set_vpn_networks(self, nets: Iterable[IPNet]) -> None:
        """The networks the VPN claims (pushed routes, the tunnel subnet): their reverse names are
        the VPN's servers' to answer. Kept while the tunnel is down (a reconnect pushes the same).
        Indexed (NetworkIndex): a push may carry thousands of routes, and a scan of 4096 of them
        cost 8 ms per reverse lookup -- a LAN host's 200 lookups a second would take the pump."""
        self.vpn = NetworkIndex(nets)

    def answer(self, qname: bytes, qtype: int, qclass: int = CLASS_IN) -> tuple[int, str, Records] | None:
        """(RCODE, why, records) when the question is answered here -- NXDOMAIN, NOERROR with no
        records (a zone's apex; a lease's name asked for another type), or a lease's A or PTR
        record (class IN or ANY) -- None when it goes upstream."""
        parts = labels(qname)
        leases = self.leases if qclass in (CLASS_IN, CLASS_ANY) else None
        if len(parts) == 1:
            if qtype in TLD_TYPES:
                return None
            return self._lease_address(leases, parts[0], qtype, SINGLE_LABEL)
        tail = tuple(x.lower() for x in parts[-2:])
        if tail in SPECIAL_ZONES and len(parts) >= 2:
            why = SPECIAL_ZONES[tail]
            if len(parts) == 2:
                return NOERROR, why, []                  # the zone's apex: it exists
            if len(parts) == 3 and tail == HOME_ARPA:
                return self._lease_address(leases, parts[0], qtype, why)
            return NXDOMAIN, why, []
        rev = reverse_network(parts)
        if rev is None:
            return None
        net, below = rev
        if any(net.version == n.version and net.subnet_of(n) for n in self.lan):
            return self._lease_name(leases, net, below, qtype) or self._local(net, below)
        if self.vpn.overlaps(net):
            return None
        if any(net.version == n.version and net.subnet_of(n) for n in self.networks):
            return self._local(net, below)
        return None

    @staticmethod
    def _lease_address(leases: LeaseNames | None, label: bytes, qtype: int, why: str) -> tuple[int, str, Records]:
        addr = leases.address_of(label.decode("ascii", "replace").lower()) if leases is not None else None
        if addr is None:
            return NXDOMAIN, why, []
        return NOERROR, LEASE, [(T_A, addr.packed)] if qtype in (T_A, T_ANY) else []

    @staticmethod
    def _lease_name(leases: LeaseNames | None, net: IPNet, below: int, qtype: int) -> tuple[int, str, Records] | None:
        if leases is None or below or net.version != 4 or net.prefixlen != 32:
            return None
        name = leases.name_of(net.network_address)       # type: ignore[arg-type]
        if name is None:
            return None
        wire = bytes((len(name),)) + name.encode("ascii") + b"\0"
        return NOERROR, LEASE, [(T_PTR, wire)] if qtype in (T_PTR, T_ANY) else []

    def _local(self, net: IPNet, below: int) -> tuple[int, str, Records]:
        return (NOERROR if below == 0 and (net.version, net) in self.zones else NXDOMAIN), REVERSE, []


class NetworkIndex:
    """Networks, for "does this network overlap any of them?" in O(log n): two CIDR blocks
    overlap only when one holds the other, so either one of ours holds it (a set lookup per
    prefix length we have: at most 33 or 129) or one of ours starts inside it (a bisection of
    our sorted starts)."""

    def __init__(self, nets: Iterable[IPNet]) -> None:
        self.by_version: dict[int, tuple[set[tuple[int, int]], list[int], list[int]]] = {}
        for n in nets:
            held, starts, _ = self.by_version.setdefault(n.version, (set(), [], []))
            held.add((int(n.network_address), n.prefixlen))
            starts.append(int(n.network_address))
        for held, starts, lengths in self.by_version.values():
            starts.sort()
            lengths.extend(sorted({plen for _, plen in held}))

    def overlaps(self, net: IPNet) -> bool:
        got = self.by_version.get(net.version)
        if got is None:
            return False
        held, starts, lengths = got
        bits = net.max_prefixlen
        a, plen = int(net.network_address), net.prefixlen
        for q in lengths:
            if q > plen:
                break
            if ((a >> (bits - q)) << (bits - q) if q else 0, q) in held:
                return True
        i = bisect.bisect_left(starts, a)
        return i < len(starts) and starts[i] <= a + (1 << (bits - plen)) - 1


def route_networks(routes: Iterable = (), routes6: Iterable = ()) -> list[IPNet]:
    """The networks of `route` (network, netmask, ...) and `route-ipv6` (network/bits, ...) entries,
    pushed or the profile's own: not redirect-gateway's halves or a default route (they claim
    everything), nor a network given as a name."""
    out: list[IPNet] = []
    for net, mask, *_ in routes:
        _add(out, f"{net}/{mask or '255.255.255.255'}")
    for net, *_ in routes6:
        _add(out, net)
    return out


def vpn_networks(pushed) -> list[IPNet]:
    """The networks a push claims: its routes and the tunnel's own subnet."""
    out = route_networks(getattr(pushed, "routes", None) or (), getattr(pushed, "routes_ipv6", None) or ())
    ifc = getattr(pushed, "ifconfig", None)
    if ifc:
        local, other = ifc[0], ifc[1]
        if other and other.startswith("255."):
            _add(out, f"{local}/{other}")           # topology subnet: address and netmask
        else:
            _add(out, f"{local}/32")
            _add(out, f"{other}/32")                # net30 / p2p: the remote end
    ifc6 = getattr(pushed, "ifconfig_ipv6", None)
    if ifc6:
        _add(out, ifc6[0] if "/" in ifc6[0] else f"{ifc6[0]}/128")
    return out


def _add(out: list[IPNet], text: str) -> None:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return
    if net.prefixlen > 1:                          # 0/0, 0/1, 128/1 (redirect-gateway): not a claim
        out.append(net)
