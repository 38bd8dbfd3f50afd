"""`--verb 4` / log_level debug turns on OUR debug lines only: libraries (pyroute2 logs every netlink
message as a dict at debug) stay at WARNING."""
from __future__ import annotations

import logging

import pytest

from appliance.logsetup import setup_logging


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING])
def test_our_logger_follows_the_level_libraries_stay_at_warning(restore_logging, level):
    setup_logging(level, replace=True)
    ours, lib = logging.getLogger("vpn-appliance"), logging.getLogger("pyroute2.netlink.nlsocket")
    assert ours.isEnabledFor(level) and not ours.isEnabledFor(level - 1)
    assert not lib.isEnabledFor(logging.INFO) and lib.isEnabledFor(logging.WARNING)


def test_debug_lines_of_a_library_are_not_printed(restore_logging, capsys):
    setup_logging(logging.DEBUG, replace=True)
    logging.getLogger("pyroute2").debug("netlink message {'attrs': ...}")
    logging.getLogger("vpn-appliance").debug("control packet sent")
    err = capsys.readouterr().err
    assert "control packet sent" in err and "netlink message" not in err
