"""Every pytest process (the xdist workers too): a SIGTERM -- a CI job timeout, a harness --
interrupts the run like Ctrl-C, so fixture teardowns run (Lab.close, vm_topology's `finally`)
and lab/netns.py deletes at exit whatever namespace is left; at session start, namespaces
recorded by a run that was killed outright (SIGKILL) are removed (only those whose creator
process is gone: runs going on beside this one keep theirs). lab/netns.py says why and how."""
from __future__ import annotations

import logging
import os
import signal
import sys

import pytest

from lab.netns import interrupt_on_sigterm, remove_leftovers


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest hook
    interrupt_on_sigterm(lambda: _forward_to_workers(config))


def _forward_to_workers(config) -> None:  # noqa: ANN001 - pytest config
    """The xdist controller passes a SIGTERM sent to it alone on to its workers (its children),
    which run the tests and hold the namespaces: each then tears down as for Ctrl-C. Without
    this the controller's exit ends them before their teardown (tried: everything stayed)."""
    if config.pluginmanager.getplugin("dsession") is None:
        return                                  # not an xdist controller: the tests run here
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == me:
                try:
                    os.kill(int(d), signal.SIGTERM)
                except ProcessLookupError:
                    pass


def pytest_sessionstart(session) -> None:  # noqa: ANN001 - pytest hook
    if os.geteuid() == 0:
        gone = remove_leftovers()
        if gone:
            print(f"removed {len(gone)} namespace(s) left by a killed run: {' '.join(sorted(gone))}",
                  file=sys.stderr)


@pytest.fixture(autouse=True)
def _our_log_calls_formatted():
    """Every log call of ours is formatted in tests, whatever level a test before left (pytest
    fails a test whose log call cannot be formatted): a `%d` given a connection key hid behind
    the level for a session, and at INFO it made the TCP server keep a connection whose writes
    failed."""
    ours = logging.getLogger("vpn-appliance")
    saved = ours.level
    ours.setLevel(logging.DEBUG)
    yield
    ours.setLevel(saved)


@pytest.fixture
def restore_logging():
    """For tests that set up logging themselves: the root's level and handlers and our logger's
    level as they were."""
    root, ours = logging.getLogger(), logging.getLogger("vpn-appliance")
    saved = (root.level, list(root.handlers), ours.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])
