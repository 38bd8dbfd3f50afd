"""The tls-config fuzz target: the configuration-only paths of appliance/openvpn/tls.py, reached
from a profile the way a user's config reaches them -- both config parsers (an OpenVPN file, and
the same profile inline in the appliance TOML), then the start-up check (settings.check_key_material:
build_context, check_offer, the CRL).

Why a target: ovpn-config fuzzes every directive at once, and its dictionary almost never builds a
cipher list, a group list or a certificate check OpenSSL half-accepts; tls-endpoint builds
TlsSettings itself, bypassing the parsers. What a user sees is the parser's and the start-up
check's verdict on text: an accepted restriction must be enforced, a refused one must name its
file and line, and the two parsers must agree.

Input: first byte bit 0: a client or a server profile (inline CA, certificate and key); the rest
split at newlines, each line one directive: its first byte modulo 32 picks the directive
(DIRECTIVES; the seeds write 0x40 + its index, a printable byte), the rest is its arguments as text (paths kept inside this target's scratch directory: a `/` becomes
`_`, so a fuzzed `crl-verify /dev/zero` never reads the machine). Selector bytes past the table
pick a `<crl-verify>` block: our CA's CRL, another CA's, or the rest as its text.

Oracles:
- both parsers and the start-up check raise nothing but ConfigError;
- every error names the profile's file (the TOML for the inline profile) and, for a directive this
  input wrote, the line where that directive stands (in the TOML: the same text, at the inline
  block's offset);
- a profile the OpenVPN parser and the check accept, the TOML accepts too, with the same TLS
  settings (and the reverse); one refused is refused by both, at the same profile line;
- an accepted security directive is never ignored: the fields it sets differ from the defaults,
  and the TlsSettings the session gets carry the restriction (tls-cipher, -ciphersuites, -groups,
  verify-x509-name, remote-cert-tls, ns-cert-type, crl-verify, cert profile as written);
- a context built from accepted settings takes a TlsEndpoint (what a session does next).
"""
from __future__ import annotations

import functools
import os

from tests.fuzz.scratch import scratch_dir

DIRECTIVES = (
    "tls-cipher", "tls-ciphersuites", "tls-groups", "ecdh-curve", "tls-cert-profile", "verify-x509-name",
    "remote-cert-tls", "ns-cert-type", "crl-verify", "remote-cert-eku", "remote-cert-ku", "tls-version-min",
    "tls-version-max", "x509-username-field", "verify-hash", "peer-fingerprint", "capath", "tls-verify",
    "verify-client-cert",
)
PATH_DIRECTIVES = frozenset({"crl-verify", "capath", "tls-verify"})
# Accepted, each of these must leave its mark in the Options (a security directive is enforced or
# refused, never ignored).
MUST_SET = frozenset({"tls-cipher", "tls-ciphersuites", "tls-groups", "ecdh-curve", "tls-cert-profile",
                      "verify-x509-name", "remote-cert-tls", "ns-cert-type", "crl-verify", "remote-cert-eku",
                      "remote-cert-ku", "verify-hash", "peer-fingerprint", "capath"})
# The TlsSettings fields compared between the two parsers.
TLS_FIELDS = ("remote_cert_tls", "verify_x509_name", "peer_fingerprints", "tls_version_min", "tls_version_max",
              "verify_client_cert", "remote_cert_eku", "remote_cert_ku", "ns_cert_type", "tls_cipher",
              "tls_ciphersuites", "tls_groups", "username_field", "verify_hash", "verify_hash_algo",
              "cert_profile", "hold_for_verdict", "capath")
TOML_HEAD = '[wan]\nmac = "52:54:00:36:00:01"\ndhcp = true\n\n[vpn]\nrole = "{role}"\ninline = \'\'\'\n'


