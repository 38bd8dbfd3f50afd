"""`x509-track ATTRIBUTE` as OpenVPN 2.6.14 reads and applies it (options.c; ssl_verify_openssl.c
x509_track_add, x509_setenv_track, do_setenv_x509).

Reading (parse_track): a leading `+` means every depth of the peer's chain, else depth 0 only;
the rest is a name OpenSSL knows (OBJ_txt2nid: short name, long name, or dotted OID with a NID),
else the config fails ("x509_track: no such attribute"), as OpenVPN's is fatal in a config file.
Stricter than OpenVPN: a name that is an X.509v3 extension OpenSSL can print but this module
cannot print exactly as X509V3_EXT_print does is refused here too, so that no script ever
sees a value other than the one OpenVPN would give it.

Applying (track_env), per certificate of the verified chain: SHA1/SHA256 (by NID, so `sha1`
too) the fingerprint as upper-case colon hex; any other NID the FIRST subject attribute of that
type (its UTF-8 text; a type that is no string gives nothing), else the FIRST extension of that
type as X509V3_EXT_print prints it, else nothing. The value ends at a NUL (a C string there), CR
and LF become `?` (do_setenv_x509), any other control character is dropped (setenv_str's
CC_PRINT); the variable is `X509_<depth>_<name as written>` with all but letters, digits and
`_` dropped from it (setenv_str's CC_NAME).

Why a separate function from tls.subject_env: with any x509-track line OpenVPN sets ONLY the
tracked variables (verify_cert_set_env calls x509_setenv_track instead of x509_setenv), so the
usual X509_<depth>_<field> set is gone and a script relying on X509_0_CN needs `x509-track CN`.

Order and repeats: OpenVPN keeps the lines as a list, the last line first, and sets them in
that order; setting a name again replaces the value and moves it to the front of the env
listing (newest first), which is the order this returns them in.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from ..frozen_record import FrozenRecord
from . import dername

NID_SHA1, NID_SHA256 = 64, 672
NID_SUBJECT_KEY_IDENTIFIER, NID_KEY_USAGE = 82, 83
NID_SUBJECT_ALT_NAME, NID_ISSUER_ALT_NAME = 85, 86
NID_BASIC_CONSTRAINTS, NID_EXT_KEY_USAGE = 87, 126

# The NIDs OpenSSL 3.0 has an X509V3_EXT_METHOD for (X509V3_EXT_get_nid != NULL; Debian 12's
# libcrypto): X509V3_EXT_print prints an extension of these, and nothing (it fails) for any
# other. Those this module renders are RENDERED; the rest are refused at config time.
PRINTABLE_EXTENSIONS = frozenset({
    71, 72, 73, 74, 75, 76, 77, 78, 82, 83, 84, 85, 86, 87, 88, 89, 90, 103, 126, 140, 141, 142, 143, 177,
    290, 291, 366, 367, 368, 369, 370, 371, 398, 401, 430, 663, 666, 747, 748, 770, 771, 857, 951, 952,
    954, 1007, 1008, 1020, 1093})
RENDERED = frozenset({NID_SUBJECT_KEY_IDENTIFIER, NID_KEY_USAGE, NID_SUBJECT_ALT_NAME, NID_ISSUER_ALT_NAME,
                      NID_BASIC_CONSTRAINTS, NID_EXT_KEY_USAGE})

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_DROPPED = re.compile(r"[\x00-\x1f\x7f]")


class Track(FrozenRecord):
    """One x509-track line: the variable's name part as written, its NID, all depths or 0 only."""
    name: str
    nid: int
    full_chain: bool


def _nid(name: str) -> int:
    return _lib.OBJ_txt2nid(name.encode("utf-8", "surrogateescape")) if name and "\0" not in name else 0


def track_problem(arg: str) -> str | None:
    """Why `arg` cannot be an x509-track line (None: it can)."""
    name = arg[1:] if arg.startswith("+") else arg
    nid = _nid(name)
    if not nid:
        return f"x509_track: no such attribute '{name}'"
    if nid in PRINTABLE_EXTENSIONS and nid not in RENDERED:
        return (f"x509-track {name}: the {_sn(nid)} extension cannot be given exactly as OpenVPN prints it "
                f"(supported extensions: {', '.join(sorted(_sn(n) for n in RENDERED))})")
    return None


@functools.lru_cache(maxsize=64)
def parse_tracks(args: tuple[str, ...]) -> tuple[Track, ...]:
    """The config's lines (validated by track_problem) in the order OpenVPN applies them: the
    last line first."""
    out = []
    for arg in reversed(args):
        full = arg.startswith("+")
        name = arg[1:] if full else arg
        out.append(Track(name, _nid(name), full))
    return tuple(out)


def track_env(args: tuple[str, ...], cert: x509.Certificate, depth: int) -> dict[str, str]:
    """The X509_<depth>_* variables the x509-track lines `args` give for `cert` at `depth`,
    newest first (see the module's docstring)."""
    sets: list[tuple[str, str]] = []
    fields: _Fields | None = None
    for t in parse_tracks(tuple(args)):
        if depth != 0 and not t.full_chain:
            continue
        if fields is None:
            fields = _Fields(cert)
        value = fields.value(t.nid)
        if value is None:
            continue
        value = _DROPPED.sub("", value.partition("\0")[0].replace("\r", "?").replace("\n", "?"))
        sets.append((_NOT_NAME.sub("", f"X509_{depth}_{t.name}"), value))
    env: dict[str, str] = {}
    for name, value in reversed(sets):     # newest first; a name set again moved to the front
        env.setdefault(name, value)
    return env


