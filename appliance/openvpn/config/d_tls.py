"""Directives that restrict the control channel's TLS algorithms: `tls-cipher` (TLS 1.2 and
below), `tls-ciphersuites` (TLS 1.3), `tls-groups` and `ecdh-curve` (key exchange).

Why they are applied, not accepted as no-ops: an operator who writes `tls-groups X25519` expects
the handshake restricted to it, and they decide which peers can connect (`access`). Each value is
checked here by running tls.restrict_algorithms, the very function that builds the engine's
context, on a scratch context: the parser and the engine cannot disagree about what OpenSSL
accepts, and a refused list is an error at its line before anything starts. Each element is also
checked alone (tls.check_list_elements): inside an otherwise valid list OpenSSL skips names it does
not know, so a typo in `!NAME` would exclude nothing without a word; here it is an error naming it.

`ecdh-curve NAME`: OpenVPN 2.6 with OpenSSL 1.1 made a server use only that curve for ECDHE
(SSL_CTX_set_tmp_ecdh replaces the group list); with OpenSSL 3 it warns and ignores it. Ignoring
a security directive is what this table forbids, so it is enforced as OpenSSL 1.1 builds did, in
either role: the key exchange uses only NAME. With `tls-groups` too, NAME must be one of its
groups (the two restrictions must leave something), and NAME alone is used.
"""
from __future__ import annotations

import re

from OpenSSL import SSL

from ..errors import ConfigError
from ..tls import CERT_PROFILE_LEVEL, TlsSettings, check_list_elements, restrict_algorithms, same_group
from .directives import Registry
from .parser import ParseState

reg = Registry()


def _accepted(p: ParseState, d: str, **settings: str) -> bool:
    """True if OpenSSL accepts the value (as the engine will apply it); else an error at this line."""
    tls = TlsSettings(None, None, None, False, **settings)
    try:
        check_list_elements(tls)
        restrict_algorithms(SSL.Context(SSL.TLS_METHOD), tls)
    except ConfigError as e:
        p.err(d, e.message)
        return False
    return True


@reg.apply("tls-cipher", why="TLS 1.2 and below: only these cipher suites (OpenSSL cipher string; OpenVPN's "
           "IANA names like TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384 too)", sets=("tls_cipher",), used_by="tls",
           nargs=(1, 1), access=True)
def _tls_cipher(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if _accepted(p, d, tls_cipher=a[0]):
        p.set("tls_cipher", a[0])


@reg.apply("tls-cert-profile", why="how strong both ends' certificates and the handshake must be: OpenSSL's "
           "security level, as OpenVPN maps it (insecure 0, legacy 1, preferred 2, suiteb 3)",
           sets=("tls_cert_profile",), used_by="tls", nargs=(1, 1), access=True)
def _tls_cert_profile(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in CERT_PROFILE_LEVEL:
        p.err(d, f"unknown profile {a[0]!r} (insecure, legacy, preferred or suiteb)")
        return
    if a[0] == "insecure":
        p.note(d, "`insecure` is OpenSSL's security level 0: any key size and signature hash is accepted")
    p.set("tls_cert_profile", a[0])


@reg.apply("tls-ciphersuites", why="TLS 1.3: only these cipher suites (colon list, e.g. "
           "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256)", sets=("tls_ciphersuites",), used_by="tls",
           nargs=(1, 1), access=True)
def _tls_ciphersuites(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if _accepted(p, d, tls_ciphersuites=a[0]):
        p.set("tls_ciphersuites", a[0])


@reg.apply("tls-groups", why="TLS key exchange (and TLS 1.2 EC certificates): only these groups, in order of "
           "preference (colon list, e.g. X25519:secp256r1)", sets=("tls_groups",), used_by="tls", nargs=(1, 1),
           access=True)
def _tls_groups(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if not _accepted(p, d, tls_groups=a[0]):
        return
    curve = p.o.ecdh_curve
    if curve is not None and not any(same_group(curve, g) for g in re.split(r"[:/]", a[0])):
        p.err(d, f"does not include the ecdh-curve {curve} set above: together they leave no group")
        return
    p.set("tls_groups", a[0])


@reg.apply("ecdh-curve", why="the only TLS key-exchange group (as OpenVPN 2.6 servers with OpenSSL 1.1; "
           "OpenVPN with OpenSSL 3 ignores it)", sets=("ecdh_curve",), used_by="tls", nargs=(1, 1), access=True)
def _ecdh_curve(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", a[0]) or a[0].upper() == "DEFAULT":
        p.err(d, "expects one curve name (e.g. secp384r1); use tls-groups for a list")
        return
    if not _accepted(p, d, tls_groups=a[0]):
        return
    groups = p.o.tls_groups
    if groups is not None and not any(same_group(a[0], g) for g in re.split(r"[:/]", groups)):
        p.err(d, f"{a[0]} is not one of the tls-groups {groups} set above: together they leave no group")
        return
    p.set("ecdh_curve", a[0])
    p.note(d, f"enforced: TLS key exchange uses {a[0]} only (OpenVPN with OpenSSL 3 would ignore this line)")
