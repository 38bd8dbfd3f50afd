"""Scratch directories for fuzz targets that need files, removed however their process ends.

`atexit` does not run when libFuzzer (atheris) ends a run -- it leaves through `_exit` -- so a
target's `mkdtemp` directory stayed in /tmp after every fuzz run (hundreds of `fuzz40-ccd-*`
and `fuzz40-dh-*` after a few sessions; those two did not even register a removal, so every
pytest run left them too). Every scratch directory now lives under one parent, named after its
process id; a process making one removes those of processes that no longer run.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

PARENT = os.path.join(tempfile.gettempdir(), "vpn-appliance-fuzz")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's process: running
        return True
    return True


def _remove_orphans() -> None:
    try:
        names = os.listdir(PARENT)
    except FileNotFoundError:
        return
    for name in names:
        pid = name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(os.path.join(PARENT, name), ignore_errors=True)


def scratch_dir(prefix: str) -> str:
    """A new directory for this process, removed at exit or by the next process to make one."""
    os.makedirs(PARENT, mode=0o700, exist_ok=True)
    _remove_orphans()
    d = tempfile.mkdtemp(prefix=f"{os.getpid()}-{prefix}", dir=PARENT)
    atexit.register(shutil.rmtree, d, True)
    return d
