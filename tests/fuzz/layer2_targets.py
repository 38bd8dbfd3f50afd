"""`layer2-config`: a dev tap server's addresses (openvpn/layer2.py) from the config lines that
choose them: `server`, `server-bridge`, `ifconfig-pool`, `nopool`, `mode server`, `push`.

Why: layer2.py had no target (fuzz48's measure: 0 %); it is where a TAP server's pool and pushed
gateway are made from lines the parser accepted, so a line it accepts and layer2.py cannot make
sense of fails at start instead of at its file:line -- or, as this target's first input showed,
a `server 10.0.0.0 255.0.0.0` built a pool of 16.7 million addresses (107 s, gigabytes) where
2.6.14 refuses anything wider than a /16.

Input: config lines appended to a tap server's head (text; the dict holds the directives). Only
ConfigError may escape the parse; for what it accepts, layer2_pool and tap_address never raise and:
- the pool holds at most 65,536 addresses (2.6's IFCONFIG_POOL_MAX), all inside the subnet
  the lines name (`server`'s network, server-bridge's IP/MASK, ifconfig-pool's START/MASK), never
  that subnet's network or broadcast address nor the TAP device's own address; a lease is in it;
- the pushes are the config's, unchanged, plus at most one `route-gateway` line: the device's
  address (`server`), server-bridge's IP, `dhcp` (server-bridge alone), none (`nogw`, by hand);
- the caller's push list is not changed.
"""
from __future__ import annotations

import ipaddress

HEAD = "tls-server\ndh none\n<ca>\nX\n</ca>\n<cert>\nX\n</cert>\n<key>\nX\n</key>\ndev tap\n"


def _no_files(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


def make_layer2_config():
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.config.server_written_out import POOL_MAX
    from appliance.openvpn.errors import ConfigError
    from appliance.openvpn.layer2 import layer2_pool, tap_address

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            o = parse_config(HEAD + text, "/p/s.conf", _no_files)
        except ConfigError:
            return
        if o.role != "server" or o.dev_type != "tap":
            return
        given = list(o.push)
        push_in = list(given)
        pool, push = layer2_pool(o, push_in)
        own = tap_address(o)
        assert push_in == given, "layer2_pool changed the caller's list"
        assert push[:len(given)] == given, (push, given)
        added = push[len(given):]
        assert len(added) <= 1 and all(a.startswith("route-gateway ") for a in added), added
        sb = o.server_bridge
        if o.server is not None:
            net = ipaddress.IPv4Network(f"{o.server[0]}/{o.server[1]}", strict=False)
            assert own is not None and own[0] == str(net.network_address + 1), own
            assert added == [f"route-gateway {own[0]}"], (added, own)
        elif isinstance(sb, tuple):
            net = ipaddress.IPv4Network(f"{sb[0]}/{sb[1]}", strict=False)
            assert added == [f"route-gateway {sb[0]}"], added
            assert own is None
        elif sb == "dhcp":
            assert added == ["route-gateway dhcp"] and pool is None, (added, pool)
            return
        else:
            assert added == [] and own is None, (added, own)
            if pool is None:
                return
            net = ipaddress.IPv4Network(f"{o.ifconfig_pool[0]}/{o.ifconfig_pool[2]}", strict=False)
        if pool is None:
            return
        addrs = [ipaddress.IPv4Address(a) for a in pool.free]
        assert 0 < len(addrs) <= POOL_MAX, len(addrs)
        bad = [str(a) for a in addrs if a not in net or a in (net.network_address, net.broadcast_address)
               or (own is not None and str(a) == own[0])]
        assert not bad, f"pool addresses outside {net} or of its own: {bad[:5]}"
        lease = pool.lease()
        assert lease is not None and ipaddress.IPv4Address(lease) in net, lease
    return one


def seeds() -> list[bytes]:
    return [s.encode() for s in (
        "server 198.19.0.0 255.255.255.0\n",
        "server 198.19.0.0 255.255.255.252\n",
        "server 198.19.0.0 255.255.0.0\n",
        "server 198.19.0.0 255.255.255.0 nopool\n",
        "server 198.19.0.0 255.255.255.0 nopool\nifconfig-pool 198.19.0.10 198.19.0.20\n",
        "server 198.19.0.0 255.255.255.0\nifconfig-pool 198.19.0.10 198.19.0.20\n",
        "server-bridge 198.19.1.1 255.255.255.0 198.19.1.100 198.19.1.200\n",
        "server-bridge 198.19.1.1 255.255.0.0 198.19.1.2 198.19.2.1\n",
        "server-bridge\n",
        "server-bridge nogw\n",
        "mode server\nifconfig-pool 198.19.2.10 198.19.2.20 255.255.255.0\n",
        "mode server\n",
        "server 198.19.0.0 255.255.255.0\npush \"route-gateway 198.19.0.9\"\npush \"dhcp-option DNS 198.19.0.1\"\n",
        "server 10.0.0.0 255.0.0.0\n",
        "server-bridge 10.0.0.1 255.0.0.0 10.0.0.2 10.255.255.254\n",
    )]


def dict_entries() -> list[str]:
    return ["server ", "server-bridge ", "ifconfig-pool ", " nopool", "mode server\n", "nogw", "push ",
            "route-gateway ", "255.255.255.0", "255.255.0.0", "255.255.255.252", "255.255.255.254", "255.0.0.0",
            "0.0.0.0", "255.255.255.255", "198.19.0.0", "198.19.0.1", "198.19.0.255", "\n", "dev tap\n",
            "topology subnet\n", "client-to-client\n", "duplicate-cn\n"]
