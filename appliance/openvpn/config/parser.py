"""Running the directive table over a config file: ParseState (what handlers see) and finish().

Rules, so users can predict what happens to their profile:
- Every directive is applied, refused with `file:line: directive: why`, or accepted with a note
  saying why it has no effect (table.py). All errors are collected and raised together.
- File arguments are relative to the config file's directory and read through `read_file`, so
  tests and the appliance image need no real paths.
- `ca [inline]` (and the other file directives) may name an inline block given elsewhere in the
  file, as OpenVPN and MirageVPN accept; a `[inline]` whose block never comes is an error at its line.
"""
from __future__ import annotations

import ipaddress
import os
import pwd
import re
import stat
from typing import Callable

from ..errors import ConfigError, Loc
from ..peernames import to_bytes
from .directives import Directive, Kind, case_hint
from .cmdline import SOURCE as COMMAND_LINE
from .lexer import blank_hint, lines
from .model import ConfigErrors, Options, Remote

INLINE = "[inline]"


def norm_proto(p: str) -> str | None:
    """OpenVPN's protocol names → "udp" | "tcp" (None if unknown). Exactly as spelt, case
    included: 2.6.14 compares them with strcmp (socket.c ascii2proto), so `proto UDP` stops it
    at start ("Bad protocol"); ours took it (compat48). proto_case_hint says what was meant."""
    if p in ("udp", "udp4", "udp6"):
        return "udp"
    if p in ("tcp", "tcp4", "tcp6", "tcp-client", "tcp4-client", "tcp6-client", "tcp-server",
             "tcp4-server", "tcp6-server"):
        return "tcp"
    return None


def proto_case_hint(p: str) -> str:
    """The hint for a protocol name refused only for its case (`UDP` -> write `udp`)."""
    return (f" (OpenVPN 2.6 matches protocol names exactly, case included: write `{p.lower()}`)"
            if p != p.lower() and norm_proto(p.lower()) is not None else "")


class ParseState:
    """One parse: the Options being built, the errors so far, and the helpers handlers use."""

    no_scripts = False          # the appliance TOML's profile: the client's scripts are refused (d_ops.py)

    def __init__(self, path: str, read_file: Callable[[str], bytes], table: dict[str, Directive],
                 ignore_scripts: bool = False, read_config: Callable[[str], bytes] | None = None) -> None:
        self.path = path                            # the file being read (`config FILE` switches it)
        self.top_path = path
        self.read_config = read_config              # for `config FILE` (include.py); None: the default
        self.includes: list[str] = []               # the files being read, outermost first (include.py)
        self.included_bytes = 0                     # what `config FILE` lines read so far, all files
        self.include_count = 0                      # `config FILE` lines read so far, all files
        self.ignore_scripts = ignore_scripts        # `run --no-scripts`: script lines are skipped, not refused
        self.base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()
        self.read_file = read_file
        self.table = table
        self.o = Options(path=path, ignore_scripts=ignore_scripts)
        self.line: int = 0                          # a Loc while parsing: its file rides along
        self.errors: list[ConfigError] = []
        self.ignore_unknown: set[str] = set()
        self.remote_lines: list[tuple[int, list[str]]] = []
        self.inline_blocks: dict[str, str] = {}      # tag -> text of an inline block seen so far
        self.pending_inline: dict[str, int] = {}     # `X [inline]` lines still waiting for <X>
        self.current: Directive | None = None
        self.seen: dict[str, int] = {}              # directive -> the line it first appears on
        self.relative_line: int | None = None       # the first line naming a relative file (for `cd`)
        self.dh: tuple[int, str, bytes | None] | None = None  # the last `dh` line: line, argument, inline block
        self.hash_size_line: int | None = None      # a `hash-size` other than 256 256 (a client refuses it)
        self.remote_host_line: int | None = None    # the first `route remote_host ...` (a server refuses it)

    # -- helpers for handlers
    def err(self, directive: str, msg: str, line: "int | None | object" = ...) -> None:
        """`line` omitted: the line being parsed; None: no line (a directive that is missing). A
        Loc names its own file (ConfigError)."""
        self.errors.append(ConfigError(msg, self.path, self.line if line is ... else line, directive))

    def _guard(self, name: str) -> None:
        cur = self.current
        if cur is not None and name not in cur.sets:
            raise AssertionError(f"directive {cur.name} sets {name}, which its declaration does not list")

    def set(self, name: str, value: object) -> None:
        self._guard(name)
        setattr(self.o, name, value)
        self.o.source[name] = (self.path, self.line)

    def add(self, name: str, item: object) -> None:
        """Append to a list field (route, push, pull_filter, ...)."""
        self._guard(name)
        getattr(self.o, name).append(item)
        self.o.source[name] = (self.path, self.line)

    def note(self, directive: str, what: str = "accepted, has no effect here") -> None:
        self.o.notes.append(f"{getattr(self.line, 'path', self.path)}:{self.line}: {directive}: {what}")

    def path_arg(self, arg: str) -> str:
        if os.path.isabs(arg):
            return arg
        if self.relative_line is None:
            self.relative_line = self.line
        return os.path.join(self.base, arg)

    def file(self, directive: str, arg: str, inline: str | None) -> bytes | None:
        """The contents a file directive names: its inline block, or the file. None if not (yet)
        available; an `[inline]` without its block is remembered and reported at the end."""
        if inline is not None:
            self.inline_blocks[directive] = inline
            self.pending_inline.pop(directive, None)
            return inline.encode()
        if arg == INLINE:
            if directive in self.inline_blocks:          # the block came first
                return self.inline_blocks[directive].encode()
            self.pending_inline[directive] = self.line
            return None
        try:
            return self.read_file(self.path_arg(arg))
        except OSError as e:
            self.err(directive, f"cannot read {arg}: {e.strerror or e}")
            return None

    def text(self, directive: str, arg: str, inline: str | None) -> str | None:
        data = self.file(directive, arg, inline)
        return data.decode("utf-8", "replace") if data is not None else None

    def int_arg(self, d: str, v: str, lo: int = 0, hi: int = 2**31) -> int | None:
        try:
            n = int(v)
        except ValueError:
            self.err(d, f"expected a number, got {v!r}")
            return None
        if not lo <= n <= hi:
            self.err(d, f"{n} out of range {lo}..{hi}")
            return None
        return n

    def ip(self, d: str, v: str) -> str | None:
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            self.err(d, f"not an IPv4 address: {v!r}")
            return None

    def mask(self, d: str, v: str) -> str | None:
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{v}")
            return v
        except ValueError:
            self.err(d, f"not a netmask: {v!r}")
            return None

    # -- dispatch
    def dispatch(self, tokens: list[str], inline: str | None) -> None:
        d, a = tokens[0], tokens[1:]        # exactly as spelled: 2.6 matches names with streq
        self.seen.setdefault(d, self.line)
        entry = self.table.get(d)
        if entry is None:
            if d in self.ignore_unknown:
                self.note(d, "unknown, ignored (ignore-unknown-option)")
            else:
                self.err(d, "unknown or unsupported directive" + (case_hint(d, self.table.__contains__)
                                                                  or blank_hint(d)))
            return
        if inline is not None and not entry.inline:
            self.err(d, "unknown inline block")
            return
        if d in CONNECTION_ENTRY and self.o.connection_remotes:
            if d not in GLOBAL_KEYS:
                self.err(d, "after a <connection> block OpenVPN 2.6 ignores it (\"ignored by previous <connection> "
                            "blocks\"): give it before the blocks, or inside one")
                return
            self.note(d, "OpenVPN 2.6 says \"ignored by previous <connection> blocks\", yet uses it for every block "
                         "without a key of its own (options_postprocess_mutate_ce); so does this client")
        if entry.kind is Kind.REFUSE:
            self.err(d, entry.why)
            return
        lo, hi = entry.nargs
        if not (lo <= len(a) and (hi is None or len(a) <= hi)):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            self.err(d, f"expects {want} argument(s), got {len(a)}")
            return
        outer, self.current = self.current, entry
        errors_before = len(self.errors)
        try:
            if entry.handler is not None:
                entry.handler(self, d, a, inline)
        finally:
            self.current = outer
        if entry.kind is Kind.NOOP and len(self.errors) == errors_before:
            self.note(d, f"accepted, has no effect here: {entry.why}")

    def parse(self, text: str) -> Options:
        self.read_lines(text)
        self.current = None
        self.path = self.top_path
        finish(self)
        if self.errors:
            raise ConfigErrors(self.errors) if len(self.errors) > 1 else self.errors[0]
        return self.o

    def read_lines(self, text: str) -> None:
        """Every line of `text` (the file self.path), dispatched in order; `config FILE` comes back
        here for its file (include.py)."""
        # OpenVPN's command line has no line or word length limit (2.6's parse_argv takes each
        # word whole); a `config FILE` it names is a file, with a file's limits.
        for ln in lines(text, limits=self.path != COMMAND_LINE):
            self.line = Loc(ln.number, self.path)
            if ln.tokens is None:
                self.err(_as_text(ln.first_word), _as_text(ln.error or "cannot parse"))
                continue
            tokens, inline = ln.tokens, ln.inline
            if tokens[0] not in BYTES_DIRECTIVES:
                tokens, inline = [_as_text(t) for t in tokens], (_as_text(inline) if inline else inline)
            self.dispatch(tokens, inline)


