"""Where log lines go and which are kept: the one place both entry points (profile and TOML) set it.

Only our own logger ("vpn-appliance") follows the chosen level. Libraries keep WARNING: at debug
level pyroute2 would otherwise log every netlink message it builds or parses as a large dict,
drowning the protocol trace a user asked for with `--verb 4`.
"""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"


def setup_logging(level: int, replace: bool = False) -> None:
    """Log to stderr; our logger at `level`, every other library's at WARNING or above. `replace`
    drops handlers set up before (the TOML path reconfigures after its early errors were printed)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=replace, format=FORMAT, datefmt="%H:%M:%S")
    # FORMAT uses none of these: skip gathering them for every record (the logging HOWTO's
    # "Optimization"; ~3 us a line, some of them on a client's way to its first packet).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("vpn-appliance").setLevel(level)
