"""A hostile server's pushes applied to the host (appliance/gateway/tunnel.py `TunnelNetwork`,
fuzz48): addresses, routes, redirect-gateway and its flags, route-ipv6, block-ipv6, route-metric,
route-gateway, tun-mtu -- on a fake kernel.

Why a target of its own: tunnel.py is the only client code that changes the host's network from
what a server sends, and no target reached it (coverage.py over every target's seeds and 2,000
mutations each: 0 of its 246 branches): the in-memory worlds use lab/fakes.py's stand-in. Its
unit tests run against the kernel in a namespace (root), one push at a time.

`tunnel-push`: the input's first byte picks the profile (client mode or a router with a LAN,
route-noexec, a profile route, block-ipv6), the rest is PUSH_REPLY texts split at SEP, each
parsed as the client parses it (parse_push_reply_untrusted, with the profile's options, and
fatal_push's refusals skipped), then applied in turn as reconnects apply them -- from the server
at SERVER, or (a text's first byte odd) from a second server -- and any route-delay's routes put
in. The kernel is a model (addresses, routes with their EEXIST rule, route lookups by longest
prefix) behind `Rtnl` and `link_index`, the TUN device a fake; both are swapped in for the call.

Oracles: only the errors the client takes as "the push cannot be set up here" (RuntimeError,
ValueError, OSError with NetlinkError) escape `apply` -- a TypeError, KeyError, IndexError or
AttributeError is a finding; after every push that applied: the server's address is never
routed into the TUN (its own packets would loop) unless route-noexec, no LAN host is routed into
it, the TUN holds exactly the push's addresses, the host's routes are those the same push gives a
fresh client on a fresh host (review48d); after `close`, the host's addresses and routes are what
they were before the first push (nothing left behind, nothing of the host's removed).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from contextlib import contextmanager

SEP = b"\xfe\xfd"
SERVER, SERVER2 = "198.18.60.9", "198.18.61.9"
WAN_GW = "198.18.60.1"
LAN_HOST = "198.18.80.77"
TUN, WAN, LAN = 7, 2, 3
NAMES = {"lo": 1, "wan": WAN, "lan": LAN, "tun0": TUN, "tap0": TUN}


def _net(dst: str, plen: int):
    return ipaddress.ip_network(f"{dst}/{plen}", strict=False)


class Kernel:
    """Addresses and routes of the fake host, as rtnetlink's requests change them."""

    def __init__(self) -> None:
        self.addrs: set[tuple[int, str, int, int]] = {(socket.AF_INET, "198.18.60.2", 24, WAN),
                                                      (socket.AF_INET, "198.18.80.1", 24, LAN),
                                                      (socket.AF_INET6, "2001:db8:60::2", 64, WAN)}
        # (network, prefixlen, oif, gateway, priority, rtype)
        self.routes: set[tuple] = {("0.0.0.0", 0, WAN, WAN_GW, 0, 1), ("::", 0, WAN, "2001:db8:60::1", 1024, 1)}

    def snapshot(self) -> tuple:
        return frozenset(self.addrs), frozenset(self.routes)

    def lookup(self, dst: str) -> tuple[str | None, int | None]:
        ip = ipaddress.ip_address(dst)
        best = None
        cands = [(n, p, o, g, pr or 0, t) for (n, p, o, g, pr, t) in self.routes]
        cands += [(a, p, i, None, 0, 1) for (_f, a, p, i) in self.addrs]
        for n, p, o, g, pr, t in sorted(cands, key=str):     # the same answer in every process
            net = _net(n, p)
            if net.version != ip.version or ip not in net:
                continue
            if best is None or p > best[0] or (p == best[0] and pr < best[1]):
                best = (p, pr, o, g, t)
        if best is None:
            raise _err(errno.ENETUNREACH)
        if best[4] != 1:
            raise _err(errno.ENETUNREACH)
        return best[3], best[2]


def _err(code: int):
    from appliance.tun.rtnl import NetlinkError
    return NetlinkError(code, errno.errorcode.get(code, "error"))


