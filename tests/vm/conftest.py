"""The VM tests' measurements (image size, boot times, reproducibility) are printed at the end of
the run, so a CI log shows them without -s."""
from __future__ import annotations

import pytest

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
