"""Tunnel address pools of the server (`server`, `ifconfig-pool`, `server-ipv6`), as OpenVPN lays them out."""
from __future__ import annotations

import ipaddress


class _SharedLeases:
    """How many clients hold a leased address beyond the first (an ifconfig-push or
    ifconfig-ipv6-push of an address in use, the operator's mistake): it stays leased until the
    last of them releases it. One rule for both families."""

    shared: dict[str, int]

    def _share(self, ip: str) -> None:
        self.shared[ip] = self.shared.get(ip, 0) + 1

    def _unshare(self, ip: str | None) -> bool:
        """One holder of a shared `ip` gone: True when others still hold it (nothing freed)."""
        n = self.shared.get(ip or "", 0)
        if not n:
            return False
        if n > 1:
            self.shared[ip] = n - 1
        else:
            del self.shared[ip]
        return True

    leased: set[str]

    def release(self, ip: str | None) -> None:
        raise NotImplementedError

    def reconcile(self, held: dict[str, int]) -> int:
        """Make the books say what the live sessions hold (`held`: address -> how many records
        hold it as their lease): an address no session holds is released, a shared count above
        its holders lowered. After our bug in a release (ServerDispatcher.reconcile); returns
        how many addresses were corrected."""
        fixed = 0
        for ip in [ip for ip in self.leased if ip not in held]:
            self.shared.pop(ip, None)
            self.release(ip)
            fixed += 1
        for ip, n in held.items():
            if ip in self.leased and self.shared.get(ip, 0) > n - 1:
                if n > 1:
                    self.shared[ip] = n - 1
                else:
                    self.shared.pop(ip, None)
                fixed += 1
        return fixed


def server_pool_range(net: ipaddress.IPv4Network, topology: str) -> tuple[str, str]:
    """`server NET MASK`'s pool, as 2.6's helper.c lays it out: NET+2 to the last-but-one address
    in subnet (and dev tap); NET+4 to 4 below the broadcast address with net30 and p2p (a /29: up
    to it), the first /30 being the server's."""
    if topology == "subnet":
        return str(net.network_address + 2), str(net.broadcast_address - 1)
    return str(net.network_address + 4), str(net.broadcast_address - (0 if net.prefixlen >= 29 else 4))