class FakeRtnl:
    """appliance/tun/rtnl.Rtnl's calls, answered by the current Kernel (KERNEL[0])."""
    KERNEL: list = [None]

    def __init__(self) -> None:
        self.k: Kernel = FakeRtnl.KERNEL[0]
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _index(self, index: int) -> None:
        if index not in NAMES.values():
            raise _err(errno.ENODEV)

    def link_set(self, index: int, mtu=None, up=None, address=None) -> None:
        self._index(index)
        if mtu is not None and not 68 <= mtu <= 65535:
            raise _err(errno.EINVAL)

    def addr_add(self, index: int, address: str, prefixlen: int, peer=None, flags: int = 0) -> None:
        self._index(index)
        ip = ipaddress.ip_address(address)          # rtnl's _ip_bytes: ValueError as the real one
        if not 0 <= prefixlen <= ip.max_prefixlen:
            raise _err(errno.EINVAL)
        fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        a = (fam, str(ip), prefixlen, index)
        if any(x[1] == a[1] and x[3] == index for x in self.k.addrs):
            raise _err(errno.EEXIST)
        self.k.addrs.add(a)

    def addr_del(self, index: int, address: str, prefixlen: int, peer=None) -> None:
        ip = str(ipaddress.ip_address(address))
        hit = [x for x in self.k.addrs if x[1] == ip and x[3] == index]
        if not hit:
            raise _err(errno.EADDRNOTAVAIL)
        self.k.addrs.discard(hit[0])

    def addrs(self, family: int = socket.AF_UNSPEC, index=None):
        return sorted(a for a in self.k.addrs if (not family or a[0] == family) and (index is None or a[3] == index))

    def addr_flush(self, index: int) -> None:
        self.k.addrs = {a for a in self.k.addrs if a[3] != index}

    def route_add(self, dst: str, prefixlen: int, oif=None, gateway=None, priority=None, rtype: int = 1) -> None:
        ip = ipaddress.ip_address(dst)
        if not 0 <= prefixlen <= ip.max_prefixlen:
            raise _err(errno.EINVAL)
        if priority is not None and not 0 <= priority <= 0xFFFFFFFF:
            raise _err(errno.EINVAL)         # (rtnl's struct.pack would fail first)
        if gateway is not None and ipaddress.ip_address(gateway).version != ip.version:
            raise _err(errno.EINVAL)
        if oif is not None:
            self._index(oif)
        if rtype == 1 and oif is None and gateway is None:
            raise _err(errno.ENODEV)
        net = str(_net(dst, prefixlen).network_address)
        if any(r[0] == net and r[1] == prefixlen and (r[4] or 0) == (priority or 0) for r in self.k.routes):
            raise _err(errno.EEXIST)
        if gateway is not None and oif is None:
            oif = self.k.lookup(gateway)[1]
        self.k.routes.add((net, prefixlen, oif, gateway, priority, rtype))

    def route_del(self, dst: str, prefixlen: int, oif=None, gateway=None, priority=None, rtype: int = 1) -> None:
        net = str(_net(dst, prefixlen).network_address)
        # As the kernel's fib_table_delete: without RTA_PRIORITY the first alias in priority order
        # (the lowest) that matches the rest, with it that priority only.
        hit = sorted((r for r in self.k.routes if r[0] == net and r[1] == prefixlen
                      and (priority is None or (r[4] or 0) == priority)
                      and (oif is None or r[2] == oif) and (gateway is None or r[3] == gateway)),
                     key=lambda r: (r[4] or 0, str(r)))
        if not hit:
            raise _err(errno.ESRCH)
        self.k.routes.discard(hit[0])

    def route_get(self, dst: str):
        return self.k.lookup(dst)

    def default_routes(self, family: int):
        v = 6 if family == socket.AF_INET6 else 4
        return [(254, o, g, pr or 0) for (n, p, o, g, pr, t) in sorted(self.k.routes, key=str)
                if p == 0 and ipaddress.ip_address(n).version == v and t == 1]


class FakeTun:
    def __init__(self, name: str = "tun%d", vnet_hdr: bool = True, mtu: int = 1500, tso=None, tap: bool = False):
        self.name = "tap0" if tap else "tun0"
        self.mtu, self.vnet_hdr, self.tap, self.closed, self.local = mtu, vnet_hdr, tap, False, None

    def note_local(self, local: str) -> None:
        self.local = local

    def close(self) -> None:
        self.closed = True

    def fileno(self) -> int:
        return -1


def _link_index(name: str) -> int:
    if name not in NAMES:
        raise RuntimeError(f"no such interface {name}")
    return NAMES[name]


