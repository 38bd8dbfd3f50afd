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
whose finite-field DH is deprecated (and whose loader tests p for primality, which 2.6's does
not). The block's framing and the DER's shape are checked as OpenSSL 3 checks them: a file it
cannot load (no generator, a PKCS#3 body under the X9.42 label, a glued END line, ...) was
taken here when its prime looked big enough, where 2.6 fails at start (fuzz40). Bounded by the file's size limit (regular_file), and each
length checked against the bytes there: a hostile file fails with a reason, never loops.
"""
from __future__ import annotations

import base64
import binascii

MIN_BITS = 2048
_LABELS = (b"DH PARAMETERS", b"X9.42 DH PARAMETERS")
_SEQUENCE, _INTEGER = 0x30, 0x02
_INT32 = 1 << 31


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `pos`; ValueError when it does not fit, or its
    length is not in DER's shortest form (OpenSSL refuses those: 2.6 does not start)."""
    if pos + 2 > len(der):
        raise ValueError("truncated")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        if count == 0 or count > 4 or pos + count > len(der) or der[pos] == 0:
            raise ValueError("bad length")
        n = int.from_bytes(der[pos:pos + count], "big")
        if n < 0x80:
            raise ValueError("bad length")
        pos += count
    if pos + n > len(der):
        raise ValueError("truncated")
    return tag, pos, pos + n


def _block(data: bytes) -> tuple[bytes, bytes]:
    """(label, base64 body) of the first DH parameters block, framed as OpenSSL's PEM reader
    takes one: its BEGIN and END lines whole lines of their own (trailing blanks aside), no PEM
    headers (parameters are never encrypted: OpenSSL refuses a Proc-Type, and any header the
    block does not end with a blank line after), no blank line in the body. Found line by line,
    not with a regex (a file of many BEGIN lines without an END stays linear)."""
    lines = data.split(b"\n")
    begin = {b"-----BEGIN " + label + b"-----": label for label in _LABELS}
    for i, line in enumerate(lines):
        label = begin.get(line.rstrip())
        if label is None:
            continue
        end = b"-----END " + label + b"-----"
        if end not in data:
            raise ValueError(f"its {label.decode()} block has no END line")
        body = []
        for ln in lines[i + 1:]:
            ln = ln.rstrip()
            if ln == end:
                return label, b"".join(body)
            if not ln or b":" in ln or ln.lstrip().startswith(b"-----"):
                raise ValueError(f"its {label.decode()} block does not parse (not base64 of DER DH parameters)")
            body.append(b"".join(ln.split()))
        raise ValueError(f"its {label.decode()} block has no END line")
    raise ValueError("holds no DH parameters (a PEM \"BEGIN DH PARAMETERS\" block, as `openssl dhparam` writes)")


def _prime(der: bytes, x942: bool) -> bytes:
    """The prime's bytes, the DER checked as OpenSSL 3 decodes it (2.6 starts only then):
    PKCS#3 `SEQUENCE { p, g [, privateValueLength (32 bits)] }`, X9.42 `SEQUENCE { p, g, q
    [, j] [, validationParms SEQUENCE] }`, every number an INTEGER, nothing more inside."""
    tag, start, end = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a SEQUENCE")
    items = []
    pos = start
    while pos < end:
        if len(items) == 5:
            raise ValueError("too many elements")
        tag, s, e = _tlv(der[:end], pos)
        items.append((tag, s, e))
        pos = e
    tags = [t for t, _s, _e in items]
    if x942:
        shapes = ([_INTEGER] * 3, [_INTEGER] * 4, [_INTEGER] * 3 + [_SEQUENCE], [_INTEGER] * 4 + [_SEQUENCE])
        ok = tags in shapes
    else:
        ok = tags in ([_INTEGER] * 2, [_INTEGER] * 3)
        if ok and len(items) == 3:
            _t, s, e = items[2]
            ok = -_INT32 <= int.from_bytes(der[s:e], "big", signed=True) < _INT32
    if not ok or items[0][2] == items[0][1]:
        raise ValueError("not DH parameters")
    return der[items[0][1]:items[0][2]]


def modulus_bits(data: bytes) -> int:
    """The size in bits of the prime of the first DH parameters block in `data`. ValueError with
    a reason a user can act on when there is none or it does not parse -- whatever OpenSSL's
    loader (2.6's PEM_read_bio_Parameters) refuses (fuzz40's dh-file target compares the two)."""
    label, body = _block(data)
    try:
        der = base64.b64decode(body, validate=True)
        prime = _prime(der, label.startswith(b"X9.42"))
    except (ValueError, binascii.Error):
        raise ValueError("its DH PARAMETERS block does not parse (not base64 of DER DH parameters)") from None
    return int.from_bytes(prime, "big").bit_length()