# The directives whose text OpenVPN 2.6 passes on as the file's bytes: a `push "setenv-safe MOTD
# caf\\xe9"` in a Latin-1 config reaches its clients as those bytes (they went out as U+FFFD's).
# A config is read with peernames' error handler (load_config); every other directive's bytes
# that are not UTF-8 are U+FFFD, as before: a path, a name or key material holding them is the
# config's error at its line, never a lone surrogate further on.
BYTES_DIRECTIVES = frozenset({"push"})
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _as_text(text: str) -> str:
    """`text` with each byte that was not UTF-8 made U+FFFD."""
    return to_bytes(text).decode("utf-8", "replace") if _NOT_UTF8.search(text) else text


# Client directives OpenVPN 2.6 refuses in a server config (options.c, options_postprocess_verify_ce;
# checked with Debian's 2.6.14), with a hint where it gives one.
NOT_IN_SERVER = {"pull": "", "remote": "", "nobind": "", "redirect-gateway":
                 ": push \"redirect-gateway ...\" is what makes clients use it", "route-delay": "", "up-delay": "",
                 "allow-recursive-routing": "", "auth-user-pass": ": it belongs in the client's config",
                 "http-proxy": ": a client reaches its server through the proxy", "http-proxy-option": "",
                 "http-proxy-user-pass": "", "socks-proxy": ": a client reaches its server through the proxy",
                 "redirect-private": ""}


# Directives a <connection> block takes (config/connection_entry.py reads the block), applied by
# their ordinary handlers to the block's own settings.
PER_CONNECTION = frozenset((
    "local lport bind nobind float port rport connect-retry connect-timeout server-poll-timeout "
    "link-mtu udp-mtu tun-mtu tun-mtu-max tun-mtu-extra max-packet-size fragment mtu-disc mssfix "
    "explicit-exit-notify key-direction tls-auth tls-crypt tls-crypt-v2 "
    "http-proxy-retry socks-proxy-retry http-proxy-timeout").split())
# Read by read_block itself: the block's server and its proxy.
OWN = frozenset(("remote", "proto", "http-proxy", "http-proxy-option"))
# 2.6 takes these in a block; here they are refused there, with why.
REFUSED_IN_BLOCK = {
    "connect-retry-max": "OpenVPN 2.6 takes it inside <connection> and drops it (it is one global count): give "
                         "it before the blocks",
    "socks-proxy": "not supported inside <connection> here: a global socks-proxy before the blocks holds for "
                   "every block",
    "mtu-dynamic": "replaced by --fragment (OpenVPN 2.6 refuses it too)",
}
# OpenVPN 2.6's connection-entry options (options.c, OPT_P_CONNECTION): all of the above. Each
# <connection> block copies them as they stand at its line, so after the first block they change
# nothing there (refused after one, but for GLOBAL_KEYS).
CONNECTION_ENTRY = PER_CONNECTION | OWN | frozenset(REFUSED_IN_BLOCK)


# The global key lines: 2.6 keeps them apart from the connection entry (options->tls_auth_file,
# not ce) and gives them to each block without a key of its own at the end of the file, so after
# a block they still count (checked with Debian's 2.6.14 at verb 4), unlike the other settings.
GLOBAL_KEYS = frozenset(("tls-auth", "tls-crypt", "tls-crypt-v2", "key-direction"))


