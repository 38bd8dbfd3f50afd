"""Directives for key material, peer verification, client authentication on the server, the data
channel (ciphers, digests, replay window), timers and compression framing."""
from __future__ import annotations

import base64
import os

from .. import ciphers, gentoken
from ..dhparams import MIN_BITS, MIN_STRENGTH, read
from ..compression import (COMP_F_ADAPTIVE, COMP_F_ADVERTISE_STUBS_ONLY, COMP_F_ALLOW_ASYM, COMP_F_ALLOW_STUB_ONLY,
                           COMP_F_MIGRATE, COMP_F_SWAP, missing_library)
from ..keymethod import USER_PASS_LEN
from ..peernames import from_peer, to_bytes
from ..regular_file import PASSWORD_DB, hashed_dir_problem, named_file_problem
from ..replay import MAX_SIZE as MAX_REPLAY_WINDOW
from ..replay import MAX_TIME_LIMIT as MAX_REPLAY_TIME
from ..tls import username_field_problem
from ..x509track import track_problem
from .directives import Registry
from .d_ops import command_argv, scripts_forbidden
from .lexer import split_lines
from .parser import INLINE, ParseState

reg = Registry()
DIGESTS = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512"}
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


def _secret(v: object) -> object:
    """`check` shows that key material is there, never the material."""
    return f"<{len(v)} bytes>" if v is not None else None  # type: ignore[arg-type]


