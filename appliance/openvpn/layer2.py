"""The layer-2 server's addresses (dev tap): the pool, what is pushed, and the TAP device's own
address, as OpenVPN 2.6's helper.c expands `server` and `server-bridge` for a TAP device.

Why one place: the dispatcher (pool, pushes) and the server's device set-up (server_net.py) must
agree on the same expansion; config/d_layer2.py has already refused what 2.6 refuses.
"""
from __future__ import annotations

import ipaddress

from .addresspool import AddressPool, server_pool_range
from .config import Options


def layer2_pool(opts: Options, push: list[str]) -> tuple[AddressPool | None, list[str]]:
    """-> (the pool or None, the pushes with what 2.6 adds). With tap 2.6 pushes no `topology`.

    - `server NET MASK`: pool NET+2 .. last-but-one (`nopool` + `ifconfig-pool`: that one;
      `nopool` alone: none, addresses from ccd's ifconfig-push), push `route-gateway NET+1` (the
      TAP device's address);
    - `server-bridge IP MASK START END`: pool START..END, push `route-gateway IP`;
    - `server-bridge`: no pool, push `route-gateway dhcp`; `server-bridge nogw`: nothing;
    - `mode server` by hand: `ifconfig-pool START END MASK` if given, nothing pushed."""
    sb = opts.server_bridge
    if opts.server is not None:
        net, mask = opts.server
        if opts.server_nopool and not opts.ifconfig_pool:
            own = tap_address(opts)
            assert own is not None
            return None, [*push, f"route-gateway {own[0]}"]
        start, end = server_pool_range(ipaddress.IPv4Network(f"{net}/{mask}", strict=False), "subnet")
        if opts.ifconfig_pool:
            start, end = opts.ifconfig_pool[0], opts.ifconfig_pool[1]
        pool = AddressPool(net, mask, "subnet", start, end)
        return pool, [*push, f"route-gateway {pool.server_ip}"]
    if isinstance(sb, tuple):
        ip, mask, start, end = sb
        pool = AddressPool(ip, mask, "subnet", start, end)
        pool.server_ip = ip
        return pool, [*push, f"route-gateway {ip}"]
    if sb == "dhcp":
        return None, [*push, "route-gateway dhcp"]
    if sb is None and opts.ifconfig_pool is not None and opts.ifconfig_pool[2] is not None:
        start, end, mask = opts.ifconfig_pool
        pool = AddressPool(start, mask, "subnet", start, end)
        pool.server_ip = ""             # no address of ours in it (a bridge port)
        return pool, list(push)
    return None, list(push)


def tap_address(opts: Options) -> tuple[str, int] | None:
    """The TAP device's own address and prefix: `server`'s NET+1 only. With server-bridge (and by
    hand) 2.6 sets none: the device is a bridge port, the address is the bridge's."""
    if opts.server is None:
        return None
    net = ipaddress.IPv4Network(f"{opts.server[0]}/{opts.server[1]}", strict=False)
    return str(net.network_address + 1), net.prefixlen
