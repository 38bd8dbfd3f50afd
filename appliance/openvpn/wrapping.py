"""Control-channel protection: none, tls-auth (HMAC), tls-crypt and tls-crypt-v2.

The engine works on the "clear form" of a control packet, `op_byte | own_sid(8) | body`; a
wrapper turns that into wire bytes and back (wire notes §2). One wrapper per session: it owns
the outgoing replay counter and the incoming replay window, so two sessions never share ids.

Order on receive, as OpenVPN does: cheap replay pre-check, then authenticate (constant-time
compare), and only then record the replay id — a forged packet must change no state. With
`check_replay=False` (a server's stateless look at a client's first packets) nothing is checked
against or recorded in the window.

replay_time: OpenVPN sends a 32-bit Unix time fixed when the counter starts, but receivers use
it only as an epoch within one session (a later epoch restarts the id sequence, an earlier one is
refused; nothing compares it with a clock). We take the caller's `now` at the first wrap, so the
engine reads no clock, and a monotonic `now` can never make the epoch go backwards. On receive we
do what OpenVPN's packet_id_test/packet_id_add do with the long form: an earlier epoch than the
newest seen is a replay ("time backtrack"), a later one starts a fresh window; id 0 is never valid.
When the 32-bit send counter is used up, a new epoch starts (as packet_id_send_update does) if
`now` has moved on by a second; otherwise the wrapper refuses (PacketIdExhausted) rather than
reuse an id.

The window has replay-window's size and time limit (`replay-window N T`, OpenVPN's 64 and 15 s),
as OpenVPN 2.6 gives every session's tls-auth/tls-crypt(-v2) packet ids (ssl.c session_init:
packet_id_init(&session->tls_wrap.opt.packet_id, replay_window, replay_time); crypto.c
crypto_check_replay reaps by time first). Why: without the time limit, a control packet held
back by someone on the path (never seen by us, so not in the window) was accepted whenever it
came as long as fewer than N newer ones had arrived -- a quiet control channel sends a handful
a minute, so hours later. Now one arriving more than T seconds after a newer one is refused by
the cheap pre-check, before any MAC or decryption (replay.py keeps at most T+1 samples).
"""
from __future__ import annotations

import hmac
import struct
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import BadPacket, ConfigError, PacketIdExhausted
from .mac import KeyedMac
from .opcodes import EARLY_NEG_START, PID_MAX, WKC_OPS
from .replay import DEFAULT_SIZE, DEFAULT_TIME_LIMIT, ReplayWindow

HEADER = 9                    # op byte + sender's session id
REPLAY = 8                    # replay_pid(4) + replay_time(4)
TLS_CRYPT_TAG = 32
WKC_MIN_LEN = 32 + 256 + 1 + 2
WKC_MAX_LEN = 1024

_pack_pid_time = struct.Struct("!II").pack
_unpack_pid_time = struct.Struct("!II").unpack_from

_DIGESTS = {"SHA1": ("sha1", 20), "SHA224": ("sha224", 28), "SHA256": ("sha256", 32),
            "SHA384": ("sha384", 48), "SHA512": ("sha512", 64)}


class Wrapper(Protocol):
    overhead: int
    wkc: bytes                  # tls-crypt-v2 client: the wrapped key it appends; b"" otherwise

    def skip_packet_ids(self, n: int) -> None: ...

    def first_id_verified_elsewhere(self) -> None: ...

    def wrap(self, op_byte: int, own_sid: bytes, body: bytes, now: float) -> bytes: ...

    def unwrap_untrusted(self, packet: bytes, now: float,
                         check_replay: bool = True) -> tuple[int, bytes, bytes]: ...


def _check_clear(packet: bytes, minimum: int) -> None:
    if len(packet) < minimum:
        raise BadPacket("short control packet")


class PlainWrapper:
    """No protection ("tls-plain"): the clear form is the wire form."""
    overhead = 0
    wkc = b""

    def skip_packet_ids(self, n: int) -> None:
        """No replay ids without protection: nothing to skip."""

    def first_id_verified_elsewhere(self) -> None:
        """No replay ids without protection."""

    def wrap(self, op_byte: int, own_sid: bytes, body: bytes, now: float) -> bytes:
        return bytes((op_byte,)) + own_sid + body

    def unwrap_untrusted(self, packet: bytes, now: float, check_replay: bool = True) -> tuple[int, bytes, bytes]:
        _check_clear(packet, HEADER + 1)
        packet = bytes(packet)
        return packet[0], packet[1:HEADER], packet[HEADER:]


