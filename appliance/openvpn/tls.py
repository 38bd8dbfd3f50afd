"""TLS over the control channel, with no sockets: pyOpenSSL memory BIOs.

Why pyOpenSSL and not stdlib ssl: OpenVPN 2.6 derives data-channel keys with the TLS keying-material
exporter (RFC 5705, `key-derivation tls-ekm`), which stdlib ssl does not expose. Records from the
peer are fed in with `feed`, `pump` drives the handshake and returns the bytes to send plus the
application messages read (one per TLS record, as OpenVPN writes one control message per record).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Callable, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from . import dername
from .errors import ConfigError, RemoteProtocolError, VerifyRefused
from .keymethod import remap_name
from .peernames import ERRORS

_BIO_CHUNK = 65536
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_alloc = _ffi.new_allocator(should_clear_after_alloc=False)


_spare: list = []     # read buffers not in use (_take/_give); as many as were ever in use at once


def _take():
    """A read buffer, not zeroed (OpenSSL writes what is read): a spare one, else a new one;
    back with _give once its bytes are copied out (`_ffi.buffer(buf, r)[:]`). list.pop and
    append are atomic under the GIL, so endpoints on different threads (tests, tools) never
    share one; the spares number at most the buffers ever in use at once (one per pumping
    thread). Why not a new one per pump and drain, as before: a 64 KiB block asked of malloc at
    every pump, on the server's main heap (64 KiB is under glibc's mmap threshold), used a few
    microseconds -- when no free run of that size was left between what lives there, the heap
    was extended (soak44: `strace -k -e brk` on a TCP soak's server, once the reads' 256 KiB
    blocks were gone (transport/recvbuf.py), the brks after its warm-up were this one's but one)."""
    try:
        return _spare.pop()
    except IndexError:
        return _alloc("char[]", _BIO_CHUNK)


def _give(buf) -> None:  # noqa: ANN001 - a cffi char[]
    _spare.append(buf)


_VERSIONS = {"1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION, "1.2": SSL.TLS1_2_VERSION,
             "1.3": SSL.TLS1_3_VERSION}
TLS_VERSIONS = tuple(_VERSIONS)             # lowest first
# Without tls-version-min: TLS 1.2 (OpenVPN 2.6 takes 1.0 unless told otherwise; never offered here).
DEFAULT_TLS_VERSION_MIN = "1.2"


def tls_version_min(s: "TlsSettings") -> str:
    """The lowest TLS version `s` lets a peer use ("1.2"; `or-highest`'s word dropped): the one
    place the default is applied, for the context (_set_versions) and a reload's check of kept
    clients (given.tls_version_out)."""
    return (s.tls_version_min or DEFAULT_TLS_VERSION_MIN).split()[0]


@dataclass
class TlsSettings:
    """What the TLS layer needs from the config, already loaded (PEM bytes, not paths)."""
    ca: bytes | None
    cert: bytes | None
    key: bytes | None
    is_server: bool
    remote_cert_tls: str | None = None          # "server" | "client"
    verify_x509_name: tuple[str, str] | None = None
    peer_fingerprints: list[bytes] = field(default_factory=list)
    tls_version_min: str | None = DEFAULT_TLS_VERSION_MIN
    tls_version_max: str | None = None
    verify_client_cert: str = "require"         # server: require | optional | none
    remote_cert_eku: str | None = None          # remote-cert-eku: a name (as OpenSSL prints it) or dotted OID
    remote_cert_ku: list[int] | None = None     # remote-cert-ku: [] = keyUsage required; else one of these
    ns_cert_type: str | None = None             # ns-cert-type: "server" | "client"
    crl: object | None = None                   # crl-verify: a crl.CrlChecker (revoked(cert, chain) -> why)
    tls_cipher: str | None = None               # tls-cipher as written (None: OpenVPN's default list)
    tls_ciphersuites: str | None = None         # tls-ciphersuites as written (None: OpenSSL's TLS 1.3 default)
    tls_groups: str | None = None               # key-exchange groups (tls-groups/ecdh-curve; None: OpenSSL's)
    username_field: tuple[str, ...] = ()        # x509-username-field (empty: the last CN names the peer)
    verify_hash: list[bytes] = field(default_factory=list)   # verify-hash: depth 1's fingerprints
    verify_hash_algo: str = "SHA1"
    cert_profile: str | None = None             # tls-cert-profile (None: OpenSSL's default level, 2)
    # tls-verify: once our own checks pass, the handshake is held (nothing sent, nothing read)
    # until the gateway's verdict on the chain (TlsEndpoint.verify_chain / give_verdict).
    hold_for_verdict: bool = False
    # capath DIR: CAs and CRLs looked up in a c_rehash'ed directory as chains need them, each
    # certificate of a chain checked against its issuer's CRL (a missing CRL passes), as 2.6.
    capath: str | None = None
    # Where capath's "VERIFY WARNING ... unable to get certificate CRL" goes (the gateway's log,
    # crl.capath_warning; the engine logs nothing itself). None: not told.
    capath_warn: Callable[[str], None] | None = None


# ------------------------------------------------------------------ tls-cipher, tls-ciphersuites, tls-groups
# OpenVPN 2.6's `tls-cipher` default (ssl_openssl.c): OpenSSL's DEFAULT without export/low/medium
# ciphers, static (EC)DH, DSA keys, PSK/SRP and RSA key transport (no forward secrecy). Used when
# the config has no tls-cipher, so TLS 1.2 offers what OpenVPN's does.
OPENVPN_TLS_CIPHER_DEFAULT = "DEFAULT:!EXP:!LOW:!MEDIUM:!kDH:!kECDH:!DSS:!PSK:!SRP:!kRSA"

# tls-cert-profile as OpenVPN 2.6 maps it onto OpenSSL (ssl_openssl.c tls_ctx_set_cert_profile):
# a security level, which bounds key sizes and signature hashes of both ends' certificates and of
# the handshake. `suiteb` also sets the cipher list SUITEB128 there, which OpenVPN's own cipher
# list (its default, or tls-cipher) then replaces, so only the level remains: the same here.
# Without the directive OpenVPN sets `legacy` (level 1); we keep OpenSSL 4's default, level 2
# (`preferred`): RSA keys under 2048 bits are refused unless the profile says otherwise.
CERT_PROFILE_LEVEL = {"insecure": 0, "legacy": 1, "preferred": 2, "suiteb": 3}


def openssl_cipher_list(spec: str) -> str:
    """`tls-cipher` as OpenVPN reads it: each colon-separated item is passed on, except IANA names
    in OpenVPN's dashed spelling (`TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256`), which OpenVPN
    translates with a table. OpenSSL's cipher strings take the IANA names with underscores
    (checked against every pair of OpenVPN 2.6's table), so the translation is a respelling; an
    item's `!`/`-`/`+` operator is kept, so an excluded IANA name is excluded too."""
    out = []
    for item in spec.split(":"):
        op = item[:1] if item[:1] in "!-+" else ""
        name = item[len(op):]
        out.append(op + name.replace("-", "_") if name.startswith("TLS-") else item)
    return ":".join(out)


def openssl_ciphersuites(spec: str) -> str:
    """`tls-ciphersuites` as OpenVPN reads it: dashes become underscores (OpenVPN's older spelling
    TLS-AES-256-GCM-SHA384 is TLS_AES_256_GCM_SHA384)."""
    return spec.replace("-", "_")


# Names OpenSSL gives one group under (OpenVPN's docs use secp256r1, older profiles prime256v1).
_GROUP_ALIASES = {"prime256v1": "secp256r1", "p-256": "secp256r1", "p-384": "secp384r1", "p-521": "secp521r1"}


def same_group(a: str, b: str) -> bool:
    """Whether two group names from a config name the same group (case and aliases aside)."""
    a, b = a.lstrip("?*").lower(), b.lstrip("?*").lower()
    return _GROUP_ALIASES.get(a, a) == _GROUP_ALIASES.get(b, b)


def key_exchange_groups(tls_groups: str | None, ecdh_curve: str | None) -> str | None:
    """The group list the context gets: `ecdh-curve` (one curve) wins over `tls-groups`, as in
    OpenVPN 2.6 with OpenSSL 1.1; the parser has made sure the curve is one of tls-groups."""
    return ecdh_curve if ecdh_curve is not None else tls_groups


def _set_groups(ctx: SSL.Context, groups: str) -> bool:
    """SSL_CTX_set1_groups_list, as OpenVPN 2.6 calls it with OpenSSL 3. pyOpenSSL has no call for
    a group list (only set_tmp_ecdh: one classic curve, no X25519), so this one call goes through
    cryptography's OpenSSL bindings (SSL_CTX_set1_curves_list is the same macro under its older
    name). False when OpenSSL refuses the list (an unknown name, bad syntax)."""
    return _lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode("ascii", "replace")) == 1  # noqa: SLF001


# The verdicts on one name alone (_group_known, _matches_alone, _tls13_suite_known) are kept per
# distinct name: each takes a scratch context (~150 us, most of it OpenSSL's context set-up), and a
# config of many long lists repeats the same few dozen names (1000 lines of 36 took seconds to
# parse). The verdict depends only on the name and on this process's OpenSSL (its build and
# configuration, read once), which do not change while it runs. Bounded, so a config of ever new
# names cannot grow the memory: past the bound the oldest verdicts are worked out again.
_VERDICTS_KEPT = 4096


@functools.lru_cache(maxsize=_VERDICTS_KEPT)
def _group_known(name: str) -> bool:
    """Whether OpenSSL accepts `name` alone as the group list of a scratch context."""
    return _set_groups(SSL.Context(SSL.TLS_METHOD), name)


def _printable(directive: str, value: str | None) -> None:
    """OpenSSL reads these lists as C strings: a NUL would cut the list short unseen (`X25519\\0...`)
    and non-ASCII names are never valid, so only printable ASCII gets through."""
    if value is not None and not (value.isascii() and value.isprintable()):   # = all in ' '..'~', at C speed
        raise ConfigError(f"{value!r}: only printable ASCII names are possible", directive=directive)


