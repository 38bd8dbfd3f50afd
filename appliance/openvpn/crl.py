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

A changed file larger than READ_INLINE_MAX is read by a worker thread when the server gave the
checker one (`reader`): the reading (parse, serial set, signature checks against `ca`) becomes a
new CrlState, immutable, that the event loop swaps in at its next check; until then the CRL read
before stays in force. At 100,000 entries the reading stalled the loop ~0.35 s at each change
(`python -m lab.crl_stall`). The worker reads the serials and the signed bytes from the DER
itself: cryptography's own entry parse and re-encoding hold the GIL for 14 and 80 ms in one
piece, which a thread would still take from the loop.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.name import _ASN1Type

from . import dername
from .keymethod import remap_name
from .peernames import ERRORS
from .regular_file import CRL, read_regular_file
from .tls import CERT_UNREADABLE, ONE_BYTE_STRING_TYPES, common_name, name_common_name, openvpn_name


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
        value = value.encode("utf-8", ERRORS).decode("latin-1")   # its bytes (see tls.openssl_text)
    value = _SPACE_RUN.sub(" ", value.strip(_SPACES)).translate(_ASCII_LOWER)
    return value.encode("utf-8", "surrogatepass")


_PEM_BEGIN, _PEM_END = b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----"


def _load(data: bytes) -> list[tuple[bytes, x509.CertificateRevocationList, bool]]:
    """Each CRL of the file as (its DER, the CRL read from that DER, whether it was read without
    its version element: _parse_der). The DER is kept for the signature check (_tbs_digest): the bytes
    signed are cut from it, never re-encoded."""
    if _PEM_BEGIN in data:
        if data.count(_PEM_BEGIN) != data.count(_PEM_END):
            # A file cut short (a copy or download under way): read as the blocks that end, its
            # last CRL (or only one) was missing without a word and its revocations with it.
            raise ValueError("a PEM block has no end line (a file cut short?)")
        out = []
        for block in data.split(_PEM_END)[:-1]:
            der = _pem_body(block[block.index(_PEM_BEGIN) + len(_PEM_BEGIN):])
            out.append((der, *_parse_der(der)))
        return out
    return [(data, *_parse_der(data))]


def _parse_der(der: bytes) -> tuple[x509.CertificateRevocationList, bool]:
    """cryptography's reading of one CRL's DER, whatever version it writes out. RFC 5280 has v1
    CRLs leave the (optional) version out and v2 ones write INTEGER 1; some CA tools write v1 as
    INTEGER 0, and a CRL may carry any other INTEGER there (2, -1, 256...). OpenSSL 3.0, and so
    OpenVPN 2.6, reads such a CRL and enforces it (`openssl crl -text`: "Version unknown (2)";
    the revoked peer refused, the others let in: tests/interop/test_crl_version_vs_openvpn.py);
    cryptography refuses every version but 1 (InvalidVersion, or ValueError for a negative or
    large one), and with it unreadable everyone was refused. cryptography then reads the same CRL
    without the version element, for its issuer, dates, entries and signature value; what is
    checked against the signature (_tbs_digest) and the revoked serials (_revoked_serials) come
    from the DER as it is, so the signature the CA made over its own bytes is the one verified.
    True: read so."""
    try:
        return x509.load_der_x509_crl(der), False
    except (x509.InvalidVersion, ValueError):
        without = _without_version(der)
        if without is None:
            raise
        return x509.load_der_x509_crl(without), True