# ------------------------------------------------------------------ key material
def _pem(field: str):
    def h(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        v = p.file(d, a[0], inline)
        if v is not None:
            p.set(field, v)
    return h


@reg.apply("ca", why="CA certificates that sign the peer's certificate", sets=("ca",), used_by="tls",
           nargs=(1, 1), access=True, inline=True, show={"ca": _secret})
def _ca(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = p.file(d, a[0], inline)
    if v is None:
        return
    if b"-----BEGIN X509 CRL-----" in v:
        # OpenVPN 2.6 never checks a CRL it finds here (its crl-verify reload deletes it from
        # the store before each handshake; without crl-verify CRL checks are off), 2.7 checks it
        # beside crl-verify only: a revocation written down is enforced or refused, not ignored.
        p.err(d, "holds a CRL, which OpenVPN 2.6 never checks there (2.7 only beside crl-verify): "
                 "give it with crl-verify, or take it out")
        return
    p.set("ca", v)


@reg.apply("capath", why="a directory of hashed CA and CRL files (c_rehash / `openssl rehash`: HASH.N, HASH.rN) "
           "looked up as chains need them, every certificate of the peer's chain checked against its issuer's "
           "CRL there (none found: accepted, as OpenVPN 2.6's \"VERIFY WARNING\"); beside `ca` or instead of it",
           sets=("capath",), used_by="tls", nargs=(1, 1), access=True)
def _capath(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    path = p.path_arg(a[0])
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        p.err(d, f"{a[0]} is not a readable directory")
        return
    if (why := hashed_dir_problem(path)) is not None:
        p.err(d, f"{a[0]}: {why}")
        return
    p.set("capath", path)


reg.apply("cert", why="our certificate", sets=("cert",), used_by="tls", nargs=(1, 1), inline=True,
          show={"cert": _secret})(_pem("cert"))
reg.apply("key", why="our private key", sets=("key",), used_by="tls", nargs=(1, 1), inline=True,
          show={"key": _secret})(_pem("key"))


@reg.apply("extra-certs", why="intermediate certificates sent after ours (cert's or pkcs12's)",
           sets=("extra_certs",), used_by="tls", nargs=(1, 1), inline=True)
def _extra_certs(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # Kept apart and added to our chain when the config is complete (parser.finish, or after a
    # pkcs12 file is opened: keyunlock.py): before a `cert` line it used to be dropped unseen.
    data = p.file(d, a[0], inline)
    if data:
        p.set("extra_certs", data)


@reg.apply("pkcs12", why="our certificate and key (and, without `ca`, the CAs) from a PKCS#12 file, opened "
           "before the start with no password or askpass's (openvpn/keyunlock.py)", sets=("pkcs12",),
           used_by="tls", nargs=(1, 1), inline=True, show={"pkcs12": _secret})
def _pkcs12(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    data = p.file(d, a[0], inline)
    if data is None:
        return
    if inline is not None or a[0] == INLINE:
        # OpenVPN 2.6 takes an inline <pkcs12> block as base64 of the DER file.
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except ValueError:
            p.err(d, "the inline <pkcs12> block must hold the file in base64")
            return
    p.set("pkcs12", data)


def _dh(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """Remembered for finish_dh: whether the file is read depends on the role, which a later line
    may set (`tls-server`, `server`, `client`). An inline block is taken now (ParseState.file
    pairs `dh [inline]` with its <dh> block)."""
    p.dh = (p.line, a[0], p.file(d, a[0], inline) if inline is not None or a[0] == INLINE else None)


reg.noop("dh", "DH parameters are not used: key exchange is ECDHE only; a TLS server's `dh` must still be "
         "`none` or name DH parameters of 2048 bits or more, as OpenVPN 2.6 requires to start (a client "
         "ignores it, as 2.6)", check=_dh, nargs=(1, 1), inline=True)


def finish_dh(p: ParseState) -> None:
    """As OpenVPN 2.6 at start: a TLS server (`server`, `mode server`, p2p `tls-server`) needs a
    `dh` line, `none` or a file of DH parameters it can load (dhparams.py says which); a client
    never reads the file (2.6 warns and drops the line)."""
    o = p.o
    if not o.tls_server:
        return
    if p.dh is None:
        p.err("dh", "a TLS server needs `dh none` or `dh FILE`, as OpenVPN 2.6 (\"You must define DH file "
                    "(--dh)\"); key exchange here is ECDHE only, so `dh none` says what it does", None)
        return
    line, arg, data = p.dh
    if arg == "none" and data is None:
        return
    where = "the <dh> block" if arg == INLINE else arg
    if data is None and arg != INLINE:
        before, p.line = p.line, line             # the file's error at the `dh` line; the rest of finish as it was
        try:
            data = p.file("dh", arg, None)
        finally:
            p.line = before
    if data is None:
        return                                    # cannot read it (said), or `[inline]` without a block (said)
    try:
        got = read(data)
    except ValueError as e:
        p.err("dh", f"{where} {e}; OpenVPN 2.6 fails at start on it (\"Cannot load DH parameters\"). Key "
                    "exchange here is ECDHE only: `dh none` does", line)
        return
    if got.kind != "DH":
        # 2.6 takes DSA or EC parameters here as its "DH" (dhparams.py): it starts when OpenSSL
        # gives them level 2's security, as for DH; neither end uses them.
        if got.strength < MIN_STRENGTH:
            p.err("dh", f"{where} holds {got.kind} parameters ({got.bits} bits), which OpenVPN 2.6 takes in place of "
                        f"DH parameters and fails at start on: {got.strength} bits of security, below {MIN_STRENGTH} "
                        "(\"dh key too small\"). Key exchange here is ECDHE only: `dh none` does", line)
        return
    if got.bits < MIN_BITS:
        p.err("dh", f"{where} holds DH parameters of {got.bits} bits: OpenVPN 2.6 with OpenSSL 3 fails at start on "
                    f"fewer than {MIN_BITS} (\"dh key too small\"). Key exchange here is ECDHE only: `dh none` "
                    "does", line)
    elif got.strength < MIN_STRENGTH:
        p.err("dh", f"{where} holds DH parameters of {got.bits} bits whose subgroup (q, or privateValueLength) "
                    f"gives {got.strength} bits of security: OpenVPN 2.6 with OpenSSL 3 fails at start below "
                    f"{MIN_STRENGTH} (\"dh key too small\"). Key exchange here is ECDHE only: `dh none` does", line)


@reg.apply("tls-auth", why="HMAC on control packets", sets=("tls_auth", "key_direction"), used_by="session",
           nargs=(1, 2), access=True, inline=True, show={"tls_auth": _secret})
def _tls_auth(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = p.text(d, a[0], inline)
    if v is not None:
        p.set("tls_auth", v)
    if len(a) == 2:
        if a[1] not in ("0", "1"):
            p.err(d, "key direction must be 0 or 1")
        else:
            p.set("key_direction", int(a[1]))


@reg.apply("key-direction", why="which half of the tls-auth key we use", sets=("key_direction",),
           used_by="session", nargs=(1, 1))
def _key_direction(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("0", "1"):
        p.err(d, "key direction must be 0 or 1")
    else:
        p.set("key_direction", int(a[0]))


@reg.apply("tls-crypt", why="encrypted control channel", sets=("tls_crypt",), used_by="session",
           nargs=(1, 1), access=True, inline=True, show={"tls_crypt": _secret})
def _tls_crypt(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = p.text(d, a[0], inline)
    if v is not None:
        p.set("tls_crypt", v)


@reg.apply("tls-crypt-v2", why="per-client control-channel keys; `force-cookie` makes the server refuse "
           "clients that skip the HMAC cookie", sets=("tls_crypt_v2", "tls_crypt_v2_force_cookie"),
           used_by="server", nargs=(1, 2), access=True, inline=True, show={"tls_crypt_v2": _secret})
def _tls_crypt_v2(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = p.text(d, a[0], inline)
    if v is not None:
        p.set("tls_crypt_v2", v)
    if len(a) == 2:
        if a[1] not in ("force-cookie", "allow-noncookie"):
            p.err(d, f"unknown option {a[1]}")
        else:
            p.set("tls_crypt_v2_force_cookie", a[1] == "force-cookie")


def _show_user(v: object) -> object:
    return f"<user {v[0]!r}>" if v is not None else None  # type: ignore[index]


@reg.apply("auth-user-pass", why="username/password for the server",
           sets=("auth_user_pass_required", "auth_user_pass", "auth_user_pass_file"),
           used_by="client", nargs=(0, 1), inline=True, show={"auth_user_pass": _show_user})
def _auth_user_pass(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("auth_user_pass_required", True)
    if not a:
        return
    data = p.file(d, a[0], inline)
    if data is None:
        return
    try:
        p.set("auth_user_pass", user_pass_file(data))
    except ValueError as e:
        p.err(d, str(e))
        return
    # Where auth-nocache reads it again at each use (gateway/credentials.py); an inline block is
    # read from the config again, as OpenVPN's GET_USER_PASS_INLINE_CREDS.
    p.set("auth_user_pass_file", os.path.abspath(p.path_arg(a[0])) if inline is None and a[0] != INLINE else None)


def user_pass_file(data: bytes) -> tuple[str, str]:
    """(username, password) from an auth-user-pass file's bytes; ValueError saying what is wrong.
    The one reading of such a file: at parse time, and again at each use with auth-nocache."""
    # The file's bytes as they are (peernames): a Latin-1 username goes to the server as the
    # bytes Debian's client sends from the same file, not as U+FFFD's.
    lines = split_lines(from_peer(data))        # fgets lines, as OpenVPN reads the file: LF ends them, nothing else
    if not lines or not lines[0]:
        raise ValueError("the file must hold the username on line 1 and the password on line 2")
    if any(len(to_bytes(v)) >= USER_PASS_LEN for v in lines[:2]):
        # OpenVPN 2.6 reads USER_PASS_LEN - 1 bytes of a line (fgets): the rest of a longer
        # username is read as the password, a longer password is cut; neither is what the file says.
        raise ValueError(f"the username or password is longer than {USER_PASS_LEN - 1} bytes, "
                         "the most OpenVPN 2.6 reads of a line of this file")
    return lines[0], lines[1] if len(lines) > 1 else ""


@reg.apply("auth-nocache", why="the username/password are not kept after each use: a file is read "
           "again, a terminal asked again, at the next connection or renegotiation without auth-token",
           sets=("auth_nocache",), used_by="client", nargs=(0, 0))
def _auth_nocache(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("auth_nocache", True)


# ------------------------------------------------------------------ verifying the peer (who may connect)
@reg.apply("remote-cert-tls", why="peer certificate must carry the server/client EKU and a keyUsage",
           sets=("remote_cert_tls",), used_by="tls", nargs=(1, 1), access=True)
def _remote_cert_tls(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("server", "client"):
        p.err(d, "expects server or client")
    else:
        p.set("remote_cert_tls", a[0])


@reg.apply("ns-cert-type", why="(deprecated) peer certificate must be fit for a TLS server/client as OpenSSL's "
           "purpose check reads it, or carry that Netscape certificate type, as OpenVPN 2.6 checks it",
           sets=("ns_cert_type",), used_by="tls", nargs=(1, 1), access=True)
def _ns_cert_type(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("server", "client"):
        p.err(d, "expects server or client")
    else:
        p.set("ns_cert_type", a[0])


@reg.apply("remote-cert-eku", why="peer certificate must list this extendedKeyUsage (name or OID)",
           sets=("remote_cert_eku",), used_by="tls", nargs=(1, 1), access=True)
def _remote_cert_eku(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("remote_cert_eku", a[0])


@reg.apply("remote-cert-ku", why="peer certificate keyUsage must include one of these hex values "
           "(none given: must have a keyUsage)", sets=("remote_cert_ku",), used_by="tls", access=True,
           show={"remote_cert_ku": lambda v: None if v is None else [f"{x:02x}" for x in v]})
def _remote_cert_ku(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    out: list[int] = []
    for v in a:
        try:
            n = int(v, 16)
        except ValueError:
            p.err(d, f"expected a hex key usage value, got {v!r}")
            return
        if not 0 < n <= 0xFFFF:
            p.err(d, f"key usage {v} out of range")
            return
        out.append(n)
    p.set("remote_cert_ku", out)


@reg.apply("verify-x509-name", why="peer certificate subject/CN must match", sets=("verify_x509_name",),
           used_by="tls", nargs=(1, 2), access=True)
def _verify_x509_name(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    kind = a[1] if len(a) > 1 else "subject"
    if kind not in ("subject", "name", "name-prefix"):
        p.err(d, f"unknown type {kind}")
    elif not a[0]:
        # OpenVPN 2.6 takes no empty name (options.c: strlen(p[1])); `"" name-prefix` would
        # otherwise let every certificate through.
        p.err(d, "the name is empty")
    elif "\ufffd" in a[0]:
        # What the config's bytes that are not UTF-8 were read as. OpenVPN compares the bytes
        # with the certificate's name, which OpenSSL always gives as UTF-8: such a name matches
        # no certificate there, while here it matched any whose name holds U+FFFD at that place.
        p.err(d, "the name holds bytes that are not UTF-8 (or U+FFFD): no certificate's name "
                 "can match it in OpenVPN; write the name in UTF-8")
    else:
        p.set("verify_x509_name", (a[0], kind))


@reg.apply("auth-user-pass-optional", why="server: a client may leave out username and password; the "
           "auth-user-pass-verify command or the management client decides", sets=("auth_user_pass_optional",),
           used_by="server",
           nargs=(0, 0), access=True)
def _auth_user_pass_optional(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("auth_user_pass_optional", True)


@reg.apply("x509-username-field", why="which certificate fields name the peer (default: the last CN)",
           sets=("x509_username_field",), used_by="tls", nargs=(1, 15), access=True)
def _x509_username_field(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c): each argument replaces the field at its place (a second line
    with fewer fields keeps the first line's later ones, as there); a name without an upper-case
    letter is upper-cased (deprecated there, with a warning: `ou` is `OU`); only
    ext:subjectAltName and ext:issuerAltName among extensions. An attribute name OpenSSL does not
    know is refused here: OpenVPN would refuse every client at its handshake instead."""
    fields = list(p.o.x509_username_field)
    for j, name in enumerate(a):
        if not name.startswith("ext:") and not any(c.isupper() for c in name) and name.upper() != name:
            p.note(d, f"upper-cased {name!r} to {name.upper()!r} as OpenVPN does (deprecated there): "
                      "write it so")
            name = name.upper()
        why = username_field_problem(name)
        if why is not None:
            p.err(d, why)
            return
        if j < len(fields):
            fields[j] = name
        else:
            fields.append(name)
    p.set("x509_username_field", tuple(fields))


@reg.apply("x509-track", why="certificate fields of the peer's chain for the scripts (X509_<depth>_<name>)",
           sets=("x509_track",), used_by="tls", nargs=(1, 1), access=True)
def _x509_track(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """Each line adds one; checked as OpenVPN's x509_track_add checks it (x509track.py)."""
    why = track_problem(a[0])
    if why is not None:
        p.err(d, why)
        return
    p.set("x509_track", (*p.o.x509_track, a[0]))


@reg.apply("peer-fingerprint", why="peer certificate SHA-256 fingerprints allowed", sets=("peer_fingerprint",),
           used_by="tls", nargs=(1, 1), access=True, inline=True, show={"peer_fingerprint": lambda v: [x.hex(":") for x in v]})
def _peer_fingerprint(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if inline is None and a[0] == INLINE:
        p.file(d, INLINE, None)      # its block, before or after this line, carries the fingerprints
        return
    if inline is not None:
        p.file(d, INLINE, inline)    # marks the block as seen (satisfies a `peer-fingerprint [inline]`)
    if p.o.verify_hash:
        p.err(d, "--verify-hash and --peer-fingerprint are mutually exclusive (as in OpenVPN)")
        return
    fps = _fingerprints(p, d, inline if inline is not None else a[0], 32, "SHA-256")
    if fps is not None:
        p.set("peer_fingerprint", list(p.o.peer_fingerprint) + fps)


# A line or block without one pinned nothing, silently (all its lines commented out, say): every
# certificate of the CA got in where the admin meant to let in one. OpenVPN refuses an empty
# argument; its empty block pins nothing. Refused here either way.
NO_FINGERPRINT = "no fingerprint given (are all its lines commented out?): it would pin nothing"


def _fingerprint_words(text: str) -> list[str]:
    """The words of a peer-fingerprint/verify-hash line or block, comment lines left out as
    OpenVPN 2.6 leaves them out (parse_hash_fingerprint_multiline: a line whose first non-blank
    character is `#` or `;`). Words starting with `#` were skipped instead: `# AA:BB:...`, a
    fingerprint an admin commented out, stayed trusted. A comment after a fingerprint (`AA:... #
    old`; OpenVPN refuses the line) ends its line, as before."""
    words: list[str] = []
    for line in text.splitlines():
        for w in line.split():
            if w[0] in "#;":
                break
            words.append(w)
    return words


def _fingerprints(p: ParseState, d: str, text: str, size: int, what: str) -> list[bytes] | None:
    """The fingerprints of a line or block (AA:BB:... each, `#` comments skipped), each `size`
    bytes; None (an error at the line) if one is not."""
    fps = []
    words = _fingerprint_words(text)
    if not words:
        p.err(d, NO_FINGERPRINT)
        return None
    for item in words:
        try:
            fp = bytes.fromhex(item.replace(":", ""))
        except ValueError:
            fp = b""
        if len(fp) != size:
            p.err(d, f"not a {what} fingerprint ({size} bytes as AA:BB:...): {item}")
            return None
        fps.append(fp)
    return fps


@reg.apply("verify-hash", why="the fingerprint of the certificate that signed the peer's (depth 1)",
           sets=("verify_hash", "verify_hash_algo"), used_by="tls", nargs=(1, 2), access=True, inline=True,
           show={"verify_hash": lambda v: [x.hex(":") for x in v]})
def _verify_hash(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """As OpenVPN 2.6 (options.c, deprecated there, still in profiles): the certificate at depth
    1 of the verified chain -- the CA that signed the peer's -- must have one of these
    fingerprints; SHA1 unless `SHA256` is given (or the fingerprints are inline); lines add up.
    OpenVPN compares every line's fingerprints with the last line's algorithm; lines of two
    algorithms are refused here instead of matching by a prefix."""
    if inline is None and a[0] == INLINE:
        p.file(d, INLINE, None)
        if len(a) > 1 and a[1] != "SHA256":
            p.err(d, "an inline <verify-hash> block holds SHA256 fingerprints here; write them as a line "
                     f"`verify-hash AA:BB:... {a[1]}` instead")
        return
    if inline is not None:
        p.file(d, INLINE, inline)
    if p.o.peer_fingerprint:
        p.err(d, "--verify-hash and --peer-fingerprint are mutually exclusive (as in OpenVPN)")
        return
    algo = "SHA256" if inline is not None else (a[1] if len(a) > 1 else "SHA1")
    if algo not in ("SHA1", "SHA256"):
        p.err(d, f"invalid or unsupported hashing algorithm: {algo} (only SHA1 and SHA256 are supported)")
        return
    if p.o.verify_hash and p.o.verify_hash_algo != algo:
        p.err(d, f"{algo} after {p.o.verify_hash_algo} fingerprints: OpenVPN would compare all with {algo}; "
                 "use one algorithm")
        return
    if not p.o.verify_hash:
        p.note(d, "deprecated in OpenVPN 2.6 (it warns so): use the issuing certificate as `ca`, or peer-fingerprint")
    fps = _fingerprints(p, d, inline if inline is not None else a[0], 20 if algo == "SHA1" else 32, algo)
    if fps is not None:
        p.set("verify_hash", list(p.o.verify_hash) + fps)
        p.set("verify_hash_algo", algo)


def _tls_version(field: str):
    def h(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        if a[0] not in TLS_VERSIONS:
            p.err(d, f"unknown TLS version {a[0]}")
        else:
            p.set(field, a[0])
    return h


reg.apply("tls-version-min", why="lowest TLS version accepted", sets=("tls_version_min",), used_by="tls",
          nargs=(1, 2), access=True)(_tls_version("tls_version_min"))
reg.apply("tls-version-max", why="highest TLS version offered", sets=("tls_version_max",), used_by="tls",
          nargs=(1, 1))(_tls_version("tls_version_max"))


@reg.apply("verify-client-cert", why="server: require, accept or skip client certificates",
           sets=("verify_client_cert",), used_by="tls", nargs=(1, 1), access=True)
def _verify_client_cert(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0] not in ("none", "optional", "require"):
        p.err(d, "expects none, optional or require")
    else:
        p.set("verify_client_cert", a[0])


# ------------------------------------------------------------------ server: client authentication
@reg.apply("auth-user-pass-verify", why="server: check usernames/passwords with a command (via-file, via-env; "
           "exit 0 accepts, 2 defers to auth_control_file) or against a password file (FILE passdb)",
           sets=("auth_user_pass_verify", "auth_user_pass_verify_script"), used_by="server", nargs=(2, 2),
           access=True)
def _auth_user_pass_verify(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[1] in ("via-file", "via-env"):
        _auth_script(p, d, a)
        return
    if a[1] != "passdb":
        p.err(d, "the method is via-file, via-env (a command checks) or passdb (FILE holds `user:scrypt$...` "
                 "lines made by `vpn-appliance passwd`)")
        return
    path = p.path_arg(a[0])
    # Read at start and at each reload (the loop's thread): a pipe would block it for good.
    why = named_file_problem(path, PASSWORD_DB)
    if why is not None:
        p.err(d, f"cannot read {a[0]}: {why}")
        return
    p.set("auth_user_pass_verify", (path, a[1]))
    p.set("auth_user_pass_verify_script", None)      # the last line counts, as in OpenVPN


def _auth_script(p: ParseState, d: str, a: list[str]) -> None:
    """The command as OpenVPN 2.6 reads it (d_ops.command_argv): a missing or non-executable
    program would refuse every login, so it is refused at its line, as OpenVPN's start fails."""
    if scripts_forbidden():
        p.err(d, "the VM image runs no scripts (use `FILE passdb`)")
        return
    argv = command_argv(p, d, a[0])
    if argv is None:
        return
    p.set("auth_user_pass_verify_script", (tuple(argv), a[1]))
    p.set("auth_user_pass_verify", None)


@reg.apply("auth-gen-token", why="server: after a password check, push a session token the client sends "
           "instead of its password at renegotiations and reconnects (external-auth: the auth-user-pass-verify "
           "command judges it too)", sets=("auth_gen_token", "auth_gen_token_external"), used_by="server",
           nargs=(0, 3), access=True)
def _auth_gen_token(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # OpenVPN 2.6 (options.c): `auth-gen-token [lifetime] [renewal-time] [external-auth]`.
    lifetime = p.int_arg(d, a[0], 0, 2**31) if a else 0
    renewal = 0
    external = False
    for i, v in enumerate(a[1:], start=1):
        if i == 1 and v.isdigit():
            renewal = p.int_arg(d, v, 1, 2**31) or 0
        elif v == "external-auth":
            # The token's state goes to the auth-user-pass-verify command, which decides (checked
            # at the end: parser.finish, a command must be there).
            external = True
        else:
            p.err(d, f"invalid argument {v!r} (expects [lifetime] [renewal-time])")
    if lifetime is not None:
        p.set("auth_gen_token", (lifetime, renewal))
        p.set("auth_gen_token_external", external)


@reg.apply("auth-gen-token-secret", why="server: the key of auth-gen-token's tokens, shared by servers that honour "
           "each other's tokens and kept across restarts", sets=("auth_gen_token_secret",), used_by="server",
           nargs=(1, 1), access=True, inline=True, show={"auth_gen_token_secret": _secret})
def _auth_gen_token_secret(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    text = p.text(d, a[0], inline)
    if text is None:
        return
    try:
        p.set("auth_gen_token_secret", gentoken.parse_secret(text))
    except ValueError as e:
        p.err(d, str(e))


@reg.apply("client-config-dir", why="server: per-client files named by common name", sets=("client_config_dir",),
           used_by="server", nargs=(1, 1), access=True)
def _client_config_dir(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("client_config_dir", p.path_arg(a[0]))


@reg.apply("ccd-exclusive", why="server: refuse clients without a client-config-dir file",
           sets=("ccd_exclusive",), used_by="server", nargs=(0, 0), access=True)
def _ccd_exclusive(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("ccd_exclusive", True)


@reg.apply("username-as-common-name", why="server: the authenticated username is the client's identity",
           sets=("username_as_common_name",), used_by="server", nargs=(0, 0), access=True)
def _username_as_cn(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("username_as_common_name", True)


@reg.apply("duplicate-cn", why="server: several clients may share a common name", sets=("duplicate_cn",),
           used_by="server", nargs=(0, 0), access=True)
def _duplicate_cn(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("duplicate_cn", True)


@reg.apply("force-tls-key-material-export",
           why="server: only clients that derive data-channel keys with TLS-EKM (RFC 5705; OpenVPN 2.6+) may connect",
           sets=("force_key_material_export",), used_by="server", nargs=(0, 0), access=True)
def _force_ekm(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    p.set("force_key_material_export", True)


# ------------------------------------------------------------------ data channel
def _cipher_name(p: ParseState, d: str, name: str) -> str | None:
    spec = ciphers.spec(name)
    if spec is not None:
        return spec.name
    p.err(d, f"unsupported cipher {name} (supported: {', '.join(ciphers.names())})")
    return None


@reg.apply("data-ciphers", "ncp-ciphers", why="data ciphers we negotiate, in order of preference",
           sets=("data_ciphers",), used_by="session", nargs=(1, 1))
def _data_ciphers(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    out = []
    for c in a[0].split(":"):
        optional = c.startswith("?")
        c = c.lstrip("?")
        spec = ciphers.spec(c)
        if spec is not None:
            out.append(spec.name)
        elif not optional:
            _cipher_name(p, d, c)
            return
    if not out:
        p.err(d, "no usable cipher")
        return
    p.set("data_ciphers", out)


@reg.apply("data-ciphers-fallback", why="cipher for peers that do not negotiate", sets=("data_ciphers_fallback",),
           used_by="session", nargs=(1, 1))
def _data_ciphers_fallback(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    c = _cipher_name(p, d, a[0])
    if c:
        p.set("data_ciphers_fallback", c)


@reg.apply("cipher", why="OpenVPN 2.6: the fallback on a p2p link; a client or server negotiates from data-ciphers "
           "alone", sets=("cipher", "data_ciphers_fallback"), used_by="session", nargs=(1, 1))
def _cipher(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    if a[0].upper() == "BF-CBC":
        p.note(d, "BF-CBC ignored as OpenVPN 2.6 does without data-ciphers-fallback")
        return
    c = _cipher_name(p, d, a[0])
    if c:
        p.set("cipher", c)
        if "data-ciphers-fallback" in p.seen:
            # 2.6 keeps one cipher name for both lines: the later one is the fallback
            p.set("data_ciphers_fallback", c)


@reg.apply("auth", why="HMAC digest (tls-auth, CBC data channel)", sets=("auth",), used_by="session",
           nargs=(1, 1))
def _auth(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = a[0].upper().replace("-", "")
    if v not in DIGESTS:
        p.err(d, f"unsupported digest {a[0]}")
    else:
        p.set("auth", v)


@reg.apply("replay-window", why="replay window of the data and control channels: N packets of reordering, T seconds of age",
           sets=("replay_window", "replay_time"), used_by="session", nargs=(1, 2))
def _replay_window(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    """OpenVPN's bounds (packet_id.h): N in 0..65536, T in 0..600 (0: no time limit)."""
    n = p.int_arg(d, a[0], 0, MAX_REPLAY_WINDOW)
    if n is not None:
        p.set("replay_window", n)
    if len(a) > 1:
        t = p.int_arg(d, a[1], 0, MAX_REPLAY_TIME)
        if t is not None:
            p.set("replay_time", float(t))


# ------------------------------------------------------------------ timers
def _int_setting(field: str, lo: int = 0, hi: int = 2**31, scale=int):
    def h(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
        n = p.int_arg(d, a[0], lo, hi)
        if n is not None:
            p.set(field, scale(n))
    return h


for _name, _field, _why, _user in (
        ("reneg-sec", "reneg_sec", "renegotiate keys after this many seconds", "session"),
        ("tran-window", "tran_window", "old key kept this long after a renegotiation", "session"),
        ("hand-window", "hand_window", "time allowed for a key negotiation", "session"),
        ("ping", "ping", "send a ping after this many idle seconds", "session"),
        ("ping-restart", "ping_restart", "restart after this many silent seconds", "session"),
        ("ping-exit", "ping_exit", "exit after this many silent seconds", "session")):
    # One number each (OpenVPN 2.6 refuses `ping 10 20`); reneg-sec's optional second one, the low end
    # of 2.6's randomised interval, is taken and left unused: keys are renewed at the first number.
    reg.apply(_name, why=_why, sets=(_field,), used_by=_user,
              nargs=(1, 2) if _name == "reneg-sec" else (1, 1))(_int_setting(_field))


@reg.apply("inactive", why="client: exit after N seconds with at most BYTES of tunnel traffic; server: "
           "disconnect such a client (checked every N seconds, as OpenVPN with DCO)", sets=("inactive",),
           used_by="pump", nargs=(1, 2))
def _inactive(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 2**31)
    b = p.int_arg(d, a[1], 0, 2**62) if len(a) == 2 else 0
    if n is not None and b is not None:
        p.set("inactive", (n, b) if n else None)


def _none_if_zero(n: int) -> int | None:
    return n or None


reg.apply("reneg-bytes", why="renegotiate after this many bytes", sets=("reneg_bytes",), used_by="session",
          nargs=(1, 1))(_int_setting("reneg_bytes", 0, 2**62, _none_if_zero))
reg.apply("reneg-pkts", why="renegotiate after this many packets", sets=("reneg_pkts",), used_by="session",
          nargs=(1, 1))(_int_setting("reneg_pkts", 0, 2**62, _none_if_zero))
reg.apply("tls-timeout", why="control-packet retransmit timeout", sets=("tls_timeout",), used_by="session",
          nargs=(1, 1))(_int_setting("tls_timeout", 1, 3600, float))


@reg.apply("keepalive", why="ping/ping-restart (the timeout doubled on a server, as OpenVPN)",
           sets=("keepalive",), used_by="parser", nargs=(2, 2))
def _keepalive(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    # (ping and ping-exit/-restart beside it: parser._option_conflicts, once the file is read)
    i, t = p.int_arg(d, a[0], 0), p.int_arg(d, a[1], 0)
    if i is None or t is None:
        return
    if i == 0 and t == 0:
        # 2.6's helper_keepalive does nothing then (its "no keepalive"); before, ours refused the line.
        p.note(d, "0 0: no keepalive (as OpenVPN 2.6)")
        p.set("keepalive", None)        # (an earlier keepalive line undone, as in 2.6)
        return
    if i == 0 or t == 0:
        p.err(d, "parameters must be > 0 (as OpenVPN 2.6 says)")
    elif t < 2 * i:
        p.err(d, "the timeout must be at least twice the interval")
    else:
        p.set("keepalive", (i, t))


reg.noop("ping-timer-rem", "the client always has its remote; the server's timers are per client", nargs=(0, 0))


@reg.apply("explicit-exit-notify", why="exit notifications sent when leaving", sets=("explicit_exit_notify",),
           used_by="session", nargs=(0, 1))
def _explicit_exit_notify(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    n = p.int_arg(d, a[0], 0, 100) if a else 1
    if n is not None:
        p.set("explicit_exit_notify", n)


# ------------------------------------------------------------------ compression
_RECEIVE_ONLY = ("compression for receiving only, as OpenVPN 2.6 without `allow-compression yes`: "
                 "packets the peer compressed are decompressed, ours are sent uncompressed")


def _real_compression(p: ParseState, d: str, mode: str) -> bool:
    """A real compression line (compression.py): refused after `allow-compression no` (2.6: "not
    allowed since allow-compression is set to 'stub-only'") or without its library."""
    if p.o.comp_flags & COMP_F_ALLOW_STUB_ONLY:
        p.err(d, "compression is not allowed after `allow-compression no` (OpenVPN 2.6 refuses it too)")
        return False
    pkg = missing_library(mode)
    if pkg is not None:
        p.err(d, f"decompressing {mode} needs the Python package {pkg}, which this installation lacks; "
                 "use `compress stub-v2` (framing only) or remove the line")
        return False
    p.note(d, _RECEIVE_ONLY)
    return True


@reg.apply("comp-lzo", why="LZO framing: `no` framing only; `yes`/`adaptive` decompress what the peer "
           "compressed and send uncompressed (OpenVPN 2.6's default without allow-compression yes)",
           sets=("comp_lzo", "compress", "comp_flags"), used_by="session", nargs=(0, 1))
def _comp_lzo(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = a[0] if a else "adaptive"
    if v not in ("no", "yes", "adaptive"):
        p.err(d, "expects no, yes or adaptive")
        return
    if v != "no" and not _real_compression(p, d, "lzo"):
        return
    flags = p.o.comp_flags & ~COMP_F_SWAP
    flags = flags | COMP_F_ADAPTIVE if v == "adaptive" else flags & ~COMP_F_ADAPTIVE
    p.set("comp_flags", flags)
    p.set("comp_lzo", v)
    p.set("compress", None)                     # the later of comp-lzo / compress wins, as in 2.6


reg.noop("comp-noadapt", "adaptive compression only decides when to compress what we send, and we never do",
         nargs=(0, 0))


_COMPRESS_FLAGS = {"stub": (COMP_F_SWAP | COMP_F_ADVERTISE_STUBS_ONLY, 0), "stub-v2": (COMP_F_ADVERTISE_STUBS_ONLY, 0),
                   "lzo": (0, COMP_F_ADAPTIVE | COMP_F_SWAP), "lz4": (COMP_F_SWAP, 0), "lz4-v2": (0, 0)}


@reg.apply("compress", why="compression framing (stub, stub-v2); lzo, lz4, lz4-v2 decompress what the peer "
           "compressed and send uncompressed (OpenVPN 2.6's default without allow-compression yes); "
           "`migrate` (server, OPNsense's choice): a client whose options string says comp-lzo is pushed "
           "`compress stub-v2` (or `comp-lzo no`) and framed so, as OpenVPN 2.6",
           sets=("compress", "comp_lzo", "comp_flags"), used_by="session", nargs=(0, 1))
def _compress(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = a[0] if a else "stub"
    if v == "migrate":
        p.set("comp_flags", COMP_F_MIGRATE)
    elif v in _COMPRESS_FLAGS:
        if v in ("lzo", "lz4", "lz4-v2") and not _real_compression(p, d, v):
            return
        add, clear = _COMPRESS_FLAGS[v]
        p.set("comp_flags", (p.o.comp_flags | add) & ~clear)
    else:
        p.err(d, f"expects stub, stub-v2, migrate, lzo, lz4 or lz4-v2, not {v}")
        return
    p.set("compress", v)
    p.set("comp_lzo", None)


@reg.apply("allow-compression", why="`no`: stub framing only; `asym`: receive-only, as without the line; "
           "`yes` (compressing what we send) refused", sets=("comp_flags",), used_by="session", nargs=(1, 1))
def _allow_compression(p: ParseState, d: str, a: list[str], inline: str | None) -> None:
    v = a[0]
    real = p.o.compress in ("lzo", "lz4", "lz4-v2") or p.o.comp_lzo in ("yes", "adaptive")
    if v == "no":
        if real:
            p.err(d, "`allow-compression no` conflicts with the compression enabled above "
                     "(OpenVPN 2.6 refuses it too)")
            return
        p.set("comp_flags", COMP_F_ALLOW_STUB_ONLY | COMP_F_ADVERTISE_STUBS_ONLY)
    elif p.o.comp_flags & COMP_F_ALLOW_STUB_ONLY:
        p.err(d, f"cannot set allow-compression to {v} after `allow-compression no` (as OpenVPN 2.6)")
    elif v == "asym":
        p.set("comp_flags", p.o.comp_flags | COMP_F_ALLOW_ASYM)
    elif v == "yes":
        p.err(d, "compressing what we send is not supported: compression inside the tunnel lets an "
                 "observer recover secrets (VORACLE; OpenVPN 2.6 strongly discourages it). Remove the "
                 "line or use `allow-compression asym`: packets the peer compresses are still decompressed")
    else:
        p.err(d, "expects no, asym or yes")
