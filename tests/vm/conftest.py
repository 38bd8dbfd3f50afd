"""The VM tests' measurements (image size, boot times, reproducibility) are printed at the end of
the run, so a CI log shows them without -s. Every test here is marked root, netns, openvpn and qemu
(the VM's NICs are TAPs in namespaces, the lab PKI and peers are Debian's openvpn)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
NEEDS = ("root", "netns", "openvpn", "qemu")


@pytest.hookimpl(tryfirst=True)   # before -m deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.is_relative_to(HERE):
            for mark in NEEDS:
                item.add_marker(mark)
            # One worker runs every VM test under `pytest -n` (--dist loadgroup): they share the
            # image build in image/out and the 2 cores are better spent on one TCG guest at a time.
            item.add_marker(pytest.mark.xdist_group("vm"))


FIGURES: list[str] = []


@pytest.fixture
def figure():
    """figure("boot to tunnel under tcg: 14.2 s") keeps a line for the summary."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FIGURES:
        terminalreporter.section("appliance VM figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
