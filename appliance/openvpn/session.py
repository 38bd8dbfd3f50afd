"""One OpenVPN peer session as a pure state machine, in either role.

Contract (the rules a caller relies on):
1. Nothing here reads a clock, opens a socket or sleeps: every entry point takes `now` (seconds,
   monotonic) and the caller owns time. Randomness comes from `SessionConfig.random_bytes`.
2. Inputs: `receive(packet, now)` for one whole OpenVPN packet (a UDP datagram, or a de-framed TCP
   packet), `encrypt(payload)` for a tunnel packet to send, `note_sent(now)` after data went out,
   `handle_timer(now)` when `next_deadline()` has passed, `close(now)` to leave (with an exit
   notification), `abort(reason)` to end without one. `begin_batch()` ... `end_batch(now)` around
   the receives of packets that arrived together: their control replies and ACKs are wrapped
   once, at the end (ACKs ride on the replies instead of going ahead of them alone). When
   `end_batch` returns True, the caller sends what `take_outgoing()` holds (ACKs the peer waits
   for) and then calls `settle(now)`, which reads the messages those ACKs cover. A server
   dispatcher that answered the hard resets statelessly continues a new session with
   `resume_after_cookie(own_sid, peer_sid, now)`.
3. Outputs: `receive` returns the tunnel packets it decrypted (memoryviews into one buffer of this
   session, valid until its next receive); `encrypt` returns the wire packet or None when there is
   no key yet (or its packet ids are used up); `take_outgoing()` returns the control/ping packets
   queued by any call; `events` holds rare events (events.py); `next_deadline()` is O(1).
4. Peer misbehaviour never raises out of `receive`: a bad packet is counted in `stats` and dropped;
   a fatal protocol error closes the session with a SessionClosed event. Warnings are capped per
   session (MAX_WARNINGS), so a chatty peer cannot flood the log.
5. Identity is fixed by the first handshake: a renegotiation under another certificate name (or,
   server side, another username, or a password that no longer verifies — an auth-token we pushed
   excepted) ends the session, as OpenVPN's ssl_verify.c does.

Key states: one per key id (0 for the first handshake, 1..7 for renegotiations) with its own
reliability layer and TLS session (keystate.py). The newest active key sends; older ones stay as
"lame ducks" for `tran_window` seconds so packets in flight still decrypt. A renegotiation that
misses hand-window over UDP costs only its own key state, as in OpenVPN 2.6: the key in use goes
on until tran-window after that attempt began (_negotiation_timed_out), and a client then
starts a new TLS session on the same link (_new_tls_session), as OpenVPN's client does. A key renegotiates
before its packet-id counter reaches the end (0xFF000000, as OpenVPN) and never wraps it.

Layout: this module holds the public API, key installation, renegotiation and timers; control.py
the control-channel plumbing; roles.py what the client and server ends do differently.
"""
from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable

from . import events as ev
from . import ciphers
from .authtoken import AuthToken
from .compression import SEND_FRAMING, DecompressError, compressed, decompress
from .compstub import compress_stub, decompress_stub, framing_byte
from .control import CONTROL_BURST, ControlChannel
from .datachannel import DataKey
from .errors import BadPacket, ClientRefused, LocalProtocolError, PushError, RemoteProtocolError, VerifyRefused
from .fragment import Fragmenter, max_fragment_size
from .gentoken import TokenPolicy
from .keys import EKM_LABEL, KEY_BLOCK_LEN, prf_key_block, split_key_block
from .keystate import KS, KeyState
from .keymethod import iv_proto
from .occstring import OccInputs
from .opcodes import (DATA_PID_RENEG_AT, IV_PROTO_AUTH_PENDING_KW, NO_PEER_ID, OCC_EXIT, OCC_MAGIC, PID_MAX,
                      PING_MAGIC, Op)
from .roles import PUSH_REQUEST_INTERVAL, ClientRole, ServerRole

PUSH_BUNDLE_SIZE = 1024     # OpenVPN's: the longest INFO_PRE it sends

# Plain ints for the per-packet test in receive: comparing with IntEnum members costs ~0.2 us.
_DATA_V1, _DATA_V2 = int(Op.DATA_V1), int(Op.DATA_V2)
from .tls import TlsSettings, chain_or_depth0, context_for
from ..logpace import NoteLimit, times

if TYPE_CHECKING:
    from cryptography import x509

    from .keymethod import PushedOptions

__all__ = ["KS", "Role", "Session", "SessionConfig", "PUSH_REQUEST_INTERVAL"]

RENEG_CHECK_INTERVAL = 0.1      # how often reneg-bytes / reneg-pkts counters are looked at (only when set)
# How often an AES-GCM key's usage (ciphers.AES_GCM_USAGE_LIMIT) is looked at otherwise: the 1/8
# of the limit left when it renegotiates is ~128 GiB, minutes at any rate this program reaches.
USAGE_CHECK_INTERVAL = 10.0
# fragment: a reassembled payload may exceed the TUN MTU by its framing and tun-mtu-extra (OpenVPN's
# buffers have room for both); beyond this it is dropped.
FRAGMENT_SLACK = 256
# OpenVPN 2.6's frame (init.c frame_finalize_options): its receive buffers always hold tunnel
# packets of at least 1600 bytes ("baby giants" a server may push), plus 32 bytes for errors in
# the sum and the headroom reserved for the largest crypto, opcode, SOCKS and framing headers
# (crypto_max_overhead 120 + 4 + 10 + 2, rounded to 4) -- a received packet may use all of it.
TUN_WRITE_FLOOR = 1600
TUN_WRITE_SLACK = 32 + 136
TOO_LARGE = "tunnel packet larger than the tun-mtu allows (dropped, as OpenVPN 2.6)"
MAX_WARNINGS = 10               # Warning events per session; more are only counted (stats)
# Renegotiations the peer may start: PEER_RENEG_BURST in a row, then one per PEER_RENEG_EVERY
# seconds (_may_answer_soft_reset). Each is a full TLS handshake here (~6 ms of our CPU).
PEER_RENEG_BURST = 16
PEER_RENEG_EVERY = 1.0
# ... and a new session starts with this many in hand, earning the rest of the burst by staying
# (one a PEER_RENEG_EVERY). Why not the whole burst at once: a client holding a certificate that
# connected again each time its soft resets started being held got 16 handshakes per connection,
# 17 with the connection's own, where connect-freq-initial bounds connections (10 a second by
# default) to one each: 170 handshakes a second, the server's whole core (lab/reliability/authattack.py
# mode `cycle`; tests/engine/test_renegotiation_rate.py). No honest peer renegotiates in its first
# seconds more than once (reneg-sec, -bytes and -pkts count from the first key).
PEER_RENEG_START = 1
# A key's TLS failing once the session is up (_contain_tls_failure) starts a renegotiation to
# replace it; such recoveries start at most once per this many seconds. Why a bound: the bytes
# that fail it may be anyone's who holds the shared tls-auth / tls-crypt key, as often as they
# like; each recovery is a full handshake (~6 ms of our CPU, the peer's too).
RECOVERY_EVERY = 10.0
# Server: how long a client's control-channel EXIT leaves its session in place, as OpenVPN 2.6
# (push.c receive_exit_message -> schedule_exit: options.scheduled_exit_interval, 5 s, no option
# sets it). Measured beside Debian's 2.6.14 server (tests/interop/test_client_exit_hold_vs_openvpn.py):
# the departing client's packets are routed both ways meanwhile, and its address and peer-id stay
# its own -- a client connecting then is not given them.
EXIT_HOLD = 5.0
# Why a session ended when its peer left by its own word: an OCC exit (a client without cc-exit),
# or the end of the hold after its EXIT. The server keeps the leaver's address and peer-id a
# while after either, to count what it still sends as no drop of note (server.py DEPARTED_DATA).
PEER_EXITED = "peer sent exit notification"
CLIENT_EXITED = "client exited (EXIT)"
EXITED_REASONS = frozenset({PEER_EXITED, CLIENT_EXITED})
_NEVER = float("inf")


def tun_write_max(cfg: "SessionConfig") -> int:
    """The largest decrypted tunnel packet a session passes on: OpenVPN 2.6's frame payload size
    for this config (the largest of tun-mtu, tun-mtu-max, max-packet-size and 1600, tap's
    tun-mtu-extra, the slack); bigger ones 2.6 never writes to its TUN."""
    return (max(TUN_WRITE_FLOOR, cfg.tun_mtu, cfg.tun_mtu_max, cfg.tls_mtu) + cfg.tun_mtu_extra
            + TUN_WRITE_SLACK)


