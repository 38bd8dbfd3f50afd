"""Kill switch: nothing from the LAN (or the appliance itself) leaves the WAN in clear.

The rules go in BEFORE the tunnel exists and stay while it reconnects: the forward chain drops by
default and only lets LAN ↔ tunnel through; the output chain lets the WAN carry only the VPN
transport, DHCP client traffic and replies on established connections. Interfaces are matched by
name (`iifname`/`oifname`), so the not-yet-created `tun0` is fine. Everything lives in one table
(`inet vpnappliance`) that is replaced atomically and removed on exit.

IPv6: the `inet` family sees IPv4 and IPv6 alike, so the forward chain (policy drop, LAN → WAN
dropped by interface, LAN → tunnel only) covers IPv6 LAN packets with no rule of its own -- with
the tunnel up, down or coming back. The output chain admits, besides the VPN transport to IPv4
and IPv6 remotes, only what the WAN's own IPv6 needs: neighbour discovery (solicitations and
advertisements, which carry no LAN data), router solicitations (SLAAC) and MLD reports (so a
snooping switch keeps forwarding our solicited-node multicast) -- and those only when the WAN has
IPv6 of its own; an IPv4-only WAN sends no IPv6 at all once the rules are in. DHCP is DHCPv4 only
(`meta nfproto ipv4`): SLAAC needs no DHCPv6. Nothing from the LAN can match these: forwarded
packets never traverse the output chain, and the forward chain drops LAN → WAN first.

Sources on the LAN: the output chain's "established,related" also admits what the appliance's own
kernel answers to a LAN packet -- an echo reply, a TCP reset, an ICMP error. A LAN host that
forges an Internet source address would have those answers routed out of the WAN in clear (the
echo's payload verbatim: a channel around the kill switch while the tunnel is down, or to any
destination the tunnel does not carry). So a `prerouting` chain at raw priority (before conntrack,
so nothing is tracked for them) drops every packet from the LAN NIC whose source is not of the
LAN: its networks, plus 0.0.0.0 (a DHCP client without an address), `::` (duplicate address
detection) and link-local IPv6, plus the networks `[lan] routes` names as reached through the LAN
(behind a router there: with `nat = false` their hosts keep their own addresses, and even with NAT
their packets arrive with them). A fixed list rather than the kernel's rp_filter or nft `fib`:
rp_filter has no IPv6, and the appliance kernel has no nft fib.

Connections that began inside: the same answers can be asked for from the tunnel -- by the VPN
server, or whatever it routes to us, with a source the tunnel does not carry (a split tunnel's
default route is the WAN) -- and no source list can tell a forged tunnel source from a real one.
So the `mark_inside` chain (prerouting, after conntrack) marks every connection whose first
packet came in on the TUN or the LAN NIC (INSIDE_MARK, one bit of the conntrack mark), and the
output chain drops WAN packets of marked connections before "established,related" could accept
them: whatever began inside is answered inside or not at all. A packet conntrack cannot place
(`ct state invalid`: a SYN/ACK or FIN/ACK that starts nothing) has no connection to mark, yet the
kernel answers it (a reset), and that answer is invalid as well, so only the output chain's own
accepts would judge it -- over a TCP VPN, the accept towards the server's address and port let
such resets out of the WAN (tests/interop/test_tunnel_invalid_tcp.py). So `mark_inside` drops
invalid packets from the TUN and the LAN before anything answers them (the forward chain drops
them anyway).

A server's management interface on a LAN or WAN address (`management IP PORT PWFILE`,
config/mgmt_listen.py): the `input` chain drops TCP to its port from every interface but the one
holding the address. The socket is bound to that address alone, but Linux accepts a packet for
any of its addresses on any interface: without the rule, a host on the WAN routing the LAN address
to us, or a VPN client through the tunnel, reached a port meant for the LAN. Replies need nothing:
on the LAN the output chain accepts them, on the WAN they are "established" (the connection began
outside, so it carries no inside mark).
"""
from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from dataclasses import dataclass
from typing import Sequence

