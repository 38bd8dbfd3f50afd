"""OpenVPN 2.6 directives that configs seldom carry: old ones, GUI and library knobs, pushed-only names.

Each was read in OpenVPN 2.6.14's options.c (and where it acts) and tried on Debian's 2.6.14, and
is done as it does on Linux: applied, accepted with the reason it has no effect (2.6 itself only
warns, or does nothing on a tun device), or refused with the reason -- always when it would change
who may connect or how the tunnel is secured and we do not implement it. Before, each was an
"unknown directive" error.
"""
from __future__ import annotations

import ipaddress

from ..redirectflags import added_line, unknown_flag
from .directives import Registry
from .parser import ParseState

reg = Registry()

# ------------------------------------------------------------------ deprecated or removed in 2.6
reg.noop("max-routes", "(deprecated) the number of routes is unlimited, as since OpenVPN 2.4 (2.6 warns and "
         "ignores it too)", nargs=(0, 1))
# As OpenVPN 2.6's own messages (options.c): both fail there.
reg.refuse("compat-names", "--compat-names was removed in OpenVPN 2.5. Update your configuration.")
reg.refuse("no-name-remapping", "--no-name-remapping was removed in OpenVPN 2.5. Update your configuration.")
# Debian's 2.6.14 (OpenSSL 3, no engine support) says "OpenSSL hardware crypto engine functionality is
# not available" and goes on, with or without a name.
reg.noop("engine", "OpenSSL engines are not used (Debian's OpenVPN 2.6 with OpenSSL 3 has no engine support "
         "either, and goes on without one)", nargs=(0, 1))

# OpenSSL 3 providers the appliance's crypto library has built in: `providers legacy default` is what
# old PKCS#12 files (RC2-40, 3DES) need under OpenVPN 2.6; here they open without it.
_PROVIDERS = ("default", "legacy", "base")


