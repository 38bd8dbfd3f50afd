"""Key-method-2 messages, peer-info, and the text messages of the control channel (PUSH_REPLY...).

All parse functions take peer bytes (`_untrusted`) and raise only BadPacket.
"""
from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .catoi import atoi, positive_atoi
from .clientnat import parse_rule as parse_client_nat
from .errors import BadPacket
from .peernames import from_peer, to_bytes
from .redirectflags import added_line, unknown_flag
from .safeenv import NAME_MAX as SETENV_SAFE_NAME_MAX
from .safeenv import safe_env_name, safe_env_value

KEY_METHOD_2 = 2


@dataclass(slots=True)
class KeyMethod2:
    random1: bytes
    random2: bytes
    options: str
    pre_master: bytes | None = None     # client only
    username: str = ""
    password: str = ""
    peer_info: str = ""
    user_pass_too_long: bool = False    # read: a username or password OpenVPN 2.6 cannot hold

    def peer_info_dict(self) -> "PeerInfo":
        """KEY=value lines of the peer's peer-info (for the scripts' environment, the status, the
        management notifications). A key given twice keeps its first value. The text as sent
        goes with it (PeerInfo.text): what decides the session -- IV_PROTO, IV_NCP, IV_CIPHERS --
        is read from that as 2.6 reads it (peer_info_var), not from these lines."""
        out = PeerInfo()
        out.text = self.peer_info.split("\0", 1)[0]    # a C string (the decoder cut it there already)
        for line in self.peer_info.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k.strip(), v.strip())
        return out


