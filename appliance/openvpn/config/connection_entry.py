"""Connection entries: what each server to try brings of its own, as OpenVPN 2.6's connection_entry.

Why one module: a `<connection>` block may set transport, MTU, key and timing settings for its
server alone (options.c: OPT_P_CONNECTION), and a connection made to it must run with exactly
those -- never another block's keys, never the first remote's MTU. The block is read here
(`read_block`), and each remote's own Options -- the whole profile with its connection's
settings in place -- is built here (`finish_entries`), once, at the end of the parse. The client
takes a remote's `entry` for every decision about that connection (gateway/client.py).

OpenVPN 2.6's rules, checked with Debian's 2.6.14 (`--verb 4` prints each entry):
- a block starts from the global settings as they stand at its line; its own lines override
  them (a later global line changes nothing there: refused at its line, parser.py);
- its keys are its own: a block with `tls-auth`, `tls-crypt` or `tls-crypt-v2` takes none of the
  global ones; a block with none takes the global key (and `key-direction`) as the whole file
  leaves it -- a global key line after the blocks counts too (parser.GLOBAL_KEYS);
- `tls-auth` in a block resets the direction (bidirectional) unless it names one, so a
  `key-direction` before it, or without a `tls-auth` in the block, is dropped by 2.6;
- a block's `mssfix` (or max-packet-size's) is replaced by 2.6's default unless the profile has
  a global `mssfix N` (options_postprocess_mutate_ce reads the global one); that default is
  decided by the profile's tun-mtu, not the block's (settings.mssfix_in_force);
- `connect-retry-max` in a block sets nothing that lasts (it is global);
- `link-mtu` gives each connection the TUN MTU of its own protocol (TCP's framing is 2 bytes).
What 2.6 would drop is refused at its line here, as elsewhere: a user's line must mean something.
"""
from __future__ import annotations

import copy
import dataclasses

from ..errors import Loc
from .lexer import lines
from .model import TUN_MTU_DEFAULT, Options, Remote
from .parser import OWN, PER_CONNECTION, REFUSED_IN_BLOCK, ParseState, norm_proto, proto_case_hint

KEYS = ("tls_auth", "tls_crypt", "tls_crypt_v2")
KEY_FIELDS = (*KEYS, "key_direction", "tls_crypt_v2_force_cookie")


def entry_fields() -> frozenset[str]:
    """The Options fields a block may set: those its directives declare, and its server's."""
    from .table import TABLE          # (the table imports the directive modules, which import parser)
    out = {"proto", "proto_family", "port", "http_proxy"}
    for name in PER_CONNECTION:
        out.update(TABLE[name].sets)
    return frozenset(out)