# Options field -> the directive that sets it, for the server-only settings a client config may
# not carry (besides the access ones finish() names itself).
SERVER_ONLY = {"push": "push", "client_to_client": "client-to-client", "max_clients": "max-clients",
               "duplicate_cn": "duplicate-cn", "connect_freq": "connect-freq",
               "connect_freq_initial": "connect-freq-initial", "ifconfig_pool": "ifconfig-pool",
               "ifconfig_pool_persist": "ifconfig-pool-persist", "client_connect": "client-connect",
               "client_disconnect": "client-disconnect", "learn_address": "learn-address",
               "client_crresponse": "client-crresponse",
               "tls_crypt_v2_verify": "tls-crypt-v2-verify",
               "auth_gen_token": "auth-gen-token", "auth_gen_token_secret": "auth-gen-token-secret",
               "auth_user_pass_verify_script": "auth-user-pass-verify",
               "management_client_auth": "management-client-auth", "auth_pam": "plugin",
               "auth_user_pass_optional": "auth-user-pass-optional", "ifconfig_ipv6_pool": "ifconfig-ipv6-pool",
               "force_key_material_export": "force-tls-key-material-export",
               "ifconfig_push_constraint": "ifconfig-push-constraint", "server_ipv6": "server-ipv6"}


def checks_passwords(o) -> bool:
    """Whether a server checks a username and password at each login: a command or password file
    (auth-user-pass-verify), the management client (management-client-auth) or the auth-pam
    plugin. One place for it: verify-client-cert none|optional, username-as-common-name and
    auth-gen-token each depend on it (review45a: it was written out three times)."""
    return (o.auth_user_pass_verify is not None or o.auth_user_pass_verify_script is not None
            or bool(o.management_client_auth) or o.auth_pam is not None)


