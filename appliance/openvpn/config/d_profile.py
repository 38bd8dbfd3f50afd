"""Client-profile directives of OpenVPN 2.6 that real profiles carry (eduVPN, providers, distro
examples): the network options a server may also push, process options, and compatibility marks.

Why here and applied like the pushed ones: OpenVPN treats a profile line and a pushed option the
same (options.c add_option; a push only adds to what the profile set), so `route-ipv6`,
`route-metric`, `block-ipv6` and `dns` in a profile are taken by the same rules as pushed (the
client merges them: openvpn/profile_push.py). Each one's argument forms are OpenVPN 2.6.14's
(options.c); a bad one is the profile's error at its line, where OpenVPN would often only warn.
"""
from __future__ import annotations

import os
import re

from ..clientnat import MAX_ENTRIES as CLIENT_NAT_MAX
from ..clientnat import parse_rule
from ..keymethod import MAX_DNS_ADDRESSES, DnsServer, _dns_endpoint
from ..keymethod import SHAPER_PUSH_MAX as SHAPER_MAX
from ..keymethod import SHAPER_PUSH_MIN as SHAPER_MIN
from .directives import Registry
from .parser import ParseState

reg = Registry()

MAX_METRIC = 2**31 - 1          # OpenVPN reads a metric with atoi into an int; negative fails


# ------------------------------------------------------------------ accepted, nothing to do here
reg.noop("tun-ipv6", "modern kernels need no special IPv6 handling of a TUN device; OpenVPN 2.6 ignores it "
         "with a warning too", nargs=(0, 0))
reg.noop("disable-dco", "there is no data channel offload (DCO) to disable, client or server: the data channel "
         "always runs in the process")     # (any arguments: OpenVPN 2.6 reads none and takes the line)
reg.noop("errors-to-stderr", "the log already goes to stderr (or to the `log` file), errors included", nargs=(0, 0))
reg.noop("echo", "OpenVPN only logs it and hands it to a management client (>ECHO), for a GUI; nothing here "
         "acts on it")


# ------------------------------------------------------------------ routes (as pushed ones)
# route-ipv6 is declared beside `route` (d_network.py): one entry for both roles.
@reg.apply("route-metric", why="the metric of routes (route, route-ipv6, pushed or not) given without one; "
           "a pushed route-metric replaces it", sets=("route_metric",), used_by="client", nargs=(1, 1))
def _route_metric(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, MAX_METRIC)
    if n is not None:
        p.set("route_metric", n)


_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


@reg.apply("route-gateway", why="the gateway of routes without one: on a tap device routes go via it (a pushed "
           "one takes its place); on a tun device routes go out of the device itself, as OpenVPN's, and it "
           "changes no route", sets=("route_gateway",), used_by="client", nargs=(1, 1))