def read_block(p: ParseState, d: str, inline: str) -> None:
    """One `<connection>` block: its lines applied to a copy of the global settings as they stand
    here, the result kept on its Remote (`entry`, completed by finish_entries). Errors name the
    block's own lines."""
    start = p.line
    at_line = (lambda n: Loc(int(start) + n, start.path)) if isinstance(start, Loc) else (lambda n: start + n)
    outer = p.o
    block = copy.copy(outer)
    block.source = {}                       # what this block set, and where
    block.connection_remotes = []           # (dispatch refuses connection settings after a block)
    for k in KEYS:
        setattr(block, k, None)             # 2.6: a block's keys start empty (the global ones come at the end)
    block.key_direction = None
    # Inline blocks (`<tls-crypt>`, `tls-crypt [inline]`) are the block's own: one block's key
    # must never be what another block's, or a later global line's, `[inline]` names.
    saved = (p.inline_blocks, p.pending_inline)
    p.inline_blocks, p.pending_inline = {}, {}
    remote: tuple[int, list[str]] | None = None
    key_dir_line: int | None = None
    tls_auth_line: int | None = None
    ok = True
    errors_before = len(p.errors)
    p.o = block
    try:
        for ln in lines(inline):
            at = p.line = at_line(ln.number)          # errors (int_arg's too) name the block's own line
            if ln.tokens is None:
                p.err(ln.first_word or d, ln.error or "cannot parse", at)
                continue
            name, args = ln.tokens[0], ln.tokens[1:]     # exact, as 2.6's add_option
            if name in REFUSED_IN_BLOCK:
                p.err(name, REFUSED_IN_BLOCK[name], at)
            elif name == "remote":
                if remote is not None or not 1 <= len(args) <= 3:
                    p.err(name, "a <connection> block holds exactly one `remote HOST [PORT [PROTO]]`", at)
                if 1 <= len(args) <= 3:
                    # (a bare `remote` is refused above and kept nowhere: read below as a host,
                    # it raised IndexError -- a traceback where the user is due file:line; fuzz42)
                    remote = (at, args)
            elif name == "proto":
                pr = norm_proto(args[0]) if len(args) == 1 else None
                if pr is None or args[0].endswith("-server"):
                    p.err(name, f"expects a client protocol (udp, tcp, udp4, tcp6, ...), got {' '.join(args)!r}"
                          + (proto_case_hint(args[0]) if len(args) == 1 else ""), at)
                    continue
                block.proto, block.proto_family = pr, (args[0][3:4] if args[0][3:4] in ("4", "6") else "")
                block.source["proto"] = (p.path, at)
            elif name in ("http-proxy", "http-proxy-option"):
                _proxy_line(p, block, name, args, at)
            elif name in PER_CONNECTION:
                if name == "tls-auth":
                    if key_dir_line is not None and not (len(args) > 1 and ln.inline is None):
                        p.err("key-direction", "OpenVPN 2.6 drops it: `tls-auth` inside <connection> resets the key "
                              "direction (bidirectional); put key-direction after the block's tls-auth", key_dir_line)
                    key_dir_line = None
                    block.key_direction = None
                    tls_auth_line = at
                elif name == "key-direction":
                    key_dir_line = at
                p.dispatch(ln.tokens, ln.inline)
            else:
                p.err(name, "not allowed inside <connection> (OpenVPN 2.6 takes only connection settings there: "
                            "remote, proto, port, local, the MTU settings, keys, proxies, explicit-exit-notify, "
                            "connect-retry, connect-timeout, ...): give it outside the blocks", at)
        for tag, line in p.pending_inline.items():
            p.err(tag, f"[inline] given but no <{tag}> block follows inside this <connection> block", line)
        if key_dir_line is not None and tls_auth_line is None:
            p.err("key-direction", "OpenVPN 2.6 drops it: a block without its own tls-auth takes the global key "
                  "and key-direction", key_dir_line)
        own = [k for k in KEYS if getattr(block, k) is not None]
        if len(own) > 1:
            p.err(own[1].replace("_", "-"), f"cannot be combined with {own[0].replace('_', '-')} in one block",
                  block.source[own[1]][1])
    finally:
        p.o = outer
        p.inline_blocks, p.pending_inline = saved
        p.line = start
    ok = len(p.errors) == errors_before
    if remote is None:
        if ok:
            p.err(d, "each <connection> block must contain exactly one `remote` (as OpenVPN 2.6)", start)
        return
    at, ra = remote
    host, port, proto, family = ra[0], block.port, block.proto, block.proto_family
    if len(ra) > 1:
        p.line = at
        n = p.int_arg("remote", ra[1], 1, 65535)
        p.line = start
        if n is None:
            return
        port = n
    if len(ra) > 2:
        pr = norm_proto(ra[2])
        if pr is None or ra[2].endswith("-server"):
            p.err("remote", f"unknown protocol {ra[2]}{proto_case_hint(ra[2])}", at)
            return
        proto, family = pr, ra[2][3:4] if ra[2][3:4] in ("4", "6") else ""
    if ok:
        block.port, block.proto = port, proto
        p.o.connection_remotes.append(Remote(host, port, proto, family, block.http_proxy, entry=block))
        p.o.source["connection_remotes"] = (p.path, start)


def _proxy_line(p: ParseState, block: Options, name: str, args: list[str], at: int) -> None:
    from .d_proxy import http_proxy_line, http_proxy_option_line    # d_proxy imports parser
    lo, hi = (1, 4) if name == "http-proxy" else (1, 3)
    if not lo <= len(args) <= hi:
        p.err(name, f"expects {lo} to {hi} arguments, got {len(args)}", at)
        return
    hp = (http_proxy_line if name == "http-proxy" else http_proxy_option_line)(p, name, args, block.http_proxy)
    if hp is not None:
        block.http_proxy = hp
        block.source["http_proxy"] = (p.path, at)


