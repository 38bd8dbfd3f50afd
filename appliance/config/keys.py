"""Every key of the appliance TOML, declared once; and the rules that tie a section's keys together.

A key is one `Key(name, kind, help, default=..., required=..., example=..., doc=...)` line in its
section's tuple below; that entry alone makes the key loadable, type-checked, listed in "unknown
key" errors, shown by `check`, and a field of the section's dataclass (schema.Wan, ...). The
README's key tables are generated from here: after changing a key run
`python -m appliance.config.keys README.md` (tests/unit/test_key_table.py fails until the README
matches). A new section is one more Section(...) in SECTIONS (and a line of prose in the README).

Rules run after every key of every section is checked; a rule sees `s[key]` (the checked value;
the default when not given; None when invalid or a required key is missing), `s.has(key)` (given
at all), `s.other("wan")`, and reports with `s.err(key or None, why)`.
"""
from __future__ import annotations

import sys

from ..openvpn.regular_file import CONFIG, read_regular_file
from .table import (BOOL, FILE, HOSTNAME, IFNAME, IPV4, IPV4_INTERFACE, IPV6, IPV6_INTERFACE, MAC, TEXT, Got,
                    Key, Section, enum, list_of, update_readme)
from .table import ADDRESSES_BY_MAC, integer  # the DHCP server's keys; [appliance] status_interval
from .table import LAN_ROUTE  # [lan] routes

LOG_LEVELS = ("error", "warning", "info", "debug")
ROLES = ("client", "server")


# ------------------------------------------------------------------ [appliance]
APPLIANCE = Section("appliance", "ApplianceSection", "host name and logging", keys=(
    Key("hostname", HOSTNAME, "host name (RFC 1123), set only when running as the VM's PID 1",
        default="vpn-appliance", example='"vpn-gw"',
        doc="Host name (RFC 1123). Set only when running as the VM's PID 1; a host's own name is left alone."),
    Key("log_level", enum(*LOG_LEVELS), "how much is logged: error|warning|info|debug", default="info",
        doc="`error`, `warning`, `info` or `debug`. Each `-v` on the command line goes one level more detailed."),
    Key("status_interval", integer(0, 86400), "seconds between status lines on the console (0: only on change)",
        default=60, example="60",
        doc="Seconds between status lines on the console (`status: tunnel up, remote ..., bytes in N out N, "
            "renegotiations N, LAN leases N`); a line is also printed at every tunnel change. `0`: only on change."),
))


# ------------------------------------------------------------------ NICs ([wan] and [lan])
def _nic_keys(name_example: str, extra: str = "") -> tuple[Key, Key]:
    """`name` or `mac`: how a NIC is found (the same two keys in [wan] and [lan])."""
    return (
        Key("name", IFNAME, "interface name", example=f'"{name_example}"',
            doc=f'Interface name, e.g. `"{name_example}"`. Exactly one of `name`/`mac`.{extra}'),
        Key("mac", MAC, "MAC address the NIC is found by", example='"52:54:00:12:34:56"',
            doc='MAC address, e.g. `"52:54:00:12:34:56"` (any case); the NIC is found by it. '
                f'Exactly one of `name`/`mac`.{extra}'),
    )


def one_nic(s: Got) -> None:
    if s.has("name") == s.has("mac"):
        s.err(None, "give exactly one of `name` (like \"eth0\") or `mac` (like \"52:54:00:12:34:56\")")


# ------------------------------------------------------------------ [wan]
def address_or_dhcp(s: Got) -> None:
    if s.has("address") and s["dhcp"]:
        s.err("dhcp", "give either `address` or `dhcp = true`, not both")
    elif not s.has("address") and not s["dhcp"]:
        s.err(None, "needs `address = \"A.B.C.D/LEN\"` (with `gateway`) or `dhcp = true`")


def gateway_fits(s: Got) -> None:
    if s.has("gateway") and s["dhcp"] and isinstance(s.raw["gateway"], str):
        s.err("gateway", "not used with `dhcp = true` (the DHCP server gives the gateway)")
    gateway, address = s["gateway"], s["address"]
    if gateway is not None and address is not None:
        if gateway not in address.network:
            s.err("gateway", f"{gateway} is not inside {address.network}")
        elif gateway == address.ip:
            s.err("gateway", f"{gateway} is the WAN address itself")