class AddressPool(_SharedLeases):
    """Tunnel addresses for clients, as OpenVPN 2.6's pool.c hands them out: one address each
    (topology subnet and p2p, and dev tap), or a /30 each (net30: the client gets base+4k+2 with
    its peer base+4k+1, the /30s counted from `start` rounded down to a /30)."""

    def __init__(self, network: str, netmask: str, topology: str = "subnet",
                 start: str | None = None, end: str | None = None) -> None:
        """`server NETWORK NETMASK`'s pool (dev tap's and topology subnet's from NET+2, net30's
        .4 to .251 in a /24), or `start`..`end` within that network."""
        net = ipaddress.IPv4Network(f"{network}/{netmask}", strict=False)
        lo, hi = server_pool_range(net, topology)
        self._fill(topology, start or lo, end or hi, str(net.network_address + 1), str(net.netmask))
        self.net = net

    @classmethod
    def of_range(cls, topology: str, start: str, end: str, server_ip: str | None,
                 push_mask: str | None) -> "AddressPool":
        """A pool laid out by its first and last address (`ifconfig-pool START END [MASK]`, or
        `server`'s expansion: serveraddressing.py). `server_ip`: the server's TUN address (p2p
        pushes it as each client's peer); `push_mask`: the netmask subnet pushes."""
        pool = cls.__new__(cls)
        pool._fill(topology, start, end, server_ip or "", push_mask)
        return pool

    def _fill(self, topology: str, start: str, end: str, server_ip: str, mask: str | None) -> None:
        self.topology = topology
        self.server_ip = server_ip
        self.push_mask = mask
        lo, hi = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
        if topology == "net30":
            base = lo & ~3
            size = (((hi | 3) + 1) - base) >> 2
            self.free = [str(ipaddress.IPv4Address(base + 4 * k + 2)) for k in range(max(size, 0))]
            self._lo, self._hi, self._step = base + 2, base + 4 * max(size - 1, 0) + 2, 4
        else:
            self.free = [str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1)]
            self._lo, self._hi, self._step = lo, hi, 1
        # The network the pool's addresses are reported in (scripts' ifconfig_pool_netmask, a tap
        # server's status): the pushed mask's, else the /30s'.
        self.net = ipaddress.IPv4Network(f"{start}/{mask or '255.255.255.252'}", strict=False)
        # `free` in handing-out order, and as a set: membership was a scan of the list at every
        # connect (a /15 pool has 131,070 addresses).
        self._free_set = set(self.free)
        self.leased: set[str] = set()
        self.shared: dict[str, int] = {}     # leased address -> users beyond the first (share)

    @property
    def size(self) -> int:
        """How many clients the pool's range holds (2.6 refuses one of fewer than 2)."""
        return (self._hi - self._lo) // self._step + 1 if self._hi >= self._lo else 0

    def lease(self, want: str | None = None) -> str | None:
        if want is not None:
            if want in self.leased:
                return None
            self.leased.add(want)
            if want in self._free_set:
                self._free_set.discard(want)
                self.free.remove(want)
            return want
        while self.free:
            ip = self.free.pop(0)
            self._free_set.discard(ip)
            if ip not in self.leased:
                self.leased.add(ip)
                return ip
        return None

    def lease_free(self, ip: str | None) -> str | None:
        """That address if the pool has it free (ifconfig-pool-persist), else None."""
        if ip is None or not self.is_free(ip):
            return None
        return self.lease(ip)

    def is_free(self, ip: str) -> bool:
        return ip in self._free_set and ip not in self.leased

    def in_range(self, ip: str) -> bool:
        """Whether `ip` is one of the pool's dynamic addresses (an ifconfig-push address may lie
        in the network but outside them)."""
        n = int(ipaddress.IPv4Address(ip))
        return self._lo <= n <= self._hi and (n - self._lo) % self._step == 0

    def share(self, ip: str) -> None:
        """One more client on a leased address (an ifconfig-push of an address in use, the
        operator's mistake): it stays leased until the last of them releases it."""
        if ip in self.leased:
            self._share(ip)

    def release(self, ip: str | None) -> None:
        """One client no longer uses `ip`; with the last, it is free. Only an address of the
        dynamic range goes back to `free`: a static one (ifconfig-push outside the range) handed
        out later would be taken back from its new holder when its own client returns."""
        if self._unshare(ip):
            return
        if ip is not None and ip in self.leased:
            self.leased.discard(ip)
            if self.in_range(ip) and ip not in self._free_set:
                self.free.append(ip)
                self._free_set.add(ip)

    def peer(self, ip: str) -> str | None:
        """The second address pushed with `ip` (multi.c): net30 its /30's other host, p2p the
        server's own TUN address; None in subnet (the netmask goes there)."""
        if self.topology == "net30":
            return str(ipaddress.IPv4Address(ip) - 1)
        if self.topology == "p2p":
            return self.server_ip or None
        return None

    def ifconfig_push(self, ip: str) -> str:
        if self.topology == "subnet":
            return f"ifconfig {ip} {self.push_mask}"
        return f"ifconfig {ip} {self.peer(ip)}"


IFCONFIG_POOL_MAX = 65536      # OpenVPN 2.6 pool.h: the most addresses one pool hands out


