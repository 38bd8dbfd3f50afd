"""A certificate's subject and issuer (a CRL's issuer) read from the DER when cryptography will
not read them, as OpenSSL, so OpenVPN 2.6, reads them.

Why: cryptography refuses a whole name when one value breaks its string type's rules -- a
T61String holding Latin-1 bytes (it reads T61String as UTF-8), an IA5String with a byte over
0x7F -- where OpenSSL takes each byte of these one-byte types as a character (Latin-1): a client whose certificate says CN `caf\\xe9` in a T61String is `café`
to OpenVPN and gets in; here it was refused ("peer certificate cannot be read"). The rest of such
a certificate cryptography reads as usual; only the name comes from here: the same x509.Name,
each attribute with its ASN.1 type, a one-byte string's bytes carried as peernames carries a name
(surrogateescape), which tls.openssl_text and crl.name_key read as OpenSSL does.

A relative name that holds one attribute twice (`O=a + O=a`), which cryptography refuses and
OpenSSL reads, is read too (_rdn). What stays unreadable (ValueError, the certificate refused as
before): a UTF8String that is not UTF-8, a BMPString or UniversalString that is not UTF-16 or UTF-32 (OpenSSL cannot convert them
either, and OpenVPN refuses a CN it cannot: "could not extract CN"), a value that is no string,
DER that does not parse. And what cryptography refuses when it loads the certificate, before
any name is asked for (a PrintableString with `_`, `@` or `*`): that needs more than a name.
"""
from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.x509.name import _ASN1Type

from .peernames import ERRORS

_SEQUENCE, _SET, _OID, _INTEGER, _VERSION = 0x30, 0x31, 0x06, 0x02, 0xA0
_ONE_BYTE = frozenset({_ASN1Type.PrintableString, _ASN1Type.T61String, _ASN1Type.IA5String,
                       _ASN1Type.VisibleString, _ASN1Type.NumericString})
_WIDE = {_ASN1Type.UTF8String: "utf-8", _ASN1Type.BMPString: "utf-16-be", _ASN1Type.UniversalString: "utf-32-be"}
MAX_ATTRIBUTES = 256        # a name with more is no CA's: refused, not built attribute by attribute


def subject(cert: x509.Certificate) -> x509.Name:
    """cert.subject, or the subject as OpenSSL reads it when cryptography refuses it."""
    try:
        return cert.subject
    except ValueError:
        return _tbs_names(cert.tbs_certificate_bytes, certificate=True)[1]


def issuer(cert: x509.Certificate) -> x509.Name:
    """cert.issuer, or the issuer as OpenSSL reads it when cryptography refuses it."""
    try:
        return cert.issuer
    except ValueError:
        return _tbs_names(cert.tbs_certificate_bytes, certificate=True)[0]


