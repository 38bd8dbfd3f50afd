"""Stateless server session ids (OpenVPN 2.6 "HMAC cookie", wire notes §9).

Why: a UDP server that allocates a session for every HARD_RESET can be flooded with spoofed
resets. Instead the server's session id is a keyed PRF of (time slot, client address, client
session id); the server keeps nothing until the client's next packet echoes that id back, which
proves the client receives at its claimed address. The value is opaque to clients, so any keyed
PRF interoperates; OpenVPN uses SipHash, we use truncated HMAC-SHA256 (in the standard library).

Time slots are (hand_window + 1) // 2 seconds long and a cookie is accepted for its own slot
and the two before it, so it stays valid for at least a full hand-window.
"""
from __future__ import annotations

import hmac
import secrets
import struct

from .mac import KeyedMac

SID_LEN = 8
_pack_slot = struct.Struct("!qI").pack      # (slot, period): jars of two hand-windows never agree


class CookieJar:
    __slots__ = ("_secret", "_mac", "period")

    def __init__(self, secret: bytes | None = None, hand_window: int = 60) -> None:
        self._secret = bytes(secret) if secret is not None else secrets.token_bytes(32)
        if len(self._secret) < 16:
            raise ValueError("cookie secret must be at least 16 bytes")
        self._mac = KeyedMac(self._secret)          # keyed once: a cookie per reset received
        self.period = self.period_for(hand_window)

    @staticmethod
    def period_for(hand_window: int) -> int:
        return max(1, (int(hand_window) + 1) // 2)

    def with_hand_window(self, hand_window: int) -> "CookieJar":
        """The same secret, another hand-window (a reload): a second jar, this one unchanged."""
        return CookieJar(self._secret, hand_window)

    def _slot(self, now: float) -> int:
        return int(now // self.period)

    def session_id(self, client_addr: tuple, client_sid: bytes, now: float, slot_offset: int = 0) -> bytes:
        """Our 8-byte session id for this client in the time slot of `now` (+ slot_offset)."""
        addr = repr(client_addr).encode()
        msg = _pack_slot(self._slot(now) + slot_offset, self.period) + struct.pack("!H", len(addr)) + addr + bytes(client_sid)
        return self._mac.digest(msg)[:SID_LEN]

    def valid(self, client_addr: tuple, client_sid: bytes, server_sid: bytes, now: float) -> bool:
        """True if `server_sid` is the cookie of this slot or of one of the two previous ones."""
        if len(server_sid) != SID_LEN:
            return False
        server_sid = bytes(server_sid)
        ok = False
        for offset in (0, -1, -2):   # no early exit: same work whichever slot matches
            ok |= hmac.compare_digest(server_sid, self.session_id(client_addr, client_sid, now, offset))
        return ok