@contextmanager
def fake_host(kernel: Kernel):
    """Rtnl, link_index and TunDevice of tunnel.py and the modules it calls, swapped for the fakes."""
    from appliance.gateway import tunnel
    from appliance.router import links, routes
    swaps = [(tunnel, "Rtnl", FakeRtnl), (links, "Rtnl", FakeRtnl), (routes, "Rtnl", FakeRtnl),
             (tunnel, "link_index", _link_index), (links, "link_index", _link_index),
             (routes, "link_index", _link_index), (tunnel, "TunDevice", FakeTun)]
    old = [(m, n, getattr(m, n)) for m, n, _ in swaps]
    FakeRtnl.KERNEL[0] = kernel
    for m, n, v in swaps:
        setattr(m, n, v)
    try:
        yield
    finally:
        for m, n, v in old:
            setattr(m, n, v)
        FakeRtnl.KERNEL[0] = None


PROFILES = (
    "client\ndev tun\nremote 198.18.60.9\n",
    "client\ndev tun\nremote 198.18.60.9\nroute-noexec\n",
    "client\ndev tun\nremote 198.18.60.9\nroute 198.18.90.0 255.255.255.0\nroute-metric 50\n",
    "client\ndev tun\nremote 198.18.60.9\nblock-ipv6\nroute-ipv6 2001:db8:99::/48\n",
    "client\ndev tun\nremote 198.18.60.9\nroute-delay 2\n",
    "client\ndev tap\nremote 198.18.60.9\n",
)
ALLOWED = (RuntimeError, ValueError, OSError)


def make_tunnel_push():
    from appliance.gateway import tunnel
    from appliance.gateway.push_fatal import fatal_push
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.errors import BadPacket
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    from appliance.openvpn.profile_push import with_profile
    from . import harness as h
    pki = h.pki()
    blocks = (f"<ca>\n{pki['ca'].decode()}</ca>\n<cert>\n{pki['client'][0].decode()}</cert>\n"
              f"<key>\n{pki['client'][1].decode()}</key>\n")
    profiles = [parse_config(p + blocks) for p in PROFILES]

    def one(data: bytes) -> None:
        if not data:
            return
        which = data[0] % (2 * len(PROFILES))
        opts = profiles[which % len(PROFILES)]
        lan = ("198.18.80.0/24",) if which >= len(PROFILES) else ()
        k = Kernel()
        before = k.snapshot()
        with fake_host(k):
            net = tunnel.TunnelNetwork(opts, lan)
            net.record = None                  # the route record's file: not on this host's disk
            try:
                for text in data[1:].split(SEP)[:6]:
                    remote = SERVER2 if text[:1] and text[0] & 1 else SERVER
                    try:
                        pushed = parse_push_reply_untrusted("PUSH_REPLY," + text[1:].decode("utf-8", "replace"))
                    except BadPacket:
                        continue
                    pushed = with_profile(opts, pushed)
                    if fatal_push(opts, pushed) is not None:
                        continue
                    net.reach(remote)
                    try:
                        net.apply(pushed, remote)
                        if net.routes_waiting is not None:
                            net.add_waiting_routes(WAN_GW)
                    except ALLOWED:
                        _check_server(k, net, remote, opts, applied=False)
                        continue
                    _check_server(k, net, remote, opts, applied=True)
                    _check_applied(k, net, pushed, lan)
                    _check_as_fresh(k, opts, lan, pushed, remote)
            finally:
                net.close()
        assert k.snapshot() == before, (f"after close the host differs: addresses {sorted(k.addrs ^ before[0])}, "
                                        f"routes {sorted(k.routes ^ before[1], key=str)}")
    return one


def _check_server(k: Kernel, net, remote: str, opts, applied: bool) -> None:
    if opts.route_noexec or net.tun is None:
        return
    try:
        _gw, oif = k.lookup(remote)
    except OSError:
        return
    assert oif != TUN, f"the server {remote} is routed into the TUN after a push ({'applied' if applied else 'failed'})"


def _check_applied(k: Kernel, net, pushed, lan) -> None:
    if lan:
        try:
            oif = k.lookup(LAN_HOST)[1]
        except OSError:
            oif = None
        assert oif == LAN, f"a LAN host is routed out of interface {oif}, not the LAN's"
    on_tun = {a[1] for a in k.addrs if a[3] == TUN}
    want = set()
    if pushed is not None and pushed.ifconfig is not None:
        want.add(str(ipaddress.ip_address(pushed.ifconfig[0])))
        if pushed.ifconfig_ipv6 is not None:
            want.add(str(ipaddress.ip_address(pushed.ifconfig_ipv6[0].partition("/")[0])))
    assert on_tun == want, f"the TUN holds {sorted(on_tun)} after a push of {sorted(want)}"


