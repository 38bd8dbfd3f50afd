"""The data channel: sealing and opening tunnel packets for one key id.

Why this shape: it is the hot path. Every per-packet step is a method call on a long-lived object
that holds its AEAD context, its header prefix and its replay window; sealing writes header, tag and
ciphertext into a caller-owned buffer (`seal_into`), so the gateway can pack many packets into one
preallocated send buffer; nothing here formats strings or allocates more than the 12-byte nonce.

AEAD packet (2.4-2.6 format): `op|key_id (1) | [peer-id (3), P_DATA_V2 only] | packet-id (4) | tag (16) |
ciphertext`. AAD = everything before the tag for P_DATA_V2, the packet id alone for P_DATA_V1.
Nonce = packet-id ‖ implicit IV (8 bytes from the sender's hmac key slot).

CBC packet (legacy): `op (+peer-id) | HMAC(IV ‖ ct) | IV (16) | AES-CBC(packet-id ‖ payload ‖ PKCS#7)`.
"""
from __future__ import annotations

import hmac
import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import ciphers
from .ciphers import AEAD_TAG_LEN as TAG_LEN
from .ciphers import MAX_OVERHEAD
from .errors import BadPacket
from .keys import digest_size
from .opcodes import DATA_V1_BASE, DATA_V2_BASE, NO_PEER_ID
from .replay import DEFAULT_SIZE, DEFAULT_TIME_LIMIT, ReplayWindow

_pack_pid = struct.Struct("!I").pack_into
_unpack_pid = struct.Struct("!I").unpack_from


