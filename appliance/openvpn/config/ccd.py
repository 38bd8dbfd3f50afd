"""Client-config-dir files: the per-client directives a server reads when a client connects."""
from __future__ import annotations

import ipaddress
import logging
import time

from ...logpace import NoteLimit, times
from ..errors import ConfigError
from ..keymethod import PUSH_CONTROL_BYTE, refused_in_control_text
from ..peernames import for_display
from .ipv6 import network6, prefix6
from .directives import case_variant
from .lexer import blank_hint, lines, without_odd_blanks
from .model import CcdOptions, ConfigErrors

log = logging.getLogger(__name__)

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


# How OpenVPN 2.6.14 reads a per-client line (a client-config-dir file, a client-connect
# script's or plugin's output, a management client-auth block): options.c add_option with
# multi.c's CLIENT_CONNECT_OPT_MASK, at D_IMPORT_ERRORS -- a line it cannot take is logged
# ("Options error: ...") and skipped, and the client connects with the rest. These are the
# directives that mask lets through, each with the argument counts 2.6 takes (outside them:
# "Unrecognized option or missing or extra parameter(s)", skipped).
ARGS_26: dict[str, tuple[int, int | None]] = {
    "ifconfig-push": (2, 3), "ifconfig-ipv6-push": (1, 2), "iroute": (1, 2), "iroute-ipv6": (1, 1),
    "push": (1, 1), "push-reset": (0, 0), "push-remove": (1, 1), "disable": (0, 0), "vlan-pvid": (1, 1),
    "ping": (1, 1), "ping-restart": (1, 1), "ping-exit": (1, 1), "ping-timer-rem": (0, 0),
    "inactive": (1, 2), "session-timeout": (1, 1), "max-routes-per-client": (1, 1),
    "comp-lzo": (0, 1), "compress": (0, 1), "comp-noadapt": (0, 0),
    "cipher": (1, 1), "data-ciphers-fallback": (1, 1), "data-ciphers": (1, 1), "ncp-ciphers": (1, 1),
    "config": (1, 1), "echo": (0, None), "parameter": (0, None), "socket-flags": (0, None),
    "bind-dev": (1, None), "auth-token": (1, 1), "auth-token-user": (1, 1),
}

# Kept exact (who connects, which addresses and networks are the client's, what it is pushed):
# a malformed one -- a bad address, a wrong argument count -- refuses the client, with file:line,
# where 2.6 skips the line and lets it in without it (`disable now` would admit a client the
# operator meant to shut out; `iroute NET MASK x` would give it none of that network).
EXACT = frozenset({"ifconfig-push", "ifconfig-ipv6-push", "iroute", "iroute-ipv6", "push", "push-reset",
                   "push-remove", "disable", "vlan-pvid"})

# Taken by 2.6 per client, applied here to the whole server only: the client is refused, the
# file's line named, rather than let in without what the line says.
NOT_PER_CLIENT = {
    "inactive": "a per-client inactivity limit is not supported (the server's `inactive` applies to every "
                "client); put it in the server's config or remove the line",
    "session-timeout": "a per-client session-timeout is not supported (the server's applies to every client); "
                       "put it in the server's config or remove the line",
    "max-routes-per-client": "a per-client route limit is not supported (the server's applies to every client)",
    "config": "a per-client file is not read from another file here; put its lines in this one",
    "auth-token": "an auth-token line has no place in a per-client file (2.6 takes it and it does nothing "
                  "for a server's client); a credential line is refused, never ignored",
    "auth-token-user": "an auth-token-user line has no place in a per-client file (2.6 takes it and it does "
                       "nothing for a server's client); a credential line is refused, never ignored",
}

# Taken by 2.6 per client with no effect on a server's client, and so here.
NO_EFFECT = frozenset({"ping-timer-rem", "comp-noadapt", "echo", "parameter", "socket-flags", "bind-dev"})

_REAL_COMPRESSION = ("lzo", "lz4", "lz4-v2")
_SECONDS_MAX = 2**31 - 1

IFCONFIG_ALIAS = ("the third argument (the address the client is told, behind NAT: OpenVPN's alias) is not "
                  "supported; the client is refused rather than pushed its server-side address")

CASE_VARIANT = ("OpenVPN 2.6 matches directive names exactly, so it skips this line as unknown and lets the "
                "client in without it; refused rather than skipped, as it decides who connects or what it gets: "
                "write `{meant}`")

SKIPPED_UNKNOWN = ("skipped, the client connected without it, as OpenVPN 2.6 does (\"Unrecognized option "
                   "or missing or extra parameter(s)\")")
SKIPPED_CONTEXT = ("not a per-client option: skipped, the client connected without it, as OpenVPN 2.6 does "
                   "(\"option cannot be used in this context\")")