from .nat import NFT_TIMEOUT, apply_ruleset, delete_nat, delete_table, nft_string, render_nat, replace_table

log = logging.getLogger("vpn-appliance")

TABLE = "vpnappliance"
# What the appliance's own IPv6 on the WAN sends besides the transport (see the module doc).
WAN_ICMPV6 = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert", "mld2-listener-report")


@dataclass(frozen=True)
class Endpoint:
    """A VPN transport peer the appliance may talk to on the WAN (client: each resolved remote)."""
    address: str
    port: int
    proto: str  # "udp" | "tcp"


def _proto(p: str) -> str:
    if p not in ("udp", "tcp"):
        raise ValueError(f"proto must be udp or tcp, not {p!r}")
    return p


# The conntrack mark bit of connections that began on the tunnel or the LAN (chain mark_inside):
# the output chain never lets their packets -- the kernel's own answers -- out of the WAN.
INSIDE_MARK = 0x00400000

# Sources a LAN host may use besides its network's: no address yet (DHCP, DAD), IPv6 link-local.
LAN_UNADDRESSED4 = ("0.0.0.0",)
LAN_UNADDRESSED6 = ("::", "fe80::/10")


def _lan_sources(lan: str, lan_nets: Sequence[str]) -> list[str]:
    """The prerouting rules that drop packets from the LAN NIC with a source not of the LAN."""
    nets = [ipaddress.ip_network(n, strict=False) for n in (*LAN_UNADDRESSED4, *LAN_UNADDRESSED6, *lan_nets)]
    out = []
    for fam, version in (("ip", 4), ("ip6", 6)):
        # collapsed: an nft set refuses overlapping intervals (a `[lan] routes` fd00::/8 around a derived ULA)
        allowed = [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                   for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]
        out.append(f"\t\tiifname {nft_string(lan)} {fam} saddr != {{ {', '.join(allowed)} }} counter drop"
                   ' comment "source not of the LAN"')
    return out


