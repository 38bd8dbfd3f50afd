"""One key state: the negotiation and keys of one key id (0 for the first handshake, 1..7 after).

Why a module of its own: the phases are the part of a session a reader most needs to see at a
glance. Each phase names what is valid in it; fields outside their phase stay None/False:

    RESET          `reliable` only: the (hard or soft) resets are being exchanged
    TLS            + `tls`: the TLS handshake runs over the reliable channel
    KEY_EXCHANGE   + `local_km` / `remote_km`: key-method-2 messages travel inside TLS
    PUSH           client, key 0 only: keys known, waiting for the PUSH_REPLY (cipher, peer-id)
    ACTIVE         + `data` (and `active_since`): decrypts; sends once `pending_send` is cleared;
                   `tls_broken`: its TLS failed after the handshake, data only until replaced
    retired        ACTIVE with `retired_at` set: a lame duck that only decrypts until tran-window
                   ends; its TLS object and reliability layer are dropped (`retire`) so a client
                   that renegotiates often pins no memory for them
    DEAD           never used again
"""
from __future__ import annotations

from enum import Enum

from .datachannel import DataKey
from .keymethod import KeyMethod2
from .reliable import ReliableChannel
from .tls import TlsEndpoint


class KS(Enum):
    """Phases of one key state."""
    RESET = 1        # resets being exchanged
    TLS = 2          # TLS handshake running
    KEY_EXCHANGE = 3  # key-method-2 messages being exchanged
    PUSH = 4         # client, key 0: waiting for PUSH_REPLY
    ACTIVE = 5
    DEAD = 6


class KeyState:
    __slots__ = ("key_id", "phase", "reliable", "tls", "primed", "created", "active_since", "local_km",
                 "remote_km", "sent_km", "data", "retired_at", "wkc_resend", "sent_first_control",
                 "pending_send", "pending_auth", "expires_at", "ours", "hand_deadline", "auth_pending_at",
                 "cr_responses", "refusal", "tls_broken", "ekm_block")

    def __init__(self, key_id: int, now: float, tls_timeout: float, tcp: bool) -> None:
        self.key_id = key_id
        self.phase = KS.RESET
        self.reliable = ReliableChannel(initial_timeout=tls_timeout, retransmit=not tcp)
        self.tls: TlsEndpoint | None = None
        self.primed: TlsEndpoint | None = None   # client: made before its hard reset goes out
        self.created = now
        self.active_since: float | None = None
        self.local_km: KeyMethod2 | None = None
        self.remote_km: KeyMethod2 | None = None
        self.sent_km = False
        self.data: DataKey | None = None
        self.retired_at: float | None = None
        self.wkc_resend = False           # the server asked (early negotiation) for our WKc again
        self.sent_first_control = False
        self.pending_send = False         # ACTIVE, but the peer may not have our keys yet
        self.pending_auth: KeyMethod2 | None = None   # server: the client's message, awaiting auth_result
        self.expires_at: float | None = None   # still sending after a failed renegotiation: ends here
        self.ours = False                 # a renegotiation this end started (its soft reset went first)
        self.hand_deadline: float | None = None   # pending auth moved hand-window's end here
        self.auth_pending_at: float | None = None  # client: the server's first AUTH_PENDING for this key
        self.cr_responses = 0             # server: the client's CR_RESPONSE messages on this key
        # Server: why this first key was refused at its handshake's end (a restart showing another
        # certificate, Session.lock_identity_of): said once the client's key-method message came,
        # so that message is acked (control.py _advance).
        self.refusal: str | None = None
        # ACTIVE, but its TLS session failed (bytes that are no TLS of the peer's, such as a
        # forgery by a holder of the shared tls-auth / tls-crypt key): the data keys go on, the
        # control channel of this key reads and writes nothing more; a renegotiation replaces
        # it (Session._contain_tls_failure). `tls` is kept for the peer's certificate.
        self.tls_broken = False
        # Client, first key: the TLS-EKM key block, exported once both key-method messages are
        # read (the push only says whether it is used); Session._key_block takes it.
        self.ekm_block: bytes | None = None

    @property
    def negotiating(self) -> bool:
        """Still inside hand-window: neither usable nor finished."""
        return self.phase is not KS.ACTIVE and self.phase is not KS.DEAD

    def start_tls(self, context, settings) -> None:
        """RESET → TLS: the resets are through, the TLS handshake begins."""
        self.phase = KS.TLS
        self.tls, self.primed = self.primed or TlsEndpoint(context, settings), None

    def prime_tls(self, context, settings) -> None:
        """Client, phase RESET: make the TLS endpoint and its ClientHello now, before the hard
        reset goes out, instead of after the server's reset arrives."""
        if self.phase == KS.RESET and self.tls is None and self.primed is None:
            t = TlsEndpoint(context, settings)
            if t.prime():
                self.primed = t

    def resume_after_reset(self, context, settings) -> None:
        """Both hard resets (message 0 each way) were exchanged elsewhere (the server's stateless
        cookie exchange): continue at message 1 in phase TLS."""
        self.reliable.next_send_id = 1
        self.reliable.next_recv_id = 1
        self.start_tls(context, settings)

    def retire(self, since: float) -> None:
        """Become a lame duck: only `data` (decrypt) is kept; TLS and its buffers are let go.
        `since`: where its tran-window starts (the successor's soft reset, as OpenVPN 2.6)."""
        self.retired_at = since
        self.expires_at = None            # a successor took over: tran-window decides from now on
        self.tls = None
        self.ekm_block = None
        self.local_km = self.remote_km = None
