"""Where log lines go and which are kept: the one place both entry points (profile and TOML) set it.

Only our own logger ("vpn-appliance") follows the chosen level. Libraries keep WARNING: at debug
level pyroute2 would otherwise log every netlink message it builds or parses as a large dict,
drowning the protocol trace a user asked for with `--verb 4`.
"""
from __future__ import annotations

import logging
import re
import sys

from .openvpn.peernames import for_display

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
_C1 = re.compile("[\x80-\x9f]")


class _Formatter(logging.Formatter):
    """FORMAT, with the C1 control characters U+0080-U+009F written `\\xNN`. Names keep them,
    as in OpenVPN (keymethod.remap_name: a username or common name that picks a ccd file or
    passes verify-x509-name must be the same string as there), but on the way to a terminal
    some of them act (U+009B is CSI on terminals that take 8-bit controls). A peer's name's
    bytes that are not UTF-8 are written `\\xNN` before this (NameBytesFilter)."""

    def format(self, record: logging.LogRecord) -> str:
        return c1_escaped(super().format(record))


def c1_escaped(line: str) -> str:
    """`line` with its C1 controls (U+0080-U+009F) written `\\xNN`: every log line that leaves
    the process as text for a human, on the console (_Formatter) or to a management client's
    `>LOG` (gateway/management.py; OpenVPN sends a name's bytes there as they are, and a C1 in a
    common name reached a management client's terminal as the control it is)."""
    return _C1.sub(lambda m: f"\\x{ord(m.group()):02x}", line) if _C1.search(line) else line


class NameBytesFilter(logging.Filter):
    """Our logger's records with a peer's name's bytes that are not UTF-8 (peernames: held as
    U+DC80-U+DCFF) written `\\xNN`, before any handler sees them: a handler that encodes strictly
    (pytest-xdist's report channel, a file) would fail on the lone surrogates, stderr would show
    `\\udcNN`. Installed on import of this module, which the gateway package does first (the
    engine logs nothing). Records without such a byte cost a search of their text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception as e:  # noqa: BLE001 - a malformed call is the handler's to report (handleError)
            _unformatted(record, e)
            return True
        if _NAME_BYTES.search(msg):
            record.msg, record.args = for_display(msg), None
        return True


_NAME_BYTES = re.compile("[\udc80-\udcff]")
# Log calls of ours that could not be formatted (our bug: an argument whose str() raises, a `%d`
# given a key): Python's handler reports each on stderr ("--- Logging error ---") and pytest
# fails the test, but in a running gateway the line was simply lost, at its level, with nothing
# at WARNING and nothing counted (lab/reliability/fault_sweep.py). Now one WARNING line of our
# own says so, for the first five and then every 1000th.
unformatted = 0


def _unformatted(record: logging.LogRecord, e: Exception) -> None:
    global unformatted
    unformatted += 1
    if unformatted <= 5 or unformatted % 1000 == 0:
        try:
            what = f"{str(record.msg)[:200]}: {type(e).__name__}: {str(e)[:200]}"
        except Exception:  # noqa: BLE001 - the template itself is what fails
            what = type(e).__name__
        logging.getLogger("vpn-appliance").warning(
            "internal error: a log line could not be formatted (%d so far): %s", unformatted, what)
_logger = logging.getLogger("vpn-appliance")
if not any(isinstance(f, NameBytesFilter) for f in _logger.filters):
    _logger.addFilter(NameBytesFilter())


def setup_logging(level: int, replace: bool = False) -> None:
    """Log to stderr; our logger at `level`, every other library's at WARNING or above. `replace`
    drops handlers set up before (the TOML path reconfigures after its early errors were printed)."""
    root = logging.getLogger()
    if replace or not root.handlers:        # when basicConfig adds its handler (and only then)
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=replace, format=FORMAT,
                            datefmt="%H:%M:%S")
        for h in root.handlers:
            h.setFormatter(_Formatter(FORMAT, "%H:%M:%S"))
    # FORMAT uses none of these: skip gathering them for every record (the logging HOWTO's
    # "Optimization"; ~3 us a line, some of them on a client's way to its first packet).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("vpn-appliance").setLevel(level)


# The `--verbose` count added to `verb` when the level follows the config's `verb` (the plain
# config path, cli.py); None when it does not (the TOML's log_level, tests), so a reload's new
# `verb` changes nothing there.
_verb_extra: int | None = None


def verb_level(verb: int) -> int:
    """OpenVPN's verb scale: 0-1 errors/warnings, 2-3 normal events, 4+ debug."""
    return logging.WARNING if verb <= 1 else logging.INFO if verb <= 3 else logging.DEBUG


def setup_verb(verb: int, extra: int = 0) -> None:
    """Logging at the level of a config's `verb` (at least 3: normal events are always logged)
    plus `extra` (--verbose); apply_verb follows a reload's new `verb` from then on."""
    global _verb_extra
    _verb_extra = extra
    setup_logging(verb_level(max(verb, 3) + extra))


def apply_verb(verb: int) -> bool:
    """A reload's `verb` (OpenVPN's SIGHUP applies it too); False when the level does not follow
    `verb` (setup_verb was not used)."""
    if _verb_extra is None:
        return False
    logging.getLogger("vpn-appliance").setLevel(verb_level(max(verb, 3) + _verb_extra))
    return True