@functools.lru_cache(maxsize=1)
def _scratch() -> str:
    """A directory holding what relative paths in the profiles may name: our CA's CRL, another
    CA's, junk, an empty CRL directory and a c_rehash'ed capath with our CA."""
    from cryptography.hazmat.primitives import serialization

    d = scratch_dir("fuzz-tlsconf-")
    crls = _crls()
    for name, data in (("crl.pem", crls[0]), ("stray.pem", crls[1]), ("junk.pem", b"junk\n")):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    os.mkdir(os.path.join(d, "crldir"))
    os.mkdir(os.path.join(d, "cadir"))
    ca = _pki()["ca_cert"]
    with open(os.path.join(d, "cadir", f"{_subject_hash(ca):08x}.0"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    return d


def _subject_hash(cert) -> int:
    from OpenSSL import crypto
    return crypto.X509.from_cryptography(cert).subject_name_hash()


@functools.lru_cache(maxsize=1)
def _pki() -> dict:
    """This target's own CA (its key kept, for the CRL), server and client, and another CA's CRL."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from appliance.certs import issue
    from tests.fuzz.harness import _kpem, _pem

    def crl(ca) -> bytes:
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        b = (x509.CertificateRevocationListBuilder().issuer_name(ca[0].subject).last_update(now)
             .next_update(now + datetime.timedelta(days=3650))
             .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(12345)
                                      .revocation_date(now).build()))
        return b.sign(ca[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    ca = issue("tls-config CA", None, None)
    server = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem(ca[0]), "ca_cert": ca[0], "server": (_pem(server[0]), _kpem(server[1])),
            "client": (_pem(client[0]), _kpem(client[1])),
            "crls": (crl(ca), crl(issue("another CA", None, None)))}


def _crls() -> tuple[bytes, bytes]:
    return _pki()["crls"]


def _profile(data: bytes) -> tuple[str, str, list[tuple[int, str]]]:
    """(role, profile text, [(line number, directive)] of the lines this input wrote)."""
    p = _pki()
    role = "server" if data[:1] and data[0] & 1 else "client"
    cert, key = p["server"] if role == "server" else p["client"]
    head = (["server 198.19.36.0 255.255.255.0", "dev tun", "dh none"] if role == "server"
            else ["client", "dev tun", "remote 198.18.36.1 1194"])
    lines = head + ["<ca>", *p["ca"].decode().splitlines(), "</ca>", "<cert>", *cert.decode().splitlines(),
                    "</cert>", "<key>", *key.decode().splitlines(), "</key>"]
    wrote: list[tuple[int, str]] = []
    for raw in data[1:].split(b"\n")[:12]:
        if not raw:
            continue
        sel, rest = raw[0], raw[1:].decode("utf-8", "replace")
        if sel % 32 < len(DIRECTIVES):
            d = DIRECTIVES[sel % 32]
            if d in PATH_DIRECTIVES:
                rest = rest.replace("/", "_").replace("..", "_")
            wrote.append((len(lines) + 1, d))
            lines.append(f"{d} {rest}" if rest else d)
        else:
            which = sel % 3
            body = (_crls()[which].decode() if which < 2 else rest.replace("\\n", "\n"))
            wrote.append((len(lines) + 1, "crl-verify"))
            lines += ["<crl-verify>", *body.splitlines(), "</crl-verify>"]
    return role, "\n".join(lines) + "\n", wrote


def _errors(e) -> list:
    return list(getattr(e, "errors", None) or [e])


def _check_located(e, path: str, text: str, offset: int, wrote: list[tuple[int, str]]) -> None:
    """Every error names `path`; one of a directive this input wrote names a line where it stands."""
    lines = text.split("\n")
    written = {d for _n, d in wrote}
    for one in _errors(e):
        assert one.path == path, f"error names {one.path!r}, not {path!r}: {one}"
        d = one.directive
        if d in written or (d == "tls-groups" and "ecdh-curve" in written):
            assert one.line is not None, f"no line for {d}: {one}"
            at = int(one.line) - offset
            assert 1 <= at <= len(lines), f"line {one.line} outside the profile: {one}"
            said = lines[at - 1].strip()
            assert said.startswith(d) or said.startswith(f"<{d}>") or \
                (d == "tls-groups" and said.startswith("ecdh-curve")), f"line {one.line} is {said[:60]!r}: {one}"


def _check_crl_verdict(crl_verify: tuple[str, str], checker, role: str) -> None:
    """Our CA's own CRL (it revokes none of our certificates) lets the peer in; text that is no
    CRL at all refuses it (2.6 fails the handshake on an unreadable CRL: never accept a revoked
    certificate because the file is broken)."""
    from cryptography import x509
    kind, where = crl_verify
    if kind == "dir":
        return
    if kind == "inline":
        body = where.encode("utf-8", "surrogateescape")
    else:
        with open(where, "rb") as f:
            body = f.read()
    p = _pki()
    peer = x509.load_pem_x509_certificate(p["client" if role == "server" else "server"][0])
    verdict = checker.revoked(peer)
    if body.strip() == p["crls"][0].strip():
        assert verdict is None, f"our CA's CRL, revoking nothing of ours, refused the peer: {verdict}"
        return
    for load in (x509.load_pem_x509_crl, x509.load_der_x509_crl):
        try:
            load(body)
            return
        except Exception:  # noqa: BLE001 - not a CRL in this encoding
            continue
    assert verdict is not None, f"a crl-verify that is no CRL at all ({body[:40]!r}) let the peer in"


def _toml_literal_ok(text: str) -> bool:
    """Whether `text` can stand in a TOML multi-line literal string (no control character but tab
    and newline; a CR only before a newline)."""
    return all(c in "\t\n" or (c >= " " and c != "\x7f") for c in text.replace("\r\n", "\n"))


def _outcome(fn):
    from appliance.openvpn.errors import ConfigError
    try:
        return fn(), None
    except ConfigError as e:
        return None, e


def make_tls_config():
    import logging

    from appliance.config import schema
    from appliance.openvpn import config as options
    from appliance.openvpn.config.model import Options
    from appliance.openvpn.config.table import TABLE
    from appliance.openvpn.settings import check_key_material
    from appliance.openvpn.tls import TlsEndpoint, build_context
    logging.getLogger("vpn-appliance").setLevel(logging.ERROR)
    d = _scratch()
    ovpn, toml = os.path.join(d, "profile.ovpn"), os.path.join(d, "appliance.toml")
    defaults = Options()

    def one(data: bytes) -> None:
        role, text, wrote = _profile(data)
        o, err = _outcome(lambda: options.parse_config(text, ovpn, no_scripts=True))
        tls = None
        if o is not None:
            tls, err = _outcome(lambda: check_key_material(o))
        if err is not None:
            _check_located(err, ovpn, text, 0, wrote)
        else:
            assert o is not None and tls is not None
            for _n, dname in wrote:
                if dname in MUST_SET:
                    sets = TABLE[dname].sets
                    assert any(getattr(o, f) != getattr(defaults, f) for f in sets), \
                        f"{dname} accepted and ignored: {sets} at their defaults"
            for f in ("tls_cipher", "tls_ciphersuites", "cert_profile", "ns_cert_type", "remote_cert_tls",
                      "verify_x509_name"):
                src = {"cert_profile": "tls_cert_profile"}.get(f, f)
                assert getattr(tls, f) == getattr(o, src), f"{f}: {getattr(tls, f)!r} != {getattr(o, src)!r}"
            if o.crl_verify is not None:
                assert tls.crl is not None, "crl-verify accepted, no CRL check"
                _check_crl_verdict(o.crl_verify, tls.crl, role)
            TlsEndpoint(build_context(tls), tls)
        if "'''" in text or "\\" in text:
            return                     # not a TOML literal string: that parser is not fed this one
        head = TOML_HEAD.format(role=role)
        offset = head.count("\n")
        cfg, terr = _outcome(lambda: schema.parse_appliance_config(head + text + "'''\n", toml))
        ttls = None
        if cfg is not None:
            ttls, terr = _outcome(lambda: schema.check_vpn_key_material(cfg))
        if terr is not None:
            _check_located(terr, toml, text, offset, wrote)
        if not _toml_literal_ok(text):
            # TOML forbids control characters in a literal string: a syntax error, at a profile line.
            assert terr is not None and "TOML syntax" in str(terr), f"TOML took a control character: {terr}"
            return
        assert (err is None) == (terr is None), \
            f"the parsers disagree: ovpn {err or 'accepts'} / toml {terr or 'accepts'}"
        if err is not None and terr is not None:
            lines = sorted({int(e.line) for e in _errors(err) if e.line is not None})
            tlines = sorted({int(e.line) - offset for e in _errors(terr) if e.line is not None and e.path == toml})
            assert lines == tlines, f"the parsers blame other lines: {lines} / {tlines}"
        else:
            assert tls is not None and ttls is not None
            for f in TLS_FIELDS:
                assert getattr(tls, f) == getattr(ttls, f), f"{f}: ovpn {getattr(tls, f)!r} / toml {getattr(ttls, f)!r}"
    return one


def seeds() -> list[bytes]:
    ix = {d: i for i, d in enumerate(DIRECTIVES)}

    def s(role: int, *lines: tuple[str, str]) -> bytes:
        return bytes([role]) + b"\n".join(bytes([0x40 + ix[d]]) + a.encode() for d, a in lines)
    return [
        b"\x00", b"\x01",
        s(0, ("tls-cipher", "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384:!TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256")),
        s(0, ("tls-cipher", "DEFAULT:!EXP:!LOW:!MEDIUM:!kDH:!kECDH:!DSS:!PSK:!SRP:!kRSA")),
        s(0, ("tls-cipher", "ECDHE-RSA-AES128-GCM-SHA25:@SECLEVEL=1")),
        s(0, ("tls-cipher", "TLS_AES_256_GCM_SHA384")),
        s(1, ("tls-cipher", "!EDH-RSA-DES-CBC3-SHA:HIGH"), ("tls-cert-profile", "legacy")),
        s(0, ("tls-ciphersuites", "TLS-AES-256-GCM-SHA384:TLS_CHACHA20_POLY1305_SHA256")),
        s(0, ("tls-ciphersuites", "TLS_AES_256_GCM_SHA38")),
        s(1, ("tls-groups", "X25519:secp256r1"), ("ecdh-curve", "prime256v1")),
        s(1, ("tls-groups", "?X2551:X25519")),
        s(0, ("tls-groups", "brainpoolP256r1")),
        s(0, ("ecdh-curve", "secp384r1")),
        s(0, ("tls-version-max", "1.1"), ("tls-cipher", "ECDHE-RSA-AES256-GCM-SHA384")),
        s(0, ("tls-version-min", "1.3 or-highest")),
        s(1, ("tls-cert-profile", "suiteb")),
        s(0, ("tls-cert-profile", "insecure"), ("tls-cipher", "ALL:@SECLEVEL=9")),
        s(0, ("verify-x509-name", "server name")), s(0, ("verify-x509-name", "'C=US, CN=server' subject")),
        s(0, ("verify-x509-name", "serv name-prefix")), s(0, ("verify-x509-name", "x bogus")),
        s(0, ("remote-cert-tls", "server")), s(1, ("remote-cert-tls", "client")), s(0, ("remote-cert-tls", "peer")),
        s(0, ("ns-cert-type", "server")), s(0, ("ns-cert-type", "both")),
        s(0, ("remote-cert-eku", "TLS Web Server Authentication")), s(0, ("remote-cert-eku", "1.3.6.1.5.5.7.3.1")),
        s(0, ("remote-cert-ku", "a0 88")), s(0, ("remote-cert-ku", "zz")), s(0, ("remote-cert-ku", "")),
        s(1, ("crl-verify", "crl.pem")), s(1, ("crl-verify", "stray.pem")), s(1, ("crl-verify", "junk.pem")),
        s(1, ("crl-verify", "crldir dir")), s(1, ("crl-verify", "nowhere dir")), s(1, ("crl-verify", "crl.pem file")),
        bytes([1, 0x5F]) + b"x", bytes([1, 0x5D]) + b"x", bytes([1, 0x5E]) + b"-----BEGIN X509 CRL-----\\nAAAA\\n-----END X509 CRL-----",
        s(0, ("capath", "cadir")), s(0, ("capath", "nowhere")),
        s(1, ("x509-username-field", "ext:subjectAltName")), s(1, ("x509-username-field", "emailAddress CN")),
        s(0, ("verify-hash", "AA:BB SHA256")), s(0, ("peer-fingerprint", "AA:" * 31 + "AA")),
        s(1, ("verify-client-cert", "optional")), s(1, ("verify-client-cert", "none")),
        s(0, ("tls-verify", "true")),
    ]