def finish(p: ParseState) -> None:
    """Checks and derived settings that need the whole file (role, remotes, combinations)."""
    o = p.o
    for d, line in p.pending_inline.items():
        p.err(d, f"{INLINE} given but no <{d}> block follows", line)
    for line, a in p.remote_lines:
        p.line = line
        port = o.port
        if len(a) > 1:
            n = p.int_arg("remote", a[1], 1, 65535)
            port = n if n is not None else port
        proto, family = o.proto, None
        if len(a) > 2:
            pr = norm_proto(a[2])
            if pr is None:
                p.err("remote", f"unknown protocol {a[2]}{proto_case_hint(a[2])}")
                continue
            proto = pr
            family = a[2][3:4] if a[2][3:4] in ("4", "6") else ""
        o.remotes.append(Remote(a[0], port, proto, family))
    if o.remotes:
        o.source["remotes"] = (getattr(p.remote_lines[0][0], "path", p.path), p.remote_lines[0][0])
    if o.connection_remotes:
        if p.remote_lines:
            # OpenVPN 2.6 uses the blocks and drops these without a word (options.c, remote_list
            # only without connection_list): a server the user listed would never be tried.
            p.err("remote", "beside <connection> blocks a `remote` line is ignored by OpenVPN 2.6: "
                  "put it in a <connection> block of its own", p.remote_lines[0][0])
        o.remotes = list(o.connection_remotes)
        o.source["remotes"] = o.source["connection_remotes"]
    if o.link_mtu is not None:
        _tun_mtu_from_link_mtu(p)
    ipv6_needs_1280(p, o)
    from .d_layer2 import finish as layer2_finish     # (it imports this module)
    layer2_finish(p)                                   # dev-type tun/tap, and the layer-2 server's rules
    from .server_written_out import finish_tun_server  # (it imports openvpn/serveraddressing.py)
    server = o.mode == "server" or o.server is not None
    line = lambda n: o.source.get(n, (p.path, None))[1]  # noqa: E731
    if o.fragment and (o.proto == "tcp" or any(r.proto == "tcp" for r in o.remotes)):
        p.err("fragment", "--fragment can only be used with --proto udp (as OpenVPN 2.6)", line("fragment"))
    if server and o.client:
        p.err("client", "`client` and `server`/`mode server` cannot both be set", line("client"))
    _option_conflicts(p, line)
    if server and "ifconfig" in o.source and o.dev_type == "tap":
        p.err("ifconfig", "a layer-2 server's address comes from `server NETWORK NETMASK` here (or none: a "
              "bridge port); `ifconfig` with dev tap is not supported", line("ifconfig"))
    if o.server is not None and not o.server_nopool and o.ifconfig_pool is not None:
        # 2.6's helper.c refuses the pair, tun and tap alike (ours narrowed `server`'s pool)
        p.err("ifconfig-pool", "--server already defines an ifconfig-pool, so you can't also specify "
              "--ifconfig-pool explicitly (as OpenVPN 2.6 says): add `nopool` to the `server` line to give "
              "the pool yourself", line("ifconfig_pool"))
    if server:
        o.role = "server"
        if not o.tls_server:
            p.err("mode", "mode server needs tls-server", line("mode"))
        if "tcp_client" in o.source:
            p.err("proto", "a server needs proto udp or tcp-server", o.source["tcp_client"][1])
        if o.shaper:
            p.err("shaper", "--shaper cannot be used with --mode server (as OpenVPN 2.6)", line("shaper"))
        if o.connect_freq is not None and o.proto == "tcp":
            p.err("connect-freq", "only works with --mode server --proto udp (as OpenVPN 2.6 says): a TCP server's "
                  "new sessions are bounded by max-clients", line("connect_freq"))
        if o.port_share is not None and o.proto != "tcp":
            p.err("port-share", "only works in TCP server mode (proto tcp-server), as in OpenVPN 2.6: a UDP "
                  "server has no connections to share", line("port_share"))
        if o.keepalive:     # (with ping/ping-restart/ping-exit refused: _option_conflicts)
            o.ping, o.ping_restart = o.keepalive[0], 2 * o.keepalive[1]
        if o.dev_type != "tap":
            # `server`, or its expansion written out; neither: addresses from ccd/scripts only (2.6)
            finish_tun_server(p)
        if (o.cert is None or o.key is None) and o.pkcs12 is None:
            p.err("cert", "a server needs cert and key (or pkcs12)", None)
        if o.connection_remotes:
            p.err("connection", "a <connection> block is a client's; this is a server config",
                  o.source["connection_remotes"][1])
        for d, why in NOT_IN_SERVER.items():
            # Accepted, they did nothing here (no remote is dialled, no credentials sent, no
            # gateway redirected); OpenVPN 2.6 refuses them in a server config.
            if d in p.seen:
                p.err(d, f"cannot be used in a server config (OpenVPN 2.6 refuses it there too){why}", p.seen[d])
        if o.multihome and o.proto == "tcp":
            # A TCP connection answers from the address it was accepted on anyway; OpenVPN 2.6
            # accepts the flag and uses it on UDP only. Not a security setting: a config written
            # for OpenVPN keeps working, with a note.
            p.line = line("multihome")
            p.note("multihome", "no effect on TCP (a TCP connection always answers from the address it "
                   "was made to), as in OpenVPN")
        if (o.ifconfig_push_constraint is not None and o.server is not None
                and (o.dev_type == "tap" or o.topology == "subnet")
                and o.ifconfig_push_constraint != o.server):
            # helper.c sets the constraint from `server` after the file is read (settings._constraint)
            p.line = line("ifconfig_push_constraint")
            p.note("ifconfig-push-constraint", f"replaced by the server's network {o.server[0]} {o.server[1]}, "
                   "which `server` sets as the constraint with dev tap or topology subnet (as OpenVPN 2.6)")
        if o.server_ipv6 is not None and o.server is not None and o.server_nopool:
            # 2.6's helper.c: server-ipv6 always lays out an IPv6 pool, so `nopool` contradicts it.
            p.err("server-ipv6", "is incompatible with `server ... nopool` (as OpenVPN 2.6 says): server-ipv6 "
                  "always makes an IPv6 pool; give the addresses with ifconfig-ipv6 and ccd instead",
                  line("server_ipv6"))
        if o.ifconfig_ipv6_pool is not None and o.server_ipv6 is not None:
            p.err("ifconfig-ipv6-pool", "server-ipv6 already lays out the IPv6 pool (from ::1000), so it cannot "
                  "be given as well (OpenVPN 2.6 refuses it too)", line("ifconfig_ipv6_pool"))
        elif o.ifconfig_ipv6_pool is not None and o.ifconfig_ipv6 is None:
            p.err("ifconfig-ipv6-pool", "needs ifconfig-ipv6 (the server's own IPv6 address), as in OpenVPN 2.6; "
                  "or use server-ipv6 NET/BITS instead of both", line("ifconfig_ipv6_pool"))
        if o.ifconfig_ipv6 is not None and o.server_ipv6 is not None:
            p.line = line("ifconfig_ipv6")
            p.note("ifconfig-ipv6", "server-ipv6 sets the server's IPv6 address (its ::1) instead, as in OpenVPN 2.6")
            o.ifconfig_ipv6 = None
        for r in o.route_ipv6:
            if r.gateway == "net_gateway_ipv6":
                # A server's route-ipv6 goes into its TUN, to a network behind a client; one
                # outside the tunnel is the host's business, not the VPN server's.
                p.err("route-ipv6", f"{r.network} net_gateway_ipv6: a server's route-ipv6 goes into its TUN "
                      "(to a network behind a client); net_gateway_ipv6 is a client's", line("route_ipv6"))
        if o.management_hold:
            # Our server does not implement the hold: accepted, it would start serving at once.
            p.err("management-hold", "is served by our client only (our server starts serving at once)",
                  line("management_hold"))
        if o.push_peer_info:
            p.line = line("push_peer_info")
            p.note("push-peer-info", "no effect in a server config (a server sends no peer info), as in OpenVPN")
        if o.management_query_passwords:
            # OpenVPN's server asks it for a private key's passphrase; ours reads `askpass`.
            p.err("management-query-passwords", "is served by our client only (a server's key passphrase "
                  "comes from askpass FILE here)", line("management_query_passwords"))
        for n, d in (("management_signal", "management-signal"),
                     ("management_forget_disconnect", "management-forget-disconnect"),
                     ("management_query_remote", "management-query-remote"),
                     ("management_query_proxy", "management-query-proxy")):
            if n in o.source:
                # OpenVPN's server would restart every client (SIGUSR1) when a tool disconnects.
                p.err(d, "is served by our client only", line(n))
        if o.verify_client_cert != "require" and not checks_passwords(o):
            # As OpenVPN 2.6 (options.c), which refuses to start so: a client without a certificate
            # and without a password check would be anyone. Before, ours served such a config.
            p.err("verify-client-cert", f"{o.verify_client_cert}: must be used with --management-client-auth, "
                  "an --auth-user-pass-verify command or password file, or the auth-pam plugin (as OpenVPN 2.6): "
                  "without a certificate and without a password check anyone could connect",
                  line("verify_client_cert"))
        if o.ccd_exclusive and o.client_config_dir is None:
            # As OpenVPN 2.6; here it refused every client (none has a file in no directory).
            p.err("ccd-exclusive", "must be used with --client-config-dir (as OpenVPN 2.6)", line("ccd_exclusive"))
        if "tls-client" in p.seen:
            # As OpenVPN 2.6 ("specify only one of --tls-server, --tls-client"): a server is the TLS server.
            p.err("tls-client", "a server is the TLS server: specify only one of --tls-server and --tls-client "
                  "(as OpenVPN 2.6)", p.seen["tls-client"])
        if o.management_client_auth and o.management is None:
            p.err("management-client-auth", "needs `management` (the client that decides connects there)",
                  line("management_client_auth"))
        aupv = o.auth_user_pass_verify_script
        if aupv is not None and aupv[1] == "via-env" and o.script_security < 3:
            p.line = line("auth_user_pass_verify_script")
            p.note("auth-user-pass-verify", "via-env: the command gets `password` in its environment only with "
                   "script-security 3, as in OpenVPN (via-file passes it in a file)")
        if o.auth_gen_token is not None:
            # As OpenVPN 2.6 (options.c): renewal defaults to reneg-sec, and a token must outlive
            # two key negotiations' windows; without renegotiation by time it would never renew.
            lifetime, renewal = o.auth_gen_token
            if not o.reneg_sec:
                p.err("auth-gen-token", "needs a reneg-sec other than 0 (tokens are renewed at renegotiations)",
                      line("auth_gen_token"))
            else:
                renewal = renewal or o.reneg_sec
                o.auth_gen_token = (lifetime, renewal)
                if renewal < 2 * o.hand_window:      # checked after the default, as OpenVPN 2.6
                    p.err("auth-gen-token", f"renewal time {renewal} s (reneg-sec's unless given) must be at "
                          f"least twice hand-window ({2 * o.hand_window} s)", line("auth_gen_token"))
            if o.auth_gen_token_external and o.auth_user_pass_verify_script is None and not o.management_client_auth:
                # OpenVPN hands the token to a script, plugin or management-client-auth; this
                # server runs only the command, and a password file cannot judge a token.
                p.err("auth-gen-token", "external-auth hands the token to the auth-user-pass-verify command or "
                      "the management client (management-client-auth), and there is neither (a password file "
                      "cannot judge a token): remove it, or use one of them",
                      line("auth_gen_token"))
            elif not checks_passwords(o):
                p.line = line("auth_gen_token")
                p.note("auth-gen-token", "no password is checked (no auth-user-pass-verify), so no token is "
                       "issued (as OpenVPN)")
        if o.auth_pam is not None and o.auth_user_pass_verify is not None:
            p.err("plugin", "the auth-pam plugin with a password file (auth-user-pass-verify FILE passdb) is not "
                  "supported: use one of them", line("auth_pam"))
        if o.username_as_common_name and not checks_passwords(o):
            # As OpenVPN 2.6 (options.c): the username becomes the name only in a user check, so
            # without one the line could only be ignored (or, worse, let a client name itself).
            p.err("username-as-common-name", "must be used with --management-client-auth, an "
                  "--auth-user-pass-verify command or password file, or the auth-pam plugin (as OpenVPN 2.6)",
                  line("username_as_common_name"))
        if o.auth_user_pass_optional and o.auth_user_pass_verify_script is None and not o.management_client_auth \
                and o.auth_pam is None:
            # As OpenVPN 2.6 (options.c): someone must decide on a login without credentials. A
            # password file refuses every one, so the line would change nothing.
            p.err("auth-user-pass-optional", "must be used with --management-client-auth or an "
                  "--auth-user-pass-verify command (a password file refuses every login without credentials)",
                  line("auth_user_pass_optional"))
    else:
        o.role = "client"
        o.p2p = not o.pull and not o.client and (o.tls_client or o.tls_server)
        if not (o.tls_client or o.client or o.tls_server):
            p.err("client", "neither `client` nor `tls-client` is set (static-key mode is not supported)", None)
        if o.p2p:
            from .p2p import finish_p2p      # p2p builds on this module
            finish_p2p(p)
        else:
            if o.tls_server:
                p.err("tls-server", "a pulling client (`client`/`pull`) is the TLS client: remove tls-server",
                      line("tls_server"))
            if "ifconfig" in o.source:
                p.err("ifconfig", "a client here takes its address from the server's push (`ifconfig` is for "
                      "point-to-point links, without `pull`); remove the line", line("ifconfig"))
            if not o.remotes:
                p.err("remote", "a client needs at least one `remote`", None)
            if "tcp_server" in o.source:
                p.err("proto", "a client cannot use tcp-server", o.source["tcp_server"][1])
        if o.port_share is not None:
            p.err("port-share", "requires TCP server mode (mode server, proto tcp-server), as in OpenVPN 2.6: "
                  "a client accepts no connections to share", line("port_share"))
        if o.keepalive:
            o.ping, o.ping_restart = o.keepalive
        if (o.http_proxy is not None or o.http_proxy_user_pass is not None or o.connection_remotes
                or o.socks_proxy is not None):
            # The remotes get their proxy, its credentials read (the client reads remote.proxy).
            from .d_proxy import finish_proxies      # d_proxy builds on this module
            finish_proxies(p)
        if o.auth_nocache and o.auth_user_pass_file:
            # Not kept from the parse: the gateway reads the file at each use (gateway/credentials.py).
            o.auth_user_pass = None
        for n in ("ccd_exclusive", "username_as_common_name", "client_config_dir", "auth_user_pass_verify"):
            if getattr(o, n) and n in o.source:
                # Server-only settings that decide who may connect: on a client they would be
                # accepted and mean nothing, which a user could mistake for protection.
                p.err(n.replace("_", "-"), "is a server directive; this is a client config", line(n))
        # The rest of the server's own settings: on a client they would be read and mean nothing
        # (OpenVPN 2.6 refuses most of them too: "requires --mode server").
        if o.multihome:
            # Our client's socket is connected: its source address is fixed for the whole session,
            # which is what multihome gives OpenVPN's client. Accepted there, so here too.
            p.line = line("multihome")
            p.note("multihome", "no effect on a client (its connected socket always sends from the address "
                   "it chose), as in OpenVPN")
        if o.verify_client_cert != "require":
            # Read by a server's TLS only; on a point-to-point tls-server it would have switched
            # off the check of the peer's certificate. OpenVPN 2.6 refuses none|optional outside
            # server mode; `require` (the default, what is done anyway) it takes -- ours refused
            # that too from audit44 until review45a.
            p.err("verify-client-cert", "requires --mode server (as OpenVPN 2.6): a client or point-to-point "
                  "peer always checks the other end's certificate", line("verify_client_cert"))
        for n, d in SERVER_ONLY.items():
            if n in o.source:
                p.err(d, "is a server directive; this is a client config", line(n))
        for n, d in (("local", "local"), ("lport", "lport"), ("bind", "bind")):
            if o.nobind and n in o.source:
                # As OpenVPN 2.6 (options_postprocess_verify_ce).
                p.err(d, "and nobind don't make sense when used together", line(n))
        if o.remap_usr1 == "SIGHUP":
            # OpenVPN's client re-reads its profile on SIGHUP; ours cannot (see its SIGHUP
            # warning), so restarts turned into SIGHUP would not be what the line asks for.
            p.err("remap-usr1", "SIGHUP: this client cannot re-read its profile in a running process; use "
                  "`remap-usr1 SIGTERM` (end the run, for a supervisor to restart) or leave the line out "
                  "(SIGUSR1 reconnects)", line("remap_usr1"))
        if "ifconfig_ipv6" in o.source and not o.p2p:
            p.err("ifconfig-ipv6", "a client here takes its IPv6 address from the server's push (point-to-point "
                  "ifconfig-ipv6 is not supported); remove the line", line("ifconfig_ipv6"))
        if "max_routes_per_client" in o.source:
            p.line = line("max_routes_per_client")
            p.note("max-routes-per-client", "a server's bound; no effect on a client (OpenVPN accepts it there too)")
        if "tmp_dir" in o.source:
            p.line = line("tmp_dir")
            p.note("tmp-dir", "only a server's auth-user-pass-verify uses it here; no effect on a client")
        from .d_misc import check_client_hash_size      # d_misc builds on this module
        check_client_hash_size(p)
    from .d_network import finish_device, finish_routes     # d_network builds on this module
    finish_device(p)
    finish_routes(p)
    if o.tls_export_cert and not o.tls_verify:
        p.line = line("tls_export_cert")
        p.note("tls-export-cert", "no effect without tls-verify (the only reader of the file here; no plugins)")
    if o.tls_export_cert and (why := others_can_swap(o.tls_export_cert, o.user,
                                                     "the certificate tls-verify's command reads")) is not None:
        p.err("tls-export-cert", why, line("tls_export_cert"))
    if o.role == "server" and "tmp_dir" not in o.source:
        from .d_ops import default_tmp_dir      # $TMPDIR or /tmp, checked as tmp-dir is
        default_tmp_dir(p)
    if o.tmp_dir and o.role == "server" and (why := others_can_swap(o.tmp_dir, o.user, "the credentials (via-file) or key metadata a "
                                             "command checks")) is not None:
        p.err("tmp-dir", why if "tmp_dir" in o.source else f"$TMPDIR (tmp-dir's default): {why}", line("tmp_dir"))
    for n, d in (("management_client_user", "management-client-user"),
                 ("management_client_group", "management-client-group")):
        if n in o.source and (o.management is None or o.management[1] != "unix"):
            # As OpenVPN 2.6: "--management-client-(user|group) can only be used on unix domain
            # sockets" (a TCP peer has no credentials to check; accepting it would mean nothing).
            p.err(d, "can only be used with a unix-socket `management PATH unix`", line(n))
    _query_passwords_checks(p, line)
    for n, d in (("management_hold", "management-hold"), ("management_log_cache", "management-log-cache"),
                 ("management_query_passwords", "management-query-passwords"),
                 ("management_signal", "management-signal"),
                 ("management_forget_disconnect", "management-forget-disconnect"),
                 ("management_up_down", "management-up-down"),
                 ("management_query_remote", "management-query-remote"),
                 ("management_query_proxy", "management-query-proxy")):
        if n in o.source and o.management is None:
            p.err(d, "needs `management` (there is no management interface without it)", line(n))
    if o.pkcs12 is not None:
        for n in ("cert", "key"):
            if n in o.source:           # as OpenVPN 2.6: "Parameter --cert cannot be used when --pkcs12 is also specified"
                p.err(n, "cannot be used with pkcs12 (it holds our certificate and key)", line(n))
    elif o.extra_certs is not None and o.cert is not None:
        o.cert = o.cert + b"\n" + o.extra_certs
    if o.pkcs12 is not None and o.capath is not None:   # as OpenVPN 2.6 (options.c)
        p.err("capath", "cannot be used with pkcs12", line("capath"))
    if o.ca is None and o.capath is None and not o.peer_fingerprint and o.pkcs12 is None \
            and "ca" not in p.seen and "capath" not in p.seen:     # pkcs12: its CAs
        # (a `ca` or `capath` line that was refused has said so at its line: a second error
        # "no `ca`" after it read as if the line had not been seen at all)
        p.err("ca", "no `ca` (or `peer-fingerprint`) to verify the peer", None)
    if (o.cert is None) != (o.key is None):
        p.err("cert" if o.cert is None else "key", "cert and key go together", line("cert") or line("key"))
    # As 2.6.14 (options.c): tls-auth and tls-crypt never together; tls-crypt-v2 beside either only
    # on a server, whose clients without a key of their own use that one (settings.shared_protection).
    prot = [n for n in ("tls_auth", "tls_crypt", "tls_crypt_v2") if getattr(o, n)
            and (n != "tls_crypt_v2" or o.role != "server")]
    if len(prot) > 1:
        p.err(prot[1].replace("_", "-"), f"cannot be combined with {prot[0].replace('_', '-')}"
              + (" in a client (a server takes both)" if prot[1] == "tls_crypt_v2" else ""), line(prot[1]))
    elif prot and o.tls_crypt_v2 and o.role == "server":
        p.line = line(prot[0])
        p.note(prot[0].replace("_", "-"), "beside tls-crypt-v2: clients with this shared key get in without a "
               "key of their own (tls-crypt-v2-verify and force-cookie apply only to those with one), as in "
               "OpenVPN 2.6")
    from .d_security import finish_dh           # d_security builds on this module
    finish_dh(p)
    from .d_profile import finish_profile       # d_profile builds on this module
    finish_profile(p)
    from .client_scripts import finish_client_scripts
    finish_client_scripts(p)
    _cipher_role(p)
    if o.role == "client":
        # Each remote's own settings, the file read -- a point-to-point tls-client's too: its
        # blocks' remotes must not run with the raw copy read_block took (keys emptied, no line
        # after the block, not even p2p itself). (A p2p tls-server takes no blocks: p2p.py.)
        from .connection_entry import finish_entries
        finish_entries(p)


