"""Rare things the engine reports (never one per data packet): small immutable records
(FrozenRecord: a frozen dataclass's behaviour without compiling its methods at every start)."""
from __future__ import annotations

from ..frozen_record import FrozenRecord

from .keymethod import PushedOptions


class HandshakeCompleted(FrozenRecord):
    key_id: int
    tls_version: str
    tls_cipher: str
    peer_common_name: str | None
    tls_group: str = ""                 # the key exchange's group, e.g. X25519 or X25519MLKEM768


class TunnelUp(FrozenRecord):
    """The data channel is ready. Client: `pushed` holds what the server pushed."""
    cipher: str
    key_derivation: str          # "tls-ekm" | "prf"
    peer_id: int | None
    pushed: PushedOptions | None


class KeyRenegotiated(FrozenRecord):
    key_id: int
    cipher: str


class ClientAuthenticated(FrozenRecord):
    """Server side: a client passed TLS (and user/password if configured)."""
    common_name: str | None
    username: str
    peer_info: dict


class AuthRequested(FrozenRecord):
    """Server side, with SessionConfig.defer_auth: check this username/password (off the event
    loop: it is slow on purpose) and answer with Session.auth_result(key_id, ok, now, check=check).
    `check`: which request of that key id the verdict answers (a key id is reused by a later key
    state, and a slow check's verdict must not decide the later one's password). With
    auth-gen-token, for the command's environment as OpenVPN 2.6 sets it (add_session_token_env):
    `session_state` (Initial: a password; Authenticated, Expired, Invalid: a token, external-auth)
    and `session_id` (the session id of the token this session has or will get)."""
    key_id: int
    username: str
    password: str
    common_name: str | None
    session_state: str | None = None
    session_id: str | None = None
    check: object = None
    _not_shown = ("password", "check")
    _not_compared = ("check",)


class TlsVerifyRequested(FrozenRecord):
    """Either role, with tls-verify: the handshake of key `key_id` is held until the gateway
    runs the command for each certificate of `chain` (depth 0, the peer's, first; OpenVPN 2.6
    runs it from the deepest down) and answers with Session.tls_verify_result(key_id, ok, now,
    check=check). Nothing is sent to the peer, nor read from it, meanwhile."""
    key_id: int
    chain: tuple
    common_name: str | None
    check: object = None
    _not_shown = ("chain", "check")
    _not_compared = ("check",)


class V2VerifyRequested(FrozenRecord):
    """Server side, with tls-crypt-v2-verify: a client's tls-crypt-v2 key unwrapped; its session
    does nothing (no TLS) until ServerDispatcher.v2_verify_result(rec, ok, now). `metadata`:
    the key's metadata after its type byte, as OpenVPN writes it to metadata_file. `key_digest`:
    a digest of the client key itself (V2Key.digest), the gateway's per-key cap on the commands
    waiting (one stolen key from many addresses must not hold every slot)."""
    metadata_type: int
    metadata: bytes
    key_digest: bytes = b""
    _not_shown = ("metadata", "key_digest")


class PushRequested(FrozenRecord):
    """Server side: the client asked for its options (or announced it will take them unasked)."""


class CrResponse(FrozenRecord):
    """Server side: the client answered a challenge (`client-pending-auth ... CR_TEXT:...`) with
    CR_RESPONSE,<response> on key `key_id` (control characters escaped, as every control text)."""
    key_id: int
    response: str


class AuthFailed(FrozenRecord):
    message: str


class AuthPending(FrozenRecord):
    """Client side: the server checks our login out of band (a web login, a push to a phone) and
    asked us to wait; we now wait up to `wait` seconds for its verdict. `keywords`: as it sent
    them (control characters escaped, as in every control message's text)."""
    wait: int
    keywords: str


class ServerInfo(FrozenRecord):
    """Client side: a message the server sent for the user (`kind` INFO or INFO_PRE), e.g.
    WEB_AUTH::<url> of a web login to open (control characters escaped)."""
    kind: str
    text: str


class SessionClosed(FrozenRecord):
    """The session is over. `restart` says whether a client should reconnect (OpenVPN's SIGUSR1);
    `same_remote`, that it should try the same server again first (OpenVPN's no_advance: the
    server refused our auth-token, and the password may still be good there); `next_remote`,
    that the server told it to go on to the next one (RESTART,[N]) even after a tunnel was up;
    `backoff`, the least wait in seconds before the next attempt the server asked for
    (AUTH_FAILED,TEMP[backoff N]; 0: none); `skip_addresses`, that the next remote comes before
    the other addresses of this remote's name (AUTH_FAILED,TEMP[advance remote]); `tls_error`,
    that the TLS session or its control channel failed (OpenVPN's "tls-error": a handshake or a
    certificate refused, hand-window or tran-window passed, an unanswered control channel), which
    `tls-exit` turns from a restart into the end of the run; `purge_auth`, that the server refused
    the password itself (AUTH_FAILED but TEMP, no auth-token in use), after which `auth-retry
    interact` asks for it again (OpenVPN 2.6: ssl_purge_auth) -- a field, not read from `reason`,
    whose end is the server's own words."""
    reason: str
    restart: bool
    same_remote: bool = False
    next_remote: bool = False
    backoff: int = 0
    skip_addresses: bool = False
    tls_error: bool = False
    purge_auth: bool = False


class Warning(FrozenRecord):  # noqa: A001 - an engine event, not the builtin
    message: str


class Decompressing(FrozenRecord):
    """The peer compresses what it sends (real compression, compression.py): the first payload of
    this session it compressed was decompressed, `compressed` -> `decompressed` bytes. Once per
    session: a user sees decompression at work without a line per packet."""
    mode: str                   # lzo | lz4 | lz4-v2
    compressed: int
    decompressed: int


class ClientFloated(FrozenRecord):
    """Server side: an authenticated data packet came from a new address, which the client now has.
    At most one per client every FLOAT_REPORT_EVERY seconds (server.py): `unreported` says how
    many moves of this client came since the last one and were only counted."""
    old_addr: object
    new_addr: object
    unreported: int = 0


class ExitHeld(FrozenRecord):
    """Server side: the client said EXIT on the control channel; its session ends `seconds`
    later (Session.hold_exit), not at once, as OpenVPN 2.6's schedule_exit."""
    seconds: float


class ConnectRequested(FrozenRecord):
    """Server side, with ServerSettings.defer_connect: the client has its address and waits for a
    verdict given off the event loop (client-connect); answer with ServerDispatcher.connect_result."""
