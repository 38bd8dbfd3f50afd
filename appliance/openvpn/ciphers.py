"""The data-channel cipher registry: one CipherSpec per cipher this appliance can run.

Why one table: the options parser (is `data-ciphers X` usable?), the negotiation (which of the
peer's ciphers do we share?), the data channel (which primitive, which key length?) and the MSS
computation (how many bytes does a packet grow?) all need the same facts. Spread over several
files they drifted (the server guessed the overhead from the cipher's name); here a new cipher is
one entry, and a name missing from the table is refused everywhere alike.

Wire overhead, as OpenVPN 2.6 lays packets out (crypto.c, calculate_crypto_overhead):
- AEAD: opcode/key-id (1) [+ peer-id (3) for P_DATA_V2] + packet-id (4) + tag (16).
- CBC:  opcode/key-id (1) [+ peer-id (3)] + HMAC (digest size) + IV (16) + encrypted packet-id (4)
        + PKCS#7 padding (1..16, counted as its worst case 16).
"""
from __future__ import annotations

from typing import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..frozen_record import FrozenRecord
from .keymethod import escape_controls, peer_info_int, peer_info_var
from .keys import digest_size

PACKET_ID_LEN = 4
AEAD_TAG_LEN = 16
AEAD_IMPLICIT_IV_LEN = 8      # nonce = packet-id (4) ‖ 8 bytes from the sender's HMAC key slot
CBC_BLOCK = 16


class CipherSpec(FrozenRecord):
    """One data-channel cipher: what it is, its sizes, and how to build it."""
    name: str                    # OpenVPN's upper-case name, as in `data-ciphers`
    aead: bool
    key_len: int                 # bytes taken from the key block's cipher slot
    iv_len: int                  # AEAD: implicit IV bytes; CBC: the per-packet random IV
    block_size: int              # 1 for AEAD (a stream), 16 for CBC
    ncp2: bool = False           # offered to OpenVPN 2.4 clients that only say IV_NCP=2
    make_aead: Callable[[bytes], object] | None = None   # key -> AESGCM / ChaCha20Poly1305 object
    usage_limit: int = 0         # packets + 16-byte blocks one key may protect per direction before
                                 # the session renegotiates (0: no limit); see AES_GCM_USAGE_LIMIT

    def overhead(self, auth_digest: str = "SHA1", data_v2: bool = True) -> int:
        """Bytes a tunnel packet grows by on the wire (worst case for CBC padding)."""
        header = 4 if data_v2 else 1
        if self.aead:
            return header + PACKET_ID_LEN + AEAD_TAG_LEN
        return header + digest_size(auth_digest) + self.iv_len + PACKET_ID_LEN + self.block_size


    def max_payload(self, room: int, auth_digest: str = "SHA1", data_v2: bool = True) -> int:
        """Largest tunnel packet whose sealed form fits in `room` bytes. AEAD: room - overhead.
        CBC, as OpenVPN's adjust_payload_max_cbc (mss.c): the ciphertext (packet-id + payload +
        at least one padding byte) is a whole number of blocks within what header, HMAC and IV
        leave."""
        if self.aead:
            return room - self.overhead(auth_digest, data_v2)
        fixed = (4 if data_v2 else 1) + digest_size(auth_digest) + self.iv_len
        return (room - fixed) // self.block_size * self.block_size - 1 - PACKET_ID_LEN


# AES-GCM's usage limit, as OpenVPN 2.7 sets it (crypto.c cipher_get_aead_limits, ssl.c
# tls_get_limit_aead): q packets plus s blocks of plaintext under one key must stay within
# 2^36 - 1 for a forgery/distinguishing advantage under 2^-57; it renegotiates at 7/8 of that
# so the new key is in place before. ChaCha20-Poly1305 gets none there (its bound is far
# beyond a 32-bit packet id), nor CBC. OpenVPN 2.6 has none at all.
AES_GCM_USAGE_LIMIT = (2**36 - 1) // 8 * 7


def _aead(name: str, key_len: int, cls: Callable[[bytes], object], ncp2: bool = False,
          usage_limit: int = 0) -> CipherSpec:
    return CipherSpec(name, True, key_len, AEAD_IMPLICIT_IV_LEN, 1, ncp2, cls, usage_limit)


def _cbc(name: str, key_len: int) -> CipherSpec:
    return CipherSpec(name, False, key_len, CBC_BLOCK, CBC_BLOCK)


REGISTRY: dict[str, CipherSpec] = {s.name: s for s in (
    _aead("AES-128-GCM", 16, AESGCM, ncp2=True, usage_limit=AES_GCM_USAGE_LIMIT),
    _aead("AES-192-GCM", 24, AESGCM, usage_limit=AES_GCM_USAGE_LIMIT),
    _aead("AES-256-GCM", 32, AESGCM, ncp2=True, usage_limit=AES_GCM_USAGE_LIMIT),
    _aead("CHACHA20-POLY1305", 32, ChaCha20Poly1305),
    _cbc("AES-128-CBC", 16),
    _cbc("AES-192-CBC", 24),
    _cbc("AES-256-CBC", 32),
)}

