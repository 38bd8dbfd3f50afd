"""Checks of a TUN server's addressing once the whole file is read: `server NET MASK [nopool]`, or
its expansion written out by hand (`mode server` + `tls-server` + `ifconfig` + `ifconfig-pool`
+ the config's own `push` and `route` lines), as OpenVPN 2.6 checks them (options.c, pool.c).

Why its own module: what the two forms *mean* is decided once, in openvpn/serveraddressing.py;
here only what 2.6 refuses (or what could not work: a pool that pushes clients no address, or
hands out the server's own) fails at its line before anything starts. dev tap: d_layer2.py.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parser import ParseState

from ..addresspool import IFCONFIG_POOL_MAX as POOL_MAX   # at most this many addresses from start to end
POOL_MIN_PREFIX = 16  # 2.6's IFCONFIG_POOL_MIN_NETBITS: `server NET MASK` no wider than a /16


def check_pool_range(p: "ParseState", d: str, start: str, end: str) -> bool:
    """ifconfig-pool START END as 2.6 checks it at its line (pool.c ifconfig_pool_verify_range)."""
    lo, hi = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
    if lo > hi:
        p.err(d, f"start IP [{start}] is greater than end IP [{end}] (as OpenVPN 2.6)")
        return False
    if hi - lo >= POOL_MAX:
        p.err(d, f"address range is too large [{start} -> {end}]: at most {POOL_MAX} addresses (as OpenVPN 2.6)")
        return False
    return True


def _is_netmask(s: str) -> bool:
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{s}")
    except ValueError:
        return False
    return True


def finish_tun_server(p: "ParseState") -> None:
    """A `mode server` config with dev tun: `server`'s form or the written-out one."""
    from ..serveraddressing import server_addressing     # (it imports the config package)
    o = p.o
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if o.server is not None and o.ifconfig is not None:
        # 2.6's helper.c overwrites the line without a word; which address the TUN gets would
        # then depend on knowing that.
        p.err("ifconfig", "`server NETWORK NETMASK` sets the server's tunnel address itself (NETWORK+1): remove "
              "`ifconfig`, or write the server out without `server` (mode server, tls-server, ifconfig, "
              "ifconfig-pool)", line("ifconfig"))
        return
    if (o.server is None or o.server_nopool) and o.ifconfig_pool_persist is not None and o.ifconfig_pool is None \
            and o.ifconfig_ipv6_pool is None and o.server_ipv6 is None:
        p.err("ifconfig-pool-persist", "must be used with ifconfig-pool or ifconfig-ipv6-pool (as OpenVPN 2.6)",
              line("ifconfig_pool_persist"))
    topology = o.topology or "net30"
    if o.ifconfig_pool is not None and o.ifconfig_pool[2] is not None and topology != "subnet":
        p.err("ifconfig-pool", "the third parameter (netmask) is only valid with dev tap or topology subnet "
              "(as OpenVPN 2.6)", line("ifconfig_pool"))
        return
    if o.ifconfig is not None:
        local, second = o.ifconfig
        p.line = line("ifconfig")
        if topology == "subnet" and not _is_netmask(second):
            p.err("ifconfig", f"with topology subnet the second address is the netmask; {second} is none "
                  "(as OpenVPN 2.6)", line("ifconfig"))
            return
        if topology != "subnet" and local == second:
            p.err("ifconfig", "local and remote addresses must be different (as OpenVPN 2.6)", line("ifconfig"))
            return
        if topology != "subnet" and second.startswith("255."):
            p.note("ifconfig", f"with topology {topology} the second address is the peer's; {second} looks like a "
                   "netmask (OpenVPN 2.6 warns too): for a netmask say `topology subnet`")
    a = server_addressing(o)
    if a is None or a.pool is None:
        if a is not None and o.server_ipv6 is None and o.ifconfig_ipv6_pool is None:
            p.line = line("server") or line("mode")
            p.note("server" if o.server is not None else "mode", "no address pool: clients get addresses only "
                   "from a client-config-dir or client-connect `ifconfig-push` (as OpenVPN 2.6)")
        return
    at = line("ifconfig_pool") if o.ifconfig_pool is not None else line("server")
    d = "ifconfig-pool" if o.ifconfig_pool is not None else "server"
    pool = a.make_pool()
    if pool.size < 2:
        p.err(d, f"the IPv4 pool holds {pool.size} client(s); OpenVPN 2.6 needs at least 2", at)
        return
    if topology == "subnet" and a.pool_mask is None:
        p.err(d, "with topology subnet each client is pushed its address with a netmask, and there is none: "
              "give `ifconfig LOCAL NETMASK` or `ifconfig-pool START END NETMASK` (OpenVPN 2.6 would push no "
              "address)", at)
        return
    if topology == "p2p" and a.local is None:
        p.err(d, "with topology p2p each client is pushed the server's address as its peer, and there is none: "
              "give `ifconfig LOCAL REMOTE` (OpenVPN 2.6 would push no address)", at)
        return
    if a.local is not None and (pool.in_range(a.local) or (topology == "net30" and pool.in_range(
            str(ipaddress.IPv4Address((int(ipaddress.IPv4Address(a.local)) & ~3) + 2))))):
        p.err(d, f"the pool would hand out the server's own address {a.local}"
              f"{' (its /30)' if topology == 'net30' else ''} to a client: start it beyond", at)