def _without_version(der: bytes) -> bytes | None:
    """The CRL with its tbsCertList's leading `version INTEGER` taken out (re-encoded around it),
    or None when the DER is not one element holding a version OpenSSL reads but cryptography
    does not: a DER INTEGER (non-empty, minimally encoded: OpenSSL refuses `02 00` and a padded
    `02 02 00 01`) other than 1 (a v2 CRL cryptography refused for another reason, which stays)."""
    try:
        tag, body, end = _der_element(der, 0)
        _, tbs_body, tbs_end = _der_element(der, body)
        vtag, vbody, vend = _der_element(der, tbs_body)
    except (IndexError, ValueError):
        return None
    value = der[vbody:vend]
    if tag != 0x30 or end != len(der) or vtag != 0x02 or not value or value == b"\x01":
        return None
    if len(value) > 1 and (value[0], value[1] >> 7) in ((0x00, 0), (0xFF, 1)):
        return None                         # not minimal: OpenSSL's "illegal padding"
    tbs = _der_tlv(0x30, der[vend:tbs_end])
    return _der_tlv(0x30, tbs + der[tbs_end:end])


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    k = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | k]) + n.to_bytes(k, "big") + body


# A reading in a worker lets the event loop's thread have the GIL at least this often (entries
# of the CRL, or bytes of its base64): each piece is ~1-2 ms of work.
_YIELD_EVERY_ENTRIES = 1000
_YIELD_EVERY_BYTES = 64 * 1024


def _pem_body(body: bytes) -> bytes:
    """The DER of one PEM block's base64 (white space between lines allowed, nothing else), a
    piece at a time: decoding 3 MB at once held the GIL ~8 ms."""
    out = []
    at = 0
    while at < len(body):
        end = body.find(b"\n", min(at + _YIELD_EVERY_BYTES, len(body)))
        end = len(body) if end < 0 else end + 1
        piece = body[at:end].split()
        at = end
        out.append(b"".join(piece))
        time.sleep(0)                       # let the event loop's thread in
    text = b"".join(out)
    if len(text) % 4:
        raise ValueError("bad base64: its length is no multiple of 4")
    try:
        return b"".join(base64.b64decode(text[i:i + _YIELD_EVERY_BYTES], validate=True)
                        for i in range(0, len(text), _YIELD_EVERY_BYTES))
    except binascii.Error as e:
        raise ValueError(f"bad base64: {e}") from None