# OpenSSL's cipher-string keywords (openssl-ciphers(1)), plus those OpenSSL 1.1 retired that
# OpenVPN's own default list and copied profiles still exclude (EXP, LOW, kDH, kECDH, ...). An
# exclusion (`!`/`-`, or a `+` reordering) of one of these that matches no cipher in this build is
# enforced as written: what it names cannot be negotiated. Any other name that matches nothing
# alone is a typo as far as anyone can tell, and OpenSSL would skip it without a word.
_CIPHER_KEYWORDS = frozenset("""
    ALL COMPLEMENTOFALL COMPLEMENTOFDEFAULT DEFAULT HIGH MEDIUM LOW EXP EXPORT EXPORT40 EXPORT56 FIPS
    eNULL NULL aNULL kRSA aRSA RSA kDHr kDHd kDH kDHE kEDH DH DHE EDH ADH kEECDH kECDHE ECDH ECDHE
    EECDH AECDH kECDHr kECDHe kECDH aECDH aDSS DSS aDH aECDSA ECDSA SSLv2 SSLv3 TLSv1 TLSv1.0 TLSv1.2
    AES128 AES256 AES AESGCM AESCCM AESCCM8 ARIA128 ARIA256 ARIA ARIAGCM CAMELLIA128 CAMELLIA256
    CAMELLIA CHACHA20 3DES DES RC4 RC2 IDEA SEED MD5 SHA1 SHA SHA256 SHA384 aGOST aGOST01 aGOST12
    kGOST kGOST18 GOST94 GOST89MAC GOST12 GOST2012 eGOST2814789CNT eGOST2814789CNT12 PSK kPSK
    kECDHEPSK kDHEPSK kRSAPSK aPSK SRP kSRP aSRP kKRB5 aKRB5 KRB5 SUITEB128 SUITEB128ONLY SUITEB192
    CBC""".split())


@functools.lru_cache(maxsize=_VERDICTS_KEPT)
def _matches_alone(spec: str) -> bool:
    """Whether OpenSSL selects at least one TLS <= 1.2 cipher for `spec` on a scratch context."""
    try:
        SSL.Context(SSL.TLS_METHOD).set_cipher_list(spec.encode("ascii", "replace"))
    except SSL.Error:
        return False
    return True


@functools.lru_cache(maxsize=_VERDICTS_KEPT)
def _tls13_suite_known(name: str) -> bool:
    try:
        SSL.Context(SSL.TLS_METHOD).set_tls13_ciphersuites(name.encode("ascii", "replace"))
    except SSL.Error:
        return False
    return True


# Words in a cipher's name (OpenSSL's or the IANA one) that give an algorithm OpenSSL builds may
# leave out altogether (OpenSSL 3: 3DES and single DES at the default level, RC4, RC2, export,
# Kerberos, GOST) -> the keyword that selects it. Checked in this order: EDH-RSA-DES-CBC3-SHA is 3DES.
_RETIRED_ALGORITHMS = (({"3DES", "CBC3"}, "3DES"), ({"DES"}, "DES"), ({"RC4"}, "RC4"), ({"RC2"}, "RC2"),
                       ({"EXP", "EXPORT", "EXPORT40", "EXP1024"}, "EXP"), ({"KRB5"}, "kKRB5"),
                       ({"GOST94", "GOST2001", "GOST2012", "GOST89", "GOST"}, "aGOST"))


def _cannot_exist_here(name: str) -> bool:
    """Whether the one cipher `name` (no `+` combination) uses an algorithm this OpenSSL has no
    cipher with at all: allowed or excluded, it changes nothing here, as OpenSSL skipping it
    says; OpenVPN 2.6 takes such lists (legacy profiles name TLS-DHE-RSA-WITH-3DES-EDE-CBC-SHA or
    exclude !EDH-RSA-DES-CBC3-SHA). A typo in a name this OpenSSL does have is still caught."""
    if "+" in name:
        return False
    words = set(re.split(r"[-_]", name))
    for names, keyword in _RETIRED_ALGORITHMS:
        if words & names:
            return not _matches_alone(keyword)
    return False


def _cipher_element_problem(item: str, part: str) -> str | None:
    """Why one element of `tls-cipher` (`item` as written, `part` in OpenSSL's spelling) does
    nothing, or None."""
    if part.startswith("@"):                    # @STRENGTH, @SECLEVEL=n: OpenSSL refuses bad ones itself
        return None if _matches_alone("ALL:" + part) else \
            f"{item!r} is not an OpenSSL command (@STRENGTH, @SECLEVEL=0..5)"
    op = part[:1] if part[:1] in "!-+" else ""
    body = part[len(op):]
    if body and _matches_alone(body):
        return None
    if op and body and all(k in _CIPHER_KEYWORDS for k in body.split("+")):
        return None                             # excludes/reorders a kind this OpenSSL does not have
    if body and _cannot_exist_here(body):
        return None                             # a cipher of an algorithm this OpenSSL has none of
    if body and _tls13_suite_known(body):
        return f"{item!r} is a TLS 1.3 cipher suite: it belongs in tls-ciphersuites"
    return (f"{item!r} matches no TLS 1.2 cipher this OpenSSL knows, and OpenSSL would skip it without a "
            f"word (a typo? names as `openssl ciphers -v ALL` or OpenVPN's IANA names list them)")


def check_list_elements(s: TlsSettings) -> None:
    """Raise ConfigError naming the first element of tls-cipher, tls-ciphersuites or tls-groups that
    OpenSSL would skip. Inside an otherwise valid list OpenSSL drops names it does not know
    (`!ECDHE-RSA-AES128-GCM-SHA25` excludes nothing, `tls-groups ?X2551:X25519` offers X25519
    only), and a restriction that is silently not applied is what this appliance refuses. Each
    element is tried alone on a scratch context, so what counts as known is what this OpenSSL
    knows (the verdict kept per distinct name: see _VERDICTS_KEPT). Run by the config parser once
    per directive, not per context."""
    _printable("tls-cipher", s.tls_cipher)
    _printable("tls-ciphersuites", s.tls_ciphersuites)
    _printable("tls-groups", s.tls_groups)
    for item in (s.tls_cipher.split(":") if s.tls_cipher is not None else ()):
        # OpenSSL also splits at ' ', ',' and ';'; OpenVPN translates IANA names between colons.
        # The respelling keeps separators in place, so the element named is the one as written.
        for written, part in zip(re.split(r"[ ,;]", item), re.split(r"[ ,;]", openssl_cipher_list(item))):
            problem = part and _cipher_element_problem(written, part)
            if problem:
                raise ConfigError(problem, directive="tls-cipher")
    if s.tls_ciphersuites is not None:
        for item in s.tls_ciphersuites.split(":"):
            if item and not _tls13_suite_known(openssl_ciphersuites(item)):
                raise ConfigError(f"{item!r} is no TLS 1.3 cipher suite this OpenSSL knows, and OpenSSL would skip "
                                  "it without a word (names as `openssl ciphers -s -tls1_3 -v` lists them, e.g. "
                                  "TLS_AES_256_GCM_SHA384)", directive="tls-ciphersuites")
    for item in re.split(r"[:/]", s.tls_groups) if s.tls_groups else ():
        name = item.lstrip("?*-")
        if item and not (name and _group_known(name)):
            raise ConfigError(f"{item!r} is no group this OpenSSL knows (names as `openvpn --show-groups` lists "
                              "them, e.g. X25519, secp256r1); a '?' before it would only make OpenSSL skip it "
                              "without a word", directive="tls-groups")


def restrict_algorithms(ctx: SSL.Context, s: TlsSettings) -> None:
    """Apply tls-cipher (TLS <= 1.2), tls-ciphersuites (TLS 1.3) and the key-exchange groups to
    `ctx`. Raises ConfigError naming the directive when OpenSSL refuses a list or the list leaves
    nothing to negotiate with (the config parser runs the same checks with file:line)."""
    _printable("tls-cipher", s.tls_cipher)
    _printable("tls-ciphersuites", s.tls_ciphersuites)
    _printable("tls-groups", s.tls_groups)
    spec = openssl_cipher_list(s.tls_cipher) if s.tls_cipher is not None else OPENVPN_TLS_CIPHER_DEFAULT
    if s.cert_profile is not None and "@SECLEVEL" not in spec.upper():
        # OpenVPN sets the profile's level first and tls-cipher after it: a @SECLEVEL there wins.
        spec += f":@SECLEVEL={CERT_PROFILE_LEVEL[s.cert_profile]}"
    try:
        ctx.set_cipher_list(spec.encode("ascii", "replace"))
    except SSL.Error:
        raise ConfigError(f"OpenSSL knows no TLS 1.2 cipher in {s.tls_cipher!r}", directive="tls-cipher") from None
    if s.tls_ciphersuites is not None:
        suites = openssl_ciphersuites(s.tls_ciphersuites)
        try:
            if not suites:
                raise SSL.Error([])
            ctx.set_tls13_ciphersuites(suites.encode("ascii", "replace"))
        except SSL.Error:
            raise ConfigError(f"OpenSSL knows no TLS 1.3 cipher suite in {s.tls_ciphersuites!r}",
                              directive="tls-ciphersuites") from None
    if s.tls_groups is not None:
        names = [g.lstrip("?") for g in s.tls_groups.split(":")]
        if not s.tls_groups or not _set_groups(ctx, s.tls_groups) or not any(n and _group_known(n) for n in names):
            raise ConfigError(f"OpenSSL refuses the group list {s.tls_groups!r} (names as `openvpn "
                              "--show-groups` lists them, e.g. X25519:secp256r1)", directive="tls-groups")