def _option_conflicts(p: ParseState, line) -> None:
    """2.6.14's start-up checks between directives that hold in every role (helper_keepalive,
    options_postprocess_verify_ce): each refused at the line of the directive at fault, naming the
    other, where 2.6 says "Options error" without a line. Before, ours let the later line win."""
    o = p.o
    if o.keepalive:
        other = next((d for d, v in (("ping", o.ping), ("ping-restart", o.ping_restart), ("ping-exit", o.ping_exit))
                      if v), None)
        if other is not None:
            # keepalive sets ping and ping-restart itself (a server's doubled); which of two
            # settings would win depended on the role (ours) or stops the start (2.6).
            path, ln = o.source.get(other.replace("-", "_"), (None, None))
            path = getattr(ln, "path", path)        # (a Loc names its own file)
            here = getattr(line("keepalive"), "path", o.source.get("keepalive", (None,))[0])
            at = f"line {ln}" if path == here or path is None else f"{path}:{ln}"    # (--keepalive beside a file's ping)
            p.err("keepalive", f"conflicts with {other} ({at}): if you use "
                  "keepalive, you don't need any of the other ping directives (as OpenVPN 2.6 says)",
                  line("keepalive"))
    if o.tls_version_max is not None:
        from ..tls import DEFAULT_TLS_VERSION_MIN
        from .d_security import TLS_VERSIONS as TLS_ORDER       # lowest first (d_security imports this module)
        vmin = o.tls_version_min or DEFAULT_TLS_VERSION_MIN
        if TLS_ORDER.index(o.tls_version_max) < TLS_ORDER.index(vmin):
            # No TLS version would be left to negotiate: every handshake would fail.
            why = "" if o.tls_version_min else f" (ours without tls-version-min: {vmin}, never lower)"
            p.err("tls-version-max", f"{o.tls_version_max} is below tls-version-min {vmin}{why}: no TLS version "
                  "is left (OpenVPN 2.6: \"--tls-version-min bigger than --tls-version-max\")",
                  line("tls_version_max"))
    ifconfig = o.ifconfig or ()
    if o.server is not None and not ifconfig:
        # the `ifconfig` that `server` writes for itself (2.6's helper.c): NETWORK+1, then NETWORK+2
        # (the peer of a net30/p2p TUN) or the netmask (subnet, TAP), which 2.6 compares too
        net = int(ipaddress.IPv4Address(o.server[0]))
        tun_p2p = o.dev_type != "tap" and (o.topology or "net30") != "subnet"
        ifconfig = (str(ipaddress.IPv4Address(net + 1)),
                    str(ipaddress.IPv4Address(net + 2)) if tun_p2p else o.server[1])
    # 2.6 compares each connection entry's own strings (a <connection> block's local and port, as
    # the block set or inherited them; names unresolved): review49f
    outer = [("local", o.local, line("local"))] if o.local is not None and not o.remotes else []
    for r in o.remotes:
        e = r.entry if r.entry is not None else o
        at_local = e.source.get("local", o.source.get("local", (None, None)))[1]
        local_port = e.local_port
        if e.local is not None and r.host == e.local and r.port == local_port:
            # As 2.6 (options_postprocess_verify_ce): a peer that would send to itself.
            p.err("local", f"{e.local} port {local_port} is the remote's address and port: --remote and --local "
                  "addresses are the same (as OpenVPN 2.6 says)", at_local)
            break
        outer += [("local", e.local, at_local)] if e.local is not None else []
        outer.append(("remote", r.host, next((ln for ln, a in p.remote_lines if a[0] == r.host), line("remotes"))))
    # Outer addresses inside the tunnel: at the later of the two lines, naming the other.
    tunnel = ("ifconfig", line("ifconfig")) if o.ifconfig else ("server", line("server"))
    for d, host, at in outer:
        if host in ifconfig:
            later = max((d, at or 0), tunnel, key=lambda x: x[1] or 0)
            other = tunnel[0] if later[0] == d else f"{d} {host}"
            what = "the tunnel's netmask" if len(ifconfig) > 1 and host == ifconfig[1] and _is_netmask(host) \
                else "one of the tunnel's addresses"
            p.err(later[0], f"{host} is {what} ({other}): --local and --remote addresses "
                  "must be distinct from --ifconfig addresses (as OpenVPN 2.6 says)", later[1])
            break


