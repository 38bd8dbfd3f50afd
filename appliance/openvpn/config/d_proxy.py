"""http-proxy and its options (a client's TCP connection through an HTTP CONNECT proxy).

As OpenVPN 2.6 (options.c, proxy.c): `http-proxy SERVER PORT [AUTHFILE|auto|auto-nct] [METHOD]`,
`http-proxy-option VERSION|AGENT|CUSTOM-HEADER ...` and `http-proxy-user-pass FILE|<inline>`, both
globally and (http-proxy, http-proxy-option) inside a <connection> block. Methods none and basic;
the others, and auto/auto-nct (which ask the proxy and then the terminal or management interface),
are refused at their line. The credentials are read once, at the end of the parse (an error names
the http-proxy line), and never printed. The request itself: openvpn/httpproxy.py.
"""
from __future__ import annotations

import os
from dataclasses import replace

from ..httpproxy import MAX_CUSTOM_HEADERS, VERSIONS, HttpProxy, line_problem
from ..keymethod import USER_PASS_LEN
from ..peernames import from_peer, to_bytes
from ..socksproxy import MAX_FIELD, SocksProxy, connect_request
from .directives import Registry
from .lexer import split_lines
from .model import Remote
from .parser import ParseState

reg = Registry()

_REFUSED_METHODS = {
    "ntlm": "NTLM proxy authentication is not supported (OpenVPN 2.6 has removed NTLMv1 too)",
    "ntlm2": "NTLMv2 proxy authentication is not supported (only none and basic)",
    "digest": "digest proxy authentication is not supported (only none and basic)",
}


def _show(v: HttpProxy | None) -> str | None:
    return v.describe() if v is not None else None


def http_proxy_line(p: ParseState, d: str, a: list[str], cur: HttpProxy | None) -> HttpProxy | None:
    """`http-proxy` at p.line applied to `cur` (the proxy so far: its options stay, as OpenVPN's
    init_http_proxy_options_once); None after an error (reported)."""
    if len(a) < 2:
        p.err(d, "http-proxy port number not defined (as OpenVPN 2.6: `http-proxy SERVER PORT ...`)")
        return None
    port = p.int_arg(d, a[1], 1, 65535)
    if port is None:
        return None
    auth, authfile = "none", None
    if len(a) > 2:
        if a[2] in ("auto", "auto-nct"):
            p.err(d, f"{a[2]} is not supported: it asks the proxy which authentication it wants (NTLM, "
                     "digest or basic) and the terminal or management interface for the credentials; name "
                     "a credentials file (or \"\" with <http-proxy-user-pass>) and the method basic, or none")
            return None
        # As written, case included: 2.6.14 compares the method with strcmp (proxy.c
        # http_proxy_new) and stops at start on `BASIC` ("unknown HTTP authentication method");
        # ours took it as basic (compat48).
        auth = a[3] if len(a) > 3 else "basic"
        if auth in _REFUSED_METHODS:
            p.err(d, _REFUSED_METHODS[auth])
            return None
        if auth not in ("none", "basic"):
            p.err(d, f"unknown HTTP authentication method: {a[3]!r} (supported: none, basic)")
            return None
        if auth == "basic":
            if a[2] == "stdin":
                p.err(d, "asking for the proxy's credentials on the terminal is not supported: name a file "
                         "holding the username and password on two lines, or use <http-proxy-user-pass>")
                return None
            authfile = os.path.abspath(p.path_arg(a[2])) if a[2] else ""
    return replace(cur or HttpProxy(), server=a[0], port=port, auth=auth, authfile=authfile, line=p.line)


def http_proxy_option_line(p: ParseState, d: str, a: list[str], cur: HttpProxy | None) -> HttpProxy | None:
    cur = cur or HttpProxy()
    kind = a[0]
    if kind == "VERSION" and len(a) == 2:
        if a[1] not in VERSIONS:
            p.err(d, f"VERSION {a[1]!r}: only {' and '.join(VERSIONS)} are supported")
            return None
        return replace(cur, version=a[1])
    if kind == "AGENT" and len(a) == 2:
        return replace(cur, agent=a[1])
    if kind in ("CUSTOM-HEADER", "EXT1", "EXT2") and len(a) in (2, 3):
        if len(cur.custom_headers) >= MAX_CUSTOM_HEADERS:
            p.err(d, f"Cannot use more than {MAX_CUSTOM_HEADERS} http-proxy-option CUSTOM-HEADER (as OpenVPN 2.6)")
            return None
        return replace(cur, custom_headers=cur.custom_headers + ((a[1], a[2] if len(a) == 3 else None),))
    p.err(d, f"Bad http-proxy-option or missing or extra parameter: {kind!r} (VERSION 1.0|1.1, AGENT text, "
             "CUSTOM-HEADER name [content])")
    return None