# What a 2.4 client saying IV_NCP=2 (and no IV_CIPHERS) takes, in 2.6's words (tls_peer_ncp_list).
NCP2_CIPHERS = ":".join(s.name for s in sorted((s for s in REGISTRY.values() if s.ncp2), key=lambda s: -s.key_len))

# OpenVPN 2.6's default `data-ciphers`.
DEFAULT_DATA_CIPHERS: tuple[str, ...] = ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305")
# Worst case over the registry (CBC with SHA512), for buffers sized before a cipher is known.
MAX_OVERHEAD = max(s.overhead("SHA512", True) for s in REGISTRY.values())


def spec(name: str) -> CipherSpec | None:
    """The spec of `name` (any case), or None when this appliance cannot run it."""
    return REGISTRY.get(name.upper())


def warm_up(cipher_names) -> None:
    """Make one throw-away object of each AEAD primitive among `cipher_names`. Why: the first AEAD
    object of a process costs ~1 ms (cryptography's one-time set-up), and a client makes its first
    one when PUSH_REPLY arrives, on the way to its first packet (README "Handshake to first
    packet"); OpenVPN likewise loads its data ciphers when it checks its options at start.
    With the compiled AEAD (the data channel's choice, datachannel._aead) it is its first Key that
    pays: OpenSSL loading its default provider and fetching the cipher, 0.5-5 ms measured."""
    from . import datachannel           # here, not at the top: datachannel imports this module
    compiled = datachannel._aead
    done: set = set()
    for name in cipher_names:
        s = spec(name) if name else None
        if s is None or s.make_aead is None:
            continue
        if compiled is not None and s.name not in done:
            done.add(s.name)
            compiled.Key(s.name, bytes(s.key_len), bytes(AEAD_IMPLICIT_IV_LEN), True)
        elif compiled is None and s.make_aead not in done:
            done.add(s.make_aead)
            s.make_aead(bytes(s.key_len))


def is_supported(name: str) -> bool:
    return name.upper() in REGISTRY


def peer_list(peer_info: dict[str, str]) -> str:
    """The client's cipher list as OpenVPN 2.6.14 reads it (ssl_ncp.c tls_peer_ncp_list): its
    IV_CIPHERS value as sent (peer_info_var: the first `IV_CIPHERS=` anywhere, even empty),
    else "AES-256-GCM:AES-128-GCM" for a 2.4 client (IV_NCP=2 or more), else ""."""
    listed = peer_info_var(peer_info, "IV_CIPHERS")
    if listed is not None:
        return listed
    if peer_info_int(peer_info, "IV_NCP") >= 2:        # the one reader of peer-info numbers
        return NCP2_CIPHERS
    return ""


def announced(peer_info: dict[str, str]) -> list[str]:
    """The data ciphers a client says it takes (peer_list's names; an empty name is none)."""
    return [c for c in peer_list(peer_info).split(":") if c]


def occ_cipher(options: str) -> str | None:
    """The `cipher` a peer's options string (OCC) names, as OpenVPN 2.6 reads it (ssl.c
    key_method_2_read: remote_ciphername; `[null-cipher]` is "none"), else None. A 2.6 peer
    names one only when its data-ciphers lists it; a pre-2.4 one always does (BF-CBC by default),
    unless built with --enable-small (no options string)."""
    fields = options.split(",")
    for i, part in enumerate(fields):
        if part.startswith("cipher ") and (len(part) > len("cipher ") or i < len(fields) - 1):
            # review47f: an empty value with more fields after it ("cipher ,auth SHA1") is an
            # empty cipher NAMED, as 2.6.14's options_string_extract_option reads it (it counts the
            # rest of the whole string): the client is refused, not given data-ciphers-fallback.
            name = part[len("cipher "):]
            return "none" if name == "[null-cipher]" else name
    return None


def choose(peer_info: dict[str, str], data_ciphers, fallback: str | None, occ: str | None = None) -> str | None:
    """The data cipher a server gives a client: the first of `data_ciphers` the client announces
    (`announced`) or -- a client sending no IV_CIPHERS -- names in its options string (`occ`: 2.6's
    "poor man's NCP", ssl_ncp.c ncp_get_best_cipher); when it names none either way, `fallback`
    (data-ciphers-fallback); else None -- the client refused, as OpenVPN 2.6.14 refuses it (multi.c
    multi_client_set_protocol_options: a client that named its ciphers, or its one cipher, gets no
    fallback it did not name: "No common cipher between server and client"). Names are compared
    exactly, case included, as 2.6's strcmp (tls_item_in_cipher_list): a client announcing
    `aes-256-gcm` shares nothing with a server's AES-256-GCM there (compat48). A name this
    appliance cannot run (a per-client file's) is returned as 2.6 chooses it; the caller refuses
    it (`spec` None), as 2.6 fails the client's data channel. One place for the session's
    choice, made after its per-client lines (clientpush.py), and a reload's verdict (given.py)."""
    listed = peer_list(peer_info)
    theirs = set(listed.split(":"))
    theirs.discard("")
    remote = occ if peer_info_var(peer_info, "IV_CIPHERS") is None else None   # 2.6: IV_CIPHERS makes the OCC one moot
    for c in data_ciphers:
        if c in theirs or (remote is not None and c == remote):
            return c
    if listed or occ is not None:
        # review47d: a pre-2.4 client saying `cipher AES-256-CBC` was given the fallback (another
        # cipher, which it does not take: a tunnel up on both ends that carried nothing).
        # compat48: `IV_CIPHERS=::` names no cipher but is a list for 2.6 (strlen > 0): refused.
        return None
    return fallback or None


