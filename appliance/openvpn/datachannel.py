"""The data channel: sealing and opening tunnel packets for one key id.

Why this shape: it is the hot path. Every per-packet step is a method call on a long-lived object
that holds its AEAD context, its header layout and its replay window. Profiles (README, Performance)
showed the cost in Python operations, not in AES (~0.9 us per 1400-byte packet): so the AEAD path
packs header, packet-id and nonce with ONE struct call, lets `cryptography` return fresh bytes
(`encrypt`/`decrypt`, no memoryview slicing, no 128 KiB scratch per key) and moves the 16-byte tag
with plain bytes slices. `seal_into` (the same bytes into a caller's buffer) is kept for callers
that pack packets into one buffer; tests/unit/test_datachannel_fastpath.py proves both equal.

AEAD packet (2.4-2.6 format): `op|key_id (1) | [peer-id (3), P_DATA_V2 only] | packet-id (4) | tag (16) |
ciphertext`. AAD = everything before the tag for P_DATA_V2, the packet id alone for P_DATA_V1.
Nonce = packet-id ‖ implicit IV (8 bytes from the sender's hmac key slot).

CBC packet (legacy): `op (+peer-id) | HMAC(IV ‖ ct) | IV (16) | AES-CBC(packet-id ‖ payload ‖ PKCS#7)`.

Two AEAD paths, chosen once per key at construction: the compiled appliance.native._aead (one C
call per packet: the whole wire packet in one allocation, the key's EVP context set up once) when
it was built, else the Python code below, which stays the reference (tests/unit/test_native_aead.py
holds them byte for byte equal). Both keep the replay window here, in Python: checked before the
tag is, updated only after it verified. CBC is Python only.
"""
from __future__ import annotations

import hmac
import secrets
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .. import native
from . import ciphers
from .ciphers import AEAD_TAG_LEN as TAG_LEN
from .errors import BadPacket
from .keys import digest_size
from .mac import KeyedMac
from .opcodes import DATA_V1_BASE, DATA_V2_BASE, NO_PEER_ID
from .replay import DEFAULT_SIZE, DEFAULT_TIME_LIMIT, ReplayWindow

_unpack_pid = struct.Struct("!I").unpack_from
# header word (op|key_id + peer-id for V2, op|key_id alone for V1), packet-id, implicit IV: one call
# gives the wire header, the AAD and the nonce as slices of one 16- or 13-byte string.
_pack_v2 = struct.Struct("!II8s").pack
_pack_v1 = struct.Struct("!BI8s").pack
# The compiled AEAD (None: not built, or VPN_APPLIANCE_PURE_PYTHON set); read by each new DataKey,
# so tests can set it to None to run the Python path.
_aead = native.load("_aead")
_OpenError = getattr(_aead, "OpenError", None)     # kept when a test sets _aead to None
# replay-window 0 (replay.py): no id is new merely for being above the newest, so the native
# open() hands every one back to the window first (above any 32-bit id).
_ASK_ALWAYS = 1 << 32