def _access_variant(d: str) -> str | None:
    """The access-deciding directive `d` is a variant of, which 2.6 skips as unknown: another case
    (`DISABLE`) or a look-alike blank at an end (`disable\u00a0`, a U+00A0 from a web page or
    Notepad: the lexer once stripped it, so such a line disabled its client; as 2.6 reads it, it
    would let the client in). None when `d` is spelled right or means nothing of the kind."""
    bare = without_odd_blanks(d)
    if bare != d and _decides_access(bare):
        return bare
    return case_variant(bare, _decides_access)


def _decides_access(name: str) -> bool:
    """Whether a per-client line named `name` (spelled right) is one whose loss would let a client
    in, or give it more, than the file says: the EXACT lines and the table's access set."""
    from .table import TABLE
    hit = TABLE.get(name)
    return name in EXACT or (hit is not None and bool(hit.access))


def _seconds(a: str) -> int | None:
    return int(a) if a.isascii() and a.isdigit() and len(a) <= 10 and int(a) <= _SECONDS_MAX else None


def _framing(d: str, a: list[str]) -> str | None:
    """The compression framing a per-client comp-lzo / compress line gives its client (as the
    server-wide settings.comp_framing names them), else None (a value 2.6 does not take)."""
    if d == "comp-lzo":
        v = a[0] if a else "adaptive"
        return {"no": "lzo-stub", "yes": "lzo", "adaptive": "lzo"}.get(v)
    v = a[0] if a else "stub"
    return v if v in ("stub", "stub-v2", *_REAL_COMPRESSION) else None


def _not_exact(d: str, a: list[str], ln_inline: bool) -> str | None:
    """Why an EXACT directive's line is refused before its values are read, else None."""
    if ln_inline:
        return "inline blocks are not supported in a per-client file"
    if d == "ifconfig-push" and len(a) == 3:
        return IFCONFIG_ALIAS
    lo, hi = ARGS_26[d]
    if not lo <= len(a) <= (hi if hi is not None else len(a)):
        if d == "push-remove":
            return ("push-remove takes one argument, the start of the options to take out "
                    "(quote it when it holds spaces)")
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        return (f"takes {want} argument{'s' if hi != 1 else ''}, not {len(a)}: the client is refused "
                "(OpenVPN 2.6 skips the line and lets the client in without it)")
    return None


def parse_ccd(text: str, path: str = "<ccd>") -> CcdOptions:
    """A per-client file (client-config-dir, client-connect output, client-auth lines), every line
    as OpenVPN 2.6.14 reads it (ARGS_26 above): EXACT lines applied or the client refused;
    ping, ping-restart, ping-exit, comp-lzo, compress, cipher, data-ciphers(-fallback) applied
    to its session (clientpush.py checks what cannot change after its keys); NO_EFFECT lines
    taken; NOT_PER_CLIENT lines and security directives 2.6 would skip refuse the client; any
    other line -- unknown, the wrong argument count, not a per-client option -- skipped, as 2.6
    skips it, into `skipped` (logged at a limited rate: note_skipped)."""
    from .table import TABLE        # (here: the table's d_layer2 imports this module's VLAN bounds)
    c = CcdOptions()
    errors: list[ConfigError] = []

    def refuse(why: str, n: int, d: str) -> None:
        errors.append(ConfigError(why, path, n, d))

    for ln in lines(text):
        if ln.tokens is None:
            errors.append(ConfigError(ln.error or "cannot parse", path, ln.number, ln.first_word))
            continue
        d, a = ln.tokens[0], ln.tokens[1:]     # names exactly as spelled: 2.6 compares with streq
        if d == "setenv" and len(a) >= 2 and a[0] == "opt":
            d, a = a[1], a[2:]                  # 2.6 reads `setenv opt X ...` as X, a warning if unknown
        n = ln.number
        where = f"{path}:{n}"
        meant = _access_variant(d)
        if meant is not None:
            # `IROUTE`, `Disable`: unknown to 2.6, which skips the line and lets the client in
            # without it -- a `DISABLE` would admit the client it was written to shut out.
            # Refused like a malformed line of its kind (the EXACT set, the access set).
            refuse(CASE_VARIANT.format(meant=meant) + blank_hint(d), n, d)
            continue
        if d in EXACT:
            why = _not_exact(d, a, ln.inline is not None)
            if why is not None:
                refuse(why, n, d)
            else:
                _exact_line(c, d, a, n, path, errors)
            continue
        hit = TABLE.get(d)
        if d not in ARGS_26 or ln.inline is not None:
            if hit is not None and hit.access:
                refuse("a directive that decides who may connect is not a per-client option; OpenVPN 2.6 "
                       "skips it here and lets the client in -- refused rather than ignored: move it to "
                       "the server's config or remove it", n, d)
            else:
                c.skipped.append((n, d, SKIPPED_CONTEXT if hit is not None and ln.inline is None
                                  else SKIPPED_UNKNOWN))
            continue
        lo, hi = ARGS_26[d]
        if not lo <= len(a) <= (hi if hi is not None else len(a)):
            c.skipped.append((n, d, SKIPPED_UNKNOWN))
        elif d in NOT_PER_CLIENT:
            refuse(NOT_PER_CLIENT[d], n, d)
        elif d in NO_EFFECT:
            pass
        elif d in ("ping", "ping-restart", "ping-exit"):
            v = _seconds(a[0])
            if v is None:
                refuse(f"expects a number of seconds, 0 to {_SECONDS_MAX}", n, d)
            elif d == "ping":
                c.ping = v
            else:
                # One timer in 2.6 (options.c: both set ping_rec_timeout): the later line wins,
                # 0 switches it off; either ends a server's client.
                c.ping_restart = v
        elif d in ("comp-lzo", "compress"):
            if a and a[0] == "migrate":
                refuse("`compress migrate` is a server-wide setting, not supported per client", n, d)
            elif (f := _framing(d, a)) is None:
                c.skipped.append((n, d, f"{for_display(a[0])!r} is not a value OpenVPN 2.6 takes: skipped, "
                                  "the client connected without it, as 2.6 does"))
            else:
                c.comp, c.where["comp"] = f, where
        elif d in ("data-ciphers", "ncp-ciphers"):
            # As written, case included (compat48): 2.6 takes a per-client list as it is, never
            # through the server's canonical names (mutate_ncp_cipher_list runs on its own config
            # only), and compares it with the client's names by strcmp.
            c.data_ciphers, c.where["cipher"] = tuple(x for x in a[0].split(":") if x), where
        else:                                       # cipher, data-ciphers-fallback
            enables = d == "data-ciphers-fallback" or bool(c.fallback and c.fallback[1])
            c.fallback, c.where["cipher"] = (a[0], enables), where
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    note_skipped(c, path)
    return c


