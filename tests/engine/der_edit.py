"""Certificates that OpenSSL reads and `cryptography` refuses, made by editing the DER of a
normal one: self-signed (the signature is not redone: a stranger's certificate, where only
OpenSSL's parsing, not its chain check, matters), or signed again by an issuer after the edit
(a certificate its CA really signed, without the clientAuth EKU)."""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _tlv(data: bytes, i: int) -> tuple[int, bytes, int]:
    tag, n, j = data[i], data[i + 1], i + 2
    if n & 0x80:
        k = n & 0x7F
        n, j = int.from_bytes(data[j:j + k], "big"), j + k
    return tag, data[j:j + n], j + n


def _enc(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 128:
        return bytes((tag, n)) + content
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(b))) + b + content


def _children(content: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(content):
        tag, c, i = _tlv(content, i)
        out.append((tag, c))
    return out


def unreadable_certificate(oddity: str, issuer: tuple | None = None) -> tuple[bytes, bytes]:
    """(DER certificate, PEM key) with one oddity: `printable-underscore` (the CN `john_doe` as a
    PrintableString, which has no `_`), `version-4` (version field 3), `explicit-v1` (the default
    version written out). `issuer`: (certificate, EC key) that signs it after the edit."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "john.doe")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
            .public_key(key.public_key()).serial_number(5).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650)).sign(issuer[1] if issuer else key, hashes.SHA256()))
    _, body, _ = _tlv(cert.public_bytes(serialization.Encoding.DER), 0)
    parts = _children(body)
    items = _children(parts[0][1])
    if oddity == "printable-underscore":
        items = [(t, c.replace(b"\x0c\x08john.doe", b"\x13\x08john_doe")) for t, c in items]
    elif oddity == "version-4":
        items[0] = (0xA0, _enc(0x02, b"\x03"))
    elif oddity == "explicit-v1":
        items[0] = (0xA0, _enc(0x02, b"\x00"))
    else:
        raise ValueError(oddity)
    tbs = _enc(0x30, b"".join(_enc(t, c) for t, c in items))
    if issuer is None:
        der = _enc(0x30, tbs + b"".join(_enc(t, c) for t, c in parts[1:]))
    else:
        signature = issuer[1].sign(tbs, ec.ECDSA(hashes.SHA256()))
        der = _enc(0x30, tbs + _enc(*parts[1]) + _enc(0x03, b"\0" + signature))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return der, pem