def render_killswitch(wan: str, tun: str, lan: str | None = None, nat: bool = True, role: str = "client",
                      endpoints: Sequence[Endpoint] = (), listen: tuple[int, str] | None = None,
                      wan_ipv6: bool = False, lan_nets: Sequence[str] | None = None,
                      management: tuple[str, int] | None = None) -> str:
    """The `inet vpnappliance` table as nft text.

    wan/tun/lan: interface names; nat: LAN masqueraded (tunnel → LAN only for replies) or routed
    (both ways); role client: `endpoints` are the servers we may reach on the WAN; role server:
    `listen` = (port, proto) whose replies may leave the WAN; wan_ipv6: the WAN has IPv6 of its
    own (`address6`/`slaac`), so its neighbour discovery may leave (without, nothing IPv6 does);
    lan_nets: the LAN's networks (IPv4 and IPv6), required with a `lan`: the only sources taken
    from it (see the module doc); management: (interface, port) of a server's management interface
    off loopback, whose port is then open on that interface only."""
    if lan is not None and not lan_nets:
        raise ValueError("a LAN needs its networks (lan_nets): the sources taken from it")
    fw = ["\t\ttype filter hook forward priority filter; policy drop;",
          "\t\tct state invalid drop"]
    if lan is not None:
        inside, outside = (lan, tun) if role == "client" else (tun, lan)
        fw.append(f"\t\tiifname {nft_string(lan)} oifname {nft_string(wan)} counter drop"
                  ' comment "LAN never leaves the WAN in clear"')
        fw.append(f"\t\tiifname {nft_string(inside)} oifname {nft_string(outside)} accept")
        back = f"\t\tiifname {nft_string(outside)} oifname {nft_string(inside)}"
        fw.append(f"{back} ct state established,related accept" if nat else f"{back} accept")
    out = ["\t\ttype filter hook output priority filter; policy accept;",
           f"\t\toifname {nft_string(wan)} ct mark and {INSIDE_MARK:#010x} != 0 counter drop"
           ' comment "answers to the tunnel or the LAN never leave the WAN"',
           f"\t\toifname {nft_string(wan)} ct state established,related accept",
           f"\t\toifname {nft_string(wan)} meta nfproto ipv4 udp sport 68 udp dport 67 accept"]
    if wan_ipv6:
        out.append(f"\t\toifname {nft_string(wan)} icmpv6 type {{ {', '.join(WAN_ICMPV6)} }} accept")
    for e in endpoints:
        fam = "ip" if ipaddress.ip_address(e.address).version == 4 else "ip6"
        out.append(f"\t\toifname {nft_string(wan)} {fam} daddr {ipaddress.ip_address(e.address)} "
                   f"{_proto(e.proto)} dport {int(e.port)} accept")
    if listen is not None:
        port, proto = listen
        out.append(f"\t\toifname {nft_string(wan)} {_proto(proto)} sport {int(port)} accept")
    out.append(f"\t\toifname {nft_string(wan)} counter drop comment \"only the VPN transport on the WAN\"")
    pre = []
    if lan is not None:
        pre = ["\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n"
               + "\n".join(_lan_sources(lan, lan_nets or ())) + "\n\t}\n"]
    inside = ", ".join(nft_string(i) for i in ([tun] + ([lan] if lan is not None else [])))
    pre.append("\tchain mark_inside {\n\t\ttype filter hook prerouting priority mangle; policy accept;\n"
               f"\t\tiifname {{ {inside} }} ct state invalid counter drop"
               ' comment "what conntrack cannot place is not taken from inside"\n'
               f"\t\tiifname {{ {inside} }} ct state new ct mark set ct mark or {INSIDE_MARK:#010x}\n\t}}\n")
    if management is not None:
        ifname, mport = management
        pre.append("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
                   f"\t\tiifname != {nft_string(ifname)} tcp dport {int(mport)} counter drop"
                   f' comment "the management port only on {ifname}"\n\t}}\n')
    body = ("".join(pre) + "\tchain forward {\n" + "\n".join(fw) + "\n\t}\n"
            "\tchain output {\n" + "\n".join(out) + "\n\t}\n")
    return replace_table("inet", TABLE, body)


def render_router(wan: str, tun: str, lan: str | None, nat: bool, role: str,
                  endpoints: Sequence[Endpoint] = (), listen: tuple[int, str] | None = None,
                  wan_ipv6: bool = False, lan_nets: Sequence[str] | None = None,
                  management: tuple[str, int] | None = None) -> str:
    """Kill switch plus (router mode with nat) masquerading, as one atomic ruleset."""
    text = render_killswitch(wan, tun, lan, nat, role, endpoints, listen, wan_ipv6, lan_nets, management)
    if lan is not None and nat:
        text += render_nat(tun, lan, role)
    else:
        text += delete_nat()
    return text


def drop_counts(netns: str | None = None) -> dict[str, int]:
    """Packets each counted drop rule of our table dropped, by its comment ({} when it cannot be
    read). Why only at exit: reading them means running `nft`, not something for the pump."""
    argv = ["nft", "list", "table", "inet", TABLE]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, int] = {}
    for m in re.finditer(r'counter packets (\d+) bytes \d+ drop comment "([^"]*)"', r.stdout):
        out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1))
    return out


def flush(netns: str | None = None) -> None:
    """Remove both our tables (kill switch and NAT); leaves everyone else's rules alone. What the
    kill switch dropped is logged first (once, when anything was)."""
    dropped = {k: v for k, v in drop_counts(netns).items() if v}
    if dropped:
        log.info("kill switch drops (packets): %s", ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())))
    apply_ruleset(delete_table("inet", TABLE) + delete_nat(), netns)


__all__ = ["TABLE", "Endpoint", "render_killswitch", "render_router", "apply_ruleset", "drop_counts", "flush"]