class Role(str, Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass
class SessionConfig:
    role: Role
    tls: TlsSettings
    make_wrapper: Callable[[], object]           # -> a wrapping.Wrapper, one per session
    proto: str = "udp"                            # "udp" | "tcp"
    data_ciphers: list[str] = field(default_factory=lambda: list(ciphers.DEFAULT_DATA_CIPHERS))
    data_ciphers_fallback: str | None = None
    auth: str = "SHA1"
    reneg_sec: int = 3600                         # 0: never by time (eduVPN profiles say so)
    reneg_bytes: int | None = None
    reneg_pkts: int | None = None
    tran_window: int = 3600
    hand_window: int = 60
    tls_timeout: float = 2.0
    ping: int = 0
    ping_restart: int = 0
    ping_exit: int = 0
    username: str = ""
    password: str = ""
    # client: where the username/password come from at each key-method message, instead of the
    # two fields above (gateway/credentials.py: auth-nocache reads its file again each time).
    # Called only when no auth-token stands in for them; what it raises ends the caller's turn.
    credentials: Callable[[], tuple[str, str]] | None = None
    # client: the run's auth-token holder, shared by its successive sessions (authtoken.py): a
    # reconnect keeps sending the token the last connection was given. None: this session's own.
    auth_token: AuthToken | None = None
    explicit_exit_notify: int = 0
    comp: str | None = None                      # None | "lzo-stub" | "stub" | "stub-v2" | "lzo" | "lz4" | "lz4-v2"
    # client: IV_LZ4=1 ... as 2.6 advertises (settings.comp_peer_info); None: compression.STUB_PEER_INFO
    comp_peer_info: tuple[str, ...] | None = None
    comp_stub_only: bool = True                  # client: pushed real compression refused (2.6: allow-compression stub-only)
    comp_migrate: bool = False                   # server: `compress migrate` (clientpush.py)
    tun_mtu: int = 1500
    dev_type: str = "tun"                        # tun or tap: the OCC options string's dev-type (control.py)
    tun_mtu_extra: int = 0                       # counted into the OCC link-mtu, as OpenVPN 2.6's frame extra
    # what OpenVPN 2.6's options string reads of the config (settings.occ_inputs); None: built
    # from the fields here (control.py), for sessions made without a parsed config
    occ: OccInputs | None = None
    tun_mtu_max: int = 0                         # client: tun-mtu-max (the cap is at least 1600 and tun_mtu)
    tls_mtu: int = 1250                           # max-packet-size: the largest control packet we send
    early_negotiation: bool = False              # client with tls-crypt-v2
    advertise_ekm: bool = True                   # client: offer TLS-EKM key derivation (IV_PROTO bit 3)
    peer_info_extra: tuple[str, ...] = ()        # client: setenv IV_GUI_VER/IV_SSO, push-peer-info's lines
    fragment_room: int = 0                        # fragment: UDP payload bytes a datagram may take (0: off)
    replay_window: int = 64                       # replay-window N: reordering tolerated (packets)
    replay_time: float | None = 15.0              # replay-window N T: seconds (None/0: no time limit)
    pull_filter: list[tuple[str, str]] = field(default_factory=list)   # client: (action, text) in order
    auth_retry: bool = False                      # client: AUTH_FAILED reconnects (auth-retry nointeract)
    route_nopull: bool = False                    # client: pushed routes and DNS are not taken
    random_bytes: Callable[[int], bytes] = secrets.token_bytes
    # point-to-point TLS (no push either way; openvpn/p2p.py): the roles' p2p variants
    p2p: bool = False
    push_peer_info: bool = False                  # p2p: push-peer-info (2.6's detail 3 peer-info: p2p.py)
    # server role only
    peer_id: int | None = None
    push_options: Callable[["Session"], list[str]] | None = None
    verify_user: Callable[[str, str, str | None], bool] | None = None
    defer_auth: bool = False                      # server: emit AuthRequested instead of calling verify_user
    # auth-gen-token (gentoken.py): the policy and key, and the wall clock its tokens carry (a
    # token must stay checkable across restarts and on a server sharing the key), which the
    # caller hands in with the policy (settings.server_settings: time.time)
    gen_token: TokenPolicy | None = None
    wall_clock: Callable[[], float] | None = None
    # ... and whether the password file (as last read: a reload hands kept sessions the new one)
    # still holds a token's user: one taken out of it is refused, token or not
    token_user_known: Callable[[str], bool] | None = None
    # auth-gen-token external-auth: a token goes to the auth-user-pass-verify command with its
    # state (session_state), which decides, as OpenVPN 2.6's auth_token_call_auth
    token_external: bool = False
    server_ekm: bool = True
    # force-tls-key-material-export: a client that cannot derive its keys by TLS-EKM is refused
    require_ekm: bool = False


class Session(ControlChannel):
    """One peer's state machine (either role; role-specific steps live in roles.py, the control
    channel's packet/TLS/message plumbing in control.py)."""

    def __init__(self, cfg: SessionConfig, now: float, tls_context=None) -> None:
        self.cfg = cfg
        self.is_client = cfg.role == Role.CLIENT
        self.role: ClientRole | ServerRole      # p2p's roles subclass these
        if cfg.p2p:
            from .p2p import P2PClientRole, P2PServerRole      # p2p builds on roles.py
            self.role = P2PClientRole(self) if self.is_client else P2PServerRole(self)
        else:
            self.role = ClientRole(self) if self.is_client else ServerRole(self)
        self.tcp = cfg.proto == "tcp"
        self.own_sid = cfg.random_bytes(8)
        self.peer_sid: bytes | None = None
        self.wrapper = cfg.make_wrapper()
        self.tls_context = tls_context if tls_context is not None else context_for(cfg.tls)
        self.keys: dict[int, KeyState] = {}
        self.recv_keys: list[DataKey | None] = [None] * 8
        self.final_counts: list[tuple[int, int, int]] | None = None   # (key, bytes in, out) once released
        self.send_key: DataKey | None = None
        self.out: list[bytes] = []
        self.events: deque = deque()
        self.stats: dict[str, int] = {}
        self.closed = False
        self.cipher: str | None = None
        self.ekm = False
        self.peer_id: int | None = cfg.peer_id
        self.pushed: PushedOptions | None = None    # client: once pushed
        self.push_sent = False
        self.next_push_request: float | None = None
        self.repulls_left = 0               # client: PUSH_REQUESTs still to send on a new TLS session (roles.py)
        self.peer_info: dict[str, str] = {}
        # server with `compress migrate`: the client's options string says `comp-lzo` (it frames
        # for compression), so it is pushed its uncompressed framing (clientpush.py), and our
        # options string says `comp-lzo` to it, as OpenVPN 2.6's write_compat_local_options
        self.peer_uses_comp = False
        self.peer_occ_cipher: str | None = None      # server: the client's options string's `cipher` (ciphers.occ_cipher)
        # server: the data-ciphers and fallback its per-client lines set (ciphers.per_client; None:
        # the config's), and the file:line of the last such line -- the cipher is chosen from
        # them at the push (choose_cipher), after all of those lines, as 2.6.14 chooses.
        self.client_ncp: tuple[tuple[str, ...], str | None] | None = None
        self.client_ncp_where = ""
        # server: a key of this client is accepted but its data keys wait for its push (cipher
        # chosen there, compat48). Its inactivity timers run from then on, as before compat48
        # (keys made at the handshake) and as 2.6.14's instance timers (ping-restart from the
        # instance's start): a client that authenticated and then never asked for its push (no
        # PUSH_REQUEST, no IV_PROTO_REQUEST_PUSH) or went silent lived on without end (review48f).
        self.accepted_unkeyed = False
        self.peer_common_name: str | None = None
        self.peer_username: str | None = None      # server: the username of the first handshake
        self.issued_auth_token: str | None = None   # server: an auth-token we pushed (renegotiation password)
        self.token_initial: str | None = None       # server: this client's first generated token (its session id)
        self.token_renew_at: float | None = None    # server: when the token is renewed between renegotiations
        # server: (key or None: the next, token) -- the token issued before a reload changed
        # auth-gen-token's policy, taken once more for that renegotiation (roles.token_policy_changed)
        self.token_grace: tuple[object, str] | None = None
        # client: the server's auth-token, our password from now on (for the whole run when the
        # gateway shares one holder among its sessions)
        self.token = cfg.auth_token if cfg.auth_token is not None else AuthToken()
        self.cc_exit = False
        self.restart_sent = False           # server: told this client RESTART/HALT (stopping, client-kill): tell_restart
        # server: this session's last word was a refusal -- AUTH_FAILED (roles.py) or tls-verify's
        # notice (control.py _advance): over UDP the dispatcher keeps what resends it after the
        # session ends (refusals.py)
        self.told_refused = False
        self.exit_at: float | None = None   # server: the client's EXIT ends the session then (hold_exit)
        self.established = False
        self.last_recv = now
        self.last_send = now
        self.reneg_check_at = now + RENEG_CHECK_INTERVAL   # reneg-bytes / reneg-pkts counters
        self.data_authenticated = 0       # data packets that passed authentication and replay checks
        # Every byte of the link both ways, control and data, good or not: OpenVPN 2.6's
        # c2.link_read_bytes / link_write_bytes (forward.c), what its status, bytecount and
        # client-disconnect report per client. Read: each packet handed to receive(); written:
        # each packet of take_outgoing() and encrypt(), over TCP with its 2-byte length as
        # 2.6 counts its writes (link_socket_write_tcp prepends it; its reads count without).
        self.link_read = 0
        self.link_written = 0
        self._frame_len = 2 if self.tcp else 0
        # Bytes the data keys counted that were no tunnel traffic: keepalive pings both ways, OCC
        # messages, payloads refused (compressed, or inner packets the server dropped), each with
        # its framing. `inactive` takes them off (gateway/inactivity.py): otherwise a client could
        # keep itself connected with packets that never reach the tunnel.
        self.not_traffic = 0
        self.framing = 0                  # compression framing bytes of the last payload received
        self.ping_interval = cfg.ping
        self.ping_restart = cfg.ping_restart
        self.next_key_id = 1
        self.comp = cfg.comp
        # real compression (comp-lzo yes, compress lz4...): what a peer's packet may decompress to at
        # most, as OpenVPN's frame payload size: the largest tun-mtu this session may use, and tap's extra
        self._decompress_limit = max(cfg.tun_mtu, cfg.tun_mtu_max or 1600) + cfg.tun_mtu_extra
        self._decompressed_one = False    # the Decompressing event is sent (once per session)
        # The largest tunnel packet written to the TUN: OpenVPN 2.6's frame payload size (init.c
        # frame_finalize_options), which its buffers hold -- a bigger one it drops ("tun packet
        # too large on write"), or, bigger still, its read cuts and authentication fails. Ours
        # wrote up to 65,507 bytes unchanged. One comparison per packet (_too_large).
        self._tun_write_max = tun_write_max(cfg)
        # fragment N (fragment.py): every payload framed, big ones split; None without it.
        self.frag = Fragmenter(max(cfg.tun_mtu, cfg.tun_mtu_max or 1600) + FRAGMENT_SLACK) if cfg.fragment_room else None
        self._frag_sizes: dict[tuple[str, int], int] = {}
        self.newest_key_id: int | None = None
        # client: the key in use while a new TLS session replaces a failed renegotiation's
        # (_new_tls_session)
        self.lame_session_key: KeyState | None = None
        self.owner: object = None           # the server's per-client record
        self._cn_locked = False             # a TLS handshake fixed peer_common_name
        self._locked_chain: tuple[bytes, ...] | None = None   # that handshake's chain hashes (TlsEndpoint.chain_digests)
        # server: a restart from an established client's address -- that client's locks
        # (common name, chain, username) its first handshake must match (lock_identity_of)
        self._restart_of: tuple[str | None, tuple[bytes, ...] | None, str | None] | None = None
        self._warnings = 0
        self.server_infos = 0           # client: INFO/AUTH_PENDING messages heard (roles.MAX_SERVER_INFO)
        self._pid_reneg = False             # the send key's packet ids run low (see encrypt)
        self._ctl_deadline: float | None = None   # timers of the control side, updated by _flush
        self._batch = False                  # receive() leaves the flush to end_batch()
        self._ctl_budget = float(CONTROL_BURST)   # control.py _spend_control_budget
        self._ctl_budget_at = now
        self._reneg_tokens = float(PEER_RENEG_START)   # _may_answer_soft_reset
        self._reneg_tokens_at = now
        self._held_reset: tuple | None = None  # (when, key id, body): a soft reset over the rate
        # _contain_tls_failure: when the renegotiation (a client after a failed one: the new TLS
        # session) that replaces a failed TLS starts, and when the last one started
        self._recover_at: float | None = None
        self._failed_over: KeyState | None = None   # client: the key in use when a renegotiation failed so
        self._reneg_hold = -_NEVER               # our own reneg-sec/-bytes/-pkts wait till then (_renegotiation_failed)
        self._recovered_at = -_NEVER
        self._tls_failures_said = NoteLimit()
        self._unflushed = False
        self._km_made: tuple | None = None   # prime(): the first key's key-method message, made early
        self._deferred: list[tuple[KeyState, list[tuple[int, bytes]]]] = []   # acked, read in settle()
        self._advance_due: list[KeyState] = []   # fed in this batch, TLS to drive at end_batch

    # ------------------------------------------------------------------ public API
    def start(self, now: float) -> None:
        """Client: send the first hard reset (the server waits for the client's)."""
        self.role.start(now)
        self._flush(now)

    def prime(self) -> None:
        """Client, after start() (before its hard reset goes out): make the TLS handshake's first
        flight now, so the answer to the server's reset is only wrapping and sending (the
        ClientHello and its key shares took ~0.15-0.25 ms there)."""
        ks = self.keys.get(0)
        if ks is not None and self.role.is_client:
            ks.prime_tls(self.tls_context, self.cfg.tls)
            # Our key-method message too (randoms, options, peer-info: ~30 us), sent the moment
            # TLS completes, between the server's flight and our Finished. Not with credentials
            # fetched at each use (auth-nocache): they are asked for once TLS is done, as OpenVPN
            # 2.6 does, so an attempt that never reaches the server reads no file, asks no one.
            if self.cfg.credentials is None:
                self._km_made = self._make_key_method()

    def begin_batch(self) -> None:
        """Several packets arrived at once: until end_batch, receive() queues no control packets.
        Why: flushed per packet, the first packets of a flight (say the server's certificate, cut
        in two) each got a standalone ACK before the packet that completes it was even read, so
        the answer went out as ACK, then the reply: two datagrams, two wake-ups of the server,
        for what one reply carrying the ACKs says (as OpenVPN piggy-backs them)."""
        self._batch = True

    def end_batch(self, now: float, hold_flush: bool = False) -> bool:
        """The batch is read: wrap what is due (replies with the ACKs on them) in one go.

        `hold_flush`: leave the wrapping to flush_held() (the client, on the batch that brought
        its tunnel up: the ACK of PUSH_REPLY, which nothing waits for, is wrapped after the
        first data packet went out, not before the tunnel is set up -- 20-45 us of HMAC and
        AES there with tls-auth/tls-crypt; README, firstpkt49). ACKs alone: a message of ours
        never sent goes now (a point-to-point tls-server's tunnel comes up at the batch that
        reads the peer's key-method message, whose answer is ours: held behind our first data
        packet, that packet reached a peer with no keys yet and was dropped; README, batch50).

        Returns True when messages wait for `settle(now)`: send what take_outgoing() holds
        first. Why, for one moment only (client, first key, TLS done, until the server's
        key-method message is read): OpenVPN's server pushes only once everything it sent is
        acknowledged (its key state turns active), and its last messages before the push are
        the TLS tickets and its key-method message. Acked after reading them (the tickets'
        TLS work, the key-method message, our PUSH_REQUEST: 0.3-0.4 ms in Python), the push
        came that much later; acked first, the server builds the push while we read them."""
        self._batch = False
        if self._advance_due:
            due, self._advance_due = self._advance_due, []
            for ks in due:
                if self.closed:
                    break
                self._guarded(self._advance, ks, now)
        if self._unflushed and not (hold_flush and not any(ks.reliable.has_unsent() for ks in self.keys.values())):
            self._unflushed = False
            self._flush(now)
        return bool(self._deferred)

    def flush_held(self, now: float) -> None:
        """Wrap what end_batch(hold_flush=True) left unwrapped (nothing if nothing was left)."""
        if self._unflushed and not self._batch:
            self._unflushed = False
            self._flush(now)

    def settle(self, now: float) -> None:
        """Read the messages end_batch left (their ACKs went out), then wrap the replies."""
        work, self._deferred = self._deferred, []
        for ks, delivered in work:
            if self.closed:
                break
            self._guarded(self._take_messages, ks, delivered, now)
        self._flush(now)

    def take_outgoing(self) -> list[bytes]:
        out, self.out = self.out, []
        if out:
            self.link_written += sum(map(len, out)) + self._frame_len * len(out)
        return out

    def receive(self, packet, now: float) -> list:
        """One OpenVPN packet in; decrypted tunnel packets out. Never raises for peer input."""
        if self.closed or not packet:
            return []
        self.link_read += len(packet)
        op = packet[0] >> 3
        if op == _DATA_V2 or op == _DATA_V1:
            dk = self.recv_keys[packet[0] & 7]
            if dk is None:
                self._count("data-no-key")
                return []
            try:
                pt = dk.open_untrusted(packet, now)
            except BadPacket as e:
                pt = self._open_with_lame_session_key(packet, now, dk)
                if pt is None:
                    self._count(e.reason)
                    return []
            self.last_recv = now
            self.data_authenticated += 1
            if self.frag is not None:
                pt = self._unfragment(pt, now)
                if pt is None:
                    return []
            if self.comp is not None:
                n = len(pt)
                if self.comp in SEND_FRAMING:
                    pt = self._decompress(pt)
                    if pt is None:
                        self.not_traffic += n
                        return []
                else:
                    out = decompress_stub(self.comp, pt)
                    if not out:                    # nothing after the header (as 2.6, dropped) or a wrong one
                        self.not_traffic += n
                        if out is None:
                            self._bad_framing(pt)
                        return []
                    pt = out
                self.framing = n - len(pt) + (4 if self.frag is not None else 0)
            if not pt or len(pt) > self._tun_write_max or pt[0] == 0x2A or pt[0] == 0x28:
                return self._after_open(pt, now)        # nothing to deliver, or not traffic
            return [pt]
        self._guarded(self._receive_control, packet, now)
        if self._batch and not self.closed:
            self._unflushed = True
        else:
            # A session this packet ended says its last word (AUTH_FAILED, the ACKs) now: its
            # owner may release it before the batch ends.
            self._unflushed = False
            self._flush(now)
        return []

    def receive_many(self, packets, now: float) -> list:
        """receive() of each packet of a batch, in order: the tunnel packets of all of them in
        one list, with the same counts and state as one receive() per packet.

        Why: a client uploading through OpenVPN's server gets one datagram per inner TCP ACK
        (~200 a MB; that server sends no GSO runs), and the calls per datagram -- the data
        path's open, receive, a one-item list each -- were a third of the sending client's
        Python outside system calls. Here the data packet without fragment or compression
        framing takes receive()'s data branch written out in a loop (the same steps in the same
        order, the rare plaintexts handed to _after_open as receive() hands them); anything else
        -- a control packet, a closed session, framing -- goes through receive() itself."""
        if self.frag is not None or self.comp is not None:
            out: list = []
            for p in packets:
                out += self.receive(p, now)
            return out
        out = []
        receive = self.receive
        for p in packets:
            if self.closed or not p:
                continue                        # receive() returns [] for these, unchanged
            op = p[0] >> 3
            if op != _DATA_V2 and op != _DATA_V1:
                out += receive(p, now)          # control: may change keys or close the session
                continue
            self.link_read += len(p)
            dk = self.recv_keys[p[0] & 7]
            if dk is None:
                self._count("data-no-key")
                continue
            try:
                pt = dk.open_untrusted(p, now)
            except BadPacket as e:
                pt = self._open_with_lame_session_key(p, now, dk)
                if pt is None:
                    self._count(e.reason)
                    continue
            self.last_recv = now
            self.data_authenticated += 1
            if not pt or len(pt) > self._tun_write_max or pt[0] == 0x2A or pt[0] == 0x28:
                out += self._after_open(pt, now)
            else:
                out.append(pt)
        return out

    def _after_open(self, pt, now: float) -> list:
        """The rare opened plaintext (framing already taken off): empty (2.6 drops it too: a
        zero-length TUN write is EINVAL), longer than the TUN takes, or starting like the
        ping or OCC magic (IP packets start with 0x4_/0x6_, the magics with 0x2a/0x28)."""
        if not pt:
            return []
        if len(pt) > self._tun_write_max:
            self._too_large(pt)
            return []
        if pt[0] == 0x2A or pt[0] == 0x28:
            if pt == PING_MAGIC:
                self.not_traffic += len(pt) + self.framing
                return []
            if len(pt) >= 17 and pt[:16] == OCC_MAGIC:
                self.not_traffic += len(pt) + self.framing
                self._occ(pt, now)
                return []
        return [pt]

    def _open_with_lame_session_key(self, packet, now: float, dk: DataKey):
        """A data packet the key of its id refused: the old session's key, when a new TLS session
        (_new_tls_session) took over the same key id. Why: both sessions number their keys
        from their own counters, so a new session's key 0 often shares its id with the old key,
        and the peer goes on sending with the old one until it has set the new session up
        (OpenVPN's server: about a second, CAS_RECONNECT_PENDING). Only on this failure path,
        only while the old key lives: at most one more authentication attempt per packet."""
        lame = self.lame_session_key
        if lame is None or lame.data is None or lame.data is dk or lame.key_id != packet[0] & 7:
            return None
        try:
            return lame.data.open_untrusted(packet, now)
        except BadPacket:
            return None

    def _guarded(self, step, *args) -> None:
        """Run a control step on the peer's input: what the peer got wrong ends here (counted,
        refused or failed), never in the caller."""
        try:
            step(*args)
        except BadPacket as e:
            self._count(e.reason)
        except ClientRefused as e:
            self._refuse(str(e), e.temporary)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True, tls_error=not isinstance(e, PushError))

    def token_policy_changed(self, policy: TokenPolicy | None, external: bool, now: float) -> None:
        """Server: a reload's auth-gen-token policy for this kept session (roles.ServerRole)."""
        if not self.closed and not self.role.is_client:
            self.role.token_policy_changed(policy, external, now)

    def auth_result(self, key_id: int, ok: bool, now: float, temporary: bool = False, client_reason: str = "",
                    why: str = "", check: object = None) -> None:
        """Server with defer_auth: the verdict on the AuthRequested of key `key_id` (`temporary`:
        not checked, the client should retry later; `client_reason`: AUTH_FAILED's text; `check`:
        the AuthRequested's, so that only that request is answered)."""
        if self.closed:
            return
        try:
            self.role.auth_result(key_id, ok, now, temporary, client_reason, why, check)
        except ClientRefused as e:
            self._refuse(str(e), e.temporary)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True, tls_error=not isinstance(e, PushError))
        self._flush(now)

    def tls_verify_result(self, key_id: int, ok: bool, now: float, check: object = None, tell: bool = True) -> None:
        """The tls-verify verdict on the TlsVerifyRequested of key `key_id` (`check`: that event's,
        so a verdict for an earlier TLS session under a reused key id decides nothing). A refusal
        fails the handshake as a refused certificate does: a TLS error, no AUTH_FAILED; the peer
        is told at once (tls.REFUSAL_NOTICE) unless `tell` is False."""
        if self.closed:
            return
        ks = self.keys.get(key_id)
        if ks is None or ks.tls is None or ks.tls is not check or ks.tls.verify_chain is None:
            return
        ks.tls.give_verdict(ok, tell)
        self._guarded(self._advance, ks, now)
        self._flush(now)

    def _hand_deadline(self, ks: KeyState) -> float:
        """When key `ks` must be negotiated: hand-window after it began, or as pending auth moved
        it (the server: auth_pending; the client: the server's AUTH_PENDING)."""
        return ks.hand_deadline if ks.hand_deadline is not None else ks.created + self.cfg.hand_window

    def auth_pending(self, key_id: int, extra: str, timeout: int, now: float) -> bool:
        """Server, management-client-auth's client-pending-auth: the login of key `key_id` waits
        longer, and the client is told so, as OpenVPN 2.6 tells it (push.c
        send_auth_pending_messages): `AUTH_PENDING` (`,timeout N` to a client announcing
        IV_PROTO_AUTH_PENDING_KW), then `INFO_PRE,<extra>` (a web login's URL, `WEB_AUTH::...`,
        or a challenge, `CR_TEXT:...`). The wait ends at most max(reneg-sec/2, hand-window) after
        the key began. False when no login of that key waits or `extra` is too long."""
        ks = self.keys.get(key_id)
        if self.closed or ks is None or ks.pending_auth is None or len(extra) + len("INFO_PRE,") + 1 > PUSH_BUNDLE_SIZE:
            return False     # (OpenVPN's limit: a control message of one push bundle)
        most = max(self.cfg.reneg_sec // 2, self.cfg.hand_window) - (now - ks.created)
        wait = max(0, int(min(timeout, most)))
        if not ks.sent_km:
            self._send_key_method(ks)       # OpenVPN's server sends its own before any text
        proto = iv_proto(self.peer_info)
        self._send_text(f"AUTH_PENDING,timeout {wait}" if proto & IV_PROTO_AUTH_PENDING_KW else "AUTH_PENDING", ks)
        self._send_text("INFO_PRE," + extra, ks)
        ks.hand_deadline = now + wait
        self._flush(now)
        return True

    def resume_push(self, ok: bool, now: float, reason: str = "", temporary: bool = False) -> None:
        """Server: the verdict a deferred push waited for (client-connect): push now, or refuse.
        Nothing to a client told RESTART/HALT meanwhile (a reload's, client-kill's): its end is
        coming, and a tunnel let up now would run under what the message was sent to undo."""
        if self.closed or self.push_sent or self.restart_sent:
            return
        ks = self.keys.get(0)
        try:
            if not ok:
                raise ClientRefused(reason or "client-connect refused the client", temporary)
            if ks is not None:
                self.role.send_push_reply(ks, now)
        except ClientRefused as e:
            self._refuse(str(e), e.temporary)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True, tls_error=not isinstance(e, PushError))
        self._flush(now)

    def encrypt(self, payload) -> bytes | list[bytes] | None:
        """Seal one tunnel packet for the wire (None if no key is up yet, or its ids are used up).
        With `fragment` (self.frag set): a list of wire packets, one or the parts of a split."""
        sk = self.send_key
        if sk is None:
            return None
        if sk.send_pid >= DATA_PID_RENEG_AT:
            # Near the end of the 32-bit packet-id space: ask for a new key (note_sent or the next
            # timer starts it) and never let the counter wrap, which would repeat an AEAD nonce.
            self._pid_reneg = True
            if sk.send_pid >= PID_MAX:
                self._count("packet-id space exhausted (send)")
                return None
        if self.comp is not None:
            payload = compress_stub(self.comp, payload)
        if self.frag is not None:
            parts = self._seal_parts(sk, payload)
            if parts:
                self.link_written += sum(map(len, parts)) + self._frame_len * len(parts)
            return parts
        w = sk.seal(payload)
        self.link_written += len(w) + self._frame_len
        return w

    def encrypt_many(self, payloads: list) -> list[bytes]:
        """encrypt() of each tunnel packet of a batch: the wire packets, in order (a payload
        encrypt() would refuse is left out, as the one-by-one loop does). One call seals the batch
        when nothing per packet can differ -- no compression stub, no fragmenting, and the batch
        ends before the packet id at which a new key is asked for; otherwise one by one."""
        sk = self.send_key
        if sk is None:
            return []
        n = len(payloads)
        if self.comp is not None or self.frag is not None or sk.send_pid + n >= DATA_PID_RENEG_AT:
            out: list = []
            encrypt = self.encrypt
            for p in payloads:
                w = encrypt(p)
                if w is None:
                    continue
                if isinstance(w, list):
                    out += w
                else:
                    out.append(w)
            return out
        out = sk.seal_many(payloads)
        self.link_written += sum(map(len, out)) + self._frame_len * n
        return out

    # ---- fragment N (fragment.py): both directions, only when the config says so
    def _seal_parts(self, sk: DataKey, payload) -> list[bytes]:
        """A payload framed (and split when too big) and sealed: a list of wire packets, which
        the data path sends in order (datapath.py)."""
        parts = self.frag.split(payload, self._fragment_size(sk))
        if not parts or sk.send_pid + len(parts) >= PID_MAX:
            self._count(self.frag.error or "packet-id space exhausted (send)")
            self.frag.error = None      # else counted again at the next part held (_unfragment)
            return []
        return [sk.seal(p) for p in parts]

    def _fragment_size(self, sk: DataKey) -> int:
        key = (sk.cipher, sk.hlen)
        size = self._frag_sizes.get(key)
        if size is None:
            spec = ciphers.spec(sk.cipher)
            size = max_fragment_size(spec, self.cfg.auth, sk.hlen == 4, self.cfg.fragment_room)
            # A room too small for any part (fragment 68 beside a CBC cipher with SHA512): every
            # payload is refused by split(), counted, as OpenVPN drops them.
            self._frag_sizes[key] = size = max(size, 0)
        return size

    def _unfragment(self, pt, now: float):
        """The payload inside a fragment-framed one, once whole; None while parts are missing or
        when the header is bad (counted under its reason, as OpenVPN's FRAG_IN errors)."""
        n = len(pt)
        pt = self.frag.take(pt, now)
        if pt is None:
            self.not_traffic += min(n, 4)
            if self.frag.error is not None:
                self._count(self.frag.error)
                self.frag.error = None
            return None
        return pt

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        try:
            self._timers(now)
        except ClientRefused as e:
            self._refuse(str(e), e.temporary)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True, tls_error=not isinstance(e, PushError))
        self._flush(now)

    def next_deadline(self) -> float | None:
        """When handle_timer wants to run next. O(1): the control side's timers are worked out
        once per control event (_flush); only the keepalive terms move with data."""
        if self.closed:
            return None
        d = self._ctl_deadline
        if self.exit_at is not None and (d is None or self.exit_at < d):
            d = self.exit_at
        if self.send_key is not None or self.accepted_unkeyed:
            if self.ping_interval and self.send_key is not None:
                t = self.last_send + self.ping_interval
                if d is None or t < d:
                    d = t
            if self.ping_restart:
                t = self.last_recv + self.ping_restart
                if d is None or t < d:
                    d = t
            if self.cfg.ping_exit:
                t = self.last_recv + self.cfg.ping_exit
                if d is None or t < d:
                    d = t
            if self._pid_reneg and (d is None or self.last_send < d):
                d = self.last_send        # packet ids run low: renegotiate at the next wake-up
        return d

    def note_sent(self, now: float) -> None:
        """The gateway tells us data went out (keeps the ping timer from firing). Also where a key
        whose packet ids run low (flagged by encrypt) starts its renegotiation."""
        self.last_send = now
        if self._pid_reneg:
            self._pid_reneg = False
            if not self.closed and self._start_soft_reset(now):
                self._flush(now)

    def tell_restart(self, now: float, message: str) -> bool:
        """Server: a RESTART or HALT control message to an established client (restart_message()
        when stopping with explicit-exit-notify, as OpenVPN 2.6's server; client-kill's text).
        The session stays open so the message is retransmitted until acknowledged
        (`control_acked`); close() ends it later. False if nothing was sent (over, no TLS
        session yet, or the key's TLS failed, `tls_broken`): then the caller ends the session
        with the exit notification, which the data channel still carries (review48e: a
        client-kill or a stop "told" nothing, skipped that notification as the message's
        acknowledgement had come, and the client waited for its ping-restart).

        A client whose login still waits (management-client-auth, a deferred script) is told
        too, as 2.6 sends it whatever the key's state (send_restart -> tls_send_payload): with
        TLS up it reads control messages, and dropped without a word it waited out its
        hand-window (60 s) before trying again. Our key-method message goes first if it has
        not (the client reads no text before it), as for AUTH_PENDING."""
        if self.closed or self.role.is_client:
            return False
        ks = None
        if not self.established:
            ks = self._active_ks()
            if ks is None or ks.tls is None or not ks.tls.handshake_done:
                return False
            if not ks.sent_km:
                self._send_key_method(ks)
        if not self._send_text(message, ks):
            return False
        self.restart_sent = True
        self._flush(now)
        return True

    @property
    def control_acked(self) -> bool:
        """Everything we sent on the control channel was acknowledged by the peer."""
        return all(ks.reliable.all_acked() for ks in self.keys.values())

    @property
    def exit_notify(self) -> int:
        """Client: explicit-exit-notify's N in seconds (0: none). A pushed value replaces the
        profile's, as OpenVPN 2.6 takes it from a push (init.c pull_permission_mask has
        OPT_P_EXPLICIT_NOTIFY); over TCP 0, as it drops the directive there (options.c
        options_postprocess_mutate_ce, init.c do_deferred_options)."""
        if self.tcp:
            return 0
        p = self.pushed
        if p is not None and p.explicit_exit_notify is not None:
            return p.explicit_exit_notify
        return self.cfg.explicit_exit_notify

    def notify_exit(self, now: float, first: bool) -> bool:
        """Client: one round of explicit-exit-notify (ClientRole.notify_exit); the session
        stays open so an EXIT is retransmitted until the gateway's wait ends. False if nothing
        could be sent. A point-to-point tls-server sends one too (OpenVPN 2.6: either p2p peer)."""
        if self.closed or not (self.role.is_client or self.cfg.p2p):
            return False
        sent = self.role.notify_exit(first)
        self._flush(now)
        return sent

    def send_control_text(self, text: str, now: float) -> bool:
        """Client: a control message its user sends (the management command `cr-response`:
        CR_RESPONSE,...), on the newest key with a TLS session; False when there is none yet,
        as OpenVPN 2.6's send_control_channel_string."""
        if self.closed or not self.role.is_client:
            return False
        if not self._send_text(text):      # (none up yet, or its TLS failed: tls_broken)
            return False
        self._flush(now)
        return True

    def hold_exit(self, now: float) -> None:
        """Server: the client said EXIT on the control channel. As OpenVPN 2.6's server
        (receive_exit_message -> schedule_exit), the session ends EXIT_HOLD seconds later, not at
        once: meanwhile its packets pass both ways and its address and peer-id stay its own, so
        what the client still sends in its explicit-exit-notify wait (an answer to another
        client's ping) is no "source the client does not own" on a session that took its
        address, and no new client is given that address while packets to it may still be on
        the way. Counted from the first EXIT: another one (a retransmission, or a hostile client
        repeating it) moves nothing, so no client holds its session past EXIT_HOLD by talking."""
        if self.exit_at is None and not self.closed:
            self.exit_at = now + EXIT_HOLD
            self.events.append(ev.ExitHeld(EXIT_HOLD))

    def close(self, now: float, reason: str = "exit") -> None:
        """Leave politely: exit notification to the peer, then closed."""
        if self.closed:
            return
        self.role.exit_notification()
        self._flush(now)
        self.closed = True
        self.events.append(ev.SessionClosed(reason, restart=False))

    def release(self) -> None:
        """After the end: drop the keys, TLS state and buffers at once. The server may still hold
        the record a while (a stale timer entry, until its time comes); a departed client must
        not keep ~300 KB of key material and scratch alive that long (a soak showed RSS climbing
        with connection churn)."""
        if self.final_counts is not None:
            return
        self.closed = True
        keys = {id(dk): dk for dk in [*self.recv_keys, self.send_key] if dk is not None}
        # What status and client-disconnect report still needs: each key's final byte counts.
        self._released_cert = self.peer_certificate
        # A chain certificate cryptography cannot read (a fingerprint-pinned peer sends what it
        # likes above its own): the disconnect script gets depth 0 only, counted in `stats`
        # (which the owner collects after release); the end goes on.
        self._released_chain = chain_or_depth0(lambda: self.peer_chain, self.stats) \
            if self._released_cert is not None else []
        self.final_counts = [(k, dk.bytes_recv, dk.bytes_sent) for k, dk in keys.items()]
        self.keys = {}
        self.recv_keys = [None] * 8
        self.send_key = None
        self.out = []
        # The two reference cycles through this session, broken: the role's back-reference and
        # the server's record (owner.session is this session). With them the departed client's
        # record, session and everything they hold (tls-crypt and HMAC contexts, replay windows,
        # the config's buffers) waited for a full run of Python's cyclic collector -- ~100
        # departed clients at any time in a soak of the tap server, and the RSS grew with the
        # churn. Now they go when the last reference does (the server's maps at its forget, a
        # stale timer entry when it comes due). Nothing uses either once the session is closed
        # (every entry point returns at `closed`).
        self.role.s = None
        self.owner = None

    def abort(self, reason: str) -> None:
        """End the session now, without telling the peer (the server dropping a client it
        replaces, or a TCP connection that went away). A SessionClosed event says why."""
        self._fail(reason, restart=False)

    def resume_after_cookie(self, own_sid: bytes, peer_sid: bytes, now: float) -> None:
        """Server: continue a handshake whose hard resets were exchanged statelessly (HMAC
        cookie): our session id is the cookie, both resets were message 0, and our reset used
        control replay id 1 of the wrapper."""
        if self.keys:
            raise LocalProtocolError("resume_after_cookie on a session that already started")
        self.own_sid = own_sid
        self.peer_sid = peer_sid
        ks = self._new_key_state(0, now)
        ks.resume_after_reset(self.tls_context, self.cfg.tls)
        self.wrapper.skip_packet_ids(1)
        self._flush(now)

    def renegotiate(self, now: float) -> None:
        """Start a soft reset now (as reneg-sec would)."""
        self._start_soft_reset(now)
        self._flush(now)

    # ------------------------------------------------------------------ control channel
    def _count(self, reason: str) -> None:
        self.stats[reason] = self.stats.get(reason, 0) + 1

    def _warn(self, message: str) -> None:
        """A Warning event, at most MAX_WARNINGS per session: a peer that sends kilobytes of
        junk text must not flood the log; the rest are counted in stats."""
        self._warnings += 1
        if self._warnings <= MAX_WARNINGS:
            self.events.append(ev.Warning(message))
            if self._warnings == MAX_WARNINGS:
                self.events.append(ev.Warning("further warnings of this session are only counted"))
        else:
            self._count("warnings suppressed")

    def _too_large(self, pt) -> None:
        """A tunnel packet over OpenVPN 2.6's frame payload size: dropped, counted; the first of
        a session logged (2.6 logs each at verb 1; a peer sending nothing else must not flood
        the log -- with a server's many clients, one line per client session at most)."""
        self._count(TOO_LARGE)
        self.not_traffic += len(pt) + self.framing
        if self.stats[TOO_LARGE] == 1:
            self._warn(f"dropped a {len(pt)}-byte packet from the peer: more than the {self._tun_write_max} "
                       f"bytes OpenVPN 2.6 takes with this tun-mtu (an MTU mismatch?); further ones are only counted")

    def _bad_framing(self, pt) -> None:
        """A payload whose stub framing is not this session's: dropped and counted, the
        session lives. OpenVPN 2.6 logs each ("Bad compression stub decompression header byte:
        N", verb 1); here the first of a session is logged with its byte, the rest counted (a
        peer sending nothing else must not flood the log)."""
        self._count("bad compression framing")
        if self.stats["bad compression framing"] == 1:
            self._warn(f"dropped a packet with compression header byte {framing_byte(self.comp, pt)}, not this "
                       f"session's framing ({self.comp}), as OpenVPN 2.6 drops it; further ones are only counted")

    def _new_key_state(self, key_id: int, now: float) -> KeyState:
        ks = KeyState(key_id, now, self.cfg.tls_timeout, self.tcp)
        self.keys[key_id] = ks
        self.newest_key_id = key_id
        return ks

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's certificate (cryptography x509) from the newest key that completed TLS (kept
        past release: the disconnect notification and script still name the client by it)."""
        if self.final_counts is not None:
            return self._released_cert
        for ks in sorted(self.keys.values(), key=lambda k: -k.key_id):
            if ks.tls is not None and ks.tls.peer_cert is not None:
                return ks.tls.peer_cert
        return None

    @property
    def peer_chain(self) -> list:
        """The verified chain above peer_certificate (kept with crl-verify only), for checking a
        reloaded CRL against the sub-CAs too, and for the scripts' depth 1.. variables (kept past
        release with the certificate, for the disconnect notification and script)."""
        if self.final_counts is not None:
            return self._released_chain
        for ks in sorted(self.keys.values(), key=lambda k: -k.key_id):
            if ks.tls is not None and ks.tls.peer_cert is not None:
                return ks.tls.peer_chain
        return []

    def _newest(self) -> KeyState | None:
        return self.keys.get(self.newest_key_id) if self.newest_key_id is not None else None

    def _refuse(self, reason: str, temporary: bool = False) -> None:
        """A peer we will not keep (changed identity, not admitted): the server says AUTH_FAILED
        and drops the client for good; a client starts over with a fresh connection."""
        if isinstance(self.role, ServerRole):
            self.role.refuse(self._newest(), reason, temporary)
        else:
            self._fail(reason, restart=True, tls_error=True)      # a fresh connection verifies the server anew

    # ---- server side (kept here: the cipher registry work edits it in place)
    def ncp_lists(self) -> tuple[tuple[str, ...], str | None]:
        """The data-ciphers and fallback this client's cipher is chosen from: its per-client
        lines' (client_ncp) or the config's."""
        return self.client_ncp or (tuple(self.cfg.data_ciphers), self.cfg.data_ciphers_fallback)

    def _negotiate_cipher(self) -> str | None:
        """The client's data cipher, None when it has none in common with ours (the caller
        refuses it as 2.6 does: roles.NO_SHARED_CIPHER). Asked at the push, after the client's
        per-client lines (roles.ServerRole.send_push_reply)."""
        return ciphers.choose(self.peer_info, *self.ncp_lists(), self.peer_occ_cipher)

    # ---- keys
    def _key_block(self, ks: KeyState) -> bytes:
        block, ks.ekm_block = ks.ekm_block, None        # taken once, used or not (a PRF push)
        if self.ekm:
            return block if block is not None else ks.tls.export_keying_material(EKM_LABEL, KEY_BLOCK_LEN)
        c, s = (ks.local_km, ks.remote_km) if self.is_client else (ks.remote_km, ks.local_km)
        csid, ssid = (self.own_sid, self.peer_sid) if self.is_client else (self.peer_sid, self.own_sid)
        return prf_key_block(c.pre_master, c.random1, s.random1, c.random2, s.random2, csid, ssid)

    def _install_keys(self, ks: KeyState, now: float) -> None:
        if ks.remote_km is None or ks.local_km is None:
            return
        if self.cipher is None:
            if not self.is_client and not self.push_sent and not self.closed:
                # A server's client before its push: accepted, its data keys made once the
                # cipher is chosen after its per-client lines (roles.ServerRole.send_push_reply),
                # as 2.6.14 generates them only then (multi.c multi_client_generate_tls_keys).
                ks.phase = KS.ACTIVE
                if ks.active_since is None:
                    ks.active_since = now
                self.accepted_unkeyed = True
            return
        sk, sh, rk, rh = split_key_block(self._key_block(ks), self.is_client)
        peer_id = self.peer_id if self.peer_id is not None and self.peer_id != NO_PEER_ID else None
        ks.data = DataKey(self.cipher, ks.key_id, sk, sh, rk, rh, peer_id, self.cfg.auth,
                          self.cfg.replay_window, self.cfg.replay_time)
        self.recv_keys[ks.key_id] = ks.data
        ks.phase = KS.ACTIVE
        ks.active_since = now
        if not self.established:
            self._switch_send_key(ks, now)
            self.role.keys_installed(ks)
        else:
            # Renegotiation: decrypt with the new key at once, but send with it only once the peer
            # has our key-method message (all our control messages acked), so it can decrypt.
            ks.pending_send = True
            self._maybe_switch(ks, now)

    def _maybe_switch(self, ks: KeyState, now: float) -> None:
        if ks.pending_send and ks.reliable.all_acked():
            ks.pending_send = False
            self._switch_send_key(ks, now)
            self.events.append(ev.KeyRenegotiated(ks.key_id, self.cipher or ""))

    def _switch_send_key(self, ks: KeyState, now: float) -> None:
        # The keys `ks` replaces live on as lame ducks until tran-window after the soft reset
        # that began `ks` (its creation), as OpenVPN 2.6 (ssl.c key_state_soft_reset sets the
        # old key's must_die then), not after this switch: a slow handshake gave the old key
        # that much longer. One already doomed by a failed renegotiation keeps its earlier end.
        for other in self.keys.values():
            if other is ks:
                continue
            if other.phase == KS.ACTIVE and other.retired_at is None:
                self._retire(other, ks.created)
        lame = self.lame_session_key
        if lame is not None and lame is not ks and lame.retired_at is None:
            self._retire(lame, ks.created)
        self.send_key = ks.data
        self._pid_reneg = False

    def _retire(self, old: KeyState, soft_reset_at: float) -> None:
        """Make `old` a lame duck whose tran-window counts from `soft_reset_at`, or from the
        failed renegotiation that set its `expires_at` if that ends sooner."""
        since = soft_reset_at
        if old.expires_at is not None:
            since = min(since, old.expires_at - self.cfg.tran_window)
        old.retire(since)

    def _set_established(self) -> None:
        if self.established:
            return
        self.established = True
        self.events.append(ev.TunnelUp(self.cipher or "", "tls-ekm" if self.ekm else "prf",
                                       self.peer_id, self.pushed))

    # ---- renegotiation
    def _next_key_id(self) -> int:
        k = self.next_key_id
        self.next_key_id = 1 if k >= 7 else k + 1
        return k

    def _start_soft_reset(self, now: float) -> bool:
        """Begin renegotiating; False if one is already under way (one at a time), or when the
        session only waits for its end (hold_exit; 2.6's schedule_exit makes it single-session)."""
        if self.exit_at is not None:
            return False
        newest = self._newest()
        if newest is not None and newest.phase != KS.ACTIVE:
            return False
        key_id = self._next_key_id()
        old = self.keys.pop(key_id, None)
        if old is not None:
            self.recv_keys[key_id] = None
        ks = self._new_key_state(key_id, now)
        ks.ours = True
        ks.reliable.enqueue(Op.CONTROL_SOFT_RESET_V1, b"")
        self._free_lame_ducks()
        return True

    def _may_answer_soft_reset(self, key_id: int, cb, now: float) -> bool:
        """The peer's soft reset opens a key id no key state has: answered unless a renegotiation
        the peer started is still negotiating. Answering each one let an authenticated client
        run a TLS handshake on the server for every free key id at once (6 measured). OpenVPN
        2.6 keeps one key in negotiation at a time (ssl.c tls_pre_decrypt: a soft reset makes a
        new primary key only once the primary has generated its keys; until then it goes to
        the primary and another key id is dropped as "key IDs out of sync"). Ours may run next
        to the peer's (at most two, one each way; _start_soft_reset starts ours only when the
        newest key is active): when both ends start at once with different ids (one end's
        earlier attempt failed unseen, so it is one id ahead), an OpenVPN peer drops our soft
        reset and keeps its own, so only answering its one completes -- dropping it instead
        cost the client a new TLS session (tests/interop/test_failed_renegotiation.py)."""
        if any(k.negotiating and not k.ours for k in self.keys.values()):
            self._count("soft reset while a renegotiation the peer started is under way")
            return False
        # At most PEER_RENEG_BURST in a row, then one per PEER_RENEG_EVERY seconds. Why: each is
        # a full TLS handshake on our side (~6 ms of CPU, more than the peer's own in native
        # code), and unlike new connections (connect-freq, the stateless cookie exchange) nothing
        # else bounds how often an authenticated peer starts one: a client renegotiating in a
        # loop kept the server's core busy for everybody. The soft reset over the rate is held,
        # unacked, and answered by the timer once the rate allows (_answer_held_reset); a resend
        # of it meanwhile takes its place. Not dropped: over TCP our reliability layer resends
        # nothing, so our own client's dropped soft reset was never seen again and its
        # renegotiation failed at hand-window; a Debian OpenVPN 2.6 client over TCP whose soft
        # reset was dropped at the end of a transfer had no new key for minutes after (OpenVPN
        # has no such limit; its peers renegotiate at reneg-sec/-bytes/-pkts, which reneg-bytes
        # can make many a second).
        tokens = min(float(PEER_RENEG_BURST), self._reneg_tokens + (now - self._reneg_tokens_at) / PEER_RENEG_EVERY)
        self._reneg_tokens_at = now
        if tokens < 1:
            self._reneg_tokens = tokens
            self._count("soft reset over the peer's renegotiation rate (held until it allows)")
            self._held_reset = (now + (1 - tokens) * PEER_RENEG_EVERY, key_id, cb)
            return False
        self._reneg_tokens = tokens - 1
        self._held_reset = None
        return True

    def _answer_held_reset(self, now: float) -> None:
        """The timer's turn for a soft reset held over the rate (_may_answer_soft_reset): read
        now as if it came in now, unless its key id was opened meanwhile or the session moved on."""
        _, key_id, cb = self._held_reset
        self._held_reset = None
        old = self.keys.get(key_id)            # a lame duck's id is taken over, as _receive_control does
        if (old is not None and (key_id == self.newest_key_id or old.negotiating)) or not self.established \
                or not self._may_answer_soft_reset(key_id, cb, now):
            return
        try:
            self._receive_on_key(self._answer_soft_reset(key_id, now), Op.CONTROL_SOFT_RESET_V1, cb, now)
        except BadPacket as e:
            self._count(f"held soft reset dropped: {e}")

    def _answer_soft_reset(self, key_id: int, now: float) -> KeyState:
        old = self.keys.pop(key_id, None)
        if old is not None:
            self.recv_keys[key_id] = None
        ks = self._new_key_state(key_id, now)
        ks.reliable.enqueue(Op.CONTROL_SOFT_RESET_V1, b"")
        self.next_key_id = 1 if key_id >= 7 else key_id + 1
        self._free_lame_ducks()
        return ks

    def _free_lame_ducks(self) -> None:
        """A new renegotiation begins: the lame duck of the one before goes now, as OpenVPN 2.6
        (key_state_soft_reset frees its KS_LAME_DUCK before the key in use takes that place):
        one old key decrypts at a time, the one the new key will replace. Before, every old key
        lived out its own tran-window: with a short reneg-sec, up to six of them at once. (A
        client's key of a failed TLS session, lame_session_key, is 2.6's lame-duck session,
        which a soft reset does not touch.)"""
        for k in [k for k in self.keys.values() if k.retired_at is not None]:
            if self.recv_keys[k.key_id] is k.data:
                self.recv_keys[k.key_id] = None
            del self.keys[k.key_id]

    # ---- timers
    def _timers(self, now: float) -> None:
        if self.exit_at is not None and now >= self.exit_at:
            self._fail(CLIENT_EXITED, restart=False)
            return
        if self._held_reset is not None and now >= self._held_reset[0]:
            self._answer_held_reset(now)
        if self._recover_at is not None and now >= self._recover_at:
            self._recover(now)
        for ks in list(self.keys.values()):
            if self.keys.get(ks.key_id) is not ks:
                continue                    # a new TLS session replaced the key states meanwhile
            if ks.negotiating and now >= self._hand_deadline(ks):
                self._negotiation_timed_out(ks, now)
            if ks.refusal is not None and now >= self._hand_deadline(ks):
                raise ClientRefused(ks.refusal)     # its key-method message never came
            if ks.retired_at is not None and now >= ks.retired_at + self.cfg.tran_window:
                self.recv_keys[ks.key_id] = None
                del self.keys[ks.key_id]
            if ks.expires_at is not None and now >= ks.expires_at:
                raise RemoteProtocolError(f"key {ks.key_id} expired (tran-window {self.cfg.tran_window} s after a "
                                          "failed renegotiation) and no new key was negotiated")
        lame = self.lame_session_key
        if lame is not None:
            if lame.retired_at is not None and now >= lame.retired_at + self.cfg.tran_window:
                if self.recv_keys[lame.key_id] is lame.data:
                    self.recv_keys[lame.key_id] = None
                self.lame_session_key = None
            elif lame.expires_at is not None and now >= lame.expires_at:
                raise RemoteProtocolError(f"key {lame.key_id} expired (tran-window {self.cfg.tran_window} s after a "
                                          "failed renegotiation) and no new key was negotiated")
        if self.token_renew_at is not None and now >= self.token_renew_at:
            self.role.renew_token(now)
        if self.next_push_request is not None and now >= self.next_push_request:
            ks0 = self.keys.get(0)
            if ks0 is not None and ks0.phase == KS.PUSH:
                self._send_text("PUSH_REQUEST", ks0)
                self.next_push_request = now + PUSH_REQUEST_INTERVAL
            elif self.repulls_left and ks0 is not None and ks0.data is not None and not ks0.data.packets_recv:
                # A new TLS session's key, and nothing from the server on it yet: see
                # ClientRole.got_key_method (OpenVPN's server makes its keys only when poked).
                self.repulls_left -= 1
                self._send_text("PUSH_REQUEST", ks0)
                self.next_push_request = now + PUSH_REQUEST_INTERVAL
            elif self.established:
                self.repulls_left = 0
                self.next_push_request = None
            else:
                self.next_push_request = now + PUSH_REQUEST_INTERVAL
        sk = self.send_key
        if sk is not None or self.accepted_unkeyed:
            if self.cfg.ping_exit and now >= self.last_recv + self.cfg.ping_exit:
                self._fail(f"inactivity timeout (ping-exit {self.cfg.ping_exit}s)", restart=False)
                return
            if self.ping_restart and now >= self.last_recv + self.ping_restart:
                self._fail(f"inactivity timeout (ping-restart {self.ping_restart}s)", restart=True)
                return
        if sk is not None:
            if self.ping_interval and now >= self.last_send + self.ping_interval:
                self._queue_data(PING_MAGIC)
                self.last_send = now
            if now >= self.reneg_check_at:
                self.reneg_check_at = now + self._counter_check_interval()
            newest = self._newest()
            if newest is not None and newest.phase == KS.ACTIVE and newest.active_since is not None \
                    and self.exit_at is None and now >= self._reneg_hold:
                # (the EXIT's hold renegotiates nothing, as 2.6's schedule_exit: single session)
                d = newest.data
                if ((self.cfg.reneg_sec and now >= newest.active_since + self.cfg.reneg_sec)
                        or (self.cfg.reneg_bytes and d and d.bytes_sent + d.bytes_recv >= self.cfg.reneg_bytes)
                        or (self.cfg.reneg_pkts and d and d.packets_sent + d.packets_recv >= self.cfg.reneg_pkts)
                        or (d is not None and d.send_pid >= DATA_PID_RENEG_AT)
                        or (d is not None and d.usage_over())):
                    self._start_soft_reset(now)

    def _counter_check_interval(self) -> float:
        """How often the timer looks at the data key's counters: reneg-bytes / reneg-pkts ask
        for a close look; an AES-GCM key's usage limit alone for an occasional one."""
        if self.cfg.reneg_bytes or self.cfg.reneg_pkts:
            return RENEG_CHECK_INTERVAL
        return USAGE_CHECK_INTERVAL

    def _contain_tls_failure(self, ks: KeyState, e: RemoteProtocolError, now: float) -> bool:
        """TLS of key `ks` failed on what reached it (`e`, from feed or pump): True when the
        session goes on without it, False when the failure ends the session (the caller raises).

        Why: the control packets that carry TLS are authenticated by the tls-auth / tls-crypt
        key only, which every user of a profile holds: one who sees a connected peer's control
        packets (their ids read through that key) can wrap bytes that are no TLS in its session
        under the next message id. OpenVPN 2.6 ends the whole TLS session then, its data keys
        with it (ssl.c tls_multi_process), and so did we: a third party ended someone else's
        tunnel with one packet, until its ping-restart. Now, once the session is up:
        - a key whose handshake was done and that carries data (ACTIVE) keeps its data keys,
          which no key holder has; its control channel is over (`tls_broken`: acked, not
          read, nothing sent) and a renegotiation replaces it (_recover, at most one per
          RECOVERY_EVERY);
        - a renegotiation's handshake that fails is that renegotiation's failure only, as one
          that misses hand-window (_renegotiation_failed): the key in use goes on, and a new
          one is tried (_recover) -- over TCP, as there, the session ends.
        A failure about the peer's certificate (verification, our checks, tls-verify) stays
        fatal: a revoked or changed identity must never keep its tunnel. Before the first key
        is up, too: there is no data channel to keep. Each is counted and said at a limited
        rate (logpace.NoteLimit)."""
        if not self.established or isinstance(e, VerifyRefused) or self.keys.get(ks.key_id) is not ks \
                or (ks.tls is not None and ks.tls.identity_refused):
            return False
        if ks.phase == KS.ACTIVE and ks.tls is not None and ks.tls.handshake_done and ks.retired_at is None:
            ks.tls_broken = True
            self._count("TLS failed on an established key (its data channel kept)")
            self._say_tls_failure(f"TLS error on key {ks.key_id} ({e}): its data channel is kept, its control "
                                  "channel dropped; a renegotiation replaces it", now)
            self._want_recovery(now)
            return True
        if ks.negotiating:
            self._renegotiation_failed(ks, f"TLS error in the renegotiation ({e})", now, retry=False)
            self._want_recovery(now)
            return True
        return False

    def _say_tls_failure(self, message: str, now: float) -> None:
        """A contained TLS failure's warning, at most NoteLimit's pace per session."""
        held = self._tls_failures_said.due(now)
        if held is not None:
            self._warn(message + times(held))

    def _want_recovery(self, now: float) -> None:
        """Ask for the renegotiation that replaces a failed TLS: now, or RECOVERY_EVERY after
        the last one began."""
        if self._recover_at is None:
            self._recover_at = max(now, self._recovered_at + RECOVERY_EVERY)

    def _recover(self, now: float) -> None:
        """_want_recovery's time came: a client whose renegotiation failed begins a new TLS
        session (as after hand-window, _new_tls_session); otherwise a soft reset under a new key
        id (either end may start one; OpenVPN 2.6 answers a server's as a client's) when the
        key in use is broken or doomed by a failed renegotiation -- not when a renegotiation is
        under way or has replaced it meanwhile (reneg-sec, the peer's)."""
        self._recover_at = None
        current, self._failed_over = self._failed_over, None
        if current is not None and current.retired_at is None and current.data is not None \
                and current.data is self.send_key:
            self._recovered_at = now
            self._new_tls_session(current, now)
            return
        newest = self._newest()
        if newest is None or newest.phase != KS.ACTIVE or newest.retired_at is not None \
                or not (newest.tls_broken or newest.expires_at is not None):
            return
        if self._start_soft_reset(now):
            self._recovered_at = now
            self._count("renegotiation to replace a failed TLS")

    def _negotiation_timed_out(self, ks: KeyState, now: float) -> None:
        """hand-window passed with key state `ks` still negotiating. As OpenVPN 2.6 (ssl.c,
        tls_multi_process): over UDP, a renegotiation that fails while the key in use has its data
        keys costs only the new key state -- the old key goes on as a lame duck until tran-window
        after the failed attempt began, and the session ends only if no renegotiation succeeds
        by then; the first handshake failing, or any failure over TCP (OpenVPN counts it as a
        soft error, which restarts a connection-oriented session), ends the session. The
        server retries when its reneg trigger still holds; the client starts a new TLS session
        at once (_new_tls_session), as OpenVPN's client does, and again after each one that
        fails, until the old key's tran-window ends."""
        self._renegotiation_failed(ks, f"TLS key negotiation failed to occur within {self.cfg.hand_window} seconds",
                                   now, retry=True)

    def _renegotiation_failed(self, ks: KeyState, msg: str, now: float, retry: bool) -> None:
        """Key state `ks` will not be negotiated (`msg`: why): _negotiation_timed_out's
        decision, also for a renegotiation whose TLS failed (_contain_tls_failure). `retry`:
        a client starts its new TLS session now (the hand-window case); otherwise it is left to
        _recover, at its bounded pace, and so is the server's next attempt (_reneg_hold)."""
        current = next((k for k in self.keys.values()
                        if k.data is not None and k.data is self.send_key and k.retired_at is None), None)
        if current is None and self.lame_session_key is not None and self.lame_session_key.retired_at is None:
            # The new TLS session failed too: OpenVPN's client counts no hard error while the
            # old session's key lives (get_key_scan sees it) and tries a new session again.
            current = self.lame_session_key
        if self.tcp or current is None or current is ks:
            raise RemoteProtocolError(msg)
        del self.keys[ks.key_id]
        if self.recv_keys[ks.key_id] is ks.data:
            self.recv_keys[ks.key_id] = None
        self.newest_key_id = current.key_id
        if current.expires_at is None:
            current.expires_at = ks.created + self.cfg.tran_window
        self._count("renegotiation failed")
        said = (f"{msg}: renegotiation (key {ks.key_id}) abandoned; key {current.key_id} stays in use "
                f"for at most {max(0.0, current.expires_at - now):.0f} s more")
        if retry:
            self._warn(said)
        else:
            self._say_tls_failure(said, now)
        if not retry:
            self._reneg_hold = now + RECOVERY_EVERY
            if self.is_client:
                self._failed_over = current
        elif self.is_client:
            self._new_tls_session(current, now)

    def _new_tls_session(self, current: KeyState, now: float) -> None:
        """Client, after a renegotiation missed hand-window: as OpenVPN 2.6's client (ssl.c,
        tls_multi_process: the failed TM_ACTIVE session goes to the lame-duck slot, a fresh one
        starts), begin a new TLS session on the same link -- new session id, hard reset, key id
        0 -- while `current` keeps carrying data until the new key takes over or tran-window
        ends. Why not another soft reset: an OpenVPN server whose own attempt timed out has
        moved the old session aside and refuses its control packets ("stale session-id"), so
        soft resets under the old session id could never succeed and the tunnel ran on the old
        key until tran-window, then restarted. The new session logs in again (with the
        auth-token if one was pushed); its key takes over as a renegotiated one would."""
        for k in list(self.keys.values()):
            if k is not current and self.recv_keys[k.key_id] is k.data:
                self.recv_keys[k.key_id] = None
        self.keys = {}
        self.lame_session_key = current
        self.own_sid = self.cfg.random_bytes(8)
        self.peer_sid = None
        self.wrapper = self.cfg.make_wrapper()      # each TLS session has its own control packet ids
        self.next_key_id = 1
        self.newest_key_id = None
        self.role.start(now)
        self._count("new TLS session after a failed renegotiation")

    def _control_deadline(self) -> float | None:
        """The earliest control-side timer (retransmits, hand-window, reneg-sec, tran-window, push
        requests, the reneg counter check); everything here changes only on control events."""
        d = _NEVER
        newest = self._newest()
        for ks in self.keys.values():
            r = ks.reliable.next_deadline()
            if r is not None and r < d:
                d = r
            if ks.negotiating or ks.refusal is not None:
                d = min(d, self._hand_deadline(ks))
            elif (ks is newest and ks.phase == KS.ACTIVE and ks.active_since is not None
                  and self.cfg.reneg_sec and self.exit_at is None):     # (none in the EXIT's hold)
                d = min(d, max(ks.active_since + self.cfg.reneg_sec, self._reneg_hold))
            if ks.retired_at is not None:
                d = min(d, ks.retired_at + self.cfg.tran_window)
            if ks.expires_at is not None:
                d = min(d, ks.expires_at)
        if self.next_push_request is not None:
            d = min(d, self.next_push_request)
        if self.token_renew_at is not None:
            d = min(d, self.token_renew_at)
        if self._held_reset is not None:
            d = min(d, self._held_reset[0])
        if self._recover_at is not None:
            d = min(d, self._recover_at)
        lame = self.lame_session_key
        if lame is not None:
            d = min(d, lame.retired_at + self.cfg.tran_window if lame.retired_at is not None
                    else lame.expires_at if lame.expires_at is not None else _NEVER)
        if self.send_key is not None and (self.cfg.reneg_bytes or self.cfg.reneg_pkts or self.send_key.usage_limit):
            # A fixed periodic look at the counters: a deadline tied to traffic (such as
            # last_send) keeps moving while data flows, and would never come during a transfer.
            d = min(d, self.reneg_check_at)
        return None if d == _NEVER else d

    def _fail(self, reason: str, restart: bool, same_remote: bool = False, next_remote: bool = False,
              backoff: int = 0, skip_addresses: bool = False, tls_error: bool = False,
              purge_auth: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.events.append(ev.SessionClosed(reason, restart, same_remote, next_remote, backoff, skip_addresses,
                                            tls_error, purge_auth))

    # ---- data-channel helpers (rare paths)
    def _decompress(self, pt):
        """A payload of a session with real compression (compression.py), decompressed within the
        largest packet the tunnel carries; None (counted, warned at a limited rate) when the peer's
        framing or compressed data is bad: the packet is dropped, the session lives."""
        try:
            out = decompress(self.comp, pt, self._decompress_limit)
        except DecompressError as e:
            self._count("decompression failed")
            self._warn(f"dropped a packet that does not decompress ({e})")
            return None
        if out is None:
            self._count("bad compression framing")
        elif not self._decompressed_one and compressed(self.comp, pt):
            self._decompressed_one = True
            self.events.append(ev.Decompressing(self.comp, len(pt), len(out)))
        return out

    def _queue_data(self, payload: bytes) -> None:
        """A ping or exit notification through the data channel (dropped if the ids ran out),
        framed like every other payload when the session uses compression framing: OpenVPN frames
        its pings and OCC messages too, and drops an unframed one ("Bad compression stub
        decompression header byte"), so a `comp-lzo no` peer would never see our pings."""
        sk = self.send_key
        if sk is not None and sk.send_pid < PID_MAX:
            if self.comp is not None:
                payload = compress_stub(self.comp, payload)
            self.not_traffic += len(payload)
            if self.frag is not None:
                self.out.extend(self._seal_parts(sk, payload))
            else:
                self.out.append(sk.seal(payload))

    def _occ(self, pt, now: float) -> None:
        if pt[16] == OCC_EXIT:
            self._fail(PEER_EXITED, restart=self.role.peer_exit_restarts())