def _check_as_fresh(k: Kernel, opts, lan, pushed, remote: str) -> None:
    """The host's routes after a push are those the same push from the same server gives a fresh
    client on a fresh host: what came before (another server's push, reach()'s host routes for a
    failover) leaves nothing of its own behind and takes nothing of this push's (review48d: a
    failback's same push was taken for applied, reach() having changed the routes)."""
    from appliance.gateway import tunnel
    k2 = Kernel()
    FakeRtnl.KERNEL[0] = k2
    try:
        net2 = tunnel.TunnelNetwork(opts, lan)
        net2.record = None
        try:
            net2.apply(pushed, remote)
            if net2.routes_waiting is not None:
                net2.add_waiting_routes(WAN_GW)
            fresh = set(k2.routes)
        except ALLOWED:
            fresh = None                    # fails on a fresh host too: nothing to compare
        finally:
            net2.close()
    finally:
        FakeRtnl.KERNEL[0] = k
    if fresh is not None:
        assert k.routes == fresh, (f"a push's routes depend on what came before: more {sorted(k.routes - fresh, key=str)}, "
                                   f"missing {sorted(fresh - k.routes, key=str)}")


def seeds() -> list[bytes]:
    base = b"topology subnet,ifconfig 10.8.0.2 255.255.255.0"
    pushes = [
        base,
        base + b",redirect-gateway def1",
        base + b",redirect-gateway def1 bypass-dhcp block-local,route 198.18.60.0 255.255.255.0",
        base + b",route 198.18.60.9 255.255.255.255,route 198.18.0.0 255.254.0.0 vpn_gateway 5",
        base + b",route 198.18.80.0 255.255.255.128,route 198.18.80.77 255.255.255.255 net_gateway",
        base + b",ifconfig-ipv6 fd00:8::2/64 fd00:8::1,route-ipv6 ::/0,redirect-gateway ipv6",
        base + b",block-ipv6,redirect-gateway def1 !ipv4",
        b"topology net30,ifconfig 10.8.0.6 10.8.0.5,route 10.9.0.0 255.255.0.0",
        b"topology p2p,ifconfig 10.8.0.6 10.8.0.5,route-gateway 10.8.0.5,route 0.0.0.0 0.0.0.0",
        base + b",route-metric 99999999999,route 10.9.0.0 255.255.0.0 10.8.0.1 4294967296",
        b"topology subnet,ifconfig 198.18.60.9 255.255.255.0",
        b"topology subnet,ifconfig 198.18.60.2 255.255.255.0",
        b"topology subnet,ifconfig 198.18.60.1 255.255.0.0",
        base + b",tun-mtu 1400,route 2000:: 224.0.0.0,route fd00:71:: 255.255.0.0 net_gateway",
        base + b",route-gateway 10.8.0.1,redirect-private def1,route 10.0.0.0 255.0.0.0",
        b"topology subnet,ifconfig 10.0.0.2 255.0.0.0,route 198.18.0.0 255.255.0.0",
        b"ifconfig 10.8.0.2 255.255.255.0",
        b"",
    ]
    out = []
    for i, p in enumerate(pushes):
        out.append(bytes([i % 12]) + b"\x00" + p)
    out.append(b"\x00" + SEP.join(b"\x00" + p for p in pushes[:4]) + SEP + b"\x01" + pushes[1])
    out.append(b"\x02" + SEP.join(b"\x00" + p for p in (pushes[2], pushes[2], pushes[5], pushes[0])))
    out.append(b"\x06" + SEP.join(b"\x00" + p for p in (pushes[1], pushes[4], pushes[14])))
    out.append(b"\x0b" + SEP.join(b"\x01" + p for p in (pushes[5], pushes[6], pushes[3])))
    out.append(b"\x05" + SEP.join(b"\x00" + p for p in (pushes[1], pushes[16], b"route-gateway 10.8.0.1," + pushes[16])))
    # review48d: a failback -- A's push routes B's address into the tunnel, B's push fails, A's again
    to_b = base + b",redirect-gateway def1,route 198.18.61.9 255.255.255.255"
    out.append(b"\x00" + SEP.join((b"\x00" + to_b, b"\x01" + pushes[17], b"\x00" + to_b)))
    return out
