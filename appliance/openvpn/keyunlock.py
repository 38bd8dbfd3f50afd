"""An encrypted private key (`key` in PEM, with a password) and `askpass`: decrypted once, at start.

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
"""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from .config import Options
from .errors import ConfigError

PROMPT = "Enter Private Key Password: "        # OpenVPN 2.6's words


def is_encrypted(pem: bytes | None) -> bool:
    return pem is not None and (b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem)


def needs_prompt(opts: Options) -> bool:
    """The key is encrypted and no askpass FILE gave its password: OpenVPN 2.6 asks on the console."""
    return is_encrypted(opts.key) and opts.askpass_password is None


def unlock(opts: Options, typed: str | None = None) -> None:
    """Replace an encrypted `opts.key` with the same key unencrypted (PKCS#8 PEM), using `typed`
    (asked on the terminal) or the askpass file's password; ConfigError if neither opens it."""
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
