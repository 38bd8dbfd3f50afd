"""A client's TCP connection through an HTTP proxy (CONNECT), as OpenVPN 2.6's proxy.c: the
request's bytes, and a parser for the proxy's answer that a hostile proxy cannot stall or fool.

Sans-I/O: the client (gateway/client.py) moves the bytes on its pump; nothing here blocks.

What OpenVPN 2.6 sends (proxy.c establish_http_proxy_passthru, add_proxy_headers), each line
ending in CRLF and cut to 511 bytes (its `char buf[512]`; we refuse such a line in the config
instead, see `request_lines`):

    CONNECT <remote as written>:<port> HTTP/<VERSION, default 1.0>
    <each CUSTOM-HEADER: "name: content", or "name" alone>
    Host: <remote as written>          (unless a custom header is named Host)
    User-Agent: <AGENT>                (only with AGENT)
    Proxy-Authorization: Basic <base64 of "user:password">   (basic only)
    <empty line>

An IPv6 literal is written as the config has it, without brackets ("CONNECT 2001:db8::1:1194"),
as proxy.c's "%s:%s" does.

The answer: OpenVPN takes `sscanf("%*s %d")` of the first line, goes on only with 200 (407
with basic credentials, or any other status, is "HTTP proxy error", a soft restart: the next
remote), then reads lines until its 2-second read times out, keeping the first non-text byte as
the start of the tunnel's stream. Ours reads the header up to its CRLF CRLF (at most
MAX_HEADER bytes) and hands every byte after it to the tunnel's framing at once: no 2-second
wait, and no tunnel byte taken for a header line.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

MAX_LINE = 511              # proxy.c: openvpn_snprintf into char buf[512]
MAX_HEADER = 8192           # the proxy's status line and headers, CRLF CRLF included
MAX_CUSTOM_HEADERS = 10     # proxy.h MAX_CUSTOM_HTTP_HEADER
VERSIONS = ("1.0", "1.1")


@dataclass(frozen=True)
class HttpProxy:
    """One `http-proxy` with its `http-proxy-option`s (a <connection> block may have its own)."""
    server: str | None = None             # None: only http-proxy-option lines so far
    port: int = 0
    auth: str = "none"                    # "none" | "basic"
    authfile: str | None = None           # basic: the file named on the line (absolute), read in finish()
    line: int | None = None               # the http-proxy line (errors about its credentials point there)
    version: str = "1.0"
    agent: str | None = None
    custom_headers: tuple[tuple[str, str | None], ...] = ()
    # basic: (username, password), resolved at the end of the parse; never printed.
    credentials: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """For `check` and the log: everything but the password."""
        parts = [f"{self.server} {self.port}", f"auth {self.auth}"]
        if self.credentials is not None:
            parts.append(f"user {self.credentials[0]!r}")
        if self.version != "1.0":
            parts.append(f"HTTP/{self.version}")
        if self.agent is not None:
            parts.append(f"agent {self.agent!r}")
        parts += [f"header {n}" for n, _ in self.custom_headers]
        return ", ".join(parts)


def request_lines(p: HttpProxy, host: str, port: int) -> list[str]:
    """The CONNECT request's lines, without their CRLF (see the module's docstring)."""
    out = [f"CONNECT {host}:{port} HTTP/{p.version}"]
    host_sent = False
    for name, content in p.custom_headers:
        if content is not None:
            out.append(f"{name}: {content}")
            host_sent = host_sent or name.lower() == "host"
        else:
            out.append(name)
            host_sent = host_sent or name[:5].lower() == "host:"
    if not host_sent:
        out.append(f"Host: {host}")
    if p.agent is not None:
        out.append(f"User-Agent: {p.agent}")
    if p.auth == "basic":
        assert p.credentials is not None
        user, password = p.credentials
        out.append("Proxy-Authorization: Basic " + base64.b64encode(
            f"{user}:{password}".encode("utf-8", "surrogateescape")).decode("ascii"))
    return out


def request_bytes(p: HttpProxy, host: str, port: int) -> bytes:
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n"
                    for line in request_lines(p, host, port)) + b"\r\n"


def line_problem(p: HttpProxy, host: str, port: int) -> str | None:
    """Why the request cannot be sent as written (a config error), or None. OpenVPN 2.6 would cut a
    line at 511 bytes and send a broken request; a control character would split a line."""
    for i, line in enumerate(request_lines(p, host, port)):
        what = "the Proxy-Authorization line (username and password)" if line.startswith(
            "Proxy-Authorization:") else repr(line[:60] + ("..." if len(line) > 60 else ""))
        if len(line.encode("utf-8", "surrogateescape")) > MAX_LINE:
            return f"{what} is longer than the {MAX_LINE} bytes OpenVPN 2.6 sends of a request line"
        if _CONTROL.search(line):
            return f"{what} holds a control character"
    return None


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(rb"HTTP/(\d)\.(\d{1,3}) (\d{3})(?:[ \t]([^\r\n]*))?")


class ProxyRefused(Exception):
    """The proxy did not open the tunnel: why, for the log (the proxy's words escaped)."""

    def __init__(self, why: str, status: int | None = None) -> None:
        super().__init__(why)
        self.why, self.status = why, status


def shown(b: bytes, most: int = 80) -> str:
    """A hostile proxy's bytes, safe for one log line."""
    s = b[:most].decode("ascii", "backslashreplace")
    s = "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in s)
    return s + ("..." if len(b) > most else "")


class ConnectReply:
    """The proxy's answer to our CONNECT, fed as it arrives. `feed` returns None while the
    header is incomplete, the bytes after its CRLF CRLF (the tunnel's stream, maybe empty) once it
    said 200, and raises ProxyRefused for anything else: another status (at once, without
    waiting for its headers), a first line that is not HTTP's, a header longer than MAX_HEADER,
    a header holding a NUL."""

    def __init__(self, auth: str = "none", limit: int = MAX_HEADER) -> None:
        self.auth = auth
        self.limit = limit
        self.buf = bytearray()
        self.status: int | None = None
        self.status_line = b""
        self.done = False

    def feed(self, data: bytes) -> bytes | None:
        assert not self.done, "the answer was complete"
        start = max(0, len(self.buf) - 3)        # a CRLF CRLF split across reads
        self.buf += data
        buf = self.buf
        if self.status is None:
            head = bytes(buf[:5])
            if not b"HTTP/".startswith(head[:len(head)]):
                raise ProxyRefused(f"not an HTTP answer: {shown(bytes(buf[:40]))!r}")
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > self.limit:
                    raise ProxyRefused(f"answer's first line longer than {self.limit} bytes")
                return None
            line = bytes(buf[:eol])
            m = _STATUS.fullmatch(line)
            if m is None:
                raise ProxyRefused(f"not an HTTP answer: {shown(line)!r}")
            self.status, self.status_line = int(m.group(3)), line
            if self.status != 200:
                raise ProxyRefused(self._refusal(), self.status)
            start = eol                           # the empty header ends at its CRLF too
        end = buf.find(b"\r\n\r\n", start)
        if end < 0 or end + 4 > self.limit:
            if len(buf) > self.limit or end >= 0:
                raise ProxyRefused(f"answer's header longer than {self.limit} bytes")
            if b"\0" in buf:
                raise ProxyRefused("a NUL byte in the answer's header")
            return None
        if b"\0" in buf[:end]:
            raise ProxyRefused("a NUL byte in the answer's header")
        self.done = True
        rest = bytes(buf[end + 4:])
        self.buf = bytearray()
        return rest

    def _refusal(self) -> str:
        said = shown(self.status_line)
        if self.status == 407:
            if self.auth == "basic":
                return f"refused our credentials (basic): {said!r}"
            return f"requires authentication, and no credentials are configured: {said!r}"
        if self.status == 401 and self.auth == "basic":
            return f"answered {said!r}, not 200 (how some proxies, tinyproxy among them, refuse credentials)"
        return f"answered {said!r}, not 200"
