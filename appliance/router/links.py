"""Addresses and link state with pyroute2 (netlink; no `ip` subprocesses)."""
from __future__ import annotations

from pyroute2 import IPRoute


def configure_tun(name: str, address: str, prefixlen: int, mtu: int, peer: str | None = None) -> None:
    """Set the tunnel address (topology subnet: addr/prefix; net30/p2p: local with a peer), MTU, up."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise RuntimeError(f"no such interface {name}")
        i = idx[0]
        ipr.flush_addr(index=i)
        if peer:
            ipr.addr("add", index=i, local=address, address=peer, prefixlen=32)
        else:
            ipr.addr("add", index=i, address=address, prefixlen=prefixlen)
        ipr.link("set", index=i, mtu=mtu, state="up")
