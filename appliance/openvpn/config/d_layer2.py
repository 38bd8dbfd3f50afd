"""The layer-2 server: `dev tap` with `server`, `server-bridge` or `mode server` by hand, as OpenVPN
2.6 expands and checks them (helper.c helper_client_server, options.c).

Why a module of its own: the TAP device's choice (`dev tap*` / `dev-type tap`) is made once here,
after the whole file is read (`dev-type` wins over the name, wherever it stands), and every rule
that differs between a layer-3 and a layer-2 server is checked in one place (`finish`).

What 2.6 does and we do:
- `server NET MASK` with tap: the TAP device gets NET+1/MASK, the pool is NET+2 .. the last but
  one address, each client is pushed `ifconfig IP MASK` and `route-gateway NET+1` (no `topology`);
  a network smaller than /30 is refused.
- `server-bridge IP MASK START END`: no address on the TAP device (an up script bridges it), the
  pool START..END is pushed as `ifconfig IP MASK` with `route-gateway IP`.
- `server-bridge` alone: no pool, clients take their addresses by DHCP over the bridge, and
  `route-gateway dhcp` is pushed; `server-bridge nogw`: the same without that push.
- `mode server` + `tls-server` + `dev tap`: a bridge by hand; `ifconfig-pool START END MASK` gives
  the pool (pushed `ifconfig IP MASK` only), without it clients use DHCP.
"""
from __future__ import annotations

import ipaddress

from .ccd import VLAN_MAX, VLAN_MIN
from .directives import Registry
from .parser import ParseState
from .server_written_out import check_pool_range

reg = Registry()

TAP_MTU_EXTRA_DEFAULT = 32      # OpenVPN 2.6's tun-mtu-extra for tap (options.c), counted by mssfix


@reg.apply("server-bridge", why="layer-2 server on a bridged TAP device (pool, or DHCP over the bridge)",
           sets=("server_bridge", "mode", "tls_server"), used_by="server", nargs=(0, 4))
