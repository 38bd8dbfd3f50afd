"""What a `dh` file holds, read as far as OpenVPN 2.6 needs it to start: a TLS server's DH
parameters are checked here, never used (key exchange is ECDHE only).

Why read them at all: OpenVPN 2.6 loads the file at start on a TLS server and exits when it holds
no parameters or DH parameters below OpenSSL 3's default security level ("dh key too small":
Debian's openvpn loads them before any `tls-cert-profile` or `tls-cipher` could lower the level,
so fewer than 2048 bits fail whatever the config says). A config that 2.6 refuses must not start
here either, and a `dh` line naming the wrong file is a mistake worth saying at its line.

Only the PEM blocks `openssl dhparam` writes are taken ("DH PARAMETERS", PKCS#3; "X9.42 DH
PARAMETERS" with -dsaparam). OpenSSL 3 reads any "... PARAMETERS" block there -- 2.6 starts with
EC parameters, which are no DH group at all -- refused here (stricter: nothing a user meant).
Read with a few lines of DER (the modulus's size is all that is wanted), not with cryptography,
whose finite-field DH is deprecated. Bounded by the file's size limit (regular_file), and each
length checked against the bytes there: a hostile file fails with a reason, never loops.
"""
from __future__ import annotations

import base64
import binascii

MIN_BITS = 2048
_LABELS = (b"DH PARAMETERS", b"X9.42 DH PARAMETERS")
_SEQUENCE, _INTEGER = 0x30, 0x02


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `pos`; ValueError when it does not fit."""
    if pos + 2 > len(der):
        raise ValueError("truncated")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise ValueError("bad length")
        n = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + n > len(der):
        raise ValueError("truncated")
    return tag, pos, pos + n


def modulus_bits(data: bytes) -> int:
    """The size in bits of the prime of the first DH parameters block in `data`. ValueError with
    a reason a user can act on when there is none or it does not parse."""
    # Found with find(), not a regex: a file of many BEGIN lines without an END would make a lazy
    # `.*?` rescan the rest of the file from each one (quadratic in a 4 MiB file).
    found = [(at, label) for label in _LABELS if (at := data.find(b"-----BEGIN " + label + b"-----")) >= 0]
    if not found:
        raise ValueError("holds no DH parameters (a PEM \"BEGIN DH PARAMETERS\" block, as `openssl dhparam` "
                         "writes)")
    at, label = min(found)
    start = at + len(b"-----BEGIN " + label + b"-----")
    end = data.find(b"-----END " + label + b"-----", start)
    if end < 0:
        raise ValueError(f"its {label.decode()} block has no END line")
    body = b"".join(ln for ln in data[start:end].split() if b":" not in ln)   # PEM headers (Proc-Type) left out
    try:
        der = base64.b64decode(body, validate=True)
        tag, start, end = _tlv(der, 0)
        if tag != _SEQUENCE:
            raise ValueError("not a SEQUENCE")
        tag, pstart, pend = _tlv(der[:end], start)
        if tag != _INTEGER or pend == pstart:
            raise ValueError("no prime")
    except (ValueError, binascii.Error):
        raise ValueError("its DH PARAMETERS block does not parse (not base64 of DER DH parameters)") from None
    return int.from_bytes(der[pstart:pend], "big").bit_length()