class PeerInfo(dict):
    """A peer's KEY=value lines, with the peer-info text they came from (`text`)."""
    __slots__ = ("text",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.text: str | None = None


def peer_info_text(info: dict[str, str]) -> str:
    """The peer-info text as the peer sent it; for a plain dict (a test's, a session made without
    a key-method message) its lines written out as a 2.6 peer writes them."""
    text = getattr(info, "text", None)
    return text if text is not None else "".join(f"{k}={v}\n" for k, v in info.items())


def peer_info_var(info: dict[str, str], name: str) -> str | None:
    """NAME's value as OpenVPN 2.6.14 finds it (ssl_util.c extract_var_peer_info): the first
    `NAME=` anywhere in the text -- not only at a line's start, so inside another line's value
    too -- up to the next newline, nothing stripped; None when the text has no `NAME=`. Why
    not the lines: `IV_CIPHERS =X`, `XIV_NCP=2`, `IV_GUI_VER=aIV_CIPHERS=X` or a value with
    blanks read otherwise than 2.6 gave a client another cipher, or none (compat48)."""
    text = peer_info_text(info)
    at = text.find(name + "=")
    if at < 0:
        return None
    value = text[at + len(name) + 1:]
    end = value.find("\n")
    return value if end < 0 else value[:end]


def peer_info_int(info: dict[str, str], key: str) -> int:
    """A numeric peer-info value read as OpenVPN 2.6.14 reads it (strstr for `KEY=` anywhere in
    the text, then sscanf "%d" -- the same reading as atoi: blanks and newlines skipped, a sign,
    leading digits, anything else 0, a value past a long clamped and then cut to a C int's 32
    bits; catoi.atoi, the one reading of C numbers) -- never an exception for a client's text.
    `IV_PROTO=seven` is 0, `IV_PROTO=6x` is 6, `IV_NCP=4294967298` is 2, `IV_NCP= 2` is 2."""
    text = peer_info_text(info)
    at = text.find(key + "=")
    return 0 if at < 0 else atoi(text[at + len(key) + 1:])


def iv_proto(info: dict[str, str]) -> int:
    """The peer's IV_PROTO flags as 2.6.14's extract_iv_proto (ssl_util.c): its number taken only
    when above 0. Why not the number as it is: `IV_PROTO=-1` (or a value that wraps negative,
    `IV_PROTO=4294967295`) would claim every feature bit -- data v2 with a peer-id, TLS-EKM,
    request-push, cc-exit -- where 2.6 reads no feature at all."""
    v = peer_info_int(info, "IV_PROTO")
    return v if v > 0 else 0


def _write_string(s: str) -> bytes:
    b = to_bytes(s)         # a username read from a file as bytes goes out as those bytes
    return struct.pack("!H", len(b) + 1) + b + b"\0"


def encode_key_method_2(m: KeyMethod2, is_client: bool) -> bytes:
    parts = [b"\0\0\0\0", bytes((KEY_METHOD_2,))]
    if is_client:
        assert m.pre_master is not None and len(m.pre_master) == 48
        parts.append(m.pre_master)
    parts += [m.random1, m.random2, _write_string(m.options)]
    if m.username or m.password:
        parts += [_write_string(m.username), _write_string(m.password)]
    else:
        parts += [b"\0\0", b"\0\0"]
    parts.append(_write_string(m.peer_info) if m.peer_info else b"\0\0")
    return b"".join(parts)


# What OpenVPN 2.6 reads of a key-method message (ssl.c key_method_2_read). One read of
# TLS_CHANNEL_BUF_SIZE bytes of TLS plaintext holds it: what lies past that is not part of it (the
# strings must end within it). Its options string has a buffer of TLS_OPTIONS_LEN bytes, the NUL
# included (longer: the handshake fails), the username and password one of USER_PASS_LEN each
# (misc.h; 4096 in Debian's build, which has PKCS#11, 128 without): one longer, or cut off by the
# end of the read, refuses the client with AUTH_FAILED and USER_PASS_TOO_LONG, checked passwords or
# not. Why here too: ours read the whole TLS record, so a peer not yet authenticated handed a
# 16 KB username to the password check, the log and the scripts' environment, and a client with
# credentials no OpenVPN 2.6 server reads got in.
KEY_METHOD_READ = 2048
TLS_OPTIONS_LEN = 512
USER_PASS_LEN = 4096
USER_PASS_TOO_LONG = "Username or password is too long. Maximum length is 128 bytes"   # 2.6's words, verbatim


def _read_string(data: bytes, pos: int, capacity: int | None = None) -> tuple[bytes | None, int, bool]:
    """(the string's bytes or None when there is none, where the next starts, whether it fit) for
    a string of the key-method message, as OpenVPN 2.6 reads it (ssl.c read_string): no length
    left is no string; a length over `capacity` or past the end of `data` does not fit; the last
    byte is made the NUL whatever it was (`alicex` sent without its NUL is `alice` there, and
    must be the same name here) and the string ends at its first NUL (a C string)."""
    if len(data) - pos < 2:
        return None, pos, True
    (ln,) = struct.unpack_from("!H", data, pos)
    pos += 2
    if ln == 0:
        return b"", pos, True
    if (capacity is not None and ln > capacity) or len(data) - pos < ln:
        return None, (pos + ln if len(data) - pos >= ln else pos), False
    raw = data[pos:pos + ln - 1].split(b"\0", 1)[0]
    return raw, pos + ln, True


def decode_key_method_2_untrusted(data: bytes, from_client: bool) -> KeyMethod2:
    """A peer's key-method message as OpenVPN 2.6 reads it (see KEY_METHOD_READ). Usernames and
    passwords are kept byte for byte (peernames.from_peer: two usernames OpenVPN tells apart stay
    apart); the other strings are decoded with replacement."""
    data = data[:KEY_METHOD_READ]
    need = 5 + (48 if from_client else 0) + 64
    if len(data) < need:
        raise BadPacket("key method message too short")
    if data[:4] != b"\0\0\0\0":
        raise BadPacket("key method message: bad prefix")
    if data[4] != KEY_METHOD_2:
        raise BadPacket(f"unsupported key method {data[4]}")
    pos = 5
    pre = None
    if from_client:
        pre = bytes(data[pos:pos + 48])
        pos += 48
    r1, r2 = bytes(data[pos:pos + 32]), bytes(data[pos + 32:pos + 64])
    pos += 64
    options, pos, fits = _read_string(data, pos, TLS_OPTIONS_LEN)
    if not fits:
        raise BadPacket(f"key method message: options string over {TLS_OPTIONS_LEN - 1} bytes or cut off")
    if options is None:
        raise BadPacket("key method message: no options string")
    user, pos, user_fits = _read_string(data, pos, USER_PASS_LEN)
    pw, pos, pw_fits = _read_string(data, pos, USER_PASS_LEN)
    info, pos, _ = _read_string(data, pos)            # cut off: no peer-info, as there
    too_long = not (user_fits and pw_fits)
    # The username reaches the log, the status file, scripts' environment and the management
    # interface: control characters become `_`, as OpenVPN 2.6 does (string_mod CC_PRINT, '_').
    username = remap_name(from_peer(user)) if user and not too_long else ""
    password = from_peer(pw) if pw and not too_long else ""
    return KeyMethod2(r1, r2, options.decode("utf-8", "replace"), pre, username, password,
                      info.decode("utf-8", "replace") if info else "", user_pass_too_long=too_long)


_ATOLL = re.compile(r"[+-]?[0-9]{1,19}")      # with the module: not inside a push (catoi._ATOI)


def _atoll_nonneg(text: str) -> int:
    """`inactive`'s bytes as 2.6 reads them (atoll, a negative value 0), at most 19 digits."""
    m = _ATOLL.match(text)
    return max(int(m.group()), 0) if m else 0


# `shaper`'s range in bytes a second, 2.6's (shaper.h): a pushed value here, a profile's in config/d_profile.py
SHAPER_PUSH_MIN, SHAPER_PUSH_MAX = 100, 100_000_000


def _pushed_number(p: "PushedOptions", index: int, name: str, text: str, lo: int, hi: int,
                   read: "Callable[[str], int]" = positive_atoi) -> int:
    """A pushed number read as OpenVPN 2.6 reads it (options.c positive_atoi: C's atoi, a
    negative one 0; no error, so `ping abc` is `ping 0`), then kept within lo..hi, the range we
    act on safely. Anything but a plain decimal within lo..hi is noted in p.malformed with the
    value used: 2.6 takes such a value silently, we log it."""
    v = read(text)
    used = min(max(v, lo), hi)
    if not (text.isascii() and text.isdigit() and len(text) <= 20 and int(text) == used):
        p.malformed.append(f"[PUSH-OPTIONS]:{index}: {name} {_noted([text])}: read as {used}"
                           + (f" (OpenVPN 2.6 reads {v}; at most {hi} is used)" if v > hi else
                              f" (at least {lo} is used)" if v < lo else " (as OpenVPN 2.6 reads it)"))
    return used


def _ipv4(text: str) -> str:
    """A pushed IPv4 address (ifconfig's local and its mask or peer); ValueError otherwise: an
    IPv6 one would go onto the TUN device as an address nothing asked for. The rule of
    ipaddress.IPv4Address (four decimal octets, no leading zeros) without building one: this
    runs on the way to the first packet."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"not an IPv4 address: {text!r}")
    for o in parts:
        if not (o.isascii() and o.isdigit()) or len(o) > 3 or (o[0] == "0" and len(o) > 1) or int(o) > 255:
            raise ValueError(f"not an IPv4 address: {text!r}")
    return text


def _ipv6_with_bits(text: str) -> str:
    """`ifconfig-ipv6`'s `address[/bits]` (bits 0..128); ValueError for anything else (an IPv4
    address, a `%scope`, a prefix length no address can have)."""
    addr, slash, bits = text.partition("/")
    if "%" in addr:
        raise ValueError(text)
    ipaddress.IPv6Address(addr)
    if slash and not (bits.isascii() and bits.isdigit() and int(bits) <= 128):
        raise ValueError(text)
    return text


MAX_PUSHED_PEER_ID = 0xFFFFFE          # 0xFFFFFF means "no peer-id" on the wire
MAX_PUSHED_SECONDS = 7 * 24 * 3600
MAX_PUSHED_OPTIONS = 1024              # over all push-continuation parts: more is hostile, not a config
# The bytes of one pushed option OpenVPN 2.6's client reads (options.c apply_push_options: a
# line[OPTION_PARM_SIZE] buffer, the rest of a longer option read as the next one). A longer
# `auth-token` (or `auth-token-user`) is left out, the password kept in use: 2.6 would send back
# its cut first part, and ours sent it whole, after which the key-method message with it passed
# what a server reads -- a server pushing a 1,900-byte token made our client exit ("username and
# password are too long") at its first renegotiation.
PUSHED_LINE_READ = 255


# Control characters but TAB: no control-channel message uses them, and their text reaches the
# log (AUTH_FAILED reasons, INFO, ignored pushed options, errors) and the status.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# OpenVPN's CC_PRINT on the UTF-8 bytes: a byte below 0x20 or 0x7f is a control character; the
# bytes of U+0080-U+009F (C2 80..C2 9F) are not, so those characters stay.
_CONTROL_OR_TAB = re.compile(r"[\x00-\x1f\x7f]")


def remap_name(name: str) -> str:
    """A peer's username or certificate common name with control characters (tab included)
    made `_`, exactly as OpenVPN 2.6 does (string_mod_remap_name, CC_PRINT): these names reach
    logs, files and the management interface, where a line break would forge lines, and the
    same name must pick the same ccd file and pass the same verify-x509-name as with OpenVPN.
    U+0080-U+009F stay, as there (the log escapes them: logsetup)."""
    return _CONTROL_OR_TAB.sub("_", name)


def credential_as_sent(text: str) -> str:
    """A username or password as OpenVPN 2.6's client sends it: its control characters (U+0000
    to U+001F, tab, CR and LF included, and DEL) dropped (misc.c get_user_pass_cr: string_mod
    CC_PRINT, CC_CRLF, 0), whatever it was read from; U+0080 and up stay (UTF-8 bytes). Used by
    our client when it sends credentials, and by the password file (passdb.py) on both sides of a
    check, so a password holding a tab means the same to Debian's client, to ours and to the
    server's password file."""
    return _CONTROL_OR_TAB.sub("", text) if _CONTROL_OR_TAB.search(text) else text


