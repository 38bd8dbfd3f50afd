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


class AddressPool(_SharedLeases):
    """Tunnel addresses for clients (topology subnet: one address each; net30: a /30 each)."""

    def __init__(self, network: str, netmask: str, topology: str = "subnet",
                 start: str | None = None, end: str | None = None) -> None:
        self.net = ipaddress.IPv4Network(f"{network}/{netmask}", strict=False)
        self.topology = topology
        self.server_ip = str(self.net.network_address + 1)
        hosts = list(self.net.hosts())
        if topology == "subnet":
            lo = ipaddress.IPv4Address(start) if start else self.net.network_address + 2
            hi = ipaddress.IPv4Address(end) if end else hosts[-1] - 1 if len(hosts) > 2 else hosts[-1]
            self.free = [str(ipaddress.IPv4Address(i)) for i in range(int(lo), int(hi) + 1)]
            self._lo, self._hi, self._step = int(lo), int(hi), 1
        else:
            # net30, as OpenVPN's `server` expands it: the server keeps the first /30 (.1 peer .2),
            # the pool is .4 to .251 (in a /24), and the client in /30 number k gets base+4k+2
            # with peer base+4k+1: .6 peer .5, .10 peer .9, ...
            base = int(self.net.network_address)
            self.free = [str(ipaddress.IPv4Address(base + 4 * k + 2))
                         for k in range(1, self.net.num_addresses // 4 - 1)]
            self._lo, self._hi, self._step = base + 6, base + self.net.num_addresses - 6, 4
        # `free` in handing-out order, and as a set: membership was a scan of the list at every
        # connect (a /15 pool has 131,070 addresses).
        self._free_set = set(self.free)
        self.leased: set[str] = set()
        self.shared: dict[str, int] = {}     # leased address -> users beyond the first (share)

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

    def ifconfig_push(self, ip: str) -> str:
        if self.topology == "subnet":
            return f"ifconfig {ip} {self.net.netmask}"
        return f"ifconfig {ip} {ipaddress.IPv4Address(ip) - 1}"


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
        while self.next < self.net.num_addresses - 1:
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
        if ip in self.leased or not 2 <= n < self.net.num_addresses - 1:
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

