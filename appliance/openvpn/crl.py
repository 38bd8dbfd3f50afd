"""Certificate revocation (`crl-verify`), checked at every TLS handshake and renegotiation.

`crl-verify FILE`: a PEM or DER CRL (several PEM CRLs in one file are all read). As OpenVPN does,
the file is re-read when its modification time (or size) changes, so an updated CRL takes effect
at the next handshake without a restart. A CRL that cannot be read refuses every certificate
(OpenVPN fails the handshake too): never accept a revoked one because the file is broken. So does
a CRL of one of the chain's issuers that is expired, not yet valid, or not signed by that issuer
(OpenSSL's checks behind OpenVPN's); a certificate whose issuer has no CRL in the file passes, as
in OpenVPN (it ignores "unable to get certificate CRL").
`crl-verify DIR dir`: a certificate is revoked when DIR holds a file named after its serial number
in decimal (OpenVPN's directory mode).

The check looks at every certificate of the peer's chain whose issuer a CRL names, names compared
as OpenSSL compares them (name_key): a CRL whose issuer is written `CN=LAB  ca` in PrintableString
is the CRL of the CA `CN=Lab CA` in UTF8String for OpenVPN, so it must be here too, or the
certificates it revokes get in. A CRL that names no certificate in `ca` is refused at start (and
logged when the file changes to one): OpenVPN keeps it and checks nothing with it. Each CRL's
revoked serial numbers are read into a set when the file is (re-)read, so a check costs the same
at 100,000 revoked entries as at ten (a scan of the CRL took ~5 ms per certificate there, on the
event loop at every handshake: `python -m lab.crl_bench`).
"""
from __future__ import annotations

import datetime
import functools
import logging
import os
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type

from .keymethod import remap_name
from .tls import ONE_BYTE_STRING_TYPES, common_name, name_common_name, openvpn_name


log = logging.getLogger("vpn-appliance")


class CrlError(Exception):
    pass


# The string types OpenSSL compares in canonical form (x_name.c, ASN1_MASK_CANON); values of any
# other type (NumericString, BIT STRING, ...) compare as they are, with their type.
_CANON_TYPES = frozenset({_ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString,
                          _ASN1Type.PrintableString, _ASN1Type.T61String, _ASN1Type.IA5String,
                          _ASN1Type.VisibleString})