def _is_netmask(text: str) -> bool:
    """Whether `text` is a dotted netmask (ones then zeros), as the second `ifconfig` value of a
    subnet or TAP tunnel is."""
    try:
        n = int(ipaddress.IPv4Address(text))
    except ValueError:
        return False
    return n != 0 and (n | (n - 1)) == 0xFFFFFFFF


def _cipher_role(p: ParseState) -> None:
    """What `cipher X` does, as 2.6.14's options_postprocess_cipher decides it: on a p2p link it is
    the fallback for a peer that does not negotiate (2.6 sets enable_ncp_fallback); in a client
    (pull) or server it is left out of negotiation, with 2.6's warning when data-ciphers lacks it.
    It is never added to data-ciphers (2.6 does that only for compat-mode below 2.5, refused here);
    before, ours appended it and used it as the fallback in every role, so a client took a pushed
    cipher 2.6's client refuses ("negotiated cipher not allowed")."""
    o = p.o
    if not o.cipher:
        return
    if o.p2p:
        if o.data_ciphers_fallback is None:
            o.data_ciphers_fallback = o.cipher
        return
    if o.cipher not in o.data_ciphers and o.cipher != o.data_ciphers_fallback:
        p.line = o.source.get("cipher", (p.path, None))[1]
        p.note("cipher", f"DEPRECATED OPTION: --cipher set to '{o.cipher}' but missing in --data-ciphers "
               f"({':'.join(o.data_ciphers)}). OpenVPN ignores --cipher for cipher negotiations (as 2.6 says)")