def _exact_line(c: CcdOptions, d: str, a: list[str], n: int, path: str, errors: list[ConfigError]) -> None:
    """One EXACT line (its argument count checked) into `c`, or its error into `errors`."""
    if d in ("ifconfig-push", "iroute") and (why := _addresses_error(d, a)) is not None:
        errors.append(ConfigError(why, path, n, d))
    elif d == "ifconfig-push":
        c.ifconfig_push = (a[0], a[1])
    elif d == "iroute":
        c.iroutes.append((a[0], a[1] if len(a) > 1 else "255.255.255.255"))
    elif d in ("iroute-ipv6", "ifconfig-ipv6-push"):
        if (why := _ipv6_line(c, d, a)) is not None:
            errors.append(ConfigError(why, path, n, d))
        elif d == "ifconfig-ipv6-push":
            c.block_ifconfig_ipv6 = False          # it lifts an earlier push-remove ifconfig-ipv6
    elif d == "push" and refused_in_control_text(a[0]):
        errors.append(ConfigError(PUSH_CONTROL_BYTE, path, n, d))
    elif d == "push":
        c.push.append(a[0])
    elif d == "push-remove" and a[0] == "ifconfig":
        c.block_ifconfig = True
    elif d == "push-remove" and a[0] == "ifconfig-ipv6":
        c.block_ifconfig_ipv6 = True
    elif d == "push-remove":
        c.push_remove.append((len(c.push), a[0]))
    elif d == "push-reset":
        # 2.6 empties the push list as it is now (push.c push_reset), this file's own
        # earlier `push` lines and what a push-remove took from them included.
        c.push_reset = True
        c.push.clear()
        c.push_remove.clear()
    elif d == "disable":
        c.disable = True
    else:                                           # vlan-pvid
        # The client's VLAN on a vlan-tagging server (l2switch.py); without it, no effect, as 2.6.
        v = int(a[0]) if a[0].isascii() and a[0].isdigit() and len(a[0]) <= 5 else 0
        if not VLAN_MIN <= v <= VLAN_MAX:
            errors.append(ConfigError(f"the VLAN id must be {VLAN_MIN}..{VLAN_MAX} (as OpenVPN 2.6)", path, n, d))
        else:
            c.vlan_pvid = v


# The skipped lines' warnings: per source (a ccd file, the client-connect output), a few at once,
# then one per logpace.LOG_EVERY -- a file is read at each connect, and a client reconnecting
# in a loop must not fill the log with its file's one unknown line.
_SKIP_LIMITS: dict[str, NoteLimit] = {}
_SKIP_SOURCES_MAX = 4096


def note_skipped(c: CcdOptions, path: str, now: float | None = None) -> None:
    """Log `c`'s skipped lines as `FILE:LINE: DIRECTIVE: why`, at a limited rate per source."""
    if not c.skipped:
        return
    limit = _SKIP_LIMITS.get(path)
    if limit is None:
        if len(_SKIP_LIMITS) >= _SKIP_SOURCES_MAX:
            _SKIP_LIMITS.clear()
        limit = _SKIP_LIMITS[path] = NoteLimit()
    held = limit.due(time.monotonic() if now is None else now)
    if held is None:
        return
    shown = "; ".join(f"{for_display(path)}:{n}: {for_display(d)}: {why}" for n, d, why in c.skipped[:3])
    more = f"; and {len(c.skipped) - 3} more such line(s)" if len(c.skipped) > 3 else ""
    log.warning("%s%s%s", shown, more, times(held))


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