def check_offer(s: TlsSettings) -> None:
    """Raise ConfigError if these versions and algorithm restrictions leave nothing to negotiate:
    a client context restricted the same way must be able to write its ClientHello. OpenSSL
    accepts lists that fail only here, e.g. `tls-groups brainpoolP256r1` (no TLS 1.3 group, so
    OpenSSL refuses to start). (A tls-version-max below tls-version-min never gets here: the
    parser refuses it at its line, as 2.6 does, since compat49.) Run once before
    start (settings.check_key_material), not per handshake: it costs a key-share generation."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    _set_versions(ctx, s)
    restrict_algorithms(ctx, s)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return                                  # the ClientHello is written: something is offered
    except SSL.Error as e:
        reason = "; ".join(r[-1] for r in e.args[0] if isinstance(r, tuple)) if e.args and e.args[0] else str(e)
        directive = ("tls-groups" if "group" in reason
                     else ("tls-version-max" if s.tls_version_max else "tls-version-min") if "protocol" in reason
                     else "tls-ciphersuites" if s.tls_ciphersuites is not None and s.tls_cipher is None
                     else "tls-cipher")
        raise ConfigError(f"with the TLS versions, ciphers and groups configured, no handshake can start "
                          f"(OpenSSL: {reason})", directive=directive) from None


def negotiated_group(conn: SSL.Connection) -> str:
    """The key-exchange group a finished handshake used (e.g. X25519, X25519MLKEM768), "" if none.
    Through the bindings for the same reason as _set_groups: pyOpenSSL does not expose it."""
    name = _lib.SSL_get0_group_name(conn._ssl)  # noqa: SLF001
    return _ffi.string(name).decode() if name != _ffi.NULL else ""


def _load_certs(pem: bytes, directive: str) -> list[x509.Certificate]:
    """The PEM certificates of `directive`'s file (`cert`, `ca`); a file of another kind (a key, a
    CRL) is a ConfigError naming the directive, which check_key_material places on its line."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise ConfigError(f"cannot read a certificate from it (is it a certificate in PEM form?): {e}",
                          directive=directive) from None
    return certs


def own_chain(store: crypto.X509Store, leaf: x509.Certificate) -> list[crypto.X509]:
    """The certificates OpenSSL sends after ours when `cert` holds ours alone: the chain it builds
    from the CA store, as far as it goes (its auto-chain: the store's certificates included, the
    root too). Left to itself, OpenSSL builds it at every handshake by verifying our own
    certificate against the store (ssl_add_cert_chain: X509_verify_cert, a signature check of
    ~0.9 M instructions, between the server's TLS flight and our Finished, on the way to the first
    packet; OpenVPN's client does the same work). Built here once, the same way (X509_verify_cert
    on the same store, no untrusted certificates), it is configured as the extra chain and the
    same certificates go out without that work. Nothing about the peer is checked with it: it is
    what we send. When our certificate does not verify against the store (another CA, expired),
    this returns [] and OpenSSL builds its partial chain per handshake as before."""
    try:
        verified = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf)).get_verified_chain()
    except crypto.X509StoreContextError:
        return []
    return verified[1:]


def _set_versions(ctx: SSL.Context, s: TlsSettings) -> None:
    vmin = tls_version_min(s)
    if vmin not in _VERSIONS:
        raise ConfigError(f"unsupported tls-version-min {vmin}")
    ctx.set_min_proto_version(_VERSIONS[vmin])
    if s.tls_version_max:
        if s.tls_version_max not in _VERSIONS:
            raise ConfigError(f"unsupported tls-version-max {s.tls_version_max}")
        ctx.set_max_proto_version(_VERSIONS[s.tls_version_max])


_X509_V_ERR_EE_KEY_TOO_SMALL = 66      # OpenSSL's x509_vfy.h (not in pyOpenSSL's bindings)


def build_context(s: TlsSettings) -> SSL.Context:
    """Turn settings into an SSL.Context; raises ConfigError for unusable material."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    _set_versions(ctx, s)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)
    restrict_algorithms(ctx, s)
    # No TLS session resumption, as OpenVPN (SSL_SESS_CACHE_OFF): every key is a full handshake
    # anyway, and a server's cache would keep every client's session (and certificate) for 5 min.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if s.cert is not None:
        if s.key is None:
            raise ConfigError("certificate given without a key", directive="cert")
        chain = _load_certs(s.cert, "cert")
        if not chain:
            raise ConfigError("no certificate found in it", directive="cert")
        try:
            key = serialization.load_pem_private_key(s.key, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"cannot read a private key from it (is it a private key in PEM form?): {e}",
                              directive="key") from None
        try:
            ctx.use_certificate(chain[0])
            ctx.use_privatekey(key)
            for extra in chain[1:]:
                ctx.add_extra_chain_cert(extra)
            ctx.check_privatekey()
        except SSL.Error as e:
            weak = "too small" in str(e) or "too weak" in str(e)
            if weak and s.tls_cipher is not None and "@SECLEVEL" in s.tls_cipher.upper():
                # Not a mismatch: the security level tls-cipher raised refuses this certificate.
                raise ConfigError(f"the certificate or its key is too weak for the security level set here ({e})",
                                  directive="tls-cipher") from None
            if weak:
                # The profile's level (or, without one, OpenSSL's default 2 where OpenVPN sets 1).
                raise ConfigError(f"the certificate or its key is too weak for this TLS security level ({e}); "
                                  + (f"tls-cert-profile {s.cert_profile} is level {CERT_PROFILE_LEVEL[s.cert_profile]}"
                                     if s.cert_profile else "without tls-cert-profile this is `preferred` (level 2); "
                                     "OpenVPN's default, `tls-cert-profile legacy`, accepts RSA keys of 1024 bits"),
                                  directive="tls-cert-profile" if s.cert_profile else "cert") from None
            raise ConfigError(f"this key is not the one of the certificate `cert` names ({e})",
                              directive="key") from None
    if s.ca is not None:
        store = ctx.get_cert_store()
        for c in _load_certs(s.ca, "ca"):
            store.add_cert(crypto.X509.from_cryptography(c))
        if s.cert is not None and len(chain) == 1:
            for c in own_chain(store, chain[0]):
                ctx.add_extra_chain_cert(c.to_cryptography())   # pyOpenSSL's X509 here is deprecated
    if s.capath is not None:
        _add_capath(ctx.get_cert_store(), s.capath)
    if s.ca is None and s.capath is None and not s.peer_fingerprints:
        raise ConfigError("need ca or peer-fingerprint to verify the peer")
    mode = SSL.VERIFY_PEER
    if s.is_server:
        if s.verify_client_cert == "none":
            mode = SSL.VERIFY_NONE
        elif s.verify_client_cert == "require":
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    fingerprint_only = s.ca is None and s.capath is None

    if s.capath is not None:
        ctx.set_verify(mode, _capath_verdict(s.capath_warn))
    elif fingerprint_only:
        def accept_any(conn, cert, errno, depth, ok):  # noqa: ANN001 - pyOpenSSL callback signature
            # With only peer-fingerprint configured, the leaf is checked after the handshake
            # instead -- but not its key's strength: the security level (tls-cert-profile, a
            # tls-cipher @SECLEVEL) still bounds the pinned key, or `preferred` took a pinned
            # 1024-bit RSA key. OpenVPN 2.6 ignores this error too; a directive that says 2048
            # bits is not ignored here. (The made-up chain above the leaf stays unchecked.)
            return not (depth == 0 and errno == _X509_V_ERR_EE_KEY_TOO_SMALL)
        ctx.set_verify(mode, accept_any)
    else:
        # OpenSSL's own chain verification, with no Python callback: pyOpenSSL's callback
        # wrapper builds an X509 object per certificate per handshake, a measurable share of a
        # server's handshake CPU (lab/capacity.py), for a callback that only returned `ok`.
        ctx.set_verify(mode, None)
    # Free each connection's 2 x 17 KB record buffers while idle (every established client keeps
    # its TLS object for control messages): RSS per idle client, not speed, is what counts here.
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return ctx


# The contexts context_for made, by the settings they were made from, oldest first. A process
# runs one profile (a client's, a server's); a few entries let tests and tools hold both ends.
_contexts: dict[tuple, SSL.Context] = {}
_CONTEXTS_KEPT = 4


def _context_inputs(s: TlsSettings) -> tuple:
    """Every setting but `crl` (a checker object, new at each settings build, that build_context
    never reads; the CRL is checked in Python after the handshake), lists as tuples: equal
    inputs make an equal context."""
    values = (getattr(s, f.name) for f in fields(s) if f.name != "crl")   # fields(): no __dict__ needed
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


def context_for(s: TlsSettings) -> SSL.Context:
    """build_context's context for these settings, made once per process while they stay the
    same. Why: a client's reconnect (SIGUSR1, ping-restart, the next remote) made a new Session
    and with it a new context from the same PEM bytes (read once, at start: our client does not
    re-read its profile): the key and certificates parsed again and our chain verified again,
    ~0.7 of the ~3.5 ms of CPU a reconnect costs the client, the same for each p2p tls-server
    takeover candidate; start-up's check (settings.check_key_material) made one more, which the
    first session or the server now takes. Sharing one SSL_CTX among sessions is what OpenSSL
    is made for (the server always has); nothing is resumed through it (session cache off, no
    session ever set on a connection: every connection is a full handshake). Not shared with
    `capath`: OpenSSL's directory lookup keeps the CAs and CRLs it loaded in the
    store, so a new context per connection is what lets a reconnect see a CRL replaced in the
    directory, as OpenVPN 2.6's restart does; and its missing-CRL warnings count per context."""
    if s.capath is not None:
        return build_context(s)
    inputs = _context_inputs(s)
    ctx = _contexts.get(inputs)
    if ctx is None:
        ctx = build_context(s)
        _contexts[inputs] = ctx
        # list() and pop(key, None): safe if sessions are made on several threads (tests, tools)
        for old in list(_contexts)[:-_CONTEXTS_KEPT]:
            _contexts.pop(old, None)
    return ctx


# OpenSSL's X509_V_ERR_UNABLE_TO_GET_CRL: with capath's CRL checks, no CRL for a certificate's issuer.
X509_V_ERR_UNABLE_TO_GET_CRL = 3


def _add_capath(store: crypto.X509Store, capath: str) -> None:
    """As OpenVPN 2.6 (ssl_openssl.c tls_ctx_load_ca): OpenSSL's hashed-directory lookup on the
    store (HASH.N CA files, HASH.rN CRLs, found when a chain needs them, so files c_rehash adds
    while we run count from the next handshake), and CRL checks for every certificate of the
    chain -- for the `ca` file's CAs too, as there."""
    try:
        store.load_locations(None, capath)
    except crypto.Error as e:
        raise ConfigError(f"cannot add a lookup at capath {capath}: {e}", directive="capath") from None
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL)