class _Counted:
    """The outgoing replay counter and incoming window shared by tls-auth and tls-crypt."""

    wkc = b""                   # only TlsCryptV2ClientWrapper carries one

    def __init__(self, replay_window: int, replay_time: float | None) -> None:
        self.send_pid = 0             # last id used; the first packet carries 1
        self.send_time: int | None = None
        self._window_size = replay_window     # a new epoch starts a fresh window of this size
        self._window_time = replay_time       # ... and this time limit (seconds; None: none)
        self.window = ReplayWindow(replay_window, replay_time)
        self.recv_time: int | None = None   # newest epoch (time field) seen from the peer
        self._first_any = False             # see first_id_verified_elsewhere

    def skip_packet_ids(self, n: int) -> None:
        """Advance the send counter by n ids used elsewhere (the server's stateless reset)."""
        self.send_pid += n

    def first_id_verified_elsewhere(self) -> None:
        """replay-window 0: the first packet this window sees may carry any id. For a server's
        session whose first packet came through the stateless exchange (its HMAC checked there):
        the ids before it were the client's reset and its resends, seen statelessly, so the
        sequence is under way. 2.6.14 starts that window afresh and wants id 1, which refuses
        its own client's third packet (no UDP setup with window 0 works with its server); the
        same for a tls-crypt-v2 client's early-negotiation reset id (0x0f000001)."""
        self._first_any = True

    def _next_header(self, now: float) -> bytes:
        # The time field is only an epoch for the peer's replay window: OpenVPN accepts any value
        # that never goes backwards within a session and never compares it with its own clock.
        # The caller's (monotonic) time serves, so the engine reads no clock itself.
        if self.send_time is None:
            self.send_time = int(now) & PID_MAX
        pid = self.send_pid + 1
        if pid > PID_MAX:
            # Never reuse an id: a later epoch restarts the sequence, as OpenVPN's long form does.
            t = int(now) & PID_MAX
            if t <= self.send_time:
                raise PacketIdExhausted("control channel replay ids used up within one second")
            self.send_time, pid = t, 1
        self.send_pid = pid
        return _pack_pid_time(pid, self.send_time)

    def _replay_check(self, pid: int, t: int, now: float) -> bool:
        """OpenVPN's packet_id_test for the long form: same epoch → the window decides; an
        earlier epoch → refused (time backtrack); a later one → accepted (new window on record),
        with replay-window 0 only at id 1, as 2.6's sequence mode ("time moved forward": the
        series begins at 1; ours took any id there)."""
        if pid == 0:
            return False
        rt = self.recv_time
        if rt is None or t > rt:
            return self._window_size > 0 or pid == 1 or (rt is None and self._first_any)
        if t < rt:
            return False
        return self.window.check(pid, now)

    def _replay_record(self, pid: int, t: int, now: float) -> None:
        """After authentication only: note the id, starting a fresh window for a newer epoch."""
        if self.recv_time is None or t > self.recv_time:
            self.recv_time = t
            self.window = ReplayWindow(self._window_size, self._window_time)
        self.window.update(pid, now)