def _route_gateway(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6.14: `dhcp`, an IPv4 address, vpn_gateway/net_gateway/remote_host -- each
    keyword exactly, case included (options.c streq, route.c get_special_addr strcmp) -- or a
    name only after `allow-pull-fqdn` (socket.c ip_or_dns_addr_safe). compat48: ours took any
    name, so `route-gateway DHCP` (which 2.6 refuses to start with) was read as a host name.
    Which of them a tap client can use is decided with the device type (parser.finish)."""
    v = a[0]
    if v in ("dhcp", "vpn_gateway", "net_gateway", "remote_host") or _dotted_quad(v) \
            or ("allow-pull-fqdn" in p.seen and _NAME.fullmatch(v)):
        p.set("route_gateway", v)
        return
    hint = (f" (OpenVPN 2.6 matches the keyword exactly, case included: write `{v.lower()}`)"
            if v.lower() in ("dhcp", "vpn_gateway", "net_gateway", "remote_host") else
            " (a name only after `allow-pull-fqdn`, as OpenVPN 2.6)" if _NAME.fullmatch(v) else "")
    p.err(d, f"gateway {v!r} must be an IPv4 address or dhcp{hint}")


def _dotted_quad(v: str) -> bool:
    """An address as 2.6's ip_addr_dotted_quad_safe takes it: four decimal parts of 0-255."""
    parts = v.split(".")
    return len(parts) == 4 and all(x.isdigit() and x.isascii() and len(x) <= 3 and int(x) <= 255 for x in parts)


ROUTE_DELAY_WINDOW = 30         # 2.6's default --route-delay window (options.c); Linux never waits on it


@reg.apply("route-delay", why="the routes go in N seconds after the tunnel comes up, then >UPDOWN:UP, route-up and "
           "CONNECTED (as OpenVPN 2.6 on Linux; W never waits there); on a tap client with route-gateway dhcp "
           "redirect-gateway goes via the router a DHCP ACK gave by then",
           sets=("route_delay",), used_by="client", nargs=(0, 2))
def _route_delay(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """`route-delay [N [W]]` (no N: 0). W is read as 2.6 reads it; on Linux its test_routes is
    always true, so the routes go in at N whatever W says. What waits: gateway/route_delay.py."""
    n = p.int_arg(d, a[0], 0, 2**31 - 1) if a else 0
    w = p.int_arg(d, a[1], 0, 2**31 - 1) if len(a) > 1 else ROUTE_DELAY_WINDOW
    if n is not None and w is not None:
        p.set("route_delay", (n, w))


@reg.apply("block-ipv6", why="no IPv6 leaves outside the tunnel: it is routed into the TUN and answered there "
           "with \"no route\" (as a pushed block-ipv6)", sets=("block_ipv6",), used_by="client", nargs=(0, 0))
def _block_ipv6(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("block_ipv6", True)


# ------------------------------------------------------------------ dns (OpenVPN 2.6's form)
MAX_DNS_PRIORITIES = 64
MAX_SEARCH_DOMAINS = 64
_PRIORITY = re.compile(r"[+-]?[0-9]+")


def _dns_server(p: ParseState, d: str, a: list[str]) -> None:
    if not _PRIORITY.fullmatch(a[1]) or not -128 <= int(a[1]) <= 127:
        p.err(d, f"server priority {a[1]!r} must be a number from -128 to 127")
        return
    prio, what, vals = int(a[1]), a[2], a[3:]
    servers = p.o.dns_servers
    if prio not in servers and len(servers) >= MAX_DNS_PRIORITIES:
        p.err(d, f"more than {MAX_DNS_PRIORITIES} dns servers")
        return
    if what == "address":
        eps = []
        for v in vals:
            try:
                eps.append(_dns_endpoint(v))
            except ValueError:
                p.err(d, f"server {prio}: malformed address {v!r} (ADDR, ADDR:PORT, IPv6 or [IPv6]:PORT)")
                return
        srv = servers.get(prio, DnsServer())
        if len(srv.addresses) + len(eps) > MAX_DNS_ADDRESSES:
            p.err(d, f"server {prio}: more than {MAX_DNS_ADDRESSES} addresses")
            return
        srv.addresses.extend(eps)
    elif what == "resolve-domains":
        srv = servers.get(prio, DnsServer())
        p.note(d, "resolve-domains: not used here (the server answers for every name, as a pushed one)")
    elif what in ("dnssec", "transport", "sni"):
        allowed = {"dnssec": ("yes", "no", "optional"), "transport": ("plain", "DoH", "DoT"), "sni": None}[what]
        if len(vals) != 1 or (allowed is not None and vals[0] not in allowed):
            want = "one name" if allowed is None else " or ".join(allowed)
            p.err(d, f"server {prio}: malformed {what} value {' '.join(vals)!r} (expects {want})")
            return
        srv = servers.get(prio, DnsServer())
        if what == "transport":
            srv.transport = vals[0]
            if vals[0] != "plain":
                p.note(d, f"server {prio} uses {vals[0]}: only plain DNS servers are used here (as a pushed one)")
        else:
            p.note(d, f"{what}: not used here (as a pushed one)")
    else:
        p.err(d, f"server {prio}: unknown option type {what!r} (address, resolve-domains, dnssec, transport, sni)")
        return
    p.o.source.setdefault(f"dns server {prio}", (p.path, p.line))     # for finish_profile's check
    servers[prio] = srv
    p.set("dns_servers", servers)


@reg.apply("dns", why="DNS servers and search domains (OpenVPN 2.6's `dns search-domains`, `dns server N "
           "...`), used with the pushed ones: a pushed server N replaces the profile's server N",
           sets=("dns_servers", "dns_search_domains"), used_by="client", nargs=(2, None),
           show={"dns_servers": lambda v: {n: [f"{a}:{port}" for a, port in s.addresses] + [s.transport]
                                           for n, s in v.items()}})
def _dns(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] == "search-domains":
        doms = p.o.dns_search_domains
        for v in a[1:]:
            if v not in doms:
                doms.append(v)
        if len(doms) > MAX_SEARCH_DOMAINS:
            p.err(d, f"more than {MAX_SEARCH_DOMAINS} search domains")
            return
        p.set("dns_search_domains", doms)
    elif a[0] == "server" and len(a) >= 4:
        _dns_server(p, d, a)
    else:
        p.err(d, f"unknown option type {a[0]!r} or missing or unknown parameter "
                 "(search-domains D..., server N address|resolve-domains|dnssec|transport|sni ...)")


# ------------------------------------------------------------------ client-nat
@reg.apply("client-nat", why="client: stateless 1:1 NAT of inner IPv4 addresses (snat: our NETWORK's "
           "sources leave as ALIAS; dnat: destinations in NETWORK leave as ALIAS; replies mapped back), "
           "checksums fixed, as OpenVPN 2.6 (clinat.c); pushed ones are added after these, 64 in all "
           "(openvpn/clientnat.py)", sets=("client_nat",), used_by="client", nargs=(4, 4),
           show={"client_nat": lambda v: [str(r) for r in v]})
def _client_nat(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    try:
        rule = parse_rule(a)
    except ValueError as e:
        p.err(d, str(e))
        return
    if len(p.o.client_nat) >= CLIENT_NAT_MAX:
        # OpenVPN 2.6 warns and drops it ("client-nat table overflow"); a profile line that
        # would do nothing is an error here, at its line.
        p.err(d, f"more than {CLIENT_NAT_MAX} client-nat entries (OpenVPN 2.6's table size)")
        return
    p.add("client_nat", rule)


# Settings of this module our server does not apply (field -> directive).
CLIENT_ONLY = {"route_metric": "route-metric", "block_ipv6": "block-ipv6",
               "dns_servers": "dns", "dns_search_domains": "dns", "client_nat": "client-nat"}


def finish_profile(p: ParseState) -> None:
    """Once the role is known: a server config's client-only settings are refused (accepted, they
    would do nothing there); and, as OpenVPN 2.6 (dns.c dns_options_verify), each `dns server N`
    needs an address."""
    o = p.o
    if o.role == "server":
        for f, d in CLIENT_ONLY.items():
            if f in o.source:
                p.err(d, "is applied by our client only; in a server config it would do nothing "
                         f"(`push \"{d}\"` with its arguments gives it to the clients)", o.source[f][1])
        if "dhcp_options" in o.source:
            # Accepted there by OpenVPN too (an environment variable for its scripts): a note, no error.
            p.line = o.source["dhcp_options"][1]
            p.note("dhcp-option", "no effect in a server config (`push \"dhcp-option ...\"` gives it to the clients)")
    for prio, srv in o.dns_servers.items():
        if not srv.addresses:
            p.err("dns", f"server {prio} has no address (`dns server {prio} address ADDR`)",
                  p.o.source.get(f"dns server {prio}", (p.path, None))[1])


# ------------------------------------------------------------------ session
@reg.apply("session-timeout", why="a client ends its run N seconds into each connection (as at SIGTERM, "
           "OpenVPN's \"Session timeout, exiting\"; a pushed one replaces it); a server disconnects each client N "
           "seconds after its tunnel came up (gateway/session_limit.py)", sets=("session_timeout",),
           used_by="client", nargs=(1, 1))
def _session_timeout(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 2**31 - 1)
    if n is not None:
        p.set("session_timeout", n)


# ------------------------------------------------------------------ process options
@reg.apply("config", why="FILE's lines are read in place, as OpenVPN 2.6 reads them (include.py)",
           used_by="parser", nargs=(1, 1))
def _config(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    from .include import include          # include builds on the parser, as this module
    include(p, d, a[0])


@reg.apply("cd", why="relative file names on the following lines are read from DIR, and the process runs (its "
           "scripts start) there, as OpenVPN chdir()s there while it reads the profile", sets=("cd_dir",),
           used_by="pump", nargs=(1, 1))
def _cd(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN reads the files it names after the whole profile, from the directory `cd` left it
    in, so a relative name on a line before `cd` is read from DIR there; ours reads each at its
    line. Rather than read another file than OpenVPN would, such a profile is refused. A relative
    DIR is taken from the profile's directory (where relative names are read from here), where
    OpenVPN takes it from its working directory (the same under its systemd units, `--cd`)."""
    target = a[0] if os.path.isabs(a[0]) else os.path.join(p.base, a[0])
    if not os.path.isdir(target):
        p.err(d, f"cd to {a[0]!r} failed: not a directory")
        return
    if p.relative_line is not None:
        other = getattr(p.relative_line, "path", p.path)       # a line of another file (`config FILE`)
        where = f"line {p.relative_line}" if other == p.path else f"{other}:{p.relative_line}"
        p.err(d, f"{where} named a file relative to the profile's directory before this "
                 "`cd`, which OpenVPN would read from DIR: give `cd` first (or that name absolute)")
        return
    # The directory chdir() reaches: `..` after a symlink is the parent of its target, as the
    # kernel walks it (normpath's lexical `keys/..` read the profile's own directory, where
    # OpenVPN reads the target's parent: another ca.crt than OpenVPN's).
    p.base = os.path.realpath(target)
    # The process's own directory too (cli.enter_cd_dir): OpenVPN stays there, so its scripts
    # start there and a relative name in their arguments or their own reads is DIR's.
    p.set("cd_dir", p.base)


@reg.apply("mark", why="SO_MARK on the VPN socket (policy routing by fwmark), set before it is bound or "
           "connected, as OpenVPN 2.6", sets=("mark",), used_by="pump", nargs=(1, 1))
def _mark(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 2**32 - 1)           # the kernel's mark is 32 bits; 0 is none
    if n is not None:
        p.set("mark", n)


_DEV_NAME = re.compile(r"[^\s/:]{1,15}")        # the kernel's dev_valid_name (IFNAMSIZ - 1)


@reg.apply("bind-dev", why="SO_BINDTODEVICE on the VPN socket (a VRF or one interface), set before it is bound "
           "or connected, as OpenVPN 2.6", sets=("bind_dev",), used_by="pump", nargs=(1, 1))
def _bind_dev(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if not _DEV_NAME.fullmatch(a[0]) or a[0] in (".", ".."):
        p.err(d, f"{a[0]!r} is not a device name (1 to 15 characters, no '/', ':' or white space)")
        return
    p.set("bind_dev", a[0])


# 2.6's names for the kernel's path MTU discovery modes (mtu.c translate_mtu_discover_type_name):
# IP_PMTUDISC_DONT, _WANT and _DO, the same numbers for IPV6_MTU_DISCOVER.
MTU_DISC = {"no": 0, "maybe": 1, "yes": 2}


@reg.apply("mtu-disc", why="IP_MTU_DISCOVER (IPV6_MTU_DISCOVER on an IPv6 socket) on the VPN socket, UDP and "
           "TCP, set before it is bound or connected, as OpenVPN 2.6: `yes` sets DF and never fragments (a "
           "datagram over the path MTU is dropped and counted), `no` lets the kernel fragment", sets=("mtu_disc",),
           used_by="pump", nargs=(1, 1))
def _mtu_disc(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    mode = MTU_DISC.get(a[0])                   # as 2.6: exactly these words (strcmp), lower case
    if mode is None:
        p.err(d, f"invalid --mtu-disc type: '{a[0]}' -- valid types are 'yes', 'maybe', or 'no' (as OpenVPN 2.6)")
        return
    p.set("mtu_disc", mode)



@reg.apply("shaper", why="at most N bytes a second written to the link (a client or p2p peer; 100..100000000), "
           "as OpenVPN 2.6: the TUN is not read while the link is busy, so what is sent faster waits in the "
           "kernel's TUN queue and is dropped there; refused with `mode server`, as 2.6 refuses it",
           sets=("shaper",), used_by="pump", nargs=(1, 1))
def _shaper(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 2**31 - 1)
    if n is None:
        return
    if not SHAPER_MIN <= n <= SHAPER_MAX:
        p.err(d, f"Bad shaper value, must be between {SHAPER_MIN} and {SHAPER_MAX} (as OpenVPN 2.6)")
        return
    p.set("shaper", n)


# ------------------------------------------------------------------ compatibility
COMPAT_DIFFERS = (
    (20307, "below 2.3.7 OpenVPN allows TLS 1.0, which this client does not"),
    (20400, "below 2.4.0 OpenVPN falls back to cipher BF-CBC without negotiation, which this client does not do"),
    (20600, "below 2.6.0 OpenVPN allows and announces compression, which this client does not"),
)
_VERSION = re.compile(r"([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})")


def _compat_mode(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN 2.6.14 (options.c options_set_backwards_compatible_options) changes defaults only for
    versions below 2.6.0: those are refused naming what differs; 2.6.0 and later change nothing."""
    m = _VERSION.fullmatch(a[0])
    if m is None:
        p.err(d, f"cannot parse version number {a[0]!r} (expects MAJOR.MINOR.PATCH)")
        return
    v = int(m[1]) * 10000 + int(m[2]) * 100 + int(m[3])
    for below, why in COMPAT_DIFFERS:
        if v < below:
            p.err(d, f"{a[0]}: {why}; only compat-mode 2.6.0 or later is supported")
            return


reg.noop("compat-mode", "2.6.0 and later change none of OpenVPN 2.6's defaults, which are this client's",
         check=_compat_mode, nargs=(1, 2))