def ipv6_wan(s: Got) -> None:
    """IPv6 on the WAN is static (`address6`, optional `gateway6`) or SLAAC, or absent."""
    if s.has("address6") and s["slaac"]:
        s.err("slaac", "give either `address6` or `slaac = true`, not both")
    g, a = s["gateway6"], s["address6"]
    if s.has("gateway6") and not s.has("address6"):
        s.err("gateway6", "needs `address6` (with `slaac = true` the router advertisement gives the gateway)")
    elif g is not None and a is not None and not g.is_link_local:
        if g not in a.network:
            s.err("gateway6", f"{g} is not inside {a.network} (nor a link-local fe80:: address)")
        elif g == a.ip:
            s.err("gateway6", f"{g} is the WAN address itself")


WAN = Section("wan", "Wan", "the uplink NIC", required=True, keys=(
    *_nic_keys("eth0"),
    Key("address", IPV4_INTERFACE, "static IPv4 address with prefix length", example='"198.18.0.2/24"',
        doc='Static IPv4 address with prefix length, `"198.18.0.2/24"`. Exactly one of `address`/`dhcp = true`.'),
    Key("dhcp", BOOL, "get address and gateway by DHCP", default=False,
        doc="`true`: get address and gateway by DHCP (needs the image's DHCP client, "
            "`appliance.boot.dhcp_client`). Exactly one of `address`/`dhcp = true`."),
    Key("gateway", IPV4, "default gateway for a static address", example='"198.18.0.1"',
        doc="Default gateway for a static `address`; must lie inside its network. Not allowed with `dhcp`. "
            "If the host already has a default route it is kept (and logged)."),
    Key("dns", list_of(IPV4, "addresses", "address strings"), "name servers, used at start for the remote names",
        default=(), example='["198.18.0.1"]',
        doc="Name servers. Written to `/etc/resolv.conf` only when running as PID 1. They are used once, "
            "at start, to resolve the `remote` names of the OpenVPN config (see the kill switch below)."),
    Key("address6", IPV6_INTERFACE, "static IPv6 address with prefix length", example='"2001:db8:18::2/64"',
        doc='Static IPv6 address with prefix length, `"2001:db8:18::2/64"`, besides the IPv4 one. Not with '
            '`slaac`. Without `address6` or `slaac` the WAN has no IPv6 and IPv6 remotes are skipped.'),
    Key("gateway6", IPV6, "IPv6 default gateway for `address6`", example='"2001:db8:18::1"',
        doc="IPv6 default gateway for `address6`: inside its prefix, or a link-local `fe80::` address. "
            "An existing IPv6 default route is kept (and logged)."),
    Key("slaac", BOOL, "get the WAN's IPv6 address and gateway from router advertisements", default=False,
        doc="`true`: IPv6 address and default route by SLAAC (the kernel's `accept_ra = 2`, as forwarding is "
            "on, and `autoconf` on this NIC only). Not with `address6`. Waits up to 10 s for an address."),
), rules=(one_nic, address_or_dhcp, gateway_fits, ipv6_wan),
    doc="The uplink; the VPN transport leaves here and nothing else from the LAN ever does.")


# ------------------------------------------------------------------ [lan]
def apart_from_wan(s: Got) -> None:
    wan = s.other("wan")
    if (wan["name"] and wan["name"] == s["name"]) or (wan["mac"] and wan["mac"] == s["mac"]):
        s.err("name" if s["name"] else "mac", "the LAN must be a different NIC from the WAN")
    if wan["address"] and s["address"] and wan["address"].network.overlaps(s["address"].network):
        s.err("address", f"{s['address'].network} overlaps the WAN network {wan['address'].network}")


def ipv6_lan(s: Got) -> None:
    """SLAAC on the LAN needs a /64; the LAN prefix must not be the WAN's; `ipv6 = false` means none."""
    a = s["address6"]
    if a is None:
        return
    if not s["ipv6"]:
        s.err("address6", "not used with `ipv6 = false`")
    elif a.network.prefixlen != 64:
        s.err("address6", "the LAN prefix must be a /64 (hosts build their addresses by SLAAC), "
                          f"not /{a.network.prefixlen}")
    w6 = s.other("wan")["address6"]
    if w6 is not None and w6.network.overlaps(a.network):
        s.err("address6", f"{a.network} overlaps the WAN prefix {w6.network}")