class TlsAuthWrapper(_Counted):
    """tls-auth: `op | sid | HMAC | pid | time | body`, HMAC over `pid | time | op | sid | body`."""

    def __init__(self, key: bytes, key_direction: int | None, digest: str = "SHA1",
                 replay_window: int = DEFAULT_SIZE, replay_time: float | None = DEFAULT_TIME_LIMIT) -> None:
        super().__init__(replay_window, replay_time)
        if len(key) != 256:
            raise ConfigError(f"tls-auth key must be 256 bytes, got {len(key)}")
        try:
            self.digest, self.hlen = _DIGESTS[digest.upper().replace("-", "")]
        except KeyError:
            raise ConfigError(f"unsupported tls-auth digest {digest!r}") from None
        slot_a, slot_b = bytes(key[64:64 + self.hlen]), bytes(key[192:192 + self.hlen])
        if key_direction is None:
            self.send_key = self.recv_key = slot_a
        elif key_direction == 0:
            self.send_key, self.recv_key = slot_a, slot_b
        elif key_direction == 1:
            self.send_key, self.recv_key = slot_b, slot_a
        else:
            raise ConfigError(f"key-direction must be 0 or 1, got {key_direction}")
        self.overhead = self.hlen + REPLAY
        self._min = HEADER + self.hlen + REPLAY + 1
        self._send_mac = KeyedMac(self.send_key, self.digest)
        self._recv_mac = KeyedMac(self.recv_key, self.digest)

    def wrap(self, op_byte: int, own_sid: bytes, body: bytes, now: float) -> bytes:
        rp = self._next_header(now)
        head = bytes((op_byte,)) + own_sid
        mac = self._send_mac.digest(rp + head + body)
        return head + mac + rp + body

    def unwrap_untrusted(self, packet: bytes, now: float, check_replay: bool = True) -> tuple[int, bytes, bytes]:
        if len(packet) < self._min:
            raise BadPacket("short control packet")
        packet = bytes(packet)
        h = HEADER + self.hlen
        pid, t = _unpack_pid_time(packet, h)
        if check_replay and not self._replay_check(pid, t, now):
            raise BadPacket("replayed or too old control packet")
        head = packet[:HEADER]
        rest = packet[h:]                      # pid | time | body
        if not hmac.compare_digest(packet[HEADER:h], self._recv_mac.digest(rest[:REPLAY] + head + rest[REPLAY:])):
            raise BadPacket("control packet failed HMAC authentication")
        if check_replay:
            self._replay_record(pid, t, now)
        return packet[0], packet[1:HEADER], rest[REPLAY:]


class TlsCryptWrapper(_Counted):
    """tls-crypt: `op | sid | pid | time | tag(32) | AES-256-CTR(body)`, tag = HMAC-SHA256 over the
    cleartext header and body, IV = tag[:16]. The TLS server sends with key half 0, the client
    with half 1; each half is cipher slot (Ke = first 32 bytes) then HMAC slot (Ka = first 32)."""

    overhead = REPLAY + TLS_CRYPT_TAG
    _CT = HEADER + REPLAY + TLS_CRYPT_TAG
    _wkc_ops: frozenset = frozenset()     # the opcodes `wkc` rides after (tls-crypt-v2 client)

    def __init__(self, key: bytes, is_server: bool, replay_window: int = DEFAULT_SIZE,
                 replay_time: float | None = DEFAULT_TIME_LIMIT) -> None:
        super().__init__(replay_window, replay_time)
        if len(key) != 256:
            raise ConfigError(f"tls-crypt key must be 256 bytes, got {len(key)}")
        key = bytes(key)
        half0, half1 = key[:128], key[128:]
        send, recv = (half0, half1) if is_server else (half1, half0)
        self.send_ke, self.send_ka = send[0:32], send[64:96]
        self.recv_ke, self.recv_ka = recv[0:32], recv[64:96]
        # One AES-CTR context per direction for the session's life, re-pointed at each packet's
        # IV with reset_nonce: building a Cipher and a context per control packet cost about
        # 6 us (Python-side validation and a fresh key schedule), ten times the encryption of a
        # typical control packet, on every packet of every handshake. CTR keeps no state across
        # packets once the nonce is reset, and a session's wrapper is used by one thread. Made
        # at first use: the server's one-packet wrappers (a stateless reset answer, a
        # tls-crypt-v2 client's first packet) pay for one context, as before, not two. A client
        # makes both now, before its first packet: the first AES context of a process costs
        # ~0.1-0.3 ms (library set-up), which would otherwise fall on the server's reset. The
        # keyed HMACs (mac.py) likewise.
        self._enc = None
        self._dec = None
        self._send_mac: KeyedMac | None = None
        self._recv_mac: KeyedMac | None = None
        if not is_server:
            self._send_mac = KeyedMac(self.send_ka)
            self._recv_mac = KeyedMac(self.recv_ka)
            self._enc = Cipher(algorithms.AES(self.send_ke), modes.CTR(bytes(16))).encryptor()
            self._dec = Cipher(algorithms.AES(self.recv_ke), modes.CTR(bytes(16))).decryptor()

    def wrap(self, op_byte: int, own_sid: bytes, body: bytes, now: float) -> bytes:
        ad = bytes((op_byte,)) + own_sid + self._next_header(now)
        mac = self._send_mac
        if mac is None:
            mac = self._send_mac = KeyedMac(self.send_ka)
        tag = mac.digest(ad + body)
        enc = self._enc
        if enc is None:
            enc = self._enc = Cipher(algorithms.AES(self.send_ke), modes.CTR(tag[:16])).encryptor()
        else:
            enc.reset_nonce(tag[:16])
        if op_byte >> 3 in self._wkc_ops:
            return ad + tag + enc.update(body) + self.wkc
        return ad + tag + enc.update(body)

    def unwrap_untrusted(self, packet: bytes, now: float, check_replay: bool = True) -> tuple[int, bytes, bytes]:
        ct_off = self._CT
        if len(packet) <= ct_off:
            raise BadPacket("short control packet")
        packet = bytes(packet)
        pid, t = _unpack_pid_time(packet, HEADER)
        if check_replay and not self._replay_check(pid, t, now):
            raise BadPacket("replayed or too old control packet")
        tag = packet[HEADER + REPLAY:ct_off]
        dec = self._dec
        if dec is None:
            dec = self._dec = Cipher(algorithms.AES(self.recv_ke), modes.CTR(tag[:16])).decryptor()
        else:
            dec.reset_nonce(tag[:16])
        body = dec.update(packet[ct_off:])
        mac = self._recv_mac
        if mac is None:
            mac = self._recv_mac = KeyedMac(self.recv_ka)
        if not hmac.compare_digest(tag, mac.digest(packet[:HEADER + REPLAY] + body)):
            raise BadPacket("control packet failed tls-crypt authentication")
        if check_replay:
            self._replay_record(pid, t, now)
        return packet[0], packet[1:HEADER], body