# The one-byte string types: OpenSSL reads their bytes as Latin-1, cryptography as UTF-8.
_ONE_BYTE_TYPES = ONE_BYTE_STRING_TYPES
_SPACES = " \t\n\v\f\r"                     # OpenSSL's ossl_isspace: ASCII only
_SPACE_RUN = re.compile(r"[ \t\n\v\f\r]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
NameKey = tuple[tuple[tuple[str, int, bytes], ...], ...]


def name_key(name: x509.Name) -> NameKey:
    """A distinguished name as OpenSSL compares names (X509_NAME_cmp on its canonical encoding),
    the comparison behind OpenVPN's CRL lookup: the one place this module matches a CRL's issuer
    to a certificate's issuer or subject. Values of the string types above become UTF-8 with
    ASCII letters lower-cased, leading and trailing ASCII blanks dropped and inner runs made one
    space, whatever their ASN.1 type; the attributes of a multi-valued RDN compare as a set.
    Why not cryptography's Name equality: it tells `Lab CA` from `LAB  ca`, which OpenSSL does
    not, and a CRL of the CA written the second way revoked nobody here."""
    return tuple(tuple(sorted(_attribute_key(a) for a in rdn)) for rdn in name.rdns)


def _attribute_key(a: x509.NameAttribute) -> tuple[str, int, bytes]:
    value = a.value
    if isinstance(value, str):
        t = a._type                                             # noqa: SLF001 - the ASN.1 type as read
        # Only short values are kept (a CA's name is a few dozen characters): a bound on memory.
        canon = _canonical(t, value) if len(value) <= _KEPT_VALUE_LEN else _canonical.__wrapped__(t, value)
        if canon is not None:
            return a.oid.dotted_string, _UTF8, canon
        return a.oid.dotted_string, t.value, value.encode("utf-8", "surrogatepass")
    return a.oid.dotted_string, a._type.value, value                 # noqa: SLF001


_UTF8 = _ASN1Type.UTF8String.value
_KEPT_VALUE_LEN = 256


@functools.lru_cache(maxsize=4096)
def _canonical(t: _ASN1Type, value: str) -> bytes | None:
    """OpenSSL's canonical form of a value of type `t` (asn1_string_canon), None for a type it
    keeps as it is. Kept per distinct value (bounded): the same CA names come up at every
    handshake, and a name's key took ~8 us to work out, several per chain."""
    if t not in _CANON_TYPES:
        return None
    if t in _ONE_BYTE_TYPES:                                    # OpenSSL's reading
        value = value.encode("utf-8", "surrogatepass").decode("latin-1")
    value = _SPACE_RUN.sub(" ", value.strip(_SPACES)).translate(_ASCII_LOWER)
    return value.encode("utf-8", "surrogatepass")


def _load(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN X509 CRL-----" in data:
        out = []
        for block in data.split(b"-----END X509 CRL-----")[:-1]:
            pem = block[block.index(b"-----BEGIN X509 CRL-----"):] + b"-----END X509 CRL-----\n"
            out.append(x509.load_pem_x509_crl(pem))
        return out
    return [x509.load_der_x509_crl(data)]


class LoadedCrl:
    """One CRL as a check needs it, read once when the file is: its issuer, validity dates and
    the set of serial numbers it revokes (a set lookup instead of a scan of the entries)."""

    __slots__ = ("crl", "issuer", "last_update", "next_update", "serials")

    def __init__(self, crl: x509.CertificateRevocationList) -> None:
        self.crl = crl
        self.issuer = name_key(crl.issuer)
        self.last_update = crl.last_update_utc
        self.next_update = crl.next_update_utc
        self.serials = frozenset(r.serial_number for r in crl)


class CrlChecker:
    """`revoked(cert)` -> why it is refused (a log line's words) or None. `cas`: the certificates
    of `ca`, to find CRLs that name none of them (`strays`)."""

    def __init__(self, kind: str, where: str, cas: Sequence[x509.Certificate] = ()) -> None:
        self.kind = kind                    # file | dir | inline
        self.where = where
        self._ca_names = frozenset(name_key(c.subject) for c in cas)
        # Why each CRL read last that names no certificate in `ca` is of no use against them.
        # OpenVPN keeps such a CRL (OpenSSL finds no CRL of the peer's issuer, which OpenVPN
        # ignores): it revokes nobody under these CAs, only under a sub-CA of that name that a
        # peer's chain brings. settings.check_key_material refuses to start with one; a file
        # that changes to one while running is logged and used as OpenVPN would.
        self.strays: list[str] = []
        self._stamp: tuple | None = None
        self._crls: list[LoadedCrl] = []
        self._by_issuer: dict[NameKey, list[int]] = {}      # issuer (name_key) -> its CRLs' places in _crls
        self._error: str | None = None
        # (CRL's place in _crls, issuer certificate) -> whether the issuer signed it: a verdict
        # that holds until the file is read again. Why: verifying a CRL hashes all of it (34 ms
        # for 100,000 entries), and every handshake checked it once per certificate of the chain.
        self._signed: dict[tuple[int, x509.Certificate], bool] = {}
        self.loads = 0
        if kind == "inline":
            self._parse(where.encode())
        elif kind == "file":
            self.refresh()

    def _parse(self, data: bytes) -> None:
        self._signed = {}
        try:
            self._set([LoadedCrl(crl) for crl in _load(data)])
            self._error = None
        except (ValueError, IndexError) as e:
            self._set([])
            self._error = f"CRL {self._shown()} unreadable: {e}"
        if self.loads and self.strays:      # a re-read; at start check_key_material refuses instead
            for why in self.strays:
                log.warning("%s", why)
        self.loads += 1

    def _shown(self) -> str:
        return self.where if self.kind != "inline" else "<inline>"

    def _stray(self, crl: LoadedCrl) -> str:
        return (f"CRL {self._shown()}: the CRL of {openvpn_name(crl.crl.issuer)!r} names no certificate in `ca` "
                "(names compared as OpenSSL does), so it revokes no certificate these CAs issued; OpenVPN "
                "would keep it and check nothing with it. Another CA's CRL? For a sub-CA that clients "
                "send, add its certificate to `ca`")

    def _set(self, crls: list[LoadedCrl]) -> None:
        self._crls = crls
        self.strays = [self._stray(c) for c in crls if self._ca_names and c.issuer not in self._ca_names]
        self._by_issuer = {}
        for i, c in enumerate(crls):
            self._by_issuer.setdefault(c.issuer, []).append(i)

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed since the last read (or if `force`)."""
        if self.kind != "file":
            return
        try:
            st = os.stat(self.where)
        except OSError as e:
            self._stamp = None
            self._set([])
            self._error = f"CRL {self.where} unreadable: {e.strerror or e}"
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            with open(self.where, "rb") as f:
                data = f.read()
        except OSError as e:
            self._set([])
            self._error = f"CRL {self.where} unreadable: {e.strerror or e}"
            return
        self._parse(data)

    @property
    def error(self) -> str | None:
        return self._error

    def revoked(self, cert: x509.Certificate, chain: list[x509.Certificate] | None = None) -> str | None:
        if self.kind == "dir":
            for c in [cert] + list(chain or []):
                if os.path.exists(os.path.join(self.where, str(c.serial_number))):
                    return f"certificate serial {c.serial_number} is revoked (crl-verify dir {self.where})"
            return None
        self.refresh()
        if self._error is not None:
            return self._error
        certs = [cert] + list(chain or [])
        now = datetime.datetime.now(datetime.timezone.utc)
        subjects: list[NameKey] | None = None
        for c in certs:
            key = name_key(c.issuer)
            named = self._by_issuer.get(key)
            if not named:
                continue
            if subjects is None:
                subjects = [name_key(i.subject) for i in certs]
            issuer = next((i for i, s in zip(certs, subjects) if s == key), None)
            # Of the issuer's CRLs, those that can be used: as OpenSSL picks the issuer's best CRL
            # (a current one before an expired one), an old CRL left in the file beside the
            # current one refuses nobody; with none usable, the first one's fault refuses.
            faults = [_unusable(self._crls[i], now, self._signed_by(i, issuer)) for i in named]
            usable = [i for i, bad in zip(named, faults) if bad is None]
            if not usable:
                return f"CRL {self._shown()} of {_issuer_cn(c)}: {faults[0]}"
            for i in usable:
                if c.serial_number in self._crls[i].serials:
                    return f"certificate serial {c.serial_number} (CN={_cn(c)}) is revoked by the CRL"
        return None

    def _signed_by(self, i: int, issuer: x509.Certificate | None) -> bool:
        """Whether `issuer` signed the i-th CRL (True without an issuer to check against)."""
        if issuer is None:
            return True
        key = (i, issuer)                   # certificates compare (and hash) by their DER
        ok = self._signed.get(key)
        if ok is None:
            if len(self._signed) >= SIGNED_KEPT:     # issuers beyond our CAs' few: start over
                self._signed.clear()
            ok = self._signed[key] = _signature_ok(self._crls[i].crl, issuer)
        return ok


SIGNED_KEPT = 256


def _signature_ok(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _unusable(crl: LoadedCrl, now: datetime.datetime, signed: bool) -> str | None:
    """Why the CRL of a certificate's issuer cannot be used (OpenSSL's words; OpenVPN then fails
    the handshake), or None. A CRL past its nextUpdate may miss newer revocations, and one whose
    signature the issuer did not make (`signed`, from _signed_by: True when there is no issuer
    certificate to check against, a chain we were not given) is no revocation list of it."""
    if crl.last_update > now:
        return "CRL is not yet valid"
    if crl.next_update is not None and crl.next_update < now:
        return "CRL has expired"
    if not signed:
        return "CRL signature failure"
    return None


def _issuer_cn(c: x509.Certificate) -> str:
    """The issuer as the log names it: its name as the peer's is read (the LAST CN), else all of it."""
    cn = name_common_name(c.issuer)
    return f"CN={cn}" if cn is not None else remap_name(openvpn_name(c.issuer))


def _cn(c: x509.Certificate) -> str:
    return common_name(c) or "?"      # the name the peer goes by (its last CN), as in the other logs


def checker(spec: tuple[str, str] | None, ca_pem: bytes | None = None) -> CrlChecker | None:
    """crl-verify's checker, told the certificates of `ca` (PEM) if there is one."""
    if spec is None:
        return None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem) if ca_pem else []
    except ValueError:
        cas = []                            # build_context refuses an unreadable `ca` itself
    return CrlChecker(*spec, cas=cas)


def make_crl(ca_cert: x509.Certificate, ca_key, serials: list[int], days: int = 30,
             issuer: x509.Name | None = None) -> bytes:
    """A PEM CRL signed by the CA revoking `serials` (tests and the lab; easy-rsa makes real ones).
    `issuer`: the CRL's issuer name as written, if not the CA's subject as it is (another
    encoding of the same name, or another name)."""
    from cryptography.hazmat.primitives import hashes
    now = datetime.datetime.now(datetime.timezone.utc)
    # The entries go to the builder at once: add_revoked_certificate copies the list each time
    # (quadratic; a 100,000-entry CRL took minutes).
    revoked = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build() for s in serials]
    b = x509.CertificateRevocationListBuilder(
        issuer_name=issuer or ca_cert.subject, last_update=now - datetime.timedelta(minutes=5),
        next_update=now + datetime.timedelta(days=days), revoked_certificates=revoked)
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