def dhcp_fits(s: Got) -> None:
    """The DHCP server's keys: a range of two addresses inside the LAN network, first <= last, not
    spanning the LAN address; static leases inside the network, each address once; the lease
    time and static leases only with a range; the client role only (the server role runs no
    LAN services)."""
    if not s.has("dhcp_range"):
        for k in ("dhcp_lease_time", "static_leases"):
            if s.has(k):
                s.err(k, "only with `dhcp_range = [\"FIRST\", \"LAST\"]` (the DHCP server is off without it)")
        return
    if s.other("vpn")["role"] == "server":
        s.err("dhcp_range", "the DHCP server runs in the client role only")
    iface, rng = s["address"], s["dhcp_range"]
    if rng is not None and len(rng) != 2:
        s.err("dhcp_range", f"needs exactly two addresses [first, last], got {len(rng)}")
        rng = None
    if iface is not None and rng is not None:
        first, last = rng
        net = iface.network
        for a in rng:
            if a not in net or a in (net.network_address, net.broadcast_address):
                s.err("dhcp_range", f"{a} is not a host address of the LAN network {net}")
                return
        if first > last:
            s.err("dhcp_range", f"first {first} is after last {last}")
        elif first <= iface.ip <= last:
            s.err("dhcp_range", f"the range {first}-{last} contains the LAN address {iface.ip}")
    seen: set = set()
    for mac, a in s["static_leases"] or ():
        if iface is not None and (a not in iface.network or a == iface.ip
                                  or a in (iface.network.network_address, iface.network.broadcast_address)):
            s.err("static_leases", f"{mac}: {a} is not a host address of the LAN network {iface.network} "
                                   "other than the LAN address")
        if a in seen:
            s.err("static_leases", f"{a} is given to more than one MAC")
        seen.add(a)


def dns_forwarder_in_client_role(s: Got) -> None:
    if s.has("dns_forwarder") and s["dns_forwarder"] and s.other("vpn")["role"] == "server":
        s.err("dns_forwarder", "the DNS forwarder serves a client's LAN; the server role has none (remove the key)")


def rebind_needs_the_forwarder(s: Got) -> None:
    """The rebinding keys act in the DNS forwarder only: given where there is none (`dns_forwarder
    = false`, or the server role), a user would believe LAN hosts protected that ask the pushed
    servers directly."""
    forwarder = bool(s["dns_forwarder"]) and s.other("vpn")["role"] == "client"
    for key in ("dns_rebind_protection", "dns_rebind_allow"):
        if s.has(key) and s[key] and not forwarder:
            s.err(key, "acts in the DNS forwarder only (client role, `dns_forwarder = true`): remove the key")


def routes_fit(s: Got) -> None:
    """Networks behind the LAN: none inside the LAN's or the WAN's own networks (those are not
    routed through a LAN router), no two overlapping; IPv6 only with IPv6 on the LAN; a gateway a
    host of the LAN's network other than us (IPv6: in `address6`'s prefix, or link-local)."""
    routes = s["routes"] or ()
    iface, a6 = s["address"], s["address6"]
    wan = s.other("wan")
    own = [(n, why) for n, why in ((iface and iface.network, "the LAN network"), (a6 and a6.network, "the LAN prefix"),
                                   (wan["address"] and wan["address"].network, "the WAN network"),
                                   (wan["address6"] and wan["address6"].network, "the WAN prefix")) if n]
    for i, r in enumerate(routes):
        for n, why in own:
            if n.version == r.network.version and n.overlaps(r.network):
                s.err("routes", f"{r.network} overlaps {why} {n}")
        for other in routes[:i]:
            if other.network.version == r.network.version and other.network.overlaps(r.network):
                s.err("routes", f"{r.network} overlaps {other.network}, given before")
        if r.network.version == 6 and not s["ipv6"]:
            s.err("routes", f"{r.network}: IPv6 with `ipv6 = false`")
        g = r.gateway
        if g is None:
            continue
        if g.version == 4 and iface is not None:
            net = iface.network
            if g not in net or g == iface.ip or (net.prefixlen < 31 and g in (net.network_address, net.broadcast_address)):
                s.err("routes", f"{r}: the gateway must be a host of the LAN network {net} other than {iface.ip}")
        elif g.version == 6 and not g.is_link_local and (a6 is None or g not in a6.network or g == a6.ip):
            s.err("routes", f"{r}: the gateway must be link-local (fe80::) or a host of the LAN's `address6` prefix")


