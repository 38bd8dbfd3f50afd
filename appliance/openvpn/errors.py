"""Error types of the protocol engine.

Why three: a decoder that sees hostile bytes raises BadPacket (counted and dropped on UDP,
fatal on a TCP stream); a peer that speaks valid packets but breaks the protocol raises
RemoteProtocolError; our own code misusing the engine raises LocalProtocolError. Code that
catches peer errors must never swallow our own bugs.
"""


class BadPacket(Exception):
    """Bytes from the network that do not decode or do not authenticate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteProtocolError(Exception):
    """The peer broke the protocol (wrong session id, unexpected message, auth failure)."""


class PushError(RemoteProtocolError):
    """The server's push cannot be used (a cipher or compression we lack, a malformed PUSH_REPLY):
    the client restarts, as OpenVPN 2.6 on "process-push-msg-failed"; not a TLS error, so
    `tls-exit` does not end the run for it (OpenVPN's restarts too)."""


class VerifyRefused(RemoteProtocolError):
    """tls-verify refused the peer's chain: a TLS failure, whose `notice` (TLS bytes, maybe empty)
    goes to the peer before the session ends, so that it learns at once (tls.REFUSAL_NOTICE)."""

    def __init__(self, reason: str, notice: bytes = b"") -> None:
        super().__init__(reason)
        self.notice = notice


class LocalProtocolError(Exception):
    """Our own code called the engine in a way it does not allow."""


class PacketIdExhausted(Exception):
    """A send counter has no unused id left; the key (or session) must end rather than reuse one."""


class ClientRefused(RemoteProtocolError):
    """Server side: an authenticated client is not admitted (ccd-exclusive, max-clients, changed
    identity on renegotiation). The session answers AUTH_FAILED and closes without restart;
    `temporary` (server full) makes it `AUTH_FAILED,TEMP`, which tells a 2.6 client to retry."""

    def __init__(self, reason: str, temporary: bool = False) -> None:
        super().__init__(reason)
        self.temporary = temporary


class ConfigError(Exception):
    """A configuration problem, reported as `file:line: directive: why`. A `line` that is a
    Loc names its own file (a line of a file read with `config FILE`), whatever `path` says."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 directive: str | None = None) -> None:
        path = getattr(line, "path", path)
        self.path = path
        self.line = line
        self.directive = directive
        self.message = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        what = f"{directive}: " if directive else ""
        super().__init__(f"{where}{what}{message}")


def located(opts, e: ConfigError) -> ConfigError:
    """`e` placed on the line of the directive it names (its own place if it has one): the one
    place where an error found after parsing -- on a value the parser took (a key of the wrong
    kind, a port in use) -- gets the file:line of its directive. `opts`: the parsed Options."""
    if e.directive is None or e.path is not None or hasattr(e, "errors"):
        return e
    # Blame the line that set the restriction (the parser accepted each list on its own).
    d = "ecdh-curve" if e.directive == "tls-groups" and opts.ecdh_curve is not None else e.directive
    if d in ("cert", "key") and opts.pkcs12 is not None and d not in opts.source:
        d = "pkcs12"                 # cert and key came out of the pkcs12 file
    path, line = opts.source.get(d.replace("-", "_"), (opts.path, None))
    return ConfigError(e.message, path, line, d)


class Loc(int):
    """A line number that knows its file. Why: `config FILE` reads another file in place, and
    every place that keeps a line for a later error (Options.source, first lines seen, remote
    lines) keeps an int; a Loc is one, so all of them name the right file without a change."""

    path: str

    def __new__(cls, number: int, path: str) -> "Loc":
        loc = super().__new__(cls, number)
        loc.path = path
        return loc

    def __reduce__(self):
        return (Loc, (int(self), self.path))


class PushDeferred(Exception):
    """Server side: the client's options wait for a verdict given off the event loop (a
    client-connect script); ServerDispatcher.connect_result resumes the push."""


class CcdPending(Exception):
    """A client-config-dir loader's `at_connect(cn)`: the file is being read and parsed off the
    event loop (a large one); `key` names what the client waits for. ServerDispatcher.ccd_loaded
    resumes the push of those waiting on it, which asks the loader again."""

    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.key = key
