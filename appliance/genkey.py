"""`vpn-appliance genkey TYPE [FILE] [METADATA]`: the key files `openvpn --genkey` writes.

Why here: a server VM's operator (or a router's) should not need an OpenVPN install beside the
appliance to make the keys its config names. The types, arguments and files are OpenVPN 2.6's
(options.c "genkey", crypto.c write_key_file / write_pem_key_file, tls_crypt.c
tls_crypt_v2_write_client_key_file), so a script written for `openvpn --genkey` works with the
words swapped, and either program reads what the other wrote:
- `secret`, `tls-auth`, `tls-crypt`: one 2048-bit static key (the three are the same file);
- `tls-crypt-v2-server`: a server key; `tls-crypt-v2-client` a client key wrapped by the server key
  named with `--tls-crypt-v2 FILE`, its metadata the base64 METADATA given (type user, at most
  733 bytes) or else the current time (type timestamp), as 2.6;
- `auth-token`: the `auth-gen-token-secret` key.
No FILE (or an empty one): the key goes to standard output, as 2.6. A FILE is written whole or not
at all, created 0600 and never through a link planted at its temporary name (atomic_file), then
read back (a client key is also unwrapped with the server key, as 2.6's sanity check); a FIFO or
device there (/dev/stdout) is written into, as 2.6 writes it.
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
import struct
import time

from .atomic_file import replace_file
from .openvpn import gentoken, keyfiles
from .openvpn.errors import ConfigError

TYPES = ("secret", "tls-auth", "tls-crypt", "tls-crypt-v2-server", "tls-crypt-v2-client", "auth-token")
MAX_USER_METADATA = keyfiles.METADATA_MAX_LEN - 1      # 733: the type byte takes one


class GenkeyError(Exception):
    """What to tell the user (no key was written)."""


def make(kind: str, server_key_text: str | None = None, metadata_b64: str | None = None,
         now: float | None = None) -> str:
    """The text of a fresh key of `kind`, as 2.6 writes it."""
    if kind not in TYPES:
        raise GenkeyError(f"unknown genkey type: {kind} (one of {', '.join(TYPES)})")
    if kind != "tls-crypt-v2-client" and (server_key_text is not None or metadata_b64 is not None):
        raise GenkeyError(f"genkey {kind} takes no server key or metadata")
    if kind in ("secret", "tls-auth", "tls-crypt"):
        return keyfiles.generate_static_key()
    if kind == "tls-crypt-v2-server":
        return keyfiles.generate_tls_crypt_v2_server_key()
    if kind == "auth-token":
        return keyfiles._pem_encode(os.urandom(gentoken.SECRET_LEN), gentoken.PEM_NAME)
    if server_key_text is None:
        raise GenkeyError("genkey tls-crypt-v2-client requires a server key to be set via --tls-crypt-v2 "
                          "to create a client key")
    try:
        server_key = keyfiles.parse_tls_crypt_v2_server_key(server_key_text)
    except ConfigError as e:
        raise GenkeyError(f"--tls-crypt-v2: {e}") from None
    if metadata_b64 is None:
        stamp = int(time.time() if now is None else now)
        mtype, metadata = keyfiles.METADATA_TYPE_TIMESTAMP, struct.pack("!q", stamp)
    else:
        try:
            metadata = base64.b64decode(metadata_b64, validate=True)
        except (binascii.Error, ValueError):
            raise GenkeyError("failed to base64 decode provided metadata") from None
        if len(metadata) > MAX_USER_METADATA:
            raise GenkeyError(f"metadata too long ({len(metadata)} bytes, max {MAX_USER_METADATA} bytes)")
        mtype = keyfiles.METADATA_TYPE_USER
    text = keyfiles.generate_tls_crypt_v2_client_key(server_key, metadata, mtype)
    _, wkc = keyfiles.parse_tls_crypt_v2_client_key(text)          # 2.6's sanity check: both sides
    keyfiles.unwrap_client_key_untrusted(wkc, server_key)
    return text


def write(path: str, text: str) -> None:
    """`text` into `path` (replaced whole, mode 0600), then read back.

    Something other than a file or directory at `path` (after links) -- a FIFO a script reads,
    /dev/stdout (`openvpn --genkey secret /dev/stdout` is how scripts capture a key), /dev/null --
    is written into as 2.6 writes it, not replaced by a regular file (as root, that broke
    /dev/stdout or /dev/null for the whole host until reboot) -- when that name (the node, or the
    link to it) is root's or ours: another user's FIFO there would read the key."""
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            owner = os.lstat(path).st_uid
            if owner not in (0, os.geteuid()):
                # Another user's FIFO or link (planted in /tmp, say) would hand them the key.
                raise GenkeyError(f"key file {path}: a {_kind(st.st_mode)} of another user's (uid {owner}): "
                                  "not written")
            _write_into(path, text.encode("ascii"))
            return
        replace_file(path, text.encode("ascii"), 0o600)
        with open(path, encoding="ascii") as f:
            back = f.read()
    except OSError as e:
        raise GenkeyError(f"could not write key file {path}: {e.strerror or e}") from None
    if back != text:
        raise GenkeyError(f"key file {path} reads back differently: not written")


def _kind(mode: int) -> str:
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def _write_into(path: str, data: bytes) -> None:
    """`data` into a device, FIFO or terminal. Opened non-blocking, so a FIFO nobody reads is an
    error at once (ENXIO) rather than a hang; written blocking after that."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def run(kind: str, path: str | None, metadata_b64: str | None, server_key_path: str | None) -> str:
    """The whole command -> what to print (the key itself when there is no FILE)."""
    server_text = None
    if server_key_path is not None:
        try:
            with open(server_key_path, encoding="ascii") as f:
                server_text = f.read(64 * 1024)
        except (OSError, UnicodeDecodeError) as e:
            raise GenkeyError(f"--tls-crypt-v2 {server_key_path}: {getattr(e, 'strerror', None) or e}") from None
    text = make(kind, server_text, metadata_b64)
    if not path:
        return text
    write(path, text)
    if kind in ("secret", "tls-auth", "tls-crypt"):
        return f"Randomly generated 2048 bit key written to {path}\n"
    return f"{kind} key written to {path}\n"