def _server_bridge(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if not a:
        value: tuple[str, str, str, str] | str | None = "dhcp"
    elif a == ["nogw"]:
        value = "nogw"
    elif len(a) == 4:
        ip, mask, start, end = p.ip(d, a[0]), p.mask(d, a[1]), p.ip(d, a[2]), p.ip(d, a[3])
        if not (ip and mask and start and end):
            return
        net = ipaddress.IPv4Network(f"{ip}/{mask}", strict=False)
        for what, x in (("the pool's start", start), ("the pool's end", end)):
            if ipaddress.IPv4Address(x) not in net:
                p.err(d, f"{what} {x} is not in the subnet of {ip} {mask} (OpenVPN 2.6 refuses it too)")
                return
        if ipaddress.IPv4Address(start) > ipaddress.IPv4Address(end):
            p.err(d, f"the pool's start {start} is after its end {end}")
            return
        if not check_pool_range(p, d, start, end):     # at most 65,536 addresses, as 2.6.14 (helper.c)
            return
        value = (ip, mask, start, end)
    else:
        p.err(d, "expects IP NETMASK POOL-START POOL-END, `nogw`, or nothing (DHCP over the bridge)")
        return
    p.set("server_bridge", value)
    p.set("mode", "server")
    p.set("tls_server", True)


# 2.6's 802.1Q VLANs on a tap server (vlan.c; the switching: l2switch.py). Each decides who reaches whom
# (clients of different VLANs never see each other's frames): applied, never a no-op.
@reg.apply("vlan-tagging", why="tap server: 802.1Q VLANs per client, as OpenVPN 2.6 (each client on its "
           "ccd's vlan-pvid, tagged as such on the TAP device; clients of different VLANs kept apart)",
           sets=("vlan_tagging",), used_by="server", nargs=(0, 0), access=True)
def _vlan_tagging(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("vlan_tagging", True)


@reg.apply("vlan-accept", why="vlan-tagging: which frames the TAP device's port takes and sends: tagged, "
           "untagged (only its vlan-pvid's, untagged) or all (the default)", sets=("vlan_accept",),
           used_by="server", nargs=(1, 1), access=True)
def _vlan_accept(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("tagged", "untagged", "all"):
        p.err(d, "--vlan-accept must be 'tagged', 'untagged' or 'all' (as OpenVPN 2.6 says)")
        return
    p.set("vlan_accept", a[0])


@reg.apply("vlan-pvid", why="vlan-tagging: the TAP port's own VLAN (untagged frames are on it) and every "
           "client's unless its ccd or client-connect says `vlan-pvid`", sets=("vlan_pvid",), used_by="server",
           nargs=(1, 1), access=True)
def _vlan_pvid(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], VLAN_MIN, VLAN_MAX)
    if n is not None:
        p.set("vlan_pvid", n)


def _vlan_rules(p: ParseState) -> None:
    """2.6's checks (options.c), at the lines that break them."""
    o = p.o
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if o.vlan_tagging:
        if o.dev_type != "tap":
            p.err("vlan-tagging", "must be used with --dev tap (as OpenVPN 2.6 says)", line("vlan_tagging"))
        elif not (o.mode == "server" or o.server is not None or o.server_bridge is not None):
            p.err("vlan-tagging", "requires --mode server (as OpenVPN 2.6 says)", line("vlan_tagging"))
        return
    if o.vlan_accept != "all":
        p.err("vlan-accept", "requires --vlan-tagging (as OpenVPN 2.6 says)", line("vlan_accept"))
    if o.vlan_pvid != 1:
        p.err("vlan-pvid", "requires --vlan-tagging (as OpenVPN 2.6 says)", line("vlan_pvid"))


def finish(p: ParseState) -> None:
    """The device type from `dev-type` or the device's name; the layer-2 server's rules. Called by
    parser.finish before its role checks (the server's "needs a pool" rule reads dev_type)."""
    o = p.o
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if "dev" not in o.source and (o.server is not None or o.server_bridge is not None or o.mode == "server"):
        # OpenVPN 2.6 refuses a server without `dev` (`dev-type` alone does not do), first at its
        # `server` line ("--server directive only makes sense with --dev tun or --dev tap"), else
        # as "You must define TUN/TAP device (--dev)"; before, ours took tun and a config 2.6
        # never ran came up here.
        d = "server" if o.server is not None else "server-bridge" if o.server_bridge is not None else "mode"
        p.err(d, f"no `dev` line: a server must name its device (`dev tun` or `dev tap`; `{d}` only makes "
              "sense with one), as OpenVPN 2.6 refuses it too", line(d.replace("-", "_")))
    elif "dev" not in p.seen:             # (a refused `dev` line has said so at its line)
        # A client or p2p config too: 2.6's options_postprocess_verify_ce says "You must define
        # TUN/TAP device (--dev)" (`dev-type` or `dev-node` alone do not do); before, ours took tun.
        p.err("dev", "You must define TUN/TAP device (--dev): no `dev` line (`dev tun` or `dev tap`), "
              "as OpenVPN 2.6 refuses it too", None)
    if "dev_type" not in o.source:
        o.dev_type = "tap" if o.dev.startswith("tap") else "tun"
    _vlan_rules(p)
    if o.server_bridge is not None and o.server is not None:
        p.err("server-bridge", "`server` and `server-bridge` cannot be used together (OpenVPN 2.6 refuses "
              "it too)", line("server_bridge"))
    if o.dev_type != "tap":
        if o.server_bridge is not None:
            p.err("server-bridge", "only makes sense with dev tap (OpenVPN 2.6 refuses it too)",
                  line("server_bridge"))
        return
    if "tun_mtu_extra" not in o.source:
        o.tun_mtu_extra = TAP_MTU_EXTRA_DEFAULT
    if not (o.mode == "server" or o.server is not None or o.server_bridge is not None):
        return                  # a tap client: d_network.finish_device checks its own lines
    if o.server is not None:
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{o.server[1]}").prefixlen
        if prefix > 30:
            p.err("server", "with dev tap the network must be a /30 or larger (OpenVPN 2.6 refuses it too)",
                  line("server"))
    if isinstance(o.server_bridge, tuple) and o.ifconfig_pool is not None:
        p.err("ifconfig-pool", "server-bridge already defines the pool, so it cannot be given as well "
              "(OpenVPN 2.6 refuses it too)", line("ifconfig_pool"))
    _pool_spares_own_address(p, line)
    if o.server is None and o.ifconfig_pool is not None and o.ifconfig_pool[2] is None:
        p.err("ifconfig-pool", "with dev tap and no `server`, the pool needs its netmask: ifconfig-pool START "
              "END NETMASK", line("ifconfig_pool"))
    if "topology" in o.source:
        p.line = line("topology")
        p.note("topology", "no effect with dev tap (a layer-2 server has one subnet), as in OpenVPN 2.6")


def _pool_spares_own_address(p: ParseState, line) -> None:
    """A layer-2 pool that would hand out the server's own address -- the TAP device's NET+1
    (`server NET MASK` with `ifconfig-pool`), server-bridge's IP -- is refused at its line, as a
    tun server's (server_written_out.py): its client would share the address with the server's
    host (ARP answered by both), and an `ifconfig-push` of that address refuses the client
    (clientpush._lease_static). OpenVPN 2.6 hands it out (review49a)."""
    o = p.o
    if o.server is not None and o.ifconfig_pool is not None:
        own = str(ipaddress.IPv4Network(f"{o.server[0]}/{o.server[1]}", strict=False).network_address + 1)
        d, at, (start, end) = "ifconfig-pool", line("ifconfig_pool"), o.ifconfig_pool[:2]
    elif isinstance(o.server_bridge, tuple):
        own, _, start, end = o.server_bridge
        d, at = "server-bridge", line("server_bridge")
    else:
        return
    if ipaddress.IPv4Address(start) <= ipaddress.IPv4Address(own) <= ipaddress.IPv4Address(end):
        p.err(d, f"the pool {start}-{end} would hand out the server's own address {own} to a client: "
              "leave it out of the range", at)


def _in_file_order(p: ParseState) -> None:
    """The error just added moved among those of its file by line: the directive's own line was
    read long before the file's end, where this check runs."""
    e = p.errors.pop()
    i = len(p.errors)
    while i > 0 and p.errors[i - 1].path == e.path and (p.errors[i - 1].line or 0) > (e.line or 0):
        i -= 1
    p.errors.insert(i, e)
