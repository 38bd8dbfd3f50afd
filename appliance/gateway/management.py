"""OpenVPN's management interface, the subset tools use (eduVPN's node daemon, openvpn-monitor,
the Prometheus exporters), on a unix socket, on TCP bound to localhost (password file optional), or
on TCP bound to any other address with a password file (the config refuses it without one).

Off loopback, wrong passwords are also limited across connections (gateway/mgmt_throttle.py), and
one source may hold at most MAX_UNAUTH_PER_SOURCE connections that have not authenticated, so one
host cannot take every slot (and with it evict the slots others are authenticating in).

MAX_CONNS clients at once (OpenVPN 2.6 serves one: manage.c stops polling its listening socket
while a client is connected, so a second one connects into the listen backlog and hears nothing
until the first leaves, and one idle connection keeps every other tool out for good). All slots
taken: a newcomer takes the slot of the connection that has waited longest for the password;
failing that, of the one idle longest (no command for IDLE_EVICT s or more) -- at once where no
password is asked (a unix socket: anyone who may connect is in), and with a password only once
the newcomer has given it (it waits in one spare slot meanwhile), so a stranger never closes an
authenticated tool. Otherwise it is refused, as before. Why: 16 idle connections to a unix socket
(a local process, a tool leaking them) otherwise kept every tool out.

Every management client is a non-blocking port on the server's own pump, with bounded buffers: a
client that never reads is cut off once OUT_LIMIT bytes wait for it, a line longer than OpenVPN
2.6 reads whole is answered as 2.6 answers it but never run, its bytes past LINE_LIMIT counted and
not kept (gateway/mgmt_line.py), and each is served at most WAKE_LINES lines per wake-up of the
pump, so none ever stalls the data path. Replies are those of Debian's
OpenVPN 2.6 (tests/interop compares them line by line); `ops` (gateway/ops.py) answers the
questions about clients and signals.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import socket
import struct
import threading
from collections import deque

from ..host.unlink_at_exit import identity, still_ours
from ..logsetup import c1_escaped
from ..openvpn.catoi import atoi
from ..openvpn.config.lexer import OPTION_PARM_SIZE, LexError, tokenize
from ..openvpn.peernames import from_peer, to_bytes
from ..openvpn.regular_file import KEY_MATERIAL, open_regular_file
from ..transport.recvbuf import recv_bytes
from ..logpace import NoteLimit, times
from .mgmt_help import HELP
from .mgmt_env import EnvBlock, env_filter_command
from .mgmt_line import MAX_LINE, TOO_LONG, Overlong, what_2_6_reads
from .mgmt_throttle import LOG_EVERY, LoginThrottle, source_key

log = logging.getLogger("vpn-appliance")

OUT_LIMIT = 256 * 1024
# Bytes of a line without its end kept in a connection's input buffer; past it the line's bytes
# are counted, not kept (mgmt_line.py: only its length and last 1,023 bytes decide its answer).
LINE_LIMIT = 8 * 1024
# A management client's share of one wake-up of the pump (the tunnel's loop): at most this many
# of its lines, and no further line once this wake-up queued WAKE_OUTPUT bytes for it; the rest
# waits in its input buffer for the next wake-up (Pump.again), and nothing more is read from its
# socket meanwhile. Why: one recv of 64 KB held 16,000 `pid` lines, all answered in one go (0.26 s
# of a stalled loop), and a client reading its replies at once kept its backlog under OUT_LIMIT
# while `log all` after `log all` was built (1 s per wake-up measured with 100,000 of them).
# OpenVPN 2.6 reads its management socket 256 bytes at a time.
WAKE_LINES = 32
WAKE_OUTPUT = 64 * 1024
BLOCK_LIMIT = 1024 * 1024       # a client-auth block's config lines (a client-config-dir file's limit)
MAX_CONNS = 16
# All slots taken: an authenticated connection that has sent no command for this long may be
# closed for a newcomer. A tool sends its commands within milliseconds of each other and a
# person at a prompt within seconds, so 10 s never cuts a conversation; a tool that only
# listens (`state on`, `log on`) loses its slot to a newcomer when every slot is taken (it
# reconnects), which is the price of not being held by idle connections for good.
IDLE_EVICT = 10.0
MAX_UNAUTH_PER_SOURCE = 4       # off loopback: connections without the password yet, per source_key
# TCP: the kernel queues this many connections before it drops SYNs (each then waits for a 1 s
# retransmission). A flood of connections from another host filled a queue of 8 between two
# wake-ups and held a tool's connect for seconds (measured: every 9th connect took 1 s).
LISTEN_BACKLOG = 128
# A connection that has not given the password within this time is closed. OpenVPN 2.6 has no
# such deadline, but it serves one management client at a time; with MAX_CONNS slots, idle
# connections that never authenticate would otherwise hold them all. Tools send the password as
# soon as they read the prompt, and 30 s leaves a person at `telnet` time to type it.
AUTH_DEADLINE = 30.0
# OpenVPN 2.6 reads the password file with fgets() into a 4096-byte buffer: a longer first line
# could never be matched in full, so we refuse it at start rather than cut it silently.
PASSWORD_LIMIT = 4095
LOG_HISTORY = 500
VERSION_LINE = "OpenVPN Version: " + "OpenVPN 2.6.14 vpn-appliance [SSL (OpenSSL)] [EPOLL] [MH/PKTINFO] [AEAD]"
BANNER = ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info"
# The parameters a command needs before anything else is looked at, in both roles, as OpenVPN 2.6
# checks them (man_need in manage.c man_dispatch_command): (n, "at least"). A tool that sends too
# few hears "ERROR: the 'kill' command requires 1 parameter" from either program
# (lab/mgmt_parity.py compares them with Debian's 2.6.14).
NEEDS = {"signal": (1, False), "log": (1, True), "echo": (1, True), "bytecount": (1, False),
         "kill": (1, False), "client-kill": (1, True), "username": (2, False), "password": (2, False),
         "cr-response": (1, False), "remote": (1, True), "proxy": (1, True), "needok": (2, False),
         "needstr": (2, False), "remote-entry-get": (1, True), "test": (1, False), "pkcs11-id-get": (1, False)}
# `test N`'s lines (a debugging command: N lines of text). OpenVPN 2.6 writes all N; here at
# most this many, so one command cannot queue gigabytes past OUT_LIMIT.
TEST_LINES_MAX = 1000
# man_kill's two fields (char p1[128], p2[128]): 127 bytes and the NUL.
KILL_FIELD = 128
# What Debian's OpenVPN 2.6.14 server answers to the commands of a client (or of another build)
# that a server has no use for: the same words here, so a tool written for either role reads
# one answer (before, each was "unknown command"). Nothing is done for them.
SERVER_FIXED = {
    "username": "ERROR: no username is currently needed at this time",
    "password": "ERROR: no password is currently needed at this time",
    "forget-passwords": "SUCCESS: Passwords were forgotten",
    "remote": "ERROR: The 'remote' command is not supported by the current daemon mode",
    "proxy": "ERROR: The 'proxy' command is not supported by the current daemon mode",
    "remote-entry-count": "ERROR: The 'remote-entry-count' command is not supported by the current daemon mode",
    "remote-entry-get": "ERROR: The 'remote-entry-get' command is not supported by the current daemon mode",
    "cr-response": "ERROR: The 'cr-repsonse' command is not supported by the current daemon mode",   # sic, 2.6
    "net": "ERROR: Sorry, this command is currently only implemented on Windows",
}
# Answered alike by both roles of Debian's 2.6.14 when nothing asks for them (no needok/needstr
# prompt is ever made here).
COMMON_FIXED = {
    # no management-external-key/-cert here: 2.6 answers these alike in both roles (man_rsa_sig,
    # man_pk_sig, man_certificate); our client said "not supported by the current daemon mode"
    # (host44, beside Debian's client)
    "rsa-sig": "ERROR: The rsa-sig command is not currently available",
    "pk-sig": "ERROR: The pk-sig command is not currently available",
    "certificate": "ERROR: The certificate command is not currently available",
    "needok": "ERROR: no needok-confirmation is currently needed at this time",
    "needstr": "ERROR: no needstr-string is currently needed at this time",
    "pkcs11-id-count": ">PKCS11ID-COUNT:0",        # Debian's build has PKCS#11, no identity here
}


def common_reply(a: list[str]) -> list[str] | None:
    """The answers both roles give alike that need no state: needok/needstr, `test N`."""
    if a[0] in COMMON_FIXED:
        return [COMMON_FIXED[a[0]]]
    if a[0] == "pkcs11-id-get":             # Debian's build has PKCS#11, with no identity here
        return [f">PKCS11ID-ENTRY:'{atoi(a[1])}'"]
    if a[0] == "test":
        return [f"[{i}] The purpose of this command is to generate large amounts of output."
                for i in range(min(max(atoi(a[1]), 0), TEST_LINES_MAX))]
    return None


def verb_reply(a: list[str], current: int, apply) -> list[str]:
    """`verb [N]` in both roles, as 2.6's man_verb: N read as atoi reads it, 0..15 applied,
    anything else refused (helper host44: the server clamped `verb 99999999999` into range and
    said "changed"; Debian's server refuses it -- one function for both roles now)."""
    if len(a) == 1:
        return [f"SUCCESS: verb={current}"]
    n = atoi(a[1])
    if not 0 <= n <= 15:
        return ["ERROR: verb level is out of range"]
    apply(n)
    return ["SUCCESS: verb level changed"]


def mute_reply(m, a: list[str]) -> list[str]:
    """`mute [N]` in both roles, as 2.6's man_mute: a negative N (as atoi reads it) is refused
    (host44: ours said "changed" to `mute -1` and `mute` said 0 after `mute 5`; Debian's 2.6.14
    refuses the one and says mute=5 to the other). The number is kept on the interface `m` and
    told back; like 2.6's mute it is one value for the process (no log line is muted here)."""
    if len(a) == 1:
        return [f"SUCCESS: mute={m.mute}"]
    n = atoi(a[1])
    if n < 0:
        return ["ERROR: mute level is out of range"]
    m.mute = n
    return ["SUCCESS: mute level changed"]


def not_served(cmd: str) -> str:
    """OpenVPN's answer to a command the daemon's mode lacks."""
    return f"ERROR: The '{cmd}' command is not supported by the current daemon mode"


def needs_reply(a: list[str]) -> list[str] | None:
    """OpenVPN's refusal of a command given too few parameters (NEEDS), or None."""
    need = NEEDS.get(a[0])
    if need is None or len(a) > need[0]:
        return None
    n, at_least = need
    return [f"ERROR: the '{a[0]}' command requires {'at least ' if at_least else ''}{n} parameter{'s' if n > 1 else ''}"]


class MgmtConn:
    """One management client: line in, lines out, flags for real-time notifications."""

    def __init__(self, sock: socket.socket, mgr: "Management", need_password: bool, peer: str = "") -> None:
        self.sock = sock
        self.peer = peer                    # the client's address (TCP), "" on a unix socket
        self.mgr = mgr
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.authed = not need_password
        self.log_on = self.state_on = False
        self.bytecount = 0
        self.env_filter = 0                 # env-filter's level
        self.closed = False
        self.writing = False
        self.tries = 0
        self.queued = 0                     # bytes queued for it in this wake-up (WAKE_OUTPUT)
        self.since = mgr.pump.clock()
        self.active = self.since            # the last command line received (IDLE_EVICT)
        # `client-auth CID KID` reads config lines up to END: (cid, kid, lines, bytes so far).
        self.block: tuple[int, int, list[str], int] | None = None
        self.long: Overlong | None = None    # a line past LINE_LIMIT, counted not kept (mgmt_line.py)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send_lines(self, lines: list[str], reply: bool = False) -> None:
        """Queue lines, whole, while the backlog is within OUT_LIMIT; past it the client is cut
        off (it does not read). One batch may be larger than OUT_LIMIT by itself and is bounded
        by the server's state, not by the client: a reply (`status` of a thousand clients), or a
        notification with a client's environment (a certificate's 8,800 subject attributes are
        as many >CLIENT:ENV lines, 265 KB: cut off for it, every management client lost each
        client's notifications, though it read all it was sent). `reply` is kept for callers."""
        if self.closed:
            return
        data = b"".join(to_bytes(line) + b"\r\n" for line in lines)   # names as their bytes, as OpenVPN
        backlog = len(self.outbuf)
        if backlog > OUT_LIMIT:
            self.mgr.drop(self, "management client does not read its output")
            return
        self.outbuf += data
        self.queued += len(data)
        self.flush()

    def flush(self) -> None:
        try:
            while self.outbuf:
                n = self.sock.send(self.outbuf)
                if n <= 0:
                    break
                del self.outbuf[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.mgr.drop(self, None)
            return
        want = bool(self.outbuf)
        if want != self.writing:
            self.writing = want
            self.mgr.pump.want_write(self, want, self.on_read, self.on_write)

    def on_write(self) -> None:
        self.flush()

    def on_read(self) -> None:
        """Its lines, at most WAKE_LINES of them (and WAKE_OUTPUT bytes of replies) per wake-up;
        the socket is read only once no whole line is left over from before, so the input buffer
        stays within one read and LINE_LIMIT, and an end of input (a tool that sent its commands
        and shut its side) is seen only after all its lines were answered."""
        if self.inbuf.find(b"\n") < 0:
            try:
                data = recv_bytes(self.sock, 65536)     # transport/recvbuf.py: no 64 KiB block per read
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.mgr.drop(self, None)
                return
            self.inbuf += data
        self.queued = 0
        try:
            self._lines()
        finally:
            # The rest at the next wake-up, also when a line's handling raised (our bug, counted
            # by the pump): the lines after it were left unanswered until the client sent more.
            if self.pending:
                self.mgr.pump.again(self, self.on_read)

    def _lines(self) -> None:
        """This wake-up's share of the whole lines in the input buffer (on_read)."""
        for _ in range(WAKE_LINES):
            if self.closed:
                return
            if self.queued >= WAKE_OUTPUT:
                break
            i = self.inbuf.find(b"\n")
            if i < 0:
                break
            raw = bytes(self.inbuf[:i])
            del self.inbuf[:i + 1]
            # As OpenVPN 2.6 reads every line (manage.c command_line_add): its control bytes
            # dropped, a client-auth block's lines too. Kept, a tab in client-deny's reason made
            # the AUTH_FAILED that OpenVPN's client refuses whole, and a CR in a reason that
            # reaches the log forged a line in other management clients' >LOG.
            cleaned = _CONTROL_BYTES.sub(b"", raw)
            long, self.long = self.long, None
            if long is not None or len(cleaned) > (MAX_LINE if self.authed else LINE_LIMIT):
                if long is None:
                    long = Overlong()
                long.add(cleaned)
                self.overlong_line(long)
                continue
            if _HTTP_REQUEST.match(raw) or (self.authed and _HTTP_HOST.match(raw)):
                # A web page's request (a cross-origin POST to 127.0.0.1 with a text/plain body,
                # which browsers send): its body lines would be commands. Closed unread, before
                # a password try is counted; no OpenVPN command looks like this (Redis does the
                # same with `POST` and `Host:`). OpenVPN 2.6 has no such check.
                self.mgr.drop(self, "management: an HTTP request (from a web page?) refused")
                return
            if not self.authed:
                self.password_line(raw)
                continue
            line = from_peer(cleaned).strip(" ")   # `kill NAME` names a client by its bytes
            self.active = self.mgr.pump.clock()
            if self.block is not None:
                self.block_line(line)
                continue
            self.command(line)
        if not self.closed and self.inbuf.find(b"\n") < 0 and (self.long is not None or len(self.inbuf) > LINE_LIMIT):
            if not self.authed:
                self.mgr.drop(self, "management line too long before the password")
                return
            # A line without its end past LINE_LIMIT: its bytes are counted, not kept (mgmt_line.py).
            if self.long is None:
                self.long = Overlong()
            self.long.add(_CONTROL_BYTES.sub(b"", self.inbuf))
            self.inbuf.clear()

    def overlong_line(self, long: Overlong) -> None:
        """A line longer than OpenVPN 2.6 reads whole (mgmt_line.py): answered as 2.6 answers
        what it keeps of it, except that a command is never run from it; the connection goes on
        (before helper mgmt42 it was closed). Not yet authenticated: closed, as before (2.6 reads
        on; a stranger streaming megabytes at the prompt keeps no slot). In a client-auth block:
        the block is refused at its END (a config line cut is no config)."""
        if not self.authed:
            self.mgr.drop(self, "management line too long before the password")
            return
        self.mgr.note_overlong(long.length)
        self.active = self.mgr.pump.clock()
        if self.block is not None:
            cid, kid, lines, _size = self.block
            self.block = (cid, kid, lines, BLOCK_LIMIT + 1)
            return
        got = what_2_6_reads(long.length, long.tail)
        if got is None:
            return
        try:
            words = command_words(from_peer(got).strip(" "))
        except ValueError as e:
            self.send_lines([f"ERROR: {e}"], reply=True)
            return
        if words:
            self.send_lines([TOO_LONG], reply=True)

    @property
    def pending(self) -> bool:
        """A whole line it sent waits for a later wake-up (WAKE_LINES, WAKE_OUTPUT)."""
        return not self.closed and self.inbuf.find(b"\n") >= 0

    def block_line(self, line: str) -> None:
        """A line of a client-auth block: kept up to BLOCK_LIMIT bytes (a ccd file's own
        limit); past it the block is still read to its END, then refused."""
        assert self.block is not None
        cid, kid, lines, size = self.block
        if line != "END":
            size += len(line) + 1
            if size <= BLOCK_LIMIT:
                lines.append(line)
            self.block = (cid, kid, lines, size)
            return
        self.block = None
        if not self.mgr.serves_client_auth:
            self.send_lines([not_served("client-auth")], reply=True)
            return
        ok = size <= BLOCK_LIMIT and self.mgr.ops.management_verdict(cid, kid, True, config=lines)
        self.send_lines(["SUCCESS: client-auth command succeeded" if ok else "ERROR: client-auth command failed"],
                        reply=True)

    def password_line(self, raw: bytes) -> None:
        """The line a client sends at `ENTER PASSWORD:`, read as OpenVPN 2.6 reads it: control
        bytes (CR, tab, NUL...) and DEL dropped, everything else kept -- leading and trailing
        spaces belong to the password -- and compared in constant time with the file's line."""
        throttle = self.mgr.throttle
        if throttle is not None and not throttle.may_try(self.peer):
            # Blocked since the prompt (its other connections missed meanwhile, or the global
            # allowance ran out): the line is not even compared.
            throttle.refused_connection(self.peer)
            self.mgr.drop(self, None)
            return
        if self.mgr.password_matches(clean_password_line(raw)):
            self.authed = True
            self.mgr.authenticated(self)
            self.send_lines(["SUCCESS: password is correct", *self.mgr.welcome()])
            return
        if throttle is not None:
            throttle.failed(self.peer)
        # As OpenVPN 2.6 (checked in the lab): ask again, and hang up after the third miss.
        self.tries += 1
        if self.tries >= 3:
            self.mgr.drop(self, "management: wrong password three times")
        elif throttle is not None and not throttle.may_try(self.peer):
            throttle.refused_connection(self.peer)
            self.mgr.drop(self, None)
        else:
            self.outbuf += b"ENTER PASSWORD:"
            self.flush()

    def command(self, line: str) -> None:
        try:
            words = command_words(line)
        except ValueError as e:
            self.send_lines([f"ERROR: {e}"], reply=True)
            return
        if not words:                       # blank, or only tabs and the like: no command
            return
        self.send_lines(self.mgr.answer(self, words), reply=True)


def _kill_fields(target: str) -> tuple[str, str]:
    """`kill`'s parameter split as 2.6's man_kill splits it: two buf_parse calls on `:` into
    128-byte fields. A field is cut at 127 bytes, and a longer one does not skip to its `:`: its
    129th byte is consumed and the second field starts after it (so a name of 130 bytes or more
    reads as an address and a port; before review44c ours cut it at 127 bytes and killed the
    client of that shorter name, which 2.6 never does)."""
    raw, pos = to_bytes(target) + b"\0", 0
    fields = []
    for _ in range(2):
        out = bytearray()
        while True:                    # buf_parse's loop: read, end the field at NUL/`:`, store
            c = raw[pos] if pos < len(raw) else 0
            pos = min(pos + 1, len(raw))
            if c == 0x3A:
                c = 0
            if len(out) >= KILL_FIELD:
                break
            out.append(c)
            if c == 0:
                break
        fields.append(from_peer(bytes(out[:KILL_FIELD - 1]).split(b"\0", 1)[0]))
    return fields[0], fields[1]


def kill_reply(ops, target: str) -> list[str]:
    """`kill CN` or `kill IP:port`, read as OpenVPN 2.6's man_kill reads it: the parameter's first
    two `:`-separated fields (_kill_fields: 127 bytes each at most); both there: an IPv4
    address as inet_aton reads one (`1.2.3` too; 2.6 would also look a host name up, which we do
    not: a DNS query on the loop) and a port 1-65535 as atoi reads one, told back in their
    canonical form; the first alone: a common name. An IPv6 address is read as 2.6 reads it --
    `2001:db8::1:5` is address `2001` (0.0.7.209) and port `db8` -- so a client connected over
    IPv6 is killed by `client-kill CID` (or its common name), as with 2.6 (before helper
    mgmt42, `kill 2001:db8::1:5` killed it here and nowhere else)."""
    p1, p2 = _kill_fields(target)
    if p1 and p2:
        try:
            if p1 != p1.strip() or " " in p1:     # getaddrinfo reads the address exactly (inet_aton would not)
                raise ValueError(p1)
            packed = socket.inet_aton(p1)
        except (OSError, ValueError):
            return [f"ERROR: error parsing IP address: {p1}"]
        port = atoi(p2)
        if not 0 < port < 65536:
            return [f"ERROR: port number is out of range: {p2}"]
        where = f"{socket.inet_ntoa(packed)}:{port}"
        n = ops.kill_addr(socket.inet_ntoa(packed), port)
        return [f"SUCCESS: {n} client(s) at address {where} killed"] if n else [f"ERROR: client at address {where} not found"]
    if p1:
        n = ops.kill_cn(p1)
        return [f"SUCCESS: common name '{p1}' found, {n} client(s) killed"] if n else [f"ERROR: common name '{p1}' not found"]
    return ["ERROR: kill parse"]


def parse_id(text: str) -> int | None:
    """A CID or KID as OpenVPN 2.6 reads one (parse_cid/parse_uint): decimal digits."""
    return int(text) if text.isdigit() and len(text) < 20 else None


def command_words(line: str) -> list[str]:
    """A command line's words as OpenVPN 2.6 reads them (parse_line, the config syntax): "..."
    and '...' quote, `#`/`;` start a comment, at most MAX_PARMS words. Why not split on blanks:
    the client's certificate chooses its common name, and one with a blank or a quote could not
    be named (`kill "evil guy"`), while OpenVPN's answer kills it. ValueError: OpenVPN's words
    for a line it refuses (shown after "ERROR: ")."""
    try:
        return tokenize(line, drop_extra=True)
    except LexError as e:
        if e.kind == "unterminated-double":
            raise ValueError('Options error: No closing quotation (") in TCP:0') from None
        if e.kind == "unterminated-single":
            raise ValueError("Options error: No closing single quotation (') in TCP:0") from None
        if e.kind == "too-long":
            raise ValueError(f"Options error: Parameter at TCP:0 is too long ({OPTION_PARM_SIZE} chars max): "
                             f"{e.token[:OPTION_PARM_SIZE - 1]}") from None
        if e.kind == "bad-backslash":
            raise ValueError(_BAD_BACKSLASH) from None
        if e.kind == "residual":
            raise ValueError("Options error: Residual parse state (2) in TCP:0") from None
        raise ValueError(f"Options error: {e}") from None


# OpenVPN 2.6's words (options.c parse_line) for a backslash before anything but \, " or a blank.
_BAD_BACKSLASH = ("Options warning: Bad backslash ('\\') usage in TCP:0: remember that backslashes are treated "
                  "as shell-escapes and if you need to pass backslash characters as part of a Windows filename, "
                  'you should use double backslashes such as "c:\\\\openvpn\\\\static.key"')

_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
# An HTTP request line (`POST / HTTP/1.1`), what a browser sends first, and its Host header (as a
# command only: a password may begin with `host:`).
_HTTP_REQUEST = re.compile(rb"[A-Z]+ \S+ HTTP/\d")
_HTTP_HOST = re.compile(rb"[Hh][Oo][Ss][Tt]:")


def clean_password_line(raw: bytes) -> bytes:
    """`raw` (one line without its LF) with the bytes OpenVPN's management reader drops removed:
    those below 0x20 and DEL. Bytes of 0x80 and above (UTF-8) stay, as there."""
    return _CONTROL_BYTES.sub(b"", raw)


def read_password_file(path: str) -> bytes:
    """The management password: the file's first line as bytes, without its line end (CR and LF
    only: spaces are part of it, as OpenVPN 2.6 reads it). Raises OSError if there is none
    (OpenVPN: "Error reading password from Management authfile") or if it is longer than
    OpenVPN would read. A pipe or device there is refused (regular_file.py): read at start, a
    FIFO's open() waited for a writer and the server never started."""
    with os.fdopen(open_regular_file(path, KEY_MATERIAL), "rb") as f:
        first = f.readline(PASSWORD_LIMIT + 2)
    password = first.rstrip(b"\r\n")
    if not password:
        # An empty password would let any local process in with an empty line.
        raise OSError(f"no password on the first line of {path}")
    if len(password) > PASSWORD_LIMIT:
        raise OSError(f"the password on the first line of {path} is longer than {PASSWORD_LIMIT} bytes")
    return password


class _LogForward(logging.Handler):
    """Log records to the management clients that asked (`log on`), as >LOG:time,flags,text."""

    FLAGS = {logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "N", logging.CRITICAL: "F"}

    def __init__(self, mgr: "Management", keep: int = LOG_HISTORY) -> None:
        super().__init__(logging.DEBUG)
        self.mgr = mgr
        self.busy = False
        self.history: deque = deque(maxlen=keep)   # for `log all` / `log N`
        # Records of other threads (the client's host DNS worker logs from its own): their lines
        # wait here for the loop, woken through `wake`, to send them (Management._on_foreign_log).
        # Sent from the worker, they raced the loop's own writes to the same sockets (the same
        # bytes sent twice, a line cut in two) and changed the pump's registrations from outside.
        self.loop_thread = threading.get_ident()
        self.foreign: deque = deque(maxlen=LOG_HISTORY)
        self.wake: socket.socket | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.busy:                       # a log line written while forwarding one: not again
            return
        try:
            line = c1_escaped(f"{int(record.created)},{self.FLAGS.get(record.levelno, 'I')},"
                              f"{record.getMessage()}".replace("\n", " "))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            return
        if threading.get_ident() != self.loop_thread:
            self.history.append(line)
            self.foreign.append(line)
            try:
                if self.wake is not None:
                    self.wake.send(b"\0")
            except OSError:                 # full (the loop is woken already) or closed
                pass
            return
        self.busy = True
        try:
            self.history.append(line)
            self.mgr.log_line(line)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            pass
        finally:
            self.busy = False


class Management:
    """The listening socket and its clients, watched by `pump`; `ops` knows the server."""

    serves_client_auth = True           # client-auth & co. (a client's interface: not served)

    def __init__(self, spec: tuple, pump, ops, drops_root: bool = False, log_cache: int | None = None,
                 peer_ids: tuple[int | None, int | None] = (None, None)) -> None:
        """`drops_root`: the process gives up root after start-up (`user`); a unix socket bound
        now then gets a helper kept from before the drop that removes it at exit. `log_cache`:
        management-log-cache, the lines kept for `log all` (LOG_HISTORY without it). `peer_ids`:
        management-client-user's uid and -group's gid, which a unix-socket peer must have."""
        self.spec = spec
        self.peer_ids = peer_ids
        self.pump = pump
        self.ops = ops
        self.conns: list[MgmtConn] = []
        self.password: bytes | None = None
        self.throttle: LoginThrottle | None = None          # TCP off loopback only
        self._evicted = 0                                   # since the last log line of it
        self._evicted_logged: float | None = None
        self._refused = 0                                   # newcomers refused for want of a slot, since its line
        self._refused_logged: float | None = None
        self._dropped = 0                                   # connections closed for a reason, since its last line
        self._dropped_logged: float | None = None
        self.overlong_lines = 0                             # lines past 2.6's 1,023 bytes, since start
        self._overlong_said = NoteLimit(LOG_EVERY)
        self._unlinker = None
        self._ident: tuple[int, int, int] | None = None     # our unix socket's identity()
        self.hold_flag = False                              # `hold on|off` (a server never holds here)
        self.mute = 0                                       # `mute N`, told back by `mute`
        host, port, pwfile = spec
        if port == "unix":
            try:
                os.unlink(host)
            except FileNotFoundError:
                pass
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Mode 0660 as it is made (the umask, as OpenVPN's socket_bind_unix): a chmod of the
            # path afterwards would follow a symlink put there meanwhile, as root.
            old_mask = os.umask(0o117)
            try:
                self.sock.bind(host)
            finally:
                os.umask(old_mask)
            self._ident = identity(os.lstat(host))
            if drops_root and os.geteuid() == 0:
                # After the drop the socket's directory (often root's, /run/openvpn) may not let
                # the process remove it: OpenVPN 2.6 leaves it behind; host/unlink_at_exit.py.
                from ..host.unlink_at_exit import UnlinkAtExit
                self._unlinker = UnlinkAtExit(host)
                log.info("management socket %s: removed at exit by a helper kept as root (pid %d)", host,
                         self._unlinker.pid)
        else:
            if pwfile:
                self.password = read_password_file(pwfile)
            if not ipaddress.ip_address(host).is_loopback:
                self.throttle = LoginThrottle(pump.clock, log.warning)
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
        self.sock.listen(8 if port == "unix" else LISTEN_BACKLOG)
        self.sock.setblocking(False)
        pump.watch(self, self._accept)
        self._log = _LogForward(self, log_cache or LOG_HISTORY)
        self._woken, self._log.wake = socket.socketpair()
        self._woken.setblocking(False)
        self._log.wake.setblocking(False)
        pump.watch(self._woken, self._on_foreign_log)
        log.addHandler(self._log)
        log.info("management interface on %s", host if port == "unix" else f"{host}:{port}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def _accept(self) -> None:
        for _ in range(8):
            try:
                s, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            addr = peer[0] if isinstance(peer, tuple) else ""
            if self.spec[1] == "unix" and not self._peer_allowed(s):
                s.close()
                continue
            if self.throttle is not None and not self._admit(addr):
                s.close()
                continue
            if len(self.conns) >= MAX_CONNS and not self._make_room(addr):
                if self.throttle is not None:
                    self.throttle.refused_connection(addr, "all slots taken")
                else:
                    self._note_refused(addr)
                s.close()
                continue
            s.setblocking(False)
            c = MgmtConn(s, self, self.password is not None, addr)
            self.conns.append(c)
            self.pump.watch(c, c.on_read, c.on_write)
            if self.password is not None:
                self.pump.timers.arm(("mgmt-auth", id(c)), c.since + AUTH_DEADLINE, lambda c=c: self._auth_expired(c))
                c.outbuf += b"ENTER PASSWORD:"         # no line end, as OpenVPN (tools wait for exactly this)
                c.flush()
            else:
                c.send_lines(self.welcome())

    def _peer_allowed(self, s: socket.socket) -> bool:
        """management-client-user/-group: the unix-socket peer's uid and primary gid, as the
        kernel gives them (SO_PEERCRED), must be those; as OpenVPN 2.6 (manage.c
        man_verify_unix_peer_uid_gid), root is no exception. A refusal is logged at a limited rate."""
        uid, gid = self.peer_ids
        if uid is None and gid is None:
            return True
        try:
            _pid, puid, pgid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                struct.calcsize("3i")))
        except OSError:
            self._closed_for("management: unix socket peer without credentials refused")
            return False
        if uid is not None and puid != uid:
            why = f"UID of socket peer ({puid}) doesn't match required value ({uid}) as given by --management-client-user"
        elif gid is not None and pgid != gid:
            why = f"GID of socket peer ({pgid}) doesn't match required value ({gid}) as given by --management-client-group"
        else:
            return True
        self._closed_for("management: unix domain socket client connection rejected -- " + why)
        return False

    def set_peer_ids(self, peer_ids: tuple[int | None, int | None]) -> None:
        """A reload's management-client-user/-group: from now on, and for the connections open
        now (one the new values refuse is closed: an operator narrowing access expects it)."""
        if peer_ids == self.peer_ids:
            return
        self.peer_ids = peer_ids
        if self.spec[1] == "unix":
            for c in list(self.conns):
                if not self._peer_allowed(c.sock):
                    self.drop(c, None)

    def _admit(self, addr: str) -> bool:
        """Off loopback: a source that guessed too often is closed at once, before the prompt
        (mgmt_throttle.py), and so is one that already holds MAX_UNAUTH_PER_SOURCE connections
        without the password: alone it could otherwise fill every slot and, through the eviction
        of the oldest waiting one, close a tool's connection before the tool could authenticate."""
        assert self.throttle is not None
        if not self.throttle.may_try(addr):
            self.throttle.refused_connection(addr)
            return False
        key = source_key(addr)
        if sum(1 for c in self.conns if not c.authed and source_key(c.peer) == key) >= MAX_UNAUTH_PER_SOURCE:
            self.throttle.refused_connection(addr, f"{MAX_UNAUTH_PER_SOURCE} connections without the password already")
            return False
        return True

    def welcome(self) -> list[str]:
        """What a client reads once it is in (OpenVPN's man_welcome): the banner, and in a
        subclass whatever the process waits for (the client's >HOLD line)."""
        return [BANNER]

    def password_matches(self, line: bytes) -> bool:
        """Constant time in the password's content (hmac.compare_digest), so the time a reply
        takes tells a local prober nothing about how much of its guess was right."""
        return self.password is not None and hmac.compare_digest(line, self.password)

    def authenticated(self, c: MgmtConn) -> None:
        self.pump.timers.cancel(("mgmt-auth", id(c)))
        if self.throttle is not None:
            self.throttle.succeeded(c.peer)
        if len(self.conns) > MAX_CONNS and not self._evict_idlest(c.peer, but=c):
            # In the spare slot, and every other connection was in use: it goes, as a refused one.
            if self.throttle is None:
                self._note_refused(c.peer)
            self.drop(c, None)

    def _auth_expired(self, c: MgmtConn) -> None:
        if not c.closed and not c.authed:
            self.drop(c, f"management: no password within {AUTH_DEADLINE:g} s")

    def _make_room(self, newcomer: str) -> bool:
        """All slots taken: True when `newcomer` may have one (see the module doc)."""
        if self._evict_oldest_unauthenticated(newcomer):
            return True
        if self.password is None:
            return self._evict_idlest(newcomer)
        # With a password: the one spare slot, while every other connection is authenticated;
        # the idlest of those is closed only once the newcomer has given the password.
        return len(self.conns) == MAX_CONNS and all(c.authed for c in self.conns)

    def _evict_idlest(self, newcomer: str, but: MgmtConn | None = None) -> bool:
        """Close the authenticated connection that has sent no command for longest, if that is
        IDLE_EVICT s or more; False when all were used more recently."""
        now = self.pump.clock()
        idle = [c for c in self.conns if c.authed and c is not but and now - c.active >= IDLE_EVICT]
        if not idle:
            return False
        self.drop(min(idle, key=lambda c: c.active), None)
        self._note_evicted(newcomer, f"idle for {IDLE_EVICT:g} s or more")
        return True

    def _note_evicted(self, newcomer: str, what: str) -> None:
        """Logged at most every LOG_EVERY s, with a count: a connection flood is no log flood."""
        self._evicted += 1
        now = self.pump.clock()
        if self._evicted_logged is None or now - self._evicted_logged >= LOG_EVERY:
            log.warning("management: all slots taken: %d connection(s) closed to make room (last one %s, "
                        "for one from %s)", self._evicted, what, newcomer or "the socket")
            self._evicted, self._evicted_logged = 0, now

    def _note_refused(self, newcomer: str) -> None:
        """A newcomer refused for want of a slot (where no throttle logs it): counted, logged at
        most every LOG_EVERY s."""
        self._refused += 1
        now = self.pump.clock()
        if self._refused_logged is None or now - self._refused_logged >= LOG_EVERY:
            log.warning("management: all %d slots in use: %d connection(s) refused (last from %s)", MAX_CONNS,
                        self._refused, newcomer or "the socket")
            self._refused, self._refused_logged = 0, now

    def _evict_oldest_unauthenticated(self, newcomer: str) -> bool:
        """All slots taken: close the connection that has waited longest without giving the
        password, so connections that never authenticate cannot keep a tool out even within
        AUTH_DEADLINE (tools authenticate at once, so the oldest waiting one is the idle one).
        Off loopback, a waiting connection from a source that gave the right password within
        TRUSTED_FOR (the operator's monitor) is closed only to make room for another such one:
        connections from many sources, each below MAX_UNAUTH_PER_SOURCE, otherwise evicted the
        monitor's connection in turn before it could answer its prompt. `newcomer`: the address
        that wants the slot; False: none may be taken for it."""
        waiting = [c for c in self.conns if not c.authed]
        if self.throttle is not None:
            t = self.throttle
            strangers = [c for c in waiting if not t.is_trusted(c.peer)]
            if strangers or not t.is_trusted(newcomer):
                waiting = strangers
        if not waiting:
            return False
        self.drop(min(waiting, key=lambda c: c.since), None)
        self._note_evicted(newcomer, "waiting longest for the password")
        return True

    def drop(self, c: MgmtConn, why: str | None) -> None:
        if c.closed:
            return
        c.closed = True
        self.pump.timers.cancel(("mgmt-auth", id(c)))
        if why:
            self._closed_for(why)
        self.pump.unwatch(c)
        try:
            c.sock.close()
        except OSError:
            pass
        if c in self.conns:
            self.conns.remove(c)

    def note_overlong(self, length: int) -> None:
        """A command line longer than OpenVPN 2.6 reads (mgmt_line.py): counted, and said at a
        limited rate (a tool sending 1 MiB lines in a loop is no log flood)."""
        self.overlong_lines += 1
        held = self._overlong_said.due(self.pump.clock())
        if held is not None:
            log.warning("management: a command line of %d bytes, over the %d OpenVPN 2.6 reads whole: not run "
                        "(%d such lines since start)%s", length, MAX_LINE, self.overlong_lines, times(held))

    def _closed_for(self, why: str) -> None:
        """A connection closed for a reason: at most one line every LOG_EVERY s, with a count of
        the others (a local or LAN flood of connections that never read, send over-long lines or
        have the wrong uid is no log flood)."""
        self._dropped += 1
        now = self.pump.clock()
        if self._dropped_logged is None or now - self._dropped_logged >= LOG_EVERY:
            more = self._dropped - 1
            log.warning("%s: closed%s", why,
                        f" ({more} more management connection(s) closed since the last such line)" if more else "")
            self._dropped, self._dropped_logged = 0, now

    def _on_foreign_log(self) -> None:
        """The lines other threads logged (_LogForward.foreign), sent from the loop."""
        try:
            for _ in range(16):
                if not self._woken.recv(4096):
                    break
        except OSError:
            pass
        q = self._log.foreign
        while q:
            self.log_line(q.popleft())

    def close(self) -> None:
        log.removeHandler(self._log)
        self.pump.unwatch(self._woken)
        self._woken.close()
        if self._log.wake is not None:
            self._log.wake.close()
        for c in list(self.conns):
            self.drop(c, None)
        self.pump.unwatch(self)
        self.sock.close()
        if self.spec[1] == "unix":
            try:
                if still_ours(self.spec[0], self._ident):  # not another server's, bound there since
                    os.unlink(self.spec[0])
            except FileNotFoundError:
                pass
            except OSError as e:
                if self._unlinker is None:
                    log.warning("management socket %s not removed: %s", self.spec[0], e.strerror or e)
            if self._unlinker is not None and not self._unlinker.release():
                log.warning("management socket %s: its helper (pid %d) did not end", self.spec[0],
                            self._unlinker.pid)

    # ---------------------------------------------------------------- notifications
    def notify(self, lines: list[str], flag: str | None = None) -> None:
        for c in list(self.conns):
            if c.authed and (flag is None or getattr(c, flag)):
                c.send_lines(lines)

    def notify_env(self, block: EnvBlock) -> None:
        """A notification with an environment (mgmt_env.py), each connection at its env-filter
        level."""
        by_level: dict[int, list[str]] = {}
        for c in list(self.conns):
            if c.authed:
                lines = by_level.get(c.env_filter)
                if lines is None:
                    lines = by_level[c.env_filter] = block.lines(c.env_filter)
                c.send_lines(lines)

    def log_line(self, line: str) -> None:
        if any(c.log_on for c in self.conns):
            self.notify([">LOG:" + line], "log_on")

    def state_lines(self) -> list[str]:
        """The state history, oldest first (`state all`)."""
        return self.ops.state_history()

    def history(self, c: MgmtConn, kind: str, a: list[str]) -> list[str]:
        """`state`, `log` and `echo` [on|off] [N|all], as manage.c's man_history reads them: each
        of the first two parameters in turn, on/off for the real-time flag, `all` or N > 0 for
        the last entries (oldest first) and END, anything else refused with OpenVPN's words;
        `state` alone is `state 1`."""
        out: list[str] = []
        for parm in (a[1:3] if len(a) > 1 else ["1"]):
            if parm in ("on", "off"):
                setattr(c, f"{kind}_on", parm == "on")
                out.append(f"SUCCESS: real-time {kind} notification set to {parm.upper()}")
                continue
            n = 0 if parm == "all" else atoi(parm)
            if parm != "all" and n <= 0:
                out.append(f"ERROR: {kind} parameter must be 'on' or 'off' or some number n or 'all'")
                continue
            if kind == "state":
                lines = self.state_lines()
            elif kind == "log":
                lines = list(self._log.history)
            else:
                lines = []                          # no echo directives here: the buffer stays empty
            out += (lines[-n:] if n else lines) + ["END"]
        return out

    # ---------------------------------------------------------------- commands
    def _client_auth(self, c: MgmtConn, cmd: str, a: list[str]) -> list[str]:
        """management-client-auth's verdicts, as OpenVPN 2.6 answers them (manage.c
        man_client_auth, man_client_deny)."""
        if len(a) < {"client-deny": 4, "client-pending-auth": 5}.get(cmd, 3):
            return [f"ERROR: the '{cmd}' command requires "
                    + {"client-deny": "at least 3", "client-pending-auth": "4"}.get(cmd, "2") + " parameters"]
        cid, kid = parse_id(a[1]), parse_id(a[2])
        if cid is None:
            return ["ERROR: cannot parse CID"]
        if kid is None:
            return ["ERROR: cannot parse KID"]
        # A client's interface: not served, as Debian's 2.6.14 client answers (client-auth's
        # block read to its END first, as there: answered at once, its config lines were read as
        # commands). A server without management-client-auth: no login waits, each is answered
        # as for an unknown login, as Debian's 2.6.14 server does.
        if not self.serves_client_auth and cmd != "client-auth":
            return [not_served("client-auth" if cmd == "client-auth-nt" else cmd)]
        if cmd == "client-pending-auth":
            timeout = parse_id(a[4])
            if timeout is None:
                return ["ERROR: cannot parse TIMEOUT"]
            ok = self.ops.management_pending(cid, kid, a[3], timeout)
            return ["SUCCESS: client-pending-auth command succeeded" if ok else
                    "ERROR: client-pending-auth command failed. Extra parameter might be too long"]
        if cmd == "client-auth":
            c.block = (cid, kid, [], 0)          # the answer comes at END
            return []
        if cmd == "client-auth-nt":
            ok = self.ops.management_verdict(cid, kid, True)
            return ["SUCCESS: client-auth command succeeded" if ok else "ERROR: client-auth command failed"]
        client_reason = a[4] if len(a) > 4 else ""
        ok = self.ops.management_verdict(cid, kid, False, why=a[3], client_reason=client_reason)
        return ["SUCCESS: client-deny command succeeded" if ok else "ERROR: client-deny command failed"]

    def answer(self, c: MgmtConn, a: list[str]) -> list[str]:    # noqa: C901 - one branch per command
        cmd = a[0]                      # as OpenVPN: `PID` is no command
        ops = self.ops
        refused = needs_reply(a)
        if refused is not None:
            return refused
        if cmd in ("quit", "exit"):
            self.drop(c, None)
            return []
        if cmd == "help":
            return HELP
        if cmd == "version":
            # `version N` is a tool telling its own version: OpenVPN 2.6 answers nothing.
            return [] if len(a) > 1 else [VERSION_LINE, "Management Version: 5", "END"]
        if cmd == "pid":
            return [f"SUCCESS: pid={os.getpid()}"]
        if cmd == "load-stats":
            n, bin_, bout = ops.load_stats()
            return [f"SUCCESS: nclients={n},bytesin={bin_},bytesout={bout}"]
        if cmd == "status":
            # As OpenVPN: the config's format without a number (a word reads as 0, as atoi's).
            v = (atoi(a[1]) if len(a) > 1 else 0) or ops.status_version
            if v not in (1, 2, 3):
                return ["ERROR: bad status format version number"]
            return ops.status_lines(v)
        if cmd in ("state", "log", "echo"):
            return self.history(c, cmd, a)
        if cmd == "bytecount":
            c.bytecount = max(atoi(a[1]), 0)    # as OpenVPN: a word or a negative number is 0 (off)
            ops.bytecount_changed()
            return ["SUCCESS: bytecount interval changed"]
        if cmd == "env-filter":
            return env_filter_command(c, a)
        if cmd == "auth-retry":                 # a server has none to change: as 2.6 answers it
            if len(a) == 1:
                return ["SUCCESS: auth-retry=none"]
            if a[1] not in ("none", "nointeract", "interact"):
                return ["--auth-retry method must be 'interact', 'nointeract', or 'none'",
                        "ERROR: bad auth-retry parameter"]
            return ["SUCCESS: auth-retry parameter changed"]
        common = common_reply(a)
        if common is not None:
            return common
        if cmd in SERVER_FIXED:
            return [SERVER_FIXED[cmd]]
        if cmd == "hold":
            # the flag is kept, as 2.6's man_hold keeps it (a server never waits on it: 2.6's
            # server holds only at its start, before this interface is up); it said hold=0 after
            # `hold on` (host44, beside Debian's server)
            if len(a) > 1 and a[1] == "release":
                return ["SUCCESS: hold release succeeded"]
            if len(a) > 1 and a[1] in ("on", "off"):
                self.hold_flag = a[1] == "on"
                return [f"SUCCESS: hold flag set to {a[1].upper()}"]
            if len(a) > 1:
                return ["ERROR: bad hold command parameter"]
            return [f"SUCCESS: hold={int(self.hold_flag)}"]
        if cmd == "nclients":           # not in 2.6's help, served by its server (host44)
            return [f"SUCCESS: nclients={ops.load_stats()[0]}"]
        if cmd == "verb":
            return verb_reply(a, ops.verb, ops.set_verb)
        if cmd == "mute":
            return mute_reply(self, a)
        if cmd == "signal":
            name = a[1]
            if name not in ("SIGHUP", "SIGTERM", "SIGUSR1", "SIGUSR2"):
                return [f"ERROR: signal '{name}' is not a known signal type"]
            ops.management_signal(name)
            return [f"SUCCESS: signal {name} thrown"]
        if cmd == "kill":
            return kill_reply(ops, a[1])
        if cmd in ("client-auth", "client-auth-nt", "client-deny", "client-pending-auth"):
            return self._client_auth(c, cmd, a)
        if cmd == "client-kill":
            cid = parse_id(a[1])
            if cid is None:
                return ["ERROR: cannot parse CID"]
            if ops.client_kill(cid, " ".join(a[2:]) or "RESTART"):
                return ["SUCCESS: client-kill command succeeded"]
            return ["ERROR: client-kill command failed"]
        return ["ERROR: unknown command, enter 'help' for more options"]