def crl_issuer(crl: x509.CertificateRevocationList) -> x509.Name:
    """crl.issuer, or the issuer as OpenSSL reads it when cryptography refuses it."""
    try:
        return crl.issuer
    except ValueError:
        return _tbs_names(crl.tbs_certlist_bytes, certificate=False)[0]


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, where the value starts, where it ends) of the DER element at `pos`."""
    if pos + 2 > end:
        raise ValueError("DER: truncated")
    tag, ln = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("DER: multi-byte tag")
    if ln & 0x80:
        n = ln & 0x7F
        if not 1 <= n <= 4 or pos + n > end:
            raise ValueError("DER: bad length")
        ln = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + ln > end:
        raise ValueError("DER: truncated")
    return tag, pos, pos + ln


def _tbs_names(tbs: bytes, certificate: bool) -> tuple[x509.Name, x509.Name | None]:
    """(issuer, subject) of a TBSCertificate; (issuer, None) of a TBSCertList."""
    tag, pos, end = _tlv(tbs, 0, len(tbs))
    if tag != _SEQUENCE:
        raise ValueError("DER: not a SEQUENCE")
    tag, start, after = _tlv(tbs, pos, end)
    if certificate:
        if tag == _VERSION:                  # [0] version, then the serial number
            tag, start, after = _tlv(tbs, after, end)
        if tag != _INTEGER:
            raise ValueError("DER: no serial number")
        tag, start, after = _tlv(tbs, after, end)      # signature AlgorithmIdentifier
    elif tag == _INTEGER:                    # a CRL's optional version
        tag, start, after = _tlv(tbs, after, end)
    if tag != _SEQUENCE:
        raise ValueError("DER: no signature algorithm")
    tag, start, after = _tlv(tbs, after, end)
    name_issuer = _name(tbs, tag, start, after)
    if not certificate:
        return name_issuer, None
    tag, start, after = _tlv(tbs, after, end)          # validity
    tag, start, after = _tlv(tbs, after, end)
    return name_issuer, _name(tbs, tag, start, after)


def _name(data: bytes, tag: int, pos: int, end: int) -> x509.Name:
    if tag != _SEQUENCE:
        raise ValueError("DER: a name is not a SEQUENCE")
    rdns = []
    count = 0
    while pos < end:
        tag, start, pos = _tlv(data, pos, end)
        if tag != _SET:
            raise ValueError("DER: a relative name is not a SET")
        attrs = []
        while start < pos:
            tag, a_start, start = _tlv(data, start, pos)
            count += 1
            if tag != _SEQUENCE or count > MAX_ATTRIBUTES:
                raise ValueError("DER: bad attribute")
            attrs.append(_attribute(data, a_start, start))
        if not attrs:
            raise ValueError("DER: an empty relative name")
        rdns.append(_rdn(attrs))
    return x509.Name(rdns)


def _rdn(attrs: list[x509.NameAttribute]) -> x509.RelativeDistinguishedName:
    """A relative name of these attributes, one written twice included (`O=a + O=a`): OpenSSL
    reads it, so OpenVPN 2.6 names and prints it (X509_1_O, X509_1_O_1), where cryptography
    refuses the whole name ("duplicate attributes are not allowed"). A CA named so got its
    clients an internal error wherever its name was read (a client-connect script's
    X509_1_* variables, crl-verify's matching). It compares as OpenSSL compares it
    (crl.name_key keeps both), and as a set where cryptography's equality is asked."""
    try:
        return x509.RelativeDistinguishedName(attrs)
    except ValueError:
        if len(attrs) < 2:
            raise
        rdn = x509.RelativeDistinguishedName.__new__(x509.RelativeDistinguishedName)
        rdn._attributes = list(attrs)                       # noqa: SLF001 - what its __init__ sets
        rdn._attribute_set = frozenset(attrs)               # noqa: SLF001
        return rdn


def _attribute(data: bytes, pos: int, end: int) -> x509.NameAttribute:
    tag, start, pos = _tlv(data, pos, end)
    if tag != _OID:
        raise ValueError("DER: an attribute without its type")
    oid = x509.ObjectIdentifier(dotted_oid(data[start:pos]))
    tag, start, after = _tlv(data, pos, end)
    if after != end:
        raise ValueError("DER: bad attribute")
    try:
        kind = _ASN1Type(tag)
    except ValueError:
        raise ValueError(f"DER: an attribute value of tag {tag}") from None
    raw = data[start:after]
    if kind in _ONE_BYTE:
        value = raw.decode("utf-8", ERRORS)         # its bytes as the str of cryptography's reading
    elif kind in _WIDE:
        value = raw.decode(_WIDE[kind])            # strict: what OpenSSL cannot convert is refused
    else:
        raise ValueError(f"DER: an attribute value of type {kind.name}")
    with warnings.catch_warnings():
        # Lengths are not checked here, as cryptography does not when it reads a name: a
        # `C=USA` or an empty CN beside the T61String raised ValueError, and OpenSSL's reading
        # of such a certificate was refused whole. The peer's name (its last CN) has its limit
        # checked where it is read (tls.name_common_name), as OpenVPN checks it.
        warnings.simplefilter("ignore")
        a = x509.NameAttribute(oid, value.encode("utf-8", "replace").decode(), _type=kind, _validate=False)
    # NameAttribute's own length check encodes the value strictly; a one-byte string's bytes
    # that are not UTF-8 are set past it (its value, compared and hashed as cryptography's).
    a._value = value                                # noqa: SLF001
    return a


def dotted_oid(body: bytes) -> str:
    """The dotted form of a DER OBJECT IDENTIFIER's content (also the `dh` reader's EC curve name);
    ValueError for an encoding OpenSSL refuses (c2i_ASN1_OBJECT): a subidentifier begun with 0x80
    (not minimal, X.690 8.19.2) -- read as its value it would name an OID OpenSSL never reads
    (review43b: a padded P-256 OID in a `dh` file started here, 2.6 does not)."""
    if not body or body[-1] & 0x80:
        raise ValueError("DER: bad OID")
    arcs: list[int] = []
    n = 0
    for i, b in enumerate(body):
        if b == 0x80 and (i == 0 or not body[i - 1] & 0x80):
            raise ValueError("DER: bad OID (a subidentifier padded with 0x80)")
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(n)
            n = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))