def _der_element(buf: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at `at`: (tag, where its contents start, where it ends). Definite lengths
    only, as DER has; cryptography has parsed the same bytes already, so a bad one is a bug."""
    tag = buf[at]
    n = buf[at + 1]
    if n < 0x80:
        return tag, at + 2, at + 2 + n
    k = n & 0x7F
    if not 1 <= k <= 4:
        raise ValueError("DER length")
    length = int.from_bytes(buf[at + 2:at + 2 + k], "big")
    return tag, at + 2 + k, at + 2 + k + length


def _tbs_digest(der: bytes, crl: x509.CertificateRevocationList) -> bytes | None:
    """The hash the CRL's signature covers (its tbsCertList cut from the DER, hashed with the
    signature's algorithm), or None when the outer and inner signature algorithms differ (no
    signature of it is valid: OpenSSL's X509_CRL_verify compares them) or the algorithm is one
    hashlib does not have (the check then falls back to cryptography's own). Why not
    crl.is_signature_valid: it re-encodes the tbsCertList holding the GIL (~80 ms of a ~100 ms
    check at 100,000 entries), which a worker thread would still take from the event loop;
    hashlib releases it, and the verification proper of the hash costs under 1 ms."""
    try:
        h = crl.signature_hash_algorithm
    except UnsupportedAlgorithm:
        # An algorithm cryptography does not know: no hash here, and _signature_ok's fallback
        # finds the signature invalid, as OpenSSL does for OpenVPN 2.6 ("CRL signature
        # failure"). Raised out of the reading, it came out of the server's settings at start
        # (no "unreadable" refusal) and, for a file changed to such a CRL, out of the check of
        # a handshake.
        return None
    if h is None:
        return None
    _, body, _ = _der_element(der, 0)                       # CertificateList ::= SEQUENCE {
    _, tbs_body, tbs_end = _der_element(der, body)          #   tbsCertList,
    _, _, alg_end = _der_element(der, tbs_end)              #   signatureAlgorithm, ... }
    outer_alg = der[tbs_end:alg_end]
    tag, _, end = _der_element(der, tbs_body)               # TBSCertList ::= SEQUENCE {
    inner_at = end if tag == 0x02 else tbs_body             #   version INTEGER OPTIONAL, signature, ...
    _, _, inner_end = _der_element(der, inner_at)
    if der[inner_at:inner_end] != outer_alg:
        return b""
    try:
        return hashlib.new(h.name.replace("-", "_"), der[body:tbs_end]).digest()
    except ValueError:
        return None


def _tbs(der: bytes) -> bytes:
    """The CRL's tbsCertList as it stands in its DER: the bytes its signature covers."""
    _, body, _ = _der_element(der, 0)
    return der[body:_der_element(der, body)[2]]


def _revoked_serials(der: bytes) -> frozenset[int]:
    """The serial numbers of the CRL's revokedCertificates, read from its DER (each INTEGER as
    cryptography and OpenSSL read it: two's complement). Why not cryptography's entries: their
    first use parses all of them at once holding the GIL (~14 ms at 100,000 entries), which a
    worker thread would take from the event loop in one piece; this loop lets it go every few
    ms. cryptography has parsed the same bytes first, so anything unexpected here is refused
    (ValueError: the CRL counts as unreadable), never skipped."""
    _, body, _ = _der_element(der, 0)
    _, at, tbs_end = _der_element(der, body)
    tag, _, at_next = _der_element(der, at)
    if tag == 0x02:                                         # version
        at = at_next
    for _ in range(3):                                      # signature, issuer, thisUpdate
        at = _der_element(der, at)[2]
    if at < tbs_end and der[at] in (0x17, 0x18):            # nextUpdate
        at = _der_element(der, at)[2]
    if at >= tbs_end or der[at] != 0x30:                    # no revokedCertificates (crlExtensions, or nothing)
        return frozenset()
    _, at, end = _der_element(der, at)
    serials = []
    element, from_bytes = _der_element, int.from_bytes
    while at < end:
        tag, entry, next_at = element(der, at)
        stag, start, stop = element(der, entry)
        if tag != 0x30 or stag != 0x02 or next_at > end or stop > next_at:
            raise ValueError("revokedCertificates: an entry that is no SEQUENCE { INTEGER, ... }")
        serials.append(from_bytes(der[start:stop], "big", signed=True))
        at = next_at
        if len(serials) % _YIELD_EVERY_ENTRIES == 0:
            time.sleep(0)                   # let the event loop's thread in
    if at != end:
        raise ValueError("revokedCertificates: entries overrun the list")
    return frozenset(serials)


class LoadedCrl:
    """One CRL as a check needs it, read once when the file is: its issuer, validity dates, the
    set of serial numbers it revokes (a set lookup instead of a scan of the entries), and the
    hash its signature covers."""

    __slots__ = ("crl", "issuer", "last_update", "next_update", "serials", "tbs_digest", "v1_tbs")

    def __init__(self, crl: x509.CertificateRevocationList, der: bytes | None = None, v1: bool = False) -> None:
        self.crl = crl
        self.issuer = name_key(dername.crl_issuer(crl))
        self.last_update = crl.last_update_utc
        self.next_update = crl.next_update_utc
        self.serials = _revoked_serials(der) if der is not None else frozenset(r.serial_number for r in crl)
        self.tbs_digest = _tbs_digest(der, crl) if der is not None else None
        # A CRL read without its version element (_parse_der): cryptography's own signature check
        # would cover its re-encoding, not the bytes signed, kept here for the algorithms
        # _tbs_digest does not cover (EdDSA, DSA).
        self.v1_tbs = _tbs(der) if v1 and der is not None and self.tbs_digest is None else None


class CrlState:
    """One reading of the CRL file, whole and never changed once made: the CRLs, their index by
    issuer, the strays, why the file cannot be used (refusing everyone), and the signature
    verdicts against the certificates of `ca`. Made in a worker thread for a large file
    (CrlChecker.refresh); the event loop swaps it in with one assignment, so a check sees the
    old reading or the new one, never a mix."""

    __slots__ = ("crls", "by_issuer", "strays", "error", "signed")

    def __init__(self, crls: list[LoadedCrl], strays: list[str], error: str | None,
                 signed: dict[tuple[int, x509.Certificate], bool]) -> None:
        self.crls = crls
        self.strays = strays
        self.error = error
        self.signed = signed
        self.by_issuer: dict[NameKey, list[int]] = {}       # issuer (name_key) -> its CRLs' places in crls
        for i, c in enumerate(crls):
            self.by_issuer.setdefault(c.issuer, []).append(i)

    @classmethod
    def failed(cls, why: str) -> "CrlState":
        return cls([], [], why, {})


def read_crls(data: bytes | None, why_not: str | None, shown: str, cas: Sequence[x509.Certificate]) -> CrlState:
    """The CrlState of a file's bytes (`why_not` when it could not be read). Touches nothing
    shared: it runs in a worker thread for a large file. The signatures against the CAs of `ca`
    are checked here, once per reading, not at the first handshake that needs them."""
    if data is None:
        return CrlState.failed(f"CRL {shown} unreadable: {why_not}")
    try:
        crls = [LoadedCrl(crl, der, v1) for der, crl, v1 in _load(data)]
    except (*CERT_UNREADABLE, IndexError) as e:
        # Refused as unreadable: every peer, never a revoked one let in.
        return CrlState.failed(f"CRL {shown} unreadable: {e}")
    try:
        ca_keys = [(name_key(dername.subject(c)), c) for c in cas]
    except ValueError as e:
        # A CA OpenSSL loads but whose name neither cryptography nor dername reads (an attribute
        # twice in one RDN, a value that is no string): no CRL can be matched to it, nor its
        # certificates' issuer to a CRL. Raised out of here it was a traceback at start (the
        # config check) or in the reading worker; refused as unreadable: every peer, never a
        # revoked one let in.
        return CrlState.failed(f"CRL {shown} unusable: the name of a certificate of `ca` cannot be read ({e}), "
                               "so no CRL can be matched to it")
    ca_names = {k for k, _ in ca_keys}
    strays = [_stray(shown, c) for c in crls if ca_names and c.issuer not in ca_names]
    signed = {(i, ca): _signature_ok(c, ca) for i, c in enumerate(crls) for k, ca in ca_keys if k == c.issuer}
    return CrlState(crls, strays, None, signed)


def read_crl_file(path: str, cas: Sequence[x509.Certificate]) -> CrlState:
    """read_crls of the file at `path` (a worker's job)."""
    try:
        data = read_regular_file(path, CRL)
    except OSError as e:
        return read_crls(None, e.strerror or str(e), path, cas)
    return read_crls(data, None, path, cas)


def _stray(shown: str, crl: LoadedCrl) -> str:
    return (f"CRL {shown}: the CRL of {openvpn_name(dername.crl_issuer(crl.crl))!r} names no certificate in `ca` "
            "(names compared as OpenSSL does), so it revokes no certificate these CAs issued; OpenVPN "
            "would keep it and check nothing with it. Another CA's CRL? For a sub-CA that clients "
            "send, add its certificate to `ca`")


# A file at most this large is read on the event loop when it changes (a few ms: ~1,000 entries);
# a larger one in a worker thread, the CRL read before staying in force until it is ready.
READ_INLINE_MAX = 32 * 1024
_pool: ThreadPoolExecutor | None = None


def background_reader(job: Callable[..., CrlState], *args) -> Future:
    """Run a CRL read in the one worker thread all checkers share (made on first use)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crl-read")
    return _pool.submit(job, *args)


class CrlChecker:
    """`revoked(cert)` -> why it is refused (a log line's words) or None. `cas`: the certificates
    of `ca`, to find CRLs that name none of them (`strays`) and to check the CRLs' signatures
    when the file is read."""

    def __init__(self, kind: str, where: str, cas: Sequence[x509.Certificate] = (),
                 reader: Callable[..., Future] | None = None, read: bool = True) -> None:
        self.kind = kind                    # file | dir | inline
        self.where = where
        self._cas = tuple(cas)
        self._stamp: tuple | None = None
        # Until the first reading is installed (a large file given to `reader` at a reload, or
        # `read=False`: the caller's refresh() starts it), everyone is refused: a checker is
        # never in force unread.
        self._state = CrlState.failed(f"CRL {where} not read yet") if kind == "file" else CrlState([], [], None, {})
        # (CRL's place, issuer certificate) -> whether it signed the CRL, for issuers outside
        # `ca` (a sub-CA a client sends): worked out at the first check that needs it, kept
        # until the next reading. Why: a check is a hash of the whole CRL. Held with the reading
        # it is for, in one attribute (_signed_by): a reload's worker thread checks against the
        # reading it took while the loop may install the next one.
        self._signed: tuple[CrlState, dict[tuple[int, x509.Certificate], bool]] = (self._state, {})
        # Where a large file's reading runs (background_reader; None: on the caller's thread,
        # as `check` and the tests want), and the reading under way. Given at construction (a
        # reload's new checker), the first reading of a large file goes there too: the reload
        # applies once it is in (gateway/ops.py), the loop serving clients meanwhile. Started
        # last, after the reload's other work on the loop: run beside it, the reading took the
        # GIL from it (its ~16 ms took ~33 ms at 100,000 entries).
        self.reader = reader
        self.read_inline_max = READ_INLINE_MAX
        self._job: Future | None = None
        # Set while a reload reads the file for its own new checker (gateway/ops.py): this
        # checker, about to be replaced, starts no worker reading of its own meanwhile. Its
        # reading would queue behind the reload's in the one worker, so it could not be in
        # force before the new checker anyway, and only doubled the work (~0.35 s at 100,000
        # entries, the loop's GIL share with it) whenever a handshake came during the wait.
        # A small file is still read at once.
        self.held = False
        self.loads = 0
        if kind == "inline":
            self._install(read_crls(where.encode(), None, "<inline>", self._cas))
        elif kind == "file" and read:
            self.refresh()

    @property
    def strays(self) -> list[str]:
        """Why each CRL read last that names no certificate in `ca` is of no use against them.
        OpenVPN keeps such a CRL (OpenSSL finds no CRL of the peer's issuer, which OpenVPN
        ignores): it revokes nobody under these CAs, only under a sub-CA of that name that a
        peer's chain brings. settings.check_key_material refuses to start with one; a file
        that changes to one while running is logged and used as OpenVPN would."""
        return self._state.strays

    def _shown(self) -> str:
        return self.where if self.kind != "inline" else "<inline>"

    def _install(self, state: CrlState) -> None:
        """The new reading replaces the old one: one assignment, on the event loop."""
        self._state = state
        self._signed = (state, {})
        if self.loads and state.strays:     # a re-read; at start check_key_material refuses instead
            for why in state.strays:
                log.warning("%s", why)
        self.loads += 1

    def _take_ready(self) -> None:
        job = self._job
        if job is None or not job.done():
            return
        self._job = None
        try:
            state = job.result()
        except Exception as e:  # noqa: BLE001 - our bug in a reading: refuse, as for a broken file
            state = CrlState.failed(f"CRL {self.where} unreadable: {e!r}")
        self._install(state)

    @property
    def reading(self) -> bool:
        """A reading of a changed file is under way in the worker (the old one holds meanwhile)."""
        self._take_ready()
        return self._job is not None

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed since the last read (or if `force`: at once, on this
        thread). A large file is read by `reader` when there is one: the CRL read before stays in
        force until the new reading is ready, then the next check swaps it in."""
        if self.kind != "file":
            return
        self._take_ready()
        if self._job is not None and not force:
            return                          # one reading at a time; a change since is seen after it
        try:
            st = os.stat(self.where)
        except OSError as e:
            self._stamp, self._job = None, None
            self._install(CrlState.failed(f"CRL {self.where} unreadable: {e.strerror or e}"))
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp and not force:
            return
        if self.held and not force and self.reader is not None and st.st_size > self.read_inline_max:
            return                          # a reload reads it (see `held`); the change is seen after
        self._stamp = stamp
        if force or self.reader is None or st.st_size <= self.read_inline_max:
            self._job = None
            self._install(read_crl_file(self.where, self._cas))
            return
        self._job = self.reader(read_crl_file, self.where, self._cas)

    @property
    def error(self) -> str | None:
        return self._state.error

    def revoked(self, cert: x509.Certificate, chain: list[x509.Certificate] | None = None,
                refresh: bool = True) -> str | None:
        """`refresh=False`: against the reading installed, the file not looked at -- a reload's
        chain checks in its worker thread (gateway/ops.py _recheck), whose loop refreshes the
        checker before each batch: installing a reading is the loop's alone (_install)."""
        if self.kind == "dir":
            if not os.path.isdir(self.where):
                # Gone (or replaced) since the start, it revoked nothing: refused as an
                # unreadable CRL file is, until it is back.
                return f"CRL {self.where} unreadable: crl-verify dir is no directory (any more)"
            for c in [cert] + list(chain or []):
                if os.path.exists(os.path.join(self.where, str(c.serial_number))):
                    return f"certificate serial {c.serial_number} is revoked (crl-verify dir {self.where})"
            return None
        if refresh:
            self.refresh()
        st = self._state                    # one reading for the whole check
        if st.error is not None:
            return st.error
        certs = [cert] + list(chain or [])
        now = datetime.datetime.now(datetime.timezone.utc)
        subjects: list[NameKey] | None = None
        for c in certs:
            key = name_key(dername.issuer(c))
            named = st.by_issuer.get(key)
            if not named:
                continue
            if subjects is None:
                subjects = [name_key(dername.subject(i)) for i in certs]
            issuer = next((i for i, s in zip(certs, subjects) if s == key), None)
            # Of the issuer's CRLs, those that can be used: as OpenSSL picks the issuer's best CRL
            # (a current one before an expired one), an old CRL left in the file beside the
            # current one refuses nobody; with none usable, the first one's fault refuses.
            faults = [_unusable(st.crls[i], now, self._signed_by(st, i, issuer)) for i in named]
            usable = [i for i, bad in zip(named, faults) if bad is None]
            if not usable:
                return f"CRL {self._shown()} of {_issuer_cn(c)}: {faults[0]}"
            for i in usable:
                if c.serial_number in st.crls[i].serials:
                    return f"certificate serial {c.serial_number} (CN={_cn(c)}) is revoked by the CRL"
        return None

    def _signed_by(self, st: CrlState, i: int, issuer: x509.Certificate | None) -> bool:
        """Whether `issuer` signed the i-th CRL of reading `st`, the one installed (True without
        an issuer to check against): the reading's verdict for a CA of `ca`, else worked out
        once and kept until the next reading is installed."""
        if issuer is None:
            return True
        key = (i, issuer)                   # certificates compare (and hash) by their DER
        ok = st.signed.get(key)
        if ok is None:
            owner, kept = self._signed
            if owner is not st:
                # A reading the loop replaced while a reload's worker checks against it (revoked
                # refresh=False): worked out, not kept -- kept, it was read back as the new
                # reading's verdict for that place (a forged CRL's refusing under a genuine one).
                return _signature_ok(st.crls[i], issuer)
            ok = kept.get(key)
            if ok is None:
                if len(kept) >= SIGNED_KEPT:     # issuers beyond our CAs' few: start over
                    kept.clear()
                ok = kept[key] = _signature_ok(st.crls[i], issuer)
        return ok


SIGNED_KEPT = 256


def _signature_ok(c: LoadedCrl, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made the CRL's signature, from the hash the reading took
    (_tbs_digest); cryptography's own check for what that does not cover (EdDSA, DSA)."""
    crl = c.crl
    try:
        key = issuer.public_key()
        if c.tbs_digest == b"":
            return False                    # outer and inner signature algorithms differ
        h, params = crl.signature_hash_algorithm, crl.signature_algorithm_parameters
        if c.tbs_digest is not None and h is not None:
            if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
                key.verify(crl.signature, c.tbs_digest, ec.ECDSA(Prehashed(h)))
                return True
            if isinstance(key, rsa.RSAPublicKey) and isinstance(params, (padding.PKCS1v15, padding.PSS)):
                key.verify(crl.signature, c.tbs_digest, params, Prehashed(h))
                return True
            if isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
                return False                # a key of one kind, a signature of another
        if c.v1_tbs is not None:            # signed bytes cryptography's CRL object does not hold
            if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                key.verify(crl.signature, c.v1_tbs)
                return True
            if isinstance(key, dsa.DSAPublicKey) and h is not None:
                key.verify(crl.signature, c.v1_tbs, h)
                return True
            return False
        return crl.is_signature_valid(key)
    except InvalidSignature:
        return False
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
    name = dername.issuer(c)
    cn = name_common_name(name)
    return f"CN={cn}" if cn is not None else remap_name(openvpn_name(name))


def _cn(c: x509.Certificate) -> str:
    return common_name(c) or "?"      # the name the peer goes by (its last CN), as in the other logs


def checker(spec: tuple[str, str] | None, ca_pem: bytes | None = None,
            reader: Callable[..., Future] | None = None) -> CrlChecker | None:
    """crl-verify's checker, told the certificates of `ca` (PEM) if there is one. With `reader`
    (where a large file's readings run, the first one included) the file is not read yet: the
    caller's refresh() starts it (CrlChecker)."""
    if spec is None:
        return None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem) if ca_pem else []
    except ValueError:
        cas = []                            # build_context refuses an unreadable `ca` itself
    return CrlChecker(*spec, cas=cas, reader=reader, read=reader is None)


def make_crl(ca_cert: x509.Certificate, ca_key, serials: list[int], days: int = 30,
             issuer: x509.Name | None = None, v1: bool = False, version: int | None = None) -> bytes:
    """A PEM CRL signed by the CA revoking `serials` (tests and the lab; easy-rsa makes real ones).
    `issuer`: the CRL's issuer name as written, if not the CA's subject as it is (another
    encoding of the same name, or another name). `version`: the INTEGER written as its version
    instead of v2's 1 (`v1`: 0, as some CA tools write it), signed again (an RSA or EC CA)."""
    from cryptography.hazmat.primitives import hashes
    now = datetime.datetime.now(datetime.timezone.utc)
    # The entries go to the builder at once: add_revoked_certificate copies the list each time
    # (quadratic; a 100,000-entry CRL took minutes).
    revoked = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build() for s in serials]
    b = x509.CertificateRevocationListBuilder(
        issuer_name=issuer or ca_cert.subject, last_update=now - datetime.timedelta(minutes=5),
        next_update=now + datetime.timedelta(days=days), revoked_certificates=revoked)
    crl = b.sign(ca_key, hashes.SHA256())
    if v1:
        version = 0
    if version is None:
        return crl.public_bytes(serialization.Encoding.PEM)
    der = crl.public_bytes(serialization.Encoding.DER)
    _, body, _ = _der_element(der, 0)
    _, tbs_body, tbs_end = _der_element(der, body)
    _, _, version_end = _der_element(der, tbs_body)            # the builder's v2 (INTEGER 1)
    _, _, alg_end = _der_element(der, tbs_end)
    value = version.to_bytes((version + (version < 0)).bit_length() // 8 + 1, "big", signed=True)
    tbs = _der_tlv(0x30, _der_tlv(0x02, value) + der[version_end:tbs_end])
    if isinstance(ca_key, rsa.RSAPrivateKey):
        sig = ca_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = ca_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    out = _der_tlv(0x30, tbs + der[tbs_end:alg_end] + _der_tlv(0x03, b"\x00" + sig))
    return b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(out) + b"-----END X509 CRL-----\n"


def capath_warning(text: str) -> None:
    """capath's missing-CRL warning (tls.py _capath_verdict), into the log (the engine logs
    nothing itself; this module, a config reader, does)."""
    log.warning("%s", text)
