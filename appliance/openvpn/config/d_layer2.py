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

from .directives import Registry
from .parser import ParseState

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
        value = (ip, mask, start, end)
    else:
        p.err(d, "expects IP NETMASK POOL-START POOL-END, `nogw`, or nothing (DHCP over the bridge)")
        return
    p.set("server_bridge", value)
    p.set("mode", "server")
    p.set("tls_server", True)


# 2.6's 802.1Q VLANs on a tap server (vlan.c): each client's frames carry its `vlan-pvid` (a ccd or
# client-connect line) on the TAP device, and clients of different VLANs never see each other's.
# Not done here: switched by MAC alone, every client would be on one VLAN -- the isolation the lines
# ask for would silently be gone, so they are refused (access: they decide who reaches whom).
_VLANS = ("802.1Q VLANs per client (OpenVPN 2.6 tags each client's frames on the TAP device with its "
          "vlan-pvid and keeps clients of different VLANs apart) are not supported here: this layer-2 server "
          "switches by MAC alone, so every client would share one VLAN")
reg.refuse("vlan-tagging", f"{_VLANS}; remove it only if that is what you want", access=True)
reg.refuse("vlan-accept vlan-pvid", f"belongs to vlan-tagging: {_VLANS}", access=True)


def finish(p: ParseState) -> None:
    """The device type from `dev-type` or the device's name; the layer-2 server's rules. Called by
    parser.finish before its role checks (the server's "needs a pool" rule reads dev_type)."""
    o = p.o
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if "dev_type" not in o.source:
        o.dev_type = "tap" if o.dev.startswith("tap") else "tun"
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
    if o.server is None and o.ifconfig_pool is not None and o.ifconfig_pool[2] is None:
        p.err("ifconfig-pool", "with dev tap and no `server`, the pool needs its netmask: ifconfig-pool START "
              "END NETMASK", line("ifconfig_pool"))
    if "topology" in o.source:
        p.line = line("topology")
        p.note("topology", "no effect with dev tap (a layer-2 server has one subnet), as in OpenVPN 2.6")


def _in_file_order(p: ParseState) -> None:
    """The error just added moved among those of its file by line: the directive's own line was
    read long before the file's end, where this check runs."""
    e = p.errors.pop()
    i = len(p.errors)
    while i > 0 and p.errors[i - 1].path == e.path and (p.errors[i - 1].line or 0) > (e.line or 0):
        i -= 1
    p.errors.insert(i, e)
