"""One OpenVPN peer session as a pure state machine, in either role.

Contract (the rules a caller relies on):
1. Nothing here reads a clock, opens a socket or sleeps: every entry point takes `now` (seconds,
   monotonic) and the caller owns time. Randomness comes from `SessionConfig.random_bytes`.
2. Inputs: `receive(packet, now)` for one whole OpenVPN packet (a UDP datagram, or a de-framed TCP
   packet), `encrypt(payload)` for a tunnel packet to send, `handle_timer(now)` when `next_deadline()`
   has passed, `close(now)` to leave.
3. Outputs: `receive` returns the tunnel packets it decrypted (memoryviews valid until the next call);
   `encrypt` returns the wire packet or None when there is no key yet; `take_outgoing()` returns the
   control/ping packets queued by any call; `events` holds rare events (events.py).
4. Peer misbehaviour never raises out of `receive`: a bad packet is counted in `stats` and dropped;
   a fatal protocol error closes the session with a SessionClosed event.

Key states: one per key id (0 for the first handshake, 1..7 for renegotiations) with its own
reliability layer and TLS session. The newest active key sends; older ones stay as "lame ducks"
for `tran_window` seconds so packets in flight still decrypt.
"""
from __future__ import annotations

import base64
import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from . import events as ev
from . import ciphers
from .ciphers import is_supported
from .datachannel import DataKey
from .errors import BadPacket, RemoteProtocolError
from .keymethod import (KeyMethod2, PushedOptions, PushRejected, build_push_reply,
                        decode_key_method_2_untrusted, encode_key_method_2, parse_push_reply_untrusted,
                        split_text_messages_untrusted)
from .keys import EKM_LABEL, KEY_BLOCK_LEN, prf_key_block, split_key_block
from .opcodes import (EARLY_NEG_FLAG_RESEND_WKC, EARLY_NEG_FLAGS, HARD_RESET_CLIENT_OPS,
                      IV_PROTO_CC_EXIT_NOTIFY, IV_PROTO_DATA_V2, IV_PROTO_REQUEST_PUSH,
                      IV_PROTO_TLS_KEY_EXPORT, NO_PEER_ID, OCC_EXIT, OCC_MAGIC, PING_MAGIC, Op,
                      op_byte)
from .packet import decode_body_untrusted, encode_body, parse_early_neg_tlvs_untrusted
from .reliable import ReliableChannel
from .tls import TlsEndpoint, TlsSettings, build_context, common_name

TLS_MTU = 1250
PUSH_REQUEST_INTERVAL = 2.0
RENEG_CHECK_INTERVAL = 0.1      # how often reneg-bytes / reneg-pkts counters are looked at (only when set)
ACK_PIGGYBACK = 4
ACK_STANDALONE = 8
IV_PROTO_CLIENT = IV_PROTO_DATA_V2 | IV_PROTO_REQUEST_PUSH | IV_PROTO_TLS_KEY_EXPORT | IV_PROTO_CC_EXIT_NOTIFY


class Role(str, Enum):
    CLIENT = "client"
    SERVER = "server"


class KS(Enum):
    """Phases of one key state."""
    RESET = 1        # resets being exchanged
    TLS = 2          # TLS handshake running
    KEY_EXCHANGE = 3  # key-method-2 messages being exchanged
    PUSH = 4         # client, key 0: waiting for PUSH_REPLY
    ACTIVE = 5
    DEAD = 6


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
    explicit_exit_notify: int = 0
    comp: str | None = None                      # None | "lzo-stub" | "stub" | "stub-v2"
    tun_mtu: int = 1500
    early_negotiation: bool = False              # client with tls-crypt-v2
    advertise_ekm: bool = True                   # client: offer TLS-EKM key derivation (IV_PROTO bit 3)
    replay_window: int = 64                       # replay-window N: reordering tolerated (packets)
    replay_time: float | None = 15.0              # replay-window N T: seconds (None/0: no time limit)
    pull_filter: list[tuple[str, str]] = field(default_factory=list)   # client: (action, text) in order
    random_bytes: Callable[[int], bytes] = secrets.token_bytes
    # server role only
    peer_id: int | None = None
    push_options: Callable[["Session"], list[str]] | None = None
    verify_user: Callable[[str, str, str | None], bool] | None = None
    server_ekm: bool = True


