"""Client-config-dir files: the per-client directives a server reads when a client connects."""
from __future__ import annotations

import ipaddress

from ..errors import ConfigError
from ..keymethod import PUSH_CONTROL_BYTE, refused_in_control_text
from ..peernames import for_display
from .ipv6 import network6, prefix6
from .lexer import lines
from .model import CcdOptions, ConfigErrors

VLAN_MIN, VLAN_MAX = 1, 4094          # 802.1Q VLAN ids OpenVPN 2.6 takes for vlan-pvid


def _addresses_error(d: str, a: list[str]) -> str | None:
    """Why the addresses of an ifconfig-push or iroute line are unusable, else None. Checked
    here, as clientpush.py reads them (an IPv4 address and a netmask or peer address; a
    network and its netmask): a file read as its bytes holds anything, and a value that
    ipaddress refused when the client was pushed to was an internal error (a traceback at each
    of its tries) where the file's own line should refuse it."""
    try:
        if d == "ifconfig-push":
            ipaddress.IPv4Address(a[0])
            ipaddress.IPv4Address(a[1])
        else:
            ipaddress.IPv4Network(f"{a[0]}/{a[1] if len(a) > 1 else '255.255.255.255'}", strict=False)
    except ValueError:
        return f"not an IPv4 address and netmask: {for_display(' '.join(a[:2]))!r}"
    return None


def _ipv6_line(c: CcdOptions, d: str, a: list[str]) -> str | None:
    """iroute-ipv6 NET[/BITS] or ifconfig-ipv6-push ADDR[/BITS] [REMOTE] into `c`, as OpenVPN 2.6
    reads them (options.c: a /64 without bits; an iroute's host bits cleared); else why not."""
    try:
        if d == "iroute-ipv6":
            c.iroutes6.append(str(network6(a[0])))
            return None
        addr, bits = prefix6(a[0])
        remote = str(prefix6(a[1])[0]) if len(a) > 1 else None
    except ValueError as e:
        return for_display(str(e))
    if bits == 128 or addr.is_unspecified or addr.is_multicast:
        # OpenVPN takes them and the client's interface ends up with no usable route (/128) or
        # none at all; refused here at the line rather than as a client that cannot work.
        return f"not a usable tunnel address: {for_display(a[0])!r}"
    c.ifconfig_ipv6_push = (str(addr), bits, remote)
    return None