class DataKey:
    """Both directions of one key id. `peer_id` None → P_DATA_V1 on send."""

    __slots__ = ("cipher", "key_id", "aead", "is_aead", "send_iv", "recv_iv", "send_pid",
                 "hdr", "hlen", "replay", "scratch", "cbc_key_send", "cbc_key_recv",
                 "hmac_send", "hmac_recv", "digest", "dlen", "bytes_sent", "bytes_recv",
                 "packets_sent", "packets_recv", "aead_recv", "_overhead")

    def __init__(self, cipher: str, key_id: int, send_key: bytes, send_hmac: bytes,
                 recv_key: bytes, recv_hmac: bytes, peer_id: int | None, auth: str = "SHA1",
                 replay_window: int = DEFAULT_SIZE, replay_time: float | None = DEFAULT_TIME_LIMIT) -> None:
        spec = ciphers.spec(cipher)
        if spec is None:
            raise ValueError(f"unsupported cipher {cipher}")
        self.cipher = cipher
        self.key_id = key_id
        self.send_pid = 0
        self.replay = ReplayWindow(replay_window, replay_time)
        self.scratch = bytearray(2 * 65536 + 64)
        self.bytes_sent = self.bytes_recv = self.packets_sent = self.packets_recv = 0
        if peer_id is None or peer_id == NO_PEER_ID:
            self.hdr = bytes((DATA_V1_BASE | key_id,))
        else:
            self.hdr = bytes((DATA_V2_BASE | key_id,)) + peer_id.to_bytes(3, "big")
        self.hlen = len(self.hdr)
        n = spec.key_len
        if spec.aead:
            make = spec.make_aead
            self.is_aead = True
            self.aead = make(bytes(send_key[:n]))
            self.aead_recv = make(bytes(recv_key[:n]))
            self.send_iv = bytes(send_hmac[:spec.iv_len])
            self.recv_iv = bytes(recv_hmac[:spec.iv_len])
        else:
            self.is_aead = False
            self.cbc_key_send = bytes(send_key[:n])
            self.cbc_key_recv = bytes(recv_key[:n])
            self.digest = auth.lower().replace("-", "")
            self.dlen = digest_size(auth)
            self.hmac_send = bytes(send_hmac[:self.dlen])
            self.hmac_recv = bytes(recv_hmac[:self.dlen])
        self._overhead = spec.overhead(auth, self.hlen == 4)

    # ---------------- send ----------------
    def overhead(self) -> int:
        """Bytes a packet grows by when sealed (ciphers.overhead for this key's cipher and header)."""
        return self._overhead

    def seal_into(self, payload, out: memoryview) -> int:
        """Seal `payload` into `out` (needs len(payload) + overhead() + 16 bytes); returns wire length."""
        self.send_pid += 1
        n = len(payload)
        self.bytes_sent += n
        self.packets_sent += 1
        if not self.is_aead:
            return self._seal_cbc(payload, out)
        hl = self.hlen
        out[:hl] = self.hdr
        _pack_pid(out, hl, self.send_pid)
        ct = hl + 4 + TAG_LEN
        nonce = out[hl:hl + 4].tobytes() + self.send_iv
        aad = out[:hl + 4] if hl == 4 else out[hl:hl + 4]
        self.aead.encrypt_into(nonce, payload, aad, out[ct:ct + n + TAG_LEN])
        out[hl + 4:ct] = out[ct + n:ct + n + TAG_LEN]
        return ct + n

    def seal(self, payload) -> memoryview:
        """Seal into a fresh buffer (one allocation per packet); returns a view of the wire bytes."""
        mv = memoryview(bytearray(len(payload) + MAX_OVERHEAD))
        return mv[:self.seal_into(payload, mv)]

    def _seal_cbc(self, payload, out: memoryview) -> int:
        iv = secrets.token_bytes(16)
        padder = padding.PKCS7(128).padder()
        plain = padder.update(struct.pack("!I", self.send_pid) + bytes(payload)) + padder.finalize()
        enc = Cipher(algorithms.AES(self.cbc_key_send), modes.CBC(iv)).encryptor()
        ct = enc.update(plain) + enc.finalize()
        mac = hmac.digest(self.hmac_send, iv + ct, self.digest)
        wire = self.hdr + mac + iv + ct
        out[:len(wire)] = wire
        return len(wire)

    # ---------------- receive ----------------
    def open_untrusted(self, packet, now: float | None = None) -> memoryview:
        """Authenticate, decrypt and replay-check one data packet; returns a view of the plaintext
        (valid until the next call). Raises BadPacket (bad tag, replay, short). `now` enables the
        replay window's time limit (replay-window N T)."""
        if not self.is_aead:
            return self._open_cbc(packet, now)
        # Header length from the packet's own opcode (a peer may send V1 while we send V2).
        hl = 4 if (packet[0] >> 3) == 9 else 1
        ct = hl + 4 + TAG_LEN
        n = len(packet) - ct
        if n < 0:
            raise BadPacket("short data packet")
        pid = _unpack_pid(packet, hl)[0]
        if not self.replay.check(pid, now):
            raise BadPacket("replayed data packet")
        s = self.scratch
        s[:n] = packet[ct:]
        s[n:n + TAG_LEN] = packet[hl + 4:ct]
        mv = memoryview(s)
        nonce = bytes(packet[hl:hl + 4]) + self.recv_iv
        aad = packet[:hl + 4] if hl == 4 else packet[hl:hl + 4]
        try:
            self.aead_recv.decrypt_into(nonce, mv[:n + TAG_LEN], aad, mv[n + TAG_LEN:2 * n + TAG_LEN])
        except InvalidTag:
            raise BadPacket("data packet failed authentication") from None
        self.replay.update(pid, now)
        self.bytes_recv += n
        self.packets_recv += 1
        return mv[n + TAG_LEN:2 * n + TAG_LEN]

    def _open_cbc(self, packet, now: float | None) -> memoryview:
        hl = 4 if (packet[0] >> 3) == 9 else 1
        d = self.dlen
        if len(packet) < hl + d + 16 + 16:
            raise BadPacket("short data packet")
        mac = bytes(packet[hl:hl + d])
        iv = bytes(packet[hl + d:hl + d + 16])
        ct = bytes(packet[hl + d + 16:])
        if len(ct) % 16:
            raise BadPacket("CBC ciphertext not a block multiple")
        if not hmac.compare_digest(mac, hmac.digest(self.hmac_recv, iv + ct, self.digest)):
            raise BadPacket("data packet failed authentication")
        dec = Cipher(algorithms.AES(self.cbc_key_recv), modes.CBC(iv)).decryptor()
        try:
            unpadder = padding.PKCS7(128).unpadder()
            plain = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        except ValueError:
            raise BadPacket("bad CBC padding") from None
        if len(plain) < 4:
            raise BadPacket("short CBC plaintext")
        pid = _unpack_pid(plain, 0)[0]
        if not self.replay.accept(pid, now):
            raise BadPacket("replayed data packet")
        self.bytes_recv += len(plain) - 4
        self.packets_recv += 1
        return memoryview(bytearray(plain))[4:]   # writable, like the AEAD path (MSS clamping edits it)