def per_client(data_ciphers, fallback: str | None, ccd) -> tuple[tuple[str, ...], str | None]:
    """The server's `data_ciphers` and `fallback` as one source of per-client lines (`ccd`, a
    CcdOptions: a client-config-dir file, a client-connect script's output, a management
    client-auth block) changes them, as 2.6 imports those options onto the client's own copy of
    the server's (multi.c, options.c): its `data-ciphers` replaces the list; its
    `data-ciphers-fallback` sets the fallback; its `cipher` sets it only where a fallback is on
    (2.6 keeps one cipher name for both, used as the fallback only with enable_ncp_fallback).
    Applied source after source, later lines over earlier ones, as 2.6 reads them."""
    names, fb = getattr(ccd, "data_ciphers", None), getattr(ccd, "fallback", None)
    if names is not None:
        data_ciphers = names
    if fb is not None and (fb[1] or fallback):
        fallback = fb[0]
    return tuple(data_ciphers), fallback


def client_choice(peer_info: dict[str, str], data_ciphers, fallback: str | None, ccd,
                  occ: str | None = None) -> "str | None | bool":
    """The data cipher a client with `peer_info` is given by the server's `data_ciphers` and
    `fallback` as its per-client lines (`ccd`: one source, or a sequence of them in 2.6's order
    -- ccd file, then client-connect output / client-auth block -- each None when absent) change
    them (per_client) -- or False when the lines name no cipher. A reload's verdict on kept
    clients (given.cipher_dropped); a new session chooses the same way after all of its
    per-client lines (Session.choose_cipher). review48f: a reload looked at the file alone, so a
    client given its cipher by its client-connect output or client-auth block was told RESTART
    at every reload, one that changed nothing too."""
    sources = [c for c in (ccd if isinstance(ccd, (tuple, list)) else (ccd,))
               if getattr(c, "data_ciphers", None) is not None or getattr(c, "fallback", None) is not None]
    if not sources:
        return False
    lists = (data_ciphers, fallback)
    for c in sources:
        lists = per_client(*lists, c)
    return choose(peer_info, *lists, occ)


def no_common(peer_info: dict[str, str], data_ciphers, occ: str | None = None) -> str:
    """The log's reason for choose's None, in OpenVPN 2.6.14's words (multi.c), the client's list
    as it sent it (peer_list, case and empty names kept, as 2.6 prints it); the client's words
    with their control characters as `\\xNN` (review47d: an IV_CIPHERS of `\\x1b[2J...` reached
    the console and a management client's >LOG as the terminal control it is)."""
    listed = peer_list(peer_info)
    if listed:
        return (f"No common cipher between server and client. Server data-ciphers: '{':'.join(data_ciphers)}', "
                f"client supported ciphers '{escape_controls(listed)}'")
    if occ is not None:
        return (f"No common cipher between server and client. Server data-ciphers: '{':'.join(data_ciphers)}', "
                f"client supports cipher '{escape_controls(occ)}'")
    return ("No NCP or OCC cipher data received from peer. Use --data-ciphers-fallback with the cipher the "
            "client is using if you want to allow the client to connect")


def names() -> list[str]:
    """Supported names, sorted (for error messages)."""
    return sorted(REGISTRY)


def overhead(cipher_name: str, auth_digest: str = "SHA1", data_v2: bool = True) -> int:
    """Bytes each tunnel packet grows by on the wire with this cipher (the pump's MSS input).

    `auth_digest` matters for CBC only (its HMAC); `data_v2` adds the 3-byte peer-id.
    Raises ValueError for a cipher not in the registry, so a new cipher cannot silently get
    another one's overhead."""
    s = spec(cipher_name)
    if s is None:
        raise ValueError(f"unsupported cipher {cipher_name}")
    return s.overhead(auth_digest, data_v2)


def max_overhead(cipher_names: list[str] | tuple[str, ...], auth_digest: str = "SHA1",
                 data_v2: bool = True) -> int:
    """The largest overhead among `cipher_names` (a server clamping for whichever cipher a client
    negotiates)."""
    return max(overhead(c, auth_digest, data_v2) for c in cipher_names)
