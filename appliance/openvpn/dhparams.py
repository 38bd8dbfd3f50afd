"""What a `dh` file holds, read as far as OpenVPN 2.6 needs it to start: a TLS server's DH
parameters are checked here, never used (key exchange is ECDHE only).

Why read them at all: OpenVPN 2.6 loads the file at start on a TLS server and exits when it holds
no parameters or DH parameters below OpenSSL 3's default security level ("dh key too small":
Debian's openvpn loads them before any `tls-cert-profile` or `tls-cipher` could lower the level,
so fewer than 2048 bits fail whatever the config says, and so does a subgroup under 224 bits:
DhParams). A config that 2.6 refuses must not start
here either, and a `dh` line naming the wrong file is a mistake worth saying at its line.

The first parameters block decides, as OpenSSL 3's loader (PEM_read_bio_Parameters) takes it:
"DH PARAMETERS" (PKCS#3, `openssl dhparam`), "X9.42 DH PARAMETERS" (-dsaparam), and also "DSA
PARAMETERS" and "EC PARAMETERS" -- 2.6 starts with those as its "DH" when OpenSSL gives them 112
bits of security or more (Debian's 2.6.14: `openssl ecparam -name prime256v1` and `openssl dsaparam
2048` start, "Diffie-Hellman initialized with 576/512 bit key"; prime192v1 and dsaparam 1024 fail,
"dh key too small"), and a DH block after them counts for nothing. Taken here the same way (never
used either); an EC curve is known by its name's OID among those `cryptography` knows (the NIST
P curves, secp256k1, brainpool r1), explicit curve parameters and other names are refused
(stricter: OpenSSL knows ~80 curves). Any other "... PARAMETERS" label first is refused too.
Read with a few lines of DER (the prime's and the subgroup's sizes are all that is wanted), not
with cryptography,
whose finite-field DH is deprecated (and whose loader tests p for primality, which 2.6's does
not). The block's framing and the DER's shape are checked as OpenSSL 3 checks them: a file it
cannot load (no generator, a PKCS#3 body under the X9.42 label, a glued END line, ...) was
taken here when its prime looked big enough, where 2.6 fails at start (fuzz40). Bounded by the file's size limit (regular_file), and each
length checked against the bytes there: a hostile file fails with a reason, never loops.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

from ..frozen_record import FrozenRecord

MIN_BITS = 2048
_LABELS = (b"DH PARAMETERS", b"X9.42 DH PARAMETERS", b"DSA PARAMETERS", b"EC PARAMETERS")
_OID = 0x06
_SEQUENCE, _INTEGER = 0x30, 0x02
_INT32 = 1 << 31
_BITSTRING = 0x03
_BOM = b"\xef\xbb\xbf"
MIN_STRENGTH = 112          # bits of security: OpenSSL 3's default level 2, which 2.6's dh load meets
# The groups OpenSSL 3 knows by their numbers (RFC 7919 ffdhe, RFC 3526 modp, RFC 5114 of 2048 bits:
# `openssl genpkey -genparam -algorithm DH -pkeyopt group:NAME`), as sha256(p "/" g)[:16] in hex:
# for one of these OpenSSL takes the group's own q, and a PKCS#3 privateValueLength counts for nothing.
_KNOWN_GROUPS = frozenset((
    "8df912e230eaf0dfdead5f83c8f72657", "0ffed559ee347d33d7901b1ce9926471",     # dh_2048_224, dh_2048_256
    "3ea54582c4de54ba23ecaef84cb28fe9", "c3a124a36009586aee19f2aa3ed62186",     # ffdhe2048, 3072
    "ce5851106d89beaeed15382b55f2f928", "7b3d3de4d4004683b8cd63b43c42d11f",     # ffdhe4096, 6144
    "ff46231f3b5830b992eb68703cdee6dc", "51d381e98164949a10083205f62c4f9e",     # ffdhe8192, modp_2048
    "6f3632671c60d0743270728147c29243", "f20be1f45dc37e9e8da014f97fede84d",     # modp_3072, 4096
    "20ee822c099a9f9d302e1a57f796220f", "953e218e5fd27d674e67b833f4c02587",     # modp_6144, 8192
))


def _tlv(der: bytes, pos: int, depth: int = 0) -> tuple[int, int, int, int]:
    """(tag, start, end, next) of the element at `pos`: its content is der[start:end], the next
    element begins at `next`. ValueError when it does not fit, or its length is not in DER's
    shortest form (OpenSSL refuses those: 2.6 does not start) -- but a constructed element (a
    SEQUENCE) may have BER's indefinite length, closed by 00 00, as OpenSSL's decoder takes it
    (its content then runs to that end mark; nesting bounded)."""
    if pos + 2 > len(der):
        raise ValueError("truncated")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n == 0x80 and tag & 0x20 and depth < 4:
        at = pos
        while der[at:at + 2] != b"\0\0":
            at = _tlv(der, at, depth + 1)[3]
        return tag, pos, at, at + 2
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
    return tag, pos, pos + n, pos + n


def _block(data: bytes) -> tuple[bytes, bytes]:
    """(label, base64 body) of the first DH parameters block, framed as OpenSSL's PEM reader
    takes one: its BEGIN and END lines whole lines of their own (trailing blanks aside), no PEM
    headers (parameters are never encrypted: OpenSSL refuses a Proc-Type, and any header the
    block does not end with a blank line after) -- but one blank line right after BEGIN (an empty
    header section), no other blank line in the body. Another PEM block before it is passed over
    whole, as OpenSSL reads it (a DH BEGIN line inside it is not one), and a UTF-8 byte order mark
    is dropped where OpenSSL drops it: on the file's first line and on the line after such a
    block's END (where its reader starts afresh) -- a file saved by Windows' Notepad, or two such
    files put together, start 2.6 (review41). Found line by line, not with a regex (a file of many
    BEGIN lines without an END stays linear)."""
    lines = data.split(b"\n")
    begin = {b"-----BEGIN " + label + b"-----": label for label in _LABELS}
    fresh = True                # a line OpenSSL's PEM reader starts a read at (it drops a BOM there)
    passing: bytes | None = None    # the END line of another block passed over
    for i, line in enumerate(lines):
        line = line.rstrip()
        if fresh and line.startswith(_BOM):
            line = line[len(_BOM):]
        fresh = False
        if passing is not None:
            if line == passing:
                passing, fresh = None, True
            continue
        label = begin.get(line)
        if label is None:
            if line.startswith(b"-----BEGIN ") and line.endswith(b" PARAMETERS-----"):
                raise ValueError(f"holds {line[11:-5].decode(errors='replace')} first, which is no DH parameters "
                                 "(nor DSA or EC parameters, which OpenVPN 2.6 would take in their place)")
            if line.startswith(b"-----BEGIN ") and line.endswith(b"-----") and len(line) > 16:
                passing = b"-----END " + line[11:]
            continue
        end = b"-----END " + label + b"-----"
        if end not in data:
            raise ValueError(f"its {label.decode()} block has no END line")
        body = []
        gap = False                     # the block began with that blank line
        for n, ln in enumerate(lines[i + 1:]):
            ln = ln.rstrip()
            if ln == end:
                return label, b"".join(body)
            if not ln and n == 0:
                gap = True              # the empty header section OpenSSL allows
                continue
            b64 = b"".join(ln.split())
            if not ln or b":" in ln or ln.lstrip().startswith(b"-----") or (gap and b64 != ln):
                # (after that blank line OpenSSL takes no blanks inside or before a line's base64)
                raise ValueError(f"its {label.decode()} block does not parse (not base64 of DER DH parameters)")
            body.append(b64)
        raise ValueError(f"its {label.decode()} block has no END line")
    raise ValueError("holds no DH parameters (a PEM \"BEGIN DH PARAMETERS\" block, as `openssl dhparam` writes)")


def _minimal(der: bytes, s: int, e: int) -> bool:
    """Whether the INTEGER content der[s:e] is in DER's shortest form (no leading 00 or FF that a
    shorter encoding would not need): OpenSSL decodes privateValueLength (an int32) only then."""
    return e - s < 2 or not ((der[s] == 0 and der[s + 1] < 0x80) or (der[s] == 0xFF and der[s + 1] >= 0x80))


class DhParams(FrozenRecord):
    """What 2.6's start needs of a `dh` file: the prime's size, and the security OpenSSL 3 gives
    the group (BN_security_bits of the prime's size and the subgroup's: X9.42's q, else PKCS#3's
    privateValueLength), which SSL_CTX_set0_tmp_dh_pkey holds against its level ("dh key too
    small" below MIN_STRENGTH): a 2048-bit group of a 160-bit subgroup -- `openssl genpkey
    -algorithm DHX ... dh_paramgen_subprime_len:160`, or OpenSSL 0.9.8's `dhparam -dsaparam`
    (privateValueLength 160) -- stops 2.6 at start though its prime is big enough (review41).
    A group OpenSSL knows by its numbers (_KNOWN_GROUPS) gets its own q there, whatever the
    privateValueLength."""
    bits: int
    strength: int
    kind: str = "DH"            # or "DSA", "EC": parameters 2.6 takes in their place (module docstring)


def _strength(bits: int, sub: int | None) -> int:
    """OpenSSL 3's BN_security_bits(L, N): by the prime's size, capped by half the subgroup's."""
    secbits = next((s for at, s in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80)) if bits >= at), 0)
    if secbits == 0 or sub is None:
        return secbits
    half = int(sub / 2)                     # C's division (toward zero)
    return 0 if half < 80 else min(half, secbits)


def _read_der(der: bytes, x942: bool) -> DhParams:
    """The DER checked as OpenSSL 3 decodes it (2.6 starts only then): PKCS#3 `SEQUENCE { p, g
    [, privateValueLength (32 bits, DER's shortest form)] }`, X9.42 `SEQUENCE { p, g, q [, j]
    [, validationParms SEQUENCE { seed BIT STRING, pgenCounter INTEGER }] }`, every number an
    INTEGER, nothing more inside. p and q are read as OpenSSL reads a BIGNUM: the content's
    bytes unsigned, leading zeros aside."""
    tag, start, end, _next = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a SEQUENCE")
    items = _elements(der, start, end, 5)
    tags = [t for t, _s, _e in items]
    sub = None
    if x942:
        shapes = ([_INTEGER] * 3, [_INTEGER] * 4, [_INTEGER] * 3 + [_SEQUENCE], [_INTEGER] * 4 + [_SEQUENCE])
        ok = tags in shapes
        if ok and tags[-1] == _SEQUENCE:
            _t, s, e = items[-1]
            vp = _elements(der, s, e, 2)
            ok = [t for t, _s, _e in vp] == [_BITSTRING, _INTEGER] and vp[0][2] > vp[0][1] \
                and der[vp[0][1]] <= 7          # the BIT STRING's unused-bits byte
        if ok:
            _t, s, e = items[2]
            sub = int.from_bytes(der[s:e], "big").bit_length()      # a BIGNUM: OpenSSL reads it unsigned
    else:
        ok = tags in ([_INTEGER] * 2, [_INTEGER] * 3)
        if ok and len(items) == 3:
            _t, s, e = items[2]
            length = int.from_bytes(der[s:e], "big", signed=True)
            ok = -_INT32 <= length < _INT32 and _minimal(der, s, e)
            known = _known(der[items[0][1]:items[0][2]], der[items[1][1]:items[1][2]])
            sub = length if length not in (0, -1) and not known else None   # 0: not set; -1: OpenSSL's "none"
    if not ok or items[0][2] == items[0][1]:
        raise ValueError("not DH parameters")
    bits = int.from_bytes(der[items[0][1]:items[0][2]], "big").bit_length()
    return DhParams(bits, _strength(bits, sub))


def _known(p: bytes, g: bytes) -> bool:
    """Whether (p, g) is one of _KNOWN_GROUPS (leading zero bytes aside, as a BIGNUM reads them)."""
    digest = hashlib.sha256(p.lstrip(b"\0") + b"/" + g.lstrip(b"\0")).hexdigest()[:32]
    return digest in _KNOWN_GROUPS


def _elements(der: bytes, start: int, end: int, most: int) -> list[tuple[int, int, int]]:
    """The (tag, start, end) of the elements der[start:end] holds, at most `most` of them."""
    items = []
    pos = start
    while pos < end:
        if len(items) == most:
            raise ValueError("too many elements")
        tag, s, e, pos = _tlv(der[:end], pos)
        items.append((tag, s, e))
    return items


def _read_dsa(der: bytes) -> DhParams:
    """DSA parameters, `SEQUENCE { p, q, g }`: OpenSSL's strength of p's and q's sizes."""
    tag, start, end, _next = _tlv(der, 0)
    items = _elements(der, start, end, 3) if tag == _SEQUENCE else []
    if [t for t, _s, _e in items] != [_INTEGER] * 3 or any(e == s for _t, s, e in items):
        raise ValueError("not DSA parameters")
    p, q = (int.from_bytes(der[s:e], "big").bit_length() for _t, s, e in items[:2])
    return DhParams(p, _strength(p, q), "DSA")


# No curve's OID is longer (brainpoolP512r1's is 9 bytes): a longer one is no known curve, and
# is not decoded (its arcs grow into numbers of any size, quadratic in its length).
_OID_MOST = 32


def _read_ec(der: bytes) -> DhParams:
    """EC parameters naming their curve (what `openssl ecparam -name X` writes): OpenSSL's
    strength of the curve's order (ec_security_bits: 80 from 160 bits, 112 from 224, 128 from
    256, 192 from 384, 256 from 512). A curve `cryptography` does not know by that OID, or one
    given by its numbers (explicit parameters), is refused: stricter than 2.6."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from .dername import dotted_oid
    tag, start, end, after = _tlv(der, 0)
    if tag != _OID or after != len(der):
        raise ValueError("EC parameters that name no curve (explicit curve parameters are not read here)")
    if end - start > _OID_MOST:
        raise ValueError(f"EC parameters of curve OID of {end - start} bytes, not one known here")
    name = dotted_oid(der[start:end])
    try:
        bits = ec.get_curve_for_oid(x509.ObjectIdentifier(name)).key_size
    except (LookupError, ValueError):
        raise ValueError(f"EC parameters of curve {name}, not one known here (P-256, P-384, P-521, ...)") from None
    strength = next((s for at, s in ((512, 256), (384, 192), (256, 128), (224, 112), (160, 80)) if bits >= at),
                    bits // 2)
    return DhParams(bits, strength, "EC")


def read(data: bytes) -> DhParams:
    """The first parameters block in `data` (DH, or the DSA or EC that 2.6 takes in its place).
    ValueError with a reason a user can act on when there is none or it does not parse --
    whatever OpenSSL's loader (2.6's PEM_read_bio_Parameters) refuses (fuzz40's dh-file target
    compares the two)."""
    label, body = _block(data)
    try:
        der = base64.b64decode(body, validate=True)
        if label == b"EC PARAMETERS":
            return _read_ec(der)
        if label == b"DSA PARAMETERS":
            return _read_dsa(der)
        return _read_der(der, label.startswith(b"X9.42"))
    except binascii.Error:
        raise ValueError(f"its {label.decode()} block does not parse (not base64)") from None
    except ValueError as e:
        if "curve" in str(e):
            raise ValueError(f"holds {e}") from None
        raise ValueError(f"its {label.decode()} block does not parse (not base64 of DER {label.decode()[:-11]} "
                         "parameters)") from None


def modulus_bits(data: bytes) -> int:
    """The size in bits of the prime of the first DH parameters block in `data` (read())."""
    return read(data).bits
