"""Stateless server session ids (OpenVPN 2.6 "HMAC cookie", wire notes §9).

Why: a UDP server that allocates a session for every HARD_RESET can be flooded with spoofed
resets. Instead the server's session id is a keyed PRF of (time slot, client address, client
session id); the server keeps nothing until the client's next packet echoes that id back, which
proves the client receives at its claimed address. The value is opaque to clients, so any keyed
PRF interoperates; OpenVPN uses SipHash, we use truncated HMAC-SHA256 (in the standard library).

Time slots are (hand_window + 1) // 2 seconds long and a cookie is accepted for its own slot
and the two before it, so it stays valid for at least a full hand-window. The low two bits of a
cookie's first byte are its slot's (modulo 4), the other 62 bits the MAC's: a check computes
the one MAC of the slot the cookie names, not the three, so a wrong cookie -- anybody with the
tls-auth/tls-crypt key can send them from any address, and they cost no state -- costs one MAC.
"""
from __future__ import annotations

import hmac
import secrets
import struct

from .mac import KeyedMac

SID_LEN = 8
_SLOT_MASK = 3                              # a cookie's slot bits: 3 slots accepted, 4 values
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

    @staticmethod
    def _client_part(client_addr: tuple, client_sid: bytes) -> bytes:
        addr = repr(client_addr).encode()
        return struct.pack("!H", len(addr)) + addr + bytes(client_sid)

    def _cookie(self, slot: int, client_part: bytes) -> bytes:
        mac = self._mac.digest(_pack_slot(slot, self.period) + client_part)
        return bytes(((mac[0] & ~_SLOT_MASK) | (slot & _SLOT_MASK),)) + mac[1:SID_LEN]

    def session_id(self, client_addr: tuple, client_sid: bytes, now: float, slot_offset: int = 0) -> bytes:
        """Our 8-byte session id for this client in the time slot of `now` (+ slot_offset)."""
        return self._cookie(self._slot(now) + slot_offset, self._client_part(client_addr, client_sid))

    def valid(self, client_addr: tuple, client_sid: bytes, server_sid: bytes, now: float) -> bool:
        """True if `server_sid` is the cookie of this slot or of one of the two previous ones
        (the one its low bits name: which one is no secret, the MAC is)."""
        if len(server_sid) != SID_LEN:
            return False
        server_sid = bytes(server_sid)
        slot = self._slot(now)
        for offset in (0, -1, -2):
            if (slot + offset) & _SLOT_MASK == server_sid[0] & _SLOT_MASK:
                want = self._cookie(slot + offset, self._client_part(client_addr, client_sid))
                return hmac.compare_digest(server_sid, want)
        return False
