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


FIGURES: list[str] = []
FIGURE = "vm-figure"


@pytest.fixture
def figure(request):
    """figure("boot to tunnel under tcg: 14.2 s") keeps a line for the summary. Kept in the test's
    user_properties, which pytest-xdist carries from a worker to the controller with the report."""
    return lambda line: request.node.user_properties.append((FIGURE, line))


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        FIGURES.extend(value for key, value in report.user_properties if key == FIGURE)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FIGURES:
        terminalreporter.section("appliance VM figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
