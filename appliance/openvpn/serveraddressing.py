"""A TUN server's IPv4 addressing: its own TUN address, the clients' pool, and what the server
pushes and routes for them -- whether the config says `server NET MASK` or writes that macro's
expansion out by hand (`mode server` + `tls-server` + `ifconfig` + `ifconfig-pool` + its own
`push` and `route` lines: OPNsense's p2p/net30 choice, EdgeRouter/VyOS, older guides).

Why one place: OpenVPN 2.6's helper.c turns `server` into exactly those lines and the server
(multi.c, pool.c) then reads only the lines, so the two forms must end in one decision here. The
dispatcher (pool, pushes: settings.py, clientpush.py), the TUN set-up (gateway/server_net.py)
and the scripts' environment (gateway/ops.py) all read it; dev tap is layer2.py's.
"""
from __future__ import annotations

import ipaddress

from ..frozen_record import FrozenRecord
from .addresspool import AddressPool, server_pool_range
from .config import Options


class Addressing(FrozenRecord):
    topology: str                              # subnet | net30 | p2p (2.6's default: net30)
    local: str | None                          # ifconfig's first: the server's TUN address
    second: str | None                         # ifconfig's second: the peer (net30, p2p) or netmask (subnet)
    pool: tuple[str, str] | None               # the pool's first and last address
    pool_mask: str | None                      # subnet: the netmask pushed with each address
    push: tuple[str, ...] = ()                 # what `server` pushes first: route-gateway, topology
    push_after: tuple[str, ...] = ()           # ... and after the client's ifconfig: its route
    routes: tuple[tuple[str, int], ...] = ()   # what `server` routes into the TUN (net30/p2p: NET)
    vpn_gateway: str | None = None             # route_vpn_gateway of the scripts' environment

    def make_pool(self) -> AddressPool | None:
        if self.pool is None:
            return None
        return AddressPool.of_range(self.topology, self.pool[0], self.pool[1], self.local, self.pool_mask)


def server_addressing(opts: Options) -> Addressing | None:
    """The TUN server's addressing (None for dev tap: layer2.py). `server NET MASK [nopool]` as
    2.6's helper.c expands it; otherwise the lines as written, with nothing added (2.6 pushes
    only the config's own `push` lines then, and routes only its `route` lines)."""
    if opts.dev_type == "tap":
        return None
    topology = opts.topology or "net30"
    own_pool = (opts.ifconfig_pool[0], opts.ifconfig_pool[1]) if opts.ifconfig_pool else None
    if opts.server is None:
        local, second = opts.ifconfig if opts.ifconfig else (None, None)
        mask = (opts.ifconfig_pool[2] if opts.ifconfig_pool else None) or (second if topology == "subnet" else None)
        return Addressing(topology, local, second, own_pool, mask if topology == "subnet" else None,
                          vpn_gateway=second if topology != "subnet" else None)
    net = ipaddress.IPv4Network(f"{opts.server[0]}/{opts.server[1]}", strict=False)
    local = str(net.network_address + 1)
    # `server`'s own pool unless `nopool`, then an ifconfig-pool line's (without `nopool` the
    # parser refuses the line, as 2.6)
    pool = own_pool or (None if opts.server_nopool else server_pool_range(net, topology))
    push, after = _macro_pushes(net, topology, opts.client_to_client)
    if topology == "subnet":
        return Addressing(topology, local, str(net.netmask), pool, str(net.netmask), push, after,
                          vpn_gateway=str(net.network_address + 2))
    return Addressing(topology, local, str(net.network_address + 2), pool, None, push, after,
                      routes=((str(net.network_address), net.prefixlen),),
                      vpn_gateway=str(net.network_address + 2))


def _macro_pushes(net: ipaddress.IPv4Network, topology: str,
                  client_to_client: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What `server NET MASK` pushes (helper.c): subnet `route-gateway NET+1`; net30 and p2p the
    whole network with client-to-client, else net30 the server's address (outside the client's
    /30) and p2p nothing; and the topology. (Order: as our server has always sent them.)"""
    local = str(net.network_address + 1)
    if topology == "subnet":
        return (f"route-gateway {local}", "topology subnet"), ()
    if client_to_client:
        return (f"topology {topology}",), (f"route {net.network_address} {net.netmask}",)
    return (f"topology {topology}",), ((f"route {local}",) if topology == "net30" else ())


def pool_pushes(pool: AddressPool | None, client_to_client: bool,
                layer2: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Settings made without a config (the engine tests'): what `server` would push for `pool`
    (a `server` pool: its network is the server's). dev tap's pushes are layer2.py's."""
    if pool is None or layer2:
        return (), ()
    return _macro_pushes(pool.net, pool.topology, client_to_client)