_CRL_MISSING_MAX = 64     # subjects warned of, per context


def _capath_verdict(warn: Callable[[str], None] | None):
    """The verify callback under capath: OpenSSL's verdict on each certificate, but a missing CRL
    passes: OpenVPN 2.6's verify_callback logs "VERIFY WARNING ... unable to get certificate CRL"
    and goes on; a revoked certificate, a CRL badly signed or out of date refuse the peer, as
    there. (Only with capath: a Python callback costs each handshake an object per certificate.)
    The warning goes to `warn` once per certificate subject, for at most 64 of them: peers
    handshaking again and again (or with made-up names) cannot fill the log. And only once the
    chain's signatures verified (OpenSSL's last call, at depth 0 with ok): it checks revocation
    first, so a peer with no key of ours, its made-up leaf naming our CA as issuer, had its own
    text logged as a subject and could use up the 64 before a real client's missing CRL was."""
    noted: set[str] = set()
    pending: list = []          # [conn, (depth, subject), ...]: the verification under way

    def verdict(conn, cert, errno, depth, ok):  # noqa: ANN001 - pyOpenSSL callback signature
        if pending and pending[0] is not conn:
            pending.clear()     # another connection's verification, ended before its leaf
        if ok:
            if depth == 0 and pending and warn is not None:
                for d, subject in pending[1:]:
                    if subject not in noted and len(noted) < _CRL_MISSING_MAX:
                        noted.add(subject)
                        warn(f"VERIFY WARNING: depth={d}, unable to get certificate CRL: {subject} (capath "
                             "holds no CRL of its issuer: accepted, as OpenVPN 2.6)")
                pending.clear()
            return True
        if errno != X509_V_ERR_UNABLE_TO_GET_CRL:
            pending.clear()
            return False
        if warn is not None and len(noted) < _CRL_MISSING_MAX and len(pending) <= MAX_CERT_DEPTH:
            try:
                subject = openvpn_name(cert.to_cryptography().subject)
            except Exception:  # noqa: BLE001 - a name we cannot print: the verdict stands all the same
                subject = "(a subject that cannot be shown)"
            if subject not in noted:
                if not pending:
                    pending.append(conn)
                pending.append((depth, subject))
        return True
    return verdict


def _capath_recheck(capath: str, cas: list):
    """check(cert, chain) -> None, raising RemoteProtocolError as a handshake under capath
    would refuse: OpenSSL's X509StoreContext has no callback to pass a missing CRL, so each
    certificate of the verified chain is checked alone against its issuer's CRL (CRL_CHECK,
    its issuers given), and only UNABLE_TO_GET_CRL is let through. Built once per reload."""
    store = crypto.X509Store()
    for c in cas:                           # the `ca` file's CAs, checked against capath's CRLs too
        store.add_cert(c)
    store.load_locations(None, capath)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)

    def check(verified: list) -> None:
        for i, c in enumerate(verified):
            try:
                crypto.X509StoreContext(store, c, verified[i + 1:]).verify_certificate()
            except crypto.X509StoreContextError as e:
                if e.errors and e.errors[0] == X509_V_ERR_UNABLE_TO_GET_CRL:
                    continue
                raise RemoteProtocolError(f"VERIFY ERROR: depth={i}, {e}") from None
    return check


def peer_rechecker(s: TlsSettings, refresh_crl: bool = True):
    """check(cert, chain_of) raising RemoteProtocolError when settings `s` (a reload's) would not
    let a connected peer in: its chain against `s`'s CA store (OpenSSL's verification, as at the
    handshake; none with peer-fingerprint alone), then every check of _check_peer. A reload keeps
    the clients that pass; OpenVPN's SIGHUP has every client verified anew, so one the new
    config refuses must not keep its tunnel. The store is built once, for all clients;
    `chain_of()` (the verified chain above cert) is asked for only when a CA or CRL needs it.
    check returns the SHA-256 hashes of the chain the new store verified, depth 0 first (as
    verified_chain_digests), or None without a CA store: the chain the peer's renegotiations
    are compared with from then on (ControlChannel.chain_verified_again). `refresh_crl=False`
    (a reload's worker thread): the CRL reading installed is used as it is (CrlChecker.revoked).
    A check is not shared between threads: it holds an SSL context it changes per call."""
    store = None
    if s.ca is not None or s.capath is not None:
        store = crypto.X509Store()
        cas = [crypto.X509.from_cryptography(c) for c in _load_certs(s.ca, "ca")] if s.ca is not None else []
        for c in cas:
            store.add_cert(c)
        if s.capath is not None:
            store.load_locations(None, s.capath)        # the chain; its CRLs: crl_check below
    crl_check = _capath_recheck(s.capath, cas) if s.capath is not None else None
    # The security level new handshakes run at (tls-cipher's @SECLEVEL, tls-cert-profile,
    # OpenSSL's default): the store above verifies with none, so a reload that raised it kept
    # an RSA-2048 client under @SECLEVEL=3 until its next renegotiation.
    level_ctx = SSL.Context(SSL.TLS_METHOD)
    restrict_algorithms(level_ctx, s)

    def check(cert: x509.Certificate | None, chain_of) -> tuple[bytes, ...] | None:
        if cert is not None:
            _within_level(level_ctx, cert, pinned=store is None)
        chain = chain_of() if cert is not None and (store is not None or s.crl is not None or s.verify_hash) else []
        digests = None
        if cert is not None and store is not None:
            try:
                verified = crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert),
                                                   [crypto.X509.from_cryptography(c) for c in chain]).get_verified_chain()
            except crypto.X509StoreContextError as e:
                raise RemoteProtocolError(f"VERIFY ERROR: {e}") from None
            if crl_check is not None:
                crl_check(verified)
            digests = tuple(hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, c)).digest()
                            for c in verified[:MAX_CERT_DEPTH])
            # The checks read the chain the new store verified, as OpenVPN reads it when the peer
            # comes back after SIGHUP: verify-hash's depth 1 (and the CRL's issuers) may be a
            # renewed CA certificate there, not the one of the handshake (the old store's).
            chain = [c.to_cryptography() for c in verified[1:]]
        _check_peer(s, cert, chain, refresh_crl)
        return digests
    return check


def _within_level(ctx: SSL.Context, cert: x509.Certificate, pinned: bool) -> None:
    """RemoteProtocolError when the peer's certificate is below `ctx`'s security level, as
    OpenSSL judges its own (SSL_CTX_use_certificate: the key's strength, and the signature's
    digest unless self-signed). `pinned` (peer-fingerprint, no CA): the key only, as the
    handshake checks it (build_context's accept_any), the signer being nobody we know."""
    try:
        ctx.use_certificate(cert)
    except SSL.Error as e:
        text = str(e)
        if "key too small" in text or (not pinned and "md too weak" in text):
            raise RemoteProtocolError(f"VERIFY ERROR: the peer's certificate is below the TLS security level "
                                      f"configured now ({text})") from None


def _check_peer(s: TlsSettings, cert: x509.Certificate | None, chain: list | None = None,
                refresh_crl: bool = True) -> str | None:
    """Every check of the peer's certificate; returns its common_name (None: no certificate,
    allowed), which the caller keeps so the name is read from the certificate once."""
    if cert is None:
        if s.is_server and s.verify_client_cert != "require":
            return None
        raise RemoteProtocolError("peer sent no certificate")
    if s.peer_fingerprints:
        # First: with peer-fingerprint and no CA, anyone's made-up chain got this far; a CRL
        # check of it (a signature check over the whole CRL per made-up issuer key, ~34 ms at
        # 100,000 entries) must cost nobody but a peer we know.
        fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        if fp not in s.peer_fingerprints:
            raise RemoteProtocolError("peer certificate fingerprint does not match peer-fingerprint")
    if s.verify_hash and chain:
        # As OpenVPN 2.6 (ssl_verify.c verify_cert at verify_hash_depth 1): the certificate that
        # signed the peer's in the verified chain; a chain without one (a peer certificate the
        # CA file holds itself) has nothing to compare there either.
        fp = chain[0].fingerprint(hashes.SHA1() if s.verify_hash_algo == "SHA1" else hashes.SHA256())  # noqa: S303
        if fp not in s.verify_hash:
            raise RemoteProtocolError("TLS Error: --tls-verify/--peer-fingerprint certificate hash verification "
                                      f"failed. (got certificate fingerprint: {fp.hex(':').upper()})")
    if s.crl is not None:
        why = s.crl.revoked(cert, chain, refresh=refresh_crl)
        if why is not None:
            raise RemoteProtocolError(f"VERIFY ERROR: {why}")
    if s.remote_cert_tls:
        want = ExtendedKeyUsageOID.SERVER_AUTH if s.remote_cert_tls == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise RemoteProtocolError(f"remote-cert-tls {s.remote_cert_tls}: peer certificate has no extendedKeyUsage") from None
        if want not in eku:
            raise RemoteProtocolError(f"remote-cert-tls {s.remote_cert_tls}: peer certificate lacks that extendedKeyUsage")
        try:
            cert.extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            raise RemoteProtocolError(f"remote-cert-tls {s.remote_cert_tls}: peer certificate has no keyUsage") from None
    if s.ns_cert_type is not None and not ns_cert_type_ok(cert, s.ns_cert_type):
        raise RemoteProtocolError(f"ns-cert-type {s.ns_cert_type}: peer certificate is not fit for a TLS "
                                  f"{s.ns_cert_type} (its extendedKeyUsage, keyUsage or nsCertType say otherwise)")
    if s.remote_cert_ku is not None:
        _check_ku(cert, s.remote_cert_ku)
    if s.remote_cert_eku is not None:
        _check_eku(cert, s.remote_cert_eku)
    cn = peer_name(s, cert)
    if cn is None:
        fields = " ".join(s.username_field) or "CN"
        raise RemoteProtocolError(f"VERIFY ERROR: could not extract {fields} from X509 subject string "
                                  f"({openvpn_subject(cert)[:256]!r}) -- the last {fields} must exist, have at "
                                  f"most {CN_MAX_BYTES} bytes and no NUL")
    if s.verify_x509_name:
        name, kind = s.verify_x509_name
        if kind == "subject":
            ok = openvpn_subject(cert) == name       # OpenVPN's form only: never RFC 4514's (CN=a,O=x)
        elif kind == "name":
            ok = cn == name
        else:  # name-prefix
            ok = cn.startswith(name)
        if not ok:
            raise RemoteProtocolError(f"verify-x509-name {name} {kind}: peer certificate does not match")
    return cn


