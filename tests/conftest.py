"""Every pytest process (the xdist workers too): a SIGTERM -- a CI job timeout, a harness --
interrupts the run like Ctrl-C, so fixture teardowns run (Lab.close, vm_topology's `finally`)
and lab/netns.py deletes at exit whatever namespace is left; at session start, namespaces
recorded by a run that was killed outright (SIGKILL) are removed (only those whose creator
process is gone: runs going on beside this one keep theirs). lab/netns.py says why and how."""
from __future__ import annotations

import os
import sys

from lab.netns import interrupt_on_sigterm, remove_leftovers


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest hook
    interrupt_on_sigterm()


def pytest_sessionstart(session) -> None:  # noqa: ANN001 - pytest hook
    if os.geteuid() == 0:
        gone = remove_leftovers()
        if gone:
            print(f"removed {len(gone)} namespace(s) left by a killed run: {' '.join(sorted(gone))}",
                  file=sys.stderr)
