"""OpenVPN 2.6 config files (client and server) → a typed Options object.

Rules, so users can predict what happens to their profile:
- Syntax as OpenVPN: one directive per line, `#`/`;` comments, optional `--` prefix, quoting with
  "..." (backslash escapes) and '...', inline blocks `<ca>...</ca>` for files.
- Every directive is either applied, accepted as having no effect here (a note), or rejected with
  `file:line: directive: why`. All errors are collected and raised together (ConfigErrors).
- File arguments are relative to the config file's directory and read through `read_file`, so
  tests and the appliance image need no real paths.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Callable

from .errors import ConfigError

DEFAULT_CIPHERS = ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
SUPPORTED_CIPHERS = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM", "CHACHA20-POLY1305",
                     "AES-128-CBC", "AES-192-CBC", "AES-256-CBC"}
DIGESTS = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512"}
INLINE_TAGS = {"ca", "cert", "key", "tls-auth", "tls-crypt", "tls-crypt-v2", "auth-user-pass",
               "extra-certs", "peer-fingerprint", "dh", "secret", "pkcs12", "crl-verify", "http-proxy-user-pass"}


class ConfigErrors(ConfigError):
    """Several config errors at once, one `file:line: directive: why` per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        Exception.__init__(self, "\n".join(str(e) for e in errors))
        self.path = errors[0].path if errors else None
        self.line = errors[0].line if errors else None
        self.directive = errors[0].directive if errors else None
        self.message = str(self)


@dataclass(frozen=True)
class Remote:
    host: str
    port: int
    proto: str  # "udp" | "tcp"


@dataclass(frozen=True)
class Route:
    network: str
    netmask: str
    gateway: str | None
    metric: int | None

    def __iter__(self):
        return iter((self.network, self.netmask, self.gateway, self.metric))


@dataclass
class CcdOptions:
    ifconfig_push: tuple[str, str] | None = None
    iroutes: list[tuple[str, str]] = field(default_factory=list)
    push: list[str] = field(default_factory=list)
    push_reset: bool = False
    disable: bool = False


