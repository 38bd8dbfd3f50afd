"""Reading a file a config names, refusing anything but a regular file.

Why: a pipe or a device named by mistake (`crl-verify /tmp/crl.fifo`, `ca /dev/zero`) was read
with open()+read(): a FIFO's open() waits for a writer and /dev/zero never ends, so the start
hung without a word, or a reload blocked the event loop for good (every client's packets and
SIGTERM waiting) or grew the process until the OOM killer came. Opened without blocking and
checked with fstat on the descriptor read, so a file swapped for a pipe after a stat() is caught
too. Every reading of a file a config names goes through open_regular_file (the one place).
"""
from __future__ import annotations

import errno
import os
import stat

NOT_REGULAR = "not a regular file (a pipe or device would block or never end)"


def open_regular_file(path: str) -> int:
    """A blocking descriptor for reading the regular file at `path` (symlinks followed), the
    caller's to close; OSError otherwise, its strerror saying why (NOT_REGULAR for a pipe,
    device, socket or directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: str) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed); OSError otherwise (see
    open_regular_file)."""
    with os.fdopen(open_regular_file(path), "rb") as f:
        return f.read()