def others_can_swap(directory: str, user: str | None, what: str) -> str | None:
    """Why another local user could replace a file we write in `directory` while a command reads
    it (`what`: tls-export-cert's certificate for tls-verify's command; tmp-dir's via-file
    credentials for auth-user-pass-verify's, key metadata for tls-crypt-v2-verify's), else None: a
    swapped via-file let a user log in as another with their own password. Such a user
    owns the directory or one above it (and may rename or empty it), or may write one without
    the sticky bit (and may unlink our file and put theirs under its name): the command then
    judged a file of theirs, not the peer's. Trusted: root, us, and `user` (who we run
    as after start, and must write there). As OpenSSH's StrictModes; OpenVPN checks nothing."""
    trusted = {0, os.geteuid()}
    if user:
        try:
            trusted.add(pwd.getpwnam(user).pw_uid if not user.isdigit() else int(user))
        except (KeyError, ValueError):      # ValueError: a NUL in the name
            pass                    # an unknown user is refused at start (host/privileges.py)
    chains = {os.path.abspath(directory), os.path.realpath(directory)}
    for leaf in sorted(chains):
        d = leaf
        while True:
            try:
                st = os.stat(d)
            except OSError:
                return None         # gone: the directory check reports it
            if st.st_uid not in trusted:
                return f"{d} belongs to uid {st.st_uid}, who could swap {what}"
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
                return (f"{d} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'} without the "
                        f"sticky bit: they could swap {what}")
            up = os.path.dirname(d)
            if up == d:
                break
            d = up
    return None