def escape_controls(text: str) -> str:
    """A peer must not forge log lines (CR/LF) or drive a terminal (ESC sequences): each
    control character becomes the text `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


# A byte OpenVPN's CC_PRINT refuses in a control message (tab included); CR/LF at its end aside.
_NOT_PRINT = re.compile(rb"[\x00-\x1f\x7f]")
# The longest control message OpenVPN 2.6 reads: its TLS_CHANNEL_BUF_SIZE (2048 bytes of
# plaintext per read, "the maximum size of a single TLS message"), the NUL included. Its pushes
# come in parts of at most PUSH_BUNDLE_SIZE (1024 bytes); nothing it sends is longer.
MAX_TEXT_MESSAGE = 2047


PUSH_CONTROL_BYTE = ("holds a control character (a tab, a byte below 0x20 or DEL): OpenVPN 2.6.14 clients, "
                     "and ours, refuse the whole push message it is in")


def refused_in_control_text(text: str) -> bool:
    """Whether a message holding `text` is refused whole by OpenVPN 2.6.14 and by us
    (split_text_messages_untrusted): a server's `push` must not hold such a byte, or every
    client drops the whole PUSH_REPLY it rides in and never comes up."""
    return _NOT_PRINT.search(to_bytes(text)) is not None


def split_text_messages_untrusted(data: bytes) -> tuple[list[str], list[str]]:
    """(the messages to act on, why others were refused) from one TLS record of control text.

    As OpenVPN 2.6.14 reads them (ssl_pkt.c extract_command_buffer, CVE-2024-5594): a message
    ends at a NUL, and text after the last NUL is no message; a CR/LF at a message's end is cut
    off; a message holding any other byte below 0x20, or 0x7f, is refused whole. Why whole and
    not fixed up: a peer's `EXIT\\x07` or `HALT\\x1b[2J` must mean to us what it means to
    OpenVPN (nothing), and text that reaches the log must not forge lines or drive a terminal.
    The refusals come back as text for a warning, escaped; U+0080-U+009F, which OpenVPN lets
    through, are escaped in what is acted on too (the one place peer text enters as str).
    A message longer than MAX_TEXT_MESSAGE is refused too, unread: OpenVPN never reads one whole.
    Why: a TLS record holds 16 KB, charged to the control budget (control.py) as one record
    and one message, and a 16 KB PUSH_REPLY of 2,300 `ping 1` took ~7 ms to parse, five times
    what the budget was made for: the ~500 such records the burst admits held the client's one
    loop 3.9 s (0.4 s refused unread), and at the budget's rate they kept a quarter of its core
    busy for as long as the tunnel lived (each push after the tunnel is up is parsed for its
    auth-token)."""
    out: list[str] = []
    refused: list[str] = []
    *messages, rest = data.split(b"\0")
    for chunk in messages:
        chunk = chunk.rstrip(b"\r\n")
        if not chunk:
            continue
        if len(chunk) > MAX_TEXT_MESSAGE:
            refused.append(f"control message over {MAX_TEXT_MESSAGE + 1} bytes refused: "
                           + escape_controls(chunk[:80].decode("utf-8", "replace")))
            continue
        # A push is read as its bytes (surrogateescape, as a peer's name: peernames.py), so the
        # values 2.6 hands to scripts as bytes can be (parse_push_reply_untrusted); every other
        # message, and every other pushed option, is text with U+FFFD for what is not UTF-8.
        text = escape_controls(chunk.decode("utf-8", "surrogateescape" if chunk.startswith(b"PUSH_REPLY")
                                             else "replace"))
        if _NOT_PRINT.search(chunk):
            refused.append(f"control message with invalid characters refused: {text[:80]}")
        else:
            out.append(text)
    if rest:
        refused.append("control message without NUL termination ignored: "
                       + escape_controls(rest[:80].decode("utf-8", "replace")))
    return out, refused


@dataclass
class PushedOptions:
    """What a PUSH_REPLY told us, accumulated over push-continuation messages."""
    ifconfig: tuple[str, str] | None = None
    ifconfig_ipv6: tuple[str, str] | None = None
    topology: str = "net30"
    route_gateway: str | None = None
    routes: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)
    routes_ipv6: list[tuple[str, str | None, int | None]] = field(default_factory=list)  # (net/len, gateway, metric)
    route_metric: int | None = None                  # route-metric: the metric of routes without one (0: none)
    route_delay: tuple[int, int | None] | None = None   # route-delay (N, W or None): gateway/route_delay.py
    redirect_gateway: list[str] | None = None
    redirect_private: list[str] | None = None     # pushed redirect-private FLAGS (gateway/tunnel.py)
    # both pushed directives' lines in push order, (is redirect-gateway, flags taken): compat47
    redirect_lines: list[tuple[bool, list[str]]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)     # server addresses, both push forms, in use order
    dns_endpoints: list[tuple[str, int]] = field(default_factory=list)   # the same with their ports
    search_domains: list[str] = field(default_factory=list)   # `dns search-domains` (2.6 form)
    dns_servers: dict[int, "DnsServer"] = field(default_factory=dict)  # `dns server N ...` by priority N
    dhcp_options: list[tuple[str, str]] = field(default_factory=list)
    ping: int | None = None
    ping_restart: int | None = None
    inactive: tuple[int, int] | None = None          # (seconds, minimum bytes); (0, 0) turns it off
    peer_id: int | None = None
    cipher: str | None = None
    auth: str | None = None
    tls_ekm: bool = False
    cc_exit: bool = False
    tun_mtu: int | None = None
    compress: str | None = None
    comp_lzo: str | None = None
    auth_token: str | None = None
    auth_token_user: str | None = None
    explicit_exit_notify: int | None = None
    block_ipv6: bool = False                         # no IPv6 anywhere: gateway/block_ipv6.py
    session_timeout: int | None = None               # the client exits N s after the push (0: never)
    shaper: int | None = None                        # bytes/s to the link, over the profile's (gateway/shaper.py)
    client_nat: list = field(default_factory=list)   # clientnat.NatRule: after the profile's (64 in all)
    # `setenv-safe NAME VALUE`: OPENVPN_NAME for the client's scripts (safeenv.py), in push order
    # (a name pushed again replaces its value), over the profile's own (gateway/updown_env.py).
    setenv_safe: dict[str, str] = field(default_factory=dict)
    # For each: how many pushed dhcp-options came before its (newest) line. 2.6 sets both kinds
    # as it reads the push, so a script's environment and >UPDOWN list them interleaved in push
    # order (updown_env.up_env); ours listed every setenv-safe before the foreign options.
    setenv_safe_after: dict[str, int] = field(default_factory=dict)
    dhcp_pushed: int = 0                             # of dhcp_options, how many the push gave
    ignored: list[str] = field(default_factory=list)
    filtered: list[str] = field(default_factory=list)   # dropped by a `pull-filter ignore`
    # WINDOWS_ONLY_PUSHED ones, as 2.6 names them: "[PUSH-OPTIONS]:N: block-outside-dns"
    unrecognized: list[str] = field(default_factory=list)
    # Options with a bad value, left out or read as OpenVPN 2.6 reads them, each with why
    # ("[PUSH-OPTIONS]:N: ..."): 2.6 logs such an option and goes on with the rest of the push
    # (pushed_values.py); logged by gateway/eventlog.log_malformed, a few lines at most.
    malformed: list[str] = field(default_factory=list)
    complete: bool = False


MAX_DNS_ADDRESSES = 8                  # per `dns server N` (OpenVPN 2.6's limit)
MAX_DNS_SERVERS = 64                   # distinct priorities; more is hostile
MAX_SEARCH_DOMAINS = 64


@dataclass
class DnsServer:
    """One `dns server N ...` of OpenVPN 2.6 (options accumulate over several pushed lines)."""
    addresses: list[tuple[str, int]] = field(default_factory=list)
    transport: str = "plain"            # plain | DoH | DoT: only plain DNS can be forwarded


def _dns_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A pushed DNS server address; ValueError for a `%scope` one (Python accepts them): the
    server would choose a host interface (`fe80::1%eth0`) and so send our DNS queries, and a
    LAN's through the forwarder, outside the tunnel. OpenVPN reads DNS6 with inet_pton (no scope)."""
    if "%" in text:
        raise ValueError(text)
    return ipaddress.ip_address(text)