@dataclass
class Options:
    path: str = "<string>"
    role: str = "client"
    client: bool = False
    pull: bool = False
    tls_client: bool = False
    tls_server: bool = False
    mode: str = "p2p"
    remotes: list[Remote] = field(default_factory=list)
    remote_random: bool = False
    connect_retry: float = 1.0
    connect_retry_max: float = 300.0
    connect_retry_max_count: int | None = None
    server_poll_timeout: float = 120.0
    resolv_retry: float | None = None
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    tls_auth: str | None = None
    key_direction: int | None = None
    tls_crypt: str | None = None
    tls_crypt_v2: str | None = None
    tls_crypt_v2_force_cookie: bool = False
    auth_user_pass: tuple[str, str] | None = None
    auth_user_pass_required: bool = False
    auth_nocache: bool = False
    remote_cert_tls: str | None = None
    verify_x509_name: tuple[str, str] | None = None
    peer_fingerprint: list[bytes] = field(default_factory=list)
    tls_version_min: str | None = None
    tls_version_max: str | None = None
    data_ciphers: list[str] = field(default_factory=lambda: list(DEFAULT_CIPHERS))
    data_ciphers_fallback: str | None = None
    cipher: str | None = None
    auth: str = "SHA1"
    reneg_sec: int = 3600
    reneg_bytes: int | None = None
    reneg_pkts: int | None = None
    tran_window: int = 3600
    hand_window: int = 60
    tls_timeout: float = 2.0
    ping: int = 0
    ping_restart: int = 0
    ping_exit: int = 0
    keepalive: tuple[int, int] | None = None
    ping_timer_rem: bool = False
    nobind: bool = False
    bind: bool = True
    lport: int | None = None
    local: str | None = None
    port: int = 1194
    proto: str = "udp"
    proto_family: str | None = None
    dev: str = "tun"
    dev_type: str = "tun"
    dev_node: str | None = None
    tun_mtu: int = 1500
    mssfix: int | None = None
    persist_key: bool = False
    persist_tun: bool = False
    verb: int = 1
    mute: int = 0
    mute_replay_warnings: bool = False
    explicit_exit_notify: int = 0
    comp_lzo: str | None = None
    compress: str | None = None
    allow_compression: str | None = None
    redirect_gateway: list[str] | None = None
    route: list[Route] = field(default_factory=list)
    route_nopull: bool = False
    pull_filter: list[tuple[str, str]] = field(default_factory=list)
    dhcp_option: list[tuple[str, str]] = field(default_factory=list)
    # server
    server: tuple[str, str] | None = None
    server_ipv6: str | None = None
    topology: str = "net30"
    ifconfig_pool: tuple[str, str, str | None] | None = None
    ifconfig: tuple[str, str] | None = None
    push: list[str] = field(default_factory=list)
    client_to_client: bool = False
    duplicate_cn: bool = False
    max_clients: int = 1024
    verify_client_cert: str = "require"
    auth_user_pass_verify: tuple[str, str] | None = None
    client_config_dir: str | None = None
    ccd_exclusive: bool = False
    dh: str | None = None
    username_as_common_name: bool = False
    push_reset: bool = False
    source: dict[str, tuple[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ tokenizer
def _tokenize(line: str) -> list[str]:
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\f\v":
            i += 1
            continue
        if c in "#;" and True:
            break
        tok = []
        if c == '"':
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                tok.append(line[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated double quote")
            i += 1
        elif c == "'":
            i += 1
            while i < n and line[i] != "'":
                tok.append(line[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated single quote")
            i += 1
        else:
            while i < n and line[i] not in " \t\r\f\v":
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                tok.append(line[i])
                i += 1
        out.append("".join(tok))
    return out


NOOP = {
    "persist-key", "persist-tun", "nobind", "mute-replay-warnings", "auth-nocache", "resolv-retry",
    "script-security", "setenv", "setenv-safe", "ifconfig-pool-persist", "status", "status-version",
    "log", "log-append", "suppress-timestamps", "machine-readable-output", "user", "group", "daemon",
    "writepid", "float", "fast-io", "sndbuf", "rcvbuf", "txqueuelen", "persist-remote-ip",
    "persist-local-ip", "route-delay", "route-method", "ncp-disable", "tls-exit", "management-query-passwords",
    "auth-retry", "ecdh-curve", "tls-cipher", "tls-ciphersuites", "tls-groups", "replay-window", "mute",
    "ifconfig-nowarn", "block-outside-dns", "register-dns", "ignore-unknown-option",
    "remote-random-hostname", "allow-recursive-routing", "opt-verify", "server-poll-timeout", "connect-timeout",
    "inactive", "up-delay", "up-restart", "route-noexec", "ifconfig-noexec", "allow-pull-fqdn",
    "push-peer-info", "nice", "chroot", "mlock", "connect-retry", "keepalive", "verb", "dev-type",
    "tcp-nodelay",       # our TCP sockets always set TCP_NODELAY
}
REJECT = {
    "up": "scripts are not supported (the appliance runs no scripts)",
    "down": "scripts are not supported (the appliance runs no scripts)",
    "route-up": "scripts are not supported", "route-pre-down": "scripts are not supported",
    "ipchange": "scripts are not supported", "client-connect": "scripts are not supported",
    "client-disconnect": "scripts are not supported", "learn-address": "scripts are not supported",
    "tls-verify": "scripts are not supported", "plugin": "plugins are not supported",
    "secret": "static-key mode is not supported (deprecated in OpenVPN 2.6); use TLS",
    "fragment": "fragment is not supported", "http-proxy": "proxies are not supported",
    "socks-proxy": "proxies are not supported", "management": "the management interface is not supported",
    "pkcs12": "PKCS#12 files are not supported; use ca/cert/key PEM", "pkcs11-providers": "PKCS#11 is not supported",
    "cryptoapicert": "not supported on this platform", "askpass": "encrypted private keys are not supported",
    "lladdr": "only tun is supported", "crl-verify": "CRL checking is not supported yet",
    "static-challenge": "challenge/response is not supported", "tls-crypt-v2-verify": "scripts are not supported",
    "shaper": "traffic shaping is not supported", "port-share": "port-share is not supported",
    "multihome": "multihome is not supported", "mtu-disc": "not supported", "link-mtu": "set tun-mtu instead",
}


class _Parser:
    def __init__(self, path: str, read_file: Callable[[str], bytes]) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()
        self.read_file = read_file
        self.o = Options(path=path)
        self.errors: list[ConfigError] = []
        self.ignore_unknown: set[str] = set()
        self.global_port: int | None = None
        self.remote_lines: list[tuple[int, list[str]]] = []
        self.line = 0

    # -- helpers
    def err(self, directive: str, msg: str, line: "int | None | object" = ...) -> None:
        """`line` omitted: the line being parsed; None: no line (a directive that is missing)."""
        self.errors.append(ConfigError(msg, self.path, self.line if line is ... else line, directive))

    def set(self, name: str, value) -> None:
        setattr(self.o, name, value)
        self.o.source[name] = (self.path, self.line)

    def note(self, directive: str, what: str = "accepted, has no effect here") -> None:
        self.o.notes.append(f"{self.path}:{self.line}: {directive}: {what}")

    def file(self, directive: str, arg: str, inline: str | None) -> bytes | None:
        if inline is not None:
            return inline.encode()
        if arg == "[inline]":
            self.err(directive, "[inline] given but no inline block follows")
            return None
        p = arg if os.path.isabs(arg) else os.path.join(self.base, arg)
        try:
            return self.read_file(p)
        except OSError as e:
            self.err(directive, f"cannot read {arg}: {e.strerror or e}")
            return None

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

    # -- main loop
    def parse(self, text: str) -> Options:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            self.line = i + 1
            raw = lines[i].strip()
            i += 1
            if not raw or raw[0] in "#;":
                continue
            if raw.startswith("<") and raw.endswith(">") and not raw.startswith("</"):
                tag = raw[1:-1].strip()
                start = self.line
                body = []
                while i < len(lines) and lines[i].strip() != f"</{tag}>":
                    body.append(lines[i])
                    i += 1
                if i >= len(lines):
                    self.err(tag, f"inline block <{tag}> is not closed", start)
                    break
                i += 1
                self.line = start
                if tag == "connection":
                    self.err("connection", "<connection> blocks are not supported; use several `remote` lines")
                    continue
                if tag not in INLINE_TAGS:
                    self.err(tag, "unknown inline block")
                    continue
                self.directive([tag, "[inline]"], "\n".join(body) + "\n")
                continue
            try:
                toks = _tokenize(raw)
            except ValueError as e:
                self.err(raw.split()[0], str(e))
                continue
            if not toks:
                continue
            if toks[0].startswith("--"):
                toks[0] = toks[0][2:]
            self.directive(toks, None)
        self.finish()
        if self.errors:
            raise ConfigErrors(self.errors) if len(self.errors) > 1 else self.errors[0]
        return self.o

    def directive(self, t: list[str], inline: str | None) -> None:
        d, a = t[0].lower(), t[1:]
        h = getattr(self, "d_" + d.replace("-", "_"), None)
        if h is not None:
            h(d, a, inline)
        elif d in REJECT:
            self.err(d, REJECT[d])
        elif d in NOOP:
            self.note(d)
        elif d in self.ignore_unknown:
            self.note(d, "unknown, ignored (ignore-unknown-option)")
        else:
            self.err(d, "unknown or unsupported directive")

    def need(self, d: str, a: list[str], lo: int, hi: int | None = None) -> bool:
        hi = lo if hi is None else hi
        if not lo <= len(a) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            self.err(d, f"expects {want} argument(s), got {len(a)}")
            return False
        return True

    # -- role
    def d_client(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("client", True)
            self.set("pull", True)
            self.set("tls_client", True)

    def d_pull(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("pull", True)

    def d_tls_client(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("tls_client", True)

    def d_tls_server(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("tls_server", True)

    def d_mode(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("server", "p2p"):
                self.err(d, f"unknown mode {a[0]}")
            else:
                self.set("mode", a[0])

    def d_server(self, d, a, inline):
        if self.need(d, a, 2, 3):
            net, mask = self.ip(d, a[0]), self.mask(d, a[1])
            if net and mask:
                self.set("server", (net, mask))
                self.set("mode", "server")
                self.set("tls_server", True)

    def d_server_ipv6(self, d, a, inline):
        if self.need(d, a, 1):
            try:
                net = ipaddress.IPv6Network(a[0], strict=False)
            except ValueError:
                self.err(d, f"not an IPv6 network: {a[0]!r}")
                return
            if net.prefixlen > 124:
                self.err(d, "the IPv6 pool needs a prefix of /124 or shorter")
                return
            self.set("server_ipv6", str(net))

    # -- remotes and transport
    def d_remote(self, d, a, inline):
        if self.need(d, a, 1, 3):
            self.remote_lines.append((self.line, a))

    def d_proto(self, d, a, inline):
        if self.need(d, a, 1):
            p = _norm_proto(a[0])
            if p is None:
                self.err(d, f"unknown protocol {a[0]}")
                return
            if a[0].startswith("tcp-server") or a[0] in ("tcp4-server", "tcp6-server"):
                self.o.source["tcp_server"] = (self.path, self.line)
            if a[0].startswith("tcp-client") or a[0] in ("tcp4-client", "tcp6-client"):
                self.o.source["tcp_client"] = (self.path, self.line)
            self.set("proto", p)
            if a[0][3:4] in ("4", "6"):
                self.set("proto_family", a[0][3])

    def d_port(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 1, 65535)
            if n is not None:
                self.set("port", n)
                self.global_port = n

    def d_rport(self, d, a, inline):
        self.d_port(d, a, inline)

    def d_lport(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 0, 65535)
            if n is not None:
                self.set("lport", n)

    def d_local(self, d, a, inline):
        if self.need(d, a, 1, 2):
            self.set("local", a[0])

    def d_nobind(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("nobind", True)
            self.note(d, "we never bind a fixed local port as a client")

    def d_remote_random(self, d, a, inline):
        if self.need(d, a, 0):
            self.set("remote_random", True)

    def d_connect_retry(self, d, a, inline):
        if self.need(d, a, 1, 2):
            n = self.int_arg(d, a[0], 0, 86400)
            if n is not None:
                self.set("connect_retry", float(n))
            if len(a) > 1:
                m = self.int_arg(d, a[1], 1, 86400)
                if m is not None:
                    self.set("connect_retry_max", float(m))

    def d_connect_retry_max(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 1)
            if n is not None:
                self.set("connect_retry_max_count", n)

    def d_server_poll_timeout(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 1, 86400)
            if n is not None:
                self.set("server_poll_timeout", float(n))

    d_connect_timeout = d_server_poll_timeout

    def d_resolv_retry(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] == "infinite":
                self.set("resolv_retry", None)
            else:
                n = self.int_arg(d, a[0], 0)
                if n is not None:
                    self.set("resolv_retry", float(n))

    def d_dev(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0].startswith("tap"):
                self.err(d, "only tun is supported (layer 3)")
            elif a[0] == "null":
                self.err(d, "dev null is not supported")
            else:
                self.set("dev", a[0])

    def d_dev_type(self, d, a, inline):
        if self.need(d, a, 1) and a[0] != "tun":
            self.err(d, "only tun is supported (layer 3)")

    def d_dev_node(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("dev_node", a[0])

    def d_tun_mtu(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 576, 65535)
            if n is not None:
                self.set("tun_mtu", n)

    def d_mssfix(self, d, a, inline):
        if self.need(d, a, 0, 2):
            if a:
                n = self.int_arg(d, a[0], 0, 65535)
                if n is not None:
                    self.set("mssfix", n)
            self.note(d, "accepted; segments follow the TUN MTU")

    # -- TLS material
    def d_ca(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("ca", self.file(d, a[0], inline))

    def d_cert(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("cert", self.file(d, a[0], inline))

    def d_key(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("key", self.file(d, a[0], inline))

    def d_extra_certs(self, d, a, inline):
        if self.need(d, a, 1):
            data = self.file(d, a[0], inline)
            if data and self.o.cert:
                self.o.cert = self.o.cert + b"\n" + data

    def d_dh(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("dh", a[0])
            if a[0] != "none":
                self.note(d, "DH parameters are not used: key exchange is ECDHE")

    def _text(self, d, arg, inline) -> str | None:
        data = self.file(d, arg, inline)
        return data.decode("utf-8", "replace") if data is not None else None

    def d_tls_auth(self, d, a, inline):
        if self.need(d, a, 1, 2):
            self.set("tls_auth", self._text(d, a[0], inline))
            if len(a) == 2:
                if a[1] not in ("0", "1"):
                    self.err(d, "key direction must be 0 or 1")
                else:
                    self.set("key_direction", int(a[1]))

    def d_key_direction(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("0", "1"):
                self.err(d, "key direction must be 0 or 1")
            else:
                self.set("key_direction", int(a[0]))

    def d_tls_crypt(self, d, a, inline):
        if self.need(d, a, 1):
            self.set("tls_crypt", self._text(d, a[0], inline))

    def d_tls_crypt_v2(self, d, a, inline):
        if self.need(d, a, 1, 2):
            self.set("tls_crypt_v2", self._text(d, a[0], inline))
            if len(a) == 2:
                if a[1] not in ("force-cookie", "allow-noncookie"):
                    self.err(d, f"unknown option {a[1]}")
                self.set("tls_crypt_v2_force_cookie", a[1] == "force-cookie")

    def d_auth_user_pass(self, d, a, inline):
        if self.need(d, a, 0, 1):
            self.set("auth_user_pass_required", True)
            if a:
                text = self._text(d, a[0], inline)
                if text is not None:
                    lines = text.splitlines()
                    if len(lines) < 1 or not lines[0]:
                        self.err(d, "the file must hold the username on line 1 and the password on line 2")
                    else:
                        self.set("auth_user_pass", (lines[0], lines[1] if len(lines) > 1 else ""))

    def d_auth_nocache(self, d, a, inline):
        self.set("auth_nocache", True)

    def d_remote_cert_tls(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("server", "client"):
                self.err(d, "expects server or client")
            else:
                self.set("remote_cert_tls", a[0])

    def d_verify_x509_name(self, d, a, inline):
        if self.need(d, a, 1, 2):
            kind = a[1] if len(a) > 1 else "subject"
            if kind not in ("subject", "name", "name-prefix"):
                self.err(d, f"unknown type {kind}")
            else:
                self.set("verify_x509_name", (a[0], kind))

    def d_peer_fingerprint(self, d, a, inline):
        if self.need(d, a, 1):
            text = inline if inline is not None else a[0]
            fps = list(self.o.peer_fingerprint)
            for item in text.split():
                if item.startswith("#"):
                    continue
                try:
                    fp = bytes.fromhex(item.replace(":", ""))
                except ValueError:
                    fp = b""
                if len(fp) != 32:
                    self.err(d, f"not a SHA-256 fingerprint: {item}")
                else:
                    fps.append(fp)
            self.set("peer_fingerprint", fps)

    def d_tls_version_min(self, d, a, inline):
        if self.need(d, a, 1, 2):
            if a[0] not in ("1.0", "1.1", "1.2", "1.3"):
                self.err(d, f"unknown TLS version {a[0]}")
            else:
                self.set("tls_version_min", a[0])

    def d_tls_version_max(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("1.0", "1.1", "1.2", "1.3"):
                self.err(d, f"unknown TLS version {a[0]}")
            else:
                self.set("tls_version_max", a[0])

    def d_verify_client_cert(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("none", "optional", "require"):
                self.err(d, "expects none, optional or require")
            else:
                self.set("verify_client_cert", a[0])

    # -- data channel
    def _cipher(self, d, name: str) -> str | None:
        c = name.upper()
        if c in SUPPORTED_CIPHERS:
            return c
        self.err(d, f"unsupported cipher {name} (supported: {', '.join(sorted(SUPPORTED_CIPHERS))})")
        return None

    def d_data_ciphers(self, d, a, inline):
        if self.need(d, a, 1):
            out = []
            for c in a[0].split(":"):
                optional = c.startswith("?")
                c = c.lstrip("?")
                if c.upper() in SUPPORTED_CIPHERS:
                    out.append(c.upper())
                elif not optional:
                    self._cipher(d, c)
            if not out and not self.errors:
                self.err(d, "no usable cipher")
            self.set("data_ciphers", out)

    d_ncp_ciphers = d_data_ciphers

    def d_data_ciphers_fallback(self, d, a, inline):
        if self.need(d, a, 1):
            c = self._cipher(d, a[0])
            if c:
                self.set("data_ciphers_fallback", c)

    def d_cipher(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0].upper() in ("BF-CBC",):
                self.note(d, "BF-CBC ignored as OpenVPN 2.6 does without data-ciphers-fallback")
                return
            c = self._cipher(d, a[0])
            if c:
                self.set("cipher", c)

    def d_auth(self, d, a, inline):
        if self.need(d, a, 1):
            v = a[0].upper().replace("-", "")
            if v not in DIGESTS:
                self.err(d, f"unsupported digest {a[0]}")
            else:
                self.set("auth", v)

    def _seconds(self, name):
        def h(self, d, a, inline):
            if self.need(d, a, 1, 2):
                n = self.int_arg(d, a[0], 0)
                if n is not None:
                    self.set(name, n)
        return h

    d_reneg_sec = _seconds(None, "reneg_sec")
    d_tran_window = _seconds(None, "tran_window")
    d_hand_window = _seconds(None, "hand_window")
    d_ping = _seconds(None, "ping")
    d_ping_restart = _seconds(None, "ping_restart")
    d_ping_exit = _seconds(None, "ping_exit")
    d_max_clients = _seconds(None, "max_clients")

    def d_reneg_bytes(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 0, 2**62)
            if n is not None:
                self.set("reneg_bytes", n or None)

    def d_reneg_pkts(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 0, 2**62)
            if n is not None:
                self.set("reneg_pkts", n or None)

    def d_tls_timeout(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 1, 3600)
            if n is not None:
                self.set("tls_timeout", float(n))

    def d_keepalive(self, d, a, inline):
        if self.need(d, a, 2):
            i, t = self.int_arg(d, a[0], 1), self.int_arg(d, a[1], 1)
            if i is not None and t is not None:
                if t < 2 * i:
                    self.err(d, "the timeout must be at least twice the interval")
                self.set("keepalive", (i, t))

    def d_ping_timer_rem(self, d, a, inline):
        self.set("ping_timer_rem", True)

    def d_explicit_exit_notify(self, d, a, inline):
        if self.need(d, a, 0, 1):
            n = self.int_arg(d, a[0], 0, 100) if a else 1
            if n is not None:
                self.set("explicit_exit_notify", n)

    def d_comp_lzo(self, d, a, inline):
        if self.need(d, a, 0, 1):
            v = a[0] if a else "adaptive"
            if v not in ("no", "yes", "adaptive"):
                self.err(d, "expects no, yes or adaptive")
            elif v != "no":
                self.err(d, "LZO compression is not supported; use `comp-lzo no` (framing only) or remove it")
            else:
                self.set("comp_lzo", v)

    def d_compress(self, d, a, inline):
        if self.need(d, a, 0, 1):
            v = a[0] if a else "stub"
            if v not in ("stub", "stub-v2"):
                self.err(d, f"compression {v} is not supported; use `compress stub-v2` or remove it")
            else:
                self.set("compress", v)

    def d_allow_compression(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] == "yes":
                self.err(d, "compression is not supported")
            else:
                self.set("allow_compression", a[0])

    # -- routes
    def d_redirect_gateway(self, d, a, inline):
        self.set("redirect_gateway", list(a))

    def d_route(self, d, a, inline):
        if self.need(d, a, 1, 4):
            net = self.ip(d, a[0])
            mask = self.mask(d, a[1]) if len(a) > 1 and a[1] != "default" else "255.255.255.255"
            gw = a[2] if len(a) > 2 and a[2] not in ("vpn_gateway", "default") else None
            metric = self.int_arg(d, a[3], 0) if len(a) > 3 else None
            if net and mask:
                self.o.route.append(Route(net, mask, gw, metric))
                self.o.source["route"] = (self.path, self.line)

    def d_route_nopull(self, d, a, inline):
        self.set("route_nopull", True)

    def d_dhcp_option(self, d, a, inline):
        if self.need(d, a, 1, 2):
            self.o.dhcp_option.append((a[0], a[1] if len(a) > 1 else ""))
            self.note(d, "reported only: a client does not change the host's resolver")

    def d_pull_filter(self, d, a, inline):
        if self.need(d, a, 2):
            if a[0] not in ("accept", "ignore", "reject"):
                self.err(d, "expects accept, ignore or reject")
            else:
                self.o.pull_filter.append((a[0], a[1]))
                self.note(d, f"{a[0]} pushed options starting with {a[1]!r}")

    def d_verb(self, d, a, inline):
        if self.need(d, a, 1):
            n = self.int_arg(d, a[0], 0, 11)
            if n is not None:
                self.set("verb", n)

    def d_ignore_unknown_option(self, d, a, inline):
        self.ignore_unknown.update(x.lower() for x in a)
        self.note(d)

    def d_setenv(self, d, a, inline):
        if a and a[0].lower() == "opt" and len(a) > 1:
            self.ignore_unknown.add(a[1].lower())
            self.directive(a[1:], inline)
        else:
            self.note(d)

    def d_persist_key(self, d, a, inline):
        self.set("persist_key", True)

    def d_persist_tun(self, d, a, inline):
        self.set("persist_tun", True)

    def d_mute_replay_warnings(self, d, a, inline):
        self.set("mute_replay_warnings", True)

    # -- server
    def d_topology(self, d, a, inline):
        if self.need(d, a, 1):
            if a[0] not in ("subnet", "net30", "p2p"):
                self.err(d, "expects subnet, net30 or p2p")
            else:
                self.set("topology", a[0])

    def d_ifconfig_pool(self, d, a, inline):
        if self.need(d, a, 2, 3):
            s, e = self.ip(d, a[0]), self.ip(d, a[1])
            if s and e:
                self.set("ifconfig_pool", (s, e, a[2] if len(a) > 2 else None))

    def d_ifconfig(self, d, a, inline):
        if self.need(d, a, 2):
            self.set("ifconfig", (a[0], a[1]))

    def d_push(self, d, a, inline):
        if self.need(d, a, 1):
            self.o.push.append(a[0])
            self.o.source["push"] = (self.path, self.line)

    def d_push_reset(self, d, a, inline):
        self.set("push_reset", True)

    def d_client_to_client(self, d, a, inline):
        self.set("client_to_client", True)

    def d_duplicate_cn(self, d, a, inline):
        self.set("duplicate_cn", True)

    def d_username_as_common_name(self, d, a, inline):
        self.set("username_as_common_name", True)

    def d_auth_user_pass_verify(self, d, a, inline):
        if self.need(d, a, 2):
            if a[1] != "passdb":
                self.err(d, "only `auth-user-pass-verify FILE passdb` is supported (no scripts); "
                            "FILE holds `user:scrypt$...` lines made by `vpn-appliance passwd`")
                return
            p = a[0] if os.path.isabs(a[0]) else os.path.join(self.base, a[0])
            self.set("auth_user_pass_verify", (p, a[1]))

    def d_client_config_dir(self, d, a, inline):
        if self.need(d, a, 1):
            p = a[0] if os.path.isabs(a[0]) else os.path.join(self.base, a[0])
            self.set("client_config_dir", p)

    def d_ccd_exclusive(self, d, a, inline):
        self.set("ccd_exclusive", True)

    def d_iroute(self, d, a, inline):
        self.err(d, "iroute belongs in a client-config-dir file")

    def d_ifconfig_push(self, d, a, inline):
        self.err(d, "ifconfig-push belongs in a client-config-dir file")

    # -- after all lines
    def finish(self) -> None:
        o = self.o
        for line, a in self.remote_lines:
            self.line = line
            port = o.port
            if len(a) > 1:
                n = self.int_arg("remote", a[1], 1, 65535)
                port = n if n is not None else port
            proto = o.proto
            if len(a) > 2:
                p = _norm_proto(a[2])
                if p is None:
                    self.err("remote", f"unknown protocol {a[2]}")
                    continue
                proto = p
            o.remotes.append(Remote(a[0], port, proto))
        if o.remotes:
            o.source["remotes"] = (self.path, self.remote_lines[0][0])
        server = o.mode == "server" or o.server is not None
        line = lambda n: o.source.get(n, (self.path, None))[1]  # noqa: E731
        if server and o.client:
            self.err("client", "`client` and `server`/`mode server` cannot both be set", line("client"))
        if server:
            o.role = "server"
            if not o.tls_server:
                self.err("mode", "mode server needs tls-server", line("mode"))
            if "tcp_client" in o.source:
                self.err("proto", "a server needs proto udp or tcp-server", o.source["tcp_client"][1])
            if o.keepalive and "ping" not in o.source:
                o.ping, o.ping_restart = o.keepalive[0], 2 * o.keepalive[1]
            if o.tls_auth and o.key_direction is None:
                pass
            if o.server is None and o.ifconfig_pool is None:
                self.err("server", "a server needs `server NETWORK NETMASK` (or ifconfig-pool)", None)
            if o.cert is None or o.key is None:
                self.err("cert", "a server needs cert and key", None)
        else:
            o.role = "client"
            if not (o.tls_client or o.client):
                self.err("client", "neither `client` nor `tls-client` is set (static-key mode is not supported)", None)
            if o.tls_client and not o.pull and not o.client:
                self.err("pull", "point-to-point TLS without `pull` is not supported", line("tls_client"))
            if not o.remotes:
                self.err("remote", "a client needs at least one `remote`", None)
            if "tcp_server" in o.source:
                self.err("proto", "a client cannot use tcp-server", o.source["tcp_server"][1])
            if o.keepalive:
                o.ping, o.ping_restart = o.keepalive
        if o.ca is None and not o.peer_fingerprint:
            self.err("ca", "no `ca` (or `peer-fingerprint`) to verify the peer", None)
        if (o.cert is None) != (o.key is None):
            self.err("cert" if o.cert is None else "key", "cert and key go together", line("cert") or line("key"))
        prot = [n for n in ("tls_auth", "tls_crypt", "tls_crypt_v2") if getattr(o, n)]
        if len(prot) > 1:
            self.err(prot[1].replace("_", "-"), f"cannot be combined with {prot[0].replace('_', '-')}", line(prot[1]))
        if o.cipher and o.cipher not in o.data_ciphers:
            # OpenVPN 2.6: a `cipher` not in data-ciphers is added to it (and used as fallback).
            o.data_ciphers.append(o.cipher)
        for n in o.data_ciphers:
            if n not in SUPPORTED_CIPHERS:
                self.err("data-ciphers", f"unsupported cipher {n}", line("data_ciphers"))


def _norm_proto(p: str) -> str | None:
    p = p.lower()
    if p in ("udp", "udp4", "udp6"):
        return "udp"
    if p in ("tcp", "tcp4", "tcp6", "tcp-client", "tcp4-client", "tcp6-client", "tcp-server",
             "tcp4-server", "tcp6-server"):
        return "tcp"
    return None


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def parse_config(text: str, path: str = "<string>", read_file: Callable[[str], bytes] | None = None) -> Options:
    return _Parser(path, read_file or _read).parse(text)


def load_config(path: str) -> Options:
    try:
        text = _read(path).decode("utf-8", "replace")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    return parse_config(text, path)


def parse_ccd(text: str, path: str = "<ccd>") -> CcdOptions:
    """A client-config-dir file: ifconfig-push, iroute, push, push-reset, disable."""
    c = CcdOptions()
    errors = []
    for i, raw in enumerate(text.splitlines(), 1):
        raw = raw.strip()
        if not raw or raw[0] in "#;":
            continue
        try:
            t = _tokenize(raw)
        except ValueError as e:
            errors.append(ConfigError(str(e), path, i, raw.split()[0]))
            continue
        d, a = t[0].lower().lstrip("-"), t[1:]
        if d == "ifconfig-push" and len(a) >= 2:
            c.ifconfig_push = (a[0], a[1])
        elif d == "iroute" and len(a) >= 1:
            c.iroutes.append((a[0], a[1] if len(a) > 1 else "255.255.255.255"))
        elif d == "push" and len(a) == 1:
            c.push.append(a[0])
        elif d == "push-reset":
            c.push_reset = True
        elif d == "disable":
            c.disable = True
        else:
            errors.append(ConfigError("not supported in a client-config-dir file", path, i, d))
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    return c


_SECRET = {"ca", "cert", "key", "tls_auth", "tls_crypt", "tls_crypt_v2", "auth_user_pass"}


def render_options(o: Options) -> str:
    """`name = value   # file:line` for each setting; secrets summarised; defaults marked."""
    lines = []
    for f in Options.__dataclass_fields__:
        if f in ("source", "notes", "path"):
            continue
        v = getattr(o, f)
        if f in _SECRET and v is not None:
            v = f"<{len(v)} bytes>" if f != "auth_user_pass" else f"<user {v[0]!r}>"
        elif f == "peer_fingerprint":
            v = [x.hex(":") for x in v]
        elif f == "remotes":
            v = [f"{r.host} {r.port} {r.proto}" for r in v]
        elif f == "route":
            v = [" ".join(str(x) for x in r if x is not None) for r in v]
        src = o.source.get(f)
        where = f"# {src[0]}:{src[1]}" if src else "# (default)"
        lines.append(f"{f.replace('_', '-')} = {v}   {where}")
    return "\n".join(lines)