LAN = Section("lan", "Lan", "router mode", absent="none", keys=(
    *_nic_keys("eth1", " Must be a different NIC from the WAN."),
    Key("address", IPV4_INTERFACE, "the appliance's address on the LAN", required=True,
        example='"198.18.50.1/24"',
        doc="The appliance's address on the LAN, `\"198.18.50.1/24\"`; the network must not overlap the WAN's. "
            "LAN hosts use it as their gateway."),
    Key("nat", BOOL, "true: masquerade behind the tunnel (client) or LAN (server) address; false: route",
        default=True,
        doc="Client role: `true` masquerades LAN hosts behind the tunnel address (the server needs nothing); "
            "`false` routes them with their own addresses (the server must `iroute` the LAN and push/route it), "
            "and the tunnel side may then open connections into the LAN too. Server role: `true` masquerades "
            "VPN clients behind the LAN address (LAN hosts need no route back to the VPN pool)."),
    Key("address6", IPV6_INTERFACE, "the appliance's IPv6 address on the LAN (a /64)", example='"fd18:50::1/64"',
        doc='The appliance\'s IPv6 address on the LAN, a /64 like `"fd18:50::1/64"`; its prefix is advertised '
            "to LAN hosts (router advertisements, SLAAC) while the server pushes IPv6. With `nat = true` it is "
            "masqueraded behind the pushed `ifconfig-ipv6` address (NAT66), so a ULA (`fd00::/8`) fits; with "
            "`nat = false` the server must route it to us (`iroute-ipv6`). Not given: with `nat = true` a stable "
            "ULA `fdXX:XXXX:XXXX::1/64` derived from the LAN NIC's MAC; with `nat = false` no IPv6 on the LAN."),
    Key("ipv6", BOOL, "false: no IPv6 on the LAN at all (no address, no router advertisements)", default=True,
        doc="`false`: no IPv6 on the LAN (no `address6`, no router advertisements), whatever the server pushes."),
    Key("dhcp_range", list_of(IPV4, "two addresses", "address strings"), "first and last address the DHCP "
        "server leases", example='["198.18.50.100", "198.18.50.199"]',
        doc="First and last address the DHCP server on the LAN leases, `[\"198.18.50.100\", \"198.18.50.199\"]`: "
            "inside the LAN network, not spanning the LAN address. Absent: no DHCP server. Client role only."),
    Key("dhcp_lease_time", integer(60, 86400), "DHCP lease time in seconds (60..86400)", default=3600,
        doc="DHCP lease time in seconds (60..86400); clients renew at half of it."),
    Key("static_leases", ADDRESSES_BY_MAC, "fixed DHCP addresses by MAC",
        example='{ "52:54:00:aa:bb:cc" = "198.18.50.10" }',
        doc="Fixed DHCP addresses by MAC, `{ \"52:54:00:aa:bb:cc\" = \"198.18.50.10\" }`: inside the LAN "
            "network (in or out of `dhcp_range`), each address once."),
    Key("dns_forwarder", BOOL, "answer DNS on the LAN address, through the tunnel only (client role)", default=True,
        doc="Client role: `true` answers DNS (UDP and TCP port 53) on the LAN address by forwarding to the DNS "
            "servers the VPN server pushed, through the tunnel only; SERVFAIL while the tunnel is down. "
            "The server role refuses `true`. See \"LAN services: DNS\"."),
    Key("dns_rebind_protection", BOOL, "the DNS forwarder passes no answer giving a LAN, own or loopback address",
        default=True,
        doc="With `dns_forwarder`: an answer from the VPN's DNS servers that gives an address of the LAN's networks, "
            "of the appliance, loopback, `0.0.0.0` or link-local reaches the LAN host with no records (DNS "
            "rebinding); the VPN's own addresses (10.x intranets) pass. `false`: answers pass as they come. "
            "See \"DNS rebinding: answers pointing into the LAN\"."),
    Key("dns_rebind_allow", list_of(HOSTNAME, "domain names", "domain name strings"),
        "domains whose answers may give LAN addresses (like dnsmasq's rebind-domain-ok)", default=(),
        example='["nas.example.com"]',
        doc="Domains (each with the names under it) whose answers may give LAN or own addresses, "
            "`[\"nas.example.com\"]`: a name the VPN's DNS gives a LAN device's address on purpose."),
    Key("routes", list_of(LAN_ROUTE, "networks", "strings like \"198.18.60.0/24 via 198.18.50.254\""),
        "networks behind a router on the LAN (or on its link): taken as sources, routed there",
        default=(), example='["198.18.60.0/24 via 198.18.50.254"]',
        doc="Networks reached through the LAN besides its own, `[\"198.18.60.0/24 via 198.18.50.254\"]` (a "
            "router on the LAN) or `[\"198.18.61.0/24\"]` (on the LAN's link itself); IPv4 or IPv6 (gateway: "
            "in `address6`'s prefix or `fe80::`). Packets from the LAN NIC with these sources are taken (all "
            "others not of the LAN are dropped, see the kill switch), and the appliance routes them there "
            "(the route is added and removed on exit; an existing route elsewhere fails the start). Not inside "
            "the LAN's or WAN's networks, no two overlapping, not `/0`. With `nat = false` the VPN server must "
            "also `iroute` them."),
), rules=(one_nic, apart_from_wan, dns_forwarder_in_client_role, rebind_needs_the_forwarder, dhcp_fits, ipv6_lan,
         routes_fit),
    doc="The routed side (router mode): its hosts reach the tunnel, never the WAN.")


