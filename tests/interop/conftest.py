"""Interop tests need root, Debian's openvpn, iperf3 and /dev/net/tun: fail (never skip) without.
Every test here is marked root, netns and openvpn, so `make test-unit` (-m "not root ...") leaves
them out."""
from pathlib import Path

import pytest

from lab.tools import require_root_and_tools

HERE = Path(__file__).parent
NEEDS = ("root", "netns", "openvpn")


@pytest.hookimpl(tryfirst=True)   # before -m deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.is_relative_to(HERE):
            for mark in NEEDS:
                item.add_marker(mark)


@pytest.fixture(scope="session", autouse=True)
def _interop_prerequisites():
    require_root_and_tools()


@pytest.fixture
def procs():
    """The processes a test starts (lab.openvpn / lab.ours results appended), stopped after it,
    newest first (promptly: a UDP server, OpenVPN's or ours, without its 2 s exit delay for
    RESTART, Proc.stop_promptly).
    A test file may define its own."""
    started = []
    yield started
    for p in reversed(started):
        p.stop_promptly(8)
