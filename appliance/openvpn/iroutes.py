"""The server's iroutes: the networks behind clients (ccd `iroute`), looked up longest prefix
first, as OpenVPN's route table does -- for the destination of a packet (which client gets it)
and for its source (whether the sending client may use it, server.py _check_sources).

Why a table by prefix length and not a list: the lookup runs for every packet to or from a
network behind a client, and a scan of every client's networks cost about 50 us per packet with
200 of them; here it is one dictionary probe per prefix length in use.

As in OpenVPN, a newer client's route to the same network replaces the older one's, and leaving
removes only a client's own routes. One table per family: IrouteTable() for `iroute`,
IrouteTable(128) for `iroute-ipv6` (the same rules, OpenVPN keeps both in one table).
"""
from __future__ import annotations

import ipaddress
from typing import Callable, Iterator


class IrouteTable:
    def __init__(self, width: int = 32) -> None:
        self.width = width                                 # address bits: 32 (IPv4) or 128 (IPv6)
        self._net = ipaddress.IPv4Network if width == 32 else ipaddress.IPv6Network
        self._by_len: dict[int, dict[int, object]] = {}    # prefix length -> network >> host bits -> client
        # The prefix lengths in use, longest first; empty: no iroutes (read per packet by the
        # dispatcher as a plain attribute: `not table` costs a Python call to __bool__).
        self.lens: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.lens)

    def __iter__(self) -> Iterator[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, object]]:
        for plen in self.lens:
            for key, owner in self._by_len[plen].items():
                yield self._net((key << (self.width - plen), plen)), owner

    def add(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, owner: object) -> None:
        plen = net.prefixlen
        table = self._by_len.get(plen)
        if table is None:
            table = self._by_len[plen] = {}
            self.lens = sorted(self._by_len, reverse=True)
        table[int(net.network_address) >> (self.width - plen)] = owner

    def remove(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, owner: object) -> None:
        """`owner`'s route to `net`, if it still holds it (a newer client's stays)."""
        plen = net.prefixlen
        table = self._by_len.get(plen)
        key = int(net.network_address) >> (self.width - plen)
        if table is None or table.get(key) is not owner:
            return
        del table[key]
        if not table:
            del self._by_len[plen]
            self.lens = sorted(self._by_len, reverse=True)

    def reconcile(self, live: Callable[[object], bool]) -> int:
        """The routes of owners no longer live (`live(owner)` false) removed: what our bug while
        forgetting a client left (its remove() skipped), the client's networks otherwise routed
        to a gone session for ever. Returns how many were removed."""
        gone = 0
        for plen in list(self._by_len):
            table = self._by_len[plen]
            for key in [k for k, owner in table.items() if not live(owner)]:
                del table[key]
                gone += 1
            if not table:
                del self._by_len[plen]
        if gone:
            self.lens = sorted(self._by_len, reverse=True)
        return gone

    def lookup(self, addr: bytes) -> object | None:
        """The client whose network holds this address (4 or 16 bytes, as in a header), longest
        prefix first; None if none does."""
        a = int.from_bytes(addr, "big")
        by_len, width = self._by_len, self.width
        for plen in self.lens:
            owner = by_len[plen].get(a >> (width - plen))
            if owner is not None:
                return owner
        return None