# ------------------------------------------------------------------ [vpn]
def config_or_inline(s: Got) -> None:
    """Exactly one OpenVPN config; parse it (its errors keep their own file:line, or map onto the
    TOML's lines when inline) and check that it plays the declared role."""
    if s.has("config") == s.has("inline"):
        s.err(None, "give exactly one of `config = \"client.ovpn\"` or `inline = '''...'''`")
        s.drop("config")
        s.drop("inline")
        return
    opts = None
    if s["config"] is not None:
        full = s["config"]
        try:        # a regular file only: a FIFO named by mistake hung the start, /dev/zero grew it
            text = read_regular_file(full, CONFIG).decode("utf-8", "replace")
        except OSError as e:
            s.err("config", f"cannot read {s.raw['config']}: {e.strerror or e}")
            return
        opts = s.ctx.parse_ovpn(text, full, 0, ignore_scripts=bool(s["ignore_scripts"]))
    elif s["inline"] is not None:
        start = s.ctx.lines.of("vpn", "inline") or 1
        raw = s.ctx.lines.values.get(("vpn", "inline"), "")
        multi = raw.startswith('"""') or raw.startswith("'''")
        # TOML drops a newline right after the opening delimiter, so line 1 is the next line.
        offset = start if multi and raw[3:].strip() == "" else start - 1
        opts = s.ctx.parse_ovpn(s["inline"], s.ctx.path, offset if multi else None, start,
                                ignore_scripts=bool(s["ignore_scripts"]))
        s.values["inline_line"] = start
    s.extra["options"] = opts
    if opts is not None and opts.p2p:
        # The VM's roles wire the LAN to a pulled tunnel (client) or serve many (server); a
        # point-to-point link (its routes and addresses the config's own) is neither.
        s.err("role", "the OpenVPN config is a point-to-point link (tls-server/tls-client without pull): the "
              "appliance image runs client and server roles only; run it with `vpn-appliance run FILE.ovpn`")
    elif opts is not None and s["role"] is not None and opts.role != s["role"]:
        s.err("role", f"role is {s['role']!r} but the OpenVPN config is a {opts.role} config")


VPN = Section("vpn", "Vpn", "role and OpenVPN config", required=True, keys=(
    Key("role", enum(*ROLES), "client or server; must match the OpenVPN config", default="client",
        required=True,
        doc="`\"client\"` or `\"server\"`; must match the OpenVPN config (`client`/`tls-client`+`pull` is a "
            "client, `server`/`mode server` a server)."),
    Key("config", FILE, "an OpenVPN 2.6 config file, relative to the TOML's directory", example='"client.ovpn"',
        doc="An OpenVPN 2.6 config file, relative to the TOML's directory (or absolute). Files it names "
            "(`ca ca.crt`, ...) are relative to *its* directory, as in OpenVPN."),
    Key("inline", TEXT, "the OpenVPN config text itself",
        doc="The same directives inline; use a TOML multi-line literal string `'''...'''` so backslashes and "
            "quotes stay as they are (`vpn-appliance import` falls back to a `\"\"\"...\"\"\"` string with "
            "escapes if the profile contains `'''`). Files it names are relative to the TOML's directory. "
            "Exactly one of `config`/`inline`."),
    Key("ignore_scripts", BOOL, "skip the profile's up/down scripts instead of refusing it", default=False,
        doc="The appliance runs no scripts: a profile with `up`/`down`/`route-up`/... is refused at that line, "
            "unless this is `true` (the lines are then skipped, as `vpn-appliance run --no-scripts` does). "
            "`update-resolv-conf`/`update-systemd-resolved` need neither: pushed DNS is handled built in."),
), rules=(config_or_inline,), derived=(("inline_line", int | None, None),))


# The TOML's sections, in the order they are checked, documented and shown.
SECTIONS: tuple[Section, ...] = (APPLIANCE, WAN, LAN, VPN)


def main(argv: list[str]) -> int:
    """`python -m appliance.config.keys README.md`: rewrite the README's key tables from SECTIONS."""
    if len(argv) != 1:
        print("usage: python -m appliance.config.keys README.md", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        text = f.read()
    new = update_readme(text, SECTIONS)
    if new != text:
        with open(argv[0], "w", encoding="utf-8") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
