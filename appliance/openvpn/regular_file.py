"""Reading a file a config names: a regular file only, and no larger than its kind may be.

Why regular: a pipe or a device named by mistake (`crl-verify /tmp/crl.fifo`, `ca /dev/zero`)
was read with open()+read(): a FIFO's open() waits for a writer and /dev/zero never ends, so the
start hung without a word, or a reload blocked the event loop for good (every client's packets
and SIGTERM waiting) or grew the process until the OOM killer came. Opened without blocking and
checked with fstat on the descriptor read, so a file swapped for a pipe after a stat() is caught
too.

Why a size limit: a regular file of 10 GB (a disk image or a log named by mistake, a CRL
download gone wrong) was read whole, at start or on the event loop at a reload or a client's
connect, until memory ran out. Each kind of file has a limit far above what a demanding user's
file holds (SIZE_LIMITS, the one place for them); above it the file is refused before start with
the directive's file:line, and when read again while running (a client-config-dir file at a
connect, the CRL when it changes, the password file at a reload) only what needed it fails: that
client, the handshakes the CRL checks (as for an unreadable CRL), the reload. OpenVPN 2.6 has no
limit of its own on these files (it reads config lines of at most 255 bytes: config/lexer.py).
A file that grows past its limit between the check and the read is refused too (at most
limit + 1 bytes are read). Every reading of a file a config names goes through here.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from typing import BinaryIO

from ..frozen_record import FrozenRecord

NOT_REGULAR = "not a regular file (a pipe or device would block or never end)"

KiB = 1024
MiB = 1024 * KiB


class FileKind(FrozenRecord):
    """A kind of file a config names, and the most bytes read of one."""
    what: str
    limit: int


# A profile or appliance TOML with its inline certificates, keys and even a CRL of ~400,000
# entries; eduVPN profiles are ~10 KiB.
CONFIG = FileKind("a config file", 16 * MiB)
# `ca`, `cert`, `key`, `extra-certs`, `tls-auth`, `tls-crypt(-v2)`, `auth-user-pass`...: the
# whole system CA bundle (~220 KiB on Debian 12) fits 18 times.
KEY_MATERIAL = FileKind("a certificate, key or credentials file", 4 * MiB)
# Read on the event loop at each connect of its client: a few directives, or a few thousand
# `iroute`/`push` lines.
CCD = FileKind("a client-config-dir file", 1 * MiB)
# The options file a client-connect command writes: a ccd file's syntax and use, so its limit.
CONNECT_OPTIONS = FileKind("a client-connect options file", CCD.limit)
# ~1.6 million revoked entries (a 100,000-entry CRL is ~4 MiB): read in a worker when large.
CRL = FileKind("a CRL file", 64 * MiB)
# A `capath` directory's HASH.N / HASH.rN entry: a CA certificate or a CRL, so a CRL's limit.
CAPATH_ENTRY = FileKind("a capath CA or CRL file", CRL.limit)
# `user:scrypt$...` lines of ~150 bytes: ~400,000 users.
PASSWORD_DB = FileKind("a password file", 64 * MiB)
# `CN,IPv4[,IPv6]` lines: a /16 pool's 65,536 clients take ~5 MiB.
POOL = FileKind("an ifconfig-pool-persist file", 16 * MiB)

# auth-user-pass-verify's auth_control_file (`1` or `0`) and auth_failed_reason_file (a line).
AUTH_FILE = FileKind("an auth control or reason file", 64 * KiB)
SIZE_LIMITS = (CONFIG, KEY_MATERIAL, CCD, CONNECT_OPTIONS, CRL, CAPATH_ENTRY, PASSWORD_DB, POOL, AUTH_FILE)


def _size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


def too_large(kind: FileKind, size: int | None = None) -> str:
    """Why a file of `kind` is refused for its size (an OSError's strerror)."""
    have = f"{size} bytes, " if size is not None else ""
    return f"too large ({have}more than {_size_text(kind.limit)}, the most read of {kind.what})"


def size_problem(path: str, kind: FileKind) -> str | None:
    """Why the file at `path` is too large for `kind`, by its size now; None if it is not (or
    is no regular file: the reading says why). For a directive whose file is read later
    (`crl-verify`, the password file), so that the config is refused at its line."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):           # ValueError: a NUL in the name (the reading says so)
        return None
    if stat.S_ISREG(st.st_mode) and st.st_size > kind.limit:
        return too_large(kind, st.st_size)
    return None


def named_file_problem(path: str, kind: FileKind | None = None) -> str | None:
    """Why the file a directive names, to be read later (at start, at a reload, on the loop),
    cannot be: NOT_REGULAR when something else is there (a FIFO's open() waits for a writer, a
    device never ends), else too large for `kind` by its size now (size_problem); None when it
    is fine or absent (the reading says so). The one check such directives make at their line."""
    if os.path.exists(path) and not os.path.isfile(path):
        return NOT_REGULAR
    return size_problem(path, kind) if kind is not None else None


# The names OpenSSL's hashed-directory lookup opens in a `capath` directory (by_dir.c: HASH.N
# a CA certificate, HASH.rN a CRL, HASH the subject name's 8 hex digits).
HASHED_NAME = re.compile(r"[0-9a-f]{8}\.r?[0-9]+")


def hashed_dir_problem(path: str) -> str | None:
    """Why the `capath` directory at `path` cannot be handed to OpenSSL, or None. OpenSSL opens
    its HASH.N / HASH.rN entries itself, when a handshake's chain needs them (on the event
    loop), with a blocking open() and no size limit: a FIFO there held the loop for good, a
    device or a huge file was read whole. So each such entry (symlinks followed) must be a
    regular file within CAPATH_ENTRY's limit, checked when the config is read (start, reload).
    A dangling link passes: OpenSSL finds nothing there either."""
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        return f"cannot list it ({e.strerror})"
    for name in names:
        if not HASHED_NAME.fullmatch(name):
            continue
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue
        except OSError as e:
            return f"{name}: {e.strerror}"
        if not stat.S_ISREG(st.st_mode):
            return f"{name}: {NOT_REGULAR}"
        if st.st_size > CAPATH_ENTRY.limit:
            return f"{name}: {too_large(CAPATH_ENTRY, st.st_size)}"
    return None


def open_regular_file(path: str, kind: FileKind) -> int:
    """A blocking descriptor for reading the regular file at `path` (symlinks followed), the
    caller's to close, the file no larger than `kind` allows; OSError otherwise, its strerror
    saying why (NOT_REGULAR for a pipe, device, socket or directory; too_large). A caller that
    reads it line by line reads at most kind.limit + 1 bytes (read_limited)."""
    if "\0" in path:                        # os.open would raise ValueError, not OSError
        raise OSError(errno.EINVAL, "a file name holding a NUL byte", path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, path)
        if st.st_size > kind.limit:
            raise OSError(errno.EFBIG, too_large(kind, st.st_size), path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_limited(f: BinaryIO, kind: FileKind, path: str) -> bytes:
    """All of `f` if it holds at most kind.limit bytes (a pipe read at start, a file that grew
    after its check); OSError otherwise, nothing more read."""
    data = f.read(kind.limit + 1)
    if len(data) > kind.limit:
        raise OSError(errno.EFBIG, too_large(kind), path)
    return data


def read_regular_file(path: str, kind: FileKind) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed); OSError otherwise (see
    open_regular_file)."""
    with os.fdopen(open_regular_file(path, kind), "rb") as f:
        return read_limited(f, kind, path)
