"""An encrypted private key (`key` in PEM, with a password) or a `pkcs12` file, and `askpass`:
opened once, at start.

OpenVPN 2.6 reads the key with OpenSSL's PEM reader, whose password callback takes the first line
of the `askpass FILE` or asks on the console ("Enter Private Key Password:"), with `askpass` alone
or none at all. Both encrypted PEM forms are read: PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") and the
traditional OpenSSL one ("Proc-Type: 4,ENCRYPTED" with DEK-Info). Before, `askpass` was refused and
an encrypted key failed the start, so a profile with a protected key could not be used.

Here the key is decrypted once, before the start (and by `check`), and the Options then hold it
unencrypted, as OpenVPN's SSL_CTX holds it: each connection's TLS context needs no password, and
the password is dropped. A wrong password or an encrypted key with none to be had is a ConfigError
at the directive's line, before anything starts; a reload (which has no terminal) needs `askpass
FILE`. The terminal prompt itself is the command line's (cli.py), not this module's.

A pkcs12 file is opened the same way (OpenVPN 2.6 tries an empty password first, then asks): its
certificate and key become `cert`/`key`; without `ca` its CA certificates are the trusted ones,
with `ca` they are only sent after ours (tls_ctx_load_pkcs12's two cases); `extra-certs` go last.
"""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from .config import Options
from .errors import ConfigError

PROMPT = "Enter Private Key Password: "        # OpenVPN 2.6's words


def is_encrypted(pem: bytes | None) -> bool:
    return pem is not None and (b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem)


def needs_prompt(opts: Options) -> bool:
    """The key (or the pkcs12 file) is encrypted and no askpass FILE gave its password: OpenVPN 2.6
    asks on the console."""
    if opts.askpass_password is not None:
        return False
    if opts.pkcs12 is not None:
        return _open_pkcs12(opts.pkcs12, None) is None
    return is_encrypted(opts.key)


def _open_pkcs12(data: bytes, password: str | None):
    """(key, certificate, CA certificates) of a PKCS#12 file, or None if `password` does not open
    it. With no password, as OpenVPN 2.6 (PKCS12_parse with ""), both an empty one and none."""
    tries = [None, b""] if password is None else [password.encode("utf-8", "surrogateescape")]
    for pw in tries:
        try:
            return pkcs12.load_key_and_certificates(data, pw)
        except (ValueError, TypeError):
            continue
    return None


def _unlock_pkcs12(opts: Options, typed: str | None) -> None:
    """cert, key and (without `ca`) ca from the pkcs12 file, as OpenVPN 2.6's tls_ctx_load_pkcs12:
    with `ca` the file's CA certificates are only sent after ours (intermediates, not trusted),
    without it they are the trusted CAs."""
    at = opts.source.get("pkcs12", (opts.path, None))
    password = typed if typed is not None else opts.askpass_password
    got = _open_pkcs12(opts.pkcs12, None) if password is None else None
    if got is None and password is not None:
        got = _open_pkcs12(opts.pkcs12, password)
        if got is None:
            where = opts.source.get("askpass_password", at) if typed is None else at
            raise ConfigError(f"cannot open the PKCS#12 file with the password "
                              f"{'typed' if typed is not None else 'of askpass'} (a wrong password, or not PKCS#12)",
                              *where, "askpass" if typed is None and "askpass_password" in opts.source else "pkcs12")
    if got is None:
        raise ConfigError("cannot open the PKCS#12 file without a password, and there is none for it: give it "
                          "with `askpass FILE` (its first line), or run on a terminal to be asked (or it is "
                          "not PKCS#12)", *at, "pkcs12")
    key, cert, cas = got
    if key is None or cert is None:
        raise ConfigError("the PKCS#12 file holds no certificate with its private key", *at, "pkcs12")
    pem = serialization.Encoding.PEM
    ca_pem = b"".join(c.public_bytes(pem) for c in cas)
    chain = cert.public_bytes(pem)
    if opts.ca is None:
        if not ca_pem and not opts.peer_fingerprint:
            raise ConfigError("no `ca`, and the PKCS#12 file holds no CA certificate to verify the peer with",
                              *at, "pkcs12")
        opts.ca = ca_pem or None
    else:
        chain += ca_pem
    if opts.extra_certs is not None:
        chain += opts.extra_certs
    opts.cert = chain
    opts.key = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    opts.pkcs12 = None
    opts.askpass_password = None


def unlock(opts: Options, typed: str | None = None) -> None:
    """Replace an encrypted `opts.key` with the same key unencrypted (PKCS#8 PEM), or a pkcs12 file
    with the cert/key/ca it holds, using `typed` (asked on the terminal) or the askpass file's
    password; ConfigError if neither opens it."""
    if opts.pkcs12 is not None:
        _unlock_pkcs12(opts, typed)
        return
    if not is_encrypted(opts.key):
        opts.askpass_password = None
        return
    password = typed if typed is not None else opts.askpass_password
    key_at = opts.source.get("key", (opts.path, None))
    if password is None:
        raise ConfigError("the private key is encrypted and there is no password for it: give it with "
                          "`askpass FILE` (its first line), or run on a terminal to be asked", *key_at, "key")
    try:
        key = serialization.load_pem_private_key(opts.key, password.encode("utf-8", "surrogateescape"))
    except (ValueError, TypeError) as e:
        where = opts.source.get("askpass_password", key_at) if typed is None else key_at
        raise ConfigError(f"cannot decrypt the private key with the password {'typed' if typed is not None else 'of askpass'}"
                          f" ({e})", *where, "askpass" if typed is None and "askpass_password" in opts.source
                          else "key") from None
    opts.key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    opts.askpass_password = None