def finish_entries(p: ParseState) -> None:
    """Each remote's own Options, with the whole file read: the profile as finish() left it,
    with what its block set in place, checked as 2.6 checks a connection entry. A remote without
    a block gets one only when its connection differs (link-mtu over TCP beside UDP)."""
    o = p.o
    fields = entry_fields()
    out: list[Remote] = []
    for r in o.remotes:
        block = r.entry
        if block is None and o.link_mtu is None:
            out.append(r)
            continue
        own = {f: getattr(block, f) for f in fields if block is not None and f in block.source}
        if block is not None and any(k in block.source for k in KEYS):
            own.update({k: getattr(block, k) for k in KEY_FIELDS})
        e = dataclasses.replace(o, **own)
        e.source = {**o.source, **(block.source if block is not None else {})}
        e.proto = r.proto
        if r.family is not None:
            e.proto_family = r.family or None
        e.port = r.port
        e.remotes, e.connection_remotes = [r], []
        # 2.6 decides a block's default mssfix by the profile's tun-mtu, not the block's
        # (options_postprocess_mutate_ce reads o->ce.tun_mtu): settings.mssfix_in_force.
        e.global_tun_mtu = o.tun_mtu if "tun_mtu" in o.source else TUN_MTU_DEFAULT
        _check_entry(p, o, e, block)
        out.append(dataclasses.replace(r, entry=e))
    o.remotes = out


def _check_entry(p: ParseState, o: Options, e: Options, block: Options | None) -> None:
    """2.6's checks of one connection entry (options_postprocess_verify_ce), for what its block
    set (the global lines' own conflicts are reported once, by finish), and its TUN MTU."""
    from .parser import ipv6_needs_1280, tun_mtu_from_link_mtu     # (parser imports nothing of this module)
    src = block.source if block is not None else {}
    if "mssfix" in src and (block.mssfix is None) != (o.mssfix is None):
        d = "max-packet-size" if "tls_mtu" in src and src["tls_mtu"] == src.get("mssfix") else "mssfix"
        if o.mssfix is None:
            why = ("OpenVPN 2.6 replaces a <connection> block's mssfix by its default unless the profile has a "
                   "global `mssfix N` before the blocks (options_postprocess_mutate_ce reads the global one): add one")
        else:
            why = ("OpenVPN 2.6 keeps the global `mssfix N` for a block whose `mssfix` has no value (it reads the "
                   "global one): give the block a value")
        p.err(d, why, src["mssfix"][1])
    if e.link_mtu is not None:
        if "tun_mtu" in e.source:
            if "tun_mtu" in src or "link_mtu" in src:
                d = "link-mtu" if "link_mtu" in src else "tun-mtu"
                p.err(d, "only one of --tun-mtu or --link-mtu may be defined (as OpenVPN 2.6)",
                      src["link_mtu" if "link_mtu" in src else "tun_mtu"][1])
        else:
            mtu = tun_mtu_from_link_mtu(p, e, e.proto == "tcp")
            if mtu is not None:
                e.tun_mtu = mtu          # its own protocol's framing: 2 bytes less over TCP, as 2.6
    if e.tun_mtu != o.tun_mtu:
        ipv6_needs_1280(p, e)           # its own device's MTU (the profile's was checked by finish)
    if e.fragment and e.proto == "tcp" and "fragment" in src:
        p.err("fragment", "--fragment can only be used with --proto udp (as OpenVPN 2.6)", src["fragment"][1])
    if e.nobind and src:
        for n in ("local", "lport", "bind"):
            if n in e.source and (n in src or "nobind" in src):
                p.err(n, "and nobind don't make sense when used together", e.source[n][1])


def entry_of(opts: Options, r: Remote) -> Options:
    """The settings a connection to `r` runs with: its entry's, else the profile's."""
    return r.entry if r.entry is not None else opts