class DataKey:
    """Both directions of one key id. `peer_id` None → P_DATA_V1 on send."""

    __slots__ = ("cipher", "key_id", "aead", "is_aead", "send_iv", "recv_iv", "send_pid",
                 "hdr", "hlen", "replay", "cbc_key_send", "cbc_key_recv",
                 "hmac_send", "hmac_recv", "digest", "dlen", "bytes_sent", "bytes_recv",
                 "packets_recv", "aead_recv", "_overhead", "_hword", "_pack", "_aad", "_nonce", "_head",
                 "usage_limit", "_csend", "_crecv")

    def __init__(self, cipher: str, key_id: int, send_key: bytes, send_hmac: bytes,
                 recv_key: bytes, recv_hmac: bytes, peer_id: int | None, auth: str = "SHA1",
                 replay_window: int = DEFAULT_SIZE, replay_time: float | None = DEFAULT_TIME_LIMIT) -> None:
        spec = ciphers.spec(cipher)
        if spec is None:
            raise ValueError(f"unsupported cipher {cipher}")
        self.cipher = cipher
        self.key_id = key_id
        self.usage_limit = spec.usage_limit
        self.send_pid = 0
        self.replay = ReplayWindow(replay_window, replay_time)
        # No per-key decrypt buffer any more (open returns fresh bytes); the attribute stays for
        # session.py, which lets lame-duck keys share the sending key's (nothing to share now).
        self.bytes_sent = self.bytes_recv = self.packets_recv = 0
        if peer_id is None or peer_id == NO_PEER_ID:
            self.hdr = bytes((DATA_V1_BASE | key_id,))
            self._hword, self._pack = DATA_V1_BASE | key_id, _pack_v1
            self._aad, self._nonce = slice(1, 5), slice(1, 13)       # op | pid | iv
        else:
            self.hdr = bytes((DATA_V2_BASE | key_id,)) + peer_id.to_bytes(3, "big")
            self._hword, self._pack = int.from_bytes(self.hdr, "big"), _pack_v2
            self._aad, self._nonce = slice(0, 8), slice(4, 16)       # op peer-id | pid | iv
        self.hlen = len(self.hdr)
        self._head = slice(0, self.hlen + 4)
        n = spec.key_len
        self._csend = self._crecv = None
        compiled = _aead
        if spec.aead and compiled is not None:
            # No Python copies of the keys: the C Key passes the caller's bytes to OpenSSL once.
            self.is_aead = True
            self.aead = self.aead_recv = self.send_iv = self.recv_iv = None
            iv = spec.iv_len
            self._csend = compiled.Key(spec.name, memoryview(send_key)[:n], memoryview(send_hmac)[:iv], True)
            self._crecv = compiled.Key(spec.name, memoryview(recv_key)[:n], memoryview(recv_hmac)[:iv], False)
        elif spec.aead:
            make = spec.make_aead
            self.is_aead = True
            self.aead = make(bytes(send_key[:n]))
            self.aead_recv = make(bytes(recv_key[:n]))
            self.send_iv = bytes(send_hmac[:spec.iv_len])
            if len(self.send_iv) != 8:
                raise ValueError("AEAD implicit IV must be 8 bytes")
            self.recv_iv = bytes(recv_hmac[:spec.iv_len])
        else:
            self.is_aead = False
            self.cbc_key_send = bytes(send_key[:n])
            self.cbc_key_recv = bytes(recv_key[:n])
            self.digest = auth.lower().replace("-", "")
            self.dlen = digest_size(auth)
            self.hmac_send = KeyedMac(bytes(send_hmac[:self.dlen]), self.digest)
            self.hmac_recv = KeyedMac(bytes(recv_hmac[:self.dlen]), self.digest)
        self._overhead = spec.overhead(auth, self.hlen == 4)

    # ---------------- send ----------------
    def overhead(self) -> int:
        """Bytes a packet grows by when sealed (ciphers.overhead for this key's cipher and header)."""
        return self._overhead

    def usage_over(self) -> bool:
        """Whether this key protected more than its cipher's usage limit in either direction
        (ciphers.AES_GCM_USAGE_LIMIT), counting an upper bound of what OpenVPN 2.7 counts: each
        packet's plaintext blocks rounded up (at most bytes // 16 + packets) plus its packet id.
        Read from the session's timer, not per packet: the fast path stays as it is."""
        lim = self.usage_limit
        return bool(lim) and (self.bytes_sent // 16 + 2 * self.send_pid > lim
                              or self.bytes_recv // 16 + 2 * self.packets_recv > lim)

    @property
    def packets_sent(self) -> int:
        """Every sealed packet takes the next packet id, so the id is the count."""
        return self.send_pid

    def seal_into(self, payload, out: memoryview) -> int:
        """Seal `payload` into `out` (needs len(payload) + overhead() + 16 bytes); returns wire length.
        Same bytes as seal(), written into a caller's buffer."""
        c = self._csend
        if c is not None:
            self.send_pid = pid = self.send_pid + 1
            self.bytes_sent += len(payload)
            return c.seal_into(self._hword, self.hlen, pid, payload, out)
        if not self.is_aead:
            w = self.seal(payload)
            out[:len(w)] = w
            return len(w)
        self.send_pid = pid = self.send_pid + 1
        n = len(payload)
        self.bytes_sent += n
        h = self._pack(self._hword, pid, self.send_iv)
        hl = self.hlen + 4
        ct = hl + TAG_LEN
        out[:hl] = h[self._head]
        self.aead.encrypt_into(h[self._nonce], payload, h[self._aad], out[ct:ct + n + TAG_LEN])
        out[hl:ct] = out[ct + n:ct + n + TAG_LEN]
        return ct + n

    def seal(self, payload) -> bytes:
        """Seal one tunnel packet; returns the wire bytes (a fresh object the caller keeps).

        The fast path of the whole program: one struct call for header/AAD/nonce, one AEAD call,
        and the tag moved in front of the ciphertext by joining slices (C memcpy). P_DATA_V2 (what
        every 2.4+ peer uses) has its slice bounds written out: its AAD is the wire header.
        With the compiled AEAD: one C call writes header, packet id, tag and ciphertext."""
        c = self._csend
        if c is not None:
            self.send_pid = pid = self.send_pid + 1
            self.bytes_sent += len(payload)
            return c.seal(self._hword, self.hlen, pid, payload)
        if not self.is_aead:
            self.send_pid += 1
            self.bytes_sent += len(payload)
            return self._seal_cbc(payload)
        self.send_pid = pid = self.send_pid + 1
        self.bytes_sent += len(payload)
        h = self._pack(self._hword, pid, self.send_iv)
        if self.hlen == 4:
            head = h[:8]
            r = self.aead.encrypt(h[4:], payload, head)
        else:
            head = h[:5]
            r = self.aead.encrypt(h[1:], payload, h[1:5])
        return head + r[-16:] + r[:-16]

    def seal_many(self, payloads: list) -> list[bytes]:
        """seal() of each payload, in order: the same bytes and packet ids as one seal() per
        payload. With the compiled AEAD one C call seals the whole batch (the sending path's
        per-packet Python calls were a tenth of a sending client's CPU); the ids are counted
        before it runs, so a failure mid-batch can skip ids, never reuse one."""
        c = self._csend
        if c is None:
            seal = self.seal
            return [seal(p) for p in payloads]
        first = self.send_pid + 1
        self.send_pid += len(payloads)
        self.bytes_sent += sum(map(len, payloads))
        return c.seal_many(self._hword, self.hlen, first, payloads)

    def _seal_cbc(self, payload) -> bytes:
        iv = secrets.token_bytes(16)
        padder = padding.PKCS7(128).padder()
        plain = padder.update(struct.pack("!I", self.send_pid) + bytes(payload)) + padder.finalize()
        enc = Cipher(algorithms.AES(self.cbc_key_send), modes.CBC(iv)).encryptor()
        ct = enc.update(plain) + enc.finalize()
        mac = self.hmac_send.digest(iv + ct)
        return self.hdr + mac + iv + ct

    # ---------------- receive ----------------
    def open_untrusted(self, packet, now: float | None = None) -> bytes:
        """Authenticate, decrypt and replay-check one data packet; returns the plaintext (fresh
        bytes: the caller may keep it; MSS clamping copies the rare SYN it edits). Raises BadPacket
        (bad tag, replay, short). `now` enables the replay window's time limit (replay-window N T)."""
        c = self._crecv
        if c is not None:
            rp = self.replay
            try:
                # None: id not above the newest (window 0: any id), not decrypted
                pt = c.open(packet, rp.highest if rp.size else _ASK_ALWAYS)
                if pt is None:
                    if not rp.check(c.last_pid, now):
                        raise BadPacket("replayed data packet")
                    pt = c.open(packet, -1)
            except _OpenError as e:                   # short, or the tag did not verify
                raise BadPacket(e.args[0]) from None
            rp.update(c.last_pid, now)
            self.bytes_recv += len(pt)
            self.packets_recv += 1
            return pt
        if not self.is_aead:
            return self._open_cbc(packet, now)
        if type(packet) is memoryview:
            packet = packet.tobytes()           # slices below are joined with +
        # Header length from the packet's own opcode (a peer may send V1 while we send V2).
        rp = self.replay
        n = len(packet)
        if n < 21:                              # the shorter (V1) layout's minimum; also no opcode
            raise BadPacket("short data packet")
        if packet[0] >> 3 == 9:                 # P_DATA_V2: op|peer-id (4) | pid (4) | tag (16) | ct
            if n < 24:
                raise BadPacket("short data packet")
            pid = _unpack_pid(packet, 4)[0]
            if (pid <= rp.highest or not rp.size) and not rp.check(pid, now):  # above: new (not window 0)
                raise BadPacket("replayed data packet")
            try:
                pt = self.aead_recv.decrypt(packet[4:8] + self.recv_iv, packet[24:] + packet[8:24], packet[:8])
            except InvalidTag:
                raise BadPacket("data packet failed authentication") from None
        else:                                   # P_DATA_V1: op (1) | pid (4) | tag (16) | ct
            pid = _unpack_pid(packet, 1)[0]
            if (pid <= rp.highest or not rp.size) and not rp.check(pid, now):
                raise BadPacket("replayed data packet")
            try:
                pt = self.aead_recv.decrypt(packet[1:5] + self.recv_iv, packet[21:] + packet[5:21], packet[1:5])
            except InvalidTag:
                raise BadPacket("data packet failed authentication") from None
        rp.update(pid, now)
        self.bytes_recv += len(pt)
        self.packets_recv += 1
        return pt

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
        if not hmac.compare_digest(mac, self.hmac_recv.digest(iv + ct)):
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
        return plain[4:]