class _Fields:
    """One certificate's subject attributes and extensions by NID, the first of each (what
    X509_NAME_get_index_by_NID / X509_get_ext_by_NID(-1) find), read once: a subject of 4,000
    distinct OIDs looked up anew for each line would cost the loop a NID lookup per attribute
    per line (client-connect's environment is made there)."""

    def __init__(self, cert: x509.Certificate) -> None:
        from .tls import CERT_UNREADABLE, field_key   # (lazily: tls imports this module's users)
        self.cert = cert
        self.subject: dict[int | str | None, x509.NameAttribute] = {}
        for a in dername.subject(cert):
            self.subject.setdefault(field_key(a.oid.dotted_string), a)
        self.extensions: dict[int, x509.Extension] = {}
        try:
            for ext in cert.extensions:
                self.extensions.setdefault(_nid(ext.oid.dotted_string), ext)
        except CERT_UNREADABLE:          # extensions cryptography cannot read: none, stricter than OpenVPN
            self.extensions = {}

    def value(self, nid: int) -> str | None:
        if nid in (NID_SHA1, NID_SHA256):
            der = self.cert.public_bytes(serialization.Encoding.DER)
            digest = (hashlib.sha1 if nid == NID_SHA1 else hashlib.sha256)(der).digest()  # noqa: S324 - OpenVPN's
            return digest.hex(":").upper()
        a = self.subject.get(nid)
        if a is not None:
            from .tls import openssl_text
            # ASN1_STRING_to_UTF8 fails on a value that is no string (x500UniqueIdentifier's BIT STRING)
            return openssl_text(a) if isinstance(a.value, str) else None
        ext = self.extensions.get(nid)
        return None if ext is None else render_extension(nid, ext.value)


# ------------------------------------------------------------------ X509V3_EXT_print, OpenSSL 3.0
_KEY_USAGE = (("digital_signature", "Digital Signature"), ("content_commitment", "Non Repudiation"),
              ("key_encipherment", "Key Encipherment"), ("data_encipherment", "Data Encipherment"),
              ("key_agreement", "Key Agreement"), ("key_cert_sign", "Certificate Sign"),
              ("crl_sign", "CRL Sign"))


def render_extension(nid: int, value: x509.ExtensionType) -> str | None:
    """An extension as OpenSSL 3.0's X509V3_EXT_print(bio, ext, 0, 0) prints it, or None where it
    prints nothing (it fails) or where this cannot be sure to print the same: a general name
    other than DNS, email, URI, IP address or registered ID (otherName, directoryName, ...)."""
    if nid in (NID_SUBJECT_ALT_NAME, NID_ISSUER_ALT_NAME):
        parts = []
        for g in value:
            text = _general_name(g)
            if text is None:
                return None
            parts.append(text)
        return _val_prn(parts)
    if nid == NID_BASIC_CONSTRAINTS:
        parts = [f"CA:{'TRUE' if value.ca else 'FALSE'}"]
        if value.path_length is not None:
            parts.append(f"pathlen:{value.path_length}")
        return _val_prn(parts)
    if nid == NID_KEY_USAGE:
        parts = [text for attr, text in _KEY_USAGE if getattr(value, attr)]
        if value.key_agreement:
            parts += [text for attr, text in (("encipher_only", "Encipher Only"), ("decipher_only", "Decipher Only"))
                      if getattr(value, attr)]
        return _val_prn(parts)
    if nid == NID_EXT_KEY_USAGE:
        return _val_prn([_obj_text(oid.dotted_string) for oid in value])
    if nid == NID_SUBJECT_KEY_IDENTIFIER:
        return value.digest.hex(":").upper()
    return None


def _val_prn(parts: list[str]) -> str:
    """X509V3_EXT_val_prn, single-line: `a, b, c`; an empty list `<EMPTY>` and a line break."""
    return ", ".join(parts) if parts else "<EMPTY>\n"


def _general_name(g: x509.GeneralName) -> str | None:
    if isinstance(g, (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)):
        label = "DNS" if isinstance(g, x509.DNSName) else "email" if isinstance(g, x509.RFC822Name) else "URI"
        if "\0" in g.value:              # OpenSSL's printing fails on an embedded NUL
            return None
        return f"{label}:{g.value}"
    if isinstance(g, x509.IPAddress) and isinstance(g.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        if g.value.version == 4:
            return f"IP Address:{g.value}"
        p = g.value.packed
        return "IP Address:" + ":".join(f"{p[i] << 8 | p[i + 1]:X}" for i in range(0, 16, 2))
    if isinstance(g, x509.RegisteredID):
        return f"Registered ID:{_obj_text(g.value.dotted_string)}"
    return None


def _obj_text(dotted: str) -> str:
    """i2t_ASN1_OBJECT(buf, 80, obj): OpenSSL's long name, else the dotted OID (79 characters at most)."""
    nid = _nid(dotted)
    if nid:
        ln = _lib.OBJ_nid2ln(nid)
        if ln != _ffi.NULL:
            return _ffi.string(ln).decode()
    return dotted[:79]


def _sn(nid: int) -> str:
    sn = _lib.OBJ_nid2sn(nid)
    return _ffi.string(sn).decode() if sn != _ffi.NULL else str(nid)