def _query_passwords_checks(p: ParseState, line) -> None:
    """A client's credentials asked of a management client (management-query-passwords), and what
    only works with it. Refused where OpenVPN would ask the terminal instead, or where asking would
    have to happen mid-connection (nobody here answers a terminal; a renegotiation does not wait)."""
    o = p.o
    if o.role == "server":
        return
    q = o.management_query_passwords
    if o.auth_retry_interact and not q:
        p.err("auth-retry", "interact asks for the credentials again, and only a management client can be asked "
              "here: add management-query-passwords, or use auth-retry nointeract (the same credentials again) "
              "or none", line("auth_retry_interact"))
    if o.static_challenge is not None:
        if not o.auth_user_pass_required:
            p.err("static-challenge", "does nothing without auth-user-pass", line("static_challenge"))
        elif q and o.auth_user_pass is not None and o.auth_user_pass[1]:
            # OpenVPN 2.6 reads such a file and asks the terminal for the response alone.
            p.err("static-challenge", "the profile holds the password, so OpenVPN would ask the response on a "
                  "terminal; here only the management client is asked: leave the password out of "
                  "auth-user-pass so it is asked for both", line("static_challenge"))
        elif not q and o.auth_nocache:
            # Without a management client the response is typed on the terminal (gateway/credentials.py
            # ask_credentials); auth-nocache would ask it again mid-connection at renegotiations.
            p.err("static-challenge", "with auth-nocache the response would be asked on the terminal again at each "
                  "renegotiation, mid-connection: not supported; leave auth-nocache out (a pushed auth-token "
                  "serves renegotiations either way) or add management-query-passwords", line("static_challenge"))
    if q and o.auth_nocache and o.auth_user_pass_required:
        p.err("auth-nocache", "with management-query-passwords the password would have to be asked again at "
              "each renegotiation, mid-connection: not supported; leave auth-nocache out (the server's "
              "auth-token, if it pushes one, is used for renegotiations either way)", line("auth_nocache"))


# The least TUN MTU, as OpenVPN 2.6's TUN_MTU_MIN (init.c get_frame_mtu: "TUN MTU value (N) must be
# at least 100", fatal at start) -- for `tun-mtu` (d_network.py) and what a `link-mtu` leaves.
TUN_MTU_FLOOR = 100
# IPv6 on the device needs 1280 (RFC 8200 5): Linux refuses an IPv6 address on a smaller link, and
# 2.6 then exits at start ("Linux can't add IPv6 to interface"), so a profile pairing the two is refused.
IPV6_TUN_MTU_FLOOR = 1280


def ipv6_needs_1280(p: ParseState, o: Options) -> None:
    """IPv6 on the tunnel (`ifconfig-ipv6`, `server-ipv6`) with a TUN MTU below 1280: the kernel
    refuses the address, and OpenVPN 2.6 exits at start on it (checked with Debian's 2.6.14:
    "sitnl_send: rtnl: generic error (-22)", "Linux can't add IPv6 to interface tun0"). Refused
    here at the MTU's line, before anything starts; an IPv4-only tunnel takes down to 100.
    `o`: the profile, or one connection's own settings (connection_entry.py: a block's tun-mtu
    or link-mtu, or link-mtu over its protocol), its source naming the block's line."""
    v6 = "ifconfig_ipv6" if o.ifconfig_ipv6 is not None else "server_ipv6" if o.server_ipv6 is not None else None
    if v6 is None or o.tun_mtu >= IPV6_TUN_MTU_FLOOR:
        return
    d = "link-mtu" if o.link_mtu is not None else "tun-mtu"
    p.err(d, f"a TUN MTU of {o.tun_mtu} with {v6.replace('_', '-')}: IPv6 needs at least "
          f"{IPV6_TUN_MTU_FLOOR} on the device, the kernel refuses the address (OpenVPN 2.6 exits at start: "
          "\"Linux can't add IPv6 to interface\"); raise the MTU or leave IPv6 out",
          o.source.get(d.replace("-", "_"), (p.path, None))[1])


def _tun_mtu_from_link_mtu(p: ParseState) -> None:
    """`link-mtu N` (or udp-mtu): the TUN's MTU is N less the headers of the configured cipher,
    as OpenVPN 2.6 derives it at start (init.c get_frame_mtu), over TCP 2 bytes less. This is
    the profile's (the first remote's protocol: the TUN is opened with it); each connection
    derives its own with its protocol (connection_entry.finish_entries), as 2.6 per connection
    entry. Beside `tun-mtu` it is refused, as 2.6 refuses the pair."""
    o = p.o
    line = o.source.get("link_mtu", (p.path, None))[1]
    if "tun_mtu" in o.source:
        p.err("link-mtu", "only one of --tun-mtu or --link-mtu may be defined (as OpenVPN 2.6)", line)
        return
    mtu = tun_mtu_from_link_mtu(p, o, (o.remotes[0].proto if o.remotes else o.proto) == "tcp")
    if mtu is not None:
        o.tun_mtu = mtu


def tun_mtu_from_link_mtu(p: ParseState, o: Options, tcp: bool) -> int | None:
    """The TUN MTU `o.link_mtu` leaves over UDP or TCP with o's cipher; None (an error at the
    link-mtu line) when that is below our floor."""
    from ..occstring import protocol_header       # (the engine's module, not loaded for every parse)
    assert o.link_mtu is not None
    line = o.source.get("link_mtu", (p.path, None))[1]
    mtu = o.link_mtu - protocol_header(o.cipher, o.auth or "SHA1", tcp)
    if mtu < TUN_MTU_FLOOR:
        p.err("link-mtu", f"link-mtu {o.link_mtu} leaves a TUN MTU of {mtu} with the cipher's headers; the "
              f"least is {TUN_MTU_FLOOR}, as for tun-mtu (OpenVPN 2.6: \"TUN MTU value ({mtu}) must be at least "
              f"{TUN_MTU_FLOOR}\")", line)
        return None
    return mtu