def _dns_endpoint(text: str) -> tuple[str, int]:
    """`198.19.0.1`, `198.19.0.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353` (OpenVPN 2.6's
    forms) as (canonical address, port); ValueError otherwise."""
    port = 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(text)
        if rest:
            port = int(rest[1:])
        addr = _dns_address(host)
        if addr.version != 6:
            raise ValueError(text)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        addr, port = ipaddress.IPv4Address(host), int(p)
    else:
        addr = _dns_address(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return str(addr), port


def _parse_dns_option(p: "PushedOptions", args: list[str]) -> bool:
    """OpenVPN 2.6's `dns server N address A [A...]` / `dns server N transport T` / `dns
    search-domains D...`; False for what we do not use (recorded as ignored by the caller).
    A malformed value is a ValueError whose text is 2.6's message: the caller leaves the rest of
    the option out and goes on, as 2.6 (options.c: the addresses before a bad one stay, server N
    exists from its first line on; one left without an address fails the push at its end,
    dns_options_verify -- see dns_without_address)."""
    if len(args) >= 2 and args[0] == "search-domains":
        for d in args[1:]:
            if len(p.search_domains) < MAX_SEARCH_DOMAINS and d not in p.search_domains:
                p.search_domains.append(d)
        return True
    if len(args) >= 4 and args[0] == "server":
        try:
            prio = int(args[1]) if args[1].isascii() else None
        except ValueError:
            prio = None
        if prio is None or not -128 <= prio <= 127:
            raise ValueError(f"--dns server: invalid priority value '{args[1]}'")
        srv = p.dns_servers.get(prio)
        if srv is None:
            if len(p.dns_servers) >= MAX_DNS_SERVERS:
                raise ValueError(f"--dns server {prio}: more than {MAX_DNS_SERVERS} dns servers")
            srv = p.dns_servers[prio] = DnsServer()
        if args[2] == "address":
            for a in args[3:]:
                try:
                    ep = _dns_endpoint(a)
                except ValueError:
                    ep = None
                if ep is None or len(srv.addresses) >= MAX_DNS_ADDRESSES:
                    raise ValueError(f"--dns server {prio}: malformed address or maximum exceeded '{a}'")
                srv.addresses.append(ep)
            return True
        if args[2] == "transport":
            if len(args) != 4 or args[3] not in ("plain", "DoH", "DoT"):
                raise ValueError(f"--dns server {prio}: malformed transport value '{' '.join(args[3:])}'")
            srv.transport = args[3]
            return True
    return False


def dns_without_address(p: "PushedOptions") -> int | None:
    """The priority of a pushed `dns server` left without an address (a bad one, or only its
    transport pushed): OpenVPN 2.6 fails such a push ("ERROR: dns server N does not have an
    address assigned") and restarts; None when every server has one."""
    for prio in sorted(p.dns_servers):
        if not p.dns_servers[prio].addresses:
            return prio
    return None


def update_dns(p: "PushedOptions") -> None:
    """`dns`/`dns_endpoints`: the 2.6 `dns server` addresses by priority (lowest N first, plain
    transport only), then the `dhcp-option DNS/DNS6` ones not already listed."""
    eps: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()      # a list's `in` made 1024 pushed servers ~0.5 M comparisons
    for prio in sorted(p.dns_servers):
        srv = p.dns_servers[prio]
        if srv.transport.lower() == "plain":
            for e in srv.addresses:
                if e not in seen:
                    seen.add(e)
                    eps.append(e)
    for kind, val in p.dhcp_options:
        if kind.upper() in ("DNS", "DNS6"):
            try:
                ep = (str(_dns_address(val)), 53)
            except ValueError:
                continue
            if ep not in seen:
                seen.add(ep)
                eps.append(ep)
    p.dns_endpoints = eps
    p.dns = [a for a, _port in eps]


class PushRejected(BadPacket):
    """A pushed option matched a `pull-filter reject`: OpenVPN treats that as an error and restarts."""


# What separates a pushed option's words: OpenVPN's parse_line splits at C isspace() only.
# Python's str.split() also splits at U+00A0, U+2000..U+200A, U+3000, U+001C...:
# `route<U+00A0>0.0.0.0<U+00A0>128.0.0.0` passed a `pull-filter ignore "route "` (it does not
# start with "route ") and was then applied as a route, where OpenVPN sees one unknown word.
_OPTION_SPLIT = re.compile(r"[ \t\n\v\f\r]+")

# What `route-nopull` keeps out, as OpenVPN 2.6 (init.c pull_permission_mask: without route-nopull
# only, OPT_P_ROUTE and OPT_P_DHCPDNS are taken): routes, redirect-gateway, block-ipv6, client-nat, and the
# DNS options, which otherwise still reached the host's resolver, the LAN's DNS forwarder and
# DHCP server (a profile that keeps the server's routes out keeps its DNS out too).
NOPULL_OPTIONS = frozenset(("route", "route-ipv6", "redirect-gateway", "redirect-private", "route-metric",
                            "block-ipv6", "dhcp-option", "dns", "block-outside-dns", "register-dns",
                            "client-nat"))


# Pushed options OpenVPN 2.6 reads on Windows only (options.c, under #ifdef _WIN32): its Linux
# client logs each as an error ("Options error: Unrecognized option or missing or extra
# parameter(s) in [PUSH-OPTIONS]:N: block-outside-dns (2.6.14)") and goes on with the rest.
# PiVPN, Nyr, docker-openvpn and eduVPN push block-outside-dns to every client.
WINDOWS_ONLY_PUSHED = frozenset(("block-outside-dns", "register-dns", "dhcp-renew", "dhcp-pre-release",
                                 "dhcp-release", "tap-sleep"))


# An option kept only to be logged (ignored, filtered) keeps at most this much of its text: a
# server sending 1024 push-continuation parts of one 16 KB unknown option each made the client
# hold ~17 MB until the option count refused the push (the VM has ~75 MB to spare).
MAX_NOTED_CHARS = 256


def _noted(words: list[str]) -> str:
    text = " ".join(words)
    return text if len(text) <= MAX_NOTED_CHARS else text[:MAX_NOTED_CHARS] + "..."


def _pull_filter_action(raw: str, words: list[str], filters) -> str:
    """The first filter whose text starts the option decides; default accept. "Starts" in
    either of two ways: the option as pushed, white space before it skipped, begins with the
    filter's text as written (OpenVPN 2.6's own test, options.c apply_pull_filter: strncmp on
    the raw line, so `ignore "route  198.18.5.0"` with two spaces matches a route pushed with
    two spaces); or the option's words one space apart begin with the filter's text with each
    run of white space as one space. Why the second: OpenVPN's raw comparison lets a server
    slip `route<TAB>0.0.0.0 128.0.0.0` (or two spaces) past `ignore "route "`, and the
    option is then applied as the route it is."""
    spaced = " ".join(words)
    for action, prefix in filters:
        if raw.startswith(prefix) or spaced.startswith(_OPTION_SPLIT.sub(" ", prefix)):
            return action
    return "accept"


COMPRESS_PUSHED = frozenset(("stub", "stub-v2", "migrate", "lzo", "lz4", "lz4-v2"))   # what 2.6 reads


def _take_option(p: PushedOptions, index: int, name: str, args: list[str], a: list[str]) -> None:
    """One pushed option into p. A bad value is either a ValueError with OpenVPN 2.6's message
    (the option left out, as 2.6 does: options.c add_option with its D_PUSH_ERRORS level) or,
    for a number 2.6 reads with atoi, the value 2.6 reads kept within our range and noted
    (_pushed_number). What is left out never reaches the host: no half-read route or address."""
    if name == "ifconfig" and len(args) >= 2:
        try:
            p.ifconfig = (_ipv4(args[0]), _ipv4(args[1]))
        except ValueError:
            raise ValueError(f"ifconfig parms '{args[0]}' and '{args[1]}' must be valid addresses") from None
    elif name == "ifconfig-ipv6" and len(args) >= 1:
        try:
            if len(args) > 1 and args[1]:
                _ipv6_with_bits(args[1].partition("/")[0])
            p.ifconfig_ipv6 = (_ipv6_with_bits(args[0]), args[1] if len(args) > 1 else "")
        except ValueError:
            raise ValueError(f"ifconfig-ipv6 parms '{args[0]}' and '{args[1] if len(args) > 1 else ''}' "
                             "must be valid addresses") from None
    elif name == "topology" and args:
        if args[0] not in ("net30", "p2p", "subnet"):
            raise ValueError("--topology must be net30, p2p, or subnet")
        p.topology = args[0]
    elif name == "route-gateway" and args:
        p.route_gateway = args[0]
    elif name == "route" and args:
        # (a route the host cannot take is skipped with a warning where routes are added,
        # gateway/tunnel.py, as 2.6 does)
        mask = args[1] if len(args) > 1 else "255.255.255.255"
        gw = args[2] if len(args) > 2 and args[2] not in ("vpn_gateway", "default") else None
        metric = int(args[3]) if len(args) > 3 and args[3].isascii() and args[3].isdigit() else None
        p.routes.append((args[0], mask, gw, metric))
    elif name == "route-ipv6" and args:
        metric6 = int(args[2]) if len(args) > 2 and args[2].isascii() and args[2].isdigit() else None
        p.routes_ipv6.append((args[0], args[1] if len(args) > 1 else None, metric6))
    elif name == "route-metric" and args:
        p.route_metric = _pushed_number(p, index, name, args[0], 0, 2**31 - 1)
    elif name == "route-delay" and len(args) <= 2:
        # As 2.6 (options.c, OPT_P_ROUTE_EXTRAS: taken with route-nopull too): each
        # number as positive_atoi reads it (anything else 0, a negative one 0).
        p.route_delay = (positive_atoi(args[0]) if args else 0,
                         positive_atoi(args[1]) if len(args) > 1 else None)
    elif name == "route-delay":
        # 2.6: "Options error: Unrecognized option or missing or extra parameter(s) in
        # [PUSH-OPTIONS]:N: route-delay", the push goes on without it.
        p.unrecognized.append(f"[PUSH-OPTIONS]:{index}: {name}")
    elif name in ("redirect-gateway", "redirect-private"):
        bad = unknown_flag(args)
        # As OpenVPN 2.6 (options.c add_option at D_PUSH_ERRORS): the redirect is enabled before
        # the flags are read, each flag sets its bit in order, and an unknown one is logged and
        # ends the reading -- so `def1 block-locl` redirects (def1, without the misspelt guard),
        # as Debian's 2.6.14 client does (tests/interop/test_client_vs_openvpn.py). Leaving the
        # whole line out sent everything outside the tunnel where 2.6 sends it in (review45a).
        taken = args if bad is None else args[:args.index(bad)]
        # A second line of the same name adds its flags, as 2.6 ORs them (a later line turns the
        # IPv4 side on again, so an earlier `!ipv4` goes unless this one has it too); it replaced
        # the first (atk45). profile_push.redirect_in_effect merges these with the profile's.
        field = name.replace("-", "_")
        setattr(p, field, added_line(getattr(p, field), taken))
        p.redirect_lines.append((name == "redirect-gateway", list(taken)))
        if bad is not None:
            p.malformed.append(f"[PUSH-OPTIONS]:{index}: {_noted([f'unknown --{name} flag: {bad}'])} (the "
                               f"redirect taken with the flags before it: {_noted(taken) or 'none'})")
    elif name == "dhcp-option" and args:
        val = args[1] if len(args) > 1 else ""
        p.dhcp_options.append((args[0], val))
    elif name == "dns" and _parse_dns_option(p, args):
        pass
    elif name == "ping" and args:
        p.ping = _pushed_number(p, index, name, args[0], 0, MAX_PUSHED_SECONDS)
    elif name == "ping-restart" and args:
        p.ping_restart = _pushed_number(p, index, name, args[0], 0, MAX_PUSHED_SECONDS)
    elif name == "inactive" and args:
        # (2.6 reads the bytes with atoll, a negative number 0; a far end spins nothing)
        p.inactive = (_pushed_number(p, index, name, args[0], 0, 2**31 - 1),
                      _pushed_number(p, index, name + " bytes", args[1], 0, 2**62, _atoll_nonneg) if len(args) > 1 else 0)
    elif name == "peer-id" and args:
        # 2.6 reads it with atoi and sends its low 24 bits: 16777215 is "no peer-id" on the
        # wire, 16777216 another client's 0. Outside 0..16777214 it is left out: our data
        # goes as P_DATA_V1, which a 2.6 server reads by our address.
        v = atoi(args[0])
        if not (args[0].isascii() and args[0].isdigit() and 0 <= v <= MAX_PUSHED_PEER_ID):
            raise ValueError(f"peer-id {args[0]} is not a peer-id (0..{MAX_PUSHED_PEER_ID}): "
                             "data sent without one")
        p.peer_id = v
    elif name == "cipher" and args:
        p.cipher = args[0].upper()
    elif name == "auth" and args:
        p.auth = args[0].upper()
    elif name == "key-derivation" and args:
        if args[0] != "tls-ekm":
            raise ValueError(f"Unknown key-derivation method {args[0]}")
        p.tls_ekm = True
    elif name == "protocol-flags":
        unknown = []
        for f in args:
            if f == "tls-ekm":
                p.tls_ekm = True
            elif f == "cc-exit":
                p.cc_exit = True
            elif f != "dyn-tls-crypt":
                unknown.append(f)
        if unknown:
            raise ValueError(f"Unknown protocol-flags flag: {' '.join(unknown)}")
    elif name == "tun-mtu" and args:
        if positive_atoi(args[0]) < 100:
            # 2.6 takes it (positive_atoi) and then fails to set such an MTU on the device
            # (Linux's least is 68); below our least of 100 the profile's stays.
            raise ValueError(f"tun-mtu {args[0]}: less than 100, the profile's tun-mtu kept")  # (left out)
        # (more than tun-mtu-max: roles.py uses that, with a warning, as 2.6 does)
        p.tun_mtu = _pushed_number(p, index, name, args[0], 100, 65535)
    elif name == "compress":
        if args and args[0] not in COMPRESS_PUSHED:
            raise ValueError(f"bad comp option: {args[0]}")
        p.compress = args[0] if args else "stub"
    elif name == "comp-lzo":
        if args and args[0] not in ("yes", "no", "adaptive"):
            raise ValueError(f"bad comp-lzo option: {args[0]} -- must be 'yes', 'no', or 'adaptive'")
        p.comp_lzo = args[0] if args else "yes"
    elif name in ("auth-token", "auth-token-user") and args and \
            len(to_bytes(f"{name} {args[0]}")) > PUSHED_LINE_READ:
        p.ignored.append(_noted(a) + f" (longer than the {PUSHED_LINE_READ} bytes OpenVPN 2.6 reads)")
    elif name == "auth-token" and args:
        p.auth_token = args[0]
    elif name == "auth-token-user" and args:
        p.auth_token_user = args[0]
    elif name == "explicit-exit-notify":
        p.explicit_exit_notify = _pushed_number(p, index, name, args[0], 0, 100) if args else 1
    elif name == "session-timeout" and args:
        p.session_timeout = _pushed_number(p, index, name, args[0], 0, 2**31 - 1)
    elif name == "shaper" and len(args) == 1:
        # As OpenVPN 2.6's client (pull_permission_mask has OPT_P_SHAPER): C's atoi, and a value
        # out of its range is refused ("Bad shaper value") and not applied.
        v = atoi(args[0])
        if SHAPER_PUSH_MIN <= v <= SHAPER_PUSH_MAX:
            p.shaper = v
        else:
            p.ignored.append(_noted(a) + f" (Bad shaper value, must be between {SHAPER_PUSH_MIN} and "
                             f"{SHAPER_PUSH_MAX}: not applied, as OpenVPN 2.6)")
    elif name == "block-ipv6" and not args:
        p.block_ipv6 = True
    elif name == "client-nat":
        try:
            p.client_nat.append(parse_client_nat(args))
        except ValueError as e:
            # As OpenVPN 2.6: a bad pushed entry is logged and left out, the push goes on.
            p.ignored.append(_noted(a) + f" ({e})")
    elif name == "push-continuation" and args:
        pass                        # (the caller reads it)
    else:
        p.ignored.append(_noted(a))


def _take_setenv_safe(p: PushedOptions, item: str, a: list[str]) -> None:
    """A pushed `setenv-safe NAME [VALUE]` into p.setenv_safe, read as OpenVPN 2.6's client reads
    it: its words as parse_line makes them (quotes, so `'a b'` is one value), one or two of them
    (else "Unrecognized option or missing or extra parameter(s)", left out), the name and value
    as safeenv.py makes them; a name over NAME_MAX bytes sets nothing (2.6: "name overflow").
    An option longer than the 255 bytes 2.6 reads is left out whole (2.6 would set its cut first
    part and read the rest as another option): each value is then under 255 bytes, and at most
    MAX_PUSHED_OPTIONS of them -- ~260 KB, within what a script's exec takes (script_env.ENV_MAX)."""
    if len(to_bytes(item.strip(" \t\n\v\f\r"))) > PUSHED_LINE_READ:
        p.ignored.append(_noted(a) + f" (longer than the {PUSHED_LINE_READ} bytes OpenVPN 2.6 reads)")
        return
    from .config.lexer import LexError, tokenize     # (here: the config package imports this module)
    try:
        words = tokenize(item, drop_extra=True, limits=False)
    except LexError as e:
        raise ValueError(f"setenv-safe: {e}") from None
    if not 2 <= len(words) <= 3:
        raise ValueError(f"Unrecognized option or missing or extra parameter(s): {_noted(a)}")
    name = safe_env_name(words[1])
    if name is None:
        raise ValueError(f"setenv_str_safe: name overflow (over {SETENV_SAFE_NAME_MAX} bytes): {words[1]}")
    p.setenv_safe.pop(name, None)               # (a name set again is the newest)
    p.setenv_safe[name] = safe_env_value(words[2] if len(words) > 2 else "")
    p.setenv_safe_after.pop(name, None)
    p.setenv_safe_after[name] = len(p.dhcp_options)


# Pushed options whose values 2.6 hands to the client's scripts (and >UPDOWN) as the bytes the
# server sent (CC_PRINT keeps every byte from 0x20 up but DEL): setenv-safe's OPENVPN_NAME, and
# dhcp-option's foreign_option_N. Ours decoded the push as UTF-8 with replacement, so a Latin-1
# or 0xff byte reached the script as U+FFFD. Their values keep such bytes (as lone surrogates,
# written out as the bytes by os.fsencode, down_root.encode, management.py); whatever acts on a
# dhcp-option value checks it first (an address, a domain name: host/dns_settings.py,
# lan/dhcp_server.py), which such a byte never passes. Every other option is read as text.
BYTES_VALUE_OPTIONS = frozenset({"setenv-safe", "dhcp-option"})
_PEER_BYTE = re.compile("[\udc80-\udcff]")


def _as_text(item: str) -> str:
    """A pushed option as text: each byte that is not UTF-8 as U+FFFD (as before)."""
    if _PEER_BYTE.search(item) is None:
        return item
    return item.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_push_reply_untrusted(text: str, into: PushedOptions | None = None,
                               filters: "list[tuple[str, str]] | tuple" = (),
                               route_nopull: bool = False) -> PushedOptions:
    """Parse `PUSH_REPLY,opt args,opt args...`; unknown options are recorded, not fatal (as OpenVPN).

    `filters` are the profile's `pull-filter` lines in order, (accept|ignore|reject, text);
    `route_nopull`: the profile's `route-nopull` (NOPULL_OPTIONS are recorded as ignored).
    """
    if not text.startswith("PUSH_REPLY"):
        raise BadPacket("not a PUSH_REPLY")
    p = into if into is not None else PushedOptions()
    cont = None
    for index, raw in enumerate(text.split(",")[1:], 1):
        item = _as_text(raw)
        a = [w for w in _OPTION_SPLIT.split(item) if w]
        if not a:
            continue
        name, args = a[0], a[1:]
        if name in BYTES_VALUE_OPTIONS and item is not raw:
            args = [w for w in _OPTION_SPLIT.split(raw) if w][1:]    # (the same words: ASCII blanks)
        # (push-continuation is framing here, not filtered: 2.6 filters it, and a whitelist ending
        # in `ignore ""` then takes a multi-part push's first message for all of it -- its cipher
        # and ifconfig come last, so 2.6's client fails and restarts at every attempt. README
        # "Thirty-fifth session (helper nits37)".)
        if filters and name != "push-continuation":
            action = _pull_filter_action(item.lstrip(" \t\n\v\f\r"), a, filters)
            if action == "ignore":
                p.filtered.append(_noted(a))
                continue
            if action == "reject":
                raise PushRejected(f"pushed option rejected by pull-filter: {' '.join(a)}")
        if name in WINDOWS_ONLY_PUSHED:        # (route-nopull or not: 2.6 knows no such option here)
            p.unrecognized.append(f"[PUSH-OPTIONS]:{index}: {_noted([name])}")
            continue
        if route_nopull and name in NOPULL_OPTIONS:
            p.ignored.append(_noted(a) + " (route-nopull)")
            continue
        try:
            if name == "setenv-safe":
                _take_setenv_safe(p, raw, a)
            else:
                _take_option(p, index, name, args, a)
        except ValueError as e:
            # As OpenVPN 2.6 (options.c add_option at D_PUSH_ERRORS): the option is logged
            # ("Options error: ...") and left out; the rest of the push goes on.
            p.malformed.append(f"[PUSH-OPTIONS]:{index}: {_noted([str(e)])} (left out)")
        if name == "push-continuation" and args:
            cont = args[0]
    n = (len(p.routes) + len(p.routes_ipv6) + len(p.dhcp_options) + len(p.ignored) + len(p.filtered)
         + len(p.client_nat) + len(p.unrecognized) + len(p.malformed) + len(p.setenv_safe))
    if n > MAX_PUSHED_OPTIONS:
        raise PushRejected(f"the server pushed more than {MAX_PUSHED_OPTIONS} options")
    p.complete = cont != "2"
    p.dhcp_pushed = len(p.dhcp_options)
    if p.complete:
        # Once, over all parts: after each part, a server sending its 1020 `dhcp-option DNS` one
        # per push-continuation part kept the client's one loop busy ~9 s (quadratic in parts).
        update_dns(p)
        if (prio := dns_without_address(p)) is not None:
            # OpenVPN 2.6 (options_postprocess_pull -> dns_options_verify): the push fails and
            # the client restarts; so does ours (a server whose push 2.6 refuses is refused).
            raise PushRejected(f"dns server {prio} does not have an address assigned")
    return p


def build_push_reply(options: list[str]) -> list[str]:
    """Split pushed options into PUSH_REPLY messages under OpenVPN's size limit, with continuation.
    The limit is in bytes, as OpenVPN's PUSH_BUNDLE_SIZE: a client reads at most MAX_TEXT_MESSAGE
    bytes of a message, and counted in characters, pushes in CJK text made ~2,400-byte messages
    every client refused unread (the client never came up)."""
    limit = 1024
    msgs: list[list[str]] = [[]]
    size = 0
    for o in options:
        n = len(to_bytes(o)) + 1
        if size + n > limit - 40 and msgs[-1]:
            msgs.append([])
            size = 0
        msgs[-1].append(o)
        size += n
    if len(msgs) == 1:
        return ["PUSH_REPLY," + ",".join(msgs[0])]
    out = []
    for i, m in enumerate(msgs):
        flag = "1" if i == len(msgs) - 1 else "2"
        out.append("PUSH_REPLY," + ",".join(m + [f"push-continuation {flag}"]))
    return out