def _b64_text(v: str) -> str | None:
    """auth-token-user carries the username base64-encoded; None if it is not valid base64 text."""
    try:
        return base64.b64decode(v, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class KeyState:
    __slots__ = ("key_id", "phase", "reliable", "tls", "created", "active_since", "local_km",
                 "remote_km", "sent_km", "data", "retired_at", "wkc_resend", "sent_first_control",
                 "pending_send")

    def __init__(self, key_id: int, now: float, tls_timeout: float, tcp: bool) -> None:
        self.key_id = key_id
        self.phase = KS.RESET
        self.reliable = ReliableChannel(initial_timeout=tls_timeout, retransmit=not tcp)
        self.tls: TlsEndpoint | None = None
        self.created = now
        self.active_since: float | None = None
        self.local_km: KeyMethod2 | None = None
        self.remote_km: KeyMethod2 | None = None
        self.sent_km = False
        self.data: DataKey | None = None
        self.retired_at: float | None = None
        self.wkc_resend = False
        self.sent_first_control = False
        self.pending_send = False


class Session:
    def __init__(self, cfg: SessionConfig, now: float, tls_context=None) -> None:
        self.cfg = cfg
        self.is_client = cfg.role == Role.CLIENT
        self.tcp = cfg.proto == "tcp"
        self.own_sid = cfg.random_bytes(8)
        self.peer_sid: bytes | None = None
        self.wrapper = cfg.make_wrapper()
        self.tls_context = tls_context if tls_context is not None else build_context(cfg.tls)
        self.keys: dict[int, KeyState] = {}
        self.recv_keys: list[DataKey | None] = [None] * 8
        self.send_key: DataKey | None = None
        self.out: list[bytes] = []
        self.events: deque = deque()
        self.stats: dict[str, int] = {}
        self.closed = False
        self.cipher: str | None = None
        self.ekm = False
        self.peer_id: int | None = cfg.peer_id
        self.pushed: PushedOptions | None = None
        self.push_sent = False
        self.next_push_request: float | None = None
        self.peer_info: dict[str, str] = {}
        self.peer_common_name: str | None = None
        self.auth_token: str | None = None         # pushed by the server: our password from now on
        self.auth_token_user: str | None = None
        self.cc_exit = False
        self.established = False
        self.last_recv = now
        self.last_send = now
        self.reneg_check_at = now + RENEG_CHECK_INTERVAL   # reneg-bytes / reneg-pkts counters
        self.data_authenticated = 0       # data packets that passed authentication and replay checks
        self.ping_interval = cfg.ping
        self.ping_restart = cfg.ping_restart
        self.next_key_id = 1
        self.comp = cfg.comp
        self.newest_key_id: int | None = None
        self.owner: object = None           # the server's per-client record

    # ------------------------------------------------------------------ public API
    def start(self, now: float) -> None:
        """Client: send the first hard reset."""
        if not self.is_client:
            return
        ks = self._new_key_state(0, now)
        op = Op.CONTROL_HARD_RESET_CLIENT_V3 if self.cfg.early_negotiation else Op.CONTROL_HARD_RESET_CLIENT_V2
        ks.reliable.enqueue(op, b"")
        self._flush(now)

    def take_outgoing(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def receive(self, packet, now: float) -> list:
        """One OpenVPN packet in; decrypted tunnel packets out. Never raises for peer input."""
        if self.closed or not packet:
            return []
        op = packet[0] >> 3
        if op == Op.DATA_V2 or op == Op.DATA_V1:
            dk = self.recv_keys[packet[0] & 7]
            if dk is None:
                self._count("data-no-key")
                return []
            try:
                pt = dk.open_untrusted(packet, now)
            except BadPacket as e:
                self._count(e.reason)
                return []
            self.last_recv = now
            self.data_authenticated += 1
            if self.comp is not None:
                pt = self._decomp(pt)
                if pt is None:
                    return []
            # IP packets start with 0x4_/0x6_; the ping (0x2a) and OCC (0x28) magics do not.
            if pt and (pt[0] == 0x2A or pt[0] == 0x28):
                if pt == PING_MAGIC:
                    return []
                if len(pt) >= 17 and pt[:16] == OCC_MAGIC:
                    self._occ(pt, now)
                    return []
            return [pt]
        try:
            self._receive_control(packet, now)
        except BadPacket as e:
            self._count(e.reason)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True)
        self._flush(now)
        return []

    def encrypt(self, payload) -> memoryview | None:
        """Seal one tunnel packet for the wire (None if no key is up yet)."""
        sk = self.send_key
        if sk is None:
            return None
        if self.comp is not None:
            payload = self._comp(payload)
        return sk.seal(payload)

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        try:
            self._timers(now)
        except RemoteProtocolError as e:
            self._fail(str(e), restart=True)
        self._flush(now)

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        ds = []
        for ks in self.keys.values():
            d = ks.reliable.next_deadline()
            if d is not None:
                ds.append(d)
            if ks.phase != KS.ACTIVE and ks.phase != KS.DEAD:
                ds.append(ks.created + self.cfg.hand_window)
            if ks.phase == KS.ACTIVE and ks.active_since is not None and ks is self._newest() and self.cfg.reneg_sec:
                ds.append(ks.active_since + self.cfg.reneg_sec)
            if ks.retired_at is not None:
                ds.append(ks.retired_at + self.cfg.tran_window)
        if self.next_push_request is not None:
            ds.append(self.next_push_request)
        if self.send_key is not None:
            if self.ping_interval:
                ds.append(self.last_send + self.ping_interval)
            if self.ping_restart:
                ds.append(self.last_recv + self.ping_restart)
            if self.cfg.ping_exit:
                ds.append(self.last_recv + self.cfg.ping_exit)
        if (self.cfg.reneg_bytes or self.cfg.reneg_pkts) and self.send_key is not None:
            # A fixed periodic look at the counters: a deadline tied to traffic (such as
            # last_send) keeps moving while data flows, and would never come during a transfer.
            ds.append(self.reneg_check_at)
        return min(ds) if ds else None

    def note_sent(self, now: float) -> None:
        """The gateway tells us data went out (keeps the ping timer from firing)."""
        self.last_send = now

    def close(self, now: float, reason: str = "exit") -> None:
        """Leave politely: exit notification to the peer, then closed."""
        if self.closed:
            return
        if self.send_key is not None and not self.tcp:
            if self.cc_exit and self.is_client:
                self._send_text("EXIT")
            else:
                n = max(1, self.cfg.explicit_exit_notify) if self.cfg.explicit_exit_notify or not self.is_client else 0
                for _ in range(n):
                    self.out.append(self.send_key.seal(OCC_MAGIC + bytes((OCC_EXIT,))))
        elif self.send_key is not None and self.tcp and self.cc_exit and self.is_client:
            self._send_text("EXIT")
        self._flush(now)
        self.closed = True
        self.events.append(ev.SessionClosed(reason, restart=False))

    def renegotiate(self, now: float) -> None:
        """Start a soft reset now (as reneg-sec would)."""
        self._start_soft_reset(now)
        self._flush(now)

    # ------------------------------------------------------------------ control channel
    def _count(self, reason: str) -> None:
        self.stats[reason] = self.stats.get(reason, 0) + 1

    def _new_key_state(self, key_id: int, now: float) -> KeyState:
        ks = KeyState(key_id, now, self.cfg.tls_timeout, self.tcp)
        self.keys[key_id] = ks
        self.newest_key_id = key_id
        return ks

    def _newest(self) -> KeyState | None:
        return self.keys.get(self.newest_key_id) if self.newest_key_id is not None else None

    def _receive_control(self, packet, now: float) -> None:
        op_b, sender_sid, body = self.wrapper.unwrap_untrusted(bytes(packet), now)
        op, key_id = op_b >> 3, op_b & 7
        if op not in (Op.CONTROL_SOFT_RESET_V1, Op.CONTROL_V1, Op.ACK_V1, Op.CONTROL_HARD_RESET_CLIENT_V2,
                      Op.CONTROL_HARD_RESET_SERVER_V2, Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1):
            raise BadPacket("unknown opcode")
        cb = decode_body_untrusted(op, body)
        if self.peer_sid is None:
            if self.is_client and op != Op.CONTROL_HARD_RESET_SERVER_V2:
                raise BadPacket("control packet before server reset")
            if not self.is_client and op not in HARD_RESET_CLIENT_OPS:
                raise BadPacket("control packet before client reset")
            self.peer_sid = sender_sid
        elif sender_sid != self.peer_sid:
            raise BadPacket("wrong peer session id")
        if cb.acks and cb.peer_sid != self.own_sid:
            raise BadPacket("ack for another session")
        self.last_recv = now
        ks = self.keys.get(key_id)
        if ks is not None and op == Op.CONTROL_SOFT_RESET_V1 and key_id != self.newest_key_id and self.established:
            ks = None   # key ids wrap 7 → 1: a soft reset for an old (lame-duck) id starts a new negotiation
        if ks is None:
            if op == Op.CONTROL_SOFT_RESET_V1 and self.established:
                ks = self._answer_soft_reset(key_id, now)
            elif op in HARD_RESET_CLIENT_OPS and not self.is_client and key_id == 0 and not self.keys:
                ks = self._new_key_state(0, now)
                ks.reliable.enqueue(Op.CONTROL_HARD_RESET_SERVER_V2, self._server_reset_payload())
            else:
                raise BadPacket("packet for unknown key id")
        if cb.acks:
            ks.reliable.process_acks(cb.acks)
            self._maybe_switch(ks, now)
        if cb.msg_id is None:
            self._advance(ks, now)
            return
        if op == Op.CONTROL_HARD_RESET_SERVER_V2 and cb.msg_id == 0:
            tlvs = parse_early_neg_tlvs_untrusted(cb.payload) if cb.payload else {}
            flags = tlvs.get(EARLY_NEG_FLAGS)
            if flags and len(flags) == 2 and int.from_bytes(flags, "big") & EARLY_NEG_FLAG_RESEND_WKC:
                ks.wkc_resend = True
        for m_op, payload in ks.reliable.receive(cb.msg_id, op, cb.payload):
            self._deliver(ks, m_op, payload, now)
        self._advance(ks, now)

    def _server_reset_payload(self) -> bytes:
        return b""

    def _deliver(self, ks: KeyState, op: int, payload: bytes, now: float) -> None:
        if op in (Op.CONTROL_HARD_RESET_SERVER_V2, Op.CONTROL_SOFT_RESET_V1) or op in HARD_RESET_CLIENT_OPS:
            if ks.phase == KS.RESET:
                ks.phase = KS.TLS
                ks.tls = TlsEndpoint(self.tls_context, self.cfg.tls)
            return
        if op in (Op.CONTROL_V1, Op.CONTROL_WKC_V1):
            if ks.tls is None:
                raise RemoteProtocolError("TLS data before reset")
            ks.tls.feed(payload)

    def _advance(self, ks: KeyState, now: float) -> None:
        """Drive TLS and the key exchange of one key state as far as the inputs allow."""
        if ks.tls is None or ks.phase == KS.DEAD:
            return
        was_done = ks.tls.handshake_done
        out, msgs = ks.tls.pump()
        self._queue_tls(ks, out)
        if ks.tls.handshake_done and not was_done:
            self.peer_common_name = common_name(ks.tls.peer_cert)
            self.events.append(ev.HandshakeCompleted(ks.key_id, ks.tls.version, ks.tls.cipher,
                                                     self.peer_common_name))
            ks.phase = KS.KEY_EXCHANGE
            if self.is_client:
                self._send_key_method(ks)
        for m in msgs:
            self._app_message(ks, m, now)

    def _queue_tls(self, ks: KeyState, data: bytes) -> None:
        if not data:
            return
        room = TLS_MTU - 9 - getattr(self.wrapper, "overhead", 0) - 1 - 4 * ACK_PIGGYBACK - 8 - 4
        if ks.wkc_resend and not ks.sent_first_control:
            room -= len(getattr(self.wrapper, "wkc", b""))
        for i in range(0, len(data), room):
            op = Op.CONTROL_V1
            if ks.wkc_resend and not ks.sent_first_control:
                op = Op.CONTROL_WKC_V1
            ks.sent_first_control = True
            ks.reliable.enqueue(op, data[i:i + room])

    def _send_text(self, text: str, ks: KeyState | None = None) -> None:
        ks = ks or self._active_ks()
        if ks is None or ks.tls is None or not ks.tls.handshake_done:
            return
        self._queue_tls(ks, ks.tls.send_message(text.encode() + b"\0"))

    def _active_ks(self) -> KeyState | None:
        best = None
        for ks in self.keys.values():
            if ks.phase == KS.ACTIVE and (best is None or ks.created >= best.created):
                best = ks
        if best is None:
            best = self.keys.get(0)
        return best

    def _peer_info(self) -> str:
        lines = [
            "IV_VER=2.6.0", "IV_PLAT=linux", f"IV_PROTO={self._iv_proto()}", "IV_NCP=2",
            "IV_CIPHERS=" + ":".join(self.cfg.data_ciphers), f"IV_MTU={self.cfg.tun_mtu}", "IV_TCPNL=1",
            "IV_GUI_VER=vpn-appliance_0.1",
        ]
        if self.cfg.comp is not None:
            lines += ["IV_COMP_STUB=1", "IV_COMP_STUBv2=1"]
        return "\n".join(lines) + "\n"

    def _iv_proto(self) -> int:
        return IV_PROTO_CLIENT if self.cfg.advertise_ekm else IV_PROTO_CLIENT & ~IV_PROTO_TLS_KEY_EXPORT

    def _options_string(self) -> str:
        proto = ("TCPv4_CLIENT" if self.is_client else "TCPv4_SERVER") if self.tcp else "UDPv4"
        role = "tls-client" if self.is_client else "tls-server"
        return f"V4,dev-type tun,link-mtu 1549,tun-mtu {self.cfg.tun_mtu},proto {proto},keysize 256,key-method 2,{role}"

    def _send_key_method(self, ks: KeyState) -> None:
        r = self.cfg.random_bytes
        km = KeyMethod2(random1=r(32), random2=r(32), options=self._options_string())
        if self.is_client:
            km.pre_master = r(48)
            if self.cfg.username or self.auth_token:
                km.username = self.auth_token_user or self.cfg.username
                km.password = self.auth_token or self.cfg.password
            km.peer_info = self._peer_info()
        ks.local_km = km
        ks.sent_km = True
        self._queue_tls(ks, ks.tls.send_message(encode_key_method_2(km, self.is_client)))

    def _app_message(self, ks: KeyState, data: bytes, now: float) -> None:
        if ks.remote_km is None:
            km = decode_key_method_2_untrusted(data, from_client=not self.is_client)
            ks.remote_km = km
            if self.is_client:
                self._client_got_key(ks, now)
            else:
                self._server_got_key(ks, km, now)
            return
        for text in split_text_messages_untrusted(data):
            self._text_message(ks, text, now)

    # ---- client side
    def _client_got_key(self, ks: KeyState, now: float) -> None:
        if ks.key_id == 0 and not self.established:
            ks.phase = KS.PUSH
            self._send_text("PUSH_REQUEST", ks)
            self.next_push_request = now + PUSH_REQUEST_INTERVAL
        else:
            self._install_keys(ks, now)

    def _text_message(self, ks: KeyState, text: str, now: float) -> None:
        if self.is_client:
            if text.startswith("PUSH_REPLY"):
                if self.established:
                    return  # a duplicate answer to a repeated PUSH_REQUEST
                try:
                    self.pushed = parse_push_reply_untrusted(text, self.pushed, self.cfg.pull_filter)
                except PushRejected as e:
                    self._fail(e.reason, restart=True)
                    return
                except BadPacket as e:
                    raise RemoteProtocolError(f"bad PUSH_REPLY: {e.reason}") from None
                if self.pushed.complete:
                    self.next_push_request = None
                    self._apply_push(ks, now)
            elif text.startswith("AUTH_FAILED"):
                msg = text[len("AUTH_FAILED"):].lstrip(",")
                self.events.append(ev.AuthFailed(msg or "authentication failed"))
                self._fail(f"AUTH_FAILED {msg}".strip(), restart=msg.startswith("TEMP"))
            elif text.startswith("RESTART"):
                self._fail("server sent RESTART" + (": " + text[8:] if len(text) > 8 else ""), restart=True)
            elif text.startswith("HALT"):
                self._fail("server sent HALT" + (": " + text[5:] if len(text) > 5 else ""), restart=False)
            elif text.startswith("EXIT"):
                self._fail("server exited (EXIT)", restart=True)
            elif text.startswith("INFO") or text.startswith("AUTH_PENDING") or text.startswith("ACC"):
                self.events.append(ev.Warning(f"server message: {text}"))
            else:
                self.events.append(ev.Warning(f"unknown control message: {text[:60]}"))
        else:
            if text.startswith("PUSH_REQUEST"):
                self._send_push_reply(ks, now)
            elif text.startswith("EXIT"):
                self._fail("client exited (EXIT)", restart=False)
            else:
                self.events.append(ev.Warning(f"unknown control message: {text[:60]}"))

    def _apply_push(self, ks: KeyState, now: float) -> None:
        p = self.pushed
        assert p is not None
        cipher = p.cipher
        if cipher is None:
            cipher = self.cfg.data_ciphers_fallback
            if cipher is None:
                raise RemoteProtocolError("server pushed no cipher and no data-ciphers-fallback is set")
        if cipher not in self.cfg.data_ciphers and cipher != self.cfg.data_ciphers_fallback:
            raise RemoteProtocolError(f"server pushed cipher {cipher}, not in our data-ciphers")
        if not is_supported(cipher):
            raise RemoteProtocolError(f"server pushed unsupported cipher {cipher}")
        self.cipher = cipher
        self.ekm = p.tls_ekm
        self.cc_exit = p.cc_exit
        if p.auth_token:
            # As OpenVPN: renegotiations authenticate with the token instead of the password
            # (which a one-time-password setup could not repeat).
            self.auth_token = p.auth_token
            if p.auth_token_user:
                self.auth_token_user = _b64_text(p.auth_token_user)
        if p.peer_id is not None:
            self.peer_id = p.peer_id
        if p.ping is not None:
            self.ping_interval = p.ping
        if p.ping_restart is not None:
            self.ping_restart = p.ping_restart
        if p.compress is not None:
            self.comp = "stub-v2" if p.compress in ("stub-v2", "lz4-v2") else "stub"
            if p.compress not in ("stub", "stub-v2", "lzo", "lz4", "lz4-v2"):
                raise RemoteProtocolError(f"server pushed compression {p.compress}, not supported")
        elif p.comp_lzo is not None:
            self.comp = "lzo-stub"
        self._install_keys(ks, now)

    # ---- server side
    def _server_got_key(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        if ks.key_id == 0 and not self.established:
            self.peer_info = km.peer_info_dict()
            if self.cfg.verify_user is not None:
                if not self.cfg.verify_user(km.username, km.password, self.peer_common_name):
                    self._send_key_method(ks)
                    self._send_text("AUTH_FAILED", ks)
                    self._fail("client failed username/password authentication", restart=False)
                    return
            self.cipher = self._negotiate_cipher()
            proto = int(self.peer_info.get("IV_PROTO", "0") or 0)
            self.ekm = self.cfg.server_ekm and bool(proto & IV_PROTO_TLS_KEY_EXPORT)
            self.cc_exit = bool(proto & IV_PROTO_CC_EXIT_NOTIFY)
            if not proto & IV_PROTO_DATA_V2:
                self.peer_id = None
            self.events.append(ev.ClientAuthenticated(self.peer_common_name, km.username, self.peer_info))
        self._send_key_method(ks)
        self._install_keys(ks, now)
        if ks.key_id == 0 and not self.established:
            proto = int(self.peer_info.get("IV_PROTO", "0") or 0)
            if proto & IV_PROTO_REQUEST_PUSH:
                self._send_push_reply(ks, now)

    def _negotiate_cipher(self) -> str:
        theirs = self.peer_info.get("IV_CIPHERS")
        if theirs:
            offered = theirs.upper().split(":")
            for c in self.cfg.data_ciphers:
                if c in offered and is_supported(c):
                    return c
        elif self.peer_info.get("IV_NCP") == "2":
            for c in self.cfg.data_ciphers:
                spec = ciphers.spec(c)
                if spec is not None and spec.ncp2:
                    return c
        if self.cfg.data_ciphers_fallback:
            return self.cfg.data_ciphers_fallback
        raise RemoteProtocolError("no common data cipher with the client")

    def _send_push_reply(self, ks: KeyState, now: float) -> None:
        if self.push_sent:
            return
        opts: list[str] = []
        if self.cfg.push_options is not None:
            opts += self.cfg.push_options(self)
        flags = ["cc-exit"] if self.cc_exit else []
        if self.ekm:
            flags.append("tls-ekm")
        if flags:
            opts.append("protocol-flags " + " ".join(flags))
        if self.peer_id is not None:
            opts.append(f"peer-id {self.peer_id}")
        opts.append(f"cipher {self.cipher}")
        for msg in build_push_reply(opts):
            self._send_text(msg, ks)
        self.push_sent = True
        self.events.append(ev.PushRequested())
        self._set_established(ks)

    # ---- keys
    def _key_block(self, ks: KeyState) -> bytes:
        if self.ekm:
            return ks.tls.export_keying_material(EKM_LABEL, KEY_BLOCK_LEN)
        c, s = (ks.local_km, ks.remote_km) if self.is_client else (ks.remote_km, ks.local_km)
        csid, ssid = (self.own_sid, self.peer_sid) if self.is_client else (self.peer_sid, self.own_sid)
        return prf_key_block(c.pre_master, c.random1, s.random1, c.random2, s.random2, csid, ssid)

    def _install_keys(self, ks: KeyState, now: float) -> None:
        if ks.remote_km is None or ks.local_km is None or self.cipher is None:
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
            if self.is_client:
                self._set_established(ks)
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
        for other in self.keys.values():
            if other is not ks and other.phase == KS.ACTIVE and other.retired_at is None:
                other.retired_at = now
        self.send_key = ks.data

    def _set_established(self, ks: KeyState) -> None:
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

    def _start_soft_reset(self, now: float) -> None:
        newest = self._newest()
        if newest is not None and newest.phase != KS.ACTIVE:
            return  # one negotiation at a time
        key_id = self._next_key_id()
        old = self.keys.pop(key_id, None)
        if old is not None:
            self.recv_keys[key_id] = None
        ks = self._new_key_state(key_id, now)
        ks.reliable.enqueue(Op.CONTROL_SOFT_RESET_V1, b"")

    def _answer_soft_reset(self, key_id: int, now: float) -> KeyState:
        old = self.keys.pop(key_id, None)
        if old is not None:
            self.recv_keys[key_id] = None
        ks = self._new_key_state(key_id, now)
        ks.reliable.enqueue(Op.CONTROL_SOFT_RESET_V1, b"")
        self.next_key_id = 1 if key_id >= 7 else key_id + 1
        return ks

    # ---- timers
    def _timers(self, now: float) -> None:
        for ks in list(self.keys.values()):
            if ks.phase not in (KS.ACTIVE, KS.DEAD) and now >= ks.created + self.cfg.hand_window:
                raise RemoteProtocolError(f"TLS key negotiation failed to occur within {self.cfg.hand_window} seconds")
            if ks.retired_at is not None and now >= ks.retired_at + self.cfg.tran_window:
                self.recv_keys[ks.key_id] = None
                del self.keys[ks.key_id]
        if self.next_push_request is not None and now >= self.next_push_request:
            ks0 = self.keys.get(0)
            if ks0 is not None and ks0.phase == KS.PUSH:
                self._send_text("PUSH_REQUEST", ks0)
            self.next_push_request = now + PUSH_REQUEST_INTERVAL
        sk = self.send_key
        if sk is not None:
            if self.cfg.ping_exit and now >= self.last_recv + self.cfg.ping_exit:
                self._fail(f"inactivity timeout (ping-exit {self.cfg.ping_exit}s)", restart=False)
                return
            if self.ping_restart and now >= self.last_recv + self.ping_restart:
                self._fail(f"inactivity timeout (ping-restart {self.ping_restart}s)", restart=True)
                return
            if self.ping_interval and now >= self.last_send + self.ping_interval:
                self.out.append(sk.seal(PING_MAGIC))
                self.last_send = now
            if now >= self.reneg_check_at:
                self.reneg_check_at = now + RENEG_CHECK_INTERVAL
            newest = self._newest()
            if newest is not None and newest.phase == KS.ACTIVE and newest.active_since is not None:
                d = newest.data
                if ((self.cfg.reneg_sec and now >= newest.active_since + self.cfg.reneg_sec)
                        or (self.cfg.reneg_bytes and d and d.bytes_sent + d.bytes_recv >= self.cfg.reneg_bytes)
                        or (self.cfg.reneg_pkts and d and d.packets_sent + d.packets_recv >= self.cfg.reneg_pkts)):
                    self._start_soft_reset(now)

    def _fail(self, reason: str, restart: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.events.append(ev.SessionClosed(reason, restart))

    # ---- output
    def _flush(self, now: float) -> None:
        """Turn every key state's due messages and pending acks into wire packets."""
        if self.closed and not self.out:
            pass
        wrap = self.wrapper.wrap
        for ks in self.keys.values():
            rel = ks.reliable
            for m in rel.due(now):
                acks = rel.take_acks(ACK_PIGGYBACK) if self.peer_sid is not None else []
                body = encode_body(acks, self.peer_sid if acks else None, m.msg_id, m.payload)
                self.out.append(wrap(op_byte(m.op, ks.key_id), self.own_sid, body, now))
            while rel.pending_acks and self.peer_sid is not None:
                acks = rel.take_acks(ACK_STANDALONE)
                body = encode_body(acks, self.peer_sid, None)
                self.out.append(wrap(op_byte(Op.ACK_V1, ks.key_id), self.own_sid, body, now))

    # ---- data-channel helpers (rare paths)
    def _occ(self, pt, now: float) -> None:
        if pt[16] == OCC_EXIT:
            self._fail("peer sent exit notification", restart=self.is_client)

    def _comp(self, payload) -> bytes:
        if self.comp == "lzo-stub":
            return b"\xfa" + bytes(payload)
        if self.comp == "stub":
            p = bytes(payload)
            return b"\xfb" + p[1:] + p[:1] if p else b"\xfb"
        # stub-v2: only a packet starting with 0x50 needs an escape; IP packets never do
        return b"\x50\x00" + bytes(payload) if payload[:1] == b"\x50" else payload

    def _decomp(self, pt):
        if not len(pt):
            return None
        b0 = pt[0]
        if self.comp == "lzo-stub" or self.comp == "stub":
            if b0 == 0xFA:
                return pt[1:]
            if b0 == 0xFB:
                return bytearray(pt[-1:]) + pt[1:-1]
            self._count("compressed packet (unsupported)")
            return None
        if b0 == 0x50:
            if len(pt) >= 2 and pt[1] == 0:
                return pt[2:]
            self._count("compressed packet (unsupported)")
            return None
        return pt
