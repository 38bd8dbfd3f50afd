"""What the server dispatcher works with: its settings (built from a server config by
settings.server_settings), one record per client, and a client's unwrapped tls-crypt-v2 key."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..frozen_record import FrozenRecord
from . import keyfiles
from .addresspool import AddressPool, AddressPool6
from .session import Session, SessionConfig


class StreamKey(FrozenRecord):
    """A TCP connection as the dispatcher's client address: a number that is never reused (a file
    descriptor number would be), and the client's IP for per-source limits."""
    conn: int
    ip: str

    # Written out, not FrozenRecord's (attrgetter): the server hashes a TCP client's key for every
    # packet it sends (server.py by_addr), and these are a frozen dataclass's own, as fast
    # (tests/unit/test_frozen_record.py, README "helper review49b").
    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return (self.conn, self.ip) == (other.conn, other.ip)       # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.conn, self.ip))

    def __str__(self) -> str:
        return f"tcp#{self.conn}/{self.ip}"


@dataclass
class ClientRecord:
    """One connected client: its session, where it is, and which inner addresses it owns."""
    session: Session
    addr: object
    peer_id: int
    vaddr: str | None = None
    vaddr_packed: bytes = b""            # the same, as it stands in packet headers (hot-path compares)
    vmask: str | None = None
    # The IPv4 address this client holds in the pool, released when it goes, whoever holds
    # vaddr's route by then: with an ifconfig-push of an address already in use (shared, see
    # AddressPool.share) the route is the newer client's, as with OpenVPN 2.6.
    pool_lease: str | None = None
    vaddr6: str | None = None
    pool6_lease: str | None = None       # vaddr6 as held in the IPv6 pool (released when it goes, as pool_lease)
    iroutes: list[ipaddress.IPv4Network] = field(default_factory=list)
    iroutes6: list[ipaddress.IPv6Network] = field(default_factory=list)    # ccd iroute-ipv6
    common_name: str | None = None
    tcp: bool = False
    vid: int | None = None               # vlan-pvid from its ccd / client-connect (vlan-tagging), else the server's
    extra_push: list[str] = field(default_factory=list)
    push_reset: bool = False
    push_remove: list[tuple[int, str]] = field(default_factory=list)
    block_ifconfig: bool = False         # push-remove ifconfig / ifconfig-ipv6 (CcdOptions), so far
    block_ifconfig_ipv6: bool = False
    v2_metadata: str | None = None       # what the client's tls-crypt-v2 key says about it
    # Its type and bytes: a reload that adds tls-crypt-v2-verify runs the command on the keys of
    # clients it keeps (gateway/ops.py), as OpenVPN's SIGHUP has them all connect through it.
    v2_key: tuple[int, bytes] | None = None
    # tls-crypt-v2-verify: the client's packets, held (with no TLS work done) until the verdict
    # on its key's metadata (ServerDispatcher.v2_verify_result), the first one's WKc cut off.
    v2_held: list[bytes] | None = None
    connect_state: str | None = None     # client-connect: None, "pending" (verdict awaited), "done"
    connect_opts: list[str] = field(default_factory=list)   # options computed before the verdict
    # Its client-config-dir file's options as admitted (parsed; None: no file). A restart in place
    # of an established client (`continues`) takes these over instead of reading the file again,
    # as 2.6's instance keeps the options of its first connect (clientpush.py _push_options).
    ccd: object = None
    ccd_wait: object = None              # what a large ccd file read off the loop is keyed by (CcdPending)
    continues: bool = False
    # What the config gave it at its connect (given.Given): a reload whose config would give it
    # something else restarts it (gateway/ops.py); None until its options are computed.
    given: object = None
    # Told RESTART by a reload for its new options: its reconnect from the same address is a new
    # connection reading them, not a restart in place keeping the old ones (server.py).
    reload_restart: bool = False
    # A reload's pass has yet to say whether the new config gives it the same options (its turn
    # not come, or its restart held off: ops.py). Its restart in place meanwhile is a new
    # connection too: one continuing with the old options escaped the pass (review44b).
    reload_pending: bool = False
    # dispatcher bookkeeping (not for the pump)
    armed: float | None = None           # deadline of this record's live entry in the timer heap
    alive: bool = True                   # False once forgotten: its heap entries are stale
    admitted: bool = False               # counted by Admission.opened (so gone() must uncount it)
    half_open: bool = True               # counted as a handshake in progress (until TunnelUp)
    unverified: bytes | None = None      # cookie-less (address unproven): the client's session id
    source: object = None                # the host it first came from (per-source handshake count)
    floats_unreported: int = 0           # moves since the last ClientFloated event (server.py _float)
    float_reported_at: float | None = None   # when that event was made

    @property
    def restart_keeps_options(self) -> bool:
        """Whether a restart in place of this (established) client goes on with the options it
        was admitted with (2.6's instance), rather than being a new connection that reads them
        anew: not when a reload restarted it for new ones, nor while a reload's verdict on its
        options is pending. The one decision for the dispatcher (server.py) and ops (created)."""
        return not (self.reload_restart or self.reload_pending)


