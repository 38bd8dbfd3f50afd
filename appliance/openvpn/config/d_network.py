"""Directives for role, remotes, transport, the TUN device, routes and the server's address pool.

Each handler is declared with the table entry it implements (see directives.py): its names,
argument count, the Options fields it sets and who reads them.
"""
from __future__ import annotations

import ipaddress
import os
import stat

from ..keymethod import PUSH_CONTROL_BYTE, refused_in_control_text
from ..redirectflags import REDIRECT_FLAGS, added_line, unknown_flag
from .directives import Registry
from .ipv6 import prefix6
from .model import REMOTE_HOST, Route, Route6
from .model import Remote
from .parser import ParseState, norm_proto, proto_case_hint
from .server_written_out import POOL_MIN_PREFIX, check_pool_range

reg = Registry()


# ------------------------------------------------------------------ role
@reg.apply("client", why="client role: pull + tls-client", sets=("client", "pull", "tls_client"),
           used_by="parser", nargs=(0, 0))
def _client(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("client", True)
    p.set("pull", True)
    p.set("tls_client", True)


@reg.apply("pull", why="accept options pushed by the server", sets=("pull",), used_by="parser", nargs=(0, 0))
def _pull(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("pull", True)


@reg.apply("tls-client", why="TLS client role", sets=("tls_client",), used_by="parser", nargs=(0, 0))
def _tls_client(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("tls_client", True)


@reg.apply("tls-server", why="TLS server role", sets=("tls_server",), used_by="parser", nargs=(0, 0))
def _tls_server(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("tls_server", True)


@reg.apply("mode", why="server or p2p", sets=("mode",), used_by="parser", nargs=(1, 1))
def _mode(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("server", "p2p"):
        p.err(d, f"unknown mode {a[0]}")
    else:
        p.set("mode", a[0])


@reg.apply("server", why="server mode with an address pool (`nopool`: none, ifconfig-pool or ccd give the "
           "addresses)", sets=("server", "mode", "tls_server", "server_nopool"), used_by="server", nargs=(2, 3))
def _server(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if len(a) > 2 and a[2] != "nopool":
        p.err(d, f"{a[2]} is not a recognized flag (nopool), as OpenVPN 2.6")
        return
    net, mask = p.ip(d, a[0]), p.mask(d, a[1])
    if net and mask and ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen < POOL_MIN_PREFIX:
        # As 2.6.14's helper.c (IFCONFIG_POOL_MIN_NETBITS), for tun and tap alike: a /8 here built a
        # pool of 16.7 million addresses at start (107 s of CPU and gigabytes, measured).
        p.err(d, f"the netmask {mask} allows for too many host addresses (subnet must be 255.255.0.0 "
              f"(/{POOL_MIN_PREFIX}) or higher), as OpenVPN 2.6 refuses it")
        return
    if net and mask:
        n = ipaddress.IPv4Network(f"{net}/{mask}", strict=False)
        if str(n.network_address) != net:
            # As 2.6 (helper.c): a host address where the network belongs is a typo, not a pool.
            p.err(d, f"network/netmask combination is invalid: {net} has host bits under {mask} (the network is "
                  f"{n.network_address}), as OpenVPN 2.6 says")
            return
        p.set("server", (net, mask))
        p.set("server_nopool", len(a) > 2)
        p.set("mode", "server")
        p.set("tls_server", True)


@reg.apply("server-ipv6", why="IPv6 address pool", sets=("server_ipv6",), used_by="server", nargs=(1, 1))
def _server_ipv6(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    try:
        net = ipaddress.IPv6Network(a[0], strict=False)
    except ValueError:
        p.err(d, f"not an IPv6 network: {a[0]!r}")
        return
    if not 64 <= net.prefixlen <= 124:
        # As 2.6.14's helper.c: a /32 was taken here, a config 2.6 refuses (review49d).
        p.err(d, f"network must be between /64 and /124 (not /{net.prefixlen}), as OpenVPN 2.6")
        return
    p.set("server_ipv6", str(net))


# ------------------------------------------------------------------ remotes and transport
def _show_remote(r: Remote) -> str:
    return f"{r.host} {r.port} {r.proto}" + (f" via http-proxy {r.proxy.server}:{r.proxy.port}" if r.proxy else "")


@reg.apply("remote", why="a server to connect to (tried in order)", sets=("remotes",), used_by="client",
           nargs=(1, 3), show={"remotes": lambda v: [_show_remote(r) for r in v]})
def _remote(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.remote_lines.append((p.line, a))     # port/proto defaults apply at the end (finish)


@reg.apply("connection", why="a server to try with its own settings (one remote per block: transport, MTU, "
           "keys, proxy, exit notification, timeouts), in order", sets=("connection_remotes",), used_by="parser",
           nargs=(1, 1), inline=True, show={"connection_remotes": lambda v: [_show_remote(r) for r in v]})
def _connection(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c, `connection`): config/connection_entry.py reads the block."""
    if inline is None:
        p.err(d, "expects a <connection> block")
        return
    from .connection_entry import read_block        # (it imports the table, which imports this module)
    read_block(p, d, inline)


@reg.apply("proto", why="transport", sets=("proto", "proto_family"), used_by="pump", nargs=(1, 1))
def _proto(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    pr = norm_proto(a[0])
    if pr is None:
        p.err(d, f"unknown protocol {a[0]}{proto_case_hint(a[0])}")
        return
    v = a[0]
    if v in ("tcp-server", "tcp4-server", "tcp6-server"):
        p.o.source["tcp_server"] = (p.path, p.line)
    if v in ("tcp-client", "tcp4-client", "tcp6-client"):
        p.o.source["tcp_client"] = (p.path, p.line)
    p.set("proto", pr)
    if v[3:4] in ("4", "6"):
        p.set("proto_family", v[3])


@reg.apply("port", "rport", why="remote (and server) port; `rport` the remote's only", sets=("port", "local_port"),
           used_by="pump", nargs=(1, 1))
def _port(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, 65535)
    if n is not None:
        p.set("port", n)
        if d == "port":
            p.set("local_port", n)


@reg.apply("lport", why="local port of the server socket; a client's socket is bound to it (as with `bind`)",
           sets=("lport", "local_port"), used_by="pump", nargs=(1, 1))
def _lport(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 65535)
    if n is not None:
        p.set("lport", n)
        p.set("local_port", n)


@reg.apply("bind", why="a server binds its port anyway; a client binds its socket to `lport` (else `port`) "
           "and `local`, as OpenVPN 2.6, instead of an ephemeral port", sets=("bind",), used_by="pump",
           nargs=(0, 1))
def _bind(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a and a[0] != "ipv6only":
        p.err(d, f"unknown argument {a[0]!r} (ipv6only)")
    elif a:
        # OpenVPN then refuses IPv4 clients on a `proto udp6` server's dual-stack socket; ours
        # would take them: refused rather than ignored.
        p.err(d, "ipv6only is not supported: a socket bound to :: takes IPv4 peers too here")
    else:
        p.set("bind", True)


@reg.apply("nobind", why="a client sends from an ephemeral port (what it does unless local, lport or bind "
           "asks otherwise, as OpenVPN 2.6's client)", sets=("nobind",), used_by="parser", nargs=(0, 0))
def _nobind(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("nobind", True)


@reg.apply("local", why="local address of the server socket; a client's socket is bound to it",
           sets=("local",), used_by="pump", nargs=(1, 1))
def _local(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("local", a[0])


@reg.apply("multihome", why="UDP server bound to several addresses: each client is answered from the local "
           "address its latest authenticated packet was sent to (IP_PKTINFO / IPV6_PKTINFO)",
           sets=("multihome",), used_by="pump", nargs=(0, 0))
def _multihome(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # TCP and client configs are refused in parser.finish (the role and proto are known there).
    p.set("multihome", True)


@reg.apply("remote-random", why="try remotes in random order", sets=("remote_random",), used_by="client",
           nargs=(0, 0))
def _remote_random(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("remote_random", True)


CONNECT_RETRY_MOST = 0xFFFF


@reg.apply("connect-retry", why="reconnect backoff", sets=("connect_retry", "connect_retry_max"),
           used_by="client", nargs=(1, 2))
def _connect_retry(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # As OpenVPN 2.6 (options.c): N above 65535 is cut to 65535 with a warning (the doubling
    # must not overflow), M is never below N (`connect-retry 30 5` waits 30 s, not 5) and may be
    # 0 (then N). Refusing N above 86400 or M below 1 here failed profiles 2.6 accepts.
    n = p.int_arg(d, a[0], 0, 2**31 - 1)
    if n is not None and n > CONNECT_RETRY_MOST:
        p.note(d, f"{n} s cut to {CONNECT_RETRY_MOST} s, as OpenVPN 2.6 does")
        n = CONNECT_RETRY_MOST
    if n is not None:
        p.set("connect_retry", float(n))
    if len(a) > 1:
        m = p.int_arg(d, a[1], 0, 2**31 - 1)
        if m is not None:
            p.set("connect_retry_max", float(max(m, n or 0)))


@reg.apply("connect-retry-max", why="give up after this many attempts", sets=("connect_retry_max_count",),
           used_by="client", nargs=(1, 1))
def _connect_retry_max(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1)
    if n is not None:
        p.set("connect_retry_max_count", n)


@reg.apply("server-poll-timeout", "connect-timeout", why="time allowed per connection attempt",
           sets=("server_poll_timeout",), used_by="client", nargs=(1, 1))
def _server_poll_timeout(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, 86400)
    if n is not None:
        p.set("server_poll_timeout", float(n))


def _resolv_retry(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] != "infinite":
        p.int_arg(d, a[0], 0)


reg.noop("resolv-retry", "names are resolved once per connection attempt, and attempts repeat anyway",
         check=_resolv_retry, nargs=(1, 1))


# ------------------------------------------------------------------ TUN device and MTU
# `dev null` / `dev-type null`, OpenVPN's device that is none: refused, and why (compat42). Who
# uses it: OpenVPN's own loopback samples (sample-config-files/loopback-client and -server: a TLS
# point-to-point pair on localhost with no ifconfig, renegotiating every 10 s) and its static-key
# benchmarks -- self-tests of OpenVPN. Against a server that pushes an address (every `server`),
# Debian's 2.6.14 client exits at the push ("Linux can't set mtu (1500) on null", fatal), so no
# client profile runs with it there either. Our tests and `vpn-appliance bench` stand in for the
# self-tests; a device-less client would be code that no working OpenVPN profile needs.
DEV_NULL_WHY = ("null (OpenVPN's no-device mode for its own loopback tests and benchmarks) is not supported: "
                "against a server that pushes an address OpenVPN 2.6 exits too (\"Linux can't set mtu (1500) on "
                "null\"); use `dev tun` (a handshake test needs root for the device, as with 2.6), or "
                "`vpn-appliance bench` for the data channel's speed without a device")


@reg.apply("dev", why="TUN/TAP device name (tap*: a layer-2 TAP device, client only)", sets=("dev",),
           used_by="pump", nargs=(1, 1))
def _dev(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] == "null":
        p.err(d, f"dev {DEV_NULL_WHY}")
    else:
        p.set("dev", a[0])          # the device type follows from the name unless dev-type says (finish)
        if len(a[0].encode()) > 15:
            # The kernel cuts it (IFNAMSIZ), OpenVPN 2.6 says nothing; ours warns again when the
            # device is made (ioerrors.dev_name_cut).
            cut = a[0].encode()[:15].decode("utf-8", "ignore")
            p.note(d, f"{a[0]!r} is longer than the 15 characters a device name may have: the device will be "
                      f"{cut!r} (the kernel cuts it, as with OpenVPN 2.6)")


@reg.apply("dev-type", why="tun (layer 3) or tap (layer 2: Ethernet frames), as OpenVPN 2.6; "
           "without it the `dev` name says (tap* is tap, anything else tun)", sets=("dev_type",),
           used_by="pump", nargs=(1, 1))
def _dev_type(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] == "null":
        p.err(d, f"dev-type {DEV_NULL_WHY}")
    elif a[0] not in ("tun", "tap"):
        p.err(d, f"dev-type {a[0]}: only tun and tap are supported")
    else:
        p.set("dev_type", a[0])


def finish_device(p: ParseState) -> None:
    """The device's own lines, with the whole file read and the device type known (d_layer2.finish
    decides it, as OpenVPN 2.6's tun.c dev_type_enum: dev-type if given, else the `dev` name, tap*
    being tap; it also gives tap its tun-mtu-extra of 32 and checks a layer-2 server's lines). Here:
    lladdr only on a tap device, and on a tap client a profile's route-gateway must be an address
    the routes can go via, or `dhcp` (read from the DHCP reply on the tap, as 2.6)."""
    o = p.o
    if o.dev_type != "tap":
        if o.lladdr is not None:
            p.err("lladdr", "only a tap device has a MAC address (this profile's device is tun)",
                  o.source["lladdr"][1])
        if "route_gateway" in o.source:
            p.line = o.source["route_gateway"][1]
            p.note("route-gateway", "accepted, has no effect here: routes go out of the TUN device itself (as "
                   "OpenVPN's on a tun device, where the gateway only names the far end); a pushed one is only read too")
        return
    if o.role == "server":
        return                  # the layer-2 server's lines: d_layer2.finish
    gw = o.route_gateway
    if gw is not None and gw != "dhcp":         # dhcp: openvpn/dhcprouter.py, as 2.6 on Linux
        try:
            ipaddress.IPv4Address(gw)
        except ValueError:
            p.err("route-gateway", f"route-gateway {gw}: on a tap device the routes' gateway must be an IPv4 "
                  "address (or dhcp)", o.source["route_gateway"][1])


def finish_routes(p: ParseState) -> None:
    """A `route remote_host ...` in a server's config: a server has no one remote host (2.6 can
    resolve none there either); refused at its line rather than dropped at start."""
    if p.o.role == "server" and p.remote_host_line is not None:
        p.err("route", "remote_host is the server a client connects to; a server's config has none",
              p.remote_host_line)


TUN_CLONE = (10, 200)        # the tun driver's clone device, /dev/net/tun (misc major 10, minor 200)


def _dev_node(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6 on Linux opens the TUN device through the node named, and exits at start when
    it cannot ("Cannot open TUN/TAP dev /x: No such file or directory") or it is no tun clone
    device ("Cannot ioctl TUNSETIFF"). Here the device is always opened through /dev/net/tun, so
    the line is taken when it names that device (any path to it), refused at its line otherwise."""
    try:
        st = os.stat(p.path_arg(a[0]))
    except OSError as e:
        p.err(d, f"cannot use {a[0]}: {e.strerror} (OpenVPN 2.6 fails at start on it too)")
        return
    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != TUN_CLONE:
        p.err(d, f"{a[0]} is not the TUN clone device (/dev/net/tun, 10:200), which OpenVPN 2.6 fails on at start; "
                 "the device is always opened through /dev/net/tun here: remove the line")


reg.noop("dev-node", "the TUN device is always opened through /dev/net/tun (a dev-node naming another device is "
         "refused, as OpenVPN 2.6 fails on it at start)", check=_dev_node, nargs=(1, 1))


@reg.apply("tun-mtu", why="TUN MTU", sets=("tun_mtu",), used_by="pump", nargs=(1, 1))
def _tun_mtu(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    from .parser import TUN_MTU_FLOOR           # (2.6's TUN_MTU_MIN: the parser checks link-mtu's too)
    n = p.int_arg(d, a[0], TUN_MTU_FLOOR, 65535)
    if n is not None:
        p.set("tun_mtu", n)


@reg.apply("link-mtu", "udp-mtu", why="the largest datagram on the link: the TUN's MTU is N less the headers the "
           "configured cipher adds (the one in the `cipher` line, else 2.6's BF-CBC counted as its HMAC alone), "
           "as OpenVPN 2.6 derives it; a server's pushed tun-mtu replaces it, as in 2.6", sets=("link_mtu",),
           used_by="pump", nargs=(1, 1))
def _link_mtu(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1, 65535)
    if n is not None:
        p.set("link_mtu", n)


@reg.apply("tun-mtu-max", why="client: the largest tun-mtu a server may push (at least 1600 and tun-mtu, "
           "as OpenVPN 2.6)", sets=("tun_mtu_max",), used_by="client", nargs=(1, 1))
def _tun_mtu_max(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 68, 65536)
    if n is not None:
        p.set("tun_mtu_max", n)


@reg.apply("mssfix", why="TCP MSS clamping; OpenVPN 2.6 meaning of N with and without `mtu` or `fixed`",
           sets=("mssfix", "mssfix_mtu", "mssfix_fixed", "mssfix_kept"), used_by="pump", nargs=(0, 2))
def _mssfix(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6 (options.c): `mssfix` alone = its default, as if absent (settings.mssfix_in_force);
    `mssfix N` = N bytes of encapsulated UDP payload (outer headers not counted) unless `mtu`
    follows; `mssfix N fixed` = N is the inner IP packet, nothing of the tunnel counted (the
    default 2.6 takes with a tun-mtu other than 1500); `mssfix 0` turns clamping off.

    Given twice, each line changes what 2.6's changes and no more: `mssfix N` and `mssfix N mtu`
    set N and the `mtu` flag but leave an earlier line's `fixed` (so `mssfix 1300 fixed` then
    `mssfix 1200` is `1200 fixed`); only `mssfix` alone clears `fixed`, and it keeps the earlier
    N (mssfix_kept), which 2.6 then clamps with when a link-mtu leaves it no default."""
    if not a:
        p.set("mssfix_kept", p.o.mssfix if p.o.mssfix is not None else p.o.mssfix_kept)
        p.set("mssfix", None)
        p.set("mssfix_mtu", True)
        p.set("mssfix_fixed", False)
        return
    n = p.int_arg(d, a[0], 0, 65535)
    if n is None:
        return
    flag = a[1] if len(a) > 1 else None
    if flag not in (None, "mtu", "fixed"):
        p.err(d, f"unknown flag {flag} (expects mtu or fixed)")
        return
    p.set("mssfix", n)
    p.set("mssfix_mtu", flag == "mtu")
    if flag == "fixed":
        p.set("mssfix_fixed", True)     # never cleared by a later `mssfix N [mtu]`: 2.6's flag sticks


@reg.apply("fragment", why="OpenVPN's own fragmentation: every data payload carries its 4-byte fragment "
           "header and none makes a UDP datagram over N bytes (N counting the outer IP+UDP headers with "
           "`mtu`); the server must say `fragment` too, as with OpenVPN", sets=("fragment", "fragment_mtu"),
           used_by="session", nargs=(1, 2))
def _fragment(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6 (options.c): N below 68 and any flag but `mtu` are errors; UDP only (finish)."""
    n = p.int_arg(d, a[0], 0, 65535)
    if n is None:
        return
    if n < 68:
        p.err(d, "--fragment needs to be at least 68 (as OpenVPN 2.6)")
        return
    if len(a) > 1 and a[1] != "mtu":
        p.err(d, f"Unknown parameter to --fragment: {a[1]}")
        return
    p.set("fragment", n)
    p.set("fragment_mtu", len(a) > 1)


@reg.apply("tun-mtu-extra", why="bytes the device may add beyond tun-mtu (TAP's Ethernet header); OpenVPN 2.6 "
           "counts them against mssfix, so the MSS clamp is that much lower", sets=("tun_mtu_extra",),
           used_by="pump", nargs=(1, 1))
def _tun_mtu_extra(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # Common in commercial providers' profiles (`tun-mtu-extra 32` beside `mssfix 1450`).
    n = p.int_arg(d, a[0], 0, 65535)
    if n is not None:
        p.set("tun_mtu_extra", n)


# ------------------------------------------------------------------ routes (client)
@reg.apply("redirect-gateway", why="send all traffic through the tunnel", sets=("redirect_gateway", "redirect_lines"),
           used_by="client")
def _redirect_gateway(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """The flags as OpenVPN 2.6 takes them (options.c): an unknown one is an error there and
    here. Before, `redirect-gateway def1 block-locl` was taken and its misspelt leak guard
    silently left out."""
    bad = unknown_flag(a)
    if bad is not None:
        p.err(d, f"unknown --redirect-gateway flag: {bad} (as OpenVPN 2.6; known: {', '.join(REDIRECT_FLAGS)})")
        return
    p.set("redirect_gateway", added_line(p.o.redirect_gateway, a))    # a second line adds (as 2.6)
    p.set("redirect_lines", [*p.o.redirect_lines, (True, list(a))])   # the order, for redirect_in_effect


@reg.apply("route", why="a route through the tunnel", sets=("route",), used_by="client", nargs=(1, 4),
           show={"route": lambda v: [" ".join(str(x) for x in r if x is not None) for r in v]})
def _route(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """`remote_host` for the network is the server's address as connected (OpenVPN 2.6's route.c
    keyword; Sophos UTM's profiles write `route remote_host 255.255.255.255 net_gateway` to keep
    the server out of the tunnel): kept as the keyword, resolved where the routes go in
    (Route.resolved)."""
    if a[0] == REMOTE_HOST:
        net: str | None = REMOTE_HOST
        if p.remote_host_line is None:
            p.remote_host_line = p.line
    else:
        net = p.ip(d, a[0])
    mask = p.mask(d, a[1]) if len(a) > 1 and a[1] != "default" else "255.255.255.255"
    gw = a[2] if len(a) > 2 and a[2] not in ("vpn_gateway", "default") else None
    metric = p.int_arg(d, a[3], 0) if len(a) > 3 else None
    if net and mask:
        p.add("route", Route(net, mask, gw, metric))
        if net != REMOTE_HOST:
            _host_bits_note(p, d, net, mask)


def _host_bits_note(p: ParseState, d: str, net: str, mask: str) -> None:
    """A note (`check` prints it at the line) for `route 198.18.5.1 255.255.255.0`: OpenVPN 2.6
    hands it to the kernel unmasked, the kernel refuses it (EINVAL), and 2.6 -- ours too, as it
    -- runs on without that route (gateway/server_net.py route_refusal says it again at start).
    Not an error: a config written for 2.6 that started there starts here (review48b)."""
    try:
        n = ipaddress.IPv4Network(f"{net}/{mask}", strict=False)
    except ValueError:
        return
    if str(n.network_address) != net:
        p.note(d, f"{net} has host bits outside {mask}: the kernel refuses this route at start and it runs "
                  f"without it, as OpenVPN 2.6 (\"ERROR: Linux route add command failed\"); the network is {n}")


@reg.apply("route-ipv6", why="an IPv6 route into the TUN: a client's through the tunnel (`net_gateway_ipv6`: "
           "past it); a server's to a network behind a client (whose ccd iroute-ipv6 says which)",
           sets=("route_ipv6",), used_by="client", nargs=(1, 3),
           show={"route_ipv6": lambda v: [" ".join(str(x) for x in r if x is not None) for r in v]})
def _route_ipv6(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c, route.c): NET[/BITS] (a /64 without bits; host bits cleared, as
    route.c does), an optional gateway (an IPv6 address; `net_gateway_ipv6` for the way outside
    the tunnel, as a pushed one; `default`: none) and metric (`default`: route-metric's).
    Stricter than OpenVPN where it is lenient by accident (strtoul's `+64`, an empty `/`): a
    profile line we would read otherwise than OpenVPN fails at its line. Declared once for both
    roles, as `route` is: the server installs it into its TUN (gateway/server_net.py)."""
    net, _, bits = a[0].partition("/")
    try:
        if "%" in net or ("/" in a[0] and not (bits.isascii() and bits.isdigit())):
            raise ValueError
        n6 = ipaddress.IPv6Network((ipaddress.IPv6Address(net), int(bits) if bits else 64), strict=False)
    except ValueError:
        p.err(d, f"network {a[0]!r} must be an IPv6 address with an optional /BITS (0..128)")
        return
    gw = a[1] if len(a) > 1 and a[1] != "default" else None
    if gw is not None and gw != "net_gateway_ipv6":
        try:
            if "%" in gw:
                raise ValueError
            gw = str(ipaddress.IPv6Address(gw))
        except ValueError:
            p.err(d, f"the gateway is not an IPv6 address (nor net_gateway_ipv6): {gw!r}")
            return
    metric = None
    if len(a) > 2 and a[2] != "default":
        metric = p.int_arg(d, a[2], 0, 2**32 - 1)
        if metric is None:
            return
    p.add("route_ipv6", Route6(str(n6), gw, metric))


@reg.apply("auth-retry", why="what AUTH_FAILED does: end the run (none), reconnect (nointeract), or reconnect "
           "with the credentials asked again of the management client (interact, with management-query-passwords)",
           sets=("auth_retry", "auth_retry_interact"), used_by="client", nargs=(1, 1))
def _auth_retry(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6's choices. `interact` asks for the password again before it reconnects: here
    only a management client can be asked (management-query-passwords, checked in parser.py's
    finish); without one it is refused rather than taken as `nointeract` (which sends the same
    credentials again)."""
    if a[0] not in ("none", "nointeract", "interact"):
        p.err(d, f"unknown value {a[0]!r} (none, nointeract, interact)")
    else:
        p.set("auth_retry", a[0] != "none")
        p.set("auth_retry_interact", a[0] == "interact")


@reg.apply("route-nopull", why="ignore pushed routes", sets=("route_nopull",), used_by="client", nargs=(0, 0))
def _route_nopull(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("route_nopull", True)


@reg.apply("remap-usr1", why="SIGUSR1, and every restart a client makes on its own (ping-restart, a lost link, "
           "a failed attempt), means SIGTERM (end the run) or SIGHUP (a server: reload), as OpenVPN 2.6",
           sets=("remap_usr1",), used_by="pump", nargs=(1, 1))
def _remap_usr1(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("SIGHUP", "SIGTERM"):
        p.err(d, f"{a[0]!r}: must be SIGHUP or SIGTERM, as OpenVPN's")
        return
    p.set("remap_usr1", a[0])


@reg.apply("tls-exit", why="end the run on a TLS error (a refused handshake or certificate, hand-window "
           "passed) instead of reconnecting, as OpenVPN 2.6", sets=("tls_exit",), used_by="client", nargs=(0, 0))
def _tls_exit(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("tls_exit", True)


@reg.apply("route-noexec", why="add no routes: neither the pushed ones (redirect-gateway included) nor the "
           "config's own `route` lines, as OpenVPN 2.6 (which hands them to a route-up script instead)",
           sets=("route_noexec",), used_by="client", nargs=(0, 0))
def _route_noexec(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("route_noexec", True)


reg.refuse("ifconfig-noexec", "the appliance configures the tunnel's address itself, and has no script to "
           "hand it to instead; remove the line")


@reg.apply("dhcp-option", why="client: DNS servers, domains... as pushed ones are used (the DNS helpers, the "
           "LAN's DHCP and DNS), the profile's before the server's, as OpenVPN numbers its foreign options; "
           "no effect on a server (`push \"dhcp-option ...\"` gives them to clients)",
           sets=("dhcp_options",), used_by="client", nargs=(1, 2))
def _dhcp_option(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # As OpenVPN on Linux (options.c: setenv_foreign_option, for the profile's and pushed lines
    # alike): taken as written; a DNS value that is no address is skipped where it is used, as a
    # pushed one (keymethod.update_dns).
    p.add("dhcp_options", (a[0], a[1] if len(a) > 1 else ""))


@reg.apply("pull-filter", why="accept/ignore/reject pushed options", sets=("pull_filter",), used_by="session",
           nargs=(2, 2))
def _pull_filter(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("accept", "ignore", "reject"):
        p.err(d, "expects accept, ignore or reject")
    else:
        p.add("pull_filter", (a[0], a[1]))
        p.note(d, f"{a[0]} pushed options starting with {a[1]!r}")


# ------------------------------------------------------------------ server: pool and pushes
@reg.apply("topology", why="address layout of the pool", sets=("topology",), used_by="server", nargs=(1, 1))
def _topology(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("subnet", "net30", "p2p"):
        p.err(d, "expects subnet, net30 or p2p")
    else:
        p.set("topology", a[0])


@reg.apply("ifconfig-pool", why="range of the address pool", sets=("ifconfig_pool",), used_by="server",
           nargs=(2, 3))
def _ifconfig_pool(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    s, e = p.ip(d, a[0]), p.ip(d, a[1])
    mask = p.mask(d, a[2]) if len(a) > 2 else None
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{mask}").netmask) if mask else None     # pushed dotted
    if s and e and (mask or len(a) < 3) and check_pool_range(p, d, s, e):
        p.set("ifconfig_pool", (s, e, mask))


reg.refuse("ifconfig-pool-linear", "removed in OpenVPN 2.5 (2.6 does not know it either): its one-address-a-client "
           "pool is `topology p2p` with ifconfig-pool")


@reg.apply("push", why="an option pushed to every client", sets=("push",), used_by="server", nargs=(1, 1))
def _push(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if refused_in_control_text(a[0]):
        p.err(d, PUSH_CONTROL_BYTE)
        return
    p.add("push", a[0])


@reg.apply("client-to-client", why="clients may reach each other", sets=("client_to_client",),
           used_by="server", nargs=(0, 0))
def _client_to_client(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("client_to_client", True)


@reg.apply("max-clients", why="connection limit", sets=("max_clients",), used_by="server", nargs=(1, 1),
           access=True)
def _max_clients(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 1)
    if n is not None:
        p.set("max_clients", n)


@reg.apply("max-routes-per-client", why="server: at most N addresses and iroutes routed to one client (its "
           "pool addresses count; those beyond are not routed, nor accepted as its sources)",
           sets=("max_routes_per_client",), used_by="server", nargs=(1, 1))
def _max_routes_per_client(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6 reads N with atoi and takes at least 1 (options.c); a value that is not a
    number is an error here rather than 1 (atoi's 0, raised to 1, would route nothing but the
    client's own address, the operator's typo silently cutting every iroute)."""
    n = p.int_arg(d, a[0], -(2**31), 2**31 - 1)
    if n is not None:
        if n < 1:
            p.note(d, f"{n} taken as 1, as OpenVPN 2.6 does")
        p.set("max_routes_per_client", max(n, 1))


def _tcp_queue_limit(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.int_arg(d, a[0], 1)           # OpenVPN 2.6: "must be > 0"


reg.noop("tcp-queue-limit", "a TCP server here queues at most 256 KiB per connection beyond the socket buffer "
         "(about 170 full-size packets; OpenVPN's default is 64 packets), then drops data packets, never "
         "control ones: a bound on memory that changes nobody's access", check=_tcp_queue_limit, nargs=(1, 1))
reg.refuse("stale-routes-check", "ages out routes by last use; in OpenVPN 2.6's tun mode that removes a "
           "client's iroutes, and with them its right to send from them, while the client is connected. Here a "
           "client's routes last exactly as long as its session: remove the line")
@reg.apply("ifconfig-ipv6", why="server or point-to-point link: our own IPv6 address on the TUN (ADDR/BITS) and "
           "the remote (a server's: OpenVPN's manual form of server-ipv6, with ifconfig-ipv6-pool)", sets=("ifconfig_ipv6",),
           used_by="server", nargs=(2, 2))
def _ifconfig_ipv6(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c): ADDR[/BITS] (a /64 without) with BITS 64..124, and a remote
    address. A pulling client's comes from the server's push (parser.finish refuses it there)."""
    try:
        addr, bits = prefix6(a[0])
        remote = ipaddress.IPv6Address(a[1])
    except ValueError:
        p.err(d, f"parms {a[0]!r} and {a[1]!r} must be valid addresses (ADDR/BITS REMOTE)")
        return
    if not 64 <= bits <= 124:
        p.err(d, f"/netbits must be between 64 and 124, not '/{bits}' (as OpenVPN 2.6)")
        return
    p.set("ifconfig_ipv6", (str(addr), bits, str(remote)))


@reg.apply("ifconfig-ipv6-pool", why="server: the IPv6 pool, from this address (with ifconfig-ipv6, as OpenVPN "
           "2.6; server-ipv6 lays out its own)", sets=("ifconfig_ipv6_pool",), used_by="server", nargs=(1, 1))
def _ifconfig_ipv6_pool(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c, pool.c): BASE[/BITS] (a /64 without), BITS 64..124; a base whose
    host part ends in 32 zero bits starts one further (that address is the subnet's anycast)."""
    try:
        addr, bits = prefix6(a[0])
    except ValueError as e:
        p.err(d, str(e))
        return
    if not 64 <= bits <= 124:
        p.err(d, f"network must be between /64 and /124 (not /{bits}), as OpenVPN 2.6")
        return
    p.set("ifconfig_ipv6_pool", f"{addr}/{bits}")


reg.refuse("iroute-ipv6", "iroute-ipv6 belongs in a client-config-dir file")
reg.refuse("ifconfig-ipv6-push", "ifconfig-ipv6-push belongs in a client-config-dir file")
@reg.apply("float", why="the peer may change its address: a server moves a client only on its authenticated "
           "packets; a point-to-point tls-server takes a new session from another port of its `remote`",
           sets=("floating",), used_by="client", nargs=(0, 0))
def _float(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("floating", True)


@reg.apply("ifconfig", why="point-to-point link: our tunnel address and the peer's (net30/p2p) or the "
           "netmask (subnet)", sets=("ifconfig",), used_by="client", nargs=(2, 2))
def _ifconfig(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c): two IPv4 addresses; whether the second is the peer or a netmask
    depends on `topology` (read at the end of the file: parser.finish / config/p2p.py). A server's
    address comes from `server` here (parser.finish refuses the line in a server config)."""
    local, second = p.ip(d, a[0]), p.ip(d, a[1])
    if local and second:
        p.set("ifconfig", (local, second))
reg.refuse("iroute", "iroute belongs in a client-config-dir file")
reg.refuse("ifconfig-push", "ifconfig-push belongs in a client-config-dir file")
reg.refuse("push-reset", "push-reset belongs in a client-config-dir file (OpenVPN refuses it here too)")
reg.refuse("push-remove", "push-remove belongs in a client-config-dir file or a client-connect script's output (OpenVPN refuses it here too)")