@reg.apply("http-proxy", why="client: connect to the TCP remotes through this HTTP proxy (CONNECT), "
           "auth none or basic", sets=("http_proxy",), used_by="parser", nargs=(1, 4), show={"http_proxy": _show})
def _http_proxy(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    hp = http_proxy_line(p, d, a, p.o.http_proxy)
    if hp is not None:
        p.set("http_proxy", hp)


@reg.apply("http-proxy-option", why="client: the CONNECT request's HTTP version, User-Agent and custom headers",
           sets=("http_proxy",), used_by="parser", nargs=(1, 3))
def _http_proxy_option(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    hp = http_proxy_option_line(p, d, a, p.o.http_proxy)
    if hp is not None:
        p.set("http_proxy", hp)


def user_pass(data: bytes) -> tuple[str, str]:
    """(username, password) of a proxy credentials file or block: two lines, as OpenVPN 2.6 reads
    them (misc.c get_user_pass_cr: fgets, chomp); ValueError saying what is wrong."""
    lines = split_lines(from_peer(data))
    if not lines or not lines[0]:
        raise ValueError("the username (line 1) is empty")
    if len(lines) < 2:
        raise ValueError("no password on line 2 (OpenVPN 2.6: \"Error reading password\")")
    if any(len(to_bytes(v)) >= USER_PASS_LEN for v in lines[:2]):
        raise ValueError(f"the username or password is longer than {USER_PASS_LEN - 1} bytes")
    return lines[0], lines[1]


@reg.apply("http-proxy-user-pass", why="client: the HTTP proxy's username and password (over the file named "
           "by http-proxy)", sets=("http_proxy_user_pass",), used_by="parser", nargs=(1, 1), inline=True,
           show={"http_proxy_user_pass": lambda v: f"<user {v[0]!r}>" if v is not None else None})
def _http_proxy_user_pass(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    data = p.file(d, a[0], inline)
    if data is None:
        return
    try:
        p.set("http_proxy_user_pass", user_pass(data))
    except ValueError as e:
        p.err(d, f"{'<http-proxy-user-pass>' if inline is not None else a[0]}: {e}")


# (any arguments: OpenVPN 2.6 reads none of them, and takes the line with a DEPRECATED warning)
reg.noop("http-proxy-retry", "a proxy's failure restarts the connection like any other, as in OpenVPN 2.4 and "
         "later (connect-retry-max bounds it)")
reg.noop("http-proxy-timeout", "the proxy's answer is bounded by server-poll-timeout (connect-timeout), as in "
         "OpenVPN 2.4 and later", nargs=(1, 1))
reg.noop("socks-proxy-retry", "a proxy's failure restarts the connection like any other, as in OpenVPN 2.4 and "
         "later (connect-retry-max bounds it)")


@reg.apply("socks-proxy", why="client: connect to the TCP remotes through this SOCKS5 proxy (CONNECT), without "
           "authentication or with the username and password of AUTHFILE", sets=("socks_proxy",), used_by="parser",
           nargs=(1, 3), show={"socks_proxy": lambda v: v.describe() if v is not None else None})
def _socks_proxy(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """`socks-proxy SERVER [PORT] [AUTHFILE]` (OpenVPN 2.6 options.c: port 1080 by default)."""
    port = p.int_arg(d, a[1], 1, 65535) if len(a) > 1 else 1080
    if port is None:
        return
    authfile = None
    if len(a) > 2:
        if a[2] == "stdin":
            p.err(d, "asking for the proxy's credentials on the terminal is not supported: name a file holding "
                     "the username and password on two lines")
            return
        authfile = os.path.abspath(p.path_arg(a[2]))
    p.set("socks_proxy", SocksProxy(a[0], port, authfile, p.line))


# ------------------------------------------------------------------ the end of the parse (parser.finish)
def finish_proxies(p: ParseState) -> None:
    """The client's remotes get their proxy (the global one; a <connection> block's own), its
    credentials read; a proxy with a UDP remote, or options without http-proxy, are errors."""
    o = p.o
    resolved: dict[int, HttpProxy | None] = {}

    def resolve(hp: HttpProxy) -> HttpProxy | None:
        if id(hp) not in resolved:
            resolved[id(hp)] = _resolve(p, hp)
        return resolved[id(hp)]

    if o.http_proxy is None and o.http_proxy_user_pass is not None:
        p.err("http-proxy-user-pass", "there is no http-proxy (OpenVPN 2.6: \"--http-proxy not specified but "
              "other http proxy options present\")", o.source["http_proxy_user_pass"][1])
    if o.http_proxy is not None and o.http_proxy.server is None:
        p.err("http-proxy-option", "there is no http-proxy (OpenVPN 2.6: \"--http-proxy not specified but other "
              "http proxy options present\")", o.source["http_proxy"][1])
        return
    if o.socks_proxy is not None:
        _finish_socks(p)
        return
    glob = o.http_proxy
    out: list[Remote] = []
    for r in o.remotes:
        hp = r.proxy if o.connection_remotes else glob
        if hp is None:
            out.append(r)
            continue
        if hp.server is None:
            p.err("http-proxy-option", "this <connection> block has no http-proxy for its http-proxy-option", None)
            continue
        if r.proto != "tcp":
            p.err("http-proxy", f"remote {r.host} uses UDP: OpenVPN 2.6 says \"--http-proxy MUST be used in TCP "
                  "Client mode (i.e. --proto tcp-client)\"", hp.line)
            continue
        full = resolve(hp)
        if full is None:
            continue
        why = line_problem(full, r.host, r.port)
        if why is not None:
            p.err("http-proxy", f"the CONNECT request for {r.host}: {why}", hp.line)
            continue
        out.append(replace(r, proxy=full))
    o.remotes = out
    if glob is not None and id(glob) in resolved and resolved[id(glob)] is not None:
        o.http_proxy = resolved[id(glob)]       # `check` shows the username it read (never the password)


def _finish_socks(p: ParseState) -> None:
    """socks-proxy: every remote reached through it, over TCP; its credentials read once."""
    o = p.o
    sp = o.socks_proxy
    assert sp is not None
    if o.http_proxy is not None:
        p.err("socks-proxy", "--http-proxy can not be used together with --socks-proxy (as OpenVPN 2.6)", sp.line)
        return
    if sp.authfile is not None:
        try:
            user, password = user_pass(p.read_file(sp.authfile))
        except OSError as e:
            p.err("socks-proxy", f"cannot read {sp.authfile}: {e.strerror or e}", sp.line)
            return
        except ValueError as e:
            p.err("socks-proxy", f"{sp.authfile}: {e}", sp.line)
            return
        if max(len(to_bytes(user)), len(to_bytes(password))) > MAX_FIELD:
            p.err("socks-proxy", f"{sp.authfile}: SOCKS username and/or password exceeds {MAX_FIELD} characters "
                  "(OpenVPN 2.6 cannot authenticate then either)", sp.line)
            return
        sp = o.socks_proxy = replace(sp, credentials=(user, password))
    out: list[Remote] = []
    for r in o.remotes:
        if r.proto != "tcp":
            p.err("socks-proxy", f"remote {r.host} uses UDP: UDP through a SOCKS proxy (UDP ASSOCIATE) is not "
                  "supported here; use proto tcp-client", sp.line)
            continue
        try:
            connect_request(r.host, r.port)
        except ValueError as e:
            p.err("socks-proxy", f"remote {r.host}: {e}", sp.line)
            continue
        out.append(replace(r, proxy=sp))
    o.remotes = out


def _resolve(p: ParseState, hp: HttpProxy) -> HttpProxy | None:
    if hp.auth != "basic":
        return hp
    o = p.o
    if o.http_proxy_user_pass is not None:        # OpenVPN's auth_file_up: it wins over the file
        return replace(hp, credentials=o.http_proxy_user_pass)
    if not hp.authfile:
        p.err("http-proxy", "basic authentication needs a credentials file (or <http-proxy-user-pass>)", hp.line)
        return None
    try:
        data = p.read_file(hp.authfile)
    except OSError as e:
        p.err("http-proxy", f"cannot read {hp.authfile}: {e.strerror or e}", hp.line)
        return None
    try:
        return replace(hp, credentials=user_pass(data))
    except ValueError as e:
        p.err("http-proxy", f"{hp.authfile}: {e}", hp.line)
        return None