class V2Key(NamedTuple):
    """A client's tls-crypt-v2 key as unwrapped from its first packet."""
    kc: bytes
    metadata_type: int
    metadata: bytes

    def digest(self) -> bytes:
        """The client key's identity for per-key caps: a digest of Kc itself (two clients' keys
        may share their metadata), from which the key cannot be recovered."""
        return hashlib.sha256(b"vpn-appliance tls-crypt-v2 client key\0" + self.kc).digest()

    def describe(self) -> str:
        """The metadata for the log (OpenVPN hands it to a verify script; we run none)."""
        t, m = self.metadata_type, self.metadata
        if t == keyfiles.METADATA_TYPE_TIMESTAMP and len(m) == 8:
            return f"key made at Unix time {int.from_bytes(m, 'big', signed=True)}"
        if t == keyfiles.METADATA_TYPE_USER:
            return "user metadata " + (base64.b64encode(m).decode() if m else "(empty)")
        return f"metadata type {t}, {len(m)} bytes"


@dataclass
class ServerSettings:
    """Everything the dispatcher needs, built from a server config by the caller."""
    session_config: Callable[[int], SessionConfig]   # peer_id -> a server-role SessionConfig
    protection: str                                  # none | tls-auth | tls-crypt | tls-crypt-v2
    static_key: bytes | None = None                  # tls-auth / tls-crypt key
    # Beside tls-crypt-v2: tls-auth | tls-crypt with static_key, for clients without a key of their
    # own (settings.shared_protection says why); "none": only clients with one.
    shared_protection: str = "none"
    key_direction: int | None = None
    auth_digest: str = "SHA1"
    v2_server_key: bytes | None = None
    pool: AddressPool | None = None
    pool6: AddressPool6 | None = None
    local_ip6: str | None = None                     # the server's own IPv6 address (TUN), if any
    local_ip4: bytes | None = None                   # the server's own IPv4 address (TUN), packed, if any
    push: list[str] = field(default_factory=list)
    client_to_client: bool = False
    duplicate_cn: bool = False
    max_clients: int = 1024
    # ifconfig-push-constraint NETWORK NETMASK as integers: an address outside is logged (clientpush.py)
    ifconfig_push_constraint: tuple[int, int] | None = None
    max_routes_per_client: int = 256                 # addresses + iroutes routed to one client
    hand_window: int = 60
    ccd: Callable[[str], object] | None = None       # common name -> parsed ccd (or None)
    ccd_exclusive: bool = False
    tcp: bool = False
    random_bytes: Callable[[int], bytes] = secrets.token_bytes
    # Admission limits (OpenVPN names in brackets). connect_freq: at most N new sessions per SEC
    # seconds [connect-freq, off by default]; connect_freq_initial: at most N stateless reset
    # answers per SEC seconds [connect-freq-initial 100 10].
    connect_freq: tuple[int, int] | None = None
    connect_freq_initial: tuple[int, int] = (100, 10)
    # tls-crypt-v2 clients that cannot do the cookie exchange (no early negotiation) are refused
    # [tls-crypt-v2 ... force-cookie]; without it they get state at once, within the bounds below.
    force_cookie: bool = False
    username_as_cn: bool = False                     # [username-as-common-name]
    max_half_open: int = 256                         # handshakes in progress, all sources
    max_half_open_per_source: int = 8                # handshakes in progress from one IP address
    max_unverified: int = 32                         # of those, created without a cookie exchange
    # auth-user-pass-verify: the check itself. With defer_auth the sessions ask for it by event
    # (AuthRequested) and the caller runs it off its loop; otherwise sessions call it inline.
    verify_user: Callable[[str, str, str | None], bool] | None = None
    defer_auth: bool = False
    # client-connect: the push waits for ServerDispatcher.connect_result (ConnectRequested event)
    defer_connect: bool = False
    connect_command: tuple[str, ...] = ()            # client-connect's command line (given.py)
    admission: tuple = ()                            # the admission checks (given.admission_of)
    pool_memory: object | None = None                # ifconfig-pool-persist: poolfile.PoolMemory
    # tls-crypt-v2-verify: a new session's first packet waits for V2VerifyRequested's verdict
    v2_verify: bool = False
    # dev tap: frames switched by MAC address (l2switch.py), no `topology` pushed, no iroutes
    layer2: bool = False
    # vlan-tagging: (vlan-accept, the TAP port's vlan-pvid), else None (l2switch.py)
    vlan: tuple[str, int] | None = None
    # What the server's addressing pushes to every client before its ifconfig (`server`'s
    # route-gateway, topology) and after it (net30's route): serveraddressing.py. None: as
    # `server` would for `pool` (settings made by hand, the engine tests').
    addressing_push: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if self.addressing_push is None:
            from .serveraddressing import pool_pushes
            self.addressing_push = pool_pushes(self.pool, self.client_to_client, self.layer2)



class InternalError:
    """One session's bug as the dispatcher caught it: iterates and indexes as (record,
    exception), as every reader of take_internal_errors expects, and says where it was caught
    (`where`), so the pump's log line names the step that raised -- not the step of the wake-up
    that happened to collect it (a release's fault was logged as a client-connect verdict's)."""

    __slots__ = ("rec", "exc", "where")

    def __init__(self, rec: "ClientRecord", exc: BaseException, where: str) -> None:
        self.rec, self.exc, self.where = rec, exc, where

    def __iter__(self):
        return iter((self.rec, self.exc))

    def __getitem__(self, i):
        return (self.rec, self.exc)[i]

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"InternalError({self.where}: {self.exc!r})"