def _providers(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    bad = [x for x in a if x not in _PROVIDERS]
    if bad:
        # OpenVPN 2.6 fails at start too ("failed to load provider 'X'"): a FIPS or hardware
        # provider would change how keys are held and used, which this appliance does not do.
        p.err(d, f"OpenSSL provider {bad[0]!r} is not available here (only {', '.join(_PROVIDERS)}, built in); "
              "remove it")


reg.noop("providers", "the default and legacy algorithms (an old PKCS#12 file's RC2 or 3DES) are always "
         "available here", check=_providers, nargs=(1, None))

# ------------------------------------------------------------------ what a server pushes
# OpenVPN 2.6 reads these in a config file as if pushed (they are meant for PUSH_REPLY only, its
# options.c says "should not be used by normal users in config files"): a profile carrying one
# would start the session with a value the server did not choose.
_PUSHED = "is set by the server's push (PUSH_REPLY), not in a config file: remove it"
reg.refuse("peer-id", f"{_PUSHED} (a client given its own would tag its data packets with an id the server "
           "never assigned)")
reg.refuse("key-derivation protocol-flags", f"{_PUSHED} (a client given it would derive its data keys "
           "otherwise than a server that did not push it)")
reg.refuse("auth-token auth-token-user", f"{_PUSHED} (a token stands in for the password; the client "
           "keeps the one its server gives)", access=True)
# As OpenVPN 2.6's message (options.c, OPT_P_PULL_MODE).
reg.refuse("push-continuation", "option 'push-continuation' cannot be used in this context (only in a "
           "PUSH_REPLY)")

# ------------------------------------------------------------------ security: refused, never ignored
reg.refuse("no-replay", "replay protection cannot be turned off here (OpenVPN 2.6 still honours it, warning "
           "that it \"may make OpenVPN less secure\"); remove it", access=True)
reg.refuse("replay-persist", "not supported: in TLS mode OpenVPN 2.6 keeps tls-auth/tls-crypt's replay state "
           "in FILE across restarts; here each session has its own replay window (a restart starts new ones); "
           "remove it", access=True)
reg.refuse("single-session", "not supported: a server here serves every client that passes its checks, each "
           "for as many sessions as it opens (`max-clients 1` caps the clients, `duplicate-cn` off keeps one "
           "session per name)", access=True)
@reg.apply("management-query-proxy", why="client: before each remote is tried, the management client is told "
           ">PROXY:N,UDP|TCP,HOST and answers `proxy NONE` (as the profile says) or `proxy HTTP HOST PORT [nct]` "
           "(a TCP remote through that HTTP proxy), as OpenVPN 2.6; not asked with management-query-remote on, "
           "as there", sets=("management_query_proxy",), used_by="client", nargs=(0, 0))
def _management_query_proxy(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("management_query_proxy", True)


@reg.apply("management-query-remote", why="client: before each remote is tried, the management client is "
           "told >REMOTE:HOST,PORT,PROTO and answers `remote ACCEPT`, `remote SKIP [N]` or `remote MOD HOST PORT`, "
           "as OpenVPN 2.6 (gateway/client_mgmt.py)", sets=("management_query_remote",), used_by="client",
           nargs=(0, 0))
def _management_query_remote(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("management_query_remote", True)


# ------------------------------------------------------------------ network
# OpenVPN 2.6 (socket.c do_preresolve) resolves every remote, proxy and local name at each
# (re)start, before its chroot and privilege drop can stop it resolving, and restarts when one
# fails. Here nothing stops a name resolving later (no chroot; `user` keeps DNS working), so each
# remote is resolved when it is tried: the addresses tried are the same.
reg.noop("preresolve ip-remote-hint", "remote names are resolved as each remote is tried (no chroot here stops "
         "that later; OpenVPN's preresolve resolves them all before the first attempt)", nargs=(0, 1))
def _route_ipv6_gateway(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c ipv6_addr_safe): an IPv6 address, checked; nothing more."""
    try:
        if "%" in a[0] or "/" in a[0]:
            raise ValueError
        ipaddress.IPv6Address(a[0])
    except ValueError:
        p.err(d, f"route-ipv6-gateway parm {a[0]!r} must be a valid address (an IPv6 address, as OpenVPN 2.6)")


reg.noop("route-ipv6-gateway", "on a tun device route-ipv6 routes go to the device, without a gateway "
         "(OpenVPN 2.6's route.c uses this one on a tap device only)", check=_route_ipv6_gateway, nargs=(1, 1))



@reg.apply("redirect-private", why="client: the server's host route along the pre-tunnel default route, "
           "without redirecting the default route (`local`/`autolocal`: none when the server is on a local "
           "network; `ipv6`: IPv6 redirected; `block-local` as redirect-gateway's), as OpenVPN 2.6",
           sets=("redirect_private", "redirect_lines"), used_by="client")
def _redirect_private(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    bad = unknown_flag(a)
    if bad is not None:
        p.err(d, f"unknown --redirect-private flag: {bad} (as OpenVPN 2.6)")
        return
    if p.o.redirect_gateway is not None:
        p.note(d, "redirect-gateway is also set: the two lines' flags are merged into one set, as OpenVPN 2.6 "
               "merges them (warning that this is not well supported)")
    p.set("redirect_private", added_line(p.o.redirect_private, a))    # a second line adds (as 2.6)
    p.set("redirect_lines", [*p.o.redirect_lines, (False, list(a))])  # the order, for redirect_in_effect


@reg.apply("max-packet-size", why="the largest packet OpenVPN 2.6 sends: `mssfix N mtu`, and N (154..2048) "
           "for control-channel packets", sets=("mssfix", "mssfix_mtu", "tls_mtu"), used_by="session",
           nargs=(1, 1))
def _max_packet_size(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c): the control channel's packets are at most N bytes, clamped to
    154..2048 with a note, and mssfix is N with `mtu` (a later mssfix line replaces it, as there;
    an earlier `mssfix N fixed` keeps its `fixed`, as there)."""
    n = p.int_arg(d, a[0], 0, 65535)
    if n is None:
        return
    tls = min(max(n, TLS_MTU_MIN), TLS_MTU_MAX)
    if tls != n:
        p.note(d, f"outside the control channel's packet sizes ({TLS_MTU_MIN} to {TLS_MTU_MAX}): {tls} is used "
               "there (as OpenVPN 2.6)")
    p.set("tls_mtu", tls)
    p.set("mssfix", n)
    p.set("mssfix_mtu", True)


TLS_MTU_MIN, TLS_MTU_MAX = 154, 2048        # OpenVPN 2.6's TLS_CHANNEL_MTU_MIN, TLS_CHANNEL_BUF_SIZE


@reg.apply("ifconfig-push-constraint", why="server: a client whose address (ifconfig-push, or the pool's) lies "
           "outside NETWORK/NETMASK is logged as an error, as OpenVPN 2.6 (which lets it connect all the same)",
           sets=("ifconfig_push_constraint",), used_by="server", nargs=(2, 2))
def _ifconfig_push_constraint(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    net, mask = p.ip(d, a[0]), p.mask(d, a[1])
    if net is not None and mask is not None:
        p.set("ifconfig_push_constraint", (net, mask))
