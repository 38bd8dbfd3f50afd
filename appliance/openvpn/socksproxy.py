"""A client's TCP connection through a SOCKS5 proxy (`socks-proxy`), as OpenVPN 2.6's socks.c:
the bytes to send and a parser for the proxy's answers that a hostile proxy cannot stall or fool.

Why: in networks that block VPN traffic, users point OpenVPN at a local SOCKS5 listener (an SSH
`-D` tunnel, shadowsocks' ss-local, obfs4proxy, Tor) with `socks-proxy 127.0.0.1 1080` and
`proto tcp-client`. Sans-I/O: the client (gateway/client.py) moves the bytes on its pump.

The exchange (RFC 1928, RFC 1929), as socks_handshake and establish_socks_proxy_passthru send it:
  -> 05 01 00              (one method: none), or 05 01 02 (username/password) with credentials
  <- 05 MM                 MM must be the method offered
  -> 01 ULEN USER PLEN PASS  (only for method 02)
  <- VV 00                 (status 0: accepted)
  -> 05 01 00 03 LEN HOST PORT   CONNECT to the remote as written, as a domain name
  <- 05 00 00 ATYP ADDR PORT     REP 0: connected; the bound address is read and dropped
Every byte after the last answer is the server's stream. UDP (UDP ASSOCIATE) is not done here:
such a profile is refused at its line (config/d_proxy.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .httpproxy import ProxyRefused
from .peernames import to_bytes

MAX_FIELD = 255             # RFC 1928/1929: one length byte


@dataclass(frozen=True)
class SocksProxy:
    """One `socks-proxy SERVER [PORT] [AUTHFILE]`."""
    server: str
    port: int = 1080
    authfile: str | None = None           # the credentials file named on the line (absolute)
    line: int | None = None
    # (username, password) read from authfile at the end of the parse; never printed.
    credentials: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """For `check` and the log: everything but the password."""
        who = f", user {self.credentials[0]!r}" if self.credentials is not None else ""
        return f"SOCKS5 {self.server} {self.port}{who}"


def connect_request(host: str, port: int) -> bytes:
    """CONNECT to `host` (as written: a name or an address literal, sent as a domain name, as
    OpenVPN does) and `port`. ValueError for a host a SOCKS5 request cannot carry."""
    name = to_bytes(host)
    if not 0 < len(name) <= MAX_FIELD:
        raise ValueError(f"a SOCKS5 request carries a host name of 1-{MAX_FIELD} bytes")
    return bytes((5, 1, 0, 3, len(name))) + name + port.to_bytes(2, "big")


class SocksHandshake:
    """The client's side of the exchange. `first()` is what to send at once; `feed(data)` takes
    the proxy's bytes as they come and returns the bytes after the last answer (the server's
    stream, possibly empty) once connected, else None; `out` collects what to send next
    (the caller drains it). ProxyRefused says why the proxy or its answer is unusable."""

    def __init__(self, proxy: SocksProxy, host: str, port: int) -> None:
        self._creds = proxy.credentials
        self._request = connect_request(host, port)
        self._method = 2 if self._creds is not None else 0
        self._state = "method"
        self._buf = bytearray()
        self.out = bytearray()

    def first(self) -> bytes:
        return bytes((5, 1, self._method))

    def feed(self, data: bytes) -> bytes | None:
        if self._state == "done":
            return bytes(data)
        self._buf += data
        while True:
            if self._state == "method":
                if len(self._buf) < 2:
                    return None
                ver, method = self._buf[0], self._buf[1]
                del self._buf[:2]
                if ver != 5:
                    raise ProxyRefused("the SOCKS proxy returned bad status (not SOCKS5)")
                if method != self._method:
                    raise ProxyRefused("the SOCKS proxy returned an unexpected authentication method "
                                       f"({method}; we offered {self._method})")
                if self._method == 2:
                    # As the file holds them (a Latin-1 name too, as OpenVPN sends its bytes):
                    # its bytes were read with surrogateescape, which a plain encode() refuses.
                    user, password = (to_bytes(s) for s in self._creds)     # type: ignore[union-attr]
                    self.out += bytes((1, len(user))) + user + bytes((len(password),)) + password
                    self._state = "auth"
                else:
                    self.out += self._request
                    self._state = "reply"
            elif self._state == "auth":
                if len(self._buf) < 2:
                    return None
                status = self._buf[1]
                del self._buf[:2]
                if status != 0:
                    raise ProxyRefused("the SOCKS proxy refused the username and password")
                self.out += self._request
                self._state = "reply"
            else:                                   # "reply": the answer to CONNECT
                if len(self._buf) < 5:
                    return None
                ver, rep, atyp = self._buf[0], self._buf[1], self._buf[3]
                alen = {1: 4, 4: 16}.get(atyp)
                if alen is None:
                    if atyp != 3:
                        raise ProxyRefused("the SOCKS proxy returned a bad address type")
                    alen = self._buf[4] + 1
                need = 4 + alen + 2
                if len(self._buf) < need:
                    return None
                if ver != 5 or rep != 0:
                    raise ProxyRefused(f"the SOCKS proxy refused the connection (reply {rep}: {_REPLIES.get(rep, '?')})")
                rest = bytes(self._buf[need:])
                self._buf.clear()
                self._state = "done"
                return rest


# RFC 1928 section 6, for the log.
_REPLIES = {1: "general failure", 2: "not allowed by ruleset", 3: "network unreachable", 4: "host unreachable",
            5: "connection refused", 6: "TTL expired", 7: "command not supported", 8: "address type not supported"}