# OpenSSL's long names (OBJ_obj2txt without numeric form) for the EKUs OpenVPN users write, so
# `remote-cert-eku "TLS Web Server Authentication"` works as with OpenVPN; any EKU also matches
# by its dotted OID.
_EKU_NAMES = {
    "TLS Web Server Authentication": ExtendedKeyUsageOID.SERVER_AUTH,
    "TLS Web Client Authentication": ExtendedKeyUsageOID.CLIENT_AUTH,
    "Code Signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "E-mail Protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "Time Stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSP Signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "Any Extended Key Usage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
# keyUsage bits in OpenVPN's numbering (ssl_verify_openssl.c x509_verify_cert_ku): bit i of the
# ASN.1 BIT STRING is 1 << (7 - i), so digitalSignature = 0x80, keyEncipherment = 0x20, ...
_KU_BITS = (("digital_signature", 0x80), ("content_commitment", 0x40), ("key_encipherment", 0x20),
            ("data_encipherment", 0x10), ("key_agreement", 0x08), ("key_cert_sign", 0x04),
            ("crl_sign", 0x02))


# OpenSSL's purpose check (crypto/x509/v3_purp.c) in the terms ns-cert-type uses: an extension
# present must allow the use; one absent does not refuse it.
_NS_CERT_TYPE = x509.ObjectIdentifier("2.16.840.1.113730.1.1")
_SGC = (x509.ObjectIdentifier("2.16.840.1.113730.4.1"), x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"))
_NS_SSL = {"client": 0x80, "server": 0x40}


def ns_cert_type_ok(cert: x509.Certificate, usage: str) -> bool:
    """ns-cert-type, as OpenVPN 2.6 checks it (ssl_verify_openssl.c x509_verify_ns_cert_type):
    X509_check_purpose for an SSL server/client -- an extendedKeyUsage must list serverAuth (or
    SGC) / clientAuth, a keyUsage must allow digitalSignature, keyEncipherment or keyAgreement
    (a client: digitalSignature or keyAgreement), an nsCertType must have the SSL server/client
    bit -- and if that fails, an nsCertType with the bit alone passes. Unreadable extensions
    fail, as OpenSSL's check does."""
    try:
        ext = cert.extensions
        eku = next((e.value for e in ext if isinstance(e.value, x509.ExtendedKeyUsage)), None)
        ku = next((e.value for e in ext if isinstance(e.value, x509.KeyUsage)), None)
        ns = next((e.value for e in ext if e.oid == _NS_CERT_TYPE), None)
    except ValueError:
        return False
    ns_bits = None
    if ns is not None:
        der = getattr(ns, "value", b"")
        # BIT STRING: tag 3, a one-byte length, the unused-bit count, then the bits.
        ns_bits = der[3] if len(der) >= 4 and der[0] == 0x03 and der[1] < 0x80 and der[1] >= 2 else 0
    bit = _NS_SSL[usage]
    purpose = True
    if eku is not None:
        want = (ExtendedKeyUsageOID.SERVER_AUTH, *_SGC) if usage == "server" else (ExtendedKeyUsageOID.CLIENT_AUTH,)
        purpose = any(u in want for u in eku)
    if purpose and ku is not None:
        ok = ku.digital_signature or ku.key_agreement or (usage == "server" and ku.key_encipherment)
        purpose = bool(ok)
    if purpose and ns_bits is not None:
        purpose = bool(ns_bits & bit)
    return purpose or (ns_bits is not None and bool(ns_bits & bit))


def _check_eku(cert: x509.Certificate, want: str) -> None:
    """remote-cert-eku, as OpenVPN: the peer's extendedKeyUsage must list `want` (name or OID)."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise RemoteProtocolError(f"remote-cert-eku {want}: peer certificate has no extendedKeyUsage") from None
    oid = _EKU_NAMES.get(want)
    if not any(u == oid or u.dotted_string == want for u in eku):
        raise RemoteProtocolError(f"remote-cert-eku {want}: peer certificate lacks that extendedKeyUsage")


def _check_ku(cert: x509.Certificate, want: list[int]) -> None:
    """remote-cert-ku, as OpenVPN: a keyUsage must exist; with values, it must include all bits
    of at least one of them."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise RemoteProtocolError("remote-cert-ku: peer certificate has no keyUsage") from None
    if not want:
        return
    have = sum(bit for name, bit in _KU_BITS if getattr(ku, name))
    if ku.key_agreement and ku.encipher_only:   # OpenVPN reads bits 0..7 only: decipherOnly never counts
        have |= 0x01
    if not any(v and have & v == v for v in want):
        raise RemoteProtocolError(f"remote-cert-ku: peer certificate key usage {have:02x} is none of "
                                  + " ".join(f"{v:02x}" for v in want))


# OpenSSL's short names (OBJ_nid2sn) of the attributes cryptography knows: OpenVPN's subject
# string uses them (XN_FLAG_FN_SN); any other attribute prints as its dotted OID.
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
    "2.5.4.43": "initials", "2.5.4.44": "generationQualifier", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress", "2.5.4.17": "postalCode",
    "2.5.4.97": "organizationIdentifier", "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC", "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName", "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST", "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
    "1.2.643.3.131.1.1": "INN", "1.2.643.100.1": "OGRN", "1.2.643.100.3": "SNILS",
}
_SUBJECT_ESCAPES = {c: f"\\{c:02X}" for c in (*range(0x20), 0x7F)} | {ord("\\"): "\\\\"}


def openvpn_subject(cert: x509.Certificate) -> str:
    """The subject as OpenVPN 2.6 prints it (X509_NAME_print_ex with XN_FLAG_SEP_CPLUS_SPC,
    XN_FLAG_FN_SN, UTF-8, ESC_CTRL): `C=NL, O=Org + OU=Dept, CN=name` -- RDNs in certificate
    order joined by `, `, the attributes of one multi-valued RDN by ` + `, OpenSSL's short
    names, control characters as `\\XX` and a backslash doubled. What verify_cert then does
    to the string changes nothing in it: string_mod_remap_name finds no control character left,
    and string_replace_leading (a leading '-' made '_') no '-' at the start, which is always a
    field's short name or dotted OID. `verify-x509-name S subject` compares with this string,
    and only with it (never RFC 4514's `CN=a,O=x`, which OpenVPN does not know), and scripts
    get it (tls_id_N): where OpenVPN tells two subjects apart (a multi-valued RDN, or two RDNs),
    so must this string."""
    return openvpn_name(dername.subject(cert))


def openvpn_name(name: x509.Name) -> str:
    """A distinguished name in openvpn_subject's format (a CRL's issuer, for the log)."""
    return ", ".join(" + ".join(f"{_SHORT_NAMES.get(a.oid.dotted_string, a.oid.dotted_string)}="
                                f"{openssl_text(a).translate(_SUBJECT_ESCAPES)}" for a in rdn)
                     for rdn in name.rdns)


# The string types whose bytes OpenSSL reads one per character, as Latin-1 (ASN1_STRING_to_UTF8,
# and X509_NAME_print_ex's UTF-8 conversion), where cryptography reads them as UTF-8. NumericString
# too: OpenSSL takes any bytes in one (the CA's check of the charset aside), and one holding the
# UTF-8 of `café` was `café` here -- the UTF8String `café` of another certificate -- and `cafÃ©` there.
ONE_BYTE_STRING_TYPES = frozenset({_ASN1Type.PrintableString, _ASN1Type.T61String, _ASN1Type.IA5String,
                                   _ASN1Type.VisibleString, _ASN1Type.NumericString})


def openssl_text(a: x509.NameAttribute) -> str:
    """An attribute's value as OpenSSL, so OpenVPN, reads it. A T61String or IA5String holding
    the UTF-8 bytes of `café` (what `openssl req` without -utf8 writes) is `cafÃ©` to OpenVPN:
    read as cryptography reads it, it was `café` here -- the same common name, ccd file, pool
    address and verify-x509-name match as the UTF8String `café` another certificate holds."""
    value = a.value
    if not isinstance(value, str):
        return str(value)
    if a._type in ONE_BYTE_STRING_TYPES and not value.isascii():    # noqa: SLF001 - the ASN.1 type as read
        # Its bytes: cryptography's UTF-8 reading, or dername's (bytes that are not UTF-8 kept).
        return value.encode("utf-8", ERRORS).decode("latin-1")
    return value


def subject_env(cert: x509.Certificate, depth: int = 0) -> dict[str, str]:
    """OpenVPN 2.6's `X509_<depth>_<field>` script variables (x509_setenv): one per subject
    attribute in certificate order, a repeated field numbered on (`X509_0_CN` is the FIRST CN,
    `X509_0_CN_1` the next), control characters made `_`, a value ending at a NUL (OpenVPN
    handles it as a C string). Note that `X509_0_CN` is therefore not the peer's name
    (`common_name`, the last CN) when there are several: scripts see what they see under
    OpenVPN. Attributes without an OpenSSL short name are left out, as there."""
    env: dict[str, str] = {}
    seen: dict[str, int] = {}       # field -> how many so far: linear in the attributes (a search
    for a in dername.subject(cert):  # for the next free number was quadratic: 8 s for 7,000 OUs)
        short = _SHORT_NAMES.get(a.oid.dotted_string)
        if short is None or not isinstance(a.value, str):
            continue
        n = seen.get(short, 0)
        seen[short] = n + 1
        env[f"X509_{depth}_{short}_{n}" if n else f"X509_{depth}_{short}"] = remap_name(
            openssl_text(a).partition("\0")[0])
    return env


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def cert_env(cert: x509.Certificate, depth: int, track: tuple[str, ...] = ()) -> dict[str, str]:
    """The script variables OpenVPN 2.6 sets for the certificate at `depth` of the verified chain
    (verify_cert_set_env: 0 the peer's, 1 its issuer, ...), in the order its >CLIENT:ENV lines
    show them: serial (hex bytes, decimal), SHA-256 and SHA-1 fingerprints, the subject string,
    then the X509_<depth>_* fields, last attribute first (OpenVPN sets them in certificate order
    and its environment lists the newest first). With x509-track lines (`track`), the
    X509_<depth>_* variables are those lines' only (x509track.py), as OpenVPN's."""
    serial = cert.serial_number
    h = f"{serial:x}"
    der = cert.public_bytes(serialization.Encoding.DER)
    env = {f"tls_serial_hex_{depth}": _colon_hex(bytes.fromhex(("0" + h) if len(h) % 2 else h)),
           f"tls_serial_{depth}": str(serial),
           f"tls_digest_sha256_{depth}": _colon_hex(hashlib.sha256(der).digest()),
           f"tls_digest_{depth}": _colon_hex(hashlib.sha1(der).digest()),   # noqa: S324 - OpenVPN's variable
           f"tls_id_{depth}": openvpn_subject(cert)}
    if track:
        from .x509track import track_env
        env.update(track_env(track, cert, depth))
    else:
        env.update(reversed(subject_env(cert, depth).items()))
    return env


# OpenVPN's TLS_USERNAME_LEN: a longer common name (in UTF-8 bytes) is no name there, and the
# peer's certificate is refused.
CN_MAX_BYTES = 64


def common_name(cert: x509.Certificate | None) -> str | None:
    """The peer's identity, read as OpenVPN 2.6 reads it (extract_x509_field_ssl): the LAST
    commonName of the subject, control characters made `_` (remap_name). None, and the
    certificate refused (_check_peer), when there is no CN or it is longer than OpenVPN's limit,
    as OpenVPN refuses it; and when it holds a NUL: OpenVPN's name ends there (`admin\\0x` is
    `admin`), a name the CA never meant to give.

    One value for everything, from verify-x509-name name/name-prefix to the ccd file, scripts,
    status, management and the CN lock on renegotiation: a subject `O=x, CN=alice, CN=admin`
    is `admin` everywhere, as with OpenVPN, so a CA that lets users add a CN of their choosing
    cannot make a certificate that is one name to a check and another to the identity."""
    return None if cert is None else name_common_name(dername.subject(cert))


def name_common_name(name: x509.Name) -> str | None:
    """common_name's reading of any distinguished name (a certificate's issuer, for a log line)."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return None
    value = openssl_text(cns[-1])
    if len(value.encode("utf-8", "surrogatepass")) > CN_MAX_BYTES or "\0" in value:
        return None
    return remap_name(value)


# ------------------------------------------------------------------ x509-username-field
# OpenVPN joins the fields' values in a 256-byte buffer (ssl_verify.c verify_cert); each value is
# at most TLS_USERNAME_LEN (CN_MAX_BYTES) bytes.
USERNAME_MAX_BYTES = 255
_NID_SUBJECT_ALT_NAME, _NID_ISSUER_ALT_NAME = 85, 86
_DOTTED = re.compile(r"\d+(\.\d+)+")


@functools.lru_cache(maxsize=256)
def field_key(name: str) -> int | str | None:
    """How OpenSSL names an attribute type (OBJ_txt2obj(name, 0): a short name, a long name or a
    dotted OID): its NID, or the dotted OID itself for one OpenSSL has no NID for; None for a
    name OpenSSL does not know (OpenVPN: "Invalid X509 attribute name")."""
    nid = _lib.OBJ_txt2nid(name.encode("ascii", "replace"))
    if nid:
        return nid
    return name if _DOTTED.fullmatch(name) else None


def username_field_problem(name: str) -> str | None:
    """Why `name` cannot be an x509-username-field (None: it can), as OpenVPN 2.6 checks it when
    it reads the option (`ext:` names) or at each handshake (attribute names; here before start)."""
    if name.startswith("ext:"):
        if field_key(name[4:]) not in (_NID_SUBJECT_ALT_NAME, _NID_ISSUER_ALT_NAME):
            return f"unsupported x509-username-field extension: {name} (only ext:subjectAltName and ext:issuerAltName)"
        return None
    if field_key(name) is None:
        return f"invalid X509 attribute name {name!r}"
    return None


def _subject_keyed(cert: x509.Certificate) -> list[tuple[int | str | None, x509.NameAttribute]]:
    """The subject's attributes with their field_key, worked out once per certificate: with
    15 fields and a (CA-signed) subject of 4,000 distinct OIDs, a scan per field took ~280 ms
    of the loop per handshake."""
    return [(field_key(a.oid.dotted_string), a) for a in dername.subject(cert)]


def _username_part(cert: x509.Certificate, name: str,
                   keyed: list[tuple[int | str | None, x509.NameAttribute]]) -> str | None:
    """One field's value, as OpenVPN 2.6's backend_x509_get_username reads it: `ext:...` the last
    e-mail address of that alternative-name extension; `serialNumber` the certificate's serial
    number as 0x<HEX>; any other the last attribute of that type in the subject. None when
    there is none, or it is longer than OpenVPN's limit, or (stricter than OpenVPN, as for the
    CN: common_name) it holds a NUL -- or, for an e-mail address, is longer than 64 bytes, which
    OpenVPN cuts to 64 bytes: two addresses alike in their first 64 bytes would be one name."""
    if name.startswith("ext:"):
        cls = (x509.SubjectAlternativeName if field_key(name[4:]) == _NID_SUBJECT_ALT_NAME
               else x509.IssuerAlternativeName)
        try:
            emails = cert.extensions.get_extension_for_class(cls).value.get_values_for_type(x509.RFC822Name)
        except x509.ExtensionNotFound:
            return None
        emails = [e for e in emails if "\0" not in e]
        value = emails[-1] if emails else None
    elif name == "serialNumber":
        n = abs(cert.serial_number)
        value = "0x" + n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big").hex().upper()
    else:
        want = field_key(name)
        found = [a for k, a in keyed if k == want]
        # A value that is no string (x500UniqueIdentifier's BIT STRING) names nobody: OpenVPN's
        # ASN1_STRING_to_UTF8 fails on it (openssl_text would give Python's text of its bytes).
        value = openssl_text(found[-1]) if found and isinstance(found[-1].value, str) else None
    if value is None or "\0" in value or len(value.encode("utf-8", "surrogatepass")) > CN_MAX_BYTES:
        return None
    return value


def peer_name(s: "TlsSettings", cert: x509.Certificate) -> str | None:
    """The peer's identity: its common_name, or with `x509-username-field` those fields' values
    joined with `_` (OpenVPN 2.6's verify_cert), control characters made `_`. None when a field
    has no value (the certificate is then refused, as OpenVPN refuses it). This name is the
    session's common name for everything: verify-x509-name name/name-prefix (as OpenVPN
    compares its common_name), client-config-dir, the pool, scripts, status, management."""
    if not s.username_field:
        return common_name(cert)
    parts = []
    keyed = _subject_keyed(cert)
    for f in s.username_field:
        v = _username_part(cert, f, keyed)
        if v is None:
            return None
        parts.append(v)
    joined = "_".join(parts)
    if len(joined.encode("utf-8", "surrogatepass")) > USERNAME_MAX_BYTES:
        return None
    return remap_name(joined)


# What cryptography raises for a certificate (or an extension of one) it cannot read. OpenSSL's
# parser is the more lenient: it takes a PrintableString holding `_`, `@` or `*`, a version
# field of 4, a default written out, which cryptography's DER parser refuses when the
# certificate is converted (to_cryptography) or an extension is first read. Such a peer
# certificate is the peer's error, as any other it sends: with peer-fingerprint and no CA
# anyone can present one (OpenSSL's chain check is waived there), and it must end that
# handshake only, not come out of Session.receive as our internal error.
# What cryptography raises for a certificate OpenSSL accepted but it cannot read.
CERT_UNREADABLE = (ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
_UNREADABLE = CERT_UNREADABLE

# A chain certificate cryptography cannot read (a fingerprint-pinned peer sends what it likes
# above its own certificate, or our own bug raising ValueError there): the scripts, status and
# the disconnect notification get depth 0 only, as designed -- but counted under this reason
# (the gateway's counters line; Faults.count_warn says it at WARNING), not silent
# (lab/reliability/fault_sweep.py found it quiet).
CHAIN_UNREADABLE = "peer certificate chain unreadable (depth 0 only)"
CHAIN_UNREADABLE_SAID = ("a certificate of the peer's chain could not be read: its scripts and status get the "
                         "peer's own certificate (depth 0) only")


def chain_or_depth0(read: Callable[[], list], counts: dict[str, int]) -> list:
    """`read()` (a peer_chain), or [] when it raises CERT_UNREADABLE, counted in `counts` (a
    session's stats). One place for the fallback, so every reader of a chain degrades -- and
    counts it -- the same way."""
    try:
        return read()
    except CERT_UNREADABLE:
        counts[CHAIN_UNREADABLE] = counts.get(CHAIN_UNREADABLE, 0) + 1
        return []


# OpenVPN's MAX_CERT_DEPTH: the depths of a chain whose certificates it remembers (cert_hash_remember).
MAX_CERT_DEPTH = 16
_SHA256 = _lib.EVP_get_digestbyname(b"sha256")


def verified_chain_digests(conn: SSL.Connection) -> tuple[bytes, ...]:
    """SHA-256 of each certificate of the chain OpenSSL verified, the peer's first (depth 0, 1,
    ... up to MAX_CERT_DEPTH), () when there is none: what OpenVPN 2.6's verify callback
    remembers at each depth (cert_hash_remember) and locks for the renegotiations
    (tls_lock_cert_hash_set, cert_hash_compare). Straight from OpenSSL's chain, no certificate
    object made: it runs once per handshake."""
    sk = _lib.SSL_get0_verified_chain(conn._ssl)  # noqa: SLF001
    if sk == _ffi.NULL:
        return ()
    buf = _ffi.new("unsigned char[]", 64)
    size = _ffi.new("unsigned int *")
    out = []
    for i in range(min(_lib.sk_X509_num(sk), MAX_CERT_DEPTH)):
        if _lib.X509_digest(_lib.sk_X509_value(sk, i), _SHA256, buf, size) != 1:
            _lib.ERR_clear_error()
            raise RemoteProtocolError("VERIFY ERROR: a certificate of the peer's chain cannot be hashed")
        out.append(_ffi.buffer(buf, size[0])[:])
    return tuple(out)


# The content types a TLS record header may start with: change_cipher_spec, alert, handshake,
# application_data (RFC 8446 5.1; heartbeat is not built into OpenSSL). See _count_records.
_RECORD_TYPES = frozenset((20, 21, 22, 23))


def _not_a_record(first: int) -> NoReturn:
    raise RemoteProtocolError(f"TLS input that is no TLS record (first byte 0x{first:02x}: an SSLv2-style "
                              "or foreign header)")


# OpenSSL's reason when a peer that must show a certificate sent none (a refusal of the peer's
# identity, as a failed verification: TlsEndpoint.identity_refused).
_NO_PEER_CERT = "did not return a certificate"

# What a peer refused by tls-verify is sent, through TLS, in place of our key-method message: a
# message OpenVPN's key_method_2_read refuses ("TLS ERROR: Unknown key_method/flags=0", a TLS
# error: the client restarts at once, the server drops that handshake). Why not a TLS alert: the
# command answers after OpenSSL finished the handshake, and OpenSSL offers no call that sends a
# fatal alert then; a close_notify, and a fatal alert too, read as "no data" to OpenVPN 2.6 on
# OpenSSL 3 (its bio_read takes SSL_read's 0 for "nothing yet"), so its client waits out
# hand-window, as it does against OpenVPN's own UDP server, whose alert is never sent (measured:
# 60 s; over TCP both close the connection). Five zero bytes: nothing of ours (no key material,
# no name), the same from every refusal.
REFUSAL_NOTICE = b"\0" * 5

# Bytes a peer may send while its handshake is held for tls-verify (its key-method message, a
# few records, takes ~1 KB; a client certificate chain is read before the hold).
HELD_INPUT_MAX = 65536


class TlsEndpoint:
    """One TLS session over memory BIOs (a new one per key id, as OpenVPN renegotiates)."""

    # tls-verify's hold (set per instance in __init__; here too for endpoints made without it)
    verify_chain: "tuple | None" = None
    _held_input = 0
    _held_under: Callable[..., tuple[bytes, ...] | None] | None = None

    def __init__(self, ctx: SSL.Context, settings: TlsSettings) -> None:
        self.settings = settings
        self.conn = SSL.Connection(ctx, None)
        if settings.is_server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        # The hot calls (feed, handshake, read, write, drain) go straight to OpenSSL through the
        # bindings pyOpenSSL itself uses: its wrappers cost a Python frame, a fresh 64 KB
        # buffer and, for "nothing more yet", a raised exception per call, ~10% of a client's
        # CPU per handshake. Errors still go through pyOpenSSL (_raise_ssl_error) for its
        # messages from OpenSSL's error queue.
        self._ssl = self.conn._ssl              # noqa: SLF001
        self._into = self.conn._into_ssl        # noqa: SLF001 - memory BIO: peer -> TLS
        self._from = self.conn._from_ssl        # noqa: SLF001 - memory BIO: TLS -> peer
        self.handshake_done = False
        self.peer_cert: x509.Certificate | None = None
        self.peer_cn: str | None = None     # common_name(peer_cert), read once by the checks
        self._chain_x509: list | None = None             # the verified chain (OpenSSL's objects)
        self._chain: list[x509.Certificate] | None = None
        # The verified chain's SHA-256 hashes, depth 0 first (verified_chain_digests): the
        # session locks them at its first handshake and refuses a renegotiation whose chain
        # differs at any depth, as OpenVPN 2.6 does.
        self._chain_digests: tuple[bytes, ...] | None = ()
        # Set by a reload while this handshake is under way (gateway/ops.py): the new config's
        # whole check (peer_rechecker: its CA store, then _check_peer), run at completion
        # instead of _check_peer alone. OpenSSL verified the chain with the CA store this TLS
        # session started with, and a CA the reload took out must not let it in.
        self.verify_again: Callable[..., tuple[bytes, ...] | None] | None = None   # peer_rechecker's check
        self._fed = False        # records arrived since the last read of application data
        # tls-verify (settings.hold_for_verdict): OpenSSL finished and our checks passed; the
        # chain waits for the command's verdict. Meanwhile the peer's certificate is nobody's
        # identity (peer_cert None: no status line, script or CN lock sees it) and what OpenSSL
        # wrote (a TLS 1.2 server's Finished, a client's Finished) stays in the memory BIO.
        self.verify_chain: tuple[x509.Certificate, ...] | None = None
        self.verdict_asked = False              # the session has emitted its TlsVerifyRequested
        self._verdict: bool | None = None
        self._tell = True                       # a refusal sends REFUSAL_NOTICE (give_verdict)
        self._held_cert: x509.Certificate | None = None
        self._held_input = 0                    # bytes fed while held
        self._held_under: Callable[..., tuple[bytes, ...] | None] | None = None   # verify_again when the hold began
        # The failure was about the peer's certificate (OpenSSL's verification, our checks, the
        # tls-verify hold, no certificate sent), not about the bytes that reached TLS: a
        # session never keeps a key whose handshake failed so (see Session._contain_tls_failure).
        self.identity_refused = False
        # Where feed() is in the peer's record stream (a record may be cut over control packets):
        self._rec_head = b""     # the start of a record header cut off at the end of a feed
        self._rec_skip = 0       # bytes of the current record's body still to come

    @property
    def chain_digests(self) -> tuple[bytes, ...]:
        """The verified chain's SHA-256 hashes, depth 0 first (verified_chain_digests; the leaf
        at least, should OpenSSL keep no chain), () before a peer certificate passed the checks.
        Worked out on first read, not in the checks: a server locks them at the first
        handshake, but a client never compares them (control.py), and its checks run between
        the server's flight and our Finished. OpenSSL keeps the verified chain with the
        connection, so the hashes are the same whenever they are read."""
        if self._chain_digests is None:
            cert = self.peer_cert if self.peer_cert is not None else self._held_cert
            self._chain_digests = verified_chain_digests(self.conn) or (
                (hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest(),) if cert is not None else ())
        return self._chain_digests

    @chain_digests.setter
    def chain_digests(self, value: tuple[bytes, ...]) -> None:
        self._chain_digests = value

    @property
    def peer_chain(self) -> list[x509.Certificate]:
        """The verified chain above peer_cert, made on first use (a CRL check)."""
        if self._chain is None:
            if self._chain_x509 is None and self.handshake_done:
                self._keep_chain()
            if not self._chain_x509:
                return []
            self._chain = [c for c in (x.to_cryptography() for x in self._chain_x509) if c != self.peer_cert]
        return self._chain

    def prime(self) -> bool:
        """Client: write the ClientHello into the memory BIO ahead of time (the next pump() sends
        it). False if TLS refused to start; the endpoint is then not to be used."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return True
        except SSL.Error:
            return False
        return False

    def _keep_chain(self) -> None:
        """The chain OpenSSL verified, built from our `ca` as needed, not the one the peer chose
        to send: a peer that leaves out its (revoked) sub-CA must not keep it from the CRL check
        (OpenVPN checks the verified chain). Taken at the end of the handshake only with
        crl-verify; otherwise at first use (a reload that adds a CRL revoking a sub-CA of
        connected clients, ops.py): OpenSSL keeps it with the connection, which lives as long as
        this endpoint."""
        self._chain_x509 = self.conn.get_verified_chain() or self.conn.get_peer_cert_chain() or []

    def _chain_now(self) -> list[x509.Certificate]:
        """peer_chain while the handshake is being completed (peer_chain itself waits for its end)."""
        self._keep_chain()
        return self.peer_chain

    def _verify_peer(self) -> None:
        """Our checks of the peer's certificate once OpenSSL finished the handshake (peer_cert set
        here). handshake_done is set only after they passed: when they raised anything else than
        RemoteProtocolError (our bug), the caller dropped the packet and went on, and the next
        pump read the peer's messages as those of a checked peer -- a stranger's certificate
        that cryptography could not read got a tunnel that way. Now every pump until the end
        does the checks again and fails as they do."""
        self._chain_x509 = self._chain = None
        with self._nobody_if_refused():
            peer = self.conn.get_peer_certificate()
            self.peer_cert = peer.to_cryptography() if peer is not None else None
            if self.peer_cert is not None:
                self._chain_digests = None          # worked out when first read (chain_digests)
            if self.verify_again is not None:
                # The chain the new store verified is the one locked (a renewed CA certificate
                # there is not the peer's change at its next renegotiation).
                self.chain_digests = self.verify_again(self.peer_cert, self._chain_now) or self.chain_digests
                self.peer_cn = peer_name(self.settings, self.peer_cert)
                return
            chain = None
            if self.settings.crl is not None or self.settings.verify_hash:
                self._keep_chain()
                chain = self.peer_chain
            self.peer_cn = _check_peer(self.settings, self.peer_cert, chain)

    @contextlib.contextmanager
    def _nobody_if_refused(self):
        """Around the checks of peer_cert: whatever they raise leaves no identity behind (a
        refused certificate is nobody's), and one cryptography cannot read is the peer's fault."""
        try:
            yield
        except _UNREADABLE as e:
            self.peer_cert = None
            self.identity_refused = True
            raise RemoteProtocolError(f"VERIFY ERROR: peer certificate cannot be read: {e}") from None
        except BaseException:
            self.peer_cert = None
            self.identity_refused = True
            raise

    def _hold(self) -> None:
        """tls-verify: keep the verified chain (depth 0 first) for the command, the certificate
        out of sight until the verdict. A chain cryptography cannot read is refused here."""
        try:
            chain = (self.peer_cert, *self._chain_now())
        except _UNREADABLE as e:
            self.peer_cert = None
            self.identity_refused = True
            raise RemoteProtocolError(f"VERIFY ERROR: a certificate of the peer's chain cannot be read: {e}") from None
        self._held_cert, self.peer_cert = self.peer_cert, None
        self.verify_chain = chain
        self._held_under = self.verify_again      # the checks just passed (see _take_verdict)

    @property
    def verdict_awaited(self) -> bool:
        """tls-verify was asked about verify_chain (TlsVerifyRequested) and has not answered."""
        return self.verify_chain is not None and self.verdict_asked and self._verdict is None

    def give_verdict(self, ok: bool, tell: bool = True) -> None:
        """The tls-verify verdict on verify_chain; the next pump() goes on or fails. `tell=False`:
        a refusal that sends the peer nothing (one refused for lack of room: told at once, it
        would come back at once into the same full queue, a full handshake each time)."""
        if self.verify_chain is not None and self._verdict is None:
            self._verdict = bool(ok)
            self._tell = bool(tell)

    def _take_verdict(self) -> None:
        ok, self.verify_chain = self._verdict, None
        if not ok:
            self._held_cert = None
            # As OpenVPN's verify callback failing: the handshake fails (no AUTH_FAILED), but the
            # peer is told at once (REFUSAL_NOTICE) where OpenVPN's UDP server says nothing.
            raise VerifyRefused("VERIFY SCRIPT ERROR: tls-verify refused the peer's certificate chain",
                                self._refusal_notice() if self._tell else b"")
        self.peer_cert, self._held_cert = self._held_cert, None
        if self.verify_again is not self._held_under:
            # A reload came while the command ran: the checks above were the old config's. The
            # held chain is checked under the new one (CA store, CRL, names) as a kept client's
            # is, or a command's "yes" carried in a certificate the new config refuses.
            with self._nobody_if_refused():
                self.chain_digests = self.verify_again(self.peer_cert, self._chain_now) or self.chain_digests
                self.peer_cn = peer_name(self.settings, self.peer_cert)
        self.handshake_done = True
        self._fed = True                            # records that came in meanwhile are read now

    def _refusal_notice(self) -> bytes:
        """The TLS bytes that tell a refused peer: what OpenSSL wrote as the handshake ended and
        the hold kept (a TLS 1.2 server's Finished, TLS 1.3 session tickets -- of no use: no
        session is ever resumed here --, a client's Finished; the records before ours, which
        the peer must have to read it), then REFUSAL_NOTICE. Nothing the peer sent is read:
        its key-method message stays unread in the memory BIO. b"" if OpenSSL will not write."""
        held = self.drain()
        n = len(REFUSAL_NOTICE)
        if _lib.SSL_write(self._ssl, REFUSAL_NOTICE, n) != n:
            _lib.ERR_clear_error()
            return b""
        return held + self.drain()

    def _fail(self, r: int) -> NoReturn:
        """OpenSSL said no: pyOpenSSL turns its error queue into the exception (and message)."""
        try:
            self.conn._raise_ssl_error(self._ssl, r)       # noqa: SLF001
        except SSL.ZeroReturnError:
            raise RemoteProtocolError("peer closed the TLS session") from None
        except SSL.Error as e:
            # "certificate verify failed" alone does not say why; OpenSSL keeps the reason (an
            # expired certificate, an unknown CA, a key too weak for tls-cert-profile) apart.
            code = _lib.SSL_get_verify_result(self._ssl) if "verify failed" in str(e) else 0
            why = f" ({_ffi.string(_lib.X509_verify_cert_error_string(code)).decode()})" if code else ""
            if code or "verify failed" in str(e) or _NO_PEER_CERT in str(e):
                self.identity_refused = True
            raise RemoteProtocolError(f"TLS error: {e}{why}") from None
        raise RemoteProtocolError(f"TLS error: OpenSSL returned {r} with no error")

    def feed(self, data: bytes, room: int | None = None) -> int:
        """TLS records from the peer; returns how many records start in `data`, what the caller
        charges to its control budget. Counted before OpenSSL sees any of them, and no further
        than one past `room` (what the budget has left): then the bytes are not given to
        OpenSSL at all and the caller, whose charge fails, ends the session. Why count records
        and not the messages read: records that carry no application data (KeyUpdate, alerts,
        empty records, 1-byte fragments of a handshake message) cost OpenSSL's work on the read
        too, and a peer could send them for free. An empty payload is nothing; a memory BIO
        that refuses bytes is the peer's doing: RemoteProtocolError."""
        if not data:
            return 0
        if type(data) is not bytes:
            data = bytes(data)
        if self.verify_chain is not None:
            # Held for tls-verify: OpenSSL reads nothing until the verdict, so what the peer sends
            # meanwhile stays in the memory BIO. A real peer sends its key-method message (one
            # record); more than HELD_INPUT_MAX ends the handshake rather than pile up.
            self._held_input += len(data)
            if self._held_input > HELD_INPUT_MAX:
                raise RemoteProtocolError("TLS input piling up while tls-verify decides")
        n = self._count_records(data, len(data) if room is None else room)
        if room is not None and n > room:
            return n
        if _lib.BIO_write(self._into, data, len(data)) != len(data):
            _lib.ERR_clear_error()
            raise RemoteProtocolError("TLS input refused")
        self._fed = True
        return n

    def _count_records(self, data: bytes, room: int) -> int:
        """The records that start in `data`, from their 5-byte headers, at most room + 1 (past
        that the position in the stream is left unknown: the session ends). One loop turn a
        record, stepping from header to header.

        A header whose first byte is no TLS content type (_RECORD_TYPES) is refused
        (RemoteProtocolError): the count is only right while it frames the stream as OpenSSL
        does. An SSLv2-style ClientHello (2-byte header, high bit set), which OpenSSL 3.x still
        reads as a server's first record, was read here as a 5-byte header whose length is the
        hello's version: from there the count stepped over whatever the peer placed, 64 KB of
        1-byte records charged as one (OpenSSL 3.0 with tls-cipher @SECLEVEL=0 then read them)."""
        n = len(data)
        count = 0
        i = self._rec_skip           # the first header starts after the rest of the current record
        head = self._rec_head
        types = _RECORD_TYPES
        if head:                     # a header cut at the end of the last feed (counted there)
            need = 5 - len(head)
            head += data[:need]
            if len(head) < 5:
                self._rec_head = head
                return 0
            self._rec_head = b""
            i = need + int.from_bytes(head[3:5], "big")
        while i + 5 <= n and count <= room:
            if data[i] not in types:
                _not_a_record(data[i])
            i += 5 + (data[i + 3] << 8 | data[i + 4])
            count += 1
        if count > room:
            return count             # the session ends: where the stream stands no longer matters
        if i >= n:
            self._rec_skip = i - n
        else:                        # a header cut by the end of this feed
            if data[i] not in types:
                _not_a_record(data[i])
            self._rec_skip = 0
            self._rec_head = data[i:]
            count += 1               # it starts here: counted now, not when its header ends
        return count

    def pump(self) -> tuple[bytes, list[bytes]]:
        """Advance: returns (TLS bytes to send, application messages received). Raises RemoteProtocolError."""
        msgs: list[bytes] = []
        ssl = self._ssl
        if not self.handshake_done:
            if self.verify_chain is not None:
                if self._verdict is None:
                    return b"", msgs                # held: the peer waits, as for OpenVPN's command
                self._take_verdict()
            else:
                r = _lib.SSL_do_handshake(ssl)
                if r == 1:
                    self._verify_peer()
                    if self.settings.hold_for_verdict and self.peer_cert is not None:
                        self._hold()
                        return b"", msgs
                    self.handshake_done = True          # only now: see _verify_peer
                elif _lib.SSL_get_error(ssl, r) != _WANT_READ:
                    self._fail(r)
        if self.handshake_done and self._fed:
            # Each read loop ends in "want read" (no more records): run it only when records
            # came in since the last one emptied the input.
            self._fed = False
            buf = _take()           # drain() below reads into it too
            try:
                while True:
                    r = _lib.SSL_read(ssl, buf, _BIO_CHUNK)
                    if r > 0:
                        msgs.append(_ffi.buffer(buf, r)[:])
                        continue
                    if _lib.SSL_get_error(ssl, r) == _WANT_READ:
                        break
                    self._fail(r)
                return self.drain(buf), msgs
            finally:
                _give(buf)
        return self.drain(), msgs

    def drain(self, buf=None) -> bytes:
        """Everything TLS wrote to its memory BIO. A read that returns less than asked emptied
        the BIO, so there is no second read; an empty BIO reads as <= 0. `buf`: the buffer to
        read into (pump passes the one it read with; by default one taken here, _take)."""
        if buf is None:
            buf = _take()
            try:
                return self._drain(buf)
            finally:
                _give(buf)
        return self._drain(buf)

    def _drain(self, buf) -> bytes:  # noqa: ANN001 - a cffi char[]
        r = _lib.BIO_read(self._from, buf, _BIO_CHUNK)
        if r <= 0:
            return b""
        first = _ffi.buffer(buf, r)[:]
        if r < _BIO_CHUNK:
            return first
        out = [first]
        while r == _BIO_CHUNK:
            r = _lib.BIO_read(self._from, buf, _BIO_CHUNK)
            if r <= 0:
                break
            out.append(_ffi.buffer(buf, r)[:])
        return b"".join(out)

    def send_message(self, data: bytes | bytearray | memoryview) -> bytes:
        """Write one application message; returns TLS bytes to send. pyOpenSSL's contexts allow
        partial writes (a record at a time), so a long message takes several."""
        if type(data) is not bytes:
            data = bytes(data)
        ssl, n = self._ssl, len(data)
        r = _lib.SSL_write(ssl, data, n)
        if r != n:
            done = 0
            view = _ffi.from_buffer(data)
            while True:
                if r <= 0:
                    self._fail(r)
                done += r
                if done >= n:
                    break
                r = _lib.SSL_write(ssl, view + done, n - done)
        return self.drain()

    def export_keying_material(self, label: bytes, length: int) -> bytes:
        return self.conn.export_keying_material(label, length)

    @property
    def version(self) -> str:
        return self.conn.get_protocol_version_name()

    @property
    def cipher(self) -> str:
        return self.conn.get_cipher_name() or ""

    @property
    def group(self) -> str:
        """The key exchange's group (what `tls-groups` restricts), for the log."""
        return negotiated_group(self.conn)
