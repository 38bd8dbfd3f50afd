"""Replace a file at once (a reader sees the old list or the new one, never half), without
following a link planted where the temporary file goes.

Why: the status and ifconfig-pool-persist files are written as root (or before/after a `user`
drop) into directories an operator picks, /tmp among them. A temporary name like `PATH.tmpPID`
is predictable, and `open(tmp, "w")` follows a symlink another user put there, truncating
whatever it points at. The temporary file is therefore created new (O_EXCL) and never through a
link (O_NOFOLLOW); a leftover of that name (a crashed run, or a planted link) is removed first --
unlink removes the link itself, not its target -- and if one appears again, the write fails with
an OSError like any other.
"""
from __future__ import annotations

import os

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, _FLAGS, mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, _FLAGS, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