class AddressPool6(_SharedLeases):
    """IPv6 tunnel addresses (`server-ipv6`): the server takes ::1, clients ::1000 upwards, as OpenVPN.
    Or OpenVPN's manual form (`ifconfig-ipv6 ADDR/BITS REMOTE` + `ifconfig-ipv6-pool BASE/BITS`):
    `start` the pool's base, `server_ip` and `push_bits` the server's own address and its bits,
    which the clients are pushed with (multi.c: push_ifconfig_ipv6_netbits = ifconfig_ipv6_netbits)."""

    def __init__(self, network: str, start: str | None = None, server_ip: str | None = None,
                 push_bits: int | None = None) -> None:
        self.net = ipaddress.IPv6Network(network, strict=False)
        self.server_ip = server_ip or str(self.net.network_address + 1)
        self.push_bits = push_bits if push_bits is not None else self.net.prefixlen
        if start is None:
            first = 0x1000 if self.net.num_addresses > 0x2000 else 2
        else:
            first = int(ipaddress.IPv6Address(start)) - int(self.net.network_address)
            if first & 0xFFFFFFFF == 0:
                first += 1            # as OpenVPN's pool.c: not the subnet's anycast address
        self.first = self.next = first
        # OpenVPN 2.6 (pool.c, IFCONFIG_POOL_MAX): a pool in a network wider than /112 holds 65,536
        # addresses from its first, silently; an IPv6-only server lets in no more with an address.
        last = self.net.num_addresses - 1
        self.end = min(last, first + IFCONFIG_POOL_MAX) if self.net.prefixlen < 112 else last
        self.free: list[int] = []
        self.leased: set[str] = set()
        self.shared: dict[str, int] = {}     # leased address -> users beyond the first (lease_static)

    def lease(self) -> str | None:
        """A released address first, else the next never handed out; either skips one leased
        meanwhile through lease_wanted."""
        while self.free:
            ip = str(self.net.network_address + self.free.pop(0))
            if ip not in self.leased:
                self.leased.add(ip)
                return ip
        while self.next < self.end:
            ip = str(self.net.network_address + self.next)
            self.next += 1
            if ip not in self.leased and ip != self.server_ip:
                self.leased.add(ip)
                return ip
        return None

    def lease_wanted(self, ip: str) -> str | None:
        """That address if it is in the pool and free (ifconfig-pool-persist), else None. The
        addresses below it stay where they are (`next` reaches them): listing them as free cost
        the server a list of every address between, 2**40 of them for one far into a /64 (its
        loop hung and its memory ran out at that client's connect)."""
        try:
            addr = ipaddress.IPv6Address(ip)
        except ValueError:
            return None
        ip = str(addr)                       # one spelling, the one `leased` holds
        n = int(addr) - int(self.net.network_address)
        if ip in self.leased or not 2 <= n < self.end:
            return None
        if n in self.free:
            self.free.remove(n)
        self.leased.add(ip)
        return ip

    def lease_static(self, ip: str) -> bool:
        """A ccd ifconfig-ipv6-push address (canonical text): held, so the pool does not hand it
        out meanwhile; False if a client holds it already (then shared, as AddressPool.share:
        freed with the last of them). An address outside the pool's network is nobody's here."""
        if ipaddress.IPv6Address(ip) not in self.net:
            return True
        if ip in self.leased:
            self._share(ip)
            return False
        n = int(ipaddress.IPv6Address(ip)) - int(self.net.network_address)
        if n in self.free:
            self.free.remove(n)
        self.leased.add(ip)
        return True

    def release(self, ip: str | None) -> None:
        """One client no longer uses `ip`; with the last, it is free. Only an address of the
        dynamic range (from `first`) goes back to `free`: a static one below it handed out to
        somebody else would be taken back from them when its own client returns."""
        if self._unshare(ip):
            return
        if ip in self.leased:
            self.leased.discard(ip)
            k = int(ipaddress.IPv6Address(ip)) - int(self.net.network_address)
            if k >= self.first:
                self.free.append(k)

    def ifconfig_push(self, ip: str) -> str:
        return f"ifconfig-ipv6 {ip}/{self.push_bits} {self.server_ip}"