class TlsCryptV2ClientWrapper(TlsCryptWrapper):
    """tls-crypt with the client's own key Kc; the WKc rides in clear after opcodes 10 and 11.

    With early negotiation (OpenVPN 2.6) the counter starts at 0x0f000000, so the reset carries
    replay id 0x0f000001 and tells a 2.6 server it may ask for the WKc again (HMAC cookie flow).
    TlsCryptWrapper.wrap appends the WKc for the opcodes in `_wkc_ops` (no second wrap frame per
    control packet).
    """

    _wkc_ops = WKC_OPS

    def __init__(self, kc: bytes, wkc: bytes, early_negotiation: bool = True, replay_window: int = DEFAULT_SIZE,
                 replay_time: float | None = DEFAULT_TIME_LIMIT) -> None:
        super().__init__(kc, is_server=False, replay_window=replay_window, replay_time=replay_time)
        if not WKC_MIN_LEN <= len(wkc) <= WKC_MAX_LEN:
            raise ConfigError(f"tls-crypt-v2 wrapped client key has a bad size ({len(wkc)} bytes)")
        self.wkc = bytes(wkc)
        if early_negotiation:
            self.send_pid = EARLY_NEG_START


def split_wkc_untrusted(packet: bytes) -> tuple[bytes, bytes]:
    """Server side: (tls-crypt packet, WKc) from a packet with a WKc appended.

    The WKc's own trailing length field says where it starts; nonsense lengths are BadPacket.
    Only the framing is checked here — the WKc is authenticated by unwrap_client_key_untrusted.
    """
    n = len(packet)
    if n < 2:
        raise BadPacket("packet too short for a wrapped client key")
    wkc_len = (packet[n - 2] << 8) | packet[n - 1]
    if wkc_len < WKC_MIN_LEN or wkc_len > WKC_MAX_LEN:
        raise BadPacket("wrapped client key length out of range")
    if n - wkc_len < HEADER + REPLAY + TLS_CRYPT_TAG + 1:
        raise BadPacket("packet too short for its wrapped client key")
    packet = bytes(packet)
    return packet[:n - wkc_len], packet[n - wkc_len:]


def make_wrapper(kind: str, *, key: bytes | None = None, is_server: bool = False,
                 key_direction: int | None = None, digest: str = "SHA1",
                 wkc: bytes | None = None) -> Wrapper:
    """One wrapper from a protection name: none | tls-auth | tls-crypt | tls-crypt-v2 (client)."""
    if kind in ("none", "plain", "tls-plain"):
        return PlainWrapper()
    if key is None:
        raise ConfigError(f"{kind} needs a key")
    if kind == "tls-auth":
        return TlsAuthWrapper(key, key_direction, digest)
    if kind == "tls-crypt":
        return TlsCryptWrapper(key, is_server)
    if kind == "tls-crypt-v2":
        if is_server:
            return TlsCryptWrapper(key, True)
        if wkc is None:
            raise ConfigError("tls-crypt-v2 client needs its wrapped key")
        return TlsCryptV2ClientWrapper(key, wkc)
    raise ConfigError(f"unknown control channel protection {kind!r}")