def parse_ccd(text: str, path: str = "<ccd>") -> CcdOptions:
    """A client-config-dir file: ifconfig-push, ifconfig-ipv6-push, iroute, iroute-ipv6, push,
    push-reset, push-remove, disable, vlan-pvid."""
    c = CcdOptions()
    errors: list[ConfigError] = []
    for ln in lines(text):
        if ln.tokens is None:
            errors.append(ConfigError(ln.error or "cannot parse", path, ln.number, ln.first_word))
            continue
        d, a = ln.tokens[0].lower(), ln.tokens[1:]
        if ln.inline is not None:
            errors.append(ConfigError("inline blocks are not supported in a client-config-dir file",
                                      path, ln.number, d))
        elif d in ("ifconfig-push", "iroute") and len(a) >= (2 if d == "ifconfig-push" else 1) \
                and (why := _addresses_error(d, a)) is not None:
            errors.append(ConfigError(why, path, ln.number, d))
        elif d == "ifconfig-push" and len(a) >= 2:
            c.ifconfig_push = (a[0], a[1])
        elif d == "iroute" and len(a) >= 1:
            c.iroutes.append((a[0], a[1] if len(a) > 1 else "255.255.255.255"))
        elif (d == "iroute-ipv6" and len(a) == 1) or (d == "ifconfig-ipv6-push" and 1 <= len(a) <= 2):
            if (why := _ipv6_line(c, d, a)) is not None:
                errors.append(ConfigError(why, path, ln.number, d))
            elif d == "ifconfig-ipv6-push":
                c.block_ifconfig_ipv6 = False          # it lifts an earlier push-remove ifconfig-ipv6
        elif d == "push" and len(a) == 1 and refused_in_control_text(a[0]):
            errors.append(ConfigError(PUSH_CONTROL_BYTE, path, ln.number, d))
        elif d == "push" and len(a) == 1:
            c.push.append(a[0])
        elif d == "push-remove" and len(a) == 1 and a[0] == "ifconfig":
            c.block_ifconfig = True
        elif d == "push-remove" and len(a) == 1 and a[0] == "ifconfig-ipv6":
            c.block_ifconfig_ipv6 = True
        elif d == "push-remove" and len(a) == 1:
            c.push_remove.append((len(c.push), a[0]))
        elif d == "push-remove":
            errors.append(ConfigError("push-remove takes one argument, the start of the options to take out "
                                      "(quote it when it holds spaces)", path, ln.number, d))
        elif d == "push-reset":
            # 2.6 empties the push list as it is now (push.c push_reset), this file's own
            # earlier `push` lines and what a push-remove took from them included.
            c.push_reset = True
            c.push.clear()
            c.push_remove.clear()
        elif d == "disable":
            c.disable = True
        elif d == "vlan-pvid" and len(a) == 1:
            # The client's VLAN on a vlan-tagging server (l2switch.py); without it, no effect, as 2.6.
            n = int(a[0]) if a[0].isascii() and a[0].isdigit() and len(a[0]) <= 5 else 0
            if not VLAN_MIN <= n <= VLAN_MAX:
                errors.append(ConfigError(f"the VLAN id must be {VLAN_MIN}..{VLAN_MAX} (as OpenVPN 2.6)",
                                          path, ln.number, d))
            else:
                c.vlan_pvid = n
        else:
            errors.append(ConfigError("not supported in a client-config-dir file", path, ln.number, d))
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return c


# What OpenVPN keeps outside its push list (push.c push_remove_option): no prefix removes them;
# `push-remove ifconfig` / `push-remove ifconfig-ipv6`, these words exactly, block them
# (CcdOptions.block_ifconfig, applied by without_blocked).
_NOT_IN_PUSH_LIST = ("ifconfig ", "ifconfig-ipv6 ")


def with_ccd_pushes(opts: list[str], pushes: list[str], removes: list[tuple[int, str]]) -> list[str]:
    """`opts` (what this client is pushed before its per-client lines: its address, topology,
    the server's `push` lines unless push-reset) with a per-client file's `push` lines added in
    order, each `push-remove PREFIX` taking out every option so far that begins with PREFIX, as
    OpenVPN 2.6 reads such a file line by line (push-remove route: every route, route-ipv6 and
    route-gateway pushed before it; a later `push route ...` stays)."""
    # Linear in the lines (a 1 MiB file holds ~30,000 push-removes; filtering the list again at
    # each took ~0.2 s on the event loop): walking back from the last line, the options added
    # between two push-removes are checked once, against the set of prefixes removed after them
    # (prefix by prefix of the option).
    if not removes:
        return [*opts, *pushes]
    later: set[str] = set()
    kept: list[list[str]] = [pushes[removes[-1][0]:]]
    for i in range(len(removes) - 1, -1, -1):
        n, prefix = removes[i]
        later.add(prefix)
        start = removes[i - 1][0] if i else 0
        group = pushes[start:n] if i else [*opts, *pushes[:n]]
        if group:
            kept.append([o for o in group if o.startswith(_NOT_IN_PUSH_LIST)
                         or not any(o[:k] in later for k in range(len(o) + 1))])
    return [o for group in reversed(kept) for o in group]


def without_blocked(opts: list[str], ipv4: bool, ipv6: bool) -> list[str]:
    """`opts` without the client's `ifconfig` line (`ipv4`) / `ifconfig-ipv6` line (`ipv6`), as
    OpenVPN 2.6's push reply leaves out an address `push-remove ifconfig[-ipv6]` blocked."""
    drop = (("ifconfig ",) if ipv4 else ()) + (("ifconfig-ipv6 ",) if ipv6 else ())
    return [o for o in opts if not o.startswith(drop)] if drop else opts
